//! Attacks from the LAN against a default install (no datagram key, no API token), as real
//! processes: the controller, a speaker and an attacker each in their own network namespace.

use chorus_tests::*;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn one_datagram_numbered_far_ahead_does_not_silence_the_zone() {
    // The attack: a copy of one of the stream's own datagrams, its sequence number 2^31 - 1
    // ahead. The replay window took it as the newest and refused every true datagram after
    // it as too old: the zone went silent until the controller restarted.
    let lan = Lan::new(3);
    let dir = scratch("seqjump");
    let net = Net::new();
    let controller = start_controller(&dir, &net.on(&lan, 1), "");
    let mut spk = start_speaker(
        &dir,
        &net.on(&lan, 2),
        &SpeakerSpec::sim("alpha", 250.0, 70.0),
    );
    wait_locked(&controller, 1);
    let spoofer = net
        .on(&lan, 3)
        .command(&bin("chorus-rig"))
        .args(["spoof", "--group", &net.group, "--port"])
        .arg(net.port.to_string())
        .args(["--interface", &lan.addr(3), "--seconds", "8"])
        .args(["--seq-jump", &(u32::MAX / 2).to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn chorus-rig spoof");
    std::thread::sleep(Duration::from_millis(300));
    let n = 48_000 * 4;
    let track = dir.join("counter.wav");
    write_counter_wav(&track, 1, n);
    play_to_end(&controller, &track, Duration::from_secs(15));
    let st = get(&format!("{}/api/v1/speaker", spk.api)).unwrap()["network"].clone();
    spk.stop();
    let out = spoofer.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("spoof: forged 1,"), "{said}");
    println!("{st}");
    assert_eq!(st["implausible"], 1, "{st}");
    // Every frame of the track played, in order: the forged datagram changed nothing.
    let runs = Capture::load_tap(&dir, "alpha").counter_runs(1_000);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].1, runs[0].2), (1, n as usize), "{runs:?}");
}
