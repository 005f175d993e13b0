//! `chorusctl`: control a chorus zone from the command line.
//!
//! Talks to the controller's HTTP API (`--controller`, `$CHORUS_CONTROLLER`, or the controller
//! found with mDNS, or http://127.0.0.1:7780). Human-readable output by default, `--json` for scripts. Exit codes:
//! 0 success, 1 the daemon refused the request, 2 usage, 3 the daemon is unreachable.
#![forbid(unsafe_code)]

mod render;

use render::{render, render_watch};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "chorusctl", version, about = "Control chorus multiroom audio")]
struct Cli {
    /// Controller API URL (default: the controller found with mDNS, else
    /// http://127.0.0.1:7780).
    #[arg(long, env = "CHORUS_CONTROLLER", global = true)]
    controller: Option<String>,
    /// Print the API's JSON answer instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// API token, when the daemon requires one (`[api] token-file`). Default: this box's
    /// /etc/chorus/api-token when it can be read (root or group chorus), sent only to a
    /// controller named with --controller or on this box, never to one found with mDNS.
    #[arg(long, env = "CHORUS_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The zone that playback, queue and zone commands act on (default: the controller's
    /// first zone).
    #[arg(long, env = "CHORUS_ZONE", global = true)]
    zone: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Zone and speakers at a glance.
    Status {
        /// Keep the view up to date (twice a second) until interrupted: now playing with a
        /// progress bar and each speaker's sync state. With --json: one status per line.
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after this many views (for scripts and tests).
        #[arg(long, hide = true)]
        views: Option<u64>,
    },
    /// Print state changes as they happen (the API's event stream) until interrupted.
    Events {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// The speakers the controller knows.
    Speakers,
    /// Play a file, a folder or an .m3u playlist (a path on the controller's box).
    Play {
        uri: String,
    },
    Pause,
    Resume,
    Stop,
    Next,
    /// Previous item (or the start of this one after 3 s).
    Prev,
    /// Seek within the current item.
    Seek {
        seconds: f64,
    },
    /// Set the volume (0-100) of one speaker, or of all.
    Volume {
        /// Speaker name (omit for all speakers).
        #[arg(value_name = "SPEAKER")]
        a: String,
        #[arg(value_name = "N")]
        b: Option<String>,
    },
    /// Toggle mute of one speaker (or of all).
    Mute {
        speaker: Option<String>,
    },
    /// Set a speaker's extra output latency (amplifier, DSP), ms.
    Latency {
        speaker: String,
        ms: f64,
    },
    /// List the chorus daemons that announce themselves on the network (mDNS).
    Discover,
    /// Show the queue.
    Queue,
    /// Add a file, folder, .m3u or FIFO to the queue (at the end, or before item N).
    Add {
        uri: String,
        /// 1-based position to insert at.
        #[arg(long)]
        at: Option<i64>,
    },
    /// Remove item N (1-based) from the queue.
    Remove {
        n: i64,
    },
    /// Move item FROM to position TO (1-based).
    Move {
        from: i64,
        to: i64,
    },
    /// Empty the queue (and stop).
    Clear,
    /// Shuffle the queue (the item playing stays playing).
    Shuffle,
    /// Set the zone volume (0-100): scales every speaker of the zone.
    ZoneVolume {
        n: String,
    },
    /// Toggle mute of the whole zone.
    ZoneMute,
    /// Repeat: off, all (the queue) or one (the item).
    Repeat {
        #[arg(value_parser = ["off", "all", "one"])]
        mode: String,
    },
    /// The controller's zones: what each plays and which speakers play it.
    Zones,
    /// Move a speaker to another zone (it switches when that zone's stream is due: no gap).
    Assign {
        speaker: String,
        zone: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        shell: clap_complete::Shell,
    },
}

enum Failure {
    Unreachable(String),
    Refused(String),
    Usage(String),
}

struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
    zone: Option<String>,
}

impl Client {
    fn new(base: &str, token: Option<String>, zone: Option<String>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
            token,
            zone,
        }
    }

    fn call(&self, method: &str, url: &str, body: Option<Value>) -> Result<Value, Failure> {
        let mut req = self.agent.request(method, url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {}", t.trim()));
        }
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match res {
            Ok(r) => r
                .into_json()
                .map_err(|e| Failure::Refused(format!("bad answer from {url}: {e}"))),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                    .unwrap_or(text);
                let hint = if code == 401 && self.token.is_none() {
                    format!(
                        "; pass --token or CHORUS_TOKEN, or, as root on a paired box, \
                         --controller {} to send {BOX_TOKEN}",
                        self.base
                    )
                } else {
                    String::new()
                };
                Err(Failure::Refused(format!("{msg} (HTTP {code}){hint}")))
            }
            Err(e) => Err(Failure::Unreachable(format!(
                "cannot reach chorusd at {}: {e}",
                self.base
            ))),
        }
    }
    /// The URL of `path`, with `?zone=` for calls that act on a zone.
    fn url(&self, path: &str) -> String {
        let zoned = ![
            "/api/v1/speaker",
            "/api/v1/volume",
            "/api/v1/zones",
            "/api/v1/events",
        ]
        .iter()
        .any(|p| path.starts_with(p));
        match &self.zone {
            Some(z) if zoned => format!("{}{}?zone={}", self.base, path, enc(z)),
            _ => format!("{}{}", self.base, path),
        }
    }
    fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call("GET", &self.url(path), None)
    }
    fn post(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call("POST", &self.url(path), Some(body))
    }
    fn put(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call("PUT", &self.url(path), Some(body))
    }
    fn delete(&self, path: &str) -> Result<Value, Failure> {
        self.call("DELETE", &self.url(path), None)
    }
}

/// The token the package generates at install, the same on every box once paired.
const BOX_TOKEN: &str = "/etc/chorus/api-token";

/// Whether an API URL points at this box (loopback): an answer learnt from mDNS may come from
/// anyone on the LAN, and this box's token goes only where the user said or to itself.
fn is_this_box(base: &str) -> bool {
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or(base)
        .split('/')
        .next()
        .unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if host == "localhost" {
        return true;
    }
    // An address of this box's own is one a socket can be bound to.
    host.trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback() || std::net::UdpSocket::bind((a, 0)).is_ok())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Completions { shell } = cli.cmd {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "chorusctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Cmd::Discover = cli.cmd {
        let found = browse(Duration::from_millis(2000), false);
        if cli.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&found).unwrap_or_default()
            );
        } else if found.is_empty() {
            println!("nothing found (is mDNS allowed on this network? [api] mdns on the boxes?)");
        } else {
            for f in &found {
                println!(
                    "{:<32} {:<20} zone {:<12} {}",
                    f["name"].as_str().unwrap_or("?"),
                    f["role"].as_str().unwrap_or("?"),
                    f["zone"].as_str().unwrap_or("?"),
                    f["api_url"].as_str().unwrap_or("?")
                );
            }
        }
        return ExitCode::SUCCESS;
    }
    let named = cli.controller.is_some();
    let base = cli.controller.clone().unwrap_or_else(|| {
        // A responder that just started is still probing its name (about 0.75 s): wait up to
        // 3 s, but only until a controller answers.
        browse(Duration::from_secs(3), true)
            .iter()
            .find(|f| f["role"].as_str().is_some_and(|r| r.contains("controller")))
            .and_then(|f| f["api_url"].as_str().map(String::from))
            .unwrap_or_else(|| "http://127.0.0.1:7780".into())
    });
    let token = cli.token.clone().or_else(|| {
        (named || is_this_box(&base))
            .then(|| std::fs::read_to_string(BOX_TOKEN).ok())
            .flatten()
    });
    let client = Client::new(&base, token, cli.zone.clone());
    match run(&client, &cli) {
        Ok(v) => {
            let streamed = matches!(
                cli.cmd,
                Cmd::Status { watch: true, .. } | Cmd::Events { .. }
            );
            if streamed {
                // Printed as it came.
            } else if cli.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render(&cli.cmd, &v));
            }
            ExitCode::SUCCESS
        }
        Err(Failure::Refused(m)) => {
            eprintln!("chorusctl: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(m)) => {
            eprintln!("chorusctl: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Unreachable(m)) => {
            eprintln!(
                "chorusctl: {m}\n(is chorusd running? set --controller or CHORUS_CONTROLLER)"
            );
            ExitCode::from(3)
        }
    }
}

fn parse_volume(s: &str) -> Result<i64, Failure> {
    s.parse::<i64>()
        .ok()
        .filter(|v| (0..=100).contains(v))
        .ok_or_else(|| Failure::Usage(format!("volume must be a whole number 0-100, not {s:?}")))
}

fn run(c: &Client, cli: &Cli) -> Result<Value, Failure> {
    match &cli.cmd {
        Cmd::Status { watch: true, views } => watch(c, cli.json, *views),
        Cmd::Status { .. } => c.get("/api/v1/status"),
        Cmd::Events { count } => events(c, cli.json, *count),
        Cmd::Speakers => c.get("/api/v1/speakers"),
        Cmd::Play { uri } => c.post("/api/v1/play", json!({ "uri": absolute(uri) })),
        Cmd::Queue => c.get("/api/v1/queue"),
        Cmd::ZoneVolume { n } => {
            c.put("/api/v1/zone/volume", json!({ "volume": parse_volume(n)? }))
        }
        Cmd::ZoneMute => {
            let muted = c.get("/api/v1/zone")?["muted"] == true;
            c.put("/api/v1/zone/mute", json!({ "muted": !muted }))
        }
        Cmd::Add { uri, at } => {
            let mut b = json!({ "uri": absolute(uri) });
            if let Some(at) = at {
                b["position"] = json!(at - 1);
            }
            c.post("/api/v1/queue", b)
        }
        Cmd::Remove { n } => c.delete(&format!("/api/v1/queue/{}", n - 1)),
        Cmd::Move { from, to } => c.post(
            "/api/v1/queue/move",
            json!({ "from": from - 1, "to": to - 1 }),
        ),
        Cmd::Clear => c.delete("/api/v1/queue"),
        Cmd::Zones => c.get("/api/v1/zones"),
        Cmd::Assign { speaker, zone } => c.put(
            &format!("/api/v1/speakers/{}/zone", enc(speaker)),
            json!({ "zone": zone }),
        ),
        Cmd::Shuffle => c.post("/api/v1/queue/shuffle", json!({})),
        Cmd::Repeat { mode } => c.put("/api/v1/repeat", json!({ "mode": mode })),
        Cmd::Pause => c.post("/api/v1/pause", json!({})),
        Cmd::Resume => c.post("/api/v1/resume", json!({})),
        Cmd::Stop => c.post("/api/v1/stop", json!({})),
        Cmd::Next => c.post("/api/v1/next", json!({})),
        Cmd::Prev => c.post("/api/v1/previous", json!({})),
        Cmd::Seek { seconds } => c.post("/api/v1/seek", json!({ "position_s": seconds })),
        Cmd::Volume { a, b } => match b {
            None => c.put("/api/v1/volume", json!({ "volume": parse_volume(a)? })),
            Some(n) => c.put(
                &format!("/api/v1/speakers/{}/volume", enc(a)),
                json!({ "volume": parse_volume(n)? }),
            ),
        },
        Cmd::Mute { speaker } => {
            let list = c.get("/api/v1/speakers")?;
            let speakers = list["speakers"].as_array().cloned().unwrap_or_default();
            let targets: Vec<&Value> = match speaker {
                Some(name) => {
                    let s = speakers.iter().find(|s| s["name"] == name.as_str());
                    vec![s.ok_or_else(|| Failure::Refused(format!("no speaker named {name:?}")))?]
                }
                None => speakers.iter().filter(|s| s["online"] == true).collect(),
            };
            // Toggle: mute all if any is unmuted, else unmute all.
            let mute = targets.iter().any(|s| s["muted"] != true);
            let mut results = vec![];
            for s in targets {
                let name = s["name"].as_str().unwrap_or_default();
                results.push(c.put(
                    &format!("/api/v1/speakers/{}/mute", enc(name)),
                    json!({ "muted": mute }),
                )?);
            }
            Ok(json!({ "muted": mute, "speakers": results }))
        }
        Cmd::Latency { speaker, ms } => {
            let list = c.get("/api/v1/speakers")?;
            let url = list["speakers"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["name"] == speaker.as_str()))
                .and_then(|s| s["api_url"].as_str().map(str::to_string))
                .ok_or_else(|| Failure::Refused(format!("no speaker named {speaker:?}")))?;
            c.call(
                "PUT",
                &format!("{url}/api/v1/speaker/latency"),
                Some(json!({ "extra_latency_ms": ms })),
            )
        }
        Cmd::Completions { .. } | Cmd::Discover => Ok(Value::Null), // handled in main
    }
}

/// Relative paths mean the caller's directory (the controller is usually local).
fn absolute(uri: &str) -> String {
    let p = std::path::Path::new(uri);
    if !uri.contains("://") && p.is_relative() && p.exists() {
        std::fs::canonicalize(p)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| uri.to_string())
    } else {
        uri.to_string()
    }
}

/// `status --watch`: the zone and its speakers, redrawn twice a second.
fn watch(c: &Client, json: bool, views: Option<u64>) -> Result<Value, Failure> {
    let mut shown = 0;
    loop {
        let v = c.get("/api/v1/status")?;
        if json {
            println!("{}", serde_json::to_string(&v).unwrap_or_default());
        } else {
            // Home the cursor and clear the screen, then draw.
            print!("\x1b[H\x1b[2J{}", render_watch(&v));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        shown += 1;
        if views.is_some_and(|n| shown >= n) {
            return Ok(Value::Null);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `events`: the API's event stream, one line per event.
fn events(c: &Client, json: bool, count: Option<u64>) -> Result<Value, Failure> {
    use std::io::BufRead;
    let url = format!("{}/api/v1/events", c.base);
    let mut req = ureq::AgentBuilder::new().build().get(&url);
    if let Some(t) = &c.token {
        req = req.set("Authorization", &format!("Bearer {}", t.trim()));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            return Err(Failure::Refused(format!("{text} (HTTP {code})")));
        }
        Err(e) => {
            return Err(Failure::Unreachable(format!(
                "cannot reach chorusd at {}: {e}",
                c.base
            )))
        }
    };
    let mut name = String::new();
    let mut seen = 0;
    for line in std::io::BufReader::new(resp.into_reader()).lines() {
        let Ok(line) = line else { break };
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            if json {
                let mut v: Value = serde_json::from_str(d).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("event".into(), Value::String(name.clone()));
                }
                println!("{v}");
            } else {
                println!("{name} {d}");
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                break;
            }
        }
    }
    Ok(Value::Null)
}

/// The chorus daemons that answer an mDNS browse within `timeout` (or, with `first_controller`,
/// until a controller does): name, role, zone, api_url.
fn browse(timeout: Duration, first_controller: bool) -> Vec<Value> {
    use mdns_sd::{ServiceDaemon, ServiceEvent};
    const SERVICE: &str = "_chorus._tcp.local.";
    let Ok(daemon) = ServiceDaemon::new() else {
        return vec![];
    };
    let Ok(rx) = daemon.browse(SERVICE) else {
        return vec![];
    };
    let mut found = std::collections::BTreeMap::new();
    let end = std::time::Instant::now() + timeout;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        let Ok(ev) = rx.recv_timeout(left) else { break };
        if let ServiceEvent::ServiceResolved(s) = ev {
            let Some(ip) = s
                .addresses
                .iter()
                .map(|a| a.to_ip_addr())
                .find(|a| a.is_ipv4())
            else {
                continue;
            };
            let prop = |k: &str| s.txt_properties.get_property_val_str(k).unwrap_or("");
            let name = s.fullname.strip_suffix(SERVICE).unwrap_or(&s.fullname);
            let controller = prop("role").contains("controller");
            found.insert(
                s.fullname.clone(),
                json!({
                    "name": name.trim_end_matches('.').replace("\\032", " ").replace("\\ ", " "),
                    "role": prop("role"),
                    "zone": prop("zone"),
                    "api_url": format!("http://{}", std::net::SocketAddr::new(ip, s.port)),
                }),
            );
            if first_controller && controller {
                break;
            }
        }
    }
    let _ = daemon.shutdown();
    found.into_values().collect()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::is_this_box;

    #[test]
    fn the_box_token_goes_only_to_this_box_unless_named() {
        for url in [
            "http://127.0.0.1:7780",
            "http://localhost:7780/",
            "http://[::1]:7780",
            "http://127.0.0.53:7780/api/v1",
        ] {
            assert!(is_this_box(url), "{url}");
        }
        // Not an address of this box (TEST-NET-1), names that are not this box's.
        for url in [
            "http://192.0.2.1:7780",
            "http://music-box.local:7780",
            "http://evil.example:80",
        ] {
            assert!(!is_this_box(url), "{url}");
        }
    }
}
