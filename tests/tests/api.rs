//! The HTTP API against its OpenAPI document (`/api/v1/openapi.json`), on running daemons:
//! every route the source declares is documented and every documented operation answers as
//! documented; a property test throws malformed and out-of-range input at every operation
//! (never a 5xx, always a documented status with a JSON error); the token and the rate limit;
//! the event stream.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus_tests::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// Loose limits for tests that fire many calls.
const FAST: &str = "mutating-per-second = 100000\n";

/// A controller with a second zone, "kitchen", on `kitchen`'s group.
fn controller_with_api(dir: &std::path::Path, net: &Net, kitchen: &str, api_extra: &str) -> Daemon {
    let port = free_tcp_port();
    let cfg = format!(
        "log-level = \"info\"\n[api]\nlisten = \"127.0.0.1:{port}\"\nmdns = false\n{api_extra}\n[zone]\ngroup = \"{}\"\nport = {}\ninterface = \"127.0.0.1\"\n[controller]\nsync-port = {}\n{}[[controller.zones]]\nname = \"kitchen\"\ngroup = \"{kitchen}\"\n[speaker]\nenabled = false\n",
        net.group, net.port, net.sync_port, media_roots()
    );
    start_daemon(dir, "controller", &cfg)
}

fn speaker_with_api(dir: &std::path::Path, net: &Net, name: &str, api_extra: &str) -> Daemon {
    let port = free_tcp_port();
    let cfg = format!(
        "log-level = \"info\"\n[api]\nlisten = \"127.0.0.1:{port}\"\nmdns = false\n{api_extra}\n[zone]\ngroup = \"{}\"\nport = {}\ninterface = \"127.0.0.1\"\n[controller]\nenabled = false\n[speaker]\nname = \"{name}\"\noutput = \"sim\"\npath = \"{}\"\n",
        net.group,
        net.port,
        dir.join(format!("{name}.wav")).display()
    );
    start_daemon(dir, name, &cfg)
}

/// (method, path) of every `.route("...", get(...).put(...))` in the daemon's source.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut files = vec![repo().join("daemon/src")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for part in text.split(".route(").skip(1) {
            // `"/path", get(a).post(b))`, however rustfmt wrapped it: up to the `)` that
            // closes `.route(`.
            let Some(rest) = part.trim_start().strip_prefix('"') else {
                continue;
            };
            let Some((path, rest)) = rest.split_once('"') else {
                continue;
            };
            let mut depth = 1;
            let call: String = rest
                .chars()
                .take_while(|&ch| {
                    depth += match ch {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth > 0
                })
                .collect();
            for m in ["get", "put", "post", "delete", "patch"] {
                let called = call
                    .match_indices(&format!("{m}("))
                    .any(|(i, _)| i == 0 || !call.as_bytes()[i - 1].is_ascii_alphanumeric());
                if called {
                    out.insert((m.to_string(), path.to_string()));
                }
            }
        }
    }
    out
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.clone(), path.clone(), op.clone()));
        }
    }
    ops
}

/// A raw request: (status, body as JSON or as a string).
fn call(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    content_type: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(5));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let r = match body {
        Some(b) => req.set("content-type", content_type).send_bytes(b),
        None => req.call(),
    };
    status_and_body(method, url, r)
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Checks an answer against the operation's documented responses.
fn check_answer(doc: &Value, op: &Value, what: &str, code: u16, body: &Value) {
    assert!(code < 500, "{what}: {code} {body}");
    let documented = &op["responses"][code.to_string()];
    assert!(
        documented.is_object(),
        "{what}: status {code} is not documented ({body})"
    );
    let Some(schema) = documented["content"]["application/json"]["schema"].as_object() else {
        return;
    };
    let schema = resolve(doc, &Value::Object(schema.clone())).clone();
    for field in schema["required"].as_array().into_iter().flatten() {
        let f = field.as_str().unwrap();
        assert!(
            body.get(f).is_some(),
            "{what}: {code} answer lacks {f:?}: {body}"
        );
    }
    if code >= 400 {
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{what}: error without a JSON body: {body}"
        );
    }
}

/// A valid body for an operation, from its schema.
fn valid_body(schema: &Value, s: &Setup) -> Value {
    let track = &s.track;
    let mut o = serde_json::Map::new();
    for (k, sc) in schema["properties"].as_object().into_iter().flatten() {
        let v = match (k.as_str(), sc["type"].as_str()) {
            ("uri", _) => json!(track),
            ("zone", _) => json!("kitchen"),
            ("group", _) => json!(s.kitchen),
            ("port", _) => json!(s.port),
            ("position_s", _) => json!(0.5),
            ("position" | "from" | "to", _) => json!(0),
            ("mode", _) => json!("off"),
            (_, Some("integer")) => json!(30),
            (_, Some("number")) => json!(0),
            (_, Some("boolean")) => json!(false),
            _ => json!("x"),
        };
        o.insert(k.clone(), v);
    }
    Value::Object(o)
}

struct Setup {
    _dir: std::path::PathBuf,
    /// The second zone's group, and the stream port.
    kitchen: String,
    port: u16,
    controller: Daemon,
    speaker: Daemon,
    track: String,
}

fn setup(tag: &str, api_extra: &str) -> Setup {
    let dir = scratch(tag);
    let net = Net::new();
    let kitchen = Net::new().group;
    let controller = controller_with_api(&dir, &net, &kitchen, api_extra);
    let speaker = speaker_with_api(&dir, &net, "den", api_extra);
    wait_locked(&controller, 1);
    let track = dir.join("counter.wav");
    write_counter_wav(&track, 1, 48_000 * 30);
    Setup {
        track: track.display().to_string(),
        kitchen,
        port: net.port,
        _dir: dir,
        controller,
        speaker,
    }
}

fn base_for<'a>(s: &'a Setup, op: &Value) -> &'a str {
    match op["x-chorus-role"].as_str() {
        Some("speaker") => &s.speaker.api,
        _ => &s.controller.api,
    }
}

#[test]
fn every_route_is_documented_and_answers_as_documented() {
    let s = setup("openapi", FAST);
    let doc = get(&format!("{}/api/v1/openapi.json", s.controller.api)).unwrap();
    assert_eq!(
        doc,
        get(&format!("{}/api/v1/openapi.json", s.speaker.api)).unwrap()
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // The source's routes and the document's operations are the same set.
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    assert_eq!(routes_in_source(), documented);
    // Each operation, with a valid call, answers with a documented success. Transport calls
    // come after play (so that seek has something to seek in); stop last.
    let mut ops = operations(&doc);
    let order = |p: &str| match p {
        "/api/v1/play" => 0,
        "/api/v1/seek" => 1,
        "/api/v1/next" => 3,
        "/api/v1/previous" => 4,
        "/api/v1/stop" => 5,
        _ => 2,
    };
    ops.sort_by_key(|(_, p, _)| order(p));
    for (method, path, op) in &ops {
        if path == "/api/v1/events" {
            // Endless: tested below (events_arrive_within_200_ms).
            continue;
        }
        let url = format!(
            "{}{}",
            base_for(&s, op),
            path.replace("{name}", "den").replace("{position}", "0")
        );
        let body = op["requestBody"]["content"]["application/json"]["schema"]
            .as_object()
            .map(|sc| valid_body(resolve(&doc, &Value::Object(sc.clone())), &s).to_string());
        let (code, answer) = if path == "/metrics" {
            let r = ureq::get(&url).call().unwrap();
            (r.status(), Value::Null)
        } else {
            call(
                &method.to_uppercase(),
                &url,
                body.as_deref().map(str::as_bytes),
                "application/json",
                None,
            )
        };
        let what = format!("{method} {path}");
        println!("{what}: {code}");
        assert!((200..300).contains(&code), "{what}: {code} {answer}");
        if path != "/metrics" {
            check_answer(&doc, op, &what, code, &answer);
        }
    }
    // Unknown routes and methods: JSON errors too.
    for (m, p, want) in [
        ("GET", "/api/v1/nothing", 404),
        ("GET", "/", 404),
        ("DELETE", "/api/v1/zone", 405),
        ("GET", "/api/v1/play", 405),
    ] {
        let (code, body) = call(m, &format!("{}{p}", s.controller.api), None, "", None);
        assert_eq!(code, want, "{m} {p}: {body}");
        assert!(body["error"]["code"].is_string(), "{m} {p}: {body}");
    }
}

/// xorshift
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

#[test]
fn hostile_input_gets_documented_json_errors_never_a_5xx() {
    let s = setup("fuzzapi", FAST);
    let doc = get(&format!("{}/api/v1/openapi.json", s.controller.api)).unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let odd_values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(101),
        json!(1e308),
        json!(-1e308),
        json!(0.5),
        json!(i64::MAX),
        json!(""),
        json!("30"),
        json!("/definitely/not/here.flac"),
        json!("http://example.invalid/stream"),
        json!("../../etc/passwd"),
        json!([1, 2]),
        json!({"a": 1}),
        json!("x".repeat(5000)),
    ];
    let mut calls = 0;
    for (method, path, op) in operations(&doc) {
        let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"].as_object()
        else {
            continue;
        };
        let schema = resolve(&doc, &Value::Object(schema.clone())).clone();
        let base = base_for(&s, &op).to_string();
        let good = valid_body(&schema, &s);
        for round in 0..40 {
            let name = if round % 5 == 4 { "nobody" } else { "den" };
            let url = format!("{base}{}", path.replace("{name}", name));
            let (bytes, ctype): (Vec<u8>, &str) = match round % 8 {
                0 => (b"{not json".to_vec(), "application/json"),
                1 => (good.to_string().into_bytes(), "text/plain"),
                2 => (
                    (0..rng.next() % 64).map(|_| rng.next() as u8).collect(),
                    "application/json",
                ),
                3 => (b"{}".to_vec(), "application/json"),
                4 => {
                    let mut b = good.clone();
                    b["unexpected"] = json!(1);
                    (b.to_string().into_bytes(), "application/json")
                }
                _ => {
                    // Every field of a valid body, one at a time, given an odd value.
                    let mut b = good.clone();
                    if let Some(o) = b.as_object_mut() {
                        let keys: Vec<String> = o.keys().cloned().collect();
                        if !keys.is_empty() {
                            let k = rng.pick(&keys).clone();
                            o.insert(k, rng.pick(&odd_values).clone());
                        }
                    }
                    (b.to_string().into_bytes(), "application/json")
                }
            };
            let (code, answer) = call(&method.to_uppercase(), &url, Some(&bytes), ctype, None);
            let what = format!(
                "{method} {url} {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
            );
            check_answer(&doc, &op, &what, code, &answer);
            calls += 1;
        }
    }
    // Path parameters that are not positions.
    let remove = operations(&doc)
        .into_iter()
        .find(|(m, p, _)| m == "delete" && p == "/api/v1/queue/{position}")
        .unwrap()
        .2;
    for p in [
        "-1",
        "abc",
        "99999999999999999999999",
        "0.5",
        "%00",
        "1e3",
        "4096",
    ] {
        let url = format!("{}/api/v1/queue/{p}", s.controller.api);
        let (code, answer) = call("DELETE", &url, None, "", None);
        check_answer(&doc, &remove, &format!("DELETE {url}"), code, &answer);
        calls += 1;
    }
    println!("{calls} hostile calls, all answered as documented");
    assert!(calls > 300);
    // Both daemons still serve.
    assert!(get(&format!("{}/api/v1/status", s.controller.api)).is_ok());
    assert!(get(&format!("{}/api/v1/speaker", s.speaker.api)).is_ok());
}

#[test]
fn the_token_guards_changes_and_calls_are_rate_limited() {
    let token = "a-long-enough-api-token-for-tests";
    let s = setup(
        "token",
        &format!("token = \"{token}\"\nmutating-per-second = 5\n"),
    );
    let stop = format!("{}/api/v1/stop", s.controller.api);
    // Reads are open; changes need the token.
    assert!(get(&format!("{}/api/v1/zone", s.controller.api)).is_ok());
    for t in [None, Some("wrong-token-of-the-same-shape-xx"), Some("")] {
        let (code, body) = call("POST", &stop, Some(b"{}"), "application/json", t);
        assert_eq!(code, 401, "{t:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let (code, body) = call("POST", &stop, Some(b"{}"), "application/json", Some(token));
    assert_eq!(code, 200, "{body}");
    // chorusctl passes it (and says why without it); the controller passes it on to speakers.
    let (code, _, err) = chorusctl(&s.controller.api, &["volume", "den", "40"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("token"), "{err}");
    let (code, _, err) =
        chorusctl_with_token(&s.controller.api, Some(token), &["volume", "den", "40"]);
    assert_eq!(code, 0, "{err}");
    let st = get(&format!("{}/api/v1/speaker", s.speaker.api)).unwrap();
    assert_eq!(st["volume"], 40, "{st}");
    // Over 5 a second (burst 10): refused with 429, and a JSON error.
    let mut limited = 0;
    for _ in 0..30 {
        let (code, body) = call("POST", &stop, Some(b"{}"), "application/json", Some(token));
        if code == 429 {
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            limited += 1;
        } else {
            assert_eq!(code, 200, "{body}");
        }
    }
    assert!(limited >= 15, "only {limited} of 30 limited");
    // Wrong guesses at the token are limited the same way.
    std::thread::sleep(Duration::from_secs(3));
    let mut limited = 0;
    for _ in 0..30 {
        let t = Some("wrong-token-of-the-same-shape-xx");
        let (code, body) = call("POST", &stop, Some(b"{}"), "application/json", t);
        match code {
            429 => limited += 1,
            401 => {}
            _ => panic!("{code}: {body}"),
        }
    }
    assert!(limited >= 15, "only {limited} of 30 guesses limited");
}

/// Reads an SSE stream in a thread: (time received, event name, data).
fn subscribe(url: &str) -> std::sync::mpsc::Receiver<(Instant, String, Value)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let resp = ureq::get(url)
        .timeout(Duration::from_secs(60))
        .call()
        .unwrap();
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let reader = BufReader::new(resp.into_reader());
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                let v = serde_json::from_str(d).unwrap_or(Value::Null);
                if tx.send((Instant::now(), event.clone(), v)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn wait_event(
    rx: &std::sync::mpsc::Receiver<(Instant, String, Value)>,
    since: Instant,
    within: Duration,
    want: impl Fn(&str, &Value) -> bool,
) -> Duration {
    let deadline = since + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (at, name, data) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the event did not come within {within:?}"));
        if want(&name, &data) {
            return at.duration_since(since);
        }
    }
}

#[test]
fn events_arrive_within_200_ms() {
    let s = setup("sse", FAST);
    let rx = subscribe(&format!("{}/api/v1/events", s.controller.api));
    std::thread::sleep(Duration::from_millis(200));
    // Volume through the controller.
    let t0 = Instant::now();
    let (code, out, err) = chorusctl(&s.controller.api, &["volume", "den", "35"]);
    assert_eq!(code, 0, "{out}{err}");
    let dt = wait_event(&rx, t0, Duration::from_secs(3), |n, d| {
        n == "volume" && d["speaker"] == "den" && d["volume"] == 35
    });
    println!("volume event after {dt:?}");
    assert!(dt < Duration::from_millis(200), "{dt:?}");
    // A track starts: transport and track events.
    let t0 = Instant::now();
    let (code, out, err) = chorusctl(&s.controller.api, &["play", &s.track]);
    assert_eq!(code, 0, "{out}{err}");
    let dt = wait_event(&rx, t0, Duration::from_secs(3), |n, d| {
        n == "track" && d["title"].as_str().is_some_and(|t| t.contains("counter"))
    });
    println!("track event after {dt:?}");
    assert!(dt < Duration::from_millis(200), "{dt:?}");
    let t0 = Instant::now();
    let (code, out, err) = chorusctl(&s.controller.api, &["pause"]);
    assert_eq!(code, 0, "{out}{err}");
    let dt = wait_event(&rx, t0, Duration::from_secs(3), |n, d| {
        n == "transport" && d["state"] == "paused"
    });
    println!("transport event after {dt:?}");
    assert!(dt < Duration::from_millis(200), "{dt:?}");
    // A speaker that goes away is reported (heartbeats stop; online ends after a few seconds).
    let mut sp = s.speaker;
    sp.stop();
    wait_event(&rx, Instant::now(), Duration::from_secs(15), |n, d| {
        n == "speaker" && d["speaker"] == "den" && d["event"] == "left"
    });
    // The daemon stops promptly with a client still connected.
    let mut c = s.controller;
    let t0 = Instant::now();
    c.stop();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn chorusctl_watches_status_and_streams_events() {
    let s = setup("ctlwatch", FAST);
    let (code, out, err) = chorusctl(&s.controller.api, &["play", &s.track]);
    assert_eq!(code, 0, "{out}{err}");
    // Heard a latency (150 ms) after the command; a cell of the bar is 0.75 s of the track,
    // drawn from half of it on: the second view (0.5 s after the first) shows it from here.
    std::thread::sleep(Duration::from_millis(600));
    // status --watch: the now-playing view with a progress bar and the speakers, redrawn.
    let (code, out, err) = chorusctl(&s.controller.api, &["status", "--watch", "--views", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("(Ctrl-C to quit)").count(), 2, "{out}");
    assert!(out.contains("counter") && out.contains("[#"), "{out}");
    assert!(out.contains("den") && out.contains("locked"), "{out}");
    // --json: one status a line.
    let (code, out, err) = chorusctl(
        &s.controller.api,
        &["--json", "status", "--watch", "--views", "2"],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines
        .iter()
        .all(|v| v["controller"]["zone"]["state"] == "playing"));
    // events: what changes, as it changes.
    let child = std::process::Command::new(bin("chorusctl"))
        .args([
            "--controller",
            &s.controller.api,
            "--json",
            "events",
            "--count",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, err) = chorusctl(&s.controller.api, &["volume", "den", "55"]);
    assert_eq!(code, 0, "{out}{err}");
    let out = child.wait_with_output().unwrap();
    let ev: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["event"], "volume", "{ev}");
    assert_eq!(ev["volume"], 55, "{ev}");
}

#[test]
fn a_speaker_publishes_its_own_changes_as_they_happen() {
    let s = setup("spkevents", FAST);
    let rx = subscribe(&format!("{}/api/v1/events", s.speaker.api));
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let url = format!("{}/api/v1/speaker/volume", s.speaker.api);
    let (code, body) = send("PUT", &url, r#"{"volume": 22}"#);
    assert_eq!(code, 200, "{body}");
    let dt = wait_event(&rx, t0, Duration::from_secs(3), |n, d| {
        n == "volume" && d["speaker"] == "den" && d["volume"] == 22
    });
    assert!(dt < Duration::from_millis(200), "{dt:?}");
    // The controller gone, no answer comes: after 5 s the speaker says its clock is not
    // locked any more, in its status and on its stream.
    let mut c = s.controller;
    c.stop();
    wait_event(&rx, Instant::now(), Duration::from_secs(10), |n, d| {
        n == "speaker" && d["speaker"] == "den" && d["event"] == "lost_sync"
    });
    let st = get(&format!("{}/api/v1/speaker", s.speaker.api)).unwrap();
    assert_eq!(st["locked"], false, "{st}");
}
