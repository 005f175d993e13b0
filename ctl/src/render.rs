//! How chorusctl shows what the API answers, for people (`--json` prints it as it came).

use crate::Cmd;
use serde_json::Value;

pub(crate) fn render_queue(q: &Value) -> String {
    let mut o = format!("repeat {}\n", q["repeat"].as_str().unwrap_or("off"));
    let items = q["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        o += "  (empty)\n";
    }
    for (i, item) in items.iter().enumerate() {
        let here = q["index"].as_u64() == Some(i as u64);
        o += &format!(
            "{} {:>3}. {}\n",
            if here { ">" } else { " " },
            i + 1,
            item.as_str().unwrap_or("?")
        );
    }
    o
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

pub(crate) fn render_watch(v: &Value) -> String {
    let mut o = String::new();
    let ctl = &v["controller"];
    if ctl.is_object() {
        let z = &ctl["zone"];
        o += &format!(
            "chorus  zone {}  {}\n\n",
            z["zone"].as_str().unwrap_or("?"),
            z["state"].as_str().unwrap_or("?").to_uppercase()
        );
        match z["title"].as_str() {
            Some(t) => {
                let pos = z["position_s"].as_f64().unwrap_or(0.0);
                let dur = z["duration_s"].as_f64();
                o += &format!("  {t}\n");
                if let Some(a) = z["artist"].as_str() {
                    o += &format!(
                        "  {a}{}\n",
                        z["album"]
                            .as_str()
                            .map(|b| format!(" — {b}"))
                            .unwrap_or_default()
                    );
                }
                o += &format!(
                    "  {} {} / {}\n\n",
                    bar(pos, dur.unwrap_or(0.0), 40),
                    fmt_time(pos),
                    dur.map(fmt_time).unwrap_or_else(|| "?".into())
                );
            }
            None => o += "  nothing playing\n\n",
        }
        o += "speakers:\n";
        o += &render_speakers(
            ctl["speakers"]
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or(&[]),
        );
    }
    if v["speaker"].is_object() {
        o += &render_speaker_detail(&v["speaker"]);
    }
    o += "\n(Ctrl-C to quit)\n";
    o
}

pub(crate) fn fmt_time(s: f64) -> String {
    let s = s.max(0.0);
    format!("{}:{:04.1}", (s / 60.0).floor() as u64, s % 60.0)
}

pub(crate) fn render_zone(z: &Value) -> String {
    let mut o = String::new();
    let state = z["state"].as_str().unwrap_or("?");
    o += &format!(
        "zone {}: {}{}\n",
        z["zone"].as_str().unwrap_or("?"),
        state,
        match (z["volume"].as_u64(), z["muted"] == true) {
            (_, true) => "  (zone muted)".to_string(),
            (Some(v), false) if v < 100 => format!("  (zone volume {v})"),
            _ => String::new(),
        }
    );
    if let Some(t) = z["title"].as_str() {
        let pos = fmt_time(z["position_s"].as_f64().unwrap_or(0.0));
        let dur = z["duration_s"]
            .as_f64()
            .map(fmt_time)
            .unwrap_or_else(|| "?".into());
        let idx = z["index"].as_u64().map(|i| i + 1).unwrap_or(0);
        let n = z["queue"].as_array().map(|q| q.len()).unwrap_or(0);
        o += &format!("  now playing: {t}  {pos} / {dur}  (item {idx} of {n})\n");
        let by: Vec<&str> = [z["artist"].as_str(), z["album"].as_str()]
            .into_iter()
            .flatten()
            .collect();
        if !by.is_empty() {
            o += &format!("               {}\n", by.join(" — "));
        }
    }
    if let Some(errs) = z["errors"].as_array() {
        for e in errs.iter().rev().take(3) {
            o += &format!("  error: {}\n", e["message"].as_str().unwrap_or("?"));
        }
    }
    o
}

pub(crate) fn render_zones(v: &Value) -> String {
    let mut o = String::new();
    for z in v["zones"].as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
        let speakers: Vec<&str> = z["speakers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        o += &format!(
            "{:<16} {:<22} {:<8} volume {:>3}{}  {}\n    speakers: {}\n",
            z["name"].as_str().unwrap_or("?"),
            z["stream"].as_str().unwrap_or("?"),
            z["state"].as_str().unwrap_or("?"),
            z["volume"],
            if z["muted"] == true { " (muted)" } else { "" },
            z["title"].as_str().unwrap_or("-"),
            if speakers.is_empty() {
                "none".to_string()
            } else {
                speakers.join(", ")
            }
        );
    }
    o
}

pub(crate) fn render_speakers(list: &[Value]) -> String {
    if list.is_empty() {
        return "  no speakers yet\n".into();
    }
    let mut o = String::new();
    for s in list {
        let sync = match s["sync_error_us"].as_f64() {
            Some(e) => format!("sync error {e:+.0} µs"),
            None => "not playing".into(),
        };
        o += &format!(
            "  {:<16} {:<8} volume {:>3}{}  {}  {}{}\n",
            s["name"].as_str().unwrap_or("?"),
            if s["online"] == true {
                "online"
            } else {
                "LOST"
            },
            s["volume"],
            if s["muted"] == true { " (muted)" } else { "" },
            if s["locked"] == true {
                "locked"
            } else {
                "unlocked"
            },
            sync,
            s["zone"]
                .as_str()
                .map(|z| format!("  zone {z}"))
                .unwrap_or_default()
        );
    }
    o
}

/// Speakers that announce themselves (mDNS) but do not reach the controller.
pub(crate) fn render_discovered(d: &Value) -> String {
    let mut o = String::new();
    for s in d.as_array().into_iter().flatten() {
        o += &format!(
            "  {:<16} NOT JOINED: announces itself at {} but sends no heartbeats here (check its key, group and firewall)\n",
            s["name"].as_str().unwrap_or("?"),
            s["api_url"].as_str().unwrap_or("?")
        );
    }
    o
}

pub(crate) fn render_speaker_detail(s: &Value) -> String {
    let mut o = format!(
        "speaker {}: volume {}{}\n",
        s["name"].as_str().unwrap_or("?"),
        s["volume"],
        if s["muted"] == true { " (muted)" } else { "" }
    );
    match s["clock"].as_object() {
        Some(c) => {
            o += &format!(
                "  clock: {} offset {:.3} ms, {:+.1} ppm, rtt {:.0} µs, est. error ±{:.0} µs\n",
                if s["locked"] == true {
                    "locked"
                } else {
                    "locking"
                },
                c["offset_ns"].as_f64().unwrap_or(0.0) / 1e6,
                c["freq_ppm"].as_f64().unwrap_or(0.0),
                c["rtt_us"].as_f64().unwrap_or(0.0),
                c["est_error_us"].as_f64().unwrap_or(0.0)
            )
        }
        None => o += "  clock: no controller yet\n",
    }
    if let Some(out) = s["output"].as_object() {
        o += &format!(
            "  output: {} {} ({} Hz, period {}, buffer {} frames), extra latency {} ms\n",
            out["backend"].as_str().unwrap_or("?"),
            out["device"].as_str().unwrap_or("?"),
            out["rate"],
            out["period_frames"],
            out["buffer_frames"],
            s["latency"]["extra_ms"]
        );
    }
    if let Some(d) = s["playout"]["device"].as_object() {
        // The playout thread's model of the device clock (see docs/ARCHITECTURE.md).
        let stamps = match d["stamps"].as_str() {
            Some("at_call") => "stamps at call",
            Some("at_pointer_update") => "stamps at pointer update",
            _ => "stamps unknown",
        };
        let edges = match d["edge_jitter_us"].as_f64() {
            Some(j) => format!(", edges jitter by {j:.0} µs"),
            None => String::new(),
        };
        o += &format!(
            "  device: pointer step {} frames, {stamps}{edges}, DAC {:+.1} ppm against this box, known to ±{:.1} µs\n",
            d["pointer_step_frames"],
            d["rate_ppm"].as_f64().unwrap_or(0.0),
            d["uncertainty_us"].as_f64().unwrap_or(0.0) / 2.0
        );
    }
    let p = &s["playout"];
    let resampler = if p["resampling"] == true {
        format!(
            "resampling {:+.1} ppm",
            p["ratio_ppm"].as_f64().unwrap_or(0.0)
        )
    } else {
        "bit-exact (no drift)".to_string()
    };
    o += &format!(
        "  playout: sync error {}, {resampler}, buffered {:.0} ms, lost {} late {} resyncs {}\n",
        p["sync_error_us"]
            .as_f64()
            .map(|e| format!("{e:+.1} µs"))
            .unwrap_or_else(|| "-".into()),
        p["buffered_ms"].as_f64().unwrap_or(0.0),
        p["frames_lost"],
        p["frames_late"],
        p["resyncs"]
    );
    o
}

pub(crate) fn render(cmd: &Cmd, v: &Value) -> String {
    match cmd {
        Cmd::Status { watch: true, .. } | Cmd::Events { .. } => String::new(),
        Cmd::Status { .. } => {
            let mut o = String::new();
            if v["controller"].is_object() {
                o += &render_zone(&v["controller"]["zone"]);
                o += "speakers:\n";
                o += &render_speakers(
                    v["controller"]["speakers"]
                        .as_array()
                        .map(|a| a.as_slice())
                        .unwrap_or(&[]),
                );
            }
            if v["speaker"].is_object() {
                o += &render_speaker_detail(&v["speaker"]);
            }
            o
        }
        Cmd::Speakers => {
            render_speakers(
                v["speakers"]
                    .as_array()
                    .map(|a| a.as_slice())
                    .unwrap_or(&[]),
            ) + &render_discovered(&v["discovered"])
        }
        Cmd::Volume { .. } | Cmd::Mute { .. } | Cmd::Latency { .. } => "ok\n".into(),
        Cmd::Assign { speaker, zone } => format!("{speaker} moves to zone {zone}\n"),
        Cmd::Zones => render_zones(v),
        Cmd::Queue
        | Cmd::Add { .. }
        | Cmd::Remove { .. }
        | Cmd::Move { .. }
        | Cmd::Clear
        | Cmd::Shuffle
        | Cmd::Repeat { .. } => render_queue(v),
        _ => render_zone(v),
    }
}
