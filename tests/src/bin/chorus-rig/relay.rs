//! `chorus-rig relay`: a user-space UDP relay that delays, jitters (and so reorders) and drops
//! datagrams in both directions, in place of netem (which these machines lack). With `--air`
//! the datagrams cross a Wi-Fi link's air too (see air.rs). With `--unicast-port P` (between a
//! speaker and its controller's sync port) it carries the speaker's unicast stream as well:
//! the heartbeats it passes name P as the speaker's unicast port (so they go untagged: no
//! key), and what comes to P goes on to the speaker's own port, through the same path.
//!
//! It models a path whose delay is `delay ± jitter` (uniform) above a sharp floor, as a LAN's
//! wire and switches have, so its own scheduling must not add a soft floor of its own: it
//! waits in `ppoll` (an arrival wakes it at once, and is stamped then) until shortly before the
//! next datagram is due, then yields until it is, with the timer slack at 1 ns. The relay that
//! slept 100 µs between looks added 0–250 µs each way, a floor that moved with the machine's
//! load, and the speakers' clock estimates followed it (tens of µs, differently per speaker).

use super::air::{Air, Kind};
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
    air: Option<Kind>,
    unicast_port: Option<u16>,
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
            air: match flag(args, "--air", "").as_str() {
                "" => None,
                "multicast" => Some(Kind::Multicast),
                "unicast" => Some(Kind::Unicast),
                other => return Err(format!("--air: {other}: multicast or unicast")),
            },
            unicast_port: match num::<u16>(args, "--unicast-port", "0")? {
                0 => None,
                p => Some(p),
            },
        })
    }

    /// The air the datagrams cross, with the defaults of air.rs.
    fn air(&self, args: &[String], start: Instant) -> Result<Option<Air>, String> {
        let Some(kind) = self.air else {
            return Ok(None);
        };
        let mut air = Air::new(kind, start);
        let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
        let multicast = kind == Kind::Multicast;
        air.dtim = ms(num(args, "--dtim-ms", "102.4")?);
        air.kbps = num(args, "--air-kbps", if multicast { "6000" } else { "0" })?;
        air.queue = ms(num(args, "--air-queue-ms", "500")?);
        air.retry = num::<f64>(args, "--retry-pct", if multicast { "0" } else { "15" })? / 100.0;
        air.retry_max = ms(num(args, "--retry-ms", "2")?);
        Ok(Some(air))
    }
}

#[derive(PartialEq, Eq)]
struct Pending {
    due: Instant,
    /// Arrival order: datagrams due at the same instant leave in it.
    n: u64,
    to: SocketAddr,
    /// Leaves by this socket (see `Sockets::all`).
    via: usize,
    upstream: bool,
    data: Vec<u8>,
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.n).cmp(&(self.due, self.n))
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
    air: Option<Air>,
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
        // An outage holds a station's traffic (the access point retries it after), and loses
        // the rest.
        let held = in_burst && self.air.as_ref().is_some_and(|a| a.kind == Kind::Unicast);
        if (in_burst && !held) || nth || first_audio || (lossy && self.rng.gen::<f64>() < o.loss) {
            return None;
        }
        let mut d = (o.delay_ms + o.jitter_ms * (2.0 * self.rng.gen::<f64>() - 1.0)).max(0.0);
        if held {
            d += o.burst_ms - since % o.burst_every_ms;
        }
        let t = now + Duration::from_secs_f64(d / 1000.0);
        match &mut self.air {
            Some(air) => air.due(data.len(), t, upstream, &mut self.rng),
            None => Some(t),
        }
    }
}

/// The relay's sockets: `down` where it listens (a multicast address is joined); the
/// unicast port's, if any; and one socket towards `to` per address that sent to `down` (as a
/// NAT does: a speaker's sync and repair sockets stay apart), or one multicast sender.
struct Sockets {
    down: UdpSocket,
    unicast: Option<UdpSocket>,
    ups: Vec<(Option<SocketAddr>, UdpSocket)>,
}

/// The most clients a relay keeps a socket for.
const CLIENTS: usize = 8;

impl Sockets {
    fn new(o: &Options) -> Result<Sockets, String> {
        let down = match o.listen {
            SocketAddr::V4(a) if a.ip().is_multicast() => {
                chorus::net::multicast_receiver(*a.ip(), a.port(), o.join_if)
                    .map_err(|e| format!("join {}: {e}", o.listen))?
            }
            _ => UdpSocket::bind(o.listen).map_err(|e| format!("bind {}: {e}", o.listen))?,
        };
        down.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut ups = Vec::new();
        if let SocketAddr::V4(a) = o.to {
            if a.ip().is_multicast() {
                let up = chorus::net::multicast_sender(std::net::Ipv4Addr::LOCALHOST, 1, true)
                    .map_err(|e| e.to_string())?;
                up.set_nonblocking(true).map_err(|e| e.to_string())?;
                ups.push((None, up));
            }
        }
        let unicast = match o.unicast_port {
            Some(p) => {
                let s =
                    UdpSocket::bind(("0.0.0.0", p)).map_err(|e| format!("bind port {p}: {e}"))?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                Some(s)
            }
            None => None,
        };
        Ok(Sockets { down, unicast, ups })
    }

    /// Every socket: 0 `down`, 1 the unicast port's (if any), then the ones towards `to`.
    fn all(&self) -> Vec<&UdpSocket> {
        let mut v = vec![&self.down];
        v.extend(self.unicast.as_ref());
        v.extend(self.ups.iter().map(|(_, s)| s));
        v
    }

    /// Socket `k` of `all`.
    fn get(&self, k: usize) -> Option<&UdpSocket> {
        match (k, &self.unicast) {
            (0, _) => Some(&self.down),
            (1, Some(u)) => Some(u),
            _ => self.ups.get(k - self.first_up()).map(|(_, s)| s),
        }
    }

    fn first_up(&self) -> usize {
        1 + usize::from(self.unicast.is_some())
    }

    /// The socket (its index in `all`) that carries `client`'s datagrams towards `to`.
    fn up_for(&mut self, client: SocketAddr) -> Option<usize> {
        let first = self.first_up();
        if let Some(k) = self
            .ups
            .iter()
            .position(|(c, _)| c.is_none_or(|c| c == client))
        {
            return Some(first + k);
        }
        if self.ups.len() == CLIENTS {
            return None;
        }
        let up = UdpSocket::bind("0.0.0.0:0").ok()?;
        up.set_nonblocking(true).ok()?;
        self.ups.push((Some(client), up));
        Some(first + self.ups.len() - 1)
    }
}

/// Waits until a socket is readable or `until` (at most `IDLE`) comes.
fn wait(socks: &[&UdpSocket], until: Option<Instant>) {
    use nix::poll::{ppoll, PollFd, PollFlags};
    let left = until.map_or(IDLE, |u| {
        u.saturating_duration_since(Instant::now()).min(IDLE)
    });
    let mut fds: Vec<PollFd> = socks
        .iter()
        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
        .collect();
    let ts = nix::sys::time::TimeSpec::from_duration(left);
    let _ = ppoll(&mut fds, Some(ts), None);
}

/// A heartbeat on its way up names the relay's unicast port instead of the speaker's, which
/// it returns (None: not a heartbeat, or none to rewrite).
fn rewrite_heartbeat(data: &mut Vec<u8>, port: u16) -> Option<u16> {
    use chorus::wire::packet::{encode_heartbeat, parse};
    use chorus::wire::Packet;
    let Ok(Packet::Heartbeat(mut hb)) = parse(data) else {
        return None;
    };
    let own = hb.unicast_port.replace(port)?;
    *data = encode_heartbeat(&hb);
    Some(own)
}

/// Where datagrams go: the far end, and the speaker's unicast port (from its heartbeats).
struct Ends {
    to: SocketAddr,
    unicast_port: Option<u16>,
    /// The address the heartbeats came from, and the unicast port they named.
    unicast_to: Option<SocketAddr>,
}

impl Ends {
    /// Where a datagram that came on socket `k` from `from` goes, by which socket, and
    /// whether upstream.
    fn route(
        &mut self,
        socks: &mut Sockets,
        k: usize,
        from: SocketAddr,
        data: &mut Vec<u8>,
    ) -> Option<(SocketAddr, usize, bool)> {
        if k == 0 {
            if let Some(port) = self.unicast_port {
                if let Some(own) = rewrite_heartbeat(data, port) {
                    self.unicast_to = Some(SocketAddr::new(from.ip(), own));
                }
            }
            return Some((self.to, socks.up_for(from)?, true));
        }
        if k < socks.first_up() {
            return Some((self.unicast_to?, 0, false));
        }
        let client = socks.ups.get(k - socks.first_up())?.0?;
        Some((client, 0, false))
    }
}

pub fn relay(args: &[String]) -> Result<(), String> {
    let o = Options::parse(args)?;
    let (listen, to, max_s) = (o.listen, o.to, o.max_s);
    let mut socks = Sockets::new(&o)?;
    // Wake-ups from ppoll's timeout on time, not up to 50 µs late.
    let _ = nix::sys::prctl::set_timerslack(1);
    let started = Instant::now();
    let mut ends = Ends {
        to,
        unicast_port: o.unicast_port,
        unicast_to: None,
    };
    let mut path = Path {
        air: o.air(args, started)?,
        o,
        started,
        seen: 0,
        audio_dropped: 0,
        first_audio_at: None,
        rng: rand::thread_rng(),
    };
    let mut queue = BinaryHeap::new();
    let mut buf = [0u8; 2048];
    let end = started + Duration::from_secs(max_s);
    let (mut passed, mut dropped, mut arrivals) = (0u64, 0u64, 0u64);
    while Instant::now() < end {
        let mut k = 0;
        while let Some(sock) = socks.get(k) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                k += 1;
                continue;
            };
            let now = Instant::now();
            arrivals += 1;
            let mut data = buf[..n].to_vec();
            let Some((dest, via, upstream)) = ends.route(&mut socks, k, from, &mut data) else {
                continue;
            };
            match path.due(&data, upstream, now) {
                None => dropped += 1,
                Some(due) => queue.push(Pending {
                    due,
                    n: arrivals,
                    to: dest,
                    via,
                    upstream,
                    data,
                }),
            }
        }
        let now = Instant::now();
        while queue.peek().is_some_and(|p: &Pending| p.due <= now) {
            if let Some(p) = queue.pop() {
                if let Some(sock) = socks.get(p.via) {
                    let _ = sock.send_to(&p.data, p.to);
                }
                passed += 1;
            }
        }
        match queue.peek().map(|p| p.due) {
            Some(due) if due <= now + SPIN => std::thread::yield_now(),
            next => wait(&socks.all(), next.map(|d| d - SPIN)),
        }
    }
    eprintln!("relay {listen} -> {to}: passed {passed}, dropped {dropped}");
    Ok(())
}
