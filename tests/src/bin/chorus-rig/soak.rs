//! `chorus-rig soak-report DIR --attacks FILE --track-frames N NAME...`: what the attacks of a
//! soak did to each speaker's stream.
//!
//! The stream tap (what the speaker scheduled, frame by frame) carries the counting track, played
//! on repeat: it should count 1..N, 1..N, ... without a break. Each break (a jump, noise, a
//! hole) is placed on the host's common clock through the DAC's heard log and laid against the
//! attacks' windows: a break that begins during an attack, or up to 10 s after it, is the
//! attack's, and the speaker recovered when the count went on (`recovery` = that moment less the
//! attack's end, 0 if it recovered during the attack). A break no attack explains is counted
//! apart.
//!
//! Then each speaker's counters that moved between `<name>.before.json` (its status before the
//! first attack) and `<name>.during.json` (just before the track stops), but for those that
//! grow with playing.

use chorus_tests::Capture;
use std::path::Path;

/// Values that move in any stream (traffic, time, the clock models), not with trouble; and
/// silence, which the end of the run adds.
const GROWING: [&str; 14] = [
    ".clock.",
    ".device.",
    "frames_played",
    "frames_silence",
    "packets",
    "parity",
    "received",
    "bytes",
    "exchanges",
    "uptime",
    "ratio_ppm",
    "buffered_ms",
    "error_us",
    "_ns",
];

struct Attack {
    kind: String,
    start: f64,
    end: f64,
}

fn load_attacks(file: &Path) -> Result<Vec<Attack>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(Attack {
                kind: f.next()?.to_string(),
                start: f.next()?.parse().ok()?,
                end: f.next()?.parse().ok()?,
            })
        })
        .collect())
}

/// Breaks in the tap's count: (first frame after the last good one, first good frame again),
/// as tap indices. The track restarting at 1 right after its last frame is no break.
fn breaks(tap: &Capture, track_frames: u32) -> Vec<(usize, usize)> {
    let runs = tap.counter_runs(48);
    runs.windows(2)
        .filter(|w| {
            let (a, b) = (w[0], w[1]);
            let ends = a.1 as usize + a.2 - 1 == track_frames as usize;
            !(ends && b.1 == 1 && b.0 == a.0 + a.2)
        })
        .map(|w| (w[0].0 + w[0].2, w[1].0))
        .collect()
}

/// Numeric leaves of `after` that differ from `before`, with their paths.
fn moved(
    prefix: &str,
    before: &serde_json::Value,
    after: &serde_json::Value,
    out: &mut Vec<String>,
) {
    match after {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                moved(&format!("{prefix}.{k}"), &before[k.as_str()], v, out);
            }
        }
        serde_json::Value::Number(n) => {
            let grows = GROWING.iter().any(|g| prefix.contains(g));
            if !grows && before.as_f64() != n.as_f64() {
                out.push(format!("{prefix} {} -> {n}", before));
            }
        }
        _ => {}
    }
}

pub fn soak_report(dir: &Path, args: &[String]) -> Result<(), String> {
    let attacks = load_attacks(Path::new(&super::flag(args, "--attacks", "")))?;
    let track_frames: u32 = super::flag(args, "--track-frames", "")
        .parse()
        .map_err(|e| format!("--track-frames: {e}"))?;
    let names: Vec<&String> = {
        let mut skip = false;
        args.iter()
            .filter(|a| {
                let keep = !skip && !a.starts_with("--");
                skip = a.starts_with("--");
                keep
            })
            .collect()
    };
    let (mut total, mut unexplained, mut worst) = (0, 0, 0.0f64);
    for name in names {
        let tap = Capture::load_tap(dir, name);
        let dac = Capture::load(dir, name);
        // Tap index -> common clock: the tap and the DAC started together and run at the same
        // rate but for the resampler's ppm.
        let scale = dac.frames.len() as f64 / tap.frames.len().max(1) as f64;
        let at = |i: usize| dac.heard_ns(i as f64 * scale);
        for (from, to) in breaks(&tap, track_frames) {
            let (b0, b1) = (at(from), at(to));
            total += 1;
            match attacks
                .iter()
                .find(|a| b0 >= a.start - 1e9 && b0 <= a.end + 10e9)
            {
                Some(a) => {
                    let rec = ((b1 - a.end) / 1e9).max(0.0);
                    worst = worst.max(rec);
                    println!(
                        "{name}: break of {:.3} s during {} (+{:.1} s into it), count again {:.2} s after it ended",
                        (b1 - b0) / 1e9,
                        a.kind,
                        (b0 - a.start) / 1e9,
                        rec
                    );
                }
                None => {
                    unexplained += 1;
                    println!(
                        "{name}: break of {:.3} s outside any attack",
                        (b1 - b0) / 1e9
                    );
                }
            }
        }
        let load = |f: String| -> serde_json::Value {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default()
        };
        let (before, after) = (
            load(format!("{name}.before.json")),
            load(format!("{name}.during.json")),
        );
        let mut out = vec![];
        moved("", &before["speaker"], &after["speaker"], &mut out);
        println!(
            "{name}: counters that moved: {}",
            if out.is_empty() {
                "none".into()
            } else {
                out.join(", ")
            }
        );
    }
    println!(
        "attacks={} breaks={total} unexplained_breaks={unexplained} worst_recovery_s={worst:.2}",
        attacks.len()
    );
    Ok(())
}
