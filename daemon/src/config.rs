//! Configuration: `/etc/chorus/chorus.toml`, kebab-case keys, unknown keys rejected, defaults
//! that work on one box. [`load`] parses and then [`Config::validate`] reports every problem with
//! the key it concerns.

use crate::wire::{Codec, Delivery, SampleFormat};
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
    /// How datagrams carry the audio: "pcm" or "flac" (lossless, 16 and 24-bit, about half
    /// the bytes on music: for Wi-Fi).
    pub codec: Codec,
    /// How the controller sends the stream: "multicast" (to the group, and by unicast to each
    /// speaker that asks) or "unicast" (to each speaker's own address, none to the group).
    pub delivery: Delivery,
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
    /// How its datagrams carry the audio (absent: `zone.codec`).
    pub codec: Option<Codec>,
    /// How the controller sends it (absent: `zone.delivery`).
    pub delivery: Option<Delivery>,
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
    /// How this speaker asks for its zone's stream: "multicast" (the group), "unicast" (to
    /// its own address: for Wi-Fi, where multicast goes slow and unacknowledged) or "auto"
    /// (unicast while the group loses more than `auto-unicast-above-pct` of the stream,
    /// back once it lost at most `auto-multicast-below-pct` for 5 s).
    pub delivery: SpeakerDelivery,
    pub auto_unicast_above_pct: f64,
    pub auto_multicast_below_pct: f64,
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

/// How a speaker asks for its zone's stream (`[speaker] delivery`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SpeakerDelivery {
    #[default]
    Multicast,
    Unicast,
    Auto,
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
    /// Speaker: the stream (`group:port`) its heartbeats name instead of its zone's (a speaker
    /// that hears the zone through a relay's copy on another group).
    pub heartbeat_stream: String,
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
            codec: Codec::Pcm,
            delivery: Delivery::Multicast,
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
/// Device buffer when not configured: 100 ms. The playout thread fills it only as far ahead as
/// the stream's lead (the zone's latency) less 40 ms, and refills it when half of that is left
/// (every 50 ms at the default latency, 150 ms; a stalled machine has 50 ms before the device
/// runs dry). A hole in the stream is asked for again when the audio after it comes; its
/// repair must come before the device drains to the refill mark: 100 ms later at the default
/// latency, 70 ms at 100 ms latency, where the thread fills 60 ms and wakes every 30 ms.
/// (Filling 80 ms at 100 ms latency let a hole show too late: a test with 20 ms loss bursts
/// concealed some.)
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
            delivery: SpeakerDelivery::Multicast,
            auto_unicast_above_pct: 5.0,
            auto_multicast_below_pct: 1.0,
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
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
    let cfg = parse(&text).map_err(|p| ConfigError::Parse {
        path: path.to_owned(),
        key: p.key,
        message: p.message,
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
pub fn parse(text: &str) -> Result<Config, Problem> {
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
        Problem::new(key, inner)
    })
}

impl Config {
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

    /// How the controller sends zone `name`'s stream (a speaker reads it off each datagram).
    pub fn codec_of(&self, name: &str) -> Codec {
        self.extra_zone(name)
            .and_then(|z| z.codec)
            .unwrap_or(self.zone.codec)
    }

    /// To whom the controller sends zone `name`'s stream.
    pub fn delivery_of(&self, name: &str) -> Delivery {
        self.extra_zone(name)
            .and_then(|z| z.delivery)
            .unwrap_or(self.zone.delivery)
    }

    /// The `[[controller.zones]]` entry of zone `name` (None: the first zone, or no zone).
    fn extra_zone(&self, name: &str) -> Option<&ExtraZone> {
        self.controller.zones.iter().find(|z| z.name == name)
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

/// This box's host name (the default speaker name), or "speaker" when it has none usable.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or("").to_string())
        .filter(|h| !h.is_empty() && h.len() <= 64 && !h.contains('/'))
        .unwrap_or_else(|| "speaker".into())
}

#[path = "config_secrets.rs"]
mod secrets;
#[path = "config_validate.rs"]
mod validate;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
