//! Smooth volume: the gain glides to its target (no zipper noise); unity gain is bit-exact.

/// Gain for a volume 0..=100 (cubic: perceptually even steps, 50 ≈ −18 dB).
pub fn gain_for(volume: u8, muted: bool) -> f32 {
    if muted {
        return 0.0;
    }
    let v = volume.min(100) as f32 / 100.0;
    v * v * v
}

/// A gain that moves towards its target by at most `step` per frame.
pub struct VolumeRamp {
    gain: f32,
    step: f32,
}

impl VolumeRamp {
    /// `ramp_frames`: frames for a full 0 → 1 glide.
    pub fn new(initial: f32, ramp_frames: usize) -> Self {
        VolumeRamp {
            gain: initial,
            step: 1.0 / ramp_frames.max(1) as f32,
        }
    }

    /// Current gain.
    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// Applies the gain to interleaved `samples`, gliding towards `target`.
    pub fn apply(&mut self, target: f32, samples: &mut [f32], channels: usize) {
        if self.gain == target {
            if target != 1.0 {
                samples.iter_mut().for_each(|s| *s *= target);
            }
            return;
        }
        for frame in samples.chunks_exact_mut(channels) {
            let d = (target - self.gain).clamp(-self.step, self.step);
            self.gain += d;
            if (self.gain - target).abs() < 1e-7 {
                self.gain = target;
            }
            frame.iter_mut().for_each(|s| *s *= self.gain);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unity_is_exact_and_changes_glide() {
        let mut r = VolumeRamp::new(1.0, 100);
        let mut x = vec![0.123f32; 8];
        r.apply(1.0, &mut x, 2);
        assert!(x.iter().all(|v| *v == 0.123));
        let mut y = vec![1.0f32; 400];
        r.apply(0.0, &mut y, 2);
        // never jumps by more than one step per frame
        for w in y.chunks(2).collect::<Vec<_>>().windows(2) {
            assert!((w[0][0] - w[1][0]).abs() <= 0.0101);
        }
        assert_eq!(r.gain(), 0.0);
        assert_eq!(gain_for(100, false), 1.0);
        assert_eq!(gain_for(80, true), 0.0);
    }
}
