//! The speaker's model of the controller clock: `controller = local + offset(local)`, with
//! `offset(t) = offset_ref + freq * (t - t_ref)`.
//!
//! Each four-timestamp exchange gives an offset sample and a round-trip time. Queuing delay only
//! ever adds to the round trip, and it makes the offset sample wrong by up to half of what it
//! added, so the fastest exchanges are the truest: the model keeps a window of recent samples,
//! accepts only those whose round trip is close to the window's minimum, and fits offset and
//! frequency to them by least squares.
//!
//! On a jittery path that is not enough: even the fastest tenth of the exchanges are asymmetric by
//! a good fraction of the jitter, and their average drifts as they come and go. Once the window
//! holds enough exchanges the model therefore refines the fit with the *lower envelopes* of the
//! two one-way delays. Against the fitted line, an exchange's forward delay is `up + err` and its
//! backward delay `down - err` (`err` = true minus modelled offset). Queuing only ever adds, so the
//! floor of the forward delays is `min_up + err(t)` and that of the backward ones
//! `min_down - err(t)`. The floors are found as lower envelopes (see `lower_envelope`); half
//! their difference is the model error in
//! offset and frequency, assuming the path's *minimum* delay is the same both ways, which holds on
//! a LAN even when its jitter does not. An envelope of n exchanges sits about jitter/n above the
//! floor, where an average of the fastest sits a good part of the jitter off.
//!
//! Causality guards the model against clock steps: an exchange whose forward or backward delay
//! comes out clearly negative under the model is impossible, and a run of them means the
//! controller's clock (or ours) stepped, so the history is dropped and the model re-learns.
//! No I/O and no clock reads here: callers pass timestamps.

use crate::clock::{ControllerNs, LocalNs};
use std::collections::VecDeque;

/// One completed exchange (t1, t4 on the speaker clock; t2, t3 on the controller clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub t1: LocalNs,
    pub t2: ControllerNs,
    pub t3: ControllerNs,
    pub t4: LocalNs,
}

impl Exchange {
    /// Round-trip network delay, ns (controller processing time excluded).
    pub fn rtt(&self) -> i64 {
        self.t4.since(self.t1) - self.t3.since(self.t2)
    }
    /// Offset estimate `controller - local`, ns.
    pub fn offset(&self) -> i64 {
        ((self.t2.0 - self.t1.0) + (self.t3.0 - self.t4.0)) / 2
    }
    /// Local time the offset sample refers to (midpoint of the exchange).
    pub fn mid(&self) -> LocalNs {
        LocalNs(self.t1.0 + self.t4.since(self.t1) / 2)
    }
}

/// A read-only copy of the model, cheap to pass to the playout thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSnapshot {
    pub t_ref: LocalNs,
    pub offset_ref: i64,
    /// Frequency of the controller clock relative to ours, minus one (e.g. 150e-6).
    pub freq: f64,
}

impl ClockSnapshot {
    /// Controller time corresponding to a local time.
    pub fn to_controller(&self, t: LocalNs) -> ControllerNs {
        let dt = t.since(self.t_ref);
        ControllerNs(t.0 + self.offset_ref + (dt as f64 * self.freq) as i64)
    }
    /// Local time corresponding to a controller time.
    pub fn to_local(&self, c: ControllerNs) -> LocalNs {
        // c = t + off + freq*(t - ref)  =>  t = (c - off + freq*ref) / (1 + freq)
        let guess = c.0 - self.offset_ref;
        let dt = guess - self.t_ref.0;
        LocalNs(guess - (dt as f64 * self.freq / (1.0 + self.freq)) as i64)
    }
}

/// Parameters of the model.
#[derive(Debug, Clone, Copy)]
pub struct ModelParams {
    /// Exchanges kept.
    pub window: usize,
    /// Exchanges seen before the model reports lock.
    pub lock_after: usize,
    /// Accept samples whose RTT is within `min_rtt * rtt_factor + rtt_slack_ns`.
    pub rtt_factor: f64,
    pub rtt_slack_ns: i64,
    /// Exchanges needed before the lower-envelope refinement takes over (0 disables it).
    pub envelope_after: usize,
    /// Consecutive causality-violating exchanges that mean a clock step.
    pub step_after: usize,
    /// Exchanges older than this (ns) leave the window.
    pub max_age_ns: i64,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            window: 2048,
            lock_after: 6,
            rtt_factor: 1.5,
            rtt_slack_ns: 20_000,
            envelope_after: 120,
            step_after: 12,
            // At the quiet poll (2 a second) 140 exchanges: above `envelope_after`, so that the
            // filter does not switch between the envelope and the plain fit.
            max_age_ns: 70_000_000_000,
        }
    }
}

/// The clock model.
#[derive(Debug, Clone)]
pub struct ClockModel {
    params: ModelParams,
    history: VecDeque<Exchange>,
    snapshot: Option<ClockSnapshot>,
    last_rtt: i64,
    min_rtt: i64,
    accepted: usize,
    rejected_total: u64,
    /// Statistical error of the envelope fit, ns (None while the plain fit is in use).
    envelope_error: Option<i64>,
    /// Exchanges since the last refit.
    since_refit: u32,
    /// Round trip of the fastest tenth, ns.
    tenth_rtt: i64,
    /// The verdict of `quiet`, kept between refits for its hysteresis.
    quiet: bool,
    /// Reused buffer for the round trips.
    scratch: Vec<i64>,
    /// Consecutive exchanges the model said were impossible.
    violations: usize,
    steps: u64,
}

/// A line under a cloud of delays (x in s, y in ns): its floor. The slope comes from a long
/// baseline, the lowest points of the first and of the last third (refined once against the
/// first estimate, so that a tilted cloud does not bias which points are lowest): a slope from
/// nearby points — a short hull edge — is as noisy as the points, and the offset would inherit
/// that noise times the distance it is extrapolated. The height is the lowest point of the
/// recent part of the window under that slope, so it is extrapolated only a few seconds.
/// Returns (slope ns/s, value at x = 0, mean excess of the points above the line).
fn lower_envelope(pts: &mut [(f64, f64)]) -> Option<(f64, f64, f64)> {
    let n = pts.len();
    if n < 6 {
        return None;
    }
    // Exchanges come in time order; a reply overtaking an earlier one can swap two.
    if !pts.is_sorted_by(|a, b| a.0 <= b.0) {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let third = n / 3;
    let lowest = |part: &[(f64, f64)], slope: f64| {
        part.iter()
            .copied()
            .min_by(|a, b| (a.1 - slope * a.0).total_cmp(&(b.1 - slope * b.0)))
    };
    let mut slope = 0.0;
    for _ in 0..2 {
        let a = lowest(&pts[..third], slope)?;
        let b = lowest(&pts[n - third..], slope)?;
        if b.0 - a.0 <= 0.0 {
            return None;
        }
        slope = (b.1 - a.1) / (b.0 - a.0);
    }
    let recent = (n / 4).max(n.min(256));
    let floor = pts[n - recent..]
        .iter()
        .map(|p| p.1 - slope * p.0)
        .fold(f64::INFINITY, f64::min);
    let excess = pts.iter().map(|p| p.1 - slope * p.0 - floor).sum::<f64>() / n as f64;
    Some((slope, floor, excess))
}

impl ClockModel {
    pub fn new(params: ModelParams) -> Self {
        ClockModel {
            params,
            history: VecDeque::with_capacity(params.window),
            snapshot: None,
            last_rtt: 0,
            min_rtt: 0,
            accepted: 0,
            rejected_total: 0,
            envelope_error: None,
            since_refit: 0,
            tenth_rtt: 0,
            quiet: false,
            scratch: Vec::with_capacity(params.window),
            violations: 0,
            steps: 0,
        }
    }

    /// Feeds one exchange. Exchanges with a negative round trip (impossible unless a clock
    /// jumped or a datagram was forged) are rejected.
    pub fn handle_exchange(&mut self, ex: Exchange) {
        let rtt = ex.rtt();
        if rtt < 0 || ex.t4 < ex.t1 {
            self.rejected_total += 1;
            return;
        }
        self.last_rtt = rtt;
        if self.violates_causality(&ex) {
            self.violations += 1;
            if self.violations >= self.params.step_after {
                // The clocks stepped: everything before the run describes another clock.
                let keep = self.history.len().min(self.violations - 1);
                self.history.drain(..self.history.len() - keep);
                self.snapshot = None;
                self.violations = 0;
                self.steps += 1;
            }
        } else {
            self.violations = 0;
        }
        if self.history.len() == self.params.window {
            self.history.pop_front();
        }
        // The window also ends in time: with the slower quiet-path poll, 2048 exchanges would
        // span minutes, and crystals drift with temperature.
        while self
            .history
            .front()
            .is_some_and(|f| ex.t1.since(f.t1) > self.params.max_age_ns)
        {
            self.history.pop_front();
        }
        self.history.push_back(ex);
        // Every exchange while the window fills (lock, and the first seconds after it) and on a
        // jittery path; on a quiet one every second (once a second at the quiet poll): there
        // one exchange more or less moves the fit by next to nothing, and the refit was most of
        // a speaker's CPU.
        self.since_refit += 1;
        if !self.quiet() || self.since_refit >= 2 || self.snapshot.is_none() {
            self.since_refit = 0;
            self.refit();
        }
    }

    /// True when, under the current model, the exchange's forward or backward delay is negative
    /// by more than the model could plausibly be off.
    fn violates_causality(&self, ex: &Exchange) -> bool {
        let Some(s) = self.snapshot else { return false };
        if !self.locked() {
            return false;
        }
        let fwd = ex.t2.0 - s.to_controller(ex.t1).0;
        let bwd = s.to_controller(ex.t4).0 - ex.t3.0;
        let tolerance = 200_000 + self.min_rtt;
        fwd < -tolerance || bwd < -tolerance
    }

    fn refit(&mut self) {
        let mut rtts = std::mem::take(&mut self.scratch);
        rtts.clear();
        rtts.extend(self.history.iter().map(Exchange::rtt));
        // Keep exchanges close to the fastest, and never more than the fastest tenth (at least
        // six): on a jittery path the fastest few are the ones whose two directions were both
        // quick, so their asymmetry — the offset error — is smallest.
        let k = (rtts.len() / 10).max(5).min(rtts.len() - 1);
        let tenth = *rtts.select_nth_unstable(k).1;
        // The floor is the third fastest, not the fastest: an exchange can look faster than
        // the path is when the controller's user-space send stamp (t3) comes late, and one such
        // exchange as the floor left fewer than three within reach of it: the model unlocked
        // for a minute (seen under a loaded test run: a 0.13 µs round trip on loopback).
        let third = 2.min(k);
        let min_rtt = *rtts[..=k].select_nth_unstable(third).1;
        self.min_rtt = min_rtt;
        self.tenth_rtt = tenth;
        // Quiet from 256 exchanges on; it stays quiet down to 96, because at the quiet poll
        // (2 a second) the 70 s window holds only 140: without the margin it flipped back to
        // the fast poll every minute.
        let enough = if self.quiet { 96 } else { 256 };
        self.quiet = self.history.len() >= enough && tenth - min_rtt < 100_000;
        self.scratch = rtts;
        let limit = ((min_rtt as f64 * self.params.rtt_factor) as i64 + self.params.rtt_slack_ns)
            .min(tenth.max(min_rtt));
        // ... and none that looks faster than the floor by more than the slack: it is not a
        // fast exchange but a misstamped one (its offset is off by half the stamp's delay).
        let floor = min_rtt - self.params.rtt_slack_ns;
        let good: Vec<&Exchange> = self
            .history
            .iter()
            .filter(|e| (floor..=limit).contains(&e.rtt()))
            .collect();
        self.accepted = good.len();
        let Some(last) = good.last() else { return };
        let t_ref = last.mid();
        // Least squares on (x = mid - t_ref in seconds, y = offset - offset_last in ns).
        let y0 = last.offset();
        let n = good.len() as f64;
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for e in &good {
            let x = e.mid().since(t_ref) as f64 * 1e-9;
            let y = (e.offset() - y0) as f64;
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        let var = sxx - sx * sx / n;
        // Frequency needs a time span; with samples close together keep the previous estimate.
        let span = good.first().map(|f| t_ref.since(f.mid())).unwrap_or(0);
        let prev_freq = self.snapshot.map(|s| s.freq).unwrap_or(0.0);
        let (slope_ns_per_s, intercept) = if good.len() >= 3 && span > 200_000_000 && var > 0.0 {
            let b = (sxy - sx * sy / n) / var;
            (b, (sy - b * sx) / n)
        } else {
            let b = prev_freq * 1e9;
            (b, (sy - b * sx) / n)
        };
        let freq = (slope_ns_per_s * 1e-9).clamp(-2e-3, 2e-3);
        let mut snap = ClockSnapshot {
            t_ref,
            offset_ref: y0 + intercept.round() as i64,
            freq,
        };
        self.envelope_error = None;
        if self.params.envelope_after > 0 && self.history.len() >= self.params.envelope_after {
            if let Some((d_off, d_freq, err)) = self.envelope_correction(&snap) {
                snap.offset_ref += d_off;
                snap.freq = (snap.freq + d_freq).clamp(-2e-3, 2e-3);
                self.envelope_error = Some(err);
            }
        }
        self.snapshot = Some(snap);
    }

    /// The model error at `s.t_ref` (ns) and in frequency, from the lower envelopes of the
    /// forward and backward delays; plus the statistical error of that estimate.
    fn envelope_correction(&self, s: &ClockSnapshot) -> Option<(i64, f64, i64)> {
        let mut fwd = Vec::with_capacity(self.history.len());
        let mut bwd = Vec::with_capacity(self.history.len());
        // Not the misstamped ones (faster than the path): they would be the envelope.
        let floor = self.min_rtt - self.params.rtt_slack_ns;
        for e in self.history.iter().filter(|e| e.rtt() >= floor) {
            let f = e.t2.0 - s.to_controller(e.t1).0;
            let b = s.to_controller(e.t4).0 - e.t3.0;
            fwd.push((e.t1.since(s.t_ref) as f64 * 1e-9, f as f64));
            bwd.push((e.t4.since(s.t_ref) as f64 * 1e-9, b as f64));
        }
        let (sf, cf, ef) = lower_envelope(&mut fwd)?;
        let (sb, cb, eb) = lower_envelope(&mut bwd)?;
        // err(t) = (F(t) - B(t)) / 2; slopes are ns per s, i.e. 1e-9 of frequency.
        let d_off = (cf - cb) / 2.0;
        let d_freq = (sf - sb) / 2.0 * 1e-9;
        // For delays spread evenly over a width w above their floor the mean excess is w/2 and
        // the lowest of the m recent points sits about w/m above the floor.
        let recent = (fwd.len() / 4).max(fwd.len().min(256));
        let err = (ef + eb) / recent as f64;
        Some((d_off.round() as i64, d_freq, err.round() as i64 + 1_000))
    }

    /// The current estimate, once there is one.
    pub fn snapshot(&self) -> Option<ClockSnapshot> {
        self.snapshot
    }
    /// True when enough exchanges back the estimate (and at least three pass the RTT filter).
    pub fn locked(&self) -> bool {
        self.history.len() >= self.params.lock_after && self.accepted >= 3
    }
    /// RTT of the last exchange, ns.
    pub fn last_rtt(&self) -> i64 {
        self.last_rtt
    }
    /// Smallest RTT in the window, ns: half of it bounds the offset error of the best sample.
    pub fn min_rtt(&self) -> i64 {
        self.min_rtt
    }
    /// Exchanges rejected as impossible.
    pub fn rejected(&self) -> u64 {
        self.rejected_total
    }
    /// True when the model is settled on a quiet path (the fastest tenth of the round trips
    /// within 100 µs of the fastest), so that a slower poll loses nothing; false while
    /// exchanges come out impossible, so that the run of them that means a clock step comes at
    /// the fast poll (a third of a second, not six at the slow one).
    pub fn quiet(&self) -> bool {
        self.quiet && self.violations == 0
    }

    /// True while the window holds fewer than half the exchanges it can: the envelopes are
    /// still young (the speaker polls faster then).
    pub fn filling(&self) -> bool {
        self.history.len() < self.params.window / 2
    }

    /// Clock steps detected (history dropped and re-learned).
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// Estimated error of the offset, ns: the statistical error of the envelope fit once it is
    /// in use (assuming symmetric minimum path delay), half the best round trip before.
    pub fn est_error(&self) -> i64 {
        self.envelope_error.unwrap_or(self.min_rtt / 2)
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
