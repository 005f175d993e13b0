//! How a zone's stream reaches this speaker: the socket it takes unicast on, and whether it
//! stays in the zone's multicast group (pure).
//!
//! A speaker that asks for unicast (`[speaker] delivery = "unicast"`) names its unicast port in
//! its heartbeats; once the stream comes that way it leaves the group (on Wi-Fi the access
//! point then stops sending the group's datagrams at its basic rate for it), and when unicast
//! stops for 100 ms (the controller's table lapsed, it restarted, the speaker moved) it joins
//! again and multicast takes over. Both paths feed the same jitter buffer, by sequence number:
//! while both come, the copies are counted as duplicates and nothing is lost in a change.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

/// Unicast counts as flowing while a datagram came within this long: the controller sends a
/// burst every 20 ms, so this is five bursts missed (the group is joined again well within
/// the default 150 ms of buffer, should unicast stop, or a replayer of the stream stop).
pub(crate) const FLOWING_NS: i64 = 100_000_000;

/// The socket a speaker takes its stream on by unicast: any address, a port of its own.
pub(crate) fn unicast_socket() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())?;
    s.set_recv_buffer_size(1 << 20)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A change of the group membership to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Join,
    Leave,
}

/// Whether the speaker is in its zone's group, and when unicast last came.
#[derive(Debug, Clone)]
pub(crate) struct Membership {
    wants_unicast: bool,
    joined: bool,
    last_unicast_ns: i64,
}

impl Membership {
    /// Joined, as the receiver opens.
    pub(crate) fn new(wants_unicast: bool) -> Self {
        Membership {
            wants_unicast,
            joined: true,
            last_unicast_ns: i64::MIN / 2,
        }
    }

    /// After a drain at `now_ns` that did (or did not) find unicast datagrams of the stream:
    /// the change to make, if any.
    pub(crate) fn on_drain(&mut self, now_ns: i64, unicast_came: bool) -> Option<Change> {
        if unicast_came {
            self.last_unicast_ns = now_ns;
        }
        let stay_out = self.wants_unicast && self.flowing(now_ns);
        match (stay_out, self.joined) {
            (true, true) => {
                self.joined = false;
                Some(Change::Leave)
            }
            (false, false) => {
                self.joined = true;
                Some(Change::Join)
            }
            _ => None,
        }
    }

    /// The stream came by unicast within `FLOWING_NS`.
    pub(crate) fn flowing(&self, now_ns: i64) -> bool {
        now_ns - self.last_unicast_ns < FLOWING_NS
    }
}

/// How much of the stream the group delivers in time (pure): of the datagrams of the last
/// second seen by any path (the group, unicast, a repair or parity), the share that came from
/// the group at least `LATE_NS` before they were due. A group that went silent while unicast
/// flows counts as losing everything.
#[derive(Debug, Clone)]
pub(crate) struct GroupLoss {
    /// By sequence number modulo the ring's length: the number, when it was first seen, and
    /// whether the group brought it in time.
    ring: Vec<(u32, i64, bool)>,
}

/// A datagram from the group that comes later than this before its time counts as lost: it
/// left the repairs no time.
pub(crate) const LATE_NS: i64 = 20_000_000;
/// The span measured.
pub(crate) const WINDOW_NS: i64 = 1_000_000_000;
const RING: usize = 1024;

impl Default for GroupLoss {
    fn default() -> Self {
        GroupLoss {
            ring: vec![(u32::MAX, i64::MIN / 2, false); RING],
        }
    }
}

impl GroupLoss {
    /// Datagram `seq` of the stream came at `now_ns`, from the group (with `lead_ns` to its
    /// time) or another way (None).
    pub(crate) fn note(&mut self, seq: u32, now_ns: i64, group_lead_ns: Option<i64>) {
        let in_time = group_lead_ns.is_some_and(|l| l >= LATE_NS);
        let e = &mut self.ring[seq as usize % RING];
        if e.0 != seq || now_ns - e.1 > WINDOW_NS {
            *e = (seq, now_ns, in_time);
        } else {
            e.2 |= in_time;
        }
    }

    /// The share (0..=1) of the last second's datagrams the group did not bring in time, and
    /// how many datagrams that is of; None before 20 were seen.
    pub(crate) fn loss(&self, now_ns: i64) -> Option<f64> {
        let (mut seen, mut group) = (0u32, 0u32);
        for &(_, at, in_time) in &self.ring {
            if now_ns - at <= WINDOW_NS {
                seen += 1;
                group += u32::from(in_time);
            }
        }
        (seen >= 20).then(|| 1.0 - f64::from(group) / f64::from(seen))
    }
}

/// `delivery = "auto"` (pure): unicast while the group loses more than `above` of the stream,
/// back to the group once it has lost at most `below` for `BACK_AFTER_NS`. The speaker stays in
/// the group throughout (to go on measuring it); both paths feed one jitter buffer.
#[derive(Debug, Clone)]
pub(crate) struct AutoDelivery {
    above: f64,
    below: f64,
    unicast: bool,
    /// When the group last lost more than `below`.
    last_bad_ns: i64,
}

/// The group must be good this long before a speaker on unicast goes back to it.
pub(crate) const BACK_AFTER_NS: i64 = 5_000_000_000;

impl AutoDelivery {
    /// Thresholds as shares (0..=1); `below` is at most `above`.
    pub(crate) fn new(above: f64, below: f64) -> Self {
        AutoDelivery {
            above,
            below: below.min(above),
            unicast: false,
            last_bad_ns: i64::MIN / 2,
        }
    }

    /// After a drain at `now_ns`, with the group's loss as measured: whether to ask for
    /// unicast now.
    pub(crate) fn decide(&mut self, now_ns: i64, loss: Option<f64>) -> bool {
        let Some(loss) = loss else {
            return self.unicast;
        };
        if loss > self.below {
            self.last_bad_ns = now_ns;
        }
        if !self.unicast && loss > self.above {
            self.unicast = true;
        } else if self.unicast && now_ns - self.last_bad_ns >= BACK_AFTER_NS {
            self.unicast = false;
        }
        self.unicast
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn a_unicast_speaker_leaves_the_group_while_unicast_flows_and_joins_when_it_stops() {
        let mut m = Membership::new(true);
        assert_eq!(m.on_drain(0, false), None, "joined until unicast comes");
        assert_eq!(m.on_drain(10 * MS, true), Some(Change::Leave));
        // Wake-ups without a datagram (between bursts) change nothing...
        for t in (20..900).step_by(10) {
            assert_eq!(m.on_drain(t * MS, t % 20 == 0), None);
        }
        // ... 100 ms without one joins again, and unicast coming back leaves again.
        assert_eq!(m.on_drain(970 * MS, false), None);
        assert_eq!(m.on_drain(880 * MS + FLOWING_NS, false), Some(Change::Join));
        assert_eq!(m.on_drain(1_000 * MS, false), None);
        assert_eq!(m.on_drain(1_010 * MS, true), Some(Change::Leave));
    }

    #[test]
    fn group_loss_counts_what_the_group_missed_or_brought_late() {
        let mut g = GroupLoss::default();
        // 150 datagrams a second; the group brings 4 of 5 in time, the 5th late or not at all
        // (unicast brings it).
        for k in 0..150u32 {
            let t = i64::from(k) * 6_700_000;
            match k % 5 {
                0 => g.note(k, t, Some(LATE_NS / 2)),
                1 => g.note(k, t, None),
                _ => g.note(k, t, Some(100 * MS)),
            }
            // The other path's copy of the same datagram changes nothing.
            g.note(k, t + MS, None);
        }
        let loss = g.loss(150 * 6_700_000).unwrap();
        assert!((loss - 0.4).abs() < 0.01, "{loss}");
        // A copy from the group in time after unicast brought it first counts as in time.
        g.note(149, 150 * 6_700_000, Some(100 * MS));
        assert!(g.loss(150 * 6_700_000).unwrap() < 0.4);
        // A second later, nothing is left to judge by.
        assert_eq!(g.loss(4_000 * MS), None);
    }

    #[test]
    fn auto_moves_to_unicast_on_loss_and_back_after_five_good_seconds() {
        let mut a = AutoDelivery::new(0.05, 0.01);
        assert!(!a.decide(0, None));
        assert!(
            !a.decide(100 * MS, Some(0.02)),
            "between the thresholds: stays"
        );
        assert!(a.decide(200 * MS, Some(0.2)));
        // Good again: back only after five seconds without loss above 1 %.
        assert!(a.decide(300 * MS, Some(0.0)));
        assert!(a.decide(2_000 * MS, Some(0.02)));
        assert!(a.decide(6_900 * MS, Some(0.0)));
        assert!(!a.decide(7_000 * MS, Some(0.0)));
        assert!(!a.decide(7_100 * MS, Some(0.03)));
    }

    #[test]
    fn a_multicast_speaker_stays_in_the_group_even_with_unicast() {
        // Its zone sends by unicast only: it takes the stream so, and stays a member (the
        // announcements come on the group).
        let mut m = Membership::new(false);
        for t in 0..100 {
            assert_eq!(m.on_drain(t * 10 * MS, true), None);
        }
        assert!(m.flowing(1_000 * MS));
        assert!(!m.flowing(1_100 * MS));
    }
}
