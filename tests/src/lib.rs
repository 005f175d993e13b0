//! Test rig helpers: start real `chorusd` processes on loopback multicast, drive them over
//! HTTP and with `chorusctl`, and analyse what each speaker played.
//!
//! Every speaker gets its own clock offset and frequency error (the daemon's `[testing]`
//! section), so a test cannot pass because processes share the host clock.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom
#![forbid(unsafe_code)]

use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod stall;
pub use stall::{host_fault, retry_on_host_stall};

/// Path of a workspace binary (built by `cargo build --workspace` before the tests run).
pub fn bin(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root.join("target"));
    let p = target.join("debug").join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// Repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh scratch directory.
pub fn scratch(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("chorus-test-{}-{}-{}", tag, std::process::id(), n));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A port no other test of this process was given, free for TCP on loopback and for UDP on
/// every address. Below the kernel's ephemeral range (32768 and up), so that no socket bound to
/// port 0 — a speaker's sync socket, a client — can take it between this call and the daemon's
/// bind (a zone's multicast receiver once failed with "address already in use" that way), and
/// from a range of its own per test process (test binaries run one after another).
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 64) * 180;
    loop {
        let port = (base + NEXT.fetch_add(1, Ordering::Relaxed) % 180) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        let udp = std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok();
        if tcp && udp {
            return port;
        }
    }
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> u16 {
    free_port()
}

/// A free UDP port.
pub fn free_udp_port() -> u16 {
    free_port()
}

/// A running daemon; SIGTERM and wait on drop.
pub struct Daemon {
    pub name: String,
    pub api: String,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Stops the daemon cleanly (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    /// Kills the process with SIGKILL, as a crash would end it (no fade, no goodbye).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A zone's network parameters, unique per test, and where a daemon started with them runs:
/// on loopback in this network namespace (`Net::new`), or on a host of a [`Lan`].
#[derive(Clone, Debug)]
pub struct Net {
    pub group: String,
    pub port: u16,
    pub sync_port: u16,
    /// Address of the interface the zone's multicast uses.
    pub interface: String,
    /// Network namespace the daemon runs in (None: this one), and the address its API
    /// listens on (reachable from the test process).
    pub ns: Option<String>,
    pub api_host: String,
}

impl Net {
    pub fn new() -> Net {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        Net {
            group: format!("239.255.{}.{}", 100 + (pid % 100), 1 + (n % 250)),
            port: free_udp_port(),
            sync_port: free_udp_port(),
            interface: "127.0.0.1".into(),
            ns: None,
            api_host: "127.0.0.1".into(),
        }
    }

    /// The same zone, for a daemon on host `k` of `lan`.
    pub fn on(&self, lan: &Lan, k: usize) -> Net {
        Net {
            interface: lan.addr(k),
            ns: Some(lan.ns(k)),
            api_host: lan.addr(k),
            ..self.clone()
        }
    }

    /// A command run in this net's namespace.
    pub fn command(&self, program: &Path) -> Command {
        match &self.ns {
            None => Command::new(program),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
        }
    }
}

/// A LAN of network namespaces on a bridge, one per host (a controller, speakers, a spoofer):
/// host k is `10.x.y.k` on its `eth0`; the test process reaches every host through a veth of
/// its own on the bridge (`10.x.y.254`). Needs root (CI runs as root). Removed on drop.
pub struct Lan {
    prefix: String,
    subnet: String,
    hosts: usize,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {}: {e} (is iproute2 installed?)", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {}: {} (network namespaces need root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Lan {
    pub fn new(hosts: usize) -> Lan {
        assert!((1..200).contains(&hosts));
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let lan = Lan {
            prefix: format!("ct{}x{}", pid % 1_000_000, n % 100),
            subnet: format!("10.{}.{}", 200 + pid % 50, n % 250),
            hosts,
        };
        let br = format!("{}-br", lan.prefix);
        ip(&["netns", "add", &br]);
        ip(&[
            "-n",
            &br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        let attach = |outside: &str, inside: &str| {
            ip(&[
                "link", "add", outside, "type", "veth", "peer", "name", inside,
            ]);
            ip(&["link", "set", inside, "netns", &br]);
            ip(&["-n", &br, "link", "set", inside, "master", "br0", "up"]);
        };
        // The test process's own leg.
        let me = format!("{}r", lan.prefix);
        attach(&me, &format!("{}rb", lan.prefix));
        ip(&["addr", "add", &format!("{}.254/24", lan.subnet), "dev", &me]);
        ip(&["link", "set", &me, "up"]);
        for k in 1..=hosts {
            let ns = lan.ns(k);
            let leg = format!("{}h{k}", lan.prefix);
            ip(&["netns", "add", &ns]);
            attach(&leg, &format!("{}b{k}", lan.prefix));
            ip(&["link", "set", &leg, "netns", &ns, "name", "eth0"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", lan.addr(k)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        lan
    }

    /// Namespace of host k (1-based).
    pub fn ns(&self, k: usize) -> String {
        format!("{}-{k}", self.prefix)
    }

    /// Address of host k.
    pub fn addr(&self, k: usize) -> String {
        format!("{}.{k}", self.subnet)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for k in 1..=self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(k)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}r", self.prefix)])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("{}-br", self.prefix)])
            .status();
    }
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

fn zone_toml(net: &Net) -> String {
    format!(
        "[zone]\ngroup = \"{}\"\nport = {}\ninterface = \"{}\"\n",
        net.group, net.port, net.interface
    )
}

/// Writes a config and starts `chorusd` with it.
pub fn start_daemon(dir: &Path, name: &str, config: &str) -> Daemon {
    start_daemon_on(&Net::default(), dir, name, config)
}

/// Writes a config and starts `chorusd` with it where `net` says.
pub fn start_daemon_on(net: &Net, dir: &Path, name: &str, config: &str) -> Daemon {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config).unwrap();
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = net
        .command(&bin("chorusd"))
        .arg("--config")
        .arg(&cfg)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn chorusd");
    let api = config
        .lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .map(|l| format!("http://{}", l.trim_end_matches('"')))
        .unwrap_or_default();
    let d = Daemon {
        name: name.into(),
        api,
        child: Some(child),
        log,
    };
    wait_until(Duration::from_secs(10), || {
        get(&format!("{}/api/v1/status", d.api)).ok()
    })
    .unwrap_or_else(|| panic!("{name} did not start:\n{}", d.log_text()));
    d
}

/// A LAN of `hosts` network namespaces, a zone on it, and a controller (no key, no token) on
/// host 1.
pub fn lan_with_controller(hosts: usize, tag: &str) -> (Lan, PathBuf, Net, Daemon) {
    let lan = Lan::new(hosts);
    let dir = scratch(tag);
    let net = Net::new();
    let controller = start_controller(&dir, &net.on(&lan, 1), "");
    (lan, dir, net, controller)
}

/// `[controller] media-roots` for tests: the scratch folders and the repository (fixtures).
pub fn media_roots() -> String {
    format!(
        "media-roots = [{:?}, {:?}]\n",
        std::env::temp_dir().to_string_lossy(),
        repo().to_string_lossy()
    )
}

/// Starts a controller.
pub fn start_controller(dir: &Path, net: &Net, extra: &str) -> Daemon {
    start_controller_zone(dir, net, "", extra)
}

/// A controller with extra `[zone]` keys (e.g. `sample-format = "s24"`).
pub fn start_controller_zone(dir: &Path, net: &Net, zone_extra: &str, extra: &str) -> Daemon {
    let port = free_tcp_port();
    let cfg = format!(
        "log-level = \"info\"\n[api]\nlisten = \"{}:{port}\"\nmdns = {}\n{}{zone_extra}\n[controller]\nsync-port = {}\n{}{extra}\n[speaker]\nenabled = false\n",
        net.api_host,
        net.ns.is_some(),
        zone_toml(net),
        net.sync_port,
        if extra.contains("media-roots") {
            String::new()
        } else {
            media_roots()
        }
    );
    start_daemon_on(net, dir, "controller", &cfg)
}

/// A speaker's simulated clocks and output.
#[derive(Clone, Debug)]
pub struct SpeakerSpec {
    pub name: String,
    pub clock_offset_ms: f64,
    pub clock_ppm: f64,
    pub dac_ppm: f64,
    /// "sim" or "file" or "alsa".
    pub output: String,
    pub device: String,
    /// Extra `[zone]` keys (must match the controller's stream format).
    pub zone_extra: String,
    /// Extra `[speaker]` keys (e.g. `controller = "10.0.0.1:7701"`).
    pub speaker_extra: String,
    /// Extra config sections, appended (e.g. `[security]`).
    pub extra: String,
}

impl SpeakerSpec {
    pub fn sim(name: &str, clock_offset_ms: f64, clock_ppm: f64) -> Self {
        SpeakerSpec {
            name: name.into(),
            clock_offset_ms,
            clock_ppm,
            dac_ppm: 0.0,
            output: "sim".into(),
            device: String::new(),
            zone_extra: String::new(),
            speaker_extra: String::new(),
            extra: String::new(),
        }
    }
}

/// Starts a speaker; its output goes to `dir/<name>.wav` (and `<name>.heard` for sim).
pub fn start_speaker(dir: &Path, net: &Net, s: &SpeakerSpec) -> Daemon {
    let port = free_tcp_port();
    let out = match s.output.as_str() {
        "alsa" => format!("output = \"alsa\"\ndevice = \"{}\"\n", s.device),
        "file" => format!(
            "output = \"file\"\npath = \"{}\"\n",
            dir.join(format!("{}.wav", s.name)).display()
        ),
        _ => format!(
            "output = \"sim\"\npath = \"{}\"\nheard-log = \"{}\"\ndac-ppm = {}\n",
            dir.join(format!("{}.wav", s.name)).display(),
            dir.join(format!("{}.heard", s.name)).display(),
            s.dac_ppm
        ),
    };
    let tap = dir.join(format!("{}.tap.wav", s.name));
    let cfg = format!(
        "log-level = \"info\"\n[api]\nlisten = \"{}:{port}\"\nmdns = {}\n{}{}\n[controller]\nenabled = false\n[speaker]\nname = \"{}\"\n{}\n{out}[testing]\nclock-offset-ms = {}\nclock-ppm = {}\nstream-tap = \"{}\"\n{}",
        net.api_host,
        net.ns.is_some(),
        zone_toml(net),
        s.zone_extra,
        s.name,
        s.speaker_extra,
        s.clock_offset_ms,
        s.clock_ppm,
        tap.display(),
        s.extra
    );
    start_daemon_on(net, dir, &s.name, &cfg)
}

/// HTTP GET returning JSON.
pub fn get(url: &str) -> Result<Value, String> {
    match ureq::get(url).timeout(Duration::from_secs(5)).call() {
        Ok(r) => r.into_json().map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// HTTP request with a JSON body; returns (status, JSON body).
pub fn send(method: &str, url: &str, body: &str) -> (u16, Value) {
    let r = ureq::request(method, url)
        .timeout(Duration::from_secs(5))
        .set("content-type", "application/json")
        .send_string(body);
    status_and_body(method, url, r)
}

/// What a request's reply came to: (status, body as JSON or as a string). An error status is
/// a reply; a request that got none panics.
pub fn status_and_body(
    method: &str,
    url: &str,
    r: Result<ureq::Response, ureq::Error>,
) -> (u16, Value) {
    let (code, resp) = match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(c, r)) => (c, r),
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let text = resp.into_string().unwrap_or_default();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Nanoseconds on the host's realtime clock (what the sim outputs' heard logs use).
pub fn realtime_ns() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as f64
}

/// Polls `f` until it returns Some or the timeout passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T>
where
    T: Sized,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the controller lists `n` online speakers with locked clocks.
pub fn wait_locked(controller: &Daemon, n: usize) {
    let url = format!("{}/api/v1/speakers", controller.api);
    let ok = wait_until(Duration::from_secs(20), || {
        let v = get(&url).ok()?;
        let list = v["speakers"].as_array()?;
        (list
            .iter()
            .filter(|s| s["online"] == true && s["locked"] == true)
            .count()
            >= n)
            .then_some(())
    });
    assert!(ok.is_some(), "speakers did not lock: {:?}", get(&url));
}

/// Plays `track` through `chorusctl`, waits (up to `timeout`) until the zone stops, then
/// gives the speakers 400 ms to play out their buffers.
pub fn play_to_end(controller: &Daemon, track: &Path, timeout: Duration) {
    let (code, out, err) = chorusctl(&controller.api, &["play", track.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    wait_stopped(controller, timeout);
    std::thread::sleep(Duration::from_millis(400));
}

/// Waits until the zone is stopped.
pub fn wait_stopped(controller: &Daemon, timeout: Duration) {
    let url = format!("{}/api/v1/zone", controller.api);
    let ok = wait_until(timeout, || {
        (get(&url).ok()?["state"] == "stopped").then_some(())
    });
    assert!(ok.is_some(), "zone did not stop: {:?}", get(&url));
}

/// Runs chorusctl against a controller; returns (exit code, stdout, stderr).
pub fn chorusctl(controller: &str, args: &[&str]) -> (i32, String, String) {
    chorusctl_with_token(controller, None, args)
}

/// Runs chorusctl with `CHORUS_TOKEN` set (if given); returns (exit code, stdout, stderr).
pub fn chorusctl_with_token(
    controller: &str,
    token: Option<&str>,
    args: &[&str],
) -> (i32, String, String) {
    let mut c = Command::new(bin("chorusctl"));
    c.arg("--controller").arg(controller).args(args);
    if let Some(t) = token {
        c.env("CHORUS_TOKEN", t);
    }
    let out = c.stdin(Stdio::null()).output().expect("run chorusctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The noise sample that travels with source frame `k` (never 0).
pub fn noise(k: u32) -> i16 {
    let mut z = (k as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let v = ((z >> 49) as i32 - 16_384) as i16;
    if v == 0 {
        1
    } else {
        v
    }
}

/// A new 48 kHz stereo WAV file of `bits` integer samples at `path`, to write samples to
/// (left, right, ...).
pub fn stereo_48k_wav(
    path: &Path,
    bits: u16,
) -> hound::WavWriter<std::io::BufWriter<std::fs::File>> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(path, spec).unwrap()
}

/// Writes a 48 kHz stereo s16 WAV whose frame `i` carries source frame number `k = start + i`:
/// left is `k mod 65536`, right is `noise(k)`. Every frame of an unresampled output can be traced
/// to its source frame, and the noise channel gives a sharp cross-correlation for measuring
/// alignment of resampled outputs.
pub fn write_counter_wav(path: &Path, start: u32, frames: u32) {
    let mut w = stereo_48k_wav(path, 16);
    for k in start..start + frames {
        w.write_sample((k & 0xffff) as u16 as i16).unwrap();
        w.write_sample(noise(k)).unwrap();
    }
    w.finalize().unwrap();
}

/// Writes a 48 kHz stereo WAV of a sine at `hz`, amplitude `amp` (of full scale), the same in
/// both channels, in 16 or 24 bits.
pub fn write_tone_wav(path: &Path, hz: f64, amp: f64, seconds: u32, bits: u16) {
    let full = ((1i64 << (bits - 1)) - 1) as f64;
    let mut w = stereo_48k_wav(path, bits);
    for i in 0..48_000 * seconds {
        let v = (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / 48_000.0).sin() * full).round()
            as i32;
        w.write_sample(v).unwrap();
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
}

/// Reads a raw little-endian s16 stereo capture (what an ALSA `file` PCM writes).
pub fn load_raw_s16_stereo(path: &Path) -> Capture {
    let bytes = std::fs::read(path).unwrap();
    let frames = bytes
        .chunks_exact(4)
        .map(|b| {
            [
                i16::from_le_bytes([b[0], b[1]]),
                i16::from_le_bytes([b[2], b[3]]),
            ]
        })
        .collect();
    Capture::from_frames(frames)
}

/// The source frame a frame carries (0: silence or not a source frame); `hint` is tried first.
pub fn counter_hint(frame: [i16; 2], hint: u32) -> u32 {
    if frame == [0, 0] {
        return 0;
    }
    let low = frame[0] as u16 as u32;
    if hint > 0 && hint & 0xffff == low && noise(hint) == frame[1] {
        return hint;
    }
    (0..256u32)
        .map(|m| low + (m << 16))
        .find(|&k| k > 0 && noise(k) == frame[1])
        .unwrap_or(0)
}

/// The source frame a frame carries (0: none).
pub fn counter(frame: [i16; 2]) -> u32 {
    counter_hint(frame, 0)
}

/// A DAC (re)start in a sim heard log.
#[derive(Debug, Clone, Copy)]
pub struct Anchor {
    pub dac_frame: u64,
    pub realtime_ns: i128,
    pub rate_hz: f64,
}

/// What a speaker played: its WAV frames and, for sim outputs, when each was heard.
pub struct Capture {
    pub frames: Vec<[i16; 2]>,
    /// Source frame carried by each frame (0: none).
    pub counters: Vec<u32>,
    pub anchors: Vec<Anchor>,
}

impl Capture {
    /// Frames without timing (raw captures).
    pub fn from_frames(frames: Vec<[i16; 2]>) -> Capture {
        let mut hint = 0;
        let counters = frames
            .iter()
            .map(|f| {
                let k = counter_hint(*f, hint);
                hint = if k > 0 { k + 1 } else { 0 };
                k
            })
            .collect();
        Capture {
            frames,
            counters,
            anchors: vec![],
        }
    }

    /// Loads the stream tap `dir/<name>.tap.wav` (what the speaker scheduled, before resampling).
    pub fn load_tap(dir: &Path, name: &str) -> Capture {
        let mut r = hound::WavReader::open(dir.join(format!("{name}.tap.wav")))
            .expect("speaker stream tap");
        let s: Vec<i16> = r.samples::<i16>().map(|x| x.unwrap()).collect();
        Capture::from_frames(s.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
    }

    /// Loads `dir/<name>.wav` (what the DAC played) and `dir/<name>.heard`.
    pub fn load(dir: &Path, name: &str) -> Capture {
        let mut r = hound::WavReader::open(dir.join(format!("{name}.wav"))).expect("speaker wav");
        let s: Vec<i16> = r.samples::<i16>().map(|x| x.unwrap()).collect();
        let mut cap = Capture::from_frames(s.chunks_exact(2).map(|c| [c[0], c[1]]).collect());
        let mut anchors: Vec<Anchor> = vec![];
        if let Ok(f) = std::fs::File::open(dir.join(format!("{name}.heard"))) {
            for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                if !line.starts_with("start ") {
                    continue;
                }
                let field = |k: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .map(str::to_string)
                        .unwrap_or_default()
                };
                anchors.push(Anchor {
                    dac_frame: field("dac_frame=").parse().unwrap(),
                    realtime_ns: field("realtime_ns=").parse().unwrap(),
                    rate_hz: field("rate_hz=").parse().unwrap(),
                });
            }
        }
        cap.anchors = anchors;
        cap
    }

    /// When DAC frame `n` (fractional) was heard, ns on the host's common clock.
    pub fn heard_ns(&self, n: f64) -> f64 {
        let a = self
            .anchors
            .iter()
            .rev()
            .find(|a| a.dac_frame as f64 <= n)
            .expect("no anchor before frame");
        a.realtime_ns as f64 + (n - a.dac_frame as f64) * 1e9 / a.rate_hz
    }

    /// The DAC frame (fractional) heard at common-clock time `t`.
    pub fn frame_at(&self, t: f64) -> f64 {
        let a = self
            .anchors
            .iter()
            .rev()
            .find(|a| a.realtime_ns as f64 <= t)
            .unwrap_or(&self.anchors[0]);
        a.dac_frame as f64 + (t - a.realtime_ns as f64) * a.rate_hz / 1e9
    }

    /// Index of the first frame carrying counter `k`.
    pub fn find_counter(&self, k: u32) -> Option<usize> {
        self.counters.iter().position(|c| *c == k)
    }

    /// Index of the first and last non-silent frame.
    pub fn sound_span(&self) -> Option<(usize, usize)> {
        let first = self.frames.iter().position(|f| *f != [0, 0])?;
        let last = self.frames.iter().rposition(|f| *f != [0, 0])?;
        Some((first, last))
    }

    /// Runs of consecutive counters at least `min_len` long: (output index, first counter, length).
    pub fn counter_runs(&self, min_len: usize) -> Vec<(usize, u32, usize)> {
        let mut runs = vec![];
        let mut i = 0;
        while i < self.counters.len() {
            let k = self.counters[i];
            if k == 0 {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < self.counters.len() && self.counters[j] == k + (j - i) as u32 {
                j += 1;
            }
            if j - i >= min_len {
                runs.push((i, k, j - i));
            }
            i = j;
        }
        runs
    }
}

/// The largest second difference of the left channel (full scale 1.0) and where it is: a click
/// is broadband, a tone's own second difference small (0.5 (2 pi f / rate)^2 at amplitude 0.5).
pub fn largest_second_difference(frames: &[[i16; 2]]) -> (usize, f64) {
    frames
        .windows(3)
        .map(|w| (w[2][0] as f64 - 2.0 * w[1][0] as f64 + w[0][0] as f64).abs() / 32_768.0)
        .enumerate()
        .fold((0, 0.0f64), |b, (i, d)| if d > b.1 { (i, d) } else { b })
}

/// Inter-speaker skew at output frame `ia` of `a`, µs on the host's common clock: where the
/// audio `a` played at `ia` appears in `b`, found by cross-correlating the noise channel (with
/// sub-sample interpolation of the peak), and how much earlier `a` played it. None when the
/// window is silent or the match is poor.
///
/// The two DACs run at different rates (each speaker resamples the stream to its own), so the
/// window's content is stretched differently on each: the correlation aligns the windows'
/// middles, and that is where the skew is read. (Read at their starts, it was off by half the
/// window times the DACs' rate difference: 21 µs for 2048 frames at 48 kHz and 1000 ppm.)
pub fn skew_us(a: &Capture, b: &Capture, ia: usize) -> Option<f64> {
    const W: usize = 2048;
    const L: i64 = 96;
    let win: Vec<f64> = a
        .frames
        .get(ia..ia + W)?
        .iter()
        .map(|f| f[1] as f64)
        .collect();
    let ea: f64 = win.iter().map(|x| x * x).sum();
    if ea < W as f64 * 1e5 {
        return None;
    }
    let jb = b.frame_at(a.heard_ns(ia as f64)).round() as i64;
    let corr = |lag: i64| -> f64 {
        let s = jb + lag;
        if s < 0 || s as usize + W > b.frames.len() {
            return 0.0;
        }
        let seg = &b.frames[s as usize..s as usize + W];
        let eb: f64 = seg.iter().map(|f| (f[1] as f64).powi(2)).sum();
        let dot: f64 = win.iter().zip(seg).map(|(x, f)| x * f[1] as f64).sum();
        if eb == 0.0 {
            0.0
        } else {
            dot / (ea * eb).sqrt()
        }
    };
    let (best, peak) =
        (-L..=L)
            .map(|l| (l, corr(l)))
            .fold((0, f64::MIN), |m, x| if x.1 > m.1 { x } else { m });
    if peak < 0.5 {
        return None;
    }
    let (c0, c1, c2) = (corr(best - 1), peak, corr(best + 1));
    let denom = c0 - 2.0 * c1 + c2;
    let frac = if denom.abs() > 1e-12 {
        0.5 * (c0 - c2) / denom
    } else {
        0.0
    };
    let pos_b = (jb + best) as f64 + frac;
    let mid = (W / 2) as f64;
    Some((a.heard_ns(ia as f64 + mid) - b.heard_ns(pos_b + mid)) / 1000.0)
}

pub use chorus::dsp::measure::thd_n_db;

/// Median and maximum of absolute values.
pub fn stats_abs(v: &[f64]) -> (f64, f64) {
    let mut a: Vec<f64> = v.iter().map(|x| x.abs()).collect();
    a.sort_by(|x, y| x.partial_cmp(y).unwrap());
    if a.is_empty() {
        return (0.0, 0.0);
    }
    (a[a.len() / 2], a[a.len() - 1])
}
