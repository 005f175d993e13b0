//! Speakers on Wi-Fi: the stream by unicast (per speaker, or for a whole zone) and FLAC on
//! the wire, between processes in network namespaces of one LAN.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus_tests::*;
use serde_json::Value;
use std::time::Duration;

fn speaker(s: &Daemon) -> Value {
    get(&format!("{}/api/v1/speaker", s.api)).unwrap()
}

fn play_counter(controller: &Daemon, dir: &std::path::Path, seconds: u32) -> u32 {
    let n = 48_000 * seconds;
    let track = dir.join("counter.wav");
    write_counter_wav(&track, 1, n);
    play_to_end(controller, &track, Duration::from_secs(20));
    n
}

fn assert_whole(dir: &std::path::Path, name: &str, n: u32) {
    let runs = Capture::load_tap(dir, name).counter_runs(1_000);
    assert_eq!(runs.len(), 1, "{name}: {runs:?}");
    assert_eq!((runs[0].1, runs[0].2), (1, n as usize), "{name}: {runs:?}");
}

#[test]
fn a_speaker_that_asks_for_unicast_gets_it_and_leaves_the_group() {
    retry_on_host_stall(a_speaker_that_asks_for_unicast_gets_it_and_leaves_the_group_once);
}

fn a_speaker_that_asks_for_unicast_gets_it_and_leaves_the_group_once() {
    // The controller on host 1 sends FLAC; "wired" on host 2 takes the group; "wifi" on
    // host 3 asks for unicast.
    let lan = Lan::new(3);
    let dir = scratch("unicast");
    let net = Net::new();
    let controller = start_controller_zone(&dir, &net.on(&lan, 1), "codec = \"flac\"\n", "");
    let mut wired = start_speaker(
        &dir,
        &net.on(&lan, 2),
        &SpeakerSpec::sim("wired", 200.0, 40.0),
    );
    let mut spec = SpeakerSpec::sim("wifi", -300.0, -55.0);
    spec.speaker_extra = "delivery = \"unicast\"".into();
    let mut wifi = start_speaker(&dir, &net.on(&lan, 3), &spec);
    wait_locked(&controller, 2);
    let n = play_counter(&controller, &dir, 4);
    let (sw, sf) = (speaker(&wired), speaker(&wifi));
    let (code, listed, err) = chorusctl(&controller.api, &["speakers"]);
    wired.stop();
    wifi.stop();
    println!(
        "wired: {}\nwifi: {}\n{listed}",
        sw["network"], sf["network"]
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(sf["delivery"], "unicast", "{sf}");
    assert_eq!(sw["delivery"], "multicast", "{sw}");
    // The stream came to "wifi" by unicast, and once it did, not from the group too: the
    // copies that came both ways (before it left the group) are a few.
    let packets = sf["network"]["packets"].as_u64().unwrap();
    let unicast = sf["network"]["unicast_packets"].as_u64().unwrap();
    let duplicates = sf["network"]["duplicates"].as_u64().unwrap();
    assert!(unicast * 10 > packets * 9, "{sf}");
    assert!(duplicates * 10 < packets, "still in the group: {sf}");
    assert_eq!(sw["network"]["unicast_packets"], 0, "{sw}");
    // Both played the track whole, sample for sample, the controller says how it sends,
    // and chorusctl shows it.
    assert_whole(&dir, "wired", n);
    assert_whole(&dir, "wifi", n);
    let z = get(&format!("{}/api/v1/zone", controller.api)).unwrap();
    assert!(z["unicast_sent"].as_u64().unwrap() >= unicast, "{z}");
    let line = |name: &str| {
        listed
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or("")
            .to_string()
    };
    assert!(line("wifi").contains("unicast"), "{listed}");
    assert!(line("wired").contains("multicast"), "{listed}");
}

#[test]
fn a_zone_that_sends_by_unicast_sends_nothing_to_the_group() {
    retry_on_host_stall(a_zone_that_sends_by_unicast_sends_nothing_to_the_group_once);
}

fn a_zone_that_sends_by_unicast_sends_nothing_to_the_group_once() {
    let lan = Lan::new(3);
    let dir = scratch("unicast-zone");
    let net = Net::new();
    let controller = start_controller_zone(&dir, &net.on(&lan, 1), "delivery = \"unicast\"\n", "");
    let mut a = start_speaker(&dir, &net.on(&lan, 2), &SpeakerSpec::sim("a", 150.0, 30.0));
    let mut b = start_speaker(&dir, &net.on(&lan, 3), &SpeakerSpec::sim("b", -80.0, -20.0));
    wait_locked(&controller, 2);
    let n = play_counter(&controller, &dir, 3);
    let (sa, sb) = (speaker(&a), speaker(&b));
    a.stop();
    b.stop();
    for s in [&sa, &sb] {
        // Every datagram came by unicast: none from the group (the duplicates are the
        // stream's last datagrams, sent again at its end).
        assert_eq!(
            s["network"]["packets"], s["network"]["unicast_packets"],
            "{s}"
        );
        assert!(s["network"]["duplicates"].as_u64().unwrap() <= 20, "{s}");
        assert_eq!(s["delivery"], "unicast", "{s}");
    }
    assert_whole(&dir, "a", n);
    assert_whole(&dir, "b", n);
}
