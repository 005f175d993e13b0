//! The controller's clock-sync and heartbeat service (unicast UDP).

use super::streamer::RecentDatagrams;
use super::Registry;
use crate::clock::{ControllerNs, SharedClock};
use crate::wire::auth::Auth;
use crate::wire::packet::{parse, Packet};
use crate::wire::{Delivery, SyncResponse};
use chorus_api::SyncServiceCounters;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Per-source token buckets: each source may send `rate` datagrams a second on average, in
/// bursts of up to `burst`. The service keeps two: per address and port (a speaker sends 40
/// exchanges and one heartbeat a second at most: 100/s) and per host (5000/s: a hundred
/// speakers on one box, as in tests). Only a flood (or a reflection attempt with spoofed
/// sources) is cut; the answers are never larger than the requests either, so the service
/// amplifies nothing.
pub(crate) struct RateLimiter<K> {
    buckets: HashMap<K, (f64, i64)>,
    rate: f64,
    burst: f64,
}

/// How long the service waits after a wake-up for the rest of a burst of requests (speakers'
/// polls spread over 2 ms after each point of the grid). A repair request that comes meanwhile
/// waits as long at most.
const LINGER: std::time::Duration = std::time::Duration::from_millis(3);

/// Whether `t` (controller time) is within the speakers' phase spread and a network's delay
/// after a point of their quiet poll grid.
fn just_after_grid(t: i64) -> bool {
    t.rem_euclid(crate::sync::QUIET_POLL_NS) < crate::sync::QUIET_POLL_SPREAD_NS + 3_000_000
}

/// Sources tracked at most; when full, buckets idle for 10 s are forgotten first, then the
/// longest-idle one.
const MAX_SOURCES: usize = 4096;

impl<K: std::hash::Hash + Eq + Copy> RateLimiter<K> {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            buckets: HashMap::new(),
            rate,
            burst,
        }
    }

    /// True when a datagram from `source` at time `now_ns` may be served.
    pub(crate) fn allow(&mut self, source: K, now_ns: i64) -> bool {
        if !self.buckets.contains_key(&source) && self.buckets.len() >= MAX_SOURCES {
            self.buckets
                .retain(|_, (_, last)| now_ns - *last < 10_000_000_000);
            // Still full (4096 sources in 10 s: spoofed): the longest-idle one makes room.
            // Refusing newcomers let a flood of spoofed sources keep a new speaker from
            // ever locking.
            if self.buckets.len() >= MAX_SOURCES {
                if let Some(old) = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, b)| b.1)
                    .map(|(k, _)| *k)
                {
                    self.buckets.remove(&old);
                }
            }
        }
        let (tokens, last) = self.buckets.entry(source).or_insert((self.burst, now_ns));
        let elapsed = (now_ns - *last).max(0) as f64 * 1e-9;
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now_ns;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Who gets zones' streams by unicast: the table the streamers read, and the streams of the
/// zones that send only so (`group:port`).
pub(crate) struct UnicastPolicy {
    pub targets: Arc<std::sync::Mutex<super::unicast::UnicastTargets>>,
    pub only: Vec<String>,
}

/// Serves sync requests and heartbeats on a thread of its own (blocking receive: one wake-up
/// per datagram, no runtime in between; with 32 speakers that is 160 datagrams a second)
/// until the socket fails.
pub(crate) fn serve(
    socket: UdpSocket,
    auth: Auth,
    clock: SharedClock,
    registry: Arc<Registry>,
    recent: Vec<Arc<std::sync::Mutex<RecentDatagrams>>>,
    stats: Arc<SyncServiceCounters>,
    unicast: UnicastPolicy,
) {
    if let Err(e) = crate::net::enable_rx_timestamps(&socket) {
        log::warn!(
            "no kernel receive timestamps on the sync service ({e}); using user-space times"
        );
    }
    let mut service = Service {
        socket,
        auth,
        clock,
        registry,
        recent,
        stats,
        per_source: RateLimiter::new(100.0, 50.0),
        per_host: RateLimiter::new(5000.0, 2500.0),
        // Datagrams sent again per speaker: 1000/s (1.4 MB/s) is a third of a 48 kHz stream
        // lost.
        repairs: RateLimiter::new(1000.0, 500.0),
        proofs: super::proof::Proofs::default(),
        rate: crate::net::RealtimeRate::new(),
        on_grid: false,
        unicast,
    };
    let mut buf = [0u8; 2048];
    loop {
        if let Some((len, from, t2)) = service.receive(&mut buf) {
            service.handle(&buf[..len], from, t2);
        }
    }
}

/// The service's sockets, limits and what it has learnt.
struct Service {
    socket: UdpSocket,
    auth: Auth,
    clock: SharedClock,
    registry: Arc<Registry>,
    recent: Vec<Arc<std::sync::Mutex<RecentDatagrams>>>,
    stats: Arc<SyncServiceCounters>,
    per_source: RateLimiter<SocketAddr>,
    per_host: RateLimiter<IpAddr>,
    repairs: RateLimiter<IpAddr>,
    proofs: super::proof::Proofs,
    rate: crate::net::RealtimeRate,
    /// The first datagram of this wake-up came just after a point of the speakers' poll grid,
    /// and the service has not waited for the rest of the burst yet.
    on_grid: bool,
    unicast: UnicastPolicy,
}

impl Service {
    /// The next datagram: its length, sender and receive time (t2, the kernel's receive
    /// timestamp, on our clock). What is waiting first; then, when the wake-up came with the
    /// speakers' quiet polls (just after a point of their grid) and there are several, a
    /// moment for the rest of the burst: a few wake-ups a poll instead of one a datagram.
    /// Exchanges off the grid (speakers still locking, or on a jittery path) are answered at
    /// once. None: nothing this time (interrupted, or a moment waited).
    fn receive(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr, ControllerNs)> {
        let (socket, clock) = (&self.socket, &self.clock);
        let got = match crate::net::recv_stamped(socket, buf, clock, &mut self.rate, false) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if self.on_grid && self.registry.count() > 1 {
                    self.on_grid = false;
                    std::thread::sleep(LINGER);
                    return None;
                }
                let r = crate::net::recv_stamped(socket, buf, clock, &mut self.rate, true);
                self.on_grid = matches!(&r, Ok((_, _, t)) if just_after_grid(t.0));
                r
            }
            r => r,
        };
        match got {
            Ok((n, from, t)) => Some((n, from, ControllerNs(t.0))),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
            Err(e) => {
                log::warn!("sync service receive failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            }
        }
    }

    /// One datagram: within the sender's limits, authenticated, then a sync request, a
    /// heartbeat or a repair request.
    fn handle(&mut self, datagram: &[u8], from: SocketAddr, t2: ControllerNs) {
        let stats = self.stats.clone();
        if !self.per_host.allow(from.ip(), t2.0) || !self.per_source.allow(from, t2.0) {
            stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(body) = self.auth.open(datagram) else {
            stats.unauthenticated.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match parse(body) {
            Ok(Packet::SyncRequest(req)) => {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                self.proofs.request(from, req.proof, t2.0);
                let mut resp = SyncResponse {
                    id: req.id,
                    t1: req.t1,
                    t2,
                    t3: t2,
                };
                resp.t3 = ControllerNs(self.clock.now().0);
                // Sealing after t3 delays the answer by the time a tag takes, as sealing after
                // t1 delays the request: the two cancel in the offset.
                let mut out = resp.encode();
                self.auth.seal(&mut out);
                self.proofs.answered(from, resp.t3.0, t2.0);
                let _ = self.socket.send_to(&out, from);
            }
            Ok(Packet::Heartbeat(hb)) => {
                stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                use super::registry::Heard;
                let (name, stream) = (hb.name.clone(), hb.stream.clone());
                let unicast_port = hb.unicast_port.filter(|_| {
                    hb.delivery == Some(Delivery::Unicast)
                        || stream
                            .as_ref()
                            .is_some_and(|s| self.unicast.only.contains(s))
                });
                if matches!(
                    self.registry.handle_heartbeat(from, hb, t2),
                    Heard::Joined | Heard::Updated
                ) {
                    let d = self.deliver(from, stream.as_deref(), unicast_port, t2);
                    self.registry.set_delivery(&name, d);
                } else {
                    stats.heartbeats_refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Packet::Repair(q)) => self.repair(&q, from, t2),
            Ok(_) | Err(_) => {
                stats.invalid.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// After a speaker's heartbeat: its zone's stream by unicast to `port` on its address if it
    /// asked (or its zone sends only so) and it proved it receives the service's answers (a
    /// forged source never does: no hose aimed at a victim), else by multicast only.
    fn deliver(
        &mut self,
        from: SocketAddr,
        stream: Option<&str>,
        port: Option<u16>,
        t2: ControllerNs,
    ) -> Delivery {
        let Ok(mut targets) = self.unicast.targets.lock() else {
            return Delivery::Multicast;
        };
        match (stream, port) {
            (Some(s), Some(p))
                if self.proofs.proven(from.ip(), t2.0)
                    && targets.want(s, (from, SocketAddr::new(from.ip(), p)), t2.0) =>
            {
                Delivery::Unicast
            }
            _ => {
                targets.forget(from);
                Delivery::Multicast
            }
        }
    }

    /// A request is small and its answer is audio: only hosts that proved they receive the
    /// service's answers (controller::proof) get answers, within their share, so this reflects
    /// onto nobody else (and with a key, onto nobody without it).
    fn repair(
        &mut self,
        q: &crate::wire::repair::RepairRequest,
        from: SocketAddr,
        t2: ControllerNs,
    ) {
        let stats = &self.stats;
        stats.repair_requests.fetch_add(1, Ordering::Relaxed);
        let wanted = q.seqs().len() as u64;
        if !self.proofs.proven(from.ip(), t2.0) {
            stats.repairs_refused.fetch_add(wanted, Ordering::Relaxed);
            return;
        }
        // The zone whose session it is (each zone's stream has its own).
        let held: Vec<Vec<u8>> = self
            .recent
            .iter()
            .filter_map(|r| r.lock().ok())
            .find(|r| r.session() == q.session)
            .map(|r| {
                q.seqs()
                    .iter()
                    .filter_map(|&s| r.get(q.session, s).map(<[u8]>::to_vec))
                    .collect()
            })
            .unwrap_or_default();
        let mut sent = 0;
        for d in &held {
            if !self.repairs.allow(from.ip(), t2.0) {
                break;
            }
            if self.socket.send_to(d, from).is_ok() {
                sent += 1;
            }
        }
        stats.repairs_sent.fetch_add(sent, Ordering::Relaxed);
        stats
            .repairs_refused
            .fetch_add(wanted - sent, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_speaker_passes_a_flood_does_not() {
        let mut l = RateLimiter::<IpAddr>::new(100.0, 50.0);
        let speaker: IpAddr = "10.0.0.2".parse().unwrap();
        let flood: IpAddr = "10.0.0.66".parse().unwrap();
        let (mut ok_speaker, mut ok_flood) = (0, 0);
        // 10 s: the speaker at 41 datagrams a second, the flood at 10 000.
        for ms in 0..10_000i64 {
            let now = ms * 1_000_000;
            if ms % 25 == 0 || ms % 1000 == 1 {
                ok_speaker += l.allow(speaker, now) as u32;
            }
            for k in 0..10 {
                ok_flood += l.allow(flood, now + k * 100_000) as u32;
            }
        }
        assert_eq!(ok_speaker, 410, "every speaker datagram is served");
        assert!(
            (1_000..=1_100).contains(&ok_flood),
            "the flood is cut to about 100 a second: {ok_flood}"
        );
    }

    #[test]
    fn sources_are_bounded() {
        let mut l = RateLimiter::<IpAddr>::new(100.0, 50.0);
        for i in 0..(MAX_SOURCES as u32 + 10) {
            l.allow(IpAddr::from(i.to_be_bytes()), 0);
        }
        assert!(l.buckets.len() <= MAX_SOURCES);
        // A new speaker gets in at once, even while the flood's sources are fresh (it used to
        // be refused until they were 10 s idle)...
        assert!(l.allow("192.0.2.1".parse().unwrap(), 1_000));
        assert!(l.buckets.len() <= MAX_SOURCES);
        // ... and after they are idle.
        assert!(l.allow("192.0.2.2".parse().unwrap(), 20_000_000_000));
    }
}
