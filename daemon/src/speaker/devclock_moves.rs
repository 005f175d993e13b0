//! The device clock's moved timelines (see `super`): edges that come late tell a timeline
//! that moved (a sound server's late cycle), and a restarted model is relearnt before the
//! stream is measured against it again.

use super::*;

/// A floor kept over a restart on jittery edges: its line still says where the edges come,
/// less the timeline's move. The move is the median height of the first `CARRY_BOUNDS` bounds
/// after the restart above the old line, less that of the last ones before it (both samples of
/// the same edges' lateness, so the line's height above the edges is kept). Without it the line
/// started again from nothing: the bracket for two seconds (on the earliest edges, where the
/// line lies on the lower half: 40-60 µs above), then a young line, each speaker at its own
/// moment; after a JACK server's xruns the two speakers of the rig were out of tolerance for
/// 1-2.4 s at a time, up to 62 µs apart. (The new bracket against the old one was the first
/// measure of the move: a young bracket rests on a few edges, not the earliest of minutes, and
/// carried the line 50 µs late.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct Carried {
    /// Origin of the floor's time less that of the model's now (ns).
    origin_gap: f64,
    /// How far the floor's line lay above the bracket's middle at the restart (ns): until the
    /// floor is moved, the estimate is the new bracket raised by it, not the bracket alone.
    /// (The bracket rests on the earliest edges, the line on the lower half of them: on a
    /// JACK rig 40-60 µs higher. Without it a speaker went from the line to the bracket at a
    /// restart and back when its carry ended, 0.6-3.6 s later, while the other speaker of
    /// the rig had ended its own carry at another moment: 1.2-3.2 s out of tolerance after
    /// each such xrun, up to 58 µs apart.)
    pub(super) above_bracket: f64,
    heights: [f64; CARRY_BOUNDS],
    n: usize,
    /// Bounds offered, seen by a watch or not.
    offered: usize,
}

impl Carried {
    pub(super) fn new(origin_gap: f64, above_bracket: f64) -> Self {
        Carried {
            origin_gap,
            above_bracket,
            heights: [0.0; CARRY_BOUNDS],
            n: 0,
            offered: 0,
        }
    }
}

/// Bounds after a restart that measure the timeline's move.
pub(super) const CARRY_BOUNDS: usize = 16;
/// ... against this many before it.
const CARRIED_BOUNDS: usize = 64;
/// Only edges a watch saw (the reading before showed the old position this little earlier)
/// measure the move: their heights do not depend on where the probes were aimed, which the
/// bracket does otherwise than the line (edges seen 250 µs wide carried the line 18 µs late).
const EDGE_SEEN_NS: f64 = 20_000.0;

fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

impl DeviceClock {
    /// The model starts again at `r` on a running device: the rate is kept (see
    /// `kept_sigma`), and the timeline waits for it to be relearnt.
    pub(super) fn restart(&mut self, r: Reading) {
        self.restarts += 1;
        let origin = self.origin.map_or(0.0, |o| o.0 as f64);
        if let Some(c) = self.carried.as_mut() {
            c.origin_gap -= r.stamp.0 as f64 - origin;
        } else if let Some(line) = self.jittery_floor() {
            let above = line.at(self.p_ref) - self.mid();
            self.carried = Some(Carried::new(origin - r.stamp.0 as f64, above));
        }
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

    /// Takes an upper bound after a restart (`p` passed at or before `t`, the model's time):
    /// once there are enough, the kept floor moves by the timeline's move and is used again.
    pub(super) fn carry_floor(&mut self, p: i64, t: f64, lo: f64) {
        let (Some(mut c), Some(line)) = (self.carried, self.floor.line()) else {
            self.carried = None;
            return;
        };
        c.offered += 1;
        self.carried = Some(c);
        if t - lo > EDGE_SEEN_NS {
            // A device whose edges no watch sees that closely (a slow call) starts its floor
            // again, as before there was a carry.
            if c.offered > 4 * CARRY_BOUNDS {
                self.carried = None;
                self.floor.clear();
            }
            return;
        }
        c.heights[c.n] = t - c.origin_gap - line.at(p);
        c.n += 1;
        self.carried = Some(c);
        if c.n < CARRY_BOUNDS {
            return;
        }
        let mut before = [0.0; CARRIED_BOUNDS];
        let n = self.floor.recent_heights(&mut before, EDGE_SEEN_NS);
        if n == 0 {
            self.carried = None;
            self.floor.clear();
            return;
        }
        let moved = median(&mut c.heights) - median(&mut before[..n]);
        self.carried = None;
        self.floor.offset(moved + c.origin_gap);
    }
}
