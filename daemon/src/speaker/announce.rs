//! Which controller announcements may move a speaker to another address (pure logic).
//!
//! A speaker takes its controller's address from the source of the announcement on the zone's
//! group. With a key the datagram cannot be forged, but it can be captured and sent again from
//! another host: a replayed announcement moved the speaker's clock sync to the attacker's box.
//! Each announcement carries the controller's clock at sending; one not later than the last
//! one taken is a replay and is refused. A restarted controller on the same box keeps its
//! clock (the monotonic clock of the box) and so its announcements stay later; one on another
//! box may start lower, and is taken once the last controller has been silent for
//! `SILENT_NS`.

/// After this long without an announcement taken, any is taken (the controller moved).
const SILENT_NS: i64 = 5_000_000_000;

/// The newest announcement taken: its controller clock, and when it came (local ns).
#[derive(Debug, Clone, Default)]
pub struct AnnounceGate {
    last: Option<(i64, i64)>,
}

impl AnnounceGate {
    /// Whether an announcement sent at `sent_ns` (controller clock), seen at `local_ns`, may
    /// set the controller's address; if so it becomes the newest.
    pub fn admit(&mut self, sent_ns: i64, local_ns: i64) -> bool {
        if let Some((sent, at)) = self.last {
            let silent = local_ns.saturating_sub(at) > SILENT_NS;
            if sent_ns <= sent && !silent {
                return false;
            }
        }
        self.last = Some((sent_ns, local_ns));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn replays_are_refused_newer_and_moved_controllers_taken() {
        let mut g = AnnounceGate::default();
        assert!(g.admit(100 * S, 10 * S));
        assert!(g.admit(100 * S + S / 2, 10 * S + S / 2));
        // The same beacon again (from the attacker's host), and an older one.
        assert!(!g.admit(100 * S + S / 2, 10 * S + S / 2 + 1_000));
        assert!(!g.admit(99 * S, 11 * S));
        // The controller goes on.
        assert!(g.admit(101 * S, 11 * S));
        // A controller on another box, whose clock is lower: once the last one is silent.
        assert!(!g.admit(3 * S, 14 * S));
        assert!(g.admit(3 * S, 16 * S + 1));
        assert!(!g.admit(3 * S, 16 * S + 2));
        assert!(g.admit(3 * S + S / 2, 16 * S + S / 2));
        // Absurd values do not overflow.
        assert!(!g.admit(i64::MIN, i64::MIN));
        assert!(g.admit(i64::MAX, i64::MAX));
    }
}
