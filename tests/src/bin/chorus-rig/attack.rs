//! `chorus-rig attack`: an attacker on the LAN for the soak (`tests/rig/sync-bench --attacks`).
//!
//! Quiet for 15–40 s, then one attack at random for 5–12 s, and so on; each attack ends with a
//! line `kind<TAB>start_realtime_ns<TAB>end_realtime_ns` in `--log`. It hears the zone's group
//! (as any host on the LAN can) and forges from what it hears, per docs/PROTOCOL.md:
//!
//! - `noise`: a copy of each audio datagram with noise for samples (untagged, and with a made-up
//!   tag), parity with a made-up body, and every datagram replayed 300 ms later;
//! - `ahead`: noise datagrams numbered and timed as the next three, sent before them;
//! - `seq-jump`: one copy numbered 2^31 − 1 ahead (the replay window's attack);
//! - `future`: copies timed 26 s ahead, and a new session's datagram timed at i64::MIN;
//! - `garbage`: 2000 random datagrams a second to the group and to the sync service;
//! - `impostor`: heartbeats posing as `spk1` and repair requests without a sync exchange;
//! - `announce`: the controller's announcements replayed 1.5 s late, and forged 10 s ahead
//!   naming another sync port.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::flag;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Noise,
    Ahead,
    SeqJump,
    Future,
    Garbage,
    Impostor,
    Announce,
}

const KINDS: [Kind; 7] = [
    Kind::Noise,
    Kind::Ahead,
    Kind::SeqJump,
    Kind::Future,
    Kind::Garbage,
    Kind::Impostor,
    Kind::Announce,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Noise => "noise",
            Kind::Ahead => "ahead",
            Kind::SeqJump => "seq-jump",
            Kind::Future => "future",
            Kind::Garbage => "garbage",
            Kind::Impostor => "impostor",
            Kind::Announce => "announce",
        }
    }
}

/// Audio and parity datagram kinds, and where their fields are.
const AUDIO: u8 = 1;
const ANNOUNCE: u8 = 5;
const PARITY: u8 = 7;
const HEADER: usize = 40;

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

fn i64_at(d: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    i64::from_le_bytes(b)
}

struct Attacker {
    tx: UdpSocket,
    group: SocketAddr,
    sync: SocketAddr,
    rng: StdRng,
    sent: u64,
    /// Datagrams to replay, and when.
    replays: std::collections::VecDeque<(Instant, Vec<u8>)>,
    /// The newest audio datagram's (session, sequence number).
    latest: Option<(u32, u32)>,
    jumped: bool,
    next_tick: Instant,
}

impl Attacker {
    fn send(&mut self, d: &[u8], to: SocketAddr) {
        if self.tx.send_to(d, to).is_ok() {
            self.sent += 1;
        }
    }

    /// An untagged copy of audio datagram `d` with noise for samples, and the same with a
    /// made-up tag.
    fn noisy(&mut self, d: &[u8]) -> [Vec<u8>; 2] {
        let mut f = d.to_vec();
        if f[6] & 1 != 0 {
            f.truncate(f.len().saturating_sub(16).max(HEADER));
            f[6] &= !1;
        }
        for b in &mut f[HEADER..] {
            *b = self.rng.gen();
        }
        let mut tagged = f.clone();
        tagged[6] |= 1;
        tagged.extend((0..16).map(|_| self.rng.gen::<u8>()));
        [f, tagged]
    }

    /// Audio datagram `d` moved `k` datagrams on: sequence, frame index and time.
    fn moved(d: &mut [u8], k: u32, frames_ahead: i64, ns_ahead: i64) {
        let seq = u32_at(d, 12).wrapping_add(k);
        d[12..16].copy_from_slice(&seq.to_le_bytes());
        let frame = i64_at(d, 16).saturating_add(frames_ahead);
        d[16..24].copy_from_slice(&frame.to_le_bytes());
        let pts = i64_at(d, 24).saturating_add(ns_ahead);
        d[24..32].copy_from_slice(&pts.to_le_bytes());
    }

    fn on_audio(&mut self, kind: Kind, d: &[u8]) {
        let rate = u32_at(d, 32).max(1) as i64;
        let frames = u16::from_le_bytes([d[38], d[39]]) as i64;
        match kind {
            Kind::Noise => {
                for f in self.noisy(d) {
                    self.send(&f, self.group);
                }
            }
            Kind::Ahead => {
                for k in 1..=3 {
                    for mut f in self.noisy(d) {
                        Self::moved(
                            &mut f,
                            k,
                            frames * k as i64,
                            frames * k as i64 * 1_000_000_000 / rate,
                        );
                        self.send(&f, self.group);
                    }
                }
            }
            Kind::SeqJump if !self.jumped => {
                self.jumped = true;
                let mut f = d.to_vec();
                Self::moved(&mut f, u32::MAX / 2, 0, 0);
                self.send(&f, self.group);
            }
            Kind::Future => {
                for mut f in self.noisy(d) {
                    Self::moved(&mut f, 500, 26 * rate, 26_000_000_000);
                    self.send(&f, self.group);
                }
                let [mut f, _] = self.noisy(d);
                let session: u32 = self.rng.gen();
                f[8..12].copy_from_slice(&session.to_le_bytes());
                f[12..16].copy_from_slice(&0u32.to_le_bytes());
                f[24..32].copy_from_slice(&i64::MIN.to_le_bytes());
                self.send(&f, self.group);
            }
            _ => {}
        }
    }

    fn on_datagram(&mut self, kind: Option<Kind>, d: &[u8]) {
        if d.len() < 8 || &d[..4] != b"CHRS" {
            return;
        }
        if d[5] == AUDIO && d.len() > HEADER {
            self.latest = Some((u32_at(d, 8), u32_at(d, 12)));
        }
        let Some(kind) = kind else { return };
        if kind == Kind::Announce && d[5] == ANNOUNCE && d.len() >= 24 {
            // Replayed as it was, 1.5 s late; and forged 10 s ahead, naming another sync port.
            self.replays
                .push_back((Instant::now() + Duration::from_millis(1_500), d.to_vec()));
            let mut f = d.to_vec();
            f[12..14].copy_from_slice(&9u16.to_le_bytes());
            let ahead = i64_at(&f, 16).saturating_add(10_000_000_000);
            f[16..24].copy_from_slice(&ahead.to_le_bytes());
            self.send(&f, self.group);
        }
        if kind == Kind::Noise {
            self.replays
                .push_back((Instant::now() + Duration::from_millis(300), d.to_vec()));
            if d[5] == PARITY && d.len() > 20 {
                let mut f = d.to_vec();
                for b in &mut f[20..] {
                    *b = self.rng.gen();
                }
                f[6] |= 1;
                self.send(&f, self.group);
            }
        }
        if d[5] == AUDIO && d.len() > HEADER {
            self.on_audio(kind, d);
        }
    }

    /// What an attack sends by itself, once a millisecond.
    fn tick(&mut self, kind: Option<Kind>, tick: u64) {
        let now = Instant::now();
        while self.replays.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, d)) = self.replays.pop_front() {
                self.send(&d, self.group);
            }
        }
        match kind {
            Some(Kind::Garbage) => {
                for to in [self.group, self.sync] {
                    let n = self.rng.gen_range(8..1400);
                    let mut f: Vec<u8> = (0..n).map(|_| self.rng.gen()).collect();
                    if self.rng.gen_bool(0.5) {
                        f[..5].copy_from_slice(b"CHRS\x01");
                        f[5] = self.rng.gen_range(1..=7);
                    }
                    self.send(&f, to);
                }
            }
            Some(Kind::Impostor) if tick.is_multiple_of(500) => {
                let d = super::forged_heartbeat("spk1", 9, 9);
                self.send(&d, self.sync);
            }
            Some(Kind::Impostor) if tick % 100 == 50 => {
                if let Some((session, seq)) = self.latest {
                    let mut q = chorus::wire::repair::RepairRequest::new(session);
                    for k in 0..32 {
                        q.push(seq.wrapping_sub(64 + k));
                    }
                    let mut out = vec![];
                    q.encode_into(&mut out);
                    self.send(&out, self.sync);
                }
            }
            _ => {}
        }
        self.next_tick = now + Duration::from_millis(1);
    }
}

/// Realtime (the host's common clock), ns.
fn realtime_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

pub fn attack(args: &[String]) -> Result<(), String> {
    let parse = |name: &str, default: &str| flag(args, name, default);
    let group: std::net::Ipv4Addr = parse("--group", "")
        .parse()
        .map_err(|e| format!("--group: {e}"))?;
    let port: u16 = parse("--port", "")
        .parse()
        .map_err(|e| format!("--port: {e}"))?;
    let sync: SocketAddr = parse("--sync", "")
        .parse()
        .map_err(|e| format!("--sync: {e}"))?;
    let iface: std::net::Ipv4Addr = parse("--interface", "127.0.0.1")
        .parse()
        .map_err(|e| format!("--interface: {e}"))?;
    let secs: f64 = parse("--seconds", "60")
        .parse()
        .map_err(|e| format!("--seconds: {e}"))?;
    let seed: u64 = parse("--seed", "1")
        .parse()
        .map_err(|e| format!("--seed: {e}"))?;
    let log_path = parse("--log", "attacks.tsv");
    let mut log = std::fs::File::create(&log_path).map_err(|e| format!("{log_path}: {e}"))?;
    let rx = chorus::net::multicast_receiver(group, port, iface).map_err(|e| e.to_string())?;
    let tx = chorus::net::multicast_sender(iface, 1, true).map_err(|e| e.to_string())?;
    let me = tx.local_addr().map_err(|e| e.to_string())?;
    let mut a = Attacker {
        tx,
        group: SocketAddr::from((group, port)),
        sync,
        rng: StdRng::seed_from_u64(seed),
        sent: 0,
        replays: Default::default(),
        latest: None,
        jumped: false,
        next_tick: Instant::now(),
    };
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let quiet = |rng: &mut StdRng| Duration::from_millis(rng.gen_range(15_000..40_000));
    let mut next_attack = start + quiet(&mut a.rng);
    let mut active: Option<(Kind, Instant, i128)> = None;
    let mut buf = [0u8; 2048];
    let mut tick = 0u64;
    let mut done = 0;
    while Instant::now() < end {
        let kind = active.map(|x| x.0);
        while let Ok((n, from)) = rx.recv_from(&mut buf) {
            if from != me {
                let d = buf[..n].to_vec();
                a.on_datagram(kind, &d);
            }
        }
        let now = Instant::now();
        match active {
            Some((k, until, began)) if now >= until => {
                writeln!(log, "{}\t{began}\t{}", k.name(), realtime_ns())
                    .map_err(|e| e.to_string())?;
                println!(
                    "attack: {} for {:.1} s",
                    k.name(),
                    (realtime_ns() - began) as f64 / 1e9
                );
                active = None;
                a.replays.clear();
                next_attack = now + quiet(&mut a.rng);
                done += 1;
            }
            None if now >= next_attack && now + Duration::from_secs(15) < end => {
                let k = KINDS[a.rng.gen_range(0..KINDS.len())];
                let length = Duration::from_millis(a.rng.gen_range(5_000..12_000));
                a.jumped = false;
                active = Some((k, now + length, realtime_ns()));
            }
            _ => {}
        }
        if now >= a.next_tick {
            tick += 1;
            a.tick(active.map(|x| x.0), tick);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    println!("attack: {done} attacks, {} datagrams sent", a.sent);
    Ok(())
}
