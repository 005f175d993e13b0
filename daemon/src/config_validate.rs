//! The config's validation: every problem, each named by its key.

use super::*;

impl Config {
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
        if let Err(e) = self.security.load_key() {
            problem(&mut p, &e.key, e.message);
        }
        if let Err(e) = self.api.load_token() {
            problem(&mut p, &e.key, e.message);
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
        if z.codec == Codec::Flac {
            check_flac(p, "zone.codec", z);
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
        let (above, below) = (s.auto_unicast_above_pct, s.auto_multicast_below_pct);
        if !(0.0..=100.0).contains(&above) {
            problem(p, "speaker.auto-unicast-above-pct", "must be 0..=100");
        }
        if !(0.0..=above.clamp(0.0, 100.0)).contains(&below) {
            problem(
                p,
                "speaker.auto-multicast-below-pct",
                "must be 0..=auto-unicast-above-pct",
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
            if z.codec == Some(Codec::Flac) {
                check_flac(p, &key("codec"), &self.zone);
            }
        }
    }
}

/// FLAC carries 16 and 24-bit samples, at rates its frame header can name.
fn check_flac(p: &mut Vec<Problem>, key: &str, z: &super::ZoneConfig) {
    if let Err(e) = crate::wire::flac_encode::FlacEncoder::new(z.rate, z.channels, z.sample_format)
    {
        problem(
            p,
            key,
            format!("\"flac\" cannot carry this zone's format: {e}"),
        );
    }
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
