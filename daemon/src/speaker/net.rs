//! The speaker's stream receiver: the zone's multicast datagrams (authenticated, checked,
//! filed in the jitter buffer), parity, repairs, and the controller's announcements. The
//! clock-sync client and the heartbeat are `crate::sync::client` (its host: `super::sync_host`).

use super::admission::{Admission, Admitted, Refused};
use super::delivery::{AutoDelivery, Change, GroupLoss, Membership};
use super::jitter::{Chunk, Insert, JitterBuffer};
use super::loss::{
    track, FecRing, Missing, MAX_MISSING, REPAIR_GIVE_UP_NS, REPAIR_RETRY_NS, REPAIR_TRIES,
};
use super::Shared;
use crate::clock::ControllerNs;
use crate::config::SpeakerDelivery;
use crate::net::multicast_receiver;
use crate::wire::auth::Auth;
use crate::wire::flac::FlacDecoder;
use crate::wire::packet::{parse, Packet};
use crate::wire::repair::RepairRequest;
use crate::wire::Codec;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;

/// The zone's stream format, as this speaker expects it.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub rate: u32,
    pub channels: u8,
}

/// Datagrams read per `recvmmsg` call.
pub(super) const BATCH: usize = 16;
/// Room per datagram: more than `MAX_DATAGRAM`, so a longer one shows up as truncated.
pub const SLOT: usize = 2048;

/// The zone's multicast stream, read by the playout thread itself between two writes to the
/// device: one non-blocking `recvmmsg` takes every datagram that arrived since (a few per
/// period), so receiving costs no thread wake-ups of its own and no hand-over between threads.
/// Datagrams are read into buffers the jitter buffer recycles, and an audio datagram's buffer
/// goes into it as it is: its frames are decoded only when they are played, with no copy on
/// the way.
pub struct StreamReceiver {
    socket: std::net::UdpSocket,
    /// The controller address is configured: announcements do not move it.
    fixed_controller: bool,
    /// Replayed announcements do not move it either.
    announced: super::announce::AnnounceGate,
    /// Buffers a batch is read into (`SLOT` bytes each), and one more where a datagram rebuilt
    /// from parity is parsed. The buffer of an audio datagram leaves with it for the jitter
    /// buffer, which hands a spare one back.
    slots: Vec<Vec<u8>>,
    auth: Auth,
    /// The session playing, and which of its datagrams are taken.
    admission: Admission,
    /// Unicast socket repair requests leave from and repaired datagrams arrive on.
    repair_socket: std::net::UdpSocket,
    /// The stream by unicast (see `super::delivery`): its socket, the group it may leave, and
    /// whether it is in it.
    unicast: std::net::UdpSocket,
    unicast_port: u16,
    group: (Ipv4Addr, Ipv4Addr),
    membership: Membership,
    /// `delivery = "auto"`: the policy, and what it judges by.
    auto: Option<AutoDelivery>,
    group_loss: GroupLoss,
    /// The last datagram admission looked at, if it was the stream's (taken, or seen before):
    /// its number and time.
    admitted: Option<(u32, ControllerNs)>,
    /// Local time of the last drain that found stream datagrams.
    last_datagrams_ns: i64,
    /// How long before their presentation time datagrams arrive (the largest lately).
    lead: super::lead::RecentMax,
    /// Sequence number expected next, and the ones found missing (capacity reserved).
    next_seq: Option<u32>,
    missing: Vec<Missing>,
    /// Reused buffer for repair requests.
    request: Vec<u8>,
    /// Datagrams kept for forward error correction.
    fec: FecRing,
    /// FLAC datagrams are decoded as they are taken, into `decoded` (its PCM, then copied
    /// into a spare buffer of the jitter buffer): nothing allocated per datagram.
    flac: FlacDecoder,
    decoded: Vec<u8>,
}

impl StreamReceiver {
    /// Joins `group` on `interface` and listens on `port` (and on a port of its own for the
    /// stream by unicast).
    pub fn open(
        group: Ipv4Addr,
        port: u16,
        interface: Ipv4Addr,
        expect: Expect,
        fixed_controller: bool,
    ) -> std::io::Result<StreamReceiver> {
        let unicast = super::delivery::unicast_socket()?;
        let unicast_port = unicast.local_addr()?.port();
        Ok(StreamReceiver {
            socket: multicast_receiver(group, port, interface)?,
            last_datagrams_ns: i64::MIN / 2,
            lead: Default::default(),
            fixed_controller,
            announced: Default::default(),
            slots: (0..=BATCH).map(|_| vec![0u8; SLOT]).collect(),
            auth: Auth::none(),
            admission: Admission::new(expect),
            repair_socket: {
                let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                s.set_nonblocking(true)?;
                s
            },
            unicast,
            unicast_port,
            group: (group, interface),
            membership: Membership::new(false),
            auto: None,
            group_loss: GroupLoss::default(),
            admitted: None,
            next_seq: None,
            missing: Vec::with_capacity(MAX_MISSING),
            request: Vec::with_capacity(
                16 + 4 * crate::wire::repair::MAX_SEQS + crate::wire::auth::TAG_LEN,
            ),
            fec: FecRing::new(),
            flac: FlacDecoder::default(),
            decoded: vec![0; crate::wire::flac::MAX_PCM_BYTES],
        })
    }

    /// Datagrams must carry a valid tag for this key.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// How the speaker asks for its stream: by unicast, it leaves the group while that flows;
    /// `auto`, it measures the group and asks for unicast past the thresholds (shares).
    pub fn with_delivery(mut self, delivery: SpeakerDelivery, (above, below): (f64, f64)) -> Self {
        self.membership = Membership::new(delivery == SpeakerDelivery::Unicast);
        self.auto = (delivery == SpeakerDelivery::Auto).then(|| AutoDelivery::new(above, below));
        self
    }

    /// The port the stream may come to by unicast.
    pub fn unicast_port(&self) -> u16 {
        self.unicast_port
    }

    /// Reads every datagram waiting and files the audio in `jb` (without one, as while the
    /// output is missing, audio is discarded and only announcements count). Returns true when a
    /// new stream session began. Never blocks; allocates nothing once the jitter buffer has
    /// spare buffers.
    pub fn drain(
        &mut self,
        shared: &Shared,
        local_ns: i64,
        now: Option<ControllerNs>,
        mut jb: Option<&mut JitterBuffer>,
    ) -> bool {
        use std::os::fd::AsRawFd;
        let mut new_session = false;
        // The stream (from the group, then by unicast), then (while repairs are outstanding)
        // what the controller sent again.
        let repairing = !self.missing.is_empty();
        let fds = [
            self.socket.as_raw_fd(),
            self.unicast.as_raw_fd(),
            self.repair_socket.as_raw_fd(),
        ];
        let (mut unicast_came, mut group_came) = (false, false);
        for (k, fd) in fds[..if repairing { 3 } else { 2 }].iter().enumerate() {
            loop {
                let mut lens = [0usize; BATCH];
                let mut from = [None; BATCH];
                let stats = &shared.stats.net;
                let n =
                    super::recv::recv_batch(*fd, &mut self.slots, (&mut lens, &mut from), stats);
                if n > 0 && k < 2 {
                    self.last_datagrams_ns = local_ns;
                }
                for (i, &len) in lens.iter().enumerate().take(n) {
                    self.admitted = None;
                    let chunk = self.accept(
                        (i, len),
                        from[i],
                        shared,
                        (local_ns, now),
                        jb.as_deref_mut(),
                        (k == 2).then_some(Origin::Repair),
                    );
                    // The stream comes by unicast: a datagram of it taken, or one that came
                    // from the group first (authentic, if there is a key).
                    unicast_came |= k == 1 && self.admitted.is_some();
                    group_came |= k == 0 && chunk.is_some();
                    if let (Some((seq, pts)), Some(_)) = (self.admitted, &self.auto) {
                        // From the group: in time? (Before the clock is known: yes.)
                        let lead = (k == 0).then(|| now.map_or(i64::MAX, |n| pts.since(n)));
                        self.group_loss.note(seq, local_ns, lead);
                    }
                    if let Some(chunk) = chunk {
                        if k == 1 {
                            stats.unicast_packets.fetch_add(1, Ordering::Relaxed);
                        }
                        new_session |= file(chunk, shared, jb.as_deref_mut());
                    }
                }
                if n < BATCH {
                    break;
                }
            }
        }
        self.follow_delivery(shared, local_ns, (unicast_came, group_came));
        if let Some(auto) = &mut self.auto {
            let wants = auto.decide(local_ns, self.group_loss.loss(local_ns));
            if shared.wants_unicast.swap(wants, Ordering::Relaxed) != wants {
                shared.heartbeat_now.store(true, Ordering::Relaxed);
                log::info!(
                    "asking for the stream by {}",
                    if wants { "unicast" } else { "multicast" }
                );
            }
        }
        if jb.is_some() {
            self.request_repairs(shared, local_ns);
        }
        new_session
    }

    /// Leaves or joins the group as unicast flows or stops (see `super::delivery`), and
    /// publishes how the stream came last (new datagrams by unicast, or from the group) and
    /// where unicast is taken.
    fn follow_delivery(&mut self, shared: &Shared, local_ns: i64, came: (bool, bool)) {
        let (unicast_came, group_came) = came;
        let sock = socket2::SockRef::from(&self.socket);
        let (group, iface) = self.group;
        let done = match self.membership.on_drain(local_ns, unicast_came) {
            Some(Change::Leave) => sock.leave_multicast_v4(&group, &iface),
            Some(Change::Join) => sock.join_multicast_v4(&group, &iface),
            None => Ok(()),
        };
        if let Err(e) = done {
            log::warn!("group {group}: membership change failed: {e}");
        }
        if unicast_came || group_came {
            shared.by_unicast.store(unicast_came, Ordering::Relaxed);
        }
        shared
            .unicast_port
            .store(self.unicast_port, Ordering::Relaxed);
    }

    /// True while datagrams are missing and being asked for (the playout thread then wakes
    /// often enough to pick the repairs up in time).
    pub fn repairing(&self) -> bool {
        !self.missing.is_empty()
    }

    /// True while the stream is coming in (see `lead::still_coming`).
    pub fn flowing(&self, local_ns: i64) -> bool {
        super::lead::still_coming(local_ns - self.last_datagrams_ns, self.lead_ns(local_ns))
    }

    /// How long before its presentation time the stream's audio is here, at the most: the
    /// largest of the last one to two seconds, found when datagrams are read (not counting
    /// those sent again or rebuilt). The controller sends each datagram between the zone's
    /// latency and a 20 ms burst ahead of its time, and a wake-up soon after a burst finds
    /// it almost that much ahead. None while no audio comes (or before the clock is locked).
    pub fn lead_ns(&self, local_ns: i64) -> Option<i64> {
        self.lead.get(local_ns)
    }

    /// Asks the controller for missing datagrams (new ones at once, then again every 15 ms, a
    /// few times), and gives up on those that could no longer play.
    fn request_repairs(&mut self, shared: &Shared, local_ns: i64) {
        if self.missing.is_empty() {
            return;
        }
        let stats = &shared.stats.net;
        let before = self.missing.len();
        self.missing
            .retain(|m| local_ns - m.found < REPAIR_GIVE_UP_NS);
        stats
            .repairs_abandoned
            .fetch_add((before - self.missing.len()) as u64, Ordering::Relaxed);
        let (Some(session), Some(ctl)) = (
            self.admission.session(),
            shared.controller.try_lock().ok().and_then(|c| *c),
        ) else {
            return;
        };
        let mut q = RepairRequest::new(session);
        for m in self.missing.iter_mut() {
            if local_ns - m.asked >= REPAIR_RETRY_NS && m.tries < REPAIR_TRIES {
                if !q.push(m.seq) {
                    break;
                }
                m.asked = local_ns;
                m.tries += 1;
            }
        }
        if q.is_empty() {
            return;
        }
        stats
            .repairs_requested
            .fetch_add(q.seqs().len() as u64, Ordering::Relaxed);
        q.encode_into(&mut self.request);
        self.auth.seal(&mut self.request);
        let _ = self.repair_socket.send_to(&self.request, ctl);
    }

    /// Checks and parses one datagram (in slot `slot`, `len` bytes): an announcement updates
    /// the controller address; audio of the expected format, of the session playing (or of a
    /// fresh new one) and not seen before is returned, in its buffer; a parity
    /// that rebuilds a lost datagram returns that one (`again`: `Rebuilt` with its sequence
    /// number when called again for it; `Repair`: sent again on request).
    fn accept(
        &mut self,
        (slot, len): (usize, usize),
        from: Option<SocketAddr>,
        shared: &Shared,
        (local_ns, now): (i64, Option<ControllerNs>),
        jb: Option<&mut JitterBuffer>,
        again: Option<Origin>,
    ) -> Option<Chunk> {
        let rebuilt = match again {
            Some(Origin::Rebuilt(seq)) => Some(seq),
            _ => None,
        };
        let stats = &shared.stats.net;
        let from = from?;
        let d = match self.auth.open(&self.slots[slot][..len]) {
            Ok(d) => d,
            Err(_) => {
                stats.unauthenticated.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let pkt = match parse(d) {
            Ok(Packet::Audio(p)) if rebuilt.is_none_or(|seq| p.header.seq == seq) => p,
            Ok(Packet::Parity(p)) if rebuilt.is_none() => {
                if self.admission.session() != Some(p.session) {
                    stats.foreign_session.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                let seq = self.fec.take(&p, &mut self.missing, stats)?;
                let n = self.fec.out.len();
                self.slots[BATCH][..n].copy_from_slice(&self.fec.out);
                return self.accept(
                    (BATCH, n),
                    Some(from),
                    shared,
                    (local_ns, now),
                    jb,
                    Some(Origin::Rebuilt(seq)),
                );
            }
            Ok(Packet::Announce(a)) if rebuilt.is_none() => {
                self.on_announce(a, from, shared, (local_ns, now));
                return None;
            }
            Ok(_) | Err(_) => {
                stats.invalid.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let h = pkt.header;
        // Where the frames start in the buffer (the payload is a part of it).
        let offset = pkt.payload.as_ptr() as usize - self.slots[slot].as_ptr() as usize;
        let payload = offset..offset + pkt.payload.len();
        if !self.admit(&h, now, stats) {
            return None;
        }
        let flac_len = match h.codec {
            Codec::Pcm => None,
            Codec::Flac => Some(self.decode_flac(&h, slot, payload, stats)?),
        };
        let datagram_ns = i64::from(h.frames) * 1_000_000_000 / i64::from(h.rate);
        stats.packets.fetch_add(1, Ordering::Relaxed);
        if rebuilt.is_some() {
            stats.fec_recovered.fetch_add(1, Ordering::Relaxed);
        }
        self.fec.store(h.seq, &self.slots[slot][..len]);
        if let (Some(now), None) = (now, again) {
            self.lead.note(local_ns, h.pts.since(now));
        }
        track(
            &mut self.next_seq,
            &mut self.missing,
            (h.seq, rebuilt.is_some()),
            local_ns,
            |seq| self.fec.hold_ns(seq, h.seq, datagram_ns),
            stats,
        );
        let jb = jb?;
        let (data, offset) = match flac_len {
            None => (
                std::mem::replace(&mut self.slots[slot], jb.take_spare(SLOT)),
                offset,
            ),
            Some(n) => {
                let mut d = jb.take_spare(SLOT);
                d[..n].copy_from_slice(&self.decoded[..n]);
                (d, 0)
            }
        };
        Some(Chunk {
            session: h.session,
            frame_index: h.frame_index,
            pts: h.pts,
            frames: u32::from(h.frames),
            format: h.format,
            data,
            offset,
        })
    }

    /// Decodes the FLAC frame of the datagram in `slot` (`payload` bytes of it) into
    /// `decoded`; its length, or None (counted as invalid) when the frame is not what the
    /// header says.
    fn decode_flac(
        &mut self,
        h: &crate::wire::AudioHeader,
        slot: usize,
        payload: std::ops::Range<usize>,
        stats: &super::NetworkCounters,
    ) -> Option<usize> {
        let expect = crate::wire::flac::Expect {
            rate: h.rate,
            channels: h.channels,
            format: h.format,
            frames: usize::from(h.frames),
        };
        match self
            .flac
            .decode(&self.slots[slot][payload], expect, &mut self.decoded)
        {
            Ok(n) => Some(n),
            Err(e) => {
                log::debug!("datagram {}: {e}", h.seq);
                stats.invalid.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// An announcement of the stream playing (or of any while none plays), newer than the
    /// last one and not far from the controller's clock, gives the controller's address.
    fn on_announce(
        &mut self,
        a: crate::wire::Announce,
        from: SocketAddr,
        shared: &Shared,
        (local_ns, now): (i64, Option<ControllerNs>),
    ) {
        let stats = &shared.stats.net;
        // Only the controller of the stream playing moves the address (a replayed
        // announcement of another session must not steal the speaker).
        if self.admission.session().is_some_and(|s| s != a.session) {
            stats.foreign_session.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // A replayed announcement (from another host, or later) is a duplicate.
        if !self.announced.admit(a.sent_ns, local_ns, now.map(|n| n.0)) {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !self.fixed_controller {
            let ctl = SocketAddr::new(from.ip(), a.sync_port);
            // Never wait on the real-time thread: a busy lock is tried again at the
            // next announcement (twice a second).
            if let Ok(mut c) = shared.controller.try_lock() {
                if *c != Some(ctl) {
                    log::info!("controller found at {ctl}");
                    *c = Some(ctl);
                }
            }
        }
    }

    /// Whether audio with header `h` is taken (see `super::admission`); what is not is
    /// counted. A new session forgets what the old one was missing.
    fn admit(
        &mut self,
        h: &crate::wire::AudioHeader,
        now: Option<ControllerNs>,
        stats: &super::NetworkCounters,
    ) -> bool {
        let verdict = self.admission.admit(h, now);
        if verdict.is_ok() {
            self.admitted = Some((h.seq, h.pts));
        }
        let counter = match verdict {
            Ok(Admitted::Same) => return true,
            Ok(Admitted::NewSession) => {
                // A session's sequence numbers and frames start at 0. If this is one of its
                // first datagrams (its first quarter second), the ones before it were lost and
                // nothing else would show it: they are missing too, and asked for like any
                // other.
                let early = (h.seq as usize) < MAX_MISSING && h.frame_index < u64::from(h.rate) / 4;
                self.next_seq = early.then_some(0);
                self.missing.clear();
                self.fec.reset();
                return true;
            }
            Ok(Admitted::WindowRestarted) => {
                stats.too_old.fetch_add(1, Ordering::Relaxed);
                log::warn!("stream window started again at datagram {}", h.seq);
                return true;
            }
            Err(Refused::ForeignFormat) => &stats.foreign_format,
            Err(Refused::ForeignSession) => &stats.foreign_session,
            Err(Refused::Implausible) => &stats.implausible,
            Err(Refused::Duplicate) => {
                self.admitted = Some((h.seq, h.pts));
                &stats.duplicates
            }
            Err(Refused::TooOld) => &stats.too_old,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// Where a datagram that is not the stream's own first copy came from.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// Rebuilt from parity: its sequence number.
    Rebuilt(u32),
    /// Sent again on request.
    Repair,
}

/// Files a chunk in the jitter buffer and counts what happened; true for a new session.
fn file(chunk: Chunk, shared: &Shared, jb: Option<&mut JitterBuffer>) -> bool {
    let Some(jb) = jb else {
        return false;
    };
    let stats = &shared.stats.net;
    match jb.insert(chunk) {
        Insert::NewSession => {
            stats.sessions.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        Insert::Duplicate => {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        Insert::Full => {
            stats.queue_overflow.fetch_add(1, Ordering::Relaxed);
        }
        Insert::Inserted | Insert::Stale => {}
    }
    false
}
