//! The playout rate servo (pure logic): from the timing of each write it sets how many stream
//! frames the resampler reads per DAC frame.
//!
//! Two parts. A feed-forward estimate of the DAC's rate against the controller clock: the
//! least-squares slope of "controller time at which the next written frame is heard" over the
//! count of frames written, across a sliding window — after a fraction of a second it knows the
//! drift to a few ppm, so the loop locks fast without winding up an integrator. And a
//! slow proportional loop on the smoothed position error that pulls the alignment below a
//! sample without letting measurement noise wander the read position (that would be FM).
//!
//! While the error stays within half a frame and no drift is seen, the servo stays out of the
//! way and the resampler copies frames bit-exact (a DAC that runs at the controller's rate needs
//! nothing more); once engaged it holds, within ±1000 ppm.

use std::collections::VecDeque;

/// Largest correction, as a ratio offset.
pub(crate) const MAX_PPM: f64 = 1000.0;
/// Drift (ppm) above which the servo engages even before the error reaches half a frame.
const ENGAGE_PPM: f64 = 20.0;
/// Samples kept for the rate estimate.
const WINDOW: usize = 256;

/// Servo state.
#[derive(Debug, Clone)]
pub(crate) struct RateServo {
    rate: f64,
    tau_p: f64,
    /// Low-pass of the error, in updates (one per write).
    smooth_updates: f64,
    err_lp: Option<f64>,
    step: f64,
    engaged: bool,
    /// (frames written, controller ns at which the next frame is heard)
    history: VecDeque<(f64, f64)>,
    /// Their sums for the least-squares slope, kept as points come and go.
    sums: Sums,
    ff: Option<f64>,
}

impl RateServo {
    pub(crate) fn new(rate: u32) -> Self {
        RateServo {
            rate: rate as f64,
            tau_p: 1.0,
            smooth_updates: 25.0,
            err_lp: None,
            step: 1.0,
            engaged: false,
            history: VecDeque::with_capacity(WINDOW),
            sums: Sums::default(),
            ff: None,
        }
    }

    /// Forgets the rate history (the device restarted or the timeline was re-anchored; the
    /// estimate itself is kept).
    pub(crate) fn restart(&mut self) {
        self.history.clear();
        self.sums = Sums::default();
        self.err_lp = None;
    }

    /// Starts the rate estimate at `ratio` (stream frames per DAC frame, as the device clock
    /// and the clock sync know it) when it has none yet: without it the first quarter second
    /// of a cold start ran at 1.0, and a DAC 450 ppm off the controller's clock fell 110 us
    /// behind before the estimate had its span (the sim's first seconds).
    pub(crate) fn prime(&mut self, ratio: f64) {
        if self.ff.is_none() && (ratio - 1.0).abs() <= MAX_PPM * 1e-6 {
            self.ff = Some(ratio);
        }
    }

    /// Feeds one measurement: `written` frames written so far, `heard_ns` the controller time
    /// at which the next one will be heard, `err_frames` the position error (positive: the
    /// output is behind its schedule). Returns the step
    /// (stream frames per DAC frame).
    pub(crate) fn update(&mut self, written: i64, heard_ns: f64, err_frames: f64) -> f64 {
        if self.history.len() == WINDOW {
            if let Some(old) = self.history.pop_front() {
                self.sums.add(old, -1.0);
            }
        }
        let point = (written as f64, heard_ns);
        self.history.push_back(point);
        self.sums.add(point, 1.0);
        self.sums.refresh(&self.history);
        self.estimate_rate();
        if !self.engaged {
            let drift = self.ff.map(|f| (f - 1.0).abs() * 1e6).unwrap_or(0.0);
            if err_frames.abs() <= 0.5 && drift < ENGAGE_PPM {
                return 1.0;
            }
            self.engaged = true;
        }
        let lim = MAX_PPM * 1e-6;
        let ff = self.ff.unwrap_or(1.0) - 1.0;
        // No integral term: the rate estimate already carries the drift, and an integrator
        // wound up during the first fraction of a second would fight it for seconds. A rate
        // estimate off by d leaves a steady error of d * tau_p * rate (2 ppm: 0.04 frame).
        // The error carries the clock model's measurement noise; smooth it so the position does
        // not wander with it (a wandering position is frequency modulation).
        let a = 1.0 / (1.0 + self.smooth_updates);
        let e = *self.err_lp.get_or_insert(err_frames);
        let e = e + a * (err_frames - e);
        self.err_lp = Some(e);
        let p = e / (self.tau_p * self.rate);
        self.step = 1.0 + (ff + p).clamp(-lim, lim);
        self.step
    }

    /// Slope of heard time over frames written, as stream frames per DAC frame.
    fn estimate_rate(&mut self) {
        let n = self.history.len();
        let (Some(first), Some(last)) = (self.history.front(), self.history.back()) else {
            return;
        };
        if n < 16 || last.0 - first.0 < 0.25 * self.rate {
            return;
        }
        if let Some(ns_per_frame) = self.sums.slope(n as f64) {
            self.ff = Some(ns_per_frame * self.rate * 1e-9);
        }
    }

    /// Current step.
    pub(crate) fn step(&self) -> f64 {
        if self.engaged {
            self.step
        } else {
            1.0
        }
    }

    /// Whether the resampler is correcting (false: bit-exact copy).
    pub(crate) fn engaged(&self) -> bool {
        self.engaged
    }
}

/// The sums of a least-squares line through a sliding window of points, each point taken
/// relative to a base (the window's first point when they were last summed afresh): a point
/// in or out costs four additions instead of a pass over the window every period. Summed
/// afresh every `WINDOW` points, so rounding cannot build up and the values stay small.
#[derive(Debug, Clone, Default)]
struct Sums {
    base: Option<(f64, f64)>,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
    /// Points added since the sums were made afresh.
    added: usize,
}

impl Sums {
    /// Adds (`sign` 1) or removes (-1) a point.
    fn add(&mut self, (x, y): (f64, f64), sign: f64) {
        let (bx, by) = *self.base.get_or_insert((x, y));
        let (x, y) = (x - bx, y - by);
        self.x += sign * x;
        self.y += sign * y;
        self.xx += sign * x * x;
        self.xy += sign * x * y;
        self.added += usize::from(sign > 0.0);
    }

    /// Sums `window` afresh, from its first point, once every `WINDOW` points added.
    fn refresh(&mut self, window: &VecDeque<(f64, f64)>) {
        if self.added < WINDOW {
            return;
        }
        *self = Sums {
            base: window.front().copied(),
            ..Sums::default()
        };
        for &p in window {
            self.add(p, 1.0);
        }
        self.added = 0;
    }

    /// The slope of y over x through `n` points, if x varies.
    fn slope(&self, n: f64) -> Option<f64> {
        let var = self.xx - self.x * self.x / n;
        (var > 0.0).then(|| (self.xy - self.x * self.y / n) / var)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a DAC `ppm` off, with `noise_us` of measurement noise; returns the position
    /// error (frames) after each second, and the final step in ppm.
    fn simulate(ppm: f64, noise_us: f64, secs: usize) -> (Vec<f64>, f64, bool) {
        simulate_from(RateServo::new(48_000), ppm, noise_us, secs)
    }

    fn simulate_from(
        mut s: RateServo,
        ppm: f64,
        noise_us: f64,
        secs: usize,
    ) -> (Vec<f64>, f64, bool) {
        let rate = 48_000.0;
        let frames = 480.0;
        let dac_ns_per_frame = 1e9 / (rate * (1.0 + ppm * 1e-6));
        let (mut written, mut pos) = (0.0f64, 0.0f64); // DAC frames written; stream position read
        let mut per_second = vec![];
        let mut seed = 12345u64;
        for i in 0..(secs * 100).max(50) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0 * noise_us * 1000.0;
            let heard = written * dac_ns_per_frame + noise; // when the next written frame is heard
            let due = pos * 1e9 / rate; // when the stream position it will carry is due
            let err = (heard - due) * rate * 1e-9;
            let step = s.update(written as i64, heard, err);
            written += frames;
            pos += frames * step;
            if i % 100 == 99 || (secs == 0 && i == 49) {
                per_second.push((written * dac_ns_per_frame - pos * 1e9 / rate) * rate * 1e-9);
            }
        }
        (per_second, (s.step() - 1.0) * 1e6, s.engaged())
    }

    #[test]
    fn locks_to_dac_drift_within_three_seconds() {
        for ppm in [-500.0, -120.0, 300.0, 450.0] {
            let (err, step_ppm, engaged) = simulate(ppm, 2.0, 20);
            assert!(engaged);
            // a DAC that runs fast needs fewer stream frames per DAC frame
            let want = 1e6 / (1.0 + ppm * 1e-6) - 1e6;
            assert!(
                (step_ppm - want).abs() < 2.0,
                "{ppm} ppm: servo at {step_ppm}, want {want}"
            );
            for (s, e) in err.iter().enumerate().skip(2) {
                assert!(
                    e.abs() < 0.25,
                    "{ppm} ppm: {e} frames off after {} s",
                    s + 1
                );
            }
        }
    }

    #[test]
    fn the_rate_estimate_carries_the_drift() {
        // Guard against the feed-forward silently not working: after 2 s the error is already
        // small, which the proportional term alone (1 s) leaves at ~20 frames at 450 ppm.
        let (err, _, _) = simulate(450.0, 0.0, 3);
        assert!(err[1].abs() < 2.0, "after 2 s: {} frames", err[1]);
    }

    #[test]
    fn a_primed_servo_holds_the_drift_from_the_first_write() {
        // A cold start: a DAC 450 ppm fast. Unprimed, the first half second runs at 1.0 until
        // the estimate has its span (5 frames behind); primed with the ratio the device clock
        // and the clock sync know, it stays within a fraction of a frame.
        let ratio = 1.0 / (1.0 + 450e-6);
        let mut primed = RateServo::new(48_000);
        primed.prime(ratio);
        let (err, _, _) = simulate_from(primed, 450.0, 0.0, 0);
        assert!(err[0].abs() < 0.3, "primed: {} frames after 0.5 s", err[0]);
        let (err, _, _) = simulate_from(RateServo::new(48_000), 450.0, 0.0, 0);
        assert!(
            err[0].abs() > 3.0,
            "unprimed: {} frames after 0.5 s",
            err[0]
        );
        // A ratio beyond the servo's range is not taken.
        let mut s = RateServo::new(48_000);
        s.prime(1.01);
        assert_eq!(s.ff, None);
    }

    #[test]
    fn the_sliding_sums_give_the_slope_of_a_fit_over_the_window() {
        // Hours of points (frames written, heard ns at 21 ppm with 3 us of noise): after
        // every point the slope from the sums kept as points come and go equals the one
        // fitted afresh over the window.
        let mut s = RateServo::new(48_000);
        let mut seed = 7u64;
        for i in 0..20_000i64 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let noise = (seed >> 40) as f64 / (1u64 << 24) as f64 * 3000.0;
            let written = 3_600 * 48_000 + i * 480;
            s.update(written, written as f64 * 20_833.771 + 9e12 + noise, 0.0);
            let n = s.history.len() as f64;
            let (x0, y0) = s.history[0];
            let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
            for &(x, y) in &s.history {
                let (x, y) = (x - x0, y - y0);
                (sx, sy, sxx, sxy) = (sx + x, sy + y, sxx + x * x, sxy + x * y);
            }
            let fresh = (sxy - sx * sy / n) / (sxx - sx * sx / n);
            if let Some(kept) = s.sums.slope(n) {
                assert!((kept - fresh).abs() < 1e-6, "point {i}: {kept} vs {fresh}");
            } else {
                assert_eq!(i, 0);
            }
        }
    }

    #[test]
    fn stays_bit_exact_without_drift() {
        let (_, step_ppm, engaged) = simulate(0.0, 1.0, 10);
        assert!(!engaged);
        assert_eq!(step_ppm, 0.0);
    }

    #[test]
    fn clamps_at_the_limit() {
        let mut s = RateServo::new(48_000);
        for i in 0..1000 {
            s.update(i * 480, 0.0, 1e6);
        }
        assert!((s.step() - 1.0 - MAX_PPM * 1e-6).abs() < 1e-12);
    }
}
