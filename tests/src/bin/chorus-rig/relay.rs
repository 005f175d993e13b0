//! `chorus-rig relay`: a user-space UDP relay that delays, jitters (and so reorders) and drops
//! datagrams in both directions, in place of netem (which these machines lack).
//!
//! It models a path whose delay is `delay ± jitter` (uniform) above a sharp floor, as a LAN's
//! wire and switches have, so its own scheduling must not add a soft floor of its own: it
//! waits in `ppoll` (an arrival wakes it at once, and is stamped then) until shortly before the
//! next datagram is due, then yields until it is, with the timer slack at 1 ns. The relay that
//! slept 100 µs between looks added 0–250 µs each way, a floor that moved with the machine's
//! load, and the speakers' clock estimates followed it (tens of µs, differently per speaker).

use super::flag;
use rand::Rng;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// The relay wakes this long before a datagram is due and yields until it is.
const SPIN: Duration = Duration::from_micros(80);
/// The longest wait for an arrival when nothing is queued.
const IDLE: Duration = Duration::from_millis(100);

struct Options {
    listen: SocketAddr,
    to: SocketAddr,
    delay_ms: f64,
    jitter_ms: f64,
    loss: f64,
    /// The random loss applies from / until this long after the first audio datagram.
    loss_from_ms: f64,
    loss_until_ms: f64,
    max_s: u64,
    /// Everything dropped for `burst_ms` once every `burst_every_ms`, the first burst
    /// `burst_offset_ms` after the start.
    burst_ms: f64,
    burst_every_ms: f64,
    burst_offset_ms: f64,
    drop_every: u64,
    drop_first_audio: u64,
    join_if: std::net::Ipv4Addr,
}

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    flag(args, name, default)
        .parse::<T>()
        .map_err(|e| format!("{name}: {e}"))
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        Ok(Options {
            listen: num(args, "--listen", "")?,
            to: num(args, "--to", "")?,
            delay_ms: num(args, "--delay-ms", "0")?,
            jitter_ms: num(args, "--jitter-ms", "0")?,
            loss: num::<f64>(args, "--loss-pct", "0")? / 100.0,
            loss_from_ms: num(args, "--loss-from-ms", "0")?,
            loss_until_ms: num(args, "--loss-until-ms", "1e12")?,
            max_s: num(args, "--max-seconds", "3600")?,
            burst_ms: num(args, "--burst-ms", "0")?,
            burst_every_ms: num(args, "--burst-every-ms", "1000")?,
            burst_offset_ms: num(args, "--burst-offset-ms", "0")?,
            drop_every: num(args, "--drop-every", "0")?,
            drop_first_audio: num(args, "--drop-first-audio", "0")?,
            join_if: num(args, "--join-interface", "127.0.0.1")?,
        })
    }
}

#[derive(PartialEq, Eq)]
struct Pending {
    due: Instant,
    to: SocketAddr,
    upstream: bool,
    data: Vec<u8>,
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.due.cmp(&self.due)
    }
}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// What the relay decides for each datagram: drop it, or when to pass it on.
struct Path {
    o: Options,
    started: Instant,
    seen: u64,
    audio_dropped: u64,
    rng: rand::rngs::ThreadRng,
    /// When the first audio datagram came.
    first_audio_at: Option<Instant>,
}

impl Path {
    /// None: dropped.
    fn due(&mut self, data: &[u8], upstream: bool, now: Instant) -> Option<Instant> {
        let o = &self.o;
        let since = now.duration_since(self.started).as_secs_f64() * 1000.0 - o.burst_offset_ms;
        let in_burst = o.burst_ms > 0.0 && since >= 0.0 && since % o.burst_every_ms < o.burst_ms;
        self.seen += 1;
        let nth = o.drop_every > 0 && self.seen.is_multiple_of(o.drop_every);
        let first_audio = upstream
            && self.audio_dropped < o.drop_first_audio
            && chorus::wire::check_prefix(data) == Ok(chorus::wire::kind::AUDIO);
        if first_audio {
            self.audio_dropped += 1;
        }
        if self.first_audio_at.is_none()
            && chorus::wire::check_prefix(data) == Ok(chorus::wire::kind::AUDIO)
        {
            self.first_audio_at = Some(now);
        }
        let lossy = self.first_audio_at.is_some_and(|t| {
            let ms = now.duration_since(t).as_secs_f64() * 1000.0;
            (o.loss_from_ms..o.loss_until_ms).contains(&ms)
        });
        if in_burst || nth || first_audio || (lossy && self.rng.gen::<f64>() < o.loss) {
            return None;
        }
        let d = (o.delay_ms + o.jitter_ms * (2.0 * self.rng.gen::<f64>() - 1.0)).max(0.0);
        Some(now + Duration::from_secs_f64(d / 1000.0))
    }
}

/// The sockets: `down` where the relay listens (a multicast address is joined), `up` what it
/// sends on (a multicast sender for a multicast destination).
fn sockets(o: &Options) -> Result<(UdpSocket, UdpSocket), String> {
    let down = match o.listen {
        SocketAddr::V4(a) if a.ip().is_multicast() => {
            chorus::net::multicast_receiver(*a.ip(), a.port(), o.join_if)
                .map_err(|e| format!("join {}: {e}", o.listen))?
        }
        _ => UdpSocket::bind(o.listen).map_err(|e| format!("bind {}: {e}", o.listen))?,
    };
    let up = match o.to {
        SocketAddr::V4(a) if a.ip().is_multicast() => {
            chorus::net::multicast_sender(std::net::Ipv4Addr::LOCALHOST, 1, true)
                .map_err(|e| e.to_string())?
        }
        _ => UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?,
    };
    down.set_nonblocking(true).map_err(|e| e.to_string())?;
    up.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok((down, up))
}

/// Waits until a socket is readable or `until` (at most `IDLE`) comes.
fn wait(down: &UdpSocket, up: &UdpSocket, until: Option<Instant>) {
    use nix::poll::{ppoll, PollFd, PollFlags};
    let left = until.map_or(IDLE, |u| {
        u.saturating_duration_since(Instant::now()).min(IDLE)
    });
    let mut fds = [
        PollFd::new(down.as_fd(), PollFlags::POLLIN),
        PollFd::new(up.as_fd(), PollFlags::POLLIN),
    ];
    let ts = nix::sys::time::TimeSpec::from_duration(left);
    let _ = ppoll(&mut fds, Some(ts), None);
}

pub fn relay(args: &[String]) -> Result<(), String> {
    let o = Options::parse(args)?;
    let (listen, to, max_s) = (o.listen, o.to, o.max_s);
    let (down, up) = sockets(&o)?;
    // Wake-ups from ppoll's timeout on time, not up to 50 µs late.
    let _ = nix::sys::prctl::set_timerslack(1);
    let mut path = Path {
        o,
        started: Instant::now(),
        seen: 0,
        audio_dropped: 0,
        first_audio_at: None,
        rng: rand::thread_rng(),
    };
    let mut client: Option<SocketAddr> = None;
    let mut queue = BinaryHeap::new();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_secs(max_s);
    let (mut passed, mut dropped) = (0u64, 0u64);
    while Instant::now() < end {
        for upstream in [true, false] {
            let sock = if upstream { &down } else { &up };
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let now = Instant::now();
                let dest = if upstream {
                    client = Some(from);
                    to
                } else {
                    match client {
                        Some(c) => c,
                        None => continue,
                    }
                };
                match path.due(&buf[..n], upstream, now) {
                    None => dropped += 1,
                    Some(due) => queue.push(Pending {
                        due,
                        to: dest,
                        upstream,
                        data: buf[..n].to_vec(),
                    }),
                }
            }
        }
        let now = Instant::now();
        while queue.peek().is_some_and(|p: &Pending| p.due <= now) {
            if let Some(p) = queue.pop() {
                let sock = if p.upstream { &up } else { &down };
                let _ = sock.send_to(&p.data, p.to);
                passed += 1;
            }
        }
        match queue.peek().map(|p| p.due) {
            Some(due) if due <= now + SPIN => std::thread::yield_now(),
            next => wait(&down, &up, next.map(|d| d - SPIN)),
        }
    }
    eprintln!("relay {listen} -> {to}: passed {passed}, dropped {dropped}");
    Ok(())
}
