//! Attacks from the LAN against a default install (no datagram key, no API token), as real
//! processes: the controller, a speaker and an attacker each in their own network namespace;
//! and a careless day (a disk that fills up).
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus_tests::*;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn one_datagram_numbered_far_ahead_does_not_silence_the_zone() {
    retry_on_host_stall(one_datagram_numbered_far_ahead_does_not_silence_the_zone_once);
}

fn one_datagram_numbered_far_ahead_does_not_silence_the_zone_once() {
    // The attack: a copy of one of the stream's own datagrams, its sequence number 2^31 - 1
    // ahead. The replay window took it as the newest and refused every true datagram after
    // it as too old: the zone went silent until the controller restarted.
    let (lan, dir, net, controller) = lan_with_controller(3, "seqjump");
    let mut spk = start_speaker(
        &dir,
        &net.on(&lan, 2),
        &SpeakerSpec::sim("alpha", 250.0, 70.0),
    );
    wait_locked(&controller, 1);
    let spoofer = net
        .on(&lan, 3)
        .command(&bin("chorus-rig"))
        .args(["spoof", "--group", &net.group, "--port"])
        .arg(net.port.to_string())
        .args(["--interface", &lan.addr(3), "--seconds", "8"])
        .args(["--seq-jump", &(u32::MAX / 2).to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn chorus-rig spoof");
    std::thread::sleep(Duration::from_millis(300));
    let n = 48_000 * 4;
    let track = dir.join("counter.wav");
    write_counter_wav(&track, 1, n);
    play_to_end(&controller, &track, Duration::from_secs(15));
    let st = get(&format!("{}/api/v1/speaker", spk.api)).unwrap()["network"].clone();
    spk.stop();
    let out = spoofer.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("spoof: forged 1,"), "{said}");
    println!("{st}");
    assert_eq!(st["implausible"], 1, "{st}");
    // Every frame of the track played, in order: the forged datagram changed nothing.
    let runs = Capture::load_tap(&dir, "alpha").counter_runs(1_000);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].1, runs[0].2), (1, n as usize), "{runs:?}");
}

const TOKEN: &str = "a-long-enough-api-token-for-tests";

/// A daemon on host `k` of `lan` with the API token: the controller, or speaker `name`.
fn with_token(dir: &std::path::Path, net: &Net, speaker: Option<&str>) -> Daemon {
    let port = free_tcp_port();
    let role = match speaker {
        None => format!(
            "[controller]\nsync-port = {}\n{}[speaker]\nenabled = false\n",
            net.sync_port,
            media_roots()
        ),
        Some(name) => format!(
            "[controller]\nenabled = false\n[speaker]\nname = \"{name}\"\noutput = \"sim\"\npath = \"{}\"\n",
            dir.join(format!("{name}.wav")).display()
        ),
    };
    let cfg = format!(
        "log-level = \"info\"\n[api]\nlisten = \"{}:{port}\"\nmdns = false\ntoken = \"{TOKEN}\"\n[zone]\ngroup = \"{}\"\nport = {}\ninterface = \"{}\"\n{role}",
        net.api_host, net.group, net.port, net.interface
    );
    start_daemon_on(net, dir, speaker.unwrap_or("controller"), &cfg)
}

#[test]
fn a_forged_heartbeat_neither_moves_a_speaker_nor_learns_the_token() {
    retry_on_host_stall(a_forged_heartbeat_neither_moves_a_speaker_nor_learns_the_token_once);
}

fn a_forged_heartbeat_neither_moves_a_speaker_nor_learns_the_token_once() {
    // The attack: an impostor on host 3 sends heartbeats as "spk1" with its own API address.
    // The controller took the newest heartbeat's address, forwarded the next volume call there
    // with the API token in the clear, and echoed the impostor's answer.
    let lan = Lan::new(3);
    let dir = scratch("impostor");
    let net = Net::new();
    let controller = with_token(&dir, &net.on(&lan, 1), None);
    let spk = with_token(&dir, &net.on(&lan, 2), Some("spk1"));
    wait_locked(&controller, 1);
    let impostor = net
        .on(&lan, 3)
        .command(&bin("chorus-rig"))
        .args(["impostor", "--name", "spk1", "--seconds", "4"])
        .args(["--to", &format!("{}:{}", lan.addr(1), net.sync_port)])
        .args(["--api", &format!("{}:{}", lan.addr(3), free_tcp_port())])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn chorus-rig impostor");
    std::thread::sleep(Duration::from_millis(1_500));
    let (code, _, err) =
        chorusctl_with_token(&controller.api, Some(TOKEN), &["volume", "spk1", "40"]);
    assert_eq!(code, 0, "{err}");
    let said = impostor.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&said.stdout);
    println!("{said}");
    assert!(said.contains("impostor: heartbeats"), "{said}");
    assert!(
        !said.contains(TOKEN),
        "the token reached the impostor:\n{said}"
    );
    assert!(said.contains("requests 0"), "{said}");
    // The call reached the real speaker, and the controller says what it refused.
    let st = get(&format!("{}/api/v1/speaker", spk.api)).unwrap();
    assert_eq!(st["volume"], 40, "{st}");
    let refused = metric(&controller, "chorus_sync_heartbeats_refused_total");
    assert!(refused >= 4.0, "{refused}");
}

#[test]
fn web_pages_of_other_sites_and_rebound_names_cannot_drive_the_api() {
    retry_on_host_stall(web_pages_of_other_sites_and_rebound_names_cannot_drive_the_api_once);
}

fn web_pages_of_other_sites_and_rebound_names_cannot_drive_the_api_once() {
    // A default install has no token: any page a user on the LAN opens could POST to it
    // (text/plain needs no preflight), and a name of the attacker's that resolves to the box
    // makes its pages same-origin (DNS rebinding).
    let dir = scratch("csrf");
    let controller = start_controller(&dir, &Net::new(), "");
    let stop = format!("{}/api/v1/stop", controller.api);
    let host = controller.api.trim_start_matches("http://").to_string();
    let post = |headers: &[(&str, &str)]| {
        let mut r = ureq::post(&stop);
        for (k, v) in headers {
            r = r.set(k, v);
        }
        match r.send_string("{}") {
            Ok(resp) => resp.status(),
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                if code == 403 {
                    assert!(body.contains("\"forbidden\""), "{body}");
                }
                code
            }
            Err(e) => panic!("{e}"),
        }
    };
    let own = format!("http://{host}");
    let rebound = "evil.example:7780";
    for (headers, want) in [
        // A script: no Origin, no Sec-Fetch-*.
        (vec![("Content-Type", "application/json")], 200),
        // The box's own page.
        (
            vec![
                ("Content-Type", "application/json"),
                ("Origin", own.as_str()),
            ],
            200,
        ),
        // CSRF from another site.
        (
            vec![
                ("Content-Type", "text/plain"),
                ("Origin", "http://evil.example"),
            ],
            403,
        ),
        // DNS rebinding: same origin, but a name that is not the box's.
        (
            vec![("Host", rebound), ("Origin", "http://evil.example:7780")],
            403,
        ),
        (
            vec![("Host", rebound), ("Sec-Fetch-Site", "same-origin")],
            403,
        ),
    ] {
        assert_eq!(post(&headers), want, "{headers:?}");
    }
}

#[test]
fn repairs_go_only_to_hosts_that_receive_the_sync_answers() {
    retry_on_host_stall(repairs_go_only_to_hosts_that_receive_the_sync_answers_once);
}

fn repairs_go_only_to_hosts_that_receive_the_sync_answers_once() {
    // The reflection: one forged heartbeat made any address a "speaker", and repair requests
    // from it (or spoofed with a victim's address) were answered with whole audio datagrams:
    // 256 times what was sent. Now only a host that echoed the t3 of a sync answer it
    // received gets repairs; the impostor never completes an exchange.
    let (lan, dir, net, controller) = lan_with_controller(3, "reflect");
    let _spk = start_speaker(
        &dir,
        &net.on(&lan, 2),
        &SpeakerSpec::sim("alpha", -120.0, 40.0),
    );
    wait_locked(&controller, 1);
    let track = dir.join("counter.wav");
    write_counter_wav(&track, 1, 48_000 * 10);
    let (code, _, err) = chorusctl(&controller.api, &["play", track.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out = net
        .on(&lan, 3)
        .command(&bin("chorus-rig"))
        .args(["impostor", "--name", "ghost", "--seconds", "3"])
        .args(["--to", &format!("{}:{}", lan.addr(1), net.sync_port)])
        .args(["--api", &format!("{}:{}", lan.addr(3), free_tcp_port())])
        .args(["--group", &net.group, "--port", &net.port.to_string()])
        .output()
        .expect("run chorus-rig impostor");
    let said = String::from_utf8_lossy(&out.stdout);
    println!("{said}");
    let asked: u64 = said
        .split("repairs asked ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(asked >= 320, "{said}");
    assert!(said.contains("repair answers 0"), "{said}");
    let refused = metric(&controller, "chorus_repairs_refused_total");
    assert!(refused >= asked as f64, "{refused} refused of {asked}");
}

/// An unlabelled sample of a daemon's `/metrics`.
fn metric(d: &Daemon, name: &str) -> f64 {
    let text = ureq::get(&format!("{}/metrics", d.api))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

#[test]
fn a_file_output_on_a_full_disk_backs_off_and_says_so() {
    retry_on_host_stall(a_file_output_on_a_full_disk_backs_off_and_says_so_once);
}

fn a_file_output_on_a_full_disk_backs_off_and_says_so_once() {
    // A file output on a disk that fills up: each write failed, the "recovery" succeeded, and
    // the real-time playout thread spun a core at a million failed writes a second while the
    // status said nothing. A 256 KiB tmpfs fills in about a second of 48 kHz stereo.
    let dir = scratch("fulldisk");
    let disk = dir.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&disk)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mounting a tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let net = Net::new();
    let controller = start_controller(&dir, &net, "");
    let port = free_tcp_port();
    let cfg = format!(
        "log-level = \"info\"\n[api]\nlisten = \"127.0.0.1:{port}\"\nmdns = false\n[zone]\ngroup = \"{}\"\nport = {}\ninterface = \"127.0.0.1\"\n[controller]\nenabled = false\n[speaker]\nname = \"full\"\noutput = \"file\"\npath = \"{}\"\n",
        net.group,
        net.port,
        disk.join("full.wav").display()
    );
    let spk = start_daemon(&dir, "full", &cfg);
    wait_locked(&controller, 1);
    let track = dir.join("counter.wav");
    write_counter_wav(&track, 1, 48_000 * 20);
    let (code, _, err) = chorusctl(&controller.api, &["play", track.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let problem = wait_until(Duration::from_secs(10), || {
        let st = get(&format!("{}/api/v1/speaker", spk.api)).ok()?;
        let p = st["output_problem"].as_str()?.to_string();
        Some((p, st))
    });
    let (problem, st) = problem.expect("output_problem stays null on a full disk");
    println!("{problem}\n{}", st["playout"]);
    assert!(problem.contains("No space left on device"), "{problem}");
    // Backing off: a handful of errors a second, not a million; the problem stays shown (the
    // output is lost and reopened every 2 s, and fills up again).
    std::thread::sleep(Duration::from_secs(5));
    let st = get(&format!("{}/api/v1/speaker", spk.api)).unwrap();
    let errors = st["playout"]["output_errors"].as_u64().unwrap_or(0);
    assert!(errors < 200, "{errors} output errors: {st}");
    assert!(st["output_problem"].is_string(), "{st}");
}

#[test]
fn play_cannot_make_the_controller_fetch_from_this_box() {
    retry_on_host_stall(play_cannot_make_the_controller_fetch_from_this_box_once);
}

fn play_cannot_make_the_controller_fetch_from_this_box_once() {
    // Blind SSRF: `play http://127.0.0.1:PORT/...` (or a link-local metadata service, or a
    // redirect to one) made the controller connect, and retry for ever.
    let dir = scratch("ssrf");
    let controller = start_controller(&dir, &Net::new(), "");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/admin", listener.local_addr().unwrap());
    let (code, out, err) = chorusctl(&controller.api, &["play", &url]);
    assert_eq!(code, 0, "{out}{err}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        listener.accept().is_err(),
        "the controller connected to {url}"
    );
    let log = controller.log_text();
    assert!(log.contains("radio-allow-local"), "{log}");
}

/// A TCP connection to `api` (host:port) from the loopback address `from`.
fn connect_from(from: &str, api: &str) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&local.into())?;
    let to: std::net::SocketAddr = api.parse().unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

/// Whether the server closed the connection (it reads end of file or a reset within `wait`).
fn closed(c: &std::net::TcpStream, wait: Duration) -> bool {
    use std::io::Read;
    c.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 16];
    let mut r = c;
    !matches!(r.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
}

#[test]
fn idle_connections_from_one_host_neither_exhaust_the_api_nor_stay_for_ever() {
    retry_on_host_stall(
        idle_connections_from_one_host_neither_exhaust_the_api_nor_stay_for_ever_once,
    );
}

fn idle_connections_from_one_host_neither_exhaust_the_api_nor_stay_for_ever_once() {
    // The attack: a host opens connections and sends nothing. 1100 of them used up the
    // daemon's descriptors and the API stopped answering. Now one address gets 32
    // connections (the next is closed at once), and a connection that sends nothing is
    // closed after 10 s.
    let dir = scratch("idleconn");
    let controller = start_controller(&dir, &Net::new(), "");
    let api = controller.api.trim_start_matches("http://").to_string();
    let idle: Vec<_> = (0..40)
        .map(|_| connect_from("127.0.0.2", &api).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = idle
        .iter()
        .filter(|c| closed(c, Duration::from_millis(50)))
        .count();
    assert_eq!(
        refused, 8,
        "connections beyond 32 from one address are closed"
    );
    // Another address is served as usual, at once.
    let t = std::time::Instant::now();
    get(&format!("{}/api/v1/status", controller.api)).expect("the API answers");
    assert!(t.elapsed() < Duration::from_secs(2));
    // The idle ones are closed after 10 s.
    std::thread::sleep(Duration::from_secs(10));
    let open = idle
        .iter()
        .filter(|c| !closed(c, Duration::from_millis(50)))
        .count();
    assert_eq!(open, 0, "idle connections are closed");
}

#[test]
fn play_takes_files_from_the_media_roots_only_and_folder_walks_end() {
    retry_on_host_stall(play_takes_files_from_the_media_roots_only_and_folder_walks_end_once);
}

fn play_takes_files_from_the_media_roots_only_and_folder_walks_end_once() {
    // `play /etc/shadow`-style requests read any file the daemon could; a folder of
    // self-referencing symlinks was walked on the API's workers until the depth limit, 16
    // levels of every link, and the API stopped answering meanwhile.
    let dir = scratch("roots");
    let music = dir.join("music");
    std::fs::create_dir_all(music.join("album")).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/tone_44k1_s16_stereo.wav"),
        music.join("album/t.wav"),
    )
    .unwrap();
    std::fs::write(dir.join("secret.wav"), b"RIFF").unwrap();
    for k in 0..8 {
        std::os::unix::fs::symlink(&music, music.join(format!("album/loop{k}"))).unwrap();
    }
    std::os::unix::fs::symlink(dir.join("secret.wav"), music.join("s.wav")).unwrap();
    let roots = format!("media-roots = [{:?}]\n", music.to_string_lossy());
    let controller = start_controller(&dir, &Net::new(), &roots);
    let refused = [
        "/etc/passwd".to_string(),
        dir.join("secret.wav").to_string_lossy().into_owned(),
        format!("{}/../secret.wav", music.display()),
        music.join("s.wav").to_string_lossy().into_owned(),
    ];
    for uri in &refused {
        let (code, out, err) = chorusctl(&controller.api, &["--json", "play", uri]);
        assert_ne!(code, 0, "{uri}: {out}");
        assert!(
            err.contains("media-roots") && err.contains("403"),
            "{uri}: {err}"
        );
    }
    let t = std::time::Instant::now();
    let (code, out, err) = chorusctl(
        &controller.api,
        &["--json", "play", music.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let queue: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(queue["queue"].as_array().map(Vec::len), Some(1), "{queue}");
}
