//! Zones: one controller streams two zones, each with its own queue and multicast group; a
//! speaker moves from one to the other while both play.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus_tests::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// A 48 kHz stereo WAV: a sine at `hz` (amplitude 0.5) on the left, on the right the noise that
/// names each frame (`noise(k)`, k from `first`), so that both a click and the frame heard can
/// be read from what a speaker played.
fn write_tone_noise_wav(path: &Path, hz: f64, first: u32, frames: u32) {
    let mut w = stereo_48k_wav(path, 16);
    for i in 0..frames {
        let t = i as f64 / 48_000.0;
        let v = (0.5 * (2.0 * std::f64::consts::PI * hz * t).sin() * 32_767.0).round() as i16;
        w.write_sample(v).unwrap();
        w.write_sample(noise(first + i)).unwrap();
    }
    w.finalize().unwrap();
}

/// Runs of consecutive frames (by the noise channel) at least 100 long, over the frame numbers
/// `ranges`: (index in `frames`, first k, length).
fn noise_runs(frames: &[[i16; 2]], ranges: &[(u32, u32)]) -> Vec<(usize, u32, usize)> {
    let mut index: HashMap<i16, Vec<u32>> = HashMap::new();
    for &(first, n) in ranges {
        for k in first..first + n {
            index.entry(noise(k)).or_default().push(k);
        }
    }
    // The frame number at `i`: one whose next three frames follow it.
    let name = |i: usize| -> Option<u32> {
        index.get(&frames[i][1])?.iter().copied().find(|&k| {
            (1..4).all(|d| {
                frames
                    .get(i + d)
                    .is_some_and(|f| f[1] == noise(k + d as u32))
            })
        })
    };
    let mut runs = vec![];
    let mut i = 0;
    while i < frames.len() {
        let Some(k) = name(i) else {
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < frames.len() && frames[j][1] == noise(k + (j - i) as u32) {
            j += 1;
        }
        if j - i >= 100 {
            runs.push((i, k, j - i));
        }
        i = j;
    }
    runs
}

const A_FIRST: u32 = 1;
const B_FIRST: u32 = 1_000_001;
const FRAMES: u32 = 48_000 * 7;

#[test]
fn a_speaker_moves_between_zones_at_a_frame_boundary_without_a_click() {
    retry_on_host_stall(a_speaker_moves_between_zones_at_a_frame_boundary_without_a_click_once);
}

fn a_speaker_moves_between_zones_at_a_frame_boundary_without_a_click_once() {
    let dir = scratch("zones");
    let living = Net::new();
    // The second zone: its own group, the same controller (sync service, stream port).
    let mut kitchen = living.clone();
    kitchen.group = Net::new().group;
    let controller = start_controller(
        &dir,
        &living,
        &format!(
            "[[controller.zones]]\nname = \"kitchen\"\ngroup = \"{}\"\n",
            kitchen.group
        ),
    );
    // Each with its own clock offset and frequency error; DACs at the nominal rate, so that
    // what plays is the stream itself, bit for bit.
    let mut mover = start_speaker(&dir, &living, &SpeakerSpec::sim("mover", 700.0, 90.0));
    let mut stay = start_speaker(&dir, &kitchen, &SpeakerSpec::sim("stay", -400.0, -120.0));
    wait_locked(&controller, 2);

    let zones = get(&format!("{}/api/v1/zones", controller.api)).unwrap();
    let names: Vec<&str> = zones["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[1], "kitchen", "{zones}");
    let living_name = names[0].to_string();

    let a = dir.join("a.wav");
    let b = dir.join("b.wav");
    write_tone_noise_wav(&a, 440.0, A_FIRST, FRAMES);
    write_tone_noise_wav(&b, 660.0, B_FIRST, FRAMES);
    let ctl = |args: &[&str]| {
        let (code, out, err) = chorusctl(&controller.api, args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    };
    ctl(&["play", a.to_str().unwrap()]);
    ctl(&["--zone", "kitchen", "play", b.to_str().unwrap()]);
    // Each zone its own queue.
    let zk = get(&format!("{}/api/v1/zone?zone=kitchen", controller.api)).unwrap();
    let zl = get(&format!("{}/api/v1/zone", controller.api)).unwrap();
    assert!(zk["uri"].as_str().unwrap().ends_with("b.wav"), "{zk}");
    assert!(zl["uri"].as_str().unwrap().ends_with("a.wav"), "{zl}");
    std::thread::sleep(Duration::from_millis(2_000));

    // The answer is the speaker's status as the move begins: the new zone, switching (the new
    // stream is not due yet: it was joined just now).
    let out = ctl(&["--json", "assign", "mover", "kitchen"]);
    let moving: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (moving["zone"].as_str(), moving["switching"].as_bool()),
        (Some("kitchen"), Some(true)),
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(2_500));
    let st = get(&format!("{}/api/v1/speaker", mover.api)).unwrap();
    assert_eq!(st["zone"], "kitchen", "{st}");
    assert_eq!(st["switching"], false, "{st}");
    assert_eq!(st["stream"], format!("{}:{}", kitchen.group, kitchen.port));
    let zones = get(&format!("{}/api/v1/zones", controller.api)).unwrap();
    let members = |i: usize| zones["zones"][i]["speakers"].clone();
    assert_eq!(
        members(1),
        serde_json::json!(["mover", "stay"]),
        "{zones} ({living_name})"
    );
    assert_eq!(members(0), serde_json::json!([]), "{zones}");
    ctl(&["stop"]);
    ctl(&["--zone", "kitchen", "stop"]);
    std::thread::sleep(Duration::from_millis(300));
    mover.stop();
    stay.stop();
    assert_eq!(st["playout"]["resyncs"], 0, "{st}");

    // What the mover scheduled: zone A from its first frame, then zone B, nothing between.
    let ranges = [(A_FIRST, FRAMES), (B_FIRST, FRAMES)];
    let tap = Capture::load_tap(&dir, "mover");
    let runs = noise_runs(&tap.frames, &ranges);
    println!("mover's stream: {runs:?}");
    assert_eq!(runs.len(), 2, "{runs:?}");
    let (ia, ka, na) = runs[0];
    let (ib, kb, _) = runs[1];
    assert_eq!(ka, A_FIRST, "zone A did not play from its start: {runs:?}");
    assert!(kb > B_FIRST, "{runs:?}");
    let between = ib - (ia + na);
    assert!(
        between <= 64,
        "{between} frames between zone A's last and zone B's first: {runs:?}"
    );

    // What it played (through the resampler, which may be trimming the clock model's last
    // ppm: compared by level and timing, not bit for bit): no gap and no click where the
    // zones meet (the transport fades at the very start and end left out).
    let heard = Capture::load(&dir, "mover");
    let (first, last) = heard.sound_span().unwrap();
    let peaks: Vec<f64> = heard.frames[first..last]
        .chunks(240)
        .map(|w| w.iter().map(|f| f[0].unsigned_abs()).max().unwrap_or(0) as f64 / 32_768.0)
        .collect();
    let low: Vec<usize> = (2..peaks.len() - 3).filter(|&i| peaks[i] < 0.4).collect();
    println!(
        "5 ms windows below the tones' level: {low:?} of {}",
        peaks.len()
    );
    assert!(
        !low.is_empty() && low.len() <= 4 && low[low.len() - 1] - low[0] < 4,
        "the crossing should be one dip of at most 20 ms: {low:?}"
    );
    let switch_at = first + low[0] * 240;
    // The tones' own second differences: 0.5 (2 pi f / 48000)^2 = 0.0016 and 0.0037; a cut
    // is tens of times more.
    let (at, worst) = largest_second_difference(&heard.frames[first + 480..last - 480]);
    println!(
        "largest second difference: {worst:.4} at frame {}",
        first + 480 + at
    );
    assert!(
        worst < 0.02,
        "a click at frame {}: {worst:.3}",
        first + 480 + at
    );

    // On zone B's timeline: in step with the speaker that was there all along.
    let other = Capture::load(&dir, "stay");
    let skews: Vec<f64> = (0..8)
        .filter_map(|n| skew_us(&heard, &other, switch_at + 4_800 + n * 9_600))
        .collect();
    assert!(skews.len() >= 4, "too few windows to compare: {skews:?}");
    let (med, max) = stats_abs(&skews);
    println!("after the move, mover vs stay: median {med:.1} µs, max {max:.1} µs ({skews:.1?})");
    assert!(
        max < 1_000.0,
        "the moved speaker is off zone B's timeline: {skews:?}"
    );
}

#[test]
fn zone_calls_name_unknown_zones_and_moves_check_their_input() {
    retry_on_host_stall(zone_calls_name_unknown_zones_and_moves_check_their_input_once);
}

fn zone_calls_name_unknown_zones_and_moves_check_their_input_once() {
    let dir = scratch("zonebad");
    let net = Net::new();
    let other = Net::new().group;
    let controller = start_controller(
        &dir,
        &net,
        &format!("[[controller.zones]]\nname = \"kitchen\"\ngroup = \"{other}\"\n"),
    );
    let mut s = start_speaker(&dir, &net, &SpeakerSpec::sim("solo", 100.0, 20.0));
    wait_locked(&controller, 1);
    let api = &controller.api;
    let (code, v) = send("GET", &format!("{api}/api/v1/zone?zone=attic"), "");
    assert_eq!(code, 404, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("attic"),
        "{v}"
    );
    let (code, v) = send("POST", &format!("{api}/api/v1/stop?zone=attic"), "{}");
    assert_eq!(code, 404, "{v}");
    let (code, v) = send("GET", &format!("{api}/api/v1/zone?zome=kitchen"), "");
    assert_eq!(code, 400, "{v}");
    let (code, v) = send("GET", &format!("{api}/api/v1/status?zone=kitchen"), "");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["controller"]["zone"]["zone"], "kitchen", "{v}");
    let url = format!("{api}/api/v1/speakers/solo/zone");
    for (body, want) in [
        (r#"{"zone":"attic"}"#, 404),
        (r#"{"zone":7}"#, 422),
        (r#"{"zone":"kitchen""#, 400),
        (r#"{"zone":"kitchen","extra":1}"#, 422),
    ] {
        let (code, v) = send("PUT", &url, body);
        assert_eq!(code, want, "{body}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let (code, v) = send(
        "PUT",
        &format!("{api}/api/v1/speakers/nobody/zone"),
        r#"{"zone":"kitchen"}"#,
    );
    assert_eq!(code, 404, "{v}");
    // The speaker's own route checks what the controller would send.
    let surl = format!("{}/api/v1/speaker/zone", s.api);
    for body in [
        r#"{"zone":"x","group":"10.0.0.1","port":4000}"#,
        r#"{"zone":"x","group":"239.1.2.3","port":0}"#,
        r#"{"zone":"","group":"239.1.2.3","port":4000}"#,
        r#"{"zone":"x","group":"nonsense","port":4000}"#,
    ] {
        let (code, v) = send("PUT", &surl, body);
        assert_eq!(code, 422, "{body}: {v}");
    }
    // Moving while nothing plays is immediate, and the move shows in the lists.
    let (code, v) = send("PUT", &url, r#"{"zone":"kitchen"}"#);
    assert_eq!(code, 200, "{v}");
    std::thread::sleep(Duration::from_millis(1_500));
    let st = get(&format!("{}/api/v1/speaker", s.api)).unwrap();
    assert_eq!(
        (st["zone"].as_str(), st["switching"].as_bool()),
        (Some("kitchen"), Some(false))
    );
    let sp = get(&format!("{api}/api/v1/speakers/solo")).unwrap();
    assert_eq!(sp["zone"], "kitchen", "{sp}");
    s.stop();
}
