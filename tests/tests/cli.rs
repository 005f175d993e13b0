//! `chorusd check-config` and `chorusctl` error handling, through the real binaries.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus_tests::*;
use std::process::Command;
use std::time::Duration;

fn check(config: &str) -> (i32, String) {
    let dir = scratch("config");
    let p = dir.join("chorus.toml");
    std::fs::write(&p, config).unwrap();
    let out = Command::new(bin("chorusd"))
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn shipped_config_is_valid() {
    let (code, out) = check(&std::fs::read_to_string(repo().join("config/chorus.toml")).unwrap());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn bad_configs_name_the_key() {
    let cases = [
        ("[speaker]\nvolum = 3\n", "speaker.volum", "unknown field"),
        ("[zone]\nport = \"seven\"\n", "zone.port", "invalid type"),
        (
            "[zone]\ngroup = \"192.168.1.1\"\n",
            "zone.group",
            "not a multicast address",
        ),
        (
            "[zone]\ngroup = \"nonsense\"\n",
            "zone.group",
            "not an IPv4 address",
        ),
        (
            "[api]\nlisten = \"localhost\"\n",
            "api.listen",
            "not an address",
        ),
        (
            "[speaker]\noutput = \"file\"\npath = \"/nonexistent/dir/out.wav\"\n",
            "speaker.path",
            "does not exist",
        ),
        (
            "[speaker]\noutput = \"cassette\"\n",
            "speaker.output",
            "unknown variant",
        ),
        (
            "[zone]\nrate = 1000\nchannels = 12\n",
            "zone.rate",
            "outside",
        ),
        (
            "[controller]\nenabled = false\n[speaker]\nenabled = false\n",
            "controller.enabled",
            "nothing to run",
        ),
        (
            "[security]\nkey = \"short\"\n",
            "security.key",
            "at least 16",
        ),
        (
            "[security]\nkey-file = \"/nonexistent/chorus.key\"\n",
            "security.key-file",
            "cannot read",
        ),
        ("this is = not toml [", "", "TOML"),
    ];
    for (cfg, key, what) in cases {
        let (code, out) = check(cfg);
        assert_eq!(code, 2, "config {cfg:?} accepted: {out}");
        assert!(
            out.contains(key),
            "config {cfg:?}: message does not name {key}: {out}"
        );
        assert!(
            out.to_lowercase().contains(&what.to_lowercase()),
            "config {cfg:?}: message lacks {what:?}: {out}"
        );
    }
    let out = Command::new(bin("chorusd"))
        .arg("check-config")
        .arg("/nonexistent/chorus.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config"));
}

#[test]
fn chorusctl_reports_an_unreachable_daemon() {
    let port = free_tcp_port();
    let (code, _, err) = chorusctl(&format!("http://127.0.0.1:{port}"), &["status"]);
    assert_eq!(code, 3);
    assert!(err.contains("cannot reach chorusd"), "{err}");
}

#[test]
fn api_rejects_bad_requests_with_json_errors() {
    let dir = scratch("api");
    let net = Net::new();
    let c = start_controller(&dir, &net, "");
    let cases = [
        ("POST", "/api/v1/play", "{not json", 400),
        ("POST", "/api/v1/play", "{\"url\":\"x\"}", 422),
        (
            "POST",
            "/api/v1/play",
            "{\"uri\":\"/nonexistent.wav\"}",
            404,
        ),
        ("POST", "/api/v1/play", "{\"uri\":\"ftp://x/y.mp3\"}", 400),
        ("POST", "/api/v1/seek", "{\"position_s\":-1}", 422),
        ("POST", "/api/v1/seek", "{\"position_s\":3}", 409),
        (
            "PUT",
            "/api/v1/speakers/nobody/volume",
            "{\"volume\":10}",
            404,
        ),
        ("PUT", "/api/v1/volume", "{\"volume\":101}", 422),
        ("GET", "/api/v1/nothing", "", 404),
    ];
    for (m, path, body, want) in cases {
        let (code, v) = send(m, &format!("{}{}", c.api, path), body);
        assert_eq!(code, want, "{m} {path} {body}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{m} {path}: not a JSON error: {v}"
        );
    }
    let (code, _, err) = chorusctl(&c.api, &["volume", "ghost", "40"]);
    assert_eq!(code, 1);
    assert!(err.contains("no speaker named"), "{err}");
    let (code, _, err) = chorusctl(&c.api, &["volume", "140"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn sighup_applies_what_can_change_and_names_what_cannot() {
    let dir = scratch("sighup");
    let net = Net::new();
    let spk = SpeakerSpec::sim("hup", 0.0, 0.0);
    let mut d = start_speaker(&dir, &net, &spk);
    let cfg_path = dir.join("hup.toml");
    let original = std::fs::read_to_string(&cfg_path).unwrap();
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    let hup = || nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let url = format!("{}/api/v1/speaker", d.api);

    // 1. A broken config changes nothing, and the daemon says why.
    std::fs::write(&cfg_path, format!("{original}\nbogus-key = 1\n")).unwrap();
    hup();
    wait_until(Duration::from_secs(5), || {
        d.log_text()
            .contains("keeping the running configuration")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no reload error logged:\n{}", d.log_text()));
    assert!(d.running(), "a bad reload must not stop the daemon");

    // 2. Extra latency changes live; a new zone port and a datagram key are named as needing
    // a restart.
    let port = net.port.to_string();
    let changed = original
        .replace("[speaker]\n", "[speaker]\nextra-latency-ms = 12.5\n")
        .replace(
            &format!("port = {port}\n"),
            &format!("port = {}\n", net.port + 1),
        )
        + "\n[security]\nkey = \"a-datagram-key-of-enough-length\"\n";
    assert_ne!(changed, original);
    std::fs::write(&cfg_path, changed).unwrap();
    hup();
    let st = wait_until(Duration::from_secs(5), || {
        let st = get(&url).ok()?;
        (st["latency"]["extra_ms"].as_f64() == Some(12.5)).then_some(st)
    })
    .unwrap_or_else(|| panic!("extra latency not applied:\n{}", d.log_text()));
    assert_eq!(st["latency"]["extra_ms"].as_f64(), Some(12.5));
    let log = d.log_text();
    assert!(
        log.contains("applied: speaker.extra-latency-ms")
            && log.contains("needs a restart to take effect: [zone], [security]"),
        "{log}"
    );
    d.stop();
}
