//! End to end: one controller and two speakers as separate processes, multicast over
//! loopback, each speaker with its own clock offset and frequency error.

use chorus_tests::*;
use std::time::Duration;

/// Checks that `cap` holds counters `start..start+n` exactly once each, in one unbroken run.
fn assert_sample_exact(name: &str, cap: &Capture, start: u32, n: u32) -> usize {
    let i0 = cap
        .find_counter(start)
        .unwrap_or_else(|| panic!("{name}: first source frame never played"));
    for j in 0..n as usize {
        let got = cap.frames.get(i0 + j).map(|f| counter(*f));
        assert_eq!(
            got,
            Some(start + j as u32),
            "{name}: output frame {} should carry source frame {}",
            i0 + j,
            j
        );
    }
    let sounding = cap.frames.iter().filter(|f| **f != [0, 0]).count();
    assert_eq!(
        sounding, n as usize,
        "{name}: frames outside the track (repeats?)"
    );
    i0
}

#[test]
fn two_speakers_play_sample_exact_and_aligned() {
    let dir = scratch("e2e");
    let net = Net::new();
    let controller = start_controller(&dir, &net, "");
    let mut a = start_speaker(&dir, &net, &SpeakerSpec::sim("alpha", 3_000.0, -150.0));
    let mut b = start_speaker(&dir, &net, &SpeakerSpec::sim("beta", -2_000.0, 120.0));
    wait_locked(&controller, 2);

    let n = 48_000 * 3;
    let track = dir.join("counter.wav");
    write_counter_wav(&track, 1, n);
    let (code, z) = send(
        "POST",
        &format!("{}/api/v1/play", controller.api),
        &format!("{{\"uri\":\"{}\"}}", track.display()),
    );
    assert_eq!(code, 200, "{z}");
    assert_eq!(z["state"], "playing");
    wait_stopped(&controller, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(400));
    let status_a = get(&format!("{}/api/v1/speaker", a.api)).unwrap();
    a.stop();
    b.stop();

    let ca = Capture::load(&dir, "alpha");
    let cb = Capture::load(&dir, "beta");
    let ia = assert_sample_exact("alpha", &ca, 1, n);
    let ib = assert_sample_exact("beta", &cb, 1, n);
    // Alignment on the host's common clock, at the start, middle and end of the track.
    let mut skews = vec![];
    for k in [0usize, n as usize / 2, n as usize - 1] {
        let skew_us = (ca.heard_ns(ia + k) - cb.heard_ns(ib + k)) / 1000.0;
        skews.push(skew_us);
    }
    let (med, max) = stats_abs(&skews);
    println!("inter-speaker skew: median {med:.1} µs, max {max:.1} µs ({skews:?})");
    assert!(max < 1_000.0, "speakers more than 1 ms apart: {skews:?}");
    assert_eq!(status_a["playout"]["resyncs"], 0, "{status_a}");
    assert_eq!(status_a["locked"], true);
}

#[test]
fn transport_through_chorusctl_acts_on_the_same_frame_everywhere() {
    let dir = scratch("transport");
    let net = Net::new();
    let controller = start_controller(&dir, &net, "fade-ms = 10\n");
    let mut a = start_speaker(&dir, &net, &SpeakerSpec::sim("alpha", 1_500.0, 80.0));
    let mut b = start_speaker(&dir, &net, &SpeakerSpec::sim("beta", -700.0, -60.0));
    wait_locked(&controller, 2);
    let track = dir.join("long.wav");
    write_counter_wav(&track, 1, 48_000 * 7);
    let ctl = |args: &[&str]| {
        let (code, out, err) = chorusctl(&controller.api, args);
        assert_eq!(code, 0, "chorusctl {args:?}: {out}{err}");
        out
    };
    let out = ctl(&["play", track.to_str().unwrap()]);
    assert!(out.contains("playing"), "{out}");
    std::thread::sleep(Duration::from_millis(1000));
    ctl(&["pause"]);
    std::thread::sleep(Duration::from_millis(600));
    let st = ctl(&["--json", "status"]);
    assert!(st.contains("\"paused\""), "{st}");
    ctl(&["resume"]);
    std::thread::sleep(Duration::from_millis(800));
    ctl(&["seek", "5"]);
    wait_stopped(&controller, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(400));
    a.stop();
    b.stop();

    let ca = Capture::load(&dir, "alpha");
    let cb = Capture::load(&dir, "beta");
    // Both speakers played the very same samples: pause, resume and seek landed on the same
    // frame of the stream in each.
    let (fa, la) = ca.sound_span().expect("alpha played nothing");
    let (fb, lb) = cb.sound_span().expect("beta played nothing");
    assert_eq!(la - fa, lb - fb, "different lengths of sound");
    let diff = (0..=la - fa)
        .filter(|i| ca.frames[fa + i] != cb.frames[fb + i])
        .count();
    assert_eq!(diff, 0, "{diff} frames differ between the speakers");

    let runs = ca.counter_runs(2_000);
    println!("runs (output index, first counter, length): {runs:?}");
    assert_eq!(
        runs.len(),
        3,
        "expected play / resume / seek segments: {runs:?}"
    );
    let (r1, r2, r3) = (runs[0], runs[1], runs[2]);
    assert_eq!(r1.1, 1);
    // Resume continues where the pause faded out (a fade-out and a fade-in apart).
    let gap = r2.1 as i64 - (r1.1 as i64 + r1.2 as i64);
    assert!(
        (0..=2 * 480 + 10).contains(&gap),
        "resume did not continue from the pause: {gap} frames skipped"
    );
    // A silence of about 600 ms between pause and resume.
    let silence = r2.0 as i64 - (r1.0 + r1.2) as i64;
    assert!(
        (300 * 48..=1200 * 48).contains(&silence),
        "pause lasted {silence} frames"
    );
    // Seek to 5 s: frame 240001 plus the fade-in.
    assert!(
        (240_001..=240_001 + 600).contains(&r3.1),
        "seek landed at counter {}",
        r3.1
    );
    // Played to the end of the track.
    assert_eq!(r3.1 as usize + r3.2 - 1, 48_000 * 7);
}

#[test]
fn broken_files_are_reported_and_the_queue_moves_on() {
    let dir = scratch("queue");
    let net = Net::new();
    let controller = start_controller(&dir, &net, "");
    let mut a = start_speaker(&dir, &net, &SpeakerSpec::sim("alpha", 250.0, 40.0));
    wait_locked(&controller, 1);
    write_counter_wav(&dir.join("one.wav"), 1, 24_000);
    write_counter_wav(&dir.join("two.wav"), 100_001, 24_000);
    std::fs::write(
        dir.join("garbage.mp3"),
        (0..5000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::write(dir.join("empty.flac"), b"").unwrap();
    let flac = std::fs::read(repo().join("tests/fixtures/tone_44k1_s16_stereo.flac")).unwrap();
    std::fs::write(dir.join("truncated.flac"), &flac[..flac.len() / 3]).unwrap();
    std::fs::write(
        dir.join("list.m3u"),
        "#EXTM3U\none.wav\ngarbage.mp3\nempty.flac\nmissing.wav\ntruncated.flac\ntwo.wav\n",
    )
    .unwrap();
    let (code, out, err) = chorusctl(
        &controller.api,
        &["play", dir.join("list.m3u").to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    wait_stopped(&controller, Duration::from_secs(15));
    let zone = get(&format!("{}/api/v1/zone", controller.api)).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    a.stop();
    let errors: Vec<String> = zone["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    println!("{errors:#?}");
    for (file, what) in [
        ("garbage.mp3", "not a supported audio file"),
        ("empty.flac", "empty file"),
        ("missing.wav", "cannot open"),
        ("truncated.flac", "truncated"),
    ] {
        assert!(
            errors.iter().any(|e| e.contains(file) && e.contains(what)),
            "no clear error for {file} ({what}): {errors:?}"
        );
    }
    let cap = Capture::load(&dir, "alpha");
    let runs = cap.counter_runs(1_000);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!((runs[0].1, runs[0].2), (1, 24_000));
    assert_eq!((runs[1].1, runs[1].2), (100_001, 24_000));
}

#[test]
fn late_joiner_is_in_sync_at_once_and_volume_glides() {
    let dir = scratch("join");
    let net = Net::new();
    let controller = start_controller(&dir, &net, "");
    let mut a = start_speaker(&dir, &net, &SpeakerSpec::sim("early", 800.0, 200.0));
    wait_locked(&controller, 1);
    let n = 48_000 * 4;
    let track = dir.join("counter.wav");
    write_counter_wav(&track, 1, n);
    let (code, out, err) = chorusctl(&controller.api, &["play", track.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    std::thread::sleep(Duration::from_millis(1200));
    // A speaker that starts mid-track.
    let mut b = start_speaker(&dir, &net, &SpeakerSpec::sim("late", -4_000.0, -200.0));
    wait_locked(&controller, 2);
    std::thread::sleep(Duration::from_millis(500));
    let (code, out, err) = chorusctl(&controller.api, &["volume", "early", "50"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_stopped(&controller, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(400));
    a.stop();
    b.stop();

    let ca = Capture::load(&dir, "early");
    let cb = Capture::load(&dir, "late");
    // The late speaker plays one unbroken run from the frame due when it started to the end.
    let runs = cb.counter_runs(1_000);
    assert_eq!(runs.len(), 1, "late speaker: {runs:?}");
    let (ib, kb, len) = runs[0];
    assert_eq!(
        kb as usize + len - 1,
        n as usize,
        "late speaker did not play to the end"
    );
    assert!(kb > 48_000, "late speaker started at frame {kb}");
    // ... at the same time as the early one played that frame.
    let a_runs = ca.counter_runs(1_000);
    let (ia0, ka0, _) = a_runs[0];
    assert_eq!(ka0, 1);
    let ia = ia0 + (kb - 1) as usize;
    let skew_us = (ca.heard_ns(ia) - cb.heard_ns(ib)) / 1000.0;
    println!("late joiner skew at its first frame: {skew_us:.1} µs");
    assert!(skew_us.abs() < 1_000.0, "late joiner {skew_us} µs off");

    // Volume 50 on "early": the gain glides from 1 to 0.125 (cubic curve) without steps.
    let orig = |i: usize| ((ka0 as usize + i - ia0) & 0xffff) as u16 as i16 as f64;
    let gains: Vec<(usize, f64)> = (ia0..ia0 + n as usize)
        .filter(|&i| orig(i).abs() > 4_000.0)
        .map(|i| (i, ca.frames[i][0] as f64 / orig(i)))
        .collect();
    let start = gains
        .iter()
        .position(|(_, g)| *g < 0.999)
        .expect("volume never changed");
    let end = gains
        .iter()
        .position(|(_, g)| (*g - 0.125).abs() < 0.001)
        .expect("volume never reached 0.125");
    let glide_ms = (gains[end].0 - gains[start].0) as f64 / 48.0;
    assert!(glide_ms > 15.0, "volume jumped in {glide_ms} ms");
    for w in gains[start..=end].windows(2) {
        let per_frame = (w[0].1 - w[1].1) / (w[1].0 - w[0].0) as f64;
        assert!(
            per_frame > -0.001 && per_frame < 0.0015,
            "gain step {per_frame} at frame {}",
            w[1].0
        );
    }
    assert!(
        gains[end..].iter().all(|(_, g)| (*g - 0.125).abs() < 0.001),
        "gain did not hold at 0.125"
    );
}
