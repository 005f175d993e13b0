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
