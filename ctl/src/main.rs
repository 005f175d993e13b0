//! `chorusctl`: control a chorus zone from the command line.
//!
//! Talks to the controller's HTTP API (`--controller`, `$CHORUS_CONTROLLER`, or the controller
//! found with mDNS, or http://127.0.0.1:7780). Human-readable output by default, `--json` for scripts. Exit codes:
//! 0 success, 1 the daemon refused the request, 2 usage, 3 the daemon is unreachable.
#![forbid(unsafe_code)]

mod client;
mod render;

use client::{is_this_box, json, Client, Failure, BOX_TOKEN};

use render::{render, render_watch};

use chorus_api::{
    AddBody, Found, MoveBody, MuteBody, PlayBody, QueueView, RepeatBody, SeekBody, SpeakerList,
    SpeakerStatus, SpeakerZoneBody, Status, VolumeBody, ZoneList, ZoneStatus,
};
use clap::{Parser, Subcommand};
use serde::Serialize;
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
        #[arg(value_parser = parse_repeat)]
        mode: chorus_api::Repeat,
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
                    f.name, f.role, f.zone, f.api_url
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
            .find(|f| f.role.contains("controller"))
            .map(|f| f.api_url.clone())
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

/// What a command got back: one of the API's answers.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Answer {
    Status(Box<Status>),
    Speakers(SpeakerList),
    Speaker(Box<SpeakerStatus>),
    Zone(Box<ZoneStatus>),
    Zones(ZoneList),
    Queue(QueueView),
    /// `mute`: what it set, and each speaker's answer.
    Muted(Muted),
    /// Printed as it came (`status --watch`, `events`).
    Nothing,
}

#[derive(Serialize)]
pub(crate) struct Muted {
    muted: bool,
    speakers: Vec<SpeakerStatus>,
}

fn run(c: &Client, cli: &Cli) -> Result<Answer, Failure> {
    use Answer::{Queue, Zone};
    let zone = |z: Result<ZoneStatus, Failure>| z.map(|z| Zone(Box::new(z)));
    Ok(match &cli.cmd {
        Cmd::Status { watch: true, views } => watch(c, cli.json, *views)?,
        Cmd::Status { .. } => Answer::Status(Box::new(c.get("/api/v1/status")?)),
        Cmd::Events { count } => events(c, cli.json, *count)?,
        Cmd::Speakers => Answer::Speakers(c.get("/api/v1/speakers")?),
        Cmd::Play { uri } => zone(c.post("/api/v1/play", &PlayBody { uri: absolute(uri) }))?,
        Cmd::Queue => Queue(c.get("/api/v1/queue")?),
        Cmd::ZoneVolume { n } => {
            let volume = parse_volume(n)?;
            zone(c.put("/api/v1/zone/volume", &VolumeBody { volume }))?
        }
        Cmd::ZoneMute => {
            let muted = !c.get::<ZoneStatus>("/api/v1/zone")?.muted;
            zone(c.put("/api/v1/zone/mute", &MuteBody { muted }))?
        }
        Cmd::Add { uri, at } => {
            let uri = absolute(uri);
            let position = at.map(|at| at - 1);
            Queue(c.post("/api/v1/queue", &AddBody { uri, position })?)
        }
        Cmd::Remove { n } => Queue(c.delete(&format!("/api/v1/queue/{}", n - 1))?),
        Cmd::Move { from, to } => {
            let (from, to) = (from - 1, to - 1);
            Queue(c.post("/api/v1/queue/move", &MoveBody { from, to })?)
        }
        Cmd::Clear => Queue(c.delete("/api/v1/queue")?),
        Cmd::Zones => Answer::Zones(c.get("/api/v1/zones")?),
        Cmd::Assign { speaker, zone } => {
            let path = format!("/api/v1/speakers/{}/zone", enc(speaker));
            let zone = zone.clone();
            Answer::Speaker(Box::new(c.put(&path, &SpeakerZoneBody { zone })?))
        }
        Cmd::Shuffle => Queue(c.act("/api/v1/queue/shuffle")?),
        Cmd::Repeat { mode } => Queue(c.put("/api/v1/repeat", &RepeatBody { mode: *mode })?),
        Cmd::Pause => zone(c.act("/api/v1/pause"))?,
        Cmd::Resume => zone(c.act("/api/v1/resume"))?,
        Cmd::Stop => zone(c.act("/api/v1/stop"))?,
        Cmd::Next => zone(c.act("/api/v1/next"))?,
        Cmd::Prev => zone(c.act("/api/v1/previous"))?,
        Cmd::Seek { seconds } => zone(c.post(
            "/api/v1/seek",
            &SeekBody {
                position_s: *seconds,
            },
        ))?,
        Cmd::Volume { a, b } => match b {
            None => {
                let volume = parse_volume(a)?;
                Answer::Speakers(c.put("/api/v1/volume", &VolumeBody { volume })?)
            }
            Some(n) => {
                let path = format!("/api/v1/speakers/{}/volume", enc(a));
                let volume = parse_volume(n)?;
                Answer::Speaker(Box::new(c.put(&path, &VolumeBody { volume })?))
            }
        },
        Cmd::Mute { speaker } => Answer::Muted(mute(c, speaker.as_deref())?),
        Cmd::Latency { speaker, ms } => {
            let list: SpeakerList = c.get("/api/v1/speakers")?;
            let url = list
                .speakers
                .iter()
                .find(|s| s.name == *speaker)
                .map(|s| s.api_url.clone())
                .ok_or_else(|| Failure::Refused(format!("no speaker named {speaker:?}")))?;
            let body = chorus_api::LatencyBody {
                extra_latency_ms: *ms,
            };
            let url = format!("{url}/api/v1/speaker/latency");
            Answer::Speaker(Box::new(c.call("PUT", &url, Some(json(&body)))?))
        }
        Cmd::Completions { .. } | Cmd::Discover => Answer::Nothing, // handled in main
    })
}

/// Toggles the mute of one speaker, or of every online one (mutes all if any is unmuted).
fn mute(c: &Client, speaker: Option<&str>) -> Result<Muted, Failure> {
    let list: SpeakerList = c.get("/api/v1/speakers")?;
    let targets: Vec<_> = match speaker {
        Some(name) => {
            let s = list.speakers.iter().find(|s| s.name == name);
            vec![s.ok_or_else(|| Failure::Refused(format!("no speaker named {name:?}")))?]
        }
        None => list.speakers.iter().filter(|s| s.online).collect(),
    };
    let muted = targets.iter().any(|s| !s.muted);
    let mut speakers = vec![];
    for s in targets {
        let path = format!("/api/v1/speakers/{}/mute", enc(&s.name));
        speakers.push(c.put(&path, &MuteBody { muted })?);
    }
    Ok(Muted { muted, speakers })
}

/// `repeat`'s argument: a mode by its API name.
fn parse_repeat(s: &str) -> Result<chorus_api::Repeat, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s:?} is not off, all or one"))
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
fn watch(c: &Client, json: bool, views: Option<u64>) -> Result<Answer, Failure> {
    let mut shown = 0;
    loop {
        let v: Status = c.get("/api/v1/status")?;
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
            return Ok(Answer::Nothing);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `events`: the API's event stream, one line per event.
fn events(c: &Client, json: bool, count: Option<u64>) -> Result<Answer, Failure> {
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
                // The event's fields with its name; one this version does not know, as it came.
                #[derive(Serialize)]
                struct Named<'a> {
                    event: &'a str,
                    #[serde(flatten)]
                    data: chorus_api::Event,
                }
                match serde_json::from_str(d) {
                    Ok(data) => println!("{}", crate::json(&Named { event: &name, data })),
                    Err(_) => println!("{d}"),
                }
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
    Ok(Answer::Nothing)
}

/// The chorus daemons that answer an mDNS browse within `timeout` (or, with `first_controller`,
/// until a controller does): name, role, zone, api_url.
fn browse(timeout: Duration, first_controller: bool) -> Vec<Found> {
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
                Found {
                    name: name
                        .trim_end_matches('.')
                        .replace("\\032", " ")
                        .replace("\\ ", " "),
                    role: prop("role").into(),
                    zone: prop("zone").into(),
                    api_url: format!("http://{}", std::net::SocketAddr::new(ip, s.port)),
                },
            );
            if first_controller && controller {
                break;
            }
        }
    }
    let _ = daemon.shutdown();
    found.into_values().collect()
}

pub(crate) fn enc(s: &str) -> String {
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
