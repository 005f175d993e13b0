//! The speaker's side of the clock sync, and its heartbeat to the controller: a thread of its
//! own, blocking on its socket (one wake-up per exchange). What it needs of the speaker (where
//! the controller is, the model the exchanges feed, the heartbeat's content) comes through
//! [`Host`], so that this layer imports no role.

use super::{ClockModel, ClockSnapshot, Exchange};
use crate::clock::{LocalNs, SharedClock};
use crate::wire::auth::Auth;
use crate::wire::packet::{encode_heartbeat, parse, Packet};
use crate::wire::{Heartbeat, SyncRequest};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the client needs of the speaker it keeps in time.
pub trait Host: Send + Sync {
    /// The controller to sync with, once known.
    fn controller(&self) -> Option<SocketAddr>;
    /// The model the exchanges feed.
    fn model(&self) -> &Mutex<ClockModel>;
    /// The snapshot the playout reads: published once locked (`None`: not yet).
    fn snapshot(&self) -> &Mutex<Option<ClockSnapshot>>;
    /// Publishes whether the clock is locked; returns what it was.
    fn set_locked(&self, locked: bool) -> bool;
    /// A datagram failed its authentication.
    fn unauthenticated(&self);
    /// The heartbeat to send now, but for `sent_ns`, which the client fills in.
    fn heartbeat(&self) -> Heartbeat;
    /// Something the heartbeat tells changed: send it at the next wake-up, not up to a second
    /// later (asked once: the answer clears it).
    fn heartbeat_now(&self) -> bool {
        false
    }
}

/// Exchange interval on a jittery path: the envelope filter's precision grows with the number
/// of exchanges it sees.
const POLL: Duration = Duration::from_millis(25);
/// ... and while its window fills (locking, the first 10-20 s on a jittery path): its floors
/// are the lowest of n delays, about jitter/n above the truth, and a young window is short of
/// n. At 25 ms a jittery path's estimate was 30-60 us off for 15 s after lock (sync-bench), in
/// a unit test 20-50 us; at 10 ms within 10 us after 5 s.
const POLL_FILLING: Duration = Duration::from_millis(10);
/// Exchange interval on a quiet path once locked: a sharp delay floor needs few exchanges, and
/// a controller with 32 speakers answers 64 exchanges a second instead of 1280.
const POLL_QUIET: Duration = Duration::from_nanos(super::QUIET_POLL_NS as u64);

/// A speaker that has heard no answer for this long says it is not locked (its model keeps
/// what it learnt, and the playout goes on with it).
const LOST_AFTER_NS: i64 = 5_000_000_000;

/// What the exchange loop keeps from one request to the next.
struct Exchanges {
    /// Requests sent and not answered yet (id, t1).
    outstanding: HashMap<u64, LocalNs>,
    next_id: u64,
    /// The model's verdict after the last exchange (read under the lock taken for it).
    verdict: Verdict,
    /// When the last answer came.
    answered: LocalNs,
    /// The controller time t3 of the last answer: echoed in the next request, it proves to the
    /// controller that we receive its answers here (it sends repairs only to such hosts).
    proof: i64,
}

impl Exchanges {
    /// Takes an answer in, if it is one to a request of ours.
    fn take(
        &mut self,
        host: &dyn Host,
        auth: &Auth,
        ctl: SocketAddr,
        bytes: &[u8],
        from: SocketAddr,
        t4: LocalNs,
    ) {
        if let Some((v, t3)) = take_answer(host, auth, &mut self.outstanding, ctl, bytes, from, t4)
        {
            (self.verdict, self.proof, self.answered) = (v, t3, t4);
        }
    }

    /// Sends the next request.
    fn request(&mut self, auth: &Auth, socket: &UdpSocket, ctl: SocketAddr, clock: &SharedClock) {
        self.next_id += 1;
        let t1 = clock.now();
        if self.outstanding.len() > 64 {
            self.outstanding.clear();
        }
        self.outstanding.insert(self.next_id, t1);
        let mut req = SyncRequest {
            id: self.next_id,
            t1,
            proof: self.proof,
        }
        .encode();
        auth.seal(&mut req);
        if let Err(e) = socket.send_to(&req, ctl) {
            log::debug!("sync request to {ctl} failed: {e}");
        }
    }
}

/// Exchanges sync datagrams with the controller (see `poll`; lock after six, about 0.06 s), and
/// sends the heartbeat once a second.
pub fn run(host: Arc<dyn Host>, clock: SharedClock, auth: Auth) -> std::io::Result<()> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    let stamped = match crate::net::enable_rx_timestamps(&socket) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("no kernel receive timestamps for clock sync ({e}); using user-space times");
            false
        }
    };
    let mut rate = crate::net::RealtimeRate::new();
    let mut x = Exchanges {
        outstanding: HashMap::new(),
        next_id: rand::random::<u32>() as u64,
        verdict: Verdict::default(),
        answered: clock.now(),
        proof: 0,
    };
    let mut buf = [0u8; 256];
    let mut last_heartbeat = LocalNs(i64::MIN / 2);
    // The answer to the last request is read at this wake-up, not when it came.
    let mut late = false;
    // This speaker's place on the controller's poll grid.
    let phase_ns = (rand::random::<u32>() as i64) % super::QUIET_POLL_SPREAD_NS;
    loop {
        let controller = host.controller();
        let Some(ctl) = controller else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if late {
            while let Ok((len, from, t4)) =
                crate::net::recv_stamped(&socket, &mut buf, &clock, &mut rate, false)
            {
                x.take(&*host, &auth, ctl, &buf[..len], from, t4);
            }
        }
        let now = clock.now();
        if now.since(x.answered) > LOST_AFTER_NS && host.set_locked(false) {
            log::warn!("no answer from {ctl} for 5 s: clock not locked any more");
        }
        // About once a second: with every second quiet poll (polls a hair under 500 ms apart
        // must not push it to the third).
        if now.since(last_heartbeat) >= 900_000_000 || host.heartbeat_now() {
            last_heartbeat = now;
            send_heartbeat(&*host, &auth, &socket, ctl, now);
        }
        x.request(&auth, &socket, ctl, &clock);
        // On a quiet path the answer waits in the socket, its kernel stamp saying when it
        // came, and is read at the next poll: one wake-up per exchange instead of two (the
        // answer, then the poll). This needs the stamps, and the realtime clock's rate
        // against ours to convert their age.
        let wait = match poll(x.verdict, stamped && rate.known()) {
            Poll::OnGrid => {
                late = true;
                std::thread::sleep(until_next_poll(&*host, &clock, phase_ns));
                continue;
            }
            Poll::Wait(d) => d,
        };
        late = false;
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match crate::net::recv_stamped(&socket, &mut buf, &clock, &mut rate, true) {
                Ok((len, from, t4)) => x.take(&*host, &auth, ctl, &buf[..len], from, t4),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // The deadline (WouldBlock or TimedOut), or trouble: next exchange.
                Err(_) => break,
            }
        }
    }
}

/// The heartbeat: the host's (who it is, where its API listens, its volume and sync state),
/// and when it was sent (controller clock, so that a replay is told from a new one).
fn send_heartbeat(host: &dyn Host, auth: &Auth, socket: &UdpSocket, ctl: SocketAddr, now: LocalNs) {
    let hb = Heartbeat {
        sent_ns: host
            .snapshot()
            .try_lock()
            .ok()
            .and_then(|s| *s)
            .map(|s| s.to_controller(now).0),
        ..host.heartbeat()
    };
    let mut d = encode_heartbeat(&hb);
    auth.seal(&mut d);
    let _ = socket.send_to(&d, ctl);
}

/// How the next exchange is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poll {
    /// On the controller's grid of quiet polls, the answer read at the next one (its kernel
    /// stamp says when it came).
    OnGrid,
    /// The answer is waited for, up to this long, then the next exchange.
    Wait(Duration),
}

/// What the clock model says about the path after an exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Verdict {
    /// Settled on a quiet path (see `ClockModel::quiet`).
    quiet: bool,
    /// Its window is still filling (see `ClockModel::filling`).
    filling: bool,
}

/// The poll policy: while the model's window fills, 100 exchanges a second; on a jittery path
/// 40 (40-byte datagrams: enough fast ones for the filter to pick from); on a quiet path two,
/// on the grid when answers can be read late (one wake-up per exchange instead of two: the
/// answer, then the poll), which needs kernel stamps and the realtime clock's rate against
/// ours to convert their age; otherwise waited for.
fn poll(v: Verdict, stamps_usable: bool) -> Poll {
    match (v.quiet, v.filling, stamps_usable) {
        (true, _, true) => Poll::OnGrid,
        (true, _, false) => Poll::Wait(POLL_QUIET),
        (false, true, _) => Poll::Wait(POLL_FILLING),
        (false, false, _) => Poll::Wait(POLL),
    }
}

/// Time until the next poll on a quiet path: on the controller's 500 ms grid, plus this
/// speaker's phase (under 2 ms), so that a controller with many speakers takes their requests
/// and heartbeats in a few wake-ups instead of one each (its sync service lingers a moment
/// after a wake-up for the rest of the burst). Until the clock is locked: one poll from now.
fn until_next_poll(host: &dyn Host, clock: &SharedClock, phase_ns: i64) -> Duration {
    let Some(s) = host.snapshot().lock().ok().and_then(|s| *s) else {
        return POLL_QUIET;
    };
    let now = s.to_controller(clock.now()).0;
    Duration::from_nanos((next_grid_point(now, phase_ns) - now) as u64)
}

/// The first point of the poll grid (shifted by `phase_ns`) more than half a poll after `now`
/// (controller time): the same interval from one aligned poll to the next.
fn next_grid_point(now: i64, phase_ns: i64) -> i64 {
    let p = POLL_QUIET.as_nanos() as i64;
    (now - phase_ns + p / 2).div_euclid(p) * p + p + phase_ns
}

/// Hands an answer to one of our requests to the clock model (and publishes the snapshot
/// once locked); anything else is dropped. Returns the model's verdict on the path and the
/// answer's t3 (the proof for the next request).
fn take_answer(
    host: &dyn Host,
    auth: &Auth,
    outstanding: &mut HashMap<u64, LocalNs>,
    ctl: SocketAddr,
    datagram: &[u8],
    from: SocketAddr,
    t4: LocalNs,
) -> Option<(Verdict, i64)> {
    if from != ctl {
        return None;
    }
    let Ok(body) = auth.open(datagram) else {
        host.unauthenticated();
        return None;
    };
    let Ok(Packet::SyncResponse(resp)) = parse(body) else {
        return None;
    };
    // Only answers to our own requests, with the t1 we sent.
    if outstanding.remove(&resp.id) != Some(resp.t1) {
        return None;
    }
    let ex = Exchange {
        t1: resp.t1,
        t2: resp.t2,
        t3: resp.t3,
        t4,
    };
    let mut m = host.model().lock().ok()?;
    m.handle_exchange(ex);
    let locked = m.locked();
    // The published copy follows the model both ways (it was set once and never cleared: a
    // speaker whose model dropped its history after a clock step still said it was locked,
    // and `lost_sync` was never sent).
    let was = host.set_locked(locked);
    if was && !locked {
        log::warn!("clock lost its lock to {ctl}: re-learning");
    }
    if locked && !was {
        if let Some(s) = m.snapshot() {
            log::info!(
                "clock locked to {ctl}: offset_ns={} ppm={:.1} rtt_us={:.0}",
                s.offset_ref,
                s.freq * 1e6,
                m.last_rtt() as f64 / 1000.0
            );
        }
    }
    if locked {
        if let Ok(mut snap) = host.snapshot().lock() {
            *snap = m.snapshot();
        }
    }
    let verdict = Verdict {
        quiet: m.quiet(),
        filling: m.filling(),
    };
    Some((verdict, resp.t3.0))
}

#[cfg(test)]
mod tests {
    use super::{next_grid_point, poll, Poll, Verdict, POLL, POLL_FILLING, POLL_QUIET};

    #[test]
    fn quiet_paths_poll_twice_a_second_on_the_grid_jittery_ones_forty_times() {
        let v = |quiet, filling| Verdict { quiet, filling };
        for filling in [false, true] {
            assert_eq!(poll(v(true, filling), true), Poll::OnGrid);
            assert_eq!(poll(v(true, filling), false), Poll::Wait(POLL_QUIET));
        }
        for stamps in [false, true] {
            assert_eq!(poll(v(false, false), stamps), Poll::Wait(POLL));
            assert_eq!(poll(v(false, true), stamps), Poll::Wait(POLL_FILLING));
        }
        assert_eq!(POLL_FILLING.as_millis(), 10);
        assert_eq!(POLL.as_millis(), 25);
        assert_eq!(POLL_QUIET.as_millis(), 500);
    }

    #[test]
    fn quiet_polls_land_on_the_grid_a_poll_apart() {
        let p = POLL_QUIET.as_nanos() as i64;
        let phase = 1_234_567;
        // From anywhere, the first poll is on the grid, half a poll to one and a half away.
        for now in [
            -7 * p - 3,
            -1,
            0,
            1,
            p / 2,
            12_345_678_901,
            12_345_678_901 + p / 2,
        ] {
            let next = next_grid_point(now, phase);
            assert_eq!((next - phase).rem_euclid(p), 0, "{now}");
            assert!(
                next - now > p / 2 && next - now <= 3 * p / 2,
                "{now} -> {next}"
            );
        }
        // Then, woken a little late each time, a poll apart exactly.
        let mut t = next_grid_point(5 * p + 77, phase);
        for late in [0, 50_000, 3_000_000, 20_000_000] {
            let next = next_grid_point(t + late, phase);
            assert_eq!(next - t, p);
            t = next;
        }
    }
}
