//! Helpers for the measurement rigs in tests/rig (not used by the daemon):
//!
//! - `chorus-rig gen-counter PATH SECONDS`: a 48 kHz stereo WAV whose frames count up.
//! - `chorus-rig relay --listen ADDR --to ADDR [--delay-ms D] [--jitter-ms J] [--loss-pct L
//!   [--loss-from-ms F] [--loss-until-ms U] (after the first audio datagram)] [--burst-ms B --burst-every-ms E --burst-offset-ms O] [--drop-every N] [--drop-first-audio N]
//!   [--max-seconds S]`: a user-space UDP relay that delays, jitters (and so reorders) and drops
//!   datagrams in both directions (no netem on these machines); `--drop-every N` drops exactly
//!   every Nth datagram, `--drop-first-audio N` the first N chorus audio datagrams.
//!   `--air multicast|unicast [--dtim-ms D] [--air-kbps K] [--air-queue-ms Q] [--retry-pct R]
//!   [--retry-ms M]`: the datagrams cross a Wi-Fi link's air too (air.rs); `--unicast-port P`
//!   carries a speaker's unicast stream (relay.rs).
//! - `chorus-rig spoof --group G --port P [--interface I] [--seconds S] [--seq-jump N]`: forges
//!   and replays datagrams on a zone's group; with `--seq-jump N`, one copy of the first
//!   untagged audio datagram with its sequence number N ahead, and nothing else.
//! - `chorus-rig impostor --to ADDR --name N --api ADDR [--seconds S] [--group G --port P]`:
//!   poses as speaker N to the controller's sync service at ADDR (forged heartbeats, twice a
//!   second, unauthenticated, asking for the stream by unicast) with its API at `--api`, where it answers every HTTP request `{}`
//!   and prints their headers (`impostor: header ...`). With `--group`/`--port` it also hears
//!   the zone's stream and asks the sync service for 32 of its datagrams every 100 ms, without
//!   ever completing a sync exchange (as a spoofer of another host's address could not), and
//!   counts what comes to its own address, repairs or the stream (`impostor: repair answers N`).
//! - `chorus-rig skew DIR NAME...`: inter-speaker skew from the speakers' sim captures.
//! - `chorus-rig attack --group G --port P --sync ADDR [--interface I] [--seconds S] [--seed N]
//!   [--log FILE]`: random attacks for a soak (see attack.rs).
//! - `chorus-rig soak-report DIR --attacks FILE --track-frames N NAME...`: what they did (see
//!   soak.rs).
#![allow(clippy::too_many_lines)] // scenarios read top to bottom
#![forbid(unsafe_code)]

mod air;
mod attack;
mod relay;
mod soak;

use chorus_tests::{skew_us, stats_abs, write_counter_wav, Capture};
use rand::Rng;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("gen-counter") if args.len() == 3 => {
            let secs: f64 = args[2].parse().unwrap_or(0.0);
            write_counter_wav(Path::new(&args[1]), 1, (secs * 48_000.0) as u32);
            Ok(())
        }
        Some("relay") => relay::relay(&args[1..]),
        Some("spoof") => spoof(&args[1..]),
        Some("impostor") => impostor(&args[1..]),
        Some("skew") if args.len() >= 3 => skew(Path::new(&args[1]), &args[2..]),
        Some("attack") => attack::attack(&args[1..]),
        Some("soak-report") if args.len() >= 3 => soak::soak_report(Path::new(&args[1]), &args[2..]),
        _ => Err("usage: chorus-rig gen-counter PATH SECONDS | relay --listen A --to B [...] | spoof --group G --port P [--seconds S] [--seq-jump N] | impostor --to ADDR --name N --api ADDR [--seconds S] | skew DIR NAME... | attack --group G --port P --sync ADDR [...] | soak-report DIR --attacks FILE --track-frames N NAME...".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chorus-rig: {e}");
            ExitCode::FAILURE
        }
    }
}

fn flag(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| default.to_string())
}

/// An attacker on the LAN: listens to the zone's group and, for every datagram a controller
/// sends, sends back (to the group) a copy with its samples replaced by full-scale noise and no
/// tag, one with a forged tag, and the datagram itself again 300 ms later (a replay). Runs for
/// `--seconds`, then prints what it sent.
fn spoof(args: &[String]) -> Result<(), String> {
    let group: std::net::Ipv4Addr = flag(args, "--group", "")
        .parse()
        .map_err(|e| format!("--group: {e}"))?;
    let port: u16 = flag(args, "--port", "")
        .parse()
        .map_err(|e| format!("--port: {e}"))?;
    let secs: f64 = flag(args, "--seconds", "10")
        .parse()
        .map_err(|e| format!("--seconds: {e}"))?;
    let iface: std::net::Ipv4Addr = flag(args, "--interface", "127.0.0.1")
        .parse()
        .map_err(|e| format!("--interface: {e}"))?;
    // --seq-jump N: only one forged datagram, a copy of the first untagged audio datagram
    // heard with its sequence number N ahead (the replay window's attack), then nothing.
    let jump: Option<u32> = match flag(args, "--seq-jump", "") {
        j if j.is_empty() => None,
        j => Some(j.parse().map_err(|e| format!("--seq-jump: {e}"))?),
    };
    let rx = chorus::net::multicast_receiver(group, port, iface).map_err(|e| e.to_string())?;
    let tx = chorus::net::multicast_sender(iface, 1, true).map_err(|e| e.to_string())?;
    let me = tx.local_addr().map_err(|e| e.to_string())?;
    let dest = SocketAddr::from((group, port));
    let mut rng = rand::thread_rng();
    let mut replays: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
    let (mut forged, mut replayed) = (0u64, 0u64);
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        while let Ok((n, from)) = rx.recv_from(&mut buf) {
            if from == me {
                continue;
            }
            let d = &buf[..n];
            if let Some(j) = jump {
                if n > 40 && d[5] == 1 && d[6] & 1 == 0 && forged == 0 {
                    let mut f = d.to_vec();
                    let seq = u32::from_le_bytes([f[12], f[13], f[14], f[15]]).wrapping_add(j);
                    f[12..16].copy_from_slice(&seq.to_le_bytes());
                    let _ = tx.send_to(&f, dest);
                    forged += 1;
                }
                continue;
            }
            replays.push_back((Instant::now() + Duration::from_millis(300), d.to_vec()));
            if n > 40 && d[5] == 1 {
                // Audio: loud noise in place of the samples, untagged.
                let mut f = d.to_vec();
                if f[6] & 1 != 0 {
                    f.truncate(n - 16);
                    f[6] &= !1;
                }
                for b in &mut f[40..] {
                    *b = rng.gen();
                }
                let _ = tx.send_to(&f, dest);
                // The same noise with a made-up tag.
                f[6] |= 1;
                f.extend((0..16).map(|_| rng.gen::<u8>()));
                let _ = tx.send_to(&f, dest);
                forged += 2;
            } else if n > 20 && d[5] == 7 {
                // Parity: a made-up body (it would rebuild noise), with a made-up tag.
                let mut f = d.to_vec();
                for b in &mut f[20..] {
                    *b = rng.gen();
                }
                f[6] |= 1;
                let _ = tx.send_to(&f, dest);
                forged += 1;
            }
        }
        let now = Instant::now();
        while replays.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, d)) = replays.pop_front() {
                let _ = tx.send_to(&d, dest);
                replayed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("spoof: forged {forged}, replayed {replayed}");
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Reads `<dir>/<name>.trace.jsonl` (the speaker's status once a second) and
/// `<dir>/ctl.trace.jsonl` (the controller's, polled just before), and describes after lock
/// the error of the speaker's estimate of the controller clock (both read against the shared
/// realtime clock) and the range of its resampling ratio.
fn clock_report(dir: &Path, name: &str, after_realtime_ns: f64) -> Option<String> {
    let lines = |file: String| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let ctl: Vec<(f64, f64)> = lines("ctl.trace.jsonl".into())
        .iter()
        .filter_map(|v| {
            Some((
                v["timing"]["realtime_ns"].as_f64()?,
                v["timing"]["clock_ns"].as_f64()?,
            ))
        })
        .collect();
    let mut errors = vec![];
    let mut ratios = vec![];
    for v in lines(format!("{name}.trace.jsonl")) {
        let Some(r) = v["timing"]["realtime_ns"].as_f64() else {
            continue;
        };
        if r < after_realtime_ns {
            continue;
        }
        if let Some(p) = v["speaker"]["playout"]["ratio_ppm"].as_f64() {
            ratios.push(p);
        }
        let Some(est) = v["timing"]["controller_estimate_ns"].as_f64() else {
            continue;
        };
        // The controller's clock at the same realtime instant, from its nearest sample.
        let Some(&(cr, cc)) = ctl
            .iter()
            .min_by(|a, b| (a.0 - r).abs().total_cmp(&(b.0 - r).abs()))
        else {
            continue;
        };
        if (cr - r).abs() > 200e6 {
            continue;
        }
        errors.push((est - (cc + (r - cr))) / 1000.0);
    }
    if errors.is_empty() {
        return None;
    }
    let mut abs: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    abs.sort_by(|a, b| a.total_cmp(b));
    let (lo, hi) = ratios
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    Some(format!(
        "clock offset error after lock: median {:.1} µs, max {:.1} µs ({} samples); resampler ratio {:+.1} .. {:+.1} ppm",
        percentile(&abs, 0.5),
        abs.last().copied().unwrap_or(0.0),
        abs.len(),
        lo,
        hi
    ))
}

fn skew(dir: &Path, names: &[String]) -> Result<(), String> {
    let caps: Vec<Capture> = names.iter().map(|n| Capture::load(dir, n)).collect();
    let (first, last) = caps[0]
        .sound_span()
        .ok_or("the first speaker played nothing")?;
    if last - first < 48_000 {
        return Err("the first speaker played less than a second".into());
    }
    let t_first = caps[0].heard_ns(first as f64);
    // Every 50 ms of the first speaker's sound: where each other speaker played the same audio.
    let mut samples: Vec<(f64, Vec<f64>)> = vec![];
    for i in (first + 1_000..last.saturating_sub(4_000)).step_by(2_400) {
        let rel: Option<Vec<f64>> = caps[1..].iter().map(|c| skew_us(&caps[0], c, i)).collect();
        let Some(rel) = rel else { continue };
        // rel[j] = t0 - t(j+1); pair (a, b) = t_a - t_b
        let t = |k: usize| if k == 0 { 0.0 } else { -rel[k - 1] };
        let mut pairs = vec![];
        for a in 0..names.len() {
            for b in a + 1..names.len() {
                pairs.push(t(a) - t(b));
            }
        }
        samples.push(((caps[0].heard_ns(i as f64) - t_first) / 1e9, pairs));
    }
    if samples.is_empty() {
        return Err("no audio matched between the speakers".into());
    }
    // Lock: the first sample from which every pair stays under 100 µs for a whole second (20
    // samples). Everything after it counts, later excursions included.
    let under = |x: &(f64, Vec<f64>)| x.1.iter().all(|s| s.abs() < 100.0);
    let lock_at = (0..samples.len())
        .find(|&i| samples.len() - i >= 20 && samples[i..i + 20].iter().all(under))
        .unwrap_or(samples.len());
    let lock_s = samples.get(lock_at).map(|s| s.0).unwrap_or(f64::INFINITY);
    let after = if lock_at < samples.len() {
        &samples[lock_at..]
    } else {
        &samples[samples.len() * 3 / 4..]
    };
    let mut pair_names = vec![];
    for a in 0..names.len() {
        for b in a + 1..names.len() {
            pair_names.push(format!("{}-{}", names[a], names[b]));
        }
    }
    // The whole series, for plots and post-mortems.
    let mut tsv = format!("t_s\t{}\n", pair_names.join("\t"));
    for (t, pairs) in &samples {
        let cols: Vec<String> = pairs.iter().map(|p| format!("{p:.1}")).collect();
        tsv.push_str(&format!("{t:.3}\t{}\n", cols.join("\t")));
    }
    let series = dir.join("skew.tsv");
    std::fs::write(&series, tsv).map_err(|e| format!("{}: {e}", series.display()))?;
    println!(
        "series (µs, per pair, every 50 ms of audio): {}",
        series.display()
    );
    let mut all = vec![];
    for (p, pname) in pair_names.iter().enumerate() {
        let v: Vec<f64> = after.iter().map(|(_, s)| s[p]).collect();
        let mut abs: Vec<f64> = v.iter().map(|x| x.abs()).collect();
        abs.sort_by(|a, b| a.total_cmp(b));
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!(
            "pair {:<24} median |skew| {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs  mean {:>+8.1} µs",
            pname,
            percentile(&abs, 0.5),
            percentile(&abs, 0.99),
            abs.last().copied().unwrap_or(0.0),
            mean
        );
        all.extend(abs);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    // Drops and inserts after lock: breaks in the scheduled stream (the stream tap).
    let lock_frame = (lock_s.min(1e6) * 48_000.0) as u32;
    let mut drops = 0;
    for n in names {
        let tap = Capture::load_tap(dir, n);
        let runs = tap.counter_runs(1);
        let breaks = runs
            .windows(2)
            .filter(|w| w[1].1 > lock_frame + runs[0].1)
            .count();
        let status: serde_json::Value =
            std::fs::read_to_string(dir.join(format!("{n}.status.json")))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
        let p = &status["speaker"]["playout"];
        println!(
            "speaker {n:<10} stream breaks after lock: {breaks}  resyncs: {}  resampler: {} at {:+.1} ppm",
            p["resyncs"], p["resampling"], p["ratio_ppm"].as_f64().unwrap_or(f64::NAN)
        );
        drops += breaks;
        let lock_realtime = t_first + lock_s.min(1e6) * 1e9;
        if let Some(line) = clock_report(dir, n, lock_realtime) {
            println!("speaker {n:<10} {line}");
        }
    }
    let (med, max) = stats_abs(&all);
    println!(
        "overall: {} samples after lock, median |skew| {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        all.len(),
        med,
        percentile(&all, 0.99),
        max
    );
    println!(
        "p99_abs_skew_us={:.1} median_abs_skew_us={:.1} lock_s={:.2} drops_after_lock={}",
        percentile(&all, 0.99),
        med,
        lock_s,
        drops
    );
    Ok(())
}

fn impostor(args: &[String]) -> Result<(), String> {
    use std::io::{Read, Write};
    let to: SocketAddr = flag(args, "--to", "")
        .parse()
        .map_err(|e| format!("--to: {e}"))?;
    let api: SocketAddr = flag(args, "--api", "")
        .parse()
        .map_err(|e| format!("--api: {e}"))?;
    let secs: f64 = flag(args, "--seconds", "10")
        .parse()
        .map_err(|e| format!("--seconds: {e}"))?;
    let udp = UdpSocket::bind(SocketAddr::new(api.ip(), 0)).map_err(|e| e.to_string())?;
    let own_port = udp.local_addr().map_err(|e| e.to_string())?.port();
    let datagram = forged_heartbeat(&flag(args, "--name", "spk1"), api.port(), own_port);
    let listener = std::net::TcpListener::bind(api).map_err(|e| format!("bind {api}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    udp.set_nonblocking(true).map_err(|e| e.to_string())?;
    let group = flag(args, "--group", "");
    let stream = if group.is_empty() {
        None
    } else {
        let g: std::net::Ipv4Addr = group.parse().map_err(|e| format!("--group: {e}"))?;
        let port: u16 = flag(args, "--port", "")
            .parse()
            .map_err(|e| format!("--port: {e}"))?;
        let iface = match api.ip() {
            std::net::IpAddr::V4(a) => a,
            _ => return Err("--api must be IPv4 with --group".into()),
        };
        Some(chorus::net::multicast_receiver(g, port, iface).map_err(|e| e.to_string())?)
    };
    let (mut asked, mut answers) = (0u64, 0u64);
    let mut latest: Option<(u32, u32)> = None;
    let mut next_ask = Instant::now();
    let mut buf = [0u8; 2048];
    let (mut sent, mut requests) = (0u64, 0u64);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut next = Instant::now();
    while Instant::now() < end {
        if Instant::now() >= next {
            let _ = udp.send_to(&datagram, to);
            sent += 1;
            next += Duration::from_millis(500);
        }
        if let Some(rx) = &stream {
            while let Ok(n) = rx.recv(&mut buf) {
                if n > 40 && buf[5] == 1 {
                    let session = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
                    let seq = u32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]]);
                    latest = Some((session, seq));
                }
            }
            if let (Some((session, seq)), true) = (latest, Instant::now() >= next_ask) {
                let mut q = chorus::wire::repair::RepairRequest::new(session);
                for k in 0..32 {
                    q.push(seq.wrapping_sub(64 + k));
                }
                let mut out = vec![];
                q.encode_into(&mut out);
                let _ = udp.send_to(&out, to);
                asked += 32;
                next_ask = Instant::now() + Duration::from_millis(100);
            }
            while udp.recv(&mut buf).is_ok() {
                answers += 1;
            }
        }
        while let Ok((mut c, _)) = listener.accept() {
            requests += 1;
            let _ = c.set_nonblocking(false);
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = vec![0u8; 8192];
            let n = c.read(&mut buf).unwrap_or(0);
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                println!("impostor: header {line}");
            }
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if stream.is_some() {
        // Anything that came to its own address: repairs, or the stream by unicast.
        println!("impostor: repairs asked {asked}, repair answers {answers}");
    }
    println!("impostor: heartbeats {sent}, requests {requests}");
    Ok(())
}

/// A heartbeat posing as speaker `name` with its API at `api_port`, locked, unauthenticated
/// and undated (as an impostor without the key or the controller's clock makes it), asking
/// for the zone's stream by unicast to `unicast_port`.
fn forged_heartbeat(name: &str, api_port: u16, unicast_port: u16) -> Vec<u8> {
    let hb = chorus::wire::Heartbeat {
        name: name.to_string(),
        api_port,
        volume: 100,
        muted: false,
        locked: true,
        sync_error_us: Some(1.0),
        stream: None,
        sent_ns: None,
        unicast_port: Some(unicast_port),
        delivery: Some(chorus::wire::Delivery::Unicast),
    };
    chorus::wire::packet::encode_heartbeat(&hb)
}
