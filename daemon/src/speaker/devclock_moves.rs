//! The device clock's moved timelines (see `super`): edges that come late tell a timeline
//! that moved (a sound server's late cycle), and a restarted model is relearnt before the
//! stream is measured against it again.

use super::*;

impl DeviceClock {
    /// The model starts again at `r` on a running device: the rate is kept (see
    /// `kept_sigma`), and the timeline waits for it to be relearnt.
    pub(super) fn restart(&mut self, r: Reading) {
        self.restarts += 1;
        if self.fitted {
            self.kept_sigma = Some(
                self.kept_sigma
                    .map_or(self.rate_sigma, |s| s.min(self.rate_sigma)),
            );
        }
        self.storm = self
            .relearn_since
            .is_some_and(|s| r.before.since(s) < STORM_NS);
        self.relearn_since = Some(r.before);
        self.relearn_edges = 0;
        self.start(r);
    }

    /// Whether the device's timeline moved later (`LATE_EDGE_NS`), told by a reading that shows
    /// `dp` frames more than the one before, at `t_hi` at the latest. The next edge after the
    /// model's position came after the reading before this one (which still showed it); if
    /// that is well past the model's latest time for it, the edge is late. An edge seen within
    /// the margin is on time; one seen only a wake-up later says nothing more.
    pub(super) fn moved(&mut self, dp: i64, t_hi: f64) -> bool {
        // A fresh model's bracket is a step wide; one restarted on a running device is read
        // from its first edge (it may have been pinned while the device stood still).
        let young = self.bounds.len() < 8 && self.relearn_since.is_none();
        if self.increments.len() < 2 || young || !self.rate_known() {
            return false;
        }
        let latest = self.hi + (self.rate + self.rate_sigma) * self.step as f64;
        if self.late_edges > 0 && t_hi - self.late_since > LATE_WINDOW_NS {
            self.late_edges = 0;
        }
        if self.last_lo - latest > LATE_EDGE_NS {
            if self.late_edges == 0 {
                self.late_since = t_hi;
            }
            self.late_edges += 1;
            self.relearn_edges = 0;
        } else if dp == self.step && t_hi - latest < LATE_EDGE_NS {
            self.late_edges = 0;
            self.relearn_edges = self.relearn_edges.saturating_add(1);
        }
        self.late_edges >= LATE_EDGES
    }

    /// How long to watch for the edge after a probe: a step more after a late edge, so that
    /// the next one is seen wherever it came (ns).
    pub(crate) fn watch_ns(&self) -> i64 {
        if self.late_edges > 0 && !self.in_storm() {
            EDGE_WATCH_NS + self.step_ns() as i64
        } else {
            EDGE_WATCH_NS
        }
    }

    /// Whether the next probe is the next edge: after a late edge or while relearning, unless
    /// the restarts come in a storm.
    pub(super) fn urgent(&self) -> bool {
        (self.late_edges > 0 || self.relearning()) && !self.in_storm()
    }

    /// The last restart came in a storm, and less than `STORM_NS` ago.
    fn in_storm(&self) -> bool {
        self.storm
            && self
                .relearn_since
                .is_some_and(|s| self.newest.since(s) < STORM_NS)
    }

    /// Whether the model started again on a running device and its bracket has not narrowed
    /// yet or it has seen fewer than `RELEARN_EDGES` edges since (for at most
    /// `RELEARN_MOST_NS`): its estimate may still be a step off.
    pub(crate) fn relearning(&self) -> bool {
        self.relearn_since
            .is_some_and(|s| self.newest.since(s) < RELEARN_MOST_NS)
            && (self.hi - self.lo >= SETTLED_WIDTH_NS || self.relearn_edges < RELEARN_EDGES)
            && self.jittery_floor().is_none()
    }
}
