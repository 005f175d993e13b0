//! The playout rate servo (pure logic): from the timing error of each write it sets how many
//! stream frames the resampler reads per DAC frame.
//!
//! A PI loop on the position error, in frames. While the error stays within half a frame the
//! servo is not engaged and the resampler copies frames bit-exact (a DAC that runs at the
//! controller's rate needs nothing more); once it leaves that band, the loop takes over for
//! good and holds the alignment below a sample by resampling, within ±1000 ppm.

/// Largest correction, as a ratio offset.
pub const MAX_PPM: f64 = 1000.0;

/// PI servo state.
#[derive(Debug, Clone)]
pub struct RateServo {
    rate: f64,
    /// Proportional time constant, s.
    tau_p: f64,
    /// Integral time constant, s.
    tau_i: f64,
    integ: f64,
    step: f64,
    engaged: bool,
    min_ppm: f64,
    max_ppm: f64,
}

impl RateServo {
    pub fn new(rate: u32) -> Self {
        RateServo {
            rate: rate as f64,
            tau_p: 0.6,
            tau_i: 3.0,
            integ: 0.0,
            step: 1.0,
            engaged: false,
            min_ppm: 0.0,
            max_ppm: 0.0,
        }
    }

    /// Feeds the error (frames; positive: the output is behind its schedule) measured over the
    /// last `dt` seconds, and returns the new step (input frames per output frame).
    pub fn update(&mut self, err_frames: f64, dt: f64) -> f64 {
        if !self.engaged {
            if err_frames.abs() <= 0.5 {
                return 1.0;
            }
            self.engaged = true;
        }
        let lim = MAX_PPM * 1e-6;
        let p = err_frames / (self.tau_p * self.rate);
        self.integ = (self.integ + p * dt / self.tau_i).clamp(-lim, lim);
        self.step = 1.0 + (p + self.integ).clamp(-lim, lim);
        let ppm = (self.step - 1.0) * 1e6;
        self.min_ppm = self.min_ppm.min(ppm);
        self.max_ppm = self.max_ppm.max(ppm);
        self.step
    }

    /// Current step.
    pub fn step(&self) -> f64 {
        if self.engaged {
            self.step
        } else {
            1.0
        }
    }

    /// Whether the resampler is correcting (false: bit-exact copy).
    pub fn engaged(&self) -> bool {
        self.engaged
    }

    /// Range of the correction since the last `reset_range`, ppm.
    pub fn range_ppm(&self) -> (f64, f64) {
        (self.min_ppm, self.max_ppm)
    }

    pub fn reset_range(&mut self) {
        self.min_ppm = (self.step - 1.0) * 1e6;
        self.max_ppm = self.min_ppm;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a DAC `ppm` off: each 10 ms period the output drifts against the stream.
    fn simulate(ppm: f64, secs: f64) -> (f64, f64, bool) {
        let mut s = RateServo::new(48_000);
        let mut err = 0.0f64; // frames
        let dt = 0.01;
        let frames = 480.0;
        let mut last = 0.0;
        for _ in 0..(secs / dt) as usize {
            let step = s.update(err, dt);
            // the DAC plays `frames` frames while the stream advanced frames*(1+ppm):
            err += frames * (1.0 + ppm * 1e-6) - frames * step;
            last = err;
        }
        (last, (s.step() - 1.0) * 1e6, s.engaged())
    }

    #[test]
    fn locks_to_dac_drift_within_a_fraction_of_a_frame() {
        for ppm in [-500.0, -120.0, 300.0, 450.0] {
            let (err, step_ppm, engaged) = simulate(ppm, 20.0);
            assert!(engaged);
            assert!(err.abs() < 0.05, "{ppm} ppm: residual {err} frames");
            assert!(
                (step_ppm - ppm).abs() < 1.0,
                "{ppm} ppm: servo settled at {step_ppm}"
            );
        }
    }

    #[test]
    fn stays_bit_exact_without_drift() {
        let (_, step_ppm, engaged) = simulate(0.0, 10.0);
        assert!(!engaged);
        assert_eq!(step_ppm, 0.0);
    }

    #[test]
    fn clamps_at_the_limit() {
        let mut s = RateServo::new(48_000);
        for _ in 0..1000 {
            s.update(1e6, 0.01);
        }
        assert!((s.step() - 1.0 - MAX_PPM * 1e-6).abs() < 1e-12);
    }
}
