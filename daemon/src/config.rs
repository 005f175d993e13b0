//! Configuration: `/etc/chorus/chorus.toml`, kebab-case keys, unknown keys rejected, defaults
//! that work on one box. [`load`] parses and then [`Config::validate`] reports every problem with
//! the key it concerns.

use crate::wire::SampleFormat;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Default config path.
pub const DEFAULT_PATH: &str = "/etc/chorus/chorus.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Log level: error, warn, info, debug, trace (RUST_LOG overrides).
    pub log_level: String,
    pub api: ApiConfig,
    pub zone: ZoneConfig,
    pub controller: ControllerConfig,
    pub speaker: SpeakerConfig,
    pub security: SecurityConfig,
    pub testing: TestingConfig,
}

/// Datagram authentication. The same key on every box of the zone; empty: none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// File holding the pre-shared key (at least 16 bytes; surrounding whitespace ignored).
    /// Keep it readable only by root and the chorus group. Not set: `key` beside the config
    /// file, if there is one (the package makes one at install); "": no key.
    pub key_file: Option<String>,
    /// The key itself, in this file (readable by whoever can read the config): for tests.
    pub key: String,
}

/// A config problem: the key and what is wrong with it.
type KeyedError = (String, String);

/// A secret given inline (`<section>.<name>`) or in a file (`<section>.<name>-file`), trimmed:
/// None when neither is set; with the key it came from, for messages.
fn load_secret(
    section: &str,
    name: &str,
    inline: &str,
    file: Option<&str>,
) -> Result<Option<(Vec<u8>, String)>, KeyedError> {
    let file = file.unwrap_or("");
    match (inline.is_empty(), file.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Err((
            section.into(),
            format!("set {name}-file or {name}, not both"),
        )),
        (false, true) => Ok(Some((
            inline.trim().as_bytes().to_vec(),
            format!("{section}.{name}"),
        ))),
        (true, false) => match read_small(file) {
            Ok(bytes) => Ok(Some((
                String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec(),
                format!("{section}.{name}-file"),
            ))),
            Err(e) => Err((
                format!("{section}.{name}-file"),
                format!("cannot read {file}: {e}"),
            )),
        },
    }
}

/// Reads at most 4 KiB of a file: a key file is small, and a path such as /dev/zero must not
/// hang the daemon or `check-config`.
fn read_small(path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // A FIFO would block the reload, check-config and SIGTERM; /dev/urandom is no key.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(4096)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl SecurityConfig {
    /// The key, read and checked, if one is configured.
    pub fn load_key(&self) -> Result<Option<Vec<u8>>, (String, String)> {
        let Some((key, name)) =
            load_secret("security", "key", &self.key, self.key_file.as_deref())?
        else {
            return Ok(None);
        };
        if key.len() < crate::wire::auth::MIN_KEY_LEN {
            return Err((
                name,
                format!(
                    "the key is {} bytes; use at least {} (e.g. `openssl rand -hex 32`)",
                    key.len(),
                    crate::wire::auth::MIN_KEY_LEN
                ),
            ));
        }
        Ok(Some(key))
    }

    /// The authenticator for this config (checked by `validate` first).
    pub fn auth(&self) -> crate::wire::auth::Auth {
        match self.load_key() {
            Ok(Some(k)) => crate::wire::auth::Auth::with_key(&k),
            _ => crate::wire::auth::Auth::none(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address and port the HTTP API listens on.
    pub listen: String,
    /// File holding a bearer token that calls which change state must carry
    /// (`Authorization: Bearer <token>`); empty: no token. The same token on every box (the
    /// controller passes it on to speakers). Not set: `api-token` beside the config file, if
    /// there is one (the package makes one at install); "": no token.
    pub token_file: Option<String>,
    /// The token itself, in this file: for tests.
    pub token: String,
    /// Require the token on calls that only read as well.
    pub protect_reads: bool,
    /// Calls that change state accepted per client and second (twice that in a burst).
    pub mutating_per_second: u32,
    /// Announce this daemon with mDNS/DNS-SD (`_chorus._tcp`), so that `chorusctl` finds the
    /// controller by itself; a controller also lists the speakers it finds that way.
    pub mdns: bool,
    /// Host names (besides addresses, `localhost`, `.local` names and this host's name) under
    /// which web pages may call the API (see `api::browser`).
    pub allowed_hosts: Vec<String>,
}

/// Shortest API token accepted, bytes.
pub const MIN_TOKEN_LEN: usize = 16;

impl ApiConfig {
    /// The token, read and checked, if one is configured.
    pub fn load_token(&self) -> Result<Option<Vec<u8>>, (String, String)> {
        let Some((token, key)) =
            load_secret("api", "token", &self.token, self.token_file.as_deref())?
        else {
            return Ok(None);
        };
        if token.len() < MIN_TOKEN_LEN {
            return Err((
                key,
                format!(
                    "the token is {} bytes; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 24`)",
                    token.len()
                ),
            ));
        }
        if token.iter().any(|b| !b.is_ascii_graphic()) {
            return Err((
                key,
                "the token must be printable ASCII without spaces".into(),
            ));
        }
        Ok(Some(token))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ZoneConfig {
    pub name: String,
    /// IPv4 multicast group of the zone's audio stream.
    pub group: String,
    /// UDP port of the audio stream.
    pub port: u16,
    /// IPv4 address of the interface to send and receive multicast on (0.0.0.0: the default
    /// route's interface).
    pub interface: String,
    /// Multicast TTL (1 keeps the stream on the local network).
    pub ttl: u32,
    /// Deliver multicast to receivers on the sending host too (needed when a box is both
    /// controller and speaker).
    pub loopback: bool,
    /// Stream sample rate, Hz.
    pub rate: u32,
    pub channels: u8,
    pub sample_format: SampleFormat,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ControllerConfig {
    pub enabled: bool,
    /// UDP port of the clock-sync and heartbeat service.
    pub sync_port: u16,
    /// Time from sending a frame to hearing it: the speakers' buffer, ms.
    pub latency_ms: u32,
    /// Fade applied on pause, seek and skip, ms (no clicks).
    pub fade_ms: u32,
    /// Forward error correction: a parity datagram after every this many audio datagrams
    /// (overhead 1/n; a speaker rebuilds one lost datagram per group without asking). 0: off.
    pub fec_group: u32,
    /// Format of raw PCM read from a FIFO played as an item (`rate:bits:channels`, as in
    /// Snapcast's pipe source).
    pub fifo_format: String,
    /// Format an `alsa:DEVICE` (line-in) item is captured in (`rate:bits:channels`).
    pub capture_format: String,
    /// Let `play http://...` reach this box (loopback) and link-local addresses (169.254/16,
    /// fe80::/10: cloud metadata services and the like); off: refused, against requests forged
    /// through the API.
    pub radio_allow_local: bool,
    /// Folders `play` and `queue add` take files, folders, playlists and FIFOs from (symlinks
    /// and `..` resolved first); anything else is refused (403).
    pub media_roots: Vec<String>,
    /// More zones this controller streams, each its own queue on its own group (`[zone]` is
    /// the first; the others share its format, interface and TTL).
    pub zones: Vec<ExtraZone>,
}

/// A further zone of a controller (`[[controller.zones]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ExtraZone {
    pub name: String,
    /// IPv4 multicast group of the zone's stream.
    pub group: String,
    /// UDP port of the stream (0: `zone.port`).
    pub port: u16,
}

/// A zone, resolved: its name and where its stream is (what a controller streams, what a
/// speaker plays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneAddr {
    pub name: String,
    pub group: Ipv4Addr,
    pub port: u16,
}

impl ZoneAddr {
    /// `group:port`, as heartbeats carry it.
    pub fn stream(&self) -> String {
        format!("{}:{}", self.group, self.port)
    }
}

/// Most zones one controller streams.
pub const MAX_ZONES: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Copy)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    Alsa,
    File,
    Sim,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SpeakerConfig {
    pub enabled: bool,
    /// Name shown by the controller and used by `chorusctl volume NAME`.
    pub name: String,
    /// Controller sync address (host:port). Empty: learnt from the controller's announcements
    /// on the zone's multicast group.
    pub controller: String,
    pub output: OutputKind,
    /// ALSA device name (output = "alsa").
    pub device: String,
    /// WAV file written (output = "file" or "sim").
    pub path: String,
    /// Period and buffer sizes asked of the device, frames; 0: sized by time at the stream's
    /// rate (`device_frames`).
    pub period_frames: u32,
    pub buffer_frames: u32,
    /// Latency after the DAC (amplifier, DSP), ms; subtracted from the playout schedule.
    pub extra_latency_ms: f64,
    /// Initial volume 0..=100.
    pub volume: u8,
    /// `sim` only: DAC rate error, ppm.
    pub dac_ppm: f64,
    /// `sim` only: the DAC reports its position in steps of this many frames (like drivers
    /// whose pointer moves once a period); 0: exact, stamped at the frame.
    pub sim_delay_step_frames: u32,
    /// `sim` only, with steps: stamp the position when asked instead of when it moved (like a
    /// driver or plugin without hardware-pointer timestamps): stale by up to a step.
    pub sim_stale_stamps: bool,
    /// `sim` only: uniform noise on the delay timestamps, ± µs.
    pub sim_timestamp_noise_us: f64,
    /// `sim` only: the first status read after a pause (a wake-up) comes late by a random
    /// 0..this many µs, like a playout thread woken late by a busy or small machine.
    pub sim_wake_jitter_us: u32,
    /// `sim` only: the device fails (like an ALSA xrun: playback stops, what was queued is
    /// dropped, the write reports an error) every this many ms of audio; 0: never.
    pub sim_xrun_every_ms: u32,
    /// `sim` only: log of when frames are heard (common host clock), for measurement.
    pub heard_log: String,
}

/// Knobs for tests and the benchmark rig only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TestingConfig {
    /// Offset added to this process's clock, ms.
    pub clock_offset_ms: f64,
    /// Frequency error of this process's clock, ppm.
    pub clock_ppm: f64,
    /// Speaker: WAV file of the stream as scheduled, before the resampler and volume (lets
    /// tests check content sample by sample while the resampler aligns finer than a sample).
    pub stream_tap: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: "info".into(),
            api: ApiConfig::default(),
            zone: ZoneConfig::default(),
            controller: ControllerConfig::default(),
            speaker: SpeakerConfig::default(),
            security: SecurityConfig::default(),
            testing: TestingConfig::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "0.0.0.0:7780".into(),
            token_file: None,
            token: String::new(),
            protect_reads: false,
            mutating_per_second: 20,
            mdns: true,
            allowed_hosts: vec![],
        }
    }
}

impl Default for ZoneConfig {
    fn default() -> Self {
        ZoneConfig {
            name: "home".into(),
            group: "239.255.77.1".into(),
            port: 7700,
            interface: "0.0.0.0".into(),
            ttl: 1,
            loopback: true,
            rate: 48_000,
            channels: 2,
            sample_format: SampleFormat::S16,
        }
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            enabled: true,
            sync_port: 7701,
            latency_ms: 150,
            fade_ms: 10,
            fec_group: 8,
            fifo_format: "48000:16:2".into(),
            capture_format: "48000:16:2".into(),
            radio_allow_local: false,
            media_roots: default_media_roots(),
            zones: vec![],
        }
    }
}

/// The folders played from when the config names none: where music lives on a Debian box
/// (/srv/music, /media for disks), the daemon's state folder, and the user's own music folder
/// (`$XDG_MUSIC_DIR`, else `~/Music`).
fn default_media_roots() -> Vec<String> {
    let mut roots: Vec<String> = ["/srv/music", "/var/lib/chorus", "/media"]
        .map(String::from)
        .into();
    let own = std::env::var_os("XDG_MUSIC_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join("Music")));
    if let Some(d) = own.filter(|d| d.is_absolute()) {
        roots.push(d.to_string_lossy().into_owned());
    }
    roots
}

/// Device period when not configured: 10 ms.
const AUTO_PERIOD_MS: u32 = 10;
/// Device buffer when not configured: 100 ms. The playout thread refills it when 20 ms are
/// left, so it wakes every 80 ms, but it fills it only as far ahead as the stream's lead (the
/// zone's latency) less 40 ms: a hole in the stream shows at the first wake-up after the audio
/// that follows it came, and its repair must come before the device drains to 20 ms. At the
/// default latency (150 ms) that leaves 30 ms for the repair of a 20 ms loss burst; at 100 ms
/// latency the thread fills 60 ms and wakes every 40 ms, leaving 20 ms. (Filling 80 ms at
/// 100 ms latency let a hole show too late: a test with 20 ms loss bursts concealed some.)
const AUTO_BUFFER_MS: u32 = 100;

impl SpeakerConfig {
    /// Period and buffer to ask of the device at `rate`, frames: as configured, or sized by
    /// time (10 ms and 60 ms, whole periods) where the config says 0.
    pub fn device_frames(&self, rate: u32) -> (u32, u32) {
        let ms = |n: u32| rate as u64 * n as u64 / 1000;
        let period = match self.period_frames {
            0 => ms(AUTO_PERIOD_MS).clamp(32, 16_384),
            p => p as u64,
        };
        let buffer = match self.buffer_frames {
            0 => period * ms(AUTO_BUFFER_MS).div_ceil(period).max(2),
            b => (b as u64).max(2 * period),
        };
        (period as u32, buffer.min(65_536) as u32)
    }
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig {
            enabled: true,
            name: host_name(),
            controller: String::new(),
            output: OutputKind::Alsa,
            device: "default".into(),
            path: String::new(),
            period_frames: 0,
            buffer_frames: 0,
            extra_latency_ms: 0.0,
            volume: 100,
            dac_ppm: 0.0,
            sim_delay_step_frames: 0,
            sim_stale_stamps: false,
            sim_timestamp_noise_us: 0.0,
            sim_wake_jitter_us: 0,
            sim_xrun_every_ms: 0,
            heard_log: String::new(),
        }
    }
}

/// One problem in a config, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {key}: {message}")]
    Parse {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("config {path} is invalid:\n{}", problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let cfg = parse(&text).map_err(|(key, message)| ConfigError::Parse {
        path: path.to_owned(),
        key,
        message,
    })?;
    let mut cfg = cfg;
    cfg.secrets_beside(path.parent().unwrap_or(Path::new(".")));
    let problems = cfg.validate();
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }
}

/// Parses TOML text into a config; on error returns the key path and the problem.
pub fn parse(text: &str) -> Result<Config, (String, String)> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." {
            "(top level)".to_string()
        } else {
            key
        };
        // toml's message carries a line/column excerpt; keep its first meaningful line.
        let inner = e.into_inner().message().trim().to_string();
        (key, inner)
    })
}

fn problem(out: &mut Vec<Problem>, key: &str, message: impl Into<String>) {
    // A 50 MB bad value is not echoed whole.
    let mut message: String = message.into();
    if message.chars().count() > 200 {
        message = message.chars().take(200).collect::<String>() + "…";
    }
    out.push(Problem {
        key: key.into(),
        message,
    });
}

/// Whether an IPv4 address can carry a zone: multicast, and not in 224.0.0.0/24 (link-local
/// control: all hosts, routers, mDNS, ...).
fn zone_group(a: Ipv4Addr) -> bool {
    a.is_multicast() && a.octets()[..3] != [224, 0, 0]
}

impl Config {
    /// The secrets the package generates beside the config file (`key`, `api-token`) are used
    /// when the config names none, so that a default install is authenticated; `key-file = ""`
    /// or `token-file = ""` turns that off. A file that is there but cannot be read is an
    /// error, named with its key (`check-config` run without root says so).
    pub fn secrets_beside(&mut self, dir: &Path) {
        let beside = |slot: &mut Option<String>, inline: &str, name: &str| {
            if slot.is_none() && inline.is_empty() {
                let p = dir.join(name);
                let found = std::fs::symlink_metadata(&p).is_ok();
                *slot = Some(if found {
                    p.to_string_lossy().into_owned()
                } else {
                    String::new()
                });
            }
        };
        beside(&mut self.security.key_file, &self.security.key, "key");
        beside(&mut self.api.token_file, &self.api.token, "api-token");
    }

    /// What guards this box, in words: where the datagram key and the API token come from.
    pub fn protection(&self) -> String {
        let from = |inline: &str, file: &Option<String>, key: &str| match file.as_deref() {
            Some(f) if !f.is_empty() => f.to_string(),
            _ if !inline.is_empty() => format!("[{key}]"),
            _ => String::new(),
        };
        let key = from(&self.security.key, &self.security.key_file, "security");
        let token = from(&self.api.token, &self.api.token_file, "api");
        let key = if key.is_empty() {
            "datagrams NOT authenticated".to_string()
        } else {
            format!("datagrams authenticated with {key}")
        };
        let token = if token.is_empty() {
            "API without a token".to_string()
        } else {
            format!("API token from {token}")
        };
        format!("{key}, {token}")
    }

    /// Every problem in the config (empty: valid).
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if !["error", "warn", "info", "debug", "trace", "off"].contains(&self.log_level.as_str()) {
            problem(
                &mut p,
                "log-level",
                format!(
                    "unknown level {:?} (error, warn, info, debug, trace, off)",
                    self.log_level
                ),
            );
        }
        if let Err((key, why)) = self.security.load_key() {
            problem(&mut p, &key, why);
        }
        if let Err((key, why)) = self.api.load_token() {
            problem(&mut p, &key, why);
        }
        if self.api.mutating_per_second == 0 {
            problem(&mut p, "api.mutating-per-second", "must be at least 1");
        }
        if self.api.listen.parse::<SocketAddr>().is_err() {
            problem(
                &mut p,
                "api.listen",
                format!("{:?} is not an address:port", self.api.listen),
            );
        }
        self.check_zone(&mut p);
        if !self.controller.enabled && !self.speaker.enabled {
            problem(
                &mut p,
                "controller.enabled",
                "neither controller nor speaker is enabled: nothing to run",
            );
        }
        if self.controller.enabled {
            self.check_controller(&mut p);
        }
        if self.speaker.enabled {
            self.check_speaker(&mut p);
        }
        if !self.testing.stream_tap.is_empty() {
            check_parent(&mut p, "testing.stream-tap", &self.testing.stream_tap);
        }
        if !(-2_000.0..=2_000.0).contains(&self.testing.clock_ppm) {
            problem(&mut p, "testing.clock-ppm", "must be within ±2000");
        }
        p
    }

    /// The zone's own keys.
    fn check_zone(&self, p: &mut Vec<Problem>) {
        let z = &self.zone;
        match z.group.parse::<Ipv4Addr>() {
            Ok(a) if zone_group(a) => {}
            Ok(_) => problem(
                p,
                "zone.group",
                format!(
                    "{} is not a multicast address for a zone (224.0.0.0/4 outside \
                     224.0.0.0/24, e.g. 239.255.77.1)",
                    z.group
                ),
            ),
            Err(_) => problem(
                p,
                "zone.group",
                format!("{:?} is not an IPv4 address", z.group),
            ),
        }
        if z.interface.parse::<Ipv4Addr>().is_err() {
            problem(
                p,
                "zone.interface",
                format!("{:?} is not an IPv4 interface address", z.interface),
            );
        }
        if z.port == 0 {
            problem(p, "zone.port", "must not be 0");
        }
        if z.ttl == 0 || z.ttl > 255 {
            problem(p, "zone.ttl", "must be 1..=255");
        }
        if !(8_000..=384_000).contains(&z.rate) {
            problem(
                p,
                "zone.rate",
                format!("{} Hz is outside 8000..=384000", z.rate),
            );
        }
        if !(1..=8).contains(&z.channels) {
            problem(
                p,
                "zone.channels",
                format!("{} is outside 1..=8", z.channels),
            );
        }
        if z.name.is_empty() {
            problem(p, "zone.name", "must not be empty");
        }
    }

    /// The controller's keys (when it is enabled).
    fn check_controller(&self, p: &mut Vec<Problem>) {
        let c = &self.controller;
        if !(20..=5_000).contains(&c.latency_ms) {
            problem(
                p,
                "controller.latency-ms",
                format!("{} is outside 20..=5000", c.latency_ms),
            );
        }
        if c.fade_ms > 200 {
            problem(p, "controller.fade-ms", "must be at most 200");
        }
        if let Err(e) = c.fifo_format.parse::<crate::audio::pipe::PipeFormat>() {
            problem(p, "controller.fifo-format", e);
        }
        if let Err(e) = c.capture_format.parse::<crate::audio::pipe::PipeFormat>() {
            problem(p, "controller.capture-format", e);
        }
        self.check_zones(p);
        if let Some(r) = c.media_roots.iter().find(|r| !Path::new(r).is_absolute()) {
            problem(
                p,
                "controller.media-roots",
                format!("{r:?} is not an absolute path"),
            );
        }
        if c.fec_group as usize > crate::wire::fec::MAX_GROUP {
            problem(
                p,
                "controller.fec-group",
                format!(
                    "{} is outside 0..={} (0: no parity)",
                    c.fec_group,
                    crate::wire::fec::MAX_GROUP
                ),
            );
        }
        if c.sync_port == 0 {
            problem(p, "controller.sync-port", "must not be 0");
        }
    }

    /// The speaker's keys (when it is enabled).
    fn check_speaker(&self, p: &mut Vec<Problem>) {
        let s = &self.speaker;
        if s.name.is_empty() || s.name.len() > 64 || s.name.contains('/') {
            problem(p, "speaker.name", "must be 1..=64 bytes without '/'");
        }
        if !s.controller.is_empty() && s.controller.parse::<SocketAddr>().is_err() {
            problem(
                p,
                "speaker.controller",
                format!("{:?} is not an address:port", s.controller),
            );
        }
        if s.volume > 100 {
            problem(
                p,
                "speaker.volume",
                format!("{} is outside 0..=100", s.volume),
            );
        }
        if s.period_frames != 0 && !(32..=16_384).contains(&s.period_frames) {
            problem(p, "speaker.period-frames", "must be 0 (auto) or 32..=16384");
        }
        if s.buffer_frames != 0
            && (s.buffer_frames < 2 * s.period_frames.max(32) || s.buffer_frames > 65_536)
        {
            problem(
                p,
                "speaker.buffer-frames",
                "must be 0 (auto) or at least two periods and at most 65536",
            );
        }
        if !(0.0..=1_000.0).contains(&s.extra_latency_ms) {
            problem(p, "speaker.extra-latency-ms", "must be 0..=1000");
        }
        if s.sim_delay_step_frames > 16_384 {
            problem(p, "speaker.sim-delay-step-frames", "must be at most 16384");
        }
        if !(0.0..=10_000.0).contains(&s.sim_timestamp_noise_us) {
            problem(p, "speaker.sim-timestamp-noise-us", "must be 0..=10000");
        }
        if s.sim_wake_jitter_us > 100_000 {
            problem(p, "speaker.sim-wake-jitter-us", "must be at most 100000");
        }
        if !(-2_000.0..=2_000.0).contains(&s.dac_ppm) {
            problem(p, "speaker.dac-ppm", "must be within ±2000");
        }
        match s.output {
            OutputKind::Alsa => {
                if s.device.is_empty() {
                    problem(p, "speaker.device", "must name an ALSA device");
                }
            }
            OutputKind::File | OutputKind::Sim => {
                if s.path.is_empty() {
                    problem(
                        p,
                        "speaker.path",
                        "the file and sim outputs need a WAV path",
                    );
                } else {
                    check_parent(p, "speaker.path", &s.path);
                }
            }
        }
        if !s.heard_log.is_empty() {
            check_parent(p, "speaker.heard-log", &s.heard_log);
        }
        if self.controller.enabled
            && latency_budget_too_small(self.controller.latency_ms, s, self.zone.rate)
        {
            problem(
                p,
                "speaker.buffer-frames",
                "the device buffer plus extra latency exceeds controller.latency-ms",
            );
        }
    }

    fn check_zones(&self, p: &mut Vec<Problem>) {
        let zones = &self.controller.zones;
        if zones.len() + 1 > MAX_ZONES {
            problem(
                p,
                "controller.zones",
                format!("{} zones: at most {MAX_ZONES} in all", zones.len() + 1),
            );
        }
        let mut seen = vec![(self.zone.name.clone(), self.group(), self.zone.port)];
        for (i, z) in zones.iter().enumerate() {
            let key = |k: &str| format!("controller.zones[{i}].{k}");
            if z.name.is_empty() || z.name.len() > 64 {
                problem(p, &key("name"), "must be 1..=64 bytes");
            }
            let group = match z.group.parse::<Ipv4Addr>() {
                Ok(a) if zone_group(a) => a,
                _ => {
                    problem(
                        p,
                        &key("group"),
                        format!(
                            "{:?} is not an IPv4 multicast address for a zone (not \
                             224.0.0.0/24)",
                            z.group
                        ),
                    );
                    continue;
                }
            };
            let port = if z.port == 0 { self.zone.port } else { z.port };
            if let Some(other) = seen.iter().find(|s| s.0 == z.name) {
                problem(p, &key("name"), format!("{:?} names two zones", other.0));
            } else if let Some(other) = seen.iter().find(|s| (s.1, s.2) == (group, port)) {
                problem(
                    p,
                    &key("group"),
                    format!("{group}:{port} is zone {:?}'s stream already", other.0),
                );
            }
            seen.push((z.name.clone(), group, port));
        }
    }

    /// Every zone the controller streams, the first being `[zone]` (validated).
    pub fn zones(&self) -> Vec<ZoneAddr> {
        let first = ZoneAddr {
            name: self.zone.name.clone(),
            group: self.group(),
            port: self.zone.port,
        };
        std::iter::once(first)
            .chain(self.controller.zones.iter().map(|z| ZoneAddr {
                name: z.name.clone(),
                group: z.group.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
                port: if z.port == 0 { self.zone.port } else { z.port },
            }))
            .collect()
    }

    /// The zone's multicast group (validated).
    pub fn group(&self) -> Ipv4Addr {
        self.zone
            .group
            .parse()
            .unwrap_or(Ipv4Addr::new(239, 255, 77, 1))
    }
    /// The zone's interface address (validated).
    pub fn interface(&self) -> Ipv4Addr {
        self.zone.interface.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
}

/// A configured device buffer must leave room for the latency after the DAC. (The automatic
/// one may not at a short latency: the playout thread only writes ahead audio that has come,
/// waking more often to do so.)
fn latency_budget_too_small(latency_ms: u32, s: &SpeakerConfig, rate: u32) -> bool {
    if s.buffer_frames == 0 {
        return false;
    }
    let buffer_ms = s.device_frames(rate).1 as f64 * 1000.0 / rate as f64;
    buffer_ms + s.extra_latency_ms > latency_ms as f64
}

fn check_parent(p: &mut Vec<Problem>, key: &str, path: &str) {
    let parent = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = parent {
        if !dir.is_dir() {
            problem(
                p,
                key,
                format!("directory {} does not exist", dir.display()),
            );
        }
    }
}

/// This box's host name (the default speaker name), or "speaker" when it has none usable.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or("").to_string())
        .filter(|h| !h.is_empty() && h.len() <= 64 && !h.contains('/'))
        .unwrap_or_else(|| "speaker".into())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
