//! Line-in: an ALSA capture device as a source (`alsa:DEVICE`), through alsa-lib with a test
//! asoundrc: a `file` PCM over `null` whose capture reads a raw file (`infile`). `null`
//! delivers as fast as it is read, so this also shows the reader pacing a device that is
//! faster than real time.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus_tests::*;
use std::time::Duration;

#[test]
fn line_in_plays_on_every_speaker_sample_exact() {
    retry_on_host_stall(line_in_plays_on_every_speaker_sample_exact_once);
}

fn line_in_plays_on_every_speaker_sample_exact_once() {
    let dir = scratch("linein");
    // 8 s of counter frames, raw s16 stereo, as the card would deliver them (more than is
    // played: at the end of its file the test PCM repeats its last period).
    let n = 48_000 * 8u32;
    let mut raw = Vec::with_capacity(n as usize * 4);
    for k in 1..=n {
        raw.extend_from_slice(&((k & 0xffff) as u16).to_le_bytes());
        raw.extend_from_slice(&noise(k).to_le_bytes());
    }
    let infile = dir.join("linein.raw");
    std::fs::write(&infile, raw).unwrap();
    std::fs::write(
        dir.join(".asoundrc"),
        format!(
            "pcm.chorus_linein {{\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n  infile \"{}\"\n  format \"raw\"\n}}\n",
            infile.display()
        ),
    )
    .unwrap();
    // This test binary is its own process: the daemons it starts read this HOME's asoundrc.
    std::env::set_var("HOME", &dir);

    let net = Net::new();
    let controller = start_controller(&dir, &net, "capture-format = \"48000:16:2\"");
    let mut a = start_speaker(&dir, &net, &SpeakerSpec::sim("left", 300.0, 70.0));
    let mut b = start_speaker(&dir, &net, &SpeakerSpec::sim("right", -200.0, -80.0));
    wait_locked(&controller, 2);

    // A device that is not there: refused at once with the device's reason, nothing plays.
    let (code, z) = send(
        "POST",
        &format!("{}/api/v1/play", controller.api),
        r#"{"uri":"alsa:chorus_no_such_card"}"#,
    );
    assert_eq!(code, 200, "{z}");
    std::thread::sleep(Duration::from_millis(300));
    let z = get(&format!("{}/api/v1/zone", controller.api)).unwrap();
    assert_eq!(z["state"], "stopped", "{z}");
    assert!(
        z["errors"].to_string().contains("chorus_no_such_card"),
        "{z}"
    );
    let (code, z) = send(
        "POST",
        &format!("{}/api/v1/play", controller.api),
        r#"{"uri":"alsa:"}"#,
    );
    assert_eq!(code, 400, "{z}");

    let (code, out, err) = chorusctl(&controller.api, &["play", "alsa:chorus_linein"]);
    assert_eq!(code, 0, "{out}{err}");
    std::thread::sleep(Duration::from_millis(500));
    let z = get(&format!("{}/api/v1/zone", controller.api)).unwrap();
    assert_eq!(z["state"], "playing", "{z}");
    assert_eq!(z["title"], "line-in (chorus_linein)", "{z}");
    std::thread::sleep(Duration::from_millis(2_500));
    let (code, out, err) = chorusctl(&controller.api, &["stop"]);
    assert_eq!(code, 0, "{out}{err}");
    std::thread::sleep(Duration::from_millis(300));
    a.stop();
    b.stop();
    for name in ["left", "right"] {
        let runs = Capture::load_tap(&dir, name).counter_runs(100);
        println!("{name}: {runs:?}");
        // Every frame from the first, none missing, none twice, until the stop.
        assert_eq!(runs.len(), 1, "{name}: {runs:?}\n{}", controller.log_text());
        assert_eq!(runs[0].1, 1, "{name}: {runs:?}");
        assert!(runs[0].2 > 48_000 * 2, "{name}: {runs:?}");
    }
    let (la, lb) = (
        Capture::load_tap(&dir, "left").counter_runs(100)[0].0,
        Capture::load_tap(&dir, "right").counter_runs(100)[0].0,
    );
    println!("line-in started at tap frame {la} and {lb}");
}
