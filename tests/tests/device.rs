//! Through a real ALSA plugin device with a coarse pointer: two speakers play to PCMs of the
//! `jack` plugin into one JACK server (dummy backend, synchronous: one sample clock), whose
//! pointer moves a JACK period at a time and whose status is stamped at the call. A JACK client
//! (tests/rig/jack-rec.c) records both speakers in the same process cycle. After lock the servo
//! must stay off its rail, nothing may re-anchor and nothing may be lost, and the two speakers
//! must play together within 250 µs median, 1 ms at most: generous bounds for a loaded CI
//! machine (eight runs with a busy loop on one core: median 0.8-8.9 µs, at most 25.6 µs; before
//! the device clock it was 2.5-2.8 ms p99 with holes, and before 2026-12-07 one speaker in four
//! under that load kept a bracket 100-150 µs off the other's for its first 10 s). tests/rig/device-bench measures (`--stall-every` stops the
//! server now and then: its timeline moves, which the speakers follow with one jump each).
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus_tests::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    /// SIGTERM first: a JACK server killed outright leaves its shared memory behind, and JACK's
    /// registry holds only a few servers, so later runs could not start one.
    fn drop(&mut self) {
        // One that ended already (the recorder, stopped and waited for) is left alone.
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        if wait_until(Duration::from_secs(3), || self.0.try_wait().ok().flatten()).is_none() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn status(d: &Daemon) -> serde_json::Value {
    get(&format!("{}/api/v1/status", d.api)).unwrap_or_default()["speaker"]["playout"].clone()
}

/// The JACK server, the recorder, a controller and two speakers (clocks +150 and -200 ppm
/// off) playing to PCMs of the `jack` plugin.
struct Rig {
    dir: std::path::PathBuf,
    jack_log: std::path::PathBuf,
    /// Held for its drop: the server lives as long as the rig.
    _jackd: Kill,
    rec: Kill,
    controller: Daemon,
    spk: [Daemon; 2],
}

fn rig() -> Rig {
    if Command::new("jackd").arg("--version").output().is_err() {
        panic!("jackd is not installed: tests/rig/deps installs jackd2 and libasound2-plugins");
    }
    let dir = scratch("device");
    let server = format!("chorus-test-{}", std::process::id());
    std::env::set_var("JACK_DEFAULT_SERVER", &server);
    std::env::set_var("JACK_NO_AUDIO_RESERVATION", "1");
    let jack_log = dir.join("jackd.log");
    let log = || std::fs::File::create(&jack_log).expect("jackd.log");
    let jackd = Kill(
        Command::new("jackd")
            // Real-time: the dummy backend's clock is a timer, and on a loaded machine a
            // server without priority lost cycles and ran 700-1100 ppm slow (the servo then
            // railed, rightly). JACK falls back to normal scheduling where it may not.
            .args([
                "-R", "-P", "70", "-S", "-d", "dummy", "-r", "48000", "-p", "256",
            ])
            .stdout(log())
            .stderr(log())
            .spawn()
            .expect("start jackd"),
    );
    let rec_bin = dir.join("jack-rec");
    let cc = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&rec_bin)
        .arg(repo().join("tests/rig/jack-rec.c"))
        .args(["-ljack", "-lm"])
        .status()
        .expect("cc");
    assert!(cc.success(), "building jack-rec (libjack-jackd2-dev)");
    let rec = wait_until(Duration::from_secs(10), || {
        let mut c = Command::new(&rec_bin)
            .arg(&dir)
            .args(["40", "spk1", "spk2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        std::thread::sleep(Duration::from_millis(300));
        match c.try_wait() {
            Ok(None) => Some(c),
            _ => None,
        }
    })
    .expect("jack-rec connects to the JACK server");
    let mut rc = String::new();
    for n in ["spk1", "spk2"] {
        rc += &format!(
            "pcm.{n} {{ type plug slave.pcm {{ type jack playback_ports {{ 0 rec:{n}_1 1 rec:{n}_2 }} }} }}\n"
        );
    }
    std::fs::write(dir.join(".asoundrc"), rc).unwrap();
    std::env::set_var("HOME", &dir);

    let net = Net::new();
    let controller = start_controller(&dir, &net, "");
    let spk = |name: &str, off: f64, ppm: f64| {
        let mut s = SpeakerSpec::sim(name, off, ppm);
        s.output = "alsa".into();
        s.device = name.into();
        start_speaker(&dir, &net, &s)
    };
    let spk = [spk("spk1", 3_000.0, 150.0), spk("spk2", -2_000.0, -200.0)];
    wait_locked(&controller, 2);
    Rig {
        dir,
        jack_log,
        _jackd: jackd,
        rec: Kill(rec),
        controller,
        spk,
    }
}

/// What a 12 s track played through the rig left: each speaker's status at lock (4 s after the
/// start) and at the end, the resampler's ratios between, and the skews of the recording after
/// lock (µs, one per 100 ms).
struct Played {
    locked: [serde_json::Value; 2],
    end: [serde_json::Value; 2],
    ratios: Vec<f64>,
    skews: Vec<f64>,
    xruns: usize,
}

/// Plays the track through the rig.
fn play(rig: Rig) -> Played {
    let track = rig.dir.join("track.wav");
    write_counter_wav(&track, 1, 48_000 * 12);
    let started = Instant::now();
    let (code, _, err) = chorusctl(&rig.controller.api, &["play", track.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let [a, b] = &rig.spk;
    // Lock: 4 s after the start (the device clock and the servo settle within 2 s).
    std::thread::sleep(Duration::from_secs(4));
    let locked = [status(a), status(b)];
    let mut ratios = vec![];
    while started.elapsed() < Duration::from_secs(11) {
        for d in [a, b] {
            ratios.push(status(d)["ratio_ppm"].as_f64().unwrap_or(0.0));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let end = [status(a), status(b)];
    for (k, e) in end.iter().enumerate() {
        eprintln!("speaker {}: {e}", k + 1);
    }
    let xruns = std::fs::read_to_string(&rig.jack_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("xrun"))
        .count();
    wait_stopped(&rig.controller, Duration::from_secs(20));
    // SIGINT: the recorder writes its WAV headers and ends.
    let mut rec = rig.rec;
    let _ = Command::new("kill")
        .args(["-INT", &rec.0.id().to_string()])
        .status();
    let _ = rec.0.wait();
    let ca = Capture::load(&rig.dir, "spk1");
    let cb = Capture::load(&rig.dir, "spk2");
    let (first, last) = ca.sound_span().expect("spk1 was recorded");
    let skews: Vec<f64> = (first + 4 * 48_000..last.saturating_sub(8_000))
        .step_by(4_800)
        .filter_map(|i| skew_us(&ca, &cb, i))
        .collect();
    assert!(skews.len() > 20, "too few windows matched: {}", skews.len());
    Played {
        locked,
        end,
        ratios,
        skews,
        xruns,
    }
}

/// The JACK dummy backend's sample clock is a timer: without real-time priority (where the
/// machine refuses it) it loses cycles under load and runs slow, 700-1100 ppm measured. Both
/// speakers see that through their own clocks (+150 and -200 ppm): it is the device's true
/// drift, which the servo must follow. Returns it, after checking what both speakers found.
fn device_drift(p: &Played) -> f64 {
    let rate = |k: usize| p.end[k]["device"]["rate_ppm"].as_f64().unwrap_or(0.0);
    let (da, db) = (rate(0) + 150.0, rate(1) - 200.0);
    eprintln!("the device's own drift, as the speakers measured it: {da:+.1} / {db:+.1} ppm");
    assert!(
        (da - db).abs() < 50.0,
        "the speakers disagree on the device's rate"
    );
    for e in &p.end {
        assert_eq!(e["frames_lost"], 0, "{e}");
        assert_eq!(e["output_errors"], 0, "{e}");
        let dev = &e["device"];
        // The step, or a multiple of it when no reading straddled an edge (probed wake-ups
        // land whole steps apart).
        let step = dev["pointer_step_frames"].as_u64().unwrap_or(0);
        assert!(step >= 256 && step % 256 == 0, "{e}");
        assert_eq!(dev["stamps"], "at_call", "{e}");
    }
    0.5 * (da + db)
}

/// A servo at or near its ±1000 ppm rail while the device is near the controller's rate is
/// the failure this test is for: the resampler follows the device's drift, nothing more.
fn assert_off_the_rail(p: &Played, drift: f64) {
    let worst = p
        .ratios
        .iter()
        .map(|r| (r + drift).abs())
        .fold(0.0, f64::max);
    eprintln!("resampler at most {worst:.1} ppm off the device's drift after lock");
    assert!(
        worst < 300.0,
        "resampler {worst} ppm off the device's drift after lock (ratios, two speakers in turn, \
         one pair per 250 ms: {:?})",
        p.ratios
    );
}

/// Re-anchors after lock: the speaker's own (`resyncs`) and those that followed the device's
/// timeline where it moved (`device_jumps`). Without a server xrun there must be neither.
fn jumps_after_lock(p: &Played, k: usize) -> u64 {
    let n = |v: &serde_json::Value| {
        v["resyncs"].as_u64().unwrap_or(0) + v["device_jumps"].as_u64().unwrap_or(0)
    };
    n(&p.end[k]).saturating_sub(n(&p.locked[k]))
}

#[test]
fn speakers_on_a_coarse_pointer_device_hold_sync_without_rail_or_resync() {
    retry_on_host_stall(speakers_on_a_coarse_pointer_device_hold_sync_without_rail_or_resync_once);
}

fn speakers_on_a_coarse_pointer_device_hold_sync_without_rail_or_resync_once() {
    let p = play(rig());
    // The JACK server's own xruns (its dummy driver's cycle late on a loaded host) move the
    // graph's timeline, and each is followed by a jump: a failure after one is the host's,
    // and the test runs again.
    if p.xruns > 0 {
        host_fault(&format!("the JACK server reported {} xrun(s)", p.xruns));
    }
    let drift = device_drift(&p);
    // A device beyond the servo's ±1000 ppm range must be re-anchored now and then.
    if drift.abs() < 800.0 {
        for k in 0..2 {
            assert_eq!(
                jumps_after_lock(&p, k),
                0,
                "speaker {} re-anchored after lock",
                k + 1
            );
        }
    }
    assert_off_the_rail(&p, drift);
    let (median, max) = stats_abs(&p.skews);
    eprintln!("jack plugin, period 256: median |skew| {median:.1} µs, max {max:.1} µs");
    assert!(
        median < 250.0 && max < 1_000.0,
        "median {median} µs, max {max} µs"
    );
}
