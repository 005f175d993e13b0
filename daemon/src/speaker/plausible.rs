//! Plausibility before trust (pure logic): a datagram of the stream playing is believed only
//! if its presentation time is near now and its sequence number does not run ahead of it.
//!
//! The replay window takes any sequence number ahead of the highest seen as new. Without this
//! check one forged datagram with the session playing and a number 2^31 ahead moved the
//! window there, and every true datagram after it was "too old": the zone went silent until
//! the controller restarted. Sequence numbers advance one per datagram and presentation times
//! one datagram's length per datagram, or more (a pause): a datagram whose number is further
//! ahead than its time allows is forged. One that passes can still move the window a few
//! seconds ahead (its time may lie up to `AHEAD_NS` in the future); then true datagrams arrive
//! "too old" in a row, and after `RESYNC_AFTER` of them the window starts again on them.

use crate::clock::ControllerNs;

/// Presentation times further ahead of now than this are refused: the longest latency (5 s)
/// and a second.
const AHEAD_NS: i64 = 6_000_000_000;
/// Presentation times further behind now than this are refused (long past playing).
const BEHIND_NS: i64 = 2_000_000_000;
/// A sequence number may run ahead of its presentation time by this much (ns), and 2 %.
const SLACK_NS: i64 = 100_000_000;
/// Plausible datagrams older than the window in a row after which the window starts again.
const RESYNC_AFTER: u32 = 16;

/// The highest sequence number believed, with its presentation time.
#[derive(Debug, Default, Clone)]
pub(crate) struct Plausibility {
    top: Option<(u32, ControllerNs)>,
    too_old_run: u32,
}

impl Plausibility {
    /// Whether a datagram numbered `seq`, due at `pts`, `datagram_ns` long, is believable at
    /// controller time `now` (None: no clock model yet, times are not checked).
    pub(crate) fn believe(
        &self,
        seq: u32,
        pts: ControllerNs,
        datagram_ns: i64,
        now: Option<ControllerNs>,
    ) -> bool {
        if let Some(now) = now {
            let d = pts.since(now);
            if !(-BEHIND_NS..=AHEAD_NS).contains(&d) {
                return false;
            }
        }
        let Some((top, top_pts)) = self.top else {
            return true;
        };
        let ahead = seq.wrapping_sub(top);
        if ahead == 0 || ahead >= u32::MAX / 2 {
            // Behind the highest (the replay window judges it) or the highest itself.
            return true;
        }
        let run = i64::from(ahead).saturating_mul(datagram_ns.max(0));
        let earliest = top_pts.plus(run).plus(-(SLACK_NS + run / 50));
        pts.since(earliest) >= 0
    }

    /// A datagram was believed and was new: `seq`, due at `pts`.
    pub(crate) fn accepted(&mut self, seq: u32, pts: ControllerNs) {
        self.too_old_run = 0;
        let higher = self
            .top
            .is_none_or(|(top, _)| seq.wrapping_sub(top).wrapping_sub(1) < u32::MAX / 2);
        if higher {
            self.top = Some((seq, pts));
        }
    }

    /// A believable datagram was older than the replay window. True when enough came in a row
    /// that the window (and this) must start again: its top was forged.
    pub(crate) fn too_old(&mut self) -> bool {
        self.too_old_run += 1;
        if self.too_old_run < RESYNC_AFTER {
            return false;
        }
        self.reset();
        true
    }

    /// Forgets the stream (a new session).
    pub(crate) fn reset(&mut self) {
        *self = Plausibility::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DG: i64 = 2_666_667;

    fn stream() -> (Plausibility, ControllerNs) {
        let mut p = Plausibility::default();
        let t0 = ControllerNs(50_000_000_000);
        for k in 0..100u32 {
            let pts = t0.plus(i64::from(k) * DG);
            assert!(p.believe(k, pts, DG, Some(t0)));
            p.accepted(k, pts);
        }
        (p, t0)
    }

    #[test]
    fn a_number_far_ahead_of_its_time_is_refused() {
        let (p, t0) = stream();
        let now = Some(t0.plus(100 * DG));
        // The attack: the session playing, a time due now, a number 2^31 (or 1000) ahead.
        // (2^31 - 1 ahead and beyond count as behind, for the replay window as here.)
        assert!(!p.believe(99 + (1 << 31) - 2, t0.plus(100 * DG), DG, now));
        assert!(!p.believe(1_100, t0.plus(100 * DG), DG, now));
        // Times far from now, either way, and pts = i64::MIN.
        assert!(!p.believe(100, t0.plus(7_000_000_000), DG, now));
        assert!(!p.believe(100, ControllerNs(i64::MIN), DG, now));
        assert!(!p.believe(100, ControllerNs(i64::MAX), DG, now));
        // The next datagram, one after a loss of 20, and one after a pause of 3 s.
        assert!(p.believe(100, t0.plus(100 * DG), DG, now));
        assert!(p.believe(120, t0.plus(120 * DG), DG, now));
        assert!(p.believe(101, t0.plus(101 * DG + 3_000_000_000), DG, now));
        // Behind the highest: for the replay window to judge.
        assert!(p.believe(50, t0.plus(50 * DG), DG, now));
    }

    #[test]
    fn a_run_of_too_old_datagrams_starts_the_window_again() {
        let (mut p, _) = stream();
        for _ in 1..RESYNC_AFTER {
            assert!(!p.too_old());
        }
        assert!(p.too_old());
        assert!(p.top.is_none());
        // A believed datagram breaks the run.
        let (mut p, t0) = stream();
        for _ in 1..RESYNC_AFTER {
            p.too_old();
        }
        p.accepted(100, t0.plus(100 * DG));
        assert!(!p.too_old());
    }
}
