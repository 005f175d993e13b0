//! systemd integration: READY=1 once the API listens and audio is set up, watchdog pings while
//! healthy, STOPPING=1 on SIGTERM — checked with a fake NOTIFY_SOCKET.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus_tests::*;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn ready_watchdog_and_stopping_reach_the_notify_socket() {
    retry_on_host_stall(ready_watchdog_and_stopping_reach_the_notify_socket_once);
}

fn ready_watchdog_and_stopping_reach_the_notify_socket_once() {
    let dir = scratch("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let net = Net::new();
    let port = free_tcp_port();
    let cfg = dir.join("speaker.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n[zone]\ngroup = \"{}\"\nport = {}\ninterface = \"127.0.0.1\"\n[controller]\nenabled = false\n[speaker]\nname = \"s\"\noutput = \"file\"\npath = \"{}\"\n",
            net.group,
            net.port,
            dir.join("out.wav").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin("chorusd"))
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        name: "s".into(),
        api: format!("http://127.0.0.1:{port}"),
        child: Some(child),
        log: dir.join("log"),
    };
    let mut msgs: Vec<String> = vec![];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline
        && msgs.iter().filter(|m| m.as_str() == "WATCHDOG=1").count() < 3
    {
        if let Ok(n) = sock.recv(&mut buf) {
            msgs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let ready = msgs
        .iter()
        .position(|m| m.starts_with("READY=1"))
        .expect("no READY=1");
    assert!(
        get(&format!("{}/api/v1/status", d.api)).is_ok(),
        "READY before the API answers"
    );
    let pings = msgs[ready..]
        .iter()
        .filter(|m| m.as_str() == "WATCHDOG=1")
        .count();
    assert!(pings >= 3, "watchdog pings: {msgs:?}\n{}", d.log_text());
    d.stop();
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        stopping |= &buf[..n] == b"STOPPING=1";
    }
    assert!(stopping, "no STOPPING=1 on SIGTERM");
}
