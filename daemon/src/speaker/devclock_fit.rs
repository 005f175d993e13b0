//! The device clock's learning (see `super`): upper bounds into the rate fit and the floor,
//! edges into the phase track, and the rate from the hull of the bounds or from the track.

use super::*;

impl DeviceClock {
    /// Whether the first half second's readings are left out: those of a device that starts
    /// at the call (a plugin starting up), not of one the model restarted on while it ran.
    fn warming(&self) -> bool {
        self.stamps() == Stamps::AtCall && self.relearn_since.is_none()
    }

    /// An edge seen between two readings close together is a point of the phase: its middle
    /// joins the track.
    pub(super) fn note_edge(&mut self, p: i64, after: f64, by: f64) {
        // Not from the first half second (see `add_bound`).
        let warming = by < WARMUP_NS && self.warming();
        if warming || by - after > TRACK_WIDTH_NS || by - self.track_at < TRACK_EVERY_NS {
            return;
        }
        if self.track.len() == TRACK {
            self.track.pop_front();
        }
        self.track.push_back((p, 0.5 * (after + by)));
        self.track_at = by;
        self.fit_phase();
    }

    /// The rate from the phase track (least squares), with its uncertainty, once it spans
    /// `TRACK_AFTER_NS`: on sharp edges each point is within half `TRACK_WIDTH_NS` of the
    /// truth, so the slope is within that over the span (67 ppm at 0.3 s, 3 ppm at 6 s); on
    /// jittery ones (a plugin's callback, 0-150 µs late) the points scatter by their edges'
    /// lateness, and the uncertainty is three times that scatter over the span. Counted as
    /// sharp, three edges of a JACK rig 0.4 s apart gave a rate 229 ppm off at ±125 ppm, which
    /// then stood for 9 s (its probes, aimed by it, saw no edge to add).
    pub(super) fn track_rate(&self) -> Option<(f64, f64)> {
        let (&(p0, t0), &(_, tz)) = (self.track.front()?, self.track.back()?);
        let span = tz - t0;
        if span < TRACK_AFTER_NS {
            return None;
        }
        let n = self.track.len() as f64;
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for &(p, t) in &self.track {
            let (x, y) = ((p - p0) as f64, t - t0);
            (sx, sy, sxx, sxy) = (sx + x, sy + y, sxx + x * x, sxy + x * y);
        }
        let var = sxx - sx * sx / n;
        if var <= 0.0 {
            return None;
        }
        let slope = (sxy - sx * sy / n) / var;
        let at = sy / n - slope * sx / n;
        let scatter = self
            .track
            .iter()
            .map(|&(p, t)| (t - t0 - at - slope * (p - p0) as f64).powi(2))
            .sum::<f64>();
        let scatter = 3.0 * (scatter / n).sqrt();
        let ppm = (TRACK_WIDTH_NS.max(scatter) / span * 1e6).clamp(FLOOR_PPM, PRIOR_PPM);
        ((slope / self.nominal - 1.0).abs() < PRIOR_PPM * 1e-6)
            .then_some((slope, self.nominal * ppm * 1e-6))
    }

    /// An upper bound (the device passed `p` at or before `t`) joins the rate fit as the
    /// lowest of its 20 ms bucket against the model's line; each closed bucket refits.
    pub(super) fn add_bound(&mut self, p: i64, t: f64) {
        // Not from the device's first half second: a plugin starting up may move its position
        // by more than it played (one speaker's rate came out 150 ppm off from its first
        // second on a JACK rig, and only left when those bounds left the window, 12 s later).
        if t < WARMUP_NS && self.warming() {
            return;
        }
        // Only a bound close to the reading before it (which still showed the old position)
        // is close to its edge: the first reading of a wake-up bounds an edge milliseconds
        // back, and a reading preempted within its call by as long as it was.
        if t - self.last_lo <= TIGHT_NS {
            if self.carried.is_some() {
                self.carry_floor(p, t, self.last_lo);
            } else {
                self.floor.add(p, t, self.last_lo);
                self.jittery |= self.floor.jittery();
            }
        }
        if let Some(line) = self.floor.line().filter(|_| self.carried.is_none()) {
            let at = line.at(self.p_ref);
            if at < self.lo - FLOOR_SLACK_NS || at > self.hi + FLOOR_SLACK_NS {
                self.floor.clear();
            }
        }
        let height = |m: &Self, (p, t): (i64, f64)| t - m.mid() - m.rate * (p - m.p_ref) as f64;
        match self.open {
            Some((start, best)) if t - start < BUCKET_NS => {
                if height(self, (p, t)) < height(self, best) {
                    self.open = Some((start, (p, t)));
                }
            }
            Some((_, best)) => {
                keep(&mut self.bounds, best, t);
                self.open = Some((t, (p, t)));
                self.fit_rate();
            }
            None => self.open = Some((t, (p, t))),
        }
    }

    /// A lower bound (the device had not passed `p` at `t`) joins the corridor as the highest
    /// of its 20 ms bucket; from the same half second on as the upper bounds.
    pub(super) fn add_low(&mut self, p: i64, t: f64) {
        if t < WARMUP_NS && self.warming() {
            return;
        }
        let height = |m: &Self, (p, t): (i64, f64)| t - m.mid() - m.rate * (p - m.p_ref) as f64;
        match self.open_low {
            Some((start, best)) if t - start < BUCKET_NS => {
                if height(self, (p, t)) > height(self, best) {
                    self.open_low = Some((start, (p, t)));
                }
            }
            Some((_, best)) => {
                keep(&mut self.lows, best, t);
                self.open_low = Some((t, (p, t)));
            }
            None => self.open_low = Some((t, (p, t))),
        }
    }

    /// The rate from the upper bounds' lower hull (a late callback or a late reading only lifts
    /// a bound, so the hull rests on the earliest ones), as its chord between a quarter and
    /// three quarters of the window: a long baseline (the edge above the bounds' mean, the
    /// linear program of Moon, Skelly and Towsley for clock skew under one-sided delays, could
    /// be short and jumped by 19 ppm when a bound left the window). Its uncertainty shrinks
    /// with the span: 30 ppm over 1 s, 1 ppm from 30 s.
    pub(super) fn fit_rate(&mut self) {
        let n = self.bounds.len();
        let (Some(&(pa, ta)), Some(&(_, tz))) = (self.bounds.front(), self.bounds.back()) else {
            return;
        };
        // Exact stamps give the rate to a fraction of a ppm in a tenth of a second; until it
        // is known, a frame 100 ms ahead is heard off by the rate error (53 µs at 530 ppm,
        // which the sim's clean runs showed in their first two seconds).
        let after = match self.stamps() {
            Stamps::AtPointerUpdate => EXACT_FIT_AFTER_NS,
            Stamps::AtCall => FIT_AFTER_NS,
        };
        if n < 8 || tz - ta < after {
            return;
        }
        // Heights against the current rate keep the numbers small; the hull is the same.
        let rate = self.rate;
        let heights = |&(p, t): &(i64, f64)| {
            let x = (p - pa) as f64;
            (x, t - ta - rate * x)
        };
        envelope(self.bounds.iter().map(heights), false, &mut self.hull);
        envelope(self.lows.iter().map(heights), true, &mut self.hull_lo);
        let hull = &self.hull;
        let span_x = hull.last().map_or(0.0, |h| h.0);
        if hull.len() < 2 || span_x <= 0.0 {
            return;
        }
        let at = |x: f64| height_at(hull, x);
        let (x1, x3) = (0.25 * span_x, 0.75 * span_x);
        let mut d = (at(x3) - at(x1)) / (x3 - x1);
        if ((rate + d) / self.nominal - 1.0).abs() > 2.0 * PRIOR_PPM * 1e-6 {
            return;
        }
        // The true line lies under every upper bound and over every lower one: between the
        // two envelopes. The chord's slope is off by at most the corridor's width at its ends
        // over its length — on a device read at random phases, or late by milliseconds, that
        // is far more than the span alone says (a chord over 0.7 s of bounds was 1360 ppm off
        // in a unit test, the bracket carried forward with it narrow and 350 us wrong).
        let width = |x: f64| match self.hull_lo.len() {
            0 | 1 => self.step_ns(),
            _ => (at(x) - height_at(&self.hull_lo, x)).max(0.0),
        };
        let corridor = (width(x1) + width(x3)) / (x3 - x1) / self.nominal * 1e6;
        let ppm = (30e9 / (tz - ta)).max(corridor).clamp(FLOOR_PPM, PRIOR_PPM);
        let sigma = self.nominal * ppm * 1e-6;
        // A rate kept over a restart stays until these bounds know it as well.
        let keep = self.kept_sigma.is_some_and(|k| sigma > k);
        if keep {
            d = 0.0;
        }
        let slope = rate + d;
        // The bracket, moved forward by rates still being learned, may have come to rest
        // before the line under every bound, where no edge can be: it moves up to it.
        let (x0, y0) = hull
            .iter()
            .copied()
            .min_by(|a, b| (a.1 - d * a.0).total_cmp(&(b.1 - d * b.0)))
            .unwrap_or((0.0, 0.0));
        // The line is known to the rate's uncertainty over the frames it is carried: the
        // bracket moves up only to the lowest line that allows (carried 1 s at a rate 229 ppm
        // off, the line lifted a bracket on a JACK plugin's jittery edges 200 µs late, where
        // it stayed for seconds: no upper bound comes below a line the probes aim at).
        let carried = ((self.p_ref - pa) as f64 - x0).abs();
        let line = ta + y0 + rate * x0 + slope * ((self.p_ref - pa) as f64 - x0) - sigma * carried;
        // Once the bounds span 10 s, at most 5 µs per fit (50 fits a second: 250 µs/s, which
        // the servo follows without its rail): a rate that changed (a plugin's clock is not a
        // crystal: JACK's dummy backend ran 100 ppm slow for its first 25 s) moved the line
        // by 540 µs at once when a bound left the window, and the servo hit its rail. Before,
        // the whole way: a bracket pinned early by the first rates is hundreds of µs off.
        let most = if tz - ta < SETTLED_NS {
            f64::INFINITY
        } else {
            MAX_LIFT_NS
        };
        let lift = (line - self.hi).min(most);
        if lift > 0.0 {
            self.hi += lift;
            self.lo += lift;
        }
        if keep {
            return;
        }
        (self.rate, self.rate_sigma, self.kept_sigma) = (slope, sigma, None);
        self.hull_sigma = sigma;
        self.fitted = true;
        // Before the bounds span `SETTLED_NS` the phase track may know better.
        self.fit_phase();
    }

    /// Until the bounds span `SETTLED_NS`, the phase track's rate, when it has one and knows
    /// it better than the bounds' hull: a narrow
    /// bracket pins the phase to microseconds within a fraction of a second, where the hull of
    /// a second of upper bounds was still 50-100 ppm off (a unit test's wake-ups jittered by
    /// 3 ms; the sim's speakers heard that as 50-110 us for their first 3 s).
    pub(super) fn fit_phase(&mut self) {
        let span = match (self.bounds.front(), self.bounds.back()) {
            (Some(a), Some(z)) => z.1 - a.1,
            _ => 0.0,
        };
        if span >= SETTLED_NS {
            return;
        }
        if let Some((rate, sigma)) = self.track_rate() {
            if self.kept_sigma.is_some_and(|k| sigma > k) || sigma >= self.hull_sigma {
                return;
            }
            (self.rate, self.rate_sigma, self.kept_sigma) = (rate, sigma, None);
            self.fitted = true;
        }
    }
}

/// The lower convex hull of `points` (sorted by x) into `hull` (`upper`: the upper concave
/// one): the tightest envelope a line under (over) every point lies below (above).
fn envelope(points: impl Iterator<Item = (f64, f64)>, upper: bool, hull: &mut Vec<(f64, f64)>) {
    hull.clear();
    let sign = if upper { -1.0 } else { 1.0 };
    for c in points {
        while let [.., a, b] = hull[..] {
            if sign * ((b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0)) > 0.0 {
                break;
            }
            hull.pop();
        }
        hull.push(c);
    }
}

/// An envelope's height at `x` (piecewise linear; extended by its first and last pieces).
fn height_at(hull: &[(f64, f64)], x: f64) -> f64 {
    match hull {
        [] => 0.0,
        [a] => a.1,
        _ => {
            let i = hull.partition_point(|h| h.0 < x).clamp(1, hull.len() - 1);
            let (a, b) = (hull[i - 1], hull[i]);
            a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0).max(1.0)
        }
    }
}

/// A closed bucket's bound joins the window; bounds older than `WINDOW_NS` at `t`, or beyond
/// `BOUNDS`, leave it.
fn keep(window: &mut VecDeque<(i64, f64)>, best: (i64, f64), t: f64) {
    while window.len() >= BOUNDS || window.front().is_some_and(|b| t - b.1 > WINDOW_NS) {
        window.pop_front();
    }
    window.push_back(best);
}

/// Greatest common divisor (the pointer's step from its increments).
pub(super) fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}
