//! The ALSA backend through alsa-lib itself, with PCMs from a test asoundrc: a `file` PCM over
//! `null` captures exactly what the backend wrote.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus::clock::{MonotonicRaw, SharedClock};
use chorus::speaker::output::{alsa::AlsaOutput, Output};
use chorus::wire::SampleFormat;
use chorus_tests::*;
use std::sync::Arc;
use std::time::Duration;

/// Points alsa-lib at a private ~/.asoundrc defining `chorus_capture` (file over null).
/// Each test binary is its own process, so changing HOME here touches no other test.
fn asoundrc(dir: &std::path::Path, raw: &std::path::Path) {
    std::fs::write(
        dir.join(".asoundrc"),
        format!(
            "pcm.chorus_capture {{\n  type file\n  slave.pcm \"null\"\n  file \"{}\"\n  format \"raw\"\n}}\n",
            raw.display()
        ),
    )
    .unwrap();
    std::env::set_var("HOME", dir);
}

#[test]
fn alsa_backend_writes_data_intact_and_the_daemon_plays_through_it() {
    retry_on_host_stall(alsa_backend_writes_data_intact_and_the_daemon_plays_through_it_once);
}

fn alsa_backend_writes_data_intact_and_the_daemon_plays_through_it_once() {
    let dir = scratch("alsa");
    let raw = dir.join("capture.raw");
    asoundrc(&dir, &raw);

    // 1. The backend alone: written frames arrive bit-exact.
    let clock: SharedClock = Arc::new(MonotonicRaw);
    let mut out = AlsaOutput::open(
        "chorus_capture",
        48_000,
        2,
        SampleFormat::S16,
        480,
        1920,
        clock,
    )
    .expect("open ALSA test PCM");
    let info = out.info();
    assert_eq!((info.rate, info.channels), (48_000, 2));
    let frames: Vec<f32> = (0..48_000 * 2)
        .map(|i: i32| ((i % 65_536) - 32_768) as f32 / 32_768.0)
        .collect();
    for chunk in frames.chunks(info.period_frames * 2) {
        out.write(chunk).unwrap();
    }
    out.delay().unwrap();
    out.finish().unwrap();
    drop(out);

    // 1b. `null` consumes instantly and reports no delay: after a few buffers the backend says
    //     it cannot tell (the playout thread then paces itself) instead of claiming an empty
    //     queue forever, which made the thread spin. (The status read once came back zeroed
    //     in release builds: alsa 0.9's Status::build wrote through a shared reference.)
    let clock: SharedClock = Arc::new(MonotonicRaw);
    let mut null = AlsaOutput::open("null", 48_000, 2, SampleFormat::S16, 480, 1920, clock)
        .expect("open ALSA null");
    let period = vec![0.0f32; 480 * 2];
    let mut reports = Vec::new();
    for _ in 0..16 {
        null.write(&period).unwrap();
        reports.push(null.delay().unwrap().map(|d| d.frames));
    }
    assert_eq!(reports.last(), Some(&None), "{reports:?}");
    null.finish().unwrap();
    let bytes = std::fs::read(&raw).unwrap();
    let got: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let want: Vec<i16> = frames.iter().map(|s| (s * 32_768.0) as i16).collect();
    assert_eq!(got.len(), want.len(), "frame count");
    assert!(got == want, "captured samples differ from what was written");

    // 2. A speaker process on the same PCM plays a track sample-exact.
    std::fs::remove_file(&raw).unwrap();
    let net = Net::new();
    let controller = start_controller(&dir, &net, "");
    let mut spk = SpeakerSpec::sim("alsa-speaker", 500.0, -90.0);
    spk.output = "alsa".into();
    spk.device = "chorus_capture".into();
    let mut s = start_speaker(&dir, &net, &spk);
    wait_locked(&controller, 1);
    let track = dir.join("t.wav");
    write_counter_wav(&track, 1, 24_000);
    play_to_end(&controller, &track, Duration::from_secs(10));
    s.stop();
    let runs = load_raw_s16_stereo(&raw).counter_runs(100);
    assert_eq!(runs.len(), 1, "{runs:?}\n{}", s.log_text());
    assert_eq!((runs[0].1, runs[0].2), (1, 24_000));

    // 3. A device that does not exist yet: the speaker does not exit (no crash loop under
    //    systemd), says why in its API and its log, and plays once the device appears.
    let mut spk = SpeakerSpec::sim("late-speaker", -300.0, 60.0);
    spk.output = "alsa".into();
    spk.device = "chorus_late".into();
    let mut s = start_speaker(&dir, &net, &spk);
    let url = format!("{}/api/v1/speaker", s.api);
    let st = wait_until(Duration::from_secs(5), || {
        let st = get(&url).ok()?;
        st["output_problem"].is_string().then_some(st)
    })
    .unwrap_or_else(|| panic!("no output problem reported\n{}", s.log_text()));
    assert!(
        st["output_problem"]
            .as_str()
            .unwrap()
            .contains("chorus_late"),
        "{st}"
    );
    assert!(st["output"].is_null(), "{st}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(s.running(), "the speaker exited:\n{}", s.log_text());
    assert!(
        s.log_text().contains("cannot open the output"),
        "{}",
        s.log_text()
    );
    let late_raw = dir.join("late.raw");
    let rc = std::fs::read_to_string(dir.join(".asoundrc")).unwrap();
    std::fs::write(
        dir.join(".asoundrc"),
        format!(
            "{rc}pcm.chorus_late {{\n  type file\n  slave.pcm \"null\"\n  file \"{}\"\n  format \"raw\"\n}}\n",
            late_raw.display()
        ),
    )
    .unwrap();
    let st = wait_until(Duration::from_secs(10), || {
        let st = get(&url).ok()?;
        (st["output"].is_object() && st["locked"] == true).then_some(st)
    })
    .unwrap_or_else(|| panic!("the device was not picked up\n{}", s.log_text()));
    assert!(st["output_problem"].is_null(), "{st}");
    play_to_end(&controller, &track, Duration::from_secs(10));
    s.stop();
    let runs = load_raw_s16_stereo(&late_raw).counter_runs(100);
    assert_eq!(runs.len(), 1, "{runs:?}\n{}", s.log_text());
    assert_eq!((runs[0].1, runs[0].2), (1, 24_000));
}
