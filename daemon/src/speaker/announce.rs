//! Which controller announcements may move a speaker to another address (pure logic).
//!
//! A speaker takes its controller's address from the source of the announcement on the zone's
//! group. With a key the datagram cannot be forged, but it can be captured and sent again from
//! another host: a replayed announcement moved the speaker's clock sync to the attacker's box.
//! Each announcement carries the controller's clock at sending; one not later than the last
//! one taken is a replay and is refused. A restarted controller on the same box keeps its
//! clock (the monotonic clock of the box) and so its announcements stay later; one on another
//! box may start lower, and is taken once the last controller has been silent for
//! `SILENT_NS`. While the speaker knows the controller's clock, an announcement must also be
//! within `FRESH_NS` of it: without a key, one forged announcement dated far ahead would
//! otherwise have held the address until the real controller's clock caught up.

/// After this long without an announcement taken, any is taken (the controller moved).
const SILENT_NS: i64 = 5_000_000_000;
/// An announcement's clock further than this from the controller's clock as the speaker knows
/// it is refused (before `SILENT_NS`).
const FRESH_NS: i64 = 2_000_000_000;

/// The newest announcement taken: its controller clock, and when it came (local ns).
#[derive(Debug, Clone, Default)]
pub(crate) struct AnnounceGate {
    last: Option<(i64, i64)>,
}

impl AnnounceGate {
    /// Whether an announcement sent at `sent_ns` (controller clock), seen at `local_ns` when
    /// the controller's clock reads `now` (None: not known yet), may set the controller's
    /// address; if so it becomes the newest.
    pub(crate) fn admit(&mut self, sent_ns: i64, local_ns: i64, now: Option<i64>) -> bool {
        if let Some((sent, at)) = self.last {
            let silent = local_ns.saturating_sub(at) > SILENT_NS;
            let stale = now.is_some_and(|n| sent_ns.abs_diff(n) > FRESH_NS as u64);
            if (sent_ns <= sent || stale) && !silent {
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

    impl AnnounceGate {
        fn admit3(&mut self, sent_ns: i64, local_ns: i64) -> bool {
            self.admit(sent_ns, local_ns, None)
        }
    }

    #[test]
    fn replays_are_refused_newer_and_moved_controllers_taken() {
        let mut g = AnnounceGate::default();
        assert!(g.admit3(100 * S, 10 * S));
        assert!(g.admit3(100 * S + S / 2, 10 * S + S / 2));
        // The same beacon again (from the attacker's host), and an older one.
        assert!(!g.admit3(100 * S + S / 2, 10 * S + S / 2 + 1_000));
        assert!(!g.admit3(99 * S, 11 * S));
        // The controller goes on.
        assert!(g.admit3(101 * S, 11 * S));
        // A controller on another box, whose clock is lower: once the last one is silent.
        assert!(!g.admit3(3 * S, 14 * S));
        assert!(g.admit3(3 * S, 16 * S + 1));
        assert!(!g.admit3(3 * S, 16 * S + 2));
        assert!(g.admit3(3 * S + S / 2, 16 * S + S / 2));
        // Absurd values do not overflow.
        assert!(!g.admit3(i64::MIN, i64::MIN));
        assert!(g.admit3(i64::MAX, i64::MAX));
    }

    #[test]
    fn a_forged_announcement_dated_ahead_is_refused_while_the_clock_is_known() {
        let mut g = AnnounceGate::default();
        assert!(g.admit(100 * S, 10 * S, Some(100 * S)));
        // Keyless forgery, dated far ahead (or behind): refused, and the real one goes on.
        assert!(!g.admit(i64::MAX, 10 * S + 1, Some(100 * S)));
        assert!(!g.admit(90 * S, 10 * S + 2, Some(100 * S)));
        assert!(g.admit(100 * S + S / 2, 10 * S + S / 2, Some(100 * S + S / 2)));
        // A controller on another box (another clock) is taken once the last one is silent.
        assert!(!g.admit(7 * S, 12 * S, Some(102 * S)));
        assert!(g.admit(7 * S, 16 * S, Some(106 * S)));
    }
}
