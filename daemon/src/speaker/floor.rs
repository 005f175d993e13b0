//! The line under a device's edges (pure logic): where its position moves, from the upper
//! bounds of many edges at once.
//!
//! A plugin's pointer moves when its callback runs, late by a varying amount after the
//! device's true cycle: 0–150 µs on a JACK server (median 60 µs), measured by polling the
//! pointer every 15 µs. A reading taken after the move only bounds the edge from above. The
//! bracket of [`super::devclock`] rests on single edges and moves with each one (a late edge
//! lifts it, an early one holds it down for the window): two speakers on one JACK server
//! wandered ±20–50 µs apart.
//!
//! Here every upper bound of the last four minutes is kept, and a line is fitted through the
//! lower half of them (older bounds weighing less, by e per two minutes): least squares, then again through those below the median of the residuals,
//! four times. Replayed against two minutes of edges recorded from two clients of one JACK
//! server (one bound per wake-up, as the playout thread takes them), the statistics compare
//! so (|skew| between the two speakers' lines, p99): the lowest bound of each second through
//! a line, 24 µs; the lowest of all bounds, 57 µs; the lower quarter, 26 µs; the lower half,
//! 17 µs over 30 s and 14 µs over 60 s. The lowest edges are the truest, but a dozen bounds
//! a second sample them too thinly: a wide quantile of many bounds is steadier, and every
//! speaker on one kind of device sees it at the same height. Bounds that came late (a
//! wake-up the scheduler delayed) lie in the upper half and are left out.
//!
//! Its slope is the DAC's rate; there is no line until the bounds span two seconds (a line
//! with the caller's rate, hundreds of ppm off in the first second, parted two speakers by
//! 300 µs on a JACK rig).
//! When the bounds of the last three seconds all lie far to one side, the device's timeline
//! moved (an xrun): the fit starts again from them. A long memory lags a rate that changes
//! (a crystal warming up): a second line, of 20 s memory, is fitted beside it, and when the two
//! part by more than 40 µs the older bounds are let go.
//!
//! Each bound comes with the reading before it, which still showed the old position: a lower
//! bound on the same edge. A sharp edge (a hardware pointer, the sim) lies after all of them;
//! when more than a tenth lie above the line, five fits in a row, the edges jitter, and the
//! caller uses the line (on sharp edges its bracket is tighter). No I/O, no allocation after
//! construction.

use std::collections::VecDeque;

/// Bounds kept: the last four minutes.
const WINDOW_NS: f64 = 240_000_000_000.0;
const BOUNDS: usize = 8192;
/// The line is refitted each time this much time has passed.
const REFIT_NS: f64 = 1_000_000_000.0;
/// The line is fitted from this many bounds spanning this long.
const MIN_BOUNDS: usize = 24;
const MIN_SPAN_NS: f64 = 2_000_000_000.0;
/// A lower bound this far above the line contradicts it: the edge came late.
const SHARP_NS: f64 = 5_000.0;
/// The edges are jittery when this share of lower bounds contradict the line, in this many
/// fits in a row (a timeline that moved contradicts it for a moment too).
const JITTERY_SHARE: f64 = 0.05;
const JITTERY_FITS: u32 = 3;
/// Older bounds weigh less: by e for each this long. The line's height is the mean of the
/// lower half of the bounds, and a dozen bounds a second scatter by 50 µs: replayed through
/// 300 s of readings recorded from two speakers on one JACK server, the two lines parted by
/// p99 22 µs with 30 s, 14 µs with 90 s and 11 µs with 120 s (and a four-minute window).
const MEMORY_NS: f64 = 120_000_000_000.0;
/// The check against a rate that changed: a line of this memory through the bounds of three
/// times as long, which follows a change within seconds, and scatters more.
const SHORT_MEMORY_NS: f64 = 20_000_000_000.0;
/// When the short line's height now lies this far from the long one, the rate changed (the
/// long line lags a rate that drifts by 0.1 ppm a minute by 24 µs): the bounds older than
/// `CHANGE_KEEP_NS` go. Not less: the short line scatters by 8–10 µs, and a threshold from
/// its own statistical deviation (four of them, 10–15 µs) let the old bounds go every few
/// seconds on a JACK rig, where the two speakers' lines then parted by p99 34 µs instead of
/// 21 (replayed readings); no change was seen there at 40 µs.
const CHANGE_NS: f64 = 40_000.0;
const CHANGE_KEEP_NS: f64 = 40_000_000_000.0;
/// Rounds of fitting through the lower half.
const ROUNDS: usize = 4;
/// All bounds of the last this long this far on one side of the line: the timeline moved.
const SHIFT_AFTER_NS: f64 = 3_000_000_000.0;
const SHIFT_NS: f64 = 100_000.0;

/// A line through the bounds: the device reached `p` at `t0 + ns_per_frame·(p − p0)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Line {
    pub p0: i64,
    pub t0: f64,
    pub ns_per_frame: f64,
}

impl Line {
    pub(crate) fn at(&self, p: i64) -> f64 {
        self.t0 + self.ns_per_frame * (p - self.p0) as f64
    }
}

/// A fitted line, and how far its kept bounds lie from it (ns, one deviation).
#[derive(Debug, Clone, Copy)]
struct Fitted {
    line: Line,
    spread: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Floor {
    nominal: f64,
    /// Every upper bound (position, time) of the last `WINDOW_NS`.
    bounds: VecDeque<(i64, f64, f64)>,
    /// Scratch: (x, y, weight, kept) per bound, and residuals.
    points: Vec<(f64, f64, f64, bool)>,
    residuals: Vec<f64>,
    line: Option<Line>,
    /// When the line was last fitted.
    fitted_at: f64,
    /// The kept bounds' spread about the line (ns, their standard deviation).
    spread: f64,
    /// Fits in a row whose edges came at varying moments after the line (a plugin's callback).
    jittery_fits: u32,
    shifts: u64,
    changes: u64,
}

impl Floor {
    pub(crate) fn new(nominal_ns_per_frame: f64) -> Self {
        Floor {
            nominal: nominal_ns_per_frame,
            bounds: VecDeque::with_capacity(BOUNDS),
            points: Vec::with_capacity(BOUNDS),
            residuals: Vec::with_capacity(BOUNDS),
            line: None,
            fitted_at: f64::NEG_INFINITY,
            spread: f64::INFINITY,
            jittery_fits: 0,
            shifts: 0,
            changes: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.bounds.clear();
        self.line = None;
        self.fitted_at = f64::NEG_INFINITY;
        self.spread = f64::INFINITY;
        self.jittery_fits = 0;
    }

    /// Moves every bound, and the line, `by` ns later (the timeline moved by that much).
    pub(crate) fn offset(&mut self, by: f64) {
        for b in self.bounds.iter_mut() {
            b.1 += by;
            b.2 += by;
        }
        if let Some(l) = self.line.as_mut() {
            l.t0 += by;
        }
        self.fitted_at += by;
    }

    /// The heights above the line of the newest bounds seen within `seen` ns (the reading
    /// before showed the old position that little earlier) into `out`, as many as fit: how
    /// late the edges come after the line. None without a line.
    pub(crate) fn recent_heights(&self, out: &mut [f64], seen: f64) -> usize {
        let Some(line) = self.line else {
            return 0;
        };
        let seen = self.bounds.iter().rev().filter(|b| b.1 - b.2 <= seen);
        let mut n = 0;
        for (o, &(p, t, _)) in out.iter_mut().zip(seen) {
            *o = t - line.at(p);
            n += 1;
        }
        n
    }

    /// The line, once enough bounds are in.
    pub(crate) fn line(&self) -> Option<Line> {
        self.line
    }

    /// How far the kept bounds lie from the line (ns, one deviation): how sharp the edges are.
    pub(crate) fn spread(&self) -> f64 {
        self.spread
    }

    /// Whether the edges come at varying moments: many an edge's reading before it (which
    /// still showed the old position) came after the line. A sharp edge's never does.
    pub(crate) fn jittery(&self) -> bool {
        self.jittery_fits >= JITTERY_FITS
    }

    /// Times the timeline was seen to move.
    #[cfg(test)]
    pub(crate) fn shifts(&self) -> u64 {
        self.shifts
    }

    /// Times the rate was seen to change (the older bounds were let go).
    #[cfg(test)]
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// An edge: the device passed `p` after `lo` and at or before `t`.
    pub(crate) fn add(&mut self, p: i64, t: f64, lo: f64) {
        while self.bounds.len() >= BOUNDS
            || self.bounds.front().is_some_and(|b| t - b.1 > WINDOW_NS)
        {
            self.bounds.pop_front();
        }
        self.bounds.push_back((p, t, lo));
        if t - self.fitted_at < REFIT_NS {
            return;
        }
        self.fitted_at = t;
        let Some(mut fitted) = self.fit(MEMORY_NS, f64::NEG_INFINITY) else {
            self.line = None;
            return;
        };
        if self.moved(fitted.line, t) {
            self.shifts += 1;
            self.forget_before(t - SHIFT_AFTER_NS);
            self.line = self
                .fit(MEMORY_NS, f64::NEG_INFINITY)
                .map(|f| self.judge(f));
            return;
        }
        // A rate that changed: the short line parts from the long one by more than its
        // scatter on a steady device (`CHANGE_NS`).
        let first = self.bounds.front().map_or(t, |b| b.1);
        if t - first > 3.0 * SHORT_MEMORY_NS {
            if let Some(short) = self.fit(SHORT_MEMORY_NS, t - 3.0 * SHORT_MEMORY_NS) {
                let gap = (short.line.at(p) - fitted.line.at(p)).abs();
                if gap > CHANGE_NS {
                    self.changes += 1;
                    self.forget_before(t - CHANGE_KEEP_NS);
                    fitted = self.fit(MEMORY_NS, f64::NEG_INFINITY).unwrap_or(short);
                }
            }
        }
        self.line = Some(self.judge(fitted));
    }

    /// Whether every bound of the last three seconds lies far on one side of `line`: the
    /// timeline moved.
    fn moved(&self, line: Line, t: f64) -> bool {
        let since = t - SHIFT_AFTER_NS;
        let first = self.bounds.front().map_or(t, |b| b.1);
        let (mut above, mut below, mut n) = (true, true, 0);
        for &(p, t, _) in self.bounds.iter().rev().take_while(|b| b.1 >= since) {
            let r = t - line.at(p);
            above &= r > SHIFT_NS;
            below &= r < -SHIFT_NS;
            n += 1;
        }
        first < since && n >= 3 && (above || below)
    }

    fn forget_before(&mut self, since: f64) {
        while self.bounds.front().is_some_and(|b| b.1 < since) {
            self.bounds.pop_front();
        }
    }

    /// Least squares through the bounds since `since`, each weighing less by e per `memory`
    /// of age, then through those below the median residual, and again.
    fn fit(&mut self, memory: f64, since: f64) -> Option<Fitted> {
        let first = self.bounds.partition_point(|b| b.1 < since);
        let (&(p0, t0, _), &(_, tz, _)) = (self.bounds.get(first)?, self.bounds.back()?);
        if self.bounds.len() - first < MIN_BOUNDS || tz - t0 < MIN_SPAN_NS {
            return None;
        }
        // Heights against the nominal rate keep the numbers small.
        let nominal = self.nominal;
        self.points.clear();
        self.points
            .extend(self.bounds.range(first..).map(|&(p, t, _)| {
                let x = (p - p0) as f64;
                (x, t - t0 - nominal * x, (-(tz - t) / memory).exp(), true)
            }));
        let mut sol = solve(&self.points)?;
        for _ in 0..ROUNDS {
            self.residuals.clear();
            self.residuals
                .extend(self.points.iter().map(|&(x, y, _, _)| y - sol.at(x)));
            let mid = self.residuals.len() / 2;
            let (_, &mut median, _) = self.residuals.select_nth_unstable_by(mid, f64::total_cmp);
            for s in self.points.iter_mut() {
                s.3 = s.1 - sol.at(s.0) <= median;
            }
            sol = solve(&self.points)?;
        }
        let (mut sum, mut w) = (0.0f64, 0.0f64);
        for &(x, y, wi, kept) in &self.points {
            if kept {
                sum += wi * (y - sol.at(x)).powi(2);
                w += wi;
            }
        }
        let spread = (sum / w.max(1e-9)).sqrt();
        Some(Fitted {
            line: Line {
                p0,
                t0: t0 + sol.a,
                ns_per_frame: nominal + sol.b,
            },
            spread,
        })
    }

    /// Takes a fit as the line: its spread, and whether its edges are jittery (sharp edges lie
    /// after every lower bound of theirs; jittery ones leave many of those above a line under
    /// the early edges).
    fn judge(&mut self, fitted: Fitted) -> Line {
        self.spread = fitted.spread;
        let line = fitted.line;
        let above = self
            .bounds
            .iter()
            .filter(|&&(p, _, lo)| lo - line.at(p) > SHARP_NS)
            .count();
        if above as f64 > JITTERY_SHARE * self.bounds.len() as f64 {
            self.jittery_fits += 1;
        } else {
            self.jittery_fits = 0;
        }
        line
    }
}

/// A weighted least-squares line `y = a + b·x`.
#[derive(Debug, Clone, Copy)]
struct Solution {
    a: f64,
    b: f64,
}

impl Solution {
    fn at(&self, x: f64) -> f64 {
        self.a + self.b * x
    }
}

/// The line through the kept points, by weighted least squares.
fn solve(points: &[(f64, f64, f64, bool)]) -> Option<Solution> {
    let kept = points.iter().filter(|p| p.3);
    let (mut n, mut w, mut sx, mut sy) = (0, 0.0, 0.0, 0.0);
    for &(x, y, wi, _) in kept.clone() {
        (n, w, sx, sy) = (n + 1, w + wi, sx + wi * x, sy + wi * y);
    }
    if n < 2 || w <= 0.0 {
        return None;
    }
    let (mx, my) = (sx / w, sy / w);
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for &(x, y, wi, _) in kept {
        sxx += wi * (x - mx) * (x - mx);
        sxy += wi * (x - mx) * (y - my);
    }
    if sxx <= 0.0 {
        return None;
    }
    let b = sxy / sxx;
    Some(Solution { a: my - b * mx, b })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: f64 = 1e9 / 48_000.0;

    fn uniform(r: &mut u64) -> f64 {
        *r = r
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*r >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn the_line_runs_under_the_bounds_and_finds_the_rate() {
        // 20 bounds a second, each 0-150 µs after its edge, one in 50 by 2 ms, one 40 µs
        // early: the line lies where the lower half of the bounds is (37.5 µs above the
        // edges on average), and has their rate.
        let mut f = Floor::new(NS);
        let true_ns = NS * (1.0 - 200e-6);
        let mut r = 12345u64;
        for k in 0..1_200 {
            let late = if uniform(&mut r) < 0.02 {
                2e6
            } else {
                uniform(&mut r) * 150e3
            };
            let late = if k == 600 { -40e3 } else { late };
            let p = k * 2_400;
            f.add(
                p,
                1e9 + true_ns * p as f64 + late,
                1e9 + true_ns * p as f64 + late - 30e3,
            );
        }
        let l = f.line().unwrap();
        let p = 1_200 * 2_400;
        let above = l.at(p) - (1e9 + true_ns * p as f64);
        assert!((25e3..50e3).contains(&above), "{above}");
        assert!((l.ns_per_frame / true_ns - 1.0).abs() < 0.5e-6);
        assert!((15e3..30e3).contains(&f.spread()), "{}", f.spread());
        assert_eq!(f.shifts(), 0);
    }

    #[test]
    fn a_timeline_that_moves_is_followed_within_seconds() {
        // Bounds right at their edges, 10 a second; at 40 s every edge comes 300 µs later.
        let mut f = Floor::new(NS);
        for k in 0..600 {
            let p = k * 4_800;
            let shift = if k >= 400 { 300e3 } else { 0.0 };
            f.add(p, NS * p as f64 + shift, NS * p as f64 + shift - 30e3);
            if k == 399 {
                assert!((f.line().unwrap().at(p) - NS * p as f64).abs() < 1e3);
            }
        }
        assert_eq!(f.shifts(), 1);
        let l = f.line().unwrap();
        let p = 600 * 4_800;
        assert!((l.at(p) - NS * p as f64 - 300e3).abs() < 1e3);
    }

    /// Bounds of an edge every 100 ms, each 0-150 µs late, on a device whose rate steps by
    /// `ppm` at 200 s; the line's height above the true edges at `at_s`, and the floor.
    fn after_a_rate_step(ppm: f64, at_s: i64) -> (f64, Floor) {
        let mut f = Floor::new(NS);
        let mut r = 99u64;
        let step_p = 2_000 * 4_800;
        let edge = |p: i64| {
            let bent = (p - step_p).max(0) as f64 * NS * ppm * 1e-6;
            NS * p as f64 + bent
        };
        for k in 0..at_s * 10 {
            let p = k * 4_800;
            let late = uniform(&mut r) * 150e3;
            f.add(p, edge(p) + late, edge(p) - 30e3);
        }
        let p = (at_s * 10 - 1) * 4_800;
        (f.line().unwrap().at(p) - edge(p), f)
    }

    #[test]
    fn a_long_memory_stills_the_line_and_a_changed_rate_is_followed() {
        // Steady: the line stays within a few µs of the lower half's height (37.5 µs).
        let (steady, f) = after_a_rate_step(0.0, 200);
        assert!((steady - 37.5e3).abs() < 5e3, "{steady}");
        assert_eq!(f.changes(), 0);
        // 3 ppm more at 200 s: the two-minute line would lag it by 100 µs at 260 s; the
        // short line sees it, the old bounds go, and the line is back within 15 µs.
        let (bent, f) = after_a_rate_step(3.0, 260);
        assert!((bent - 37.5e3).abs() < 15e3, "{bent}");
        assert!(f.changes() >= 1);
    }
}
