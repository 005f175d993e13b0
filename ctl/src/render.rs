//! How chorusctl shows what the API answers, for people (`--json` prints the answer as JSON).

use crate::{Answer, Cmd};
use chorus_api::{
    Found, QueueView, SpeakerInfo, SpeakerStatus, Stamps, Status, ZoneList, ZoneStatus,
};

pub(crate) fn render_queue(q: &QueueView) -> String {
    let mut o = format!("repeat {}\n", name(&q.repeat));
    if q.items.is_empty() {
        o += "  (empty)\n";
    }
    for (i, item) in q.items.iter().enumerate() {
        let here = q.index == Some(i);
        o += &format!("{} {:>3}. {item}\n", if here { ">" } else { " " }, i + 1);
    }
    o
}

/// The name the API gives a value of one of its enums (`"off"`, `"playing"`, ...).
fn name(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A progress bar of `width` cells.
pub(crate) fn bar(pos: f64, dur: f64, width: usize) -> String {
    let done = if dur > 0.0 {
        ((pos / dur).clamp(0.0, 1.0) * width as f64).round() as usize
    } else {
        0
    };
    format!("[{}{}]", "#".repeat(done), "-".repeat(width - done))
}

/// Artist and album, as far as they are known.
fn by(z: &ZoneStatus) -> Option<String> {
    let parts: Vec<&str> = [z.artist.as_deref(), z.album.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    (!parts.is_empty()).then(|| parts.join(" — "))
}

pub(crate) fn render_watch(v: &Status) -> String {
    let mut o = String::new();
    if let Some(ctl) = &v.controller {
        match &ctl.zone {
            Some(z) => {
                o += &format!(
                    "chorus  zone {}  {}\n\n",
                    z.zone,
                    name(&z.state).to_uppercase()
                );
                match &z.title {
                    Some(t) => {
                        o += &format!("  {t}\n");
                        if let Some(b) = by(z) {
                            o += &format!("  {b}\n");
                        }
                        o += &format!(
                            "  {} {} / {}\n\n",
                            bar(z.position_s, z.duration_s.unwrap_or(0.0), 40),
                            fmt_time(z.position_s),
                            z.duration_s.map(fmt_time).unwrap_or_else(|| "?".into())
                        );
                    }
                    None => o += "  nothing playing\n\n",
                }
            }
            None => o += "chorus  zone unavailable\n\n",
        }
        o += "speakers:\n";
        o += &render_speakers(&ctl.speakers);
    }
    if let Some(s) = &v.speaker {
        o += &render_speaker_detail(s);
    }
    o += "\n(Ctrl-C to quit)\n";
    o
}

pub(crate) fn fmt_time(s: f64) -> String {
    let s = s.max(0.0);
    format!("{}:{:04.1}", (s / 60.0).floor() as u64, s % 60.0)
}

pub(crate) fn render_zone(z: &ZoneStatus) -> String {
    let mut o = format!(
        "zone {}: {}{}\n",
        z.zone,
        name(&z.state),
        match (z.volume, z.muted) {
            (_, true) => "  (zone muted)".to_string(),
            (v, false) if v < 100 => format!("  (zone volume {v})"),
            _ => String::new(),
        }
    );
    if let Some(t) = &z.title {
        let pos = fmt_time(z.position_s);
        let dur = z.duration_s.map(fmt_time).unwrap_or_else(|| "?".into());
        let idx = z.index.map(|i| i + 1).unwrap_or(0);
        let n = z.queue.len();
        o += &format!("  now playing: {t}  {pos} / {dur}  (item {idx} of {n})\n");
        if let Some(b) = by(z) {
            o += &format!("               {b}\n");
        }
    }
    let st = &z.stream;
    o += &format!(
        "  stream: {}, {} Hz, {} ch, {}, {}, latency {} ms\n",
        st.group,
        st.rate,
        st.channels,
        name(&st.sample_format),
        name(&st.codec),
        st.latency_ms
    );
    for e in z.errors.iter().rev().take(3) {
        o += &format!("  error: {}\n", e.message);
    }
    o
}

pub(crate) fn render_zones(v: &ZoneList) -> String {
    let mut o = String::new();
    for z in &v.zones {
        o += &format!(
            "{:<16} {:<22} {:<8} volume {:>3}{}  {}\n    speakers: {}\n",
            z.name,
            z.stream,
            z.state.map(|s| name(&s)).unwrap_or_else(|| "?".into()),
            z.volume
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
            if z.muted == Some(true) {
                " (muted)"
            } else {
                ""
            },
            z.title.as_deref().unwrap_or("-"),
            if z.speakers.is_empty() {
                "none".to_string()
            } else {
                z.speakers.join(", ")
            }
        );
    }
    o
}

pub(crate) fn render_speakers(list: &[SpeakerInfo]) -> String {
    if list.is_empty() {
        return "  no speakers yet\n".into();
    }
    let mut o = String::new();
    for s in list {
        let sync = match s.sync_error_us {
            Some(e) => format!("sync error {e:+.0} µs"),
            None => "not playing".into(),
        };
        o += &format!(
            "  {:<16} {:<8} volume {:>3}{}  {}  {}  {}{}\n",
            s.name,
            if s.online { "online" } else { "LOST" },
            s.volume,
            if s.muted { " (muted)" } else { "" },
            if s.locked { "locked" } else { "unlocked" },
            sync,
            name(&s.delivery),
            s.zone
                .as_deref()
                .map(|z| format!("  zone {z}"))
                .unwrap_or_default()
        );
    }
    o
}

/// Speakers that announce themselves (mDNS) but do not reach the controller.
pub(crate) fn render_discovered(d: &[Found]) -> String {
    let mut o = String::new();
    for s in d {
        o += &format!(
            "  {:<16} NOT JOINED: announces itself at {} but sends no heartbeats here (check its key, group and firewall)\n",
            s.name, s.api_url
        );
    }
    o
}

pub(crate) fn render_speaker_detail(s: &SpeakerStatus) -> String {
    let mut o = format!(
        "speaker {}: volume {}{}\n",
        s.name,
        s.volume,
        if s.muted { " (muted)" } else { "" }
    );
    match &s.clock {
        Some(c) => {
            o += &format!(
                "  clock: {} offset {:.3} ms, {:+.1} ppm, rtt {:.0} µs, est. error ±{:.0} µs\n",
                if s.locked { "locked" } else { "locking" },
                c.offset_ns as f64 / 1e6,
                c.freq_ppm,
                c.rtt_us,
                c.est_error_us
            )
        }
        None => o += "  clock: no controller yet\n",
    }
    o += &format!("  stream: {} by {}\n", s.stream, name(&s.delivery));
    if let Some(out) = &s.output {
        o += &format!(
            "  output: {} {} ({} Hz, period {}, buffer {} frames), extra latency {} ms\n",
            out.backend,
            out.device,
            out.rate,
            out.period_frames,
            out.buffer_frames,
            s.latency.extra_ms
        );
    }
    if let Some(d) = &s.playout.device {
        // The playout thread's model of the device clock (see docs/ARCHITECTURE.md).
        let stamps = match d.stamps {
            Stamps::AtCall => "stamps at call",
            Stamps::AtPointerUpdate => "stamps at pointer update",
        };
        let edges = match d.edge_jitter_us {
            Some(j) => format!(", edges jitter by {j:.0} µs"),
            None => String::new(),
        };
        o += &format!(
            "  device: pointer step {} frames, {stamps}{edges}, DAC {:+.1} ppm against this box, known to ±{:.1} µs\n",
            d.pointer_step_frames,
            d.rate_ppm,
            d.uncertainty_us / 2.0
        );
    }
    let p = &s.playout;
    let resampler = if p.resampling {
        format!("resampling {:+.1} ppm", p.ratio_ppm)
    } else {
        "bit-exact (no drift)".to_string()
    };
    o += &format!(
        "  playout: sync error {}, {resampler}, buffered {:.0} ms, lost {} late {} resyncs {}{}\n",
        p.sync_error_us
            .map(|e| format!("{e:+.1} µs"))
            .unwrap_or_else(|| "-".into()),
        p.buffered_ms,
        p.counts.frames_lost,
        p.counts.frames_late,
        p.counts.resyncs,
        match p.counts.device_jumps {
            0 => String::new(),
            n => format!(" (and {n} jumps after the device's own timeline moved)"),
        }
    );
    o
}

/// What a command's answer looks like for people.
pub(crate) fn render(cmd: &Cmd, v: &Answer) -> String {
    match (cmd, v) {
        (Cmd::Assign { speaker, zone }, _) => format!("{speaker} moves to zone {zone}\n"),
        (Cmd::Volume { .. } | Cmd::Mute { .. } | Cmd::Latency { .. }, _) => "ok\n".into(),
        (_, Answer::Status(s)) => {
            let mut o = String::new();
            if let Some(c) = &s.controller {
                if let Some(z) = &c.zone {
                    o += &render_zone(z);
                }
                o += "speakers:\n";
                o += &render_speakers(&c.speakers);
            }
            if let Some(sp) = &s.speaker {
                o += &render_speaker_detail(sp);
            }
            o
        }
        (_, Answer::Speakers(l)) => {
            render_speakers(&l.speakers) + &render_discovered(&l.discovered)
        }
        (_, Answer::Zones(z)) => render_zones(z),
        (_, Answer::Queue(q)) => render_queue(q),
        (_, Answer::Zone(z)) => render_zone(z),
        (_, Answer::Speaker(s)) => render_speaker_detail(s),
        (_, Answer::Muted(_) | Answer::Nothing) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_shown_by_its_api_name() {
        assert_eq!(name(&chorus_api::TransportState::Paused), "paused");
        assert_eq!(name(&chorus_api::Repeat::All), "all");
    }
}
