//! Where each zone's datagrams go besides its multicast group (pure: the sync service fills
//! it from heartbeats, each zone's streamer reads it).
//!
//! A speaker gets its zone's stream by unicast when it asks (its heartbeat's `delivery`) or
//! its zone sends only so, at the port its heartbeat names, on the heartbeat's source address,
//! and only while that address proves it receives the sync service's answers (as for
//! repairs): a heartbeat forged with a victim's address as its source would otherwise turn
//! the controller into a 1.5 Mbit/s hose aimed at the victim. An entry lasts a few heartbeats
//! after the last one; the table is bounded.

use std::net::SocketAddr;

/// Speakers served by unicast at most (all zones); more wait for a free place.
pub(crate) const MAX_TARGETS: usize = 64;
/// An entry lasts this long after the heartbeat that asked (heartbeats come every second).
pub(crate) const TARGET_TTL_NS: i64 = 3_000_000_000;

/// One speaker taking a zone's stream by unicast.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The zone's stream, `group:port` (as heartbeats name it).
    stream: String,
    /// Where the speaker's heartbeats come from (who it is), and where its stream goes.
    source: SocketAddr,
    addr: SocketAddr,
    until_ns: i64,
}

/// The speakers served by unicast, by stream.
#[derive(Debug, Default)]
pub(crate) struct UnicastTargets {
    targets: Vec<Target>,
}

impl UnicastTargets {
    /// The speaker whose heartbeats come from `source` takes `stream` by unicast at `addr`
    /// (a heartbeat at `now_ns` asked for it); false when the table is full of live entries.
    pub(crate) fn want(
        &mut self,
        stream: &str,
        (source, addr): (SocketAddr, SocketAddr),
        now_ns: i64,
    ) -> bool {
        let target = Target {
            stream: stream.to_string(),
            source,
            addr,
            until_ns: now_ns + TARGET_TTL_NS,
        };
        // One entry per speaker: one that moved to another zone replaces its entry (one that
        // restarted has another source port: its old entry expires).
        if let Some(t) = self.targets.iter_mut().find(|t| t.source == source) {
            *t = target;
            return true;
        }
        self.targets.retain(|t| t.until_ns > now_ns);
        if self.targets.len() >= MAX_TARGETS {
            return false;
        }
        self.targets.push(target);
        true
    }

    /// The speaker whose heartbeats come from `source` wants no unicast (any more).
    pub(crate) fn forget(&mut self, source: SocketAddr) {
        self.targets.retain(|t| t.source != source);
    }

    /// The live targets of `stream` at `now_ns`, into `out` (cleared first).
    pub(crate) fn of(&self, stream: &str, now_ns: i64, out: &mut Vec<SocketAddr>) {
        out.clear();
        out.extend(
            self.targets
                .iter()
                .filter(|t| t.stream == stream && t.until_ns > now_ns)
                .map(|t| t.addr),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], port))
    }

    /// Speaker `k`: heartbeats from port 7000 + k, stream to port 40 000 + k, both on
    /// 10.0.0.2 (speakers sharing a host, as in tests, are told apart).
    fn speaker(k: u16) -> (SocketAddr, SocketAddr) {
        (at(2, 7000 + k), at(2, 40_000 + k))
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn entries_follow_heartbeats_and_expire() {
        let mut t = UnicastTargets::default();
        let mut out = vec![];
        assert!(t.want("239.1.1.1:7700", speaker(1), 0));
        assert!(t.want("239.1.1.1:7700", speaker(2), 0));
        assert!(t.want("239.1.1.2:7700", speaker(3), 0));
        t.of("239.1.1.1:7700", S, &mut out);
        assert_eq!(out, vec![speaker(1).1, speaker(2).1]);
        // Refreshed by the next heartbeat; the others expire.
        assert!(t.want("239.1.1.1:7700", speaker(1), 2 * S));
        t.of("239.1.1.2:7700", 4 * S, &mut out);
        assert!(out.is_empty());
        t.of("239.1.1.1:7700", 4 * S, &mut out);
        assert_eq!(out, vec![speaker(1).1]);

        // Moved to the other zone, then back to multicast.
        assert!(t.want("239.1.1.2:7700", speaker(1), 5 * S));
        t.of("239.1.1.1:7700", 5 * S, &mut out);
        assert!(out.is_empty());
        t.forget(speaker(1).0);
        t.of("239.1.1.2:7700", 5 * S, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = UnicastTargets::default();
        for i in 0..MAX_TARGETS as u16 {
            assert!(t.want("g:1", speaker(i), 0));
        }
        assert!(!t.want("g:1", speaker(500), S), "full of live entries");
        // A known speaker is refreshed even so.
        assert!(t.want("g:1", speaker(5), S));
        let mut out = vec![];
        t.of("g:1", S, &mut out);
        assert_eq!(out.len(), MAX_TARGETS);
        // Once they expire, room again.
        assert!(t.want("g:1", speaker(500), 10 * S));
    }
}
