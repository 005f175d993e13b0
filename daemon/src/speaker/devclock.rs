//! The device clock (pure logic): where the DAC really is, from many status readings, none of
//! which is trusted alone.
//!
//! A reading says the device had consumed `position` frames when it was stamped. Most devices
//! move that position in steps (a period for ALSA plugins such as JACK, PulseAudio, PipeWire and
//! bluealsa; 10 ms for the Raspberry Pi's firmware audio; a URB for USB) and stamp the status
//! when it is *read*, not when the position moved. Such a reading is stale by up to a step, and
//! only ever one way: the position it shows was reached at or before its stamp (`τ(p) ≤ t`), and
//! the next step had not come yet (`τ(p + step) > t`). Each reading is therefore a bound on the
//! moment the device passed a position, and the model keeps the tightest pair of bounds on one
//! reference position: the bracket `(lo, hi]` in which the true edge lies.
//!
//! Readings taken right after an edge tighten `hi`, readings just before one tighten `lo`; a
//! reading in the middle of a step tells little. So the model also says *when* to read next
//! ([`DeviceClock::probe`]): at the middle of the bracket, shifted to an edge near the time the
//! caller wanted to wake anyway. Every wake-up is then a step of a bisection, and the bracket
//! shrinks from a step (5–21 ms) to the jitter of the caller's wake-ups within a second, whatever
//! the alignment of those wake-ups with the device's own periods (which otherwise may sample the
//! same phase of the sawtooth for ever).
//!
//! The rate (local ns per DAC frame) comes from the upper bounds alone: the line under every
//! bound of the last 30 s that lies closest to them all (the edge of their lower hull above
//! their mean position). A late callback or a late reading only ever lifts a bound, so that
//! line rests on the earliest ones. Its uncertainty (30 ppm over 1 s of bounds, 1 ppm over
//! 30 s) widens the bracket as the reference moves forward, and a bracket left before that
//! line by a rate still being learned moves up to it. When readings contradict the bracket
//! (jittery edges) the early side wins: an edge seen early is the truest, as the fastest
//! exchange is in the clock filter. A contradiction far beyond a step means the device
//! restarted or stalled: the model starts again (keeping the rate).
//!
//! A stamp at the call may be taken before the pointer is read, with a preemption between: a
//! reading bounds the edge by the clock reads around the call, not by its stamp. Readings whose
//! stamps lie before the call (hardware-pointer or audio timestamps) are exact: both bounds
//! close on the stamp. No I/O and no clock reads here.

use crate::clock::LocalNs;
use serde::Serialize;
use std::collections::VecDeque;

/// Largest rate error assumed before the rate is measured: DAC and CPU clock together.
const PRIOR_PPM: f64 = 1000.0;
/// The rate's uncertainty never counts as less than this (crystals wander with temperature).
const FLOOR_PPM: f64 = 1.0;
/// Narrowest bracket kept: below this, readings only contradict each other (edge jitter).
const MIN_BRACKET_NS: f64 = 2_000.0;
/// Upper bounds for the rate: one per bucket this long (the lowest), the last 30 s.
const BUCKET_NS: f64 = 20_000_000.0;
const WINDOW_NS: f64 = 30_000_000_000.0;
const BOUNDS: usize = 1536;
/// The rate is fitted once the bounds span this long.
const FIT_AFTER_NS: f64 = 1_000_000_000.0;
/// A contradiction this much beyond a step restarts the model.
const RESTART_SLACK_NS: f64 = 3_000_000.0;
/// Pointer steps shorter than this need no probing: a reading is at most this stale.
const PROBE_ABOVE_NS: f64 = 400_000.0;
/// Bracket width before anything is known: the longest pointer step expected.
const UNKNOWN_NS: f64 = 25_000_000.0;
/// Position increments kept to detect the step.
const INCREMENTS: usize = 32;

/// How a device stamps its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stamps {
    /// When it is read (ALSA plugins, most drivers): stale by up to a pointer step.
    AtCall,
    /// When the position moved (hardware-pointer or audio timestamps): exact.
    AtPointerUpdate,
}

/// One status reading of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Local time just before the status call.
    pub before: LocalNs,
    /// The time the device gave with its status.
    pub stamp: LocalNs,
    /// Local time just after the call.
    pub after: LocalNs,
    /// Frames the device had consumed since it started (frames written less its delay).
    pub position: i64,
}

/// What the model has found out about the device, for the API.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DeviceClockStatus {
    /// Frames the position moves by at a time (1: exact).
    pub pointer_step_frames: u64,
    pub stamps: Stamps,
    /// The DAC's rate against this box's clock, ppm (positive: fast).
    pub rate_ppm: f64,
    /// Width of the bracket around the DAC's position, µs (how well it is known).
    pub uncertainty_us: f64,
    /// Times the model started over (device restarted or stalled).
    pub restarts: u64,
}

/// The model. Times are ns since `origin`, positions frames since the device started.
#[derive(Debug, Clone)]
pub struct DeviceClock {
    nominal: f64,
    /// Local ns per DAC frame, and its uncertainty.
    rate: f64,
    rate_sigma: f64,
    origin: Option<LocalNs>,
    /// The device reached `p_ref` within `(lo, hi]`.
    p_ref: i64,
    lo: f64,
    hi: f64,
    increments: VecDeque<i64>,
    step: i64,
    /// (position, time) of the first reading that showed a new position: upper bounds that a
    /// late edge only ever lifts. The lowest of each closed bucket, and of the open one with
    /// its start.
    bounds: VecDeque<(i64, f64)>,
    open: Option<(f64, (i64, f64))>,
    /// Scratch for the hull (kept: the playout thread does not allocate while it plays).
    hull: Vec<(f64, f64)>,
    /// The last 64 readings' stamp kinds (bit set: at call).
    at_call: u64,
    kinds: u32,
    /// When the caller was asked to read next, and how late it reads (ns, smoothed).
    asked: Option<f64>,
    lateness: f64,
    restarts: u64,
}

impl DeviceClock {
    /// A model for a device playing `rate` frames per second.
    pub fn new(rate: u32) -> Self {
        let nominal = 1e9 / rate.max(1) as f64;
        DeviceClock {
            nominal,
            rate: nominal,
            rate_sigma: nominal * PRIOR_PPM * 1e-6,
            origin: None,
            p_ref: 0,
            lo: 0.0,
            hi: 0.0,
            increments: VecDeque::with_capacity(INCREMENTS),
            step: 1,
            bounds: VecDeque::with_capacity(BOUNDS),
            open: None,
            hull: Vec::with_capacity(BOUNDS),
            at_call: 0,
            kinds: 0,
            asked: None,
            lateness: 0.0,
            restarts: 0,
        }
    }

    /// Forgets the device's position (it restarted: opened, recovered from an xrun). Its rate
    /// and the kind of pointer and stamps it has are kept: they are the device's, not the run's.
    pub fn reset(&mut self) {
        self.origin = None;
        self.bounds.clear();
        self.open = None;
        self.asked = None;
    }

    /// Takes one reading in.
    pub fn handle_reading(&mut self, r: Reading) {
        let early = r.stamp.0 < r.before.0 - 1_000;
        self.at_call = (self.at_call << 1) | u64::from(!early);
        self.kinds = (self.kinds + 1).min(64);
        // A stamp before the call is exact when the device stamps that way (not just noise).
        let exact = early && self.stamps() == Stamps::AtPointerUpdate;
        let Some(origin) = self.origin else {
            self.start(r);
            return;
        };
        // A stamp at the call may have been taken before the pointer was read, and the thread
        // may have been preempted in between (a loaded machine): only the clock reads around
        // the call bound it for sure. An exact stamp is the moment itself.
        let (t_lo, t_hi) = if exact {
            let t = r.stamp.since(origin) as f64;
            (t, t)
        } else {
            (r.before.since(origin) as f64, r.after.since(origin) as f64)
        };
        if let Some(asked) = self.asked.take() {
            let late = (r.before.since(origin) as f64 - asked).clamp(0.0, 2_000_000.0);
            self.lateness += (late - self.lateness) / 8.0;
        }
        let dp = r.position - self.p_ref;
        if dp < 0 {
            // The position went back: the device restarted without telling.
            self.restart(r);
            return;
        }
        if dp > 0 {
            self.note_increment(dp);
            let widen = self.rate_sigma * dp as f64;
            self.lo += self.rate * dp as f64 - widen;
            self.hi += self.rate * dp as f64 + widen;
            self.p_ref = r.position;
            self.add_bound(r.position, t_hi);
        }
        // τ(p) ≤ t_hi; and the next step had not come: τ(p + step) > t_lo. An exact stamp is
        // τ(p).
        let hi = t_hi;
        let lo = if exact {
            t_hi - MIN_BRACKET_NS
        } else if self.increments.len() < 2 {
            // The step is not known yet: no lower bound.
            f64::NEG_INFINITY
        } else {
            t_lo - (self.rate + self.rate_sigma) * self.step as f64
        };
        let conflict = (lo - self.hi).max(self.lo - hi);
        // Until the step is known, a device that has not moved yet is not a contradiction.
        let step_ns = if self.increments.len() < 2 {
            self.step_ns().max(UNKNOWN_NS)
        } else {
            self.step_ns()
        };
        if conflict > step_ns + RESTART_SLACK_NS {
            self.restart(r);
            return;
        }
        self.hi = self.hi.min(hi);
        self.lo = self.lo.max(lo);
        if self.lo > self.hi - MIN_BRACKET_NS {
            // Jittery edges: the early side wins.
            self.lo = self.hi - MIN_BRACKET_NS;
        }
    }

    fn start(&mut self, r: Reading) {
        self.origin = Some(r.stamp);
        self.p_ref = r.position;
        self.hi = 0.0;
        self.lo = -UNKNOWN_NS;
        self.bounds.clear();
        self.open = None;
        self.add_bound(r.position, 0.0);
        self.asked = None;
    }

    fn restart(&mut self, r: Reading) {
        self.restarts += 1;
        self.start(r);
    }

    fn step_ns(&self) -> f64 {
        self.rate * self.step as f64
    }

    /// The step is the greatest common divisor of the recent increments, unless they share
    /// no useful one (an exact pointer, or an irregular one): then the smallest increment.
    fn note_increment(&mut self, dp: i64) {
        if self.increments.len() == INCREMENTS {
            self.increments.pop_front();
        }
        self.increments.push_back(dp);
        let smallest = self.increments.iter().copied().min().unwrap_or(1);
        let common = self.increments.iter().copied().fold(0, gcd);
        self.step = if common >= 32 { common } else { smallest }.max(1);
    }

    /// An upper bound (the device passed `p` at or before `t`) joins the rate fit as the
    /// lowest of its 20 ms bucket against the model's line; each closed bucket refits.
    fn add_bound(&mut self, p: i64, t: f64) {
        let height = |m: &Self, (p, t): (i64, f64)| t - m.mid() - m.rate * (p - m.p_ref) as f64;
        match self.open {
            Some((start, best)) if t - start < BUCKET_NS => {
                if height(self, (p, t)) < height(self, best) {
                    self.open = Some((start, (p, t)));
                }
            }
            Some((_, best)) => {
                while self.bounds.len() >= BOUNDS
                    || self.bounds.front().is_some_and(|b| t - b.1 > WINDOW_NS)
                {
                    self.bounds.pop_front();
                }
                self.bounds.push_back(best);
                self.open = Some((t, (p, t)));
                self.fit_rate();
            }
            None => self.open = Some((t, (p, t))),
        }
    }

    /// The rate from the line under every upper bound that lies closest to them all (the
    /// linear program of Moon, Skelly and Towsley for clock skew under one-sided delays: the
    /// edge of the bounds' lower hull above their mean position). A late callback or a late
    /// reading only lifts a bound, so the line rests on the earliest ones. Its uncertainty
    /// shrinks with the span: 30 ppm over 1 s, 1 ppm from 30 s.
    fn fit_rate(&mut self) {
        let n = self.bounds.len();
        let (Some(&(pa, ta)), Some(&(_, tz))) = (self.bounds.front(), self.bounds.back()) else {
            return;
        };
        if n < 8 || tz - ta < FIT_AFTER_NS {
            return;
        }
        // Heights against the current rate keep the numbers small; the hull is the same.
        let rate = self.rate;
        let hull = &mut self.hull;
        hull.clear();
        let mut sum = 0.0;
        for &(p, t) in &self.bounds {
            let x = (p - pa) as f64;
            let c = (x, t - ta - rate * x);
            sum += x;
            while let [.., a, b] = hull[..] {
                if (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0) > 0.0 {
                    break;
                }
                hull.pop();
            }
            hull.push(c);
        }
        let mean = sum / n as f64;
        let Some((a, b)) = hull
            .windows(2)
            .find(|w| w[1].0 >= mean)
            .map(|w| (w[0], w[1]))
        else {
            return;
        };
        let slope = rate + (b.1 - a.1) / (b.0 - a.0);
        if ((slope / self.nominal) - 1.0).abs() > 2.0 * PRIOR_PPM * 1e-6 {
            return;
        }
        // The bracket, moved forward by rates still being learned, may have come to rest
        // before the line under every bound, where no edge can be: it moves up to it.
        let line = ta + a.1 + rate * a.0 + slope * ((self.p_ref - pa) as f64 - a.0);
        let lift = line - self.hi;
        if lift > 0.0 {
            self.hi += lift;
            self.lo += lift;
        }
        self.rate = slope;
        let ppm = (30e9 / (tz - ta)).clamp(FLOOR_PPM, PRIOR_PPM);
        self.rate_sigma = self.nominal * ppm * 1e-6;
    }

    fn mid(&self) -> f64 {
        0.5 * (self.lo + self.hi)
    }

    /// When the device consumes frame `frame` (counted like `Reading::position`), local time:
    /// the frame after the last one written is the next one heard. None before any reading.
    pub fn heard(&self, frame: i64) -> Option<LocalNs> {
        let origin = self.origin?;
        let t = self.mid() + self.rate * (frame - self.p_ref) as f64;
        Some(origin.plus(t.round() as i64))
    }

    /// When to read the device next, given that the caller would wake at `natural` and may wake
    /// as early as `earliest`: at the middle of the bracket, moved by whole steps to at most one
    /// step before `natural` (earlier is always safe for a refill). Devices with a fine pointer
    /// or exact stamps need no probing, and a probe before `earliest` is not asked for: then
    /// `natural` itself.
    pub fn probe(&mut self, natural: LocalNs, earliest: LocalNs) -> LocalNs {
        let Some(origin) = self.origin else {
            return natural;
        };
        let step = self.step_ns();
        if step < PROBE_ABOVE_NS || self.stamps() == Stamps::AtPointerUpdate {
            return natural;
        }
        let aim = self.mid() - self.lateness;
        let want = natural.since(origin) as f64;
        let k = ((want - aim) / step).floor();
        let at = aim + k * step;
        if at < earliest.since(origin) as f64 {
            return natural;
        }
        self.asked = Some(at);
        origin.plus(at.round() as i64)
    }

    /// How the device stamps its status (most of the last 64 readings).
    pub fn stamps(&self) -> Stamps {
        let n = self.kinds.min(64);
        let mask = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        if 2 * (self.at_call & mask).count_ones() >= n {
            Stamps::AtCall
        } else {
            Stamps::AtPointerUpdate
        }
    }

    /// What the model knows, for the API.
    pub fn status(&self) -> DeviceClockStatus {
        DeviceClockStatus {
            pointer_step_frames: self.step as u64,
            stamps: self.stamps(),
            rate_ppm: (self.nominal / self.rate - 1.0) * 1e6,
            uncertainty_us: (self.hi - self.lo) / 1000.0,
            restarts: self.restarts,
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device consuming `rate_hz` (true) frames per second of local time from `start`, whose
    /// position moves `step` frames at a time.
    struct Dev {
        hz: f64,
        step: i64,
        start: f64,
        /// Stamps at the moment the position moved (true) or at the call.
        exact: bool,
        /// Each edge comes this late (ns; a plugin's callback): the least, and the most at
        /// random, with one edge in 50 late by 2 ms (a loaded machine).
        edge_late: (f64, f64),
    }

    impl Dev {
        fn position(&self, t: f64) -> i64 {
            let played = ((t - self.start) * self.hz * 1e-9).max(0.0);
            let p = (played / self.step as f64).floor() as i64 * self.step;
            if p > 0 && t < self.when(p) + self.late(p) {
                p - self.step
            } else {
                p
            }
        }
        fn late(&self, p: i64) -> f64 {
            let mut r = Rng(p as u64 ^ 0x9e37_79b9_7f4a_7c15);
            r.uniform();
            if self.edge_late.1 > 0.0 && r.uniform() < 0.02 {
                return 2e6;
            }
            self.edge_late.0 + r.uniform() * (self.edge_late.1 - self.edge_late.0)
        }
        fn when(&self, frame: i64) -> f64 {
            self.start + frame as f64 * 1e9 / self.hz
        }
        fn read(&self, t: f64) -> Reading {
            let p = self.position(t);
            let stamp = if self.exact {
                self.when(p)
            } else {
                t + 1_000.0
            };
            Reading {
                before: LocalNs(t as i64),
                stamp: LocalNs(stamp as i64),
                after: LocalNs(t as i64 + 2_000),
                position: p,
            }
        }
    }

    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Wakes every 80 ms (a lattice: phase-locked to a device whose step divides it), or at the
    /// model's probe time before that, late by `late_us` at random; reads the device 8 times
    /// 30 µs apart (a refill). Returns the worst |error| of the predicted heard time, µs, in
    /// each second.
    fn run(
        dev: &mut Dev,
        secs: usize,
        late_us: (f64, f64),
        probe: bool,
    ) -> (DeviceClock, Vec<f64>) {
        let mut m = DeviceClock::new(48_000);
        let mut rng = Rng(7);
        let mut worst = vec![0.0f64; secs];
        let wakes = secs * 1000 / 80;
        for w in 1..wakes {
            let natural = dev.start + w as f64 * 80e6;
            let at = if probe {
                m.probe(LocalNs(natural as i64), LocalNs(0)).0 as f64
            } else {
                natural
            };
            let late = (late_us.0 + rng.uniform() * (late_us.1 - late_us.0)) * 1e3;
            for i in 0..8 {
                let t = at.max(natural - 30e6) + late + i as f64 * 30e3;
                m.handle_reading(dev.read(t));
                let frame = dev.position(t) + 4_800;
                let err = (m.heard(frame).unwrap().0 as f64 - dev.when(frame)) / 1e3;
                let s = ((t - dev.start) / 1e9) as usize;
                if s < secs {
                    worst[s] = worst[s].max(err.abs());
                }
            }
        }
        (m, worst)
    }

    fn dev(ppm: f64, step: i64) -> Dev {
        Dev {
            hz: 48_000.0 * (1.0 + ppm * 1e-6),
            step,
            start: 3e9,
            exact: false,
            edge_late: (0.0, 0.0),
        }
    }

    #[test]
    fn a_coarse_pointer_stamped_at_the_call_is_found_to_a_few_microseconds() {
        // Steps of 10 ms (the Pi's firmware audio), 256 and 1024 frames (ALSA plugins), wake-ups
        // on an 80 ms lattice that the 10 ms and 256-frame steps divide: without probing every
        // reading would see the same phase of the sawtooth.
        for (ppm, step) in [(450.0, 480), (0.0, 256), (-500.0, 1024), (120.0, 48)] {
            let (m, worst) = run(&mut dev(ppm, step), 20, (30.0, 120.0), true);
            let st = m.status();
            assert_eq!(
                st.pointer_step_frames, step as u64,
                "{ppm} ppm, step {step}"
            );
            assert_eq!(st.stamps, Stamps::AtCall);
            assert_eq!(st.restarts, 0);
            assert!((st.rate_ppm - ppm).abs() < 3.0, "{ppm} ppm: {st:?}");
            assert!(worst[2] < 100.0, "{ppm} ppm, step {step}: {worst:?}");
            assert!(
                worst[5..].iter().all(|&e| e < 10.0),
                "{ppm} ppm, step {step}: {worst:?}"
            );
        }
    }

    #[test]
    fn wake_ups_jittered_by_milliseconds_still_converge() {
        let (_, worst) = run(&mut dev(-300.0, 480), 30, (0.0, 3_000.0), true);
        assert!(worst[10..].iter().all(|&e| e < 20.0), "{worst:?}");
    }

    #[test]
    fn late_edges_and_late_wake_ups_leave_the_rate_and_the_earliest_edges() {
        // A plugin on a loaded machine: each edge 20-300 µs late, one in 50 by 2 ms; wake-ups
        // up to 3 ms late. The model finds the rate and stays near the earliest edges (20 µs
        // late, as for every speaker on that device): within 200 µs of them after 10 s, what
        // it holds today (35-150 µs measured), not yet the goal.
        for (ppm, step) in [(-200.0, 256), (150.0, 1024)] {
            let mut d = dev(ppm, step);
            d.edge_late = (20e3, 300e3);
            let (m, worst) = run(&mut d, 30, (0.0, 3_000.0), true);
            let st = m.status();
            assert_eq!(st.restarts, 0, "{st:?}");
            assert!((st.rate_ppm - ppm).abs() < 5.0, "{ppm} ppm: {st:?}");
            let off: Vec<f64> = worst[10..].iter().map(|e| e.abs() - 20.0).collect();
            assert!(off.iter().all(|&e| e.abs() < 200.0), "{ppm} ppm: {worst:?}");
        }
    }

    #[test]
    fn without_probing_the_phase_locked_readings_leave_the_error_a_step_wide() {
        // The reason for probing: the same device and lattice, readings where the caller would
        // have woken anyway, stay off by a good part of the 10 ms step.
        let (_, worst) = run(&mut dev(0.0, 480), 20, (30.0, 60.0), false);
        assert!(worst[10..].iter().all(|&e| e > 500.0), "{worst:?}");
    }

    #[test]
    fn exact_pointers_and_exact_stamps_need_no_probing() {
        let (m, worst) = run(&mut dev(200.0, 1), 10, (30.0, 120.0), true);
        assert_eq!(m.status().pointer_step_frames, 1);
        assert!(worst[3..].iter().all(|&e| e < 25.0), "{worst:?}");
        let mut d = dev(-450.0, 480);
        d.exact = true;
        let (m, worst) = run(&mut d, 10, (30.0, 120.0), false);
        assert_eq!(m.status().stamps, Stamps::AtPointerUpdate);
        assert!(worst[2..].iter().all(|&e| e < 5.0), "{worst:?}");
    }

    #[test]
    fn a_device_that_stalls_is_learned_again() {
        let mut d = dev(100.0, 256);
        let (mut m, _) = run(&mut d, 5, (30.0, 120.0), true);
        // The device loses 50 ms (an underrun it did not report): its position is 50 ms behind
        // the model's line from now on.
        let t = d.start + 5.2e9;
        d.start += 50e6;
        for k in 0..200 {
            let at = m.probe(LocalNs((t + k as f64 * 80e6) as i64), LocalNs(0)).0 as f64 + 60e3;
            for i in 0..8 {
                m.handle_reading(d.read(at + i as f64 * 30e3));
            }
        }
        assert_eq!(m.status().restarts, 1);
        let t = t + 200.0 * 80e6;
        let frame = d.position(t) + 4_800;
        let err = (m.heard(frame).unwrap().0 as f64 - d.when(frame)) / 1e3;
        assert!(err.abs() < 10.0, "{err} µs");
    }
}
