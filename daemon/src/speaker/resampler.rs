//! The playout resampler: turns the stream's frames (one per slot of the controller's grid) into
//! the DAC's frames when the two clocks differ by up to ±1000 ppm, at a fractional read position
//! so that alignment is finer than a sample.
//!
//! Why not rubato here: the playout servo needs the exact fractional read position of every
//! output frame (it is what the timing error is measured against), and rubato's asynchronous
//! resamplers do not expose it. This one is a polyphase windowed-sinc interpolator (32 taps,
//! Kaiser window, 512 phases with linear interpolation between them): about −110 dB of
//! interpolation error for audio-band tones, no allocation after construction. At a ratio of
//! exactly one and an integer position it copies frames bit-exact.

/// Taps of the interpolation kernel (even).
pub const TAPS: usize = 32;
const HALF: usize = TAPS / 2;
const PHASES: usize = 512;

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    for k in 1..50 {
        term *= (x / (2.0 * k as f64)).powi(2);
        sum += term;
        if term < 1e-12 * sum {
            break;
        }
    }
    sum
}

/// Fractional-position resampler over a ring of input frames.
pub struct FracResampler {
    channels: usize,
    /// `(PHASES + 1) x TAPS` kernel table; row p is the kernel for fractional offset p / PHASES.
    table: Vec<f32>,
    /// Input history: frames for absolute input positions `[base, base + len)`.
    hist: Vec<f32>,
    cap: usize,
    base: i64,
    len: usize,
    /// Absolute input position of the next output frame.
    x: f64,
}

impl FracResampler {
    /// `capacity`: input frames kept (must exceed the largest output chunk × 1.01 + TAPS).
    pub fn new(channels: usize, capacity: usize) -> Self {
        let beta = 9.0;
        let cutoff = 0.92; // of Nyquist: flat to 20 kHz at 48 kHz
        let mut table = vec![0.0f32; (PHASES + 1) * TAPS];
        for p in 0..=PHASES {
            let frac = p as f64 / PHASES as f64;
            let mut row = [0.0f64; TAPS];
            let mut sum = 0.0;
            for (k, r) in row.iter_mut().enumerate() {
                // tap k sits at input offset (k - HALF + 1) from floor(x); distance from x:
                let t = (k as f64 - HALF as f64 + 1.0) - frac;
                let sinc = if t.abs() < 1e-12 {
                    1.0
                } else {
                    (std::f64::consts::PI * cutoff * t).sin() / (std::f64::consts::PI * t)
                };
                let w = t / HALF as f64;
                let win = if w.abs() >= 1.0 {
                    0.0
                } else {
                    bessel_i0(beta * (1.0 - w * w).sqrt()) / bessel_i0(beta)
                };
                *r = sinc * win;
                sum += *r;
            }
            for (k, r) in row.iter().enumerate() {
                table[p * TAPS + k] = (r / sum) as f32;
            }
        }
        // Phase 0 and PHASES are exact unit impulses, so integer positions copy input unchanged.
        for p in [0, PHASES] {
            let row = &mut table[p * TAPS..(p + 1) * TAPS];
            row.fill(0.0);
            row[if p == 0 { HALF - 1 } else { HALF }] = 1.0;
        }
        FracResampler {
            channels,
            table,
            hist: vec![0.0; capacity * channels],
            cap: capacity,
            base: 0,
            len: 0,
            x: 0.0,
        }
    }

    /// Forgets all input; the next output frame reads input position `x`, and the next input
    /// frame pushed is position `floor(x)` (silence before it).
    pub fn reset(&mut self, x: f64) {
        self.base = x.floor() as i64 - HALF as i64;
        self.len = HALF;
        self.hist[..HALF * self.channels].fill(0.0);
        self.x = x;
    }

    /// Input position of the next output frame.
    pub fn position(&self) -> f64 {
        self.x
    }

    /// Absolute input position of the next frame `push` expects.
    pub fn next_input(&self) -> i64 {
        self.base + self.len as i64
    }

    /// Input frames needed before `frames` output frames can be made at `step` input frames per
    /// output frame.
    pub fn input_needed(&self, frames: usize, step: f64) -> usize {
        let last = self.x + step * frames as f64;
        let need_end = floor_i64(last) + HALF as i64 + 2;
        (need_end - self.next_input()).max(0) as usize
    }

    /// Appends interleaved input frames.
    pub fn push(&mut self, input: &[f32]) {
        let n = input.len() / self.channels;
        // Keep only what can still be read: from floor(x) - HALF on.
        let keep_from = (floor_i64(self.x) - HALF as i64).max(self.base);
        let drop = ((keep_from - self.base) as usize).min(self.len);
        if drop > 0 {
            let c = self.channels;
            self.hist.copy_within(drop * c..self.len * c, 0);
            self.base += drop as i64;
            self.len -= drop;
        }
        let room = self.cap - self.len;
        let n = n.min(room);
        let c = self.channels;
        self.hist[self.len * c..(self.len + n) * c].copy_from_slice(&input[..n * c]);
        self.len += n;
    }

    /// Writes `out.len() / channels` frames, advancing the position by `step` per frame.
    /// Frames whose input is missing come out silent.
    pub fn process(&mut self, step: f64, out: &mut [f32]) {
        let c = self.channels;
        if step == 1.0 && self.x.fract() == 0.0 {
            // At unity on a whole frame: a bit-exact copy of the input, in one piece.
            let frames = out.len() / c;
            let start = self.x as i64 - self.base;
            let lo = (-start).clamp(0, frames as i64) as usize;
            let hi = (self.len as i64 - start).clamp(lo as i64, frames as i64) as usize;
            out[..lo * c].fill(0.0);
            if hi > lo {
                let from = (start + lo as i64) as usize * c;
                out[lo * c..hi * c].copy_from_slice(&self.hist[from..from + (hi - lo) * c]);
            }
            out[hi * c..].fill(0.0);
            self.x += frames as f64;
            return;
        }
        for frame in out.chunks_exact_mut(c) {
            let i0 = floor_i64(self.x);
            let fl = i0 as f64;
            {
                let start = i0 - HALF as i64 + 1 - self.base;
                if start < 0 || start as usize + TAPS > self.len {
                    frame.fill(0.0);
                } else {
                    let pf = (self.x - fl) * PHASES as f64;
                    let p = (pf as usize).min(PHASES - 1);
                    let a = (pf - p as f64) as f32;
                    let r0 = &self.table[p * TAPS..(p + 1) * TAPS];
                    let r1 = &self.table[(p + 1) * TAPS..(p + 2) * TAPS];
                    // The kernel for this position, then one dot product per channel with
                    // eight partial sums (fixed sizes and independent lanes: the compiler
                    // vectorises both loops).
                    let mut h = [0.0f32; TAPS];
                    for ((hk, &x0), &x1) in h.iter_mut().zip(r0).zip(r1) {
                        *hk = x0 + a * (x1 - x0);
                    }
                    let s = start as usize;
                    let win = &self.hist[s * c..(s + TAPS) * c];
                    if c == 2 {
                        let (mut l, mut r) = ([0.0f32; 8], [0.0f32; 8]);
                        for (hs, xs) in h.chunks_exact(8).zip(win.chunks_exact(16)) {
                            for j in 0..8 {
                                l[j] += hs[j] * xs[2 * j];
                                r[j] += hs[j] * xs[2 * j + 1];
                            }
                        }
                        frame[0] = l.iter().sum();
                        frame[1] = r.iter().sum();
                    } else {
                        for (ch, o) in frame.iter_mut().enumerate() {
                            let mut acc = [0.0f32; 8];
                            for (k, hk) in h.iter().enumerate() {
                                acc[k % 8] += hk * win[k * c + ch];
                            }
                            *o = acc.iter().sum();
                        }
                    }
                }
            }
            self.x += step;
        }
    }
}

/// `x.floor() as i64` without the libm call `f64::floor` is on baseline x86-64.
#[inline]
fn floor_i64(x: f64) -> i64 {
    let t = x as i64;
    if (t as f64) > x {
        t - 1
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audio::measure::thd_n_db;

    fn run(step: f64, start: f64, hz: f64, n: usize) -> Vec<f32> {
        let input: Vec<f32> = (0..n + 200)
            .map(|i| (0.5 * (2.0 * std::f64::consts::PI * hz * i as f64 / 48_000.0).sin()) as f32)
            .collect();
        let mut r = FracResampler::new(1, 4096);
        r.reset(start);
        let mut out = vec![];
        let mut fed = 0usize;
        let mut chunk = vec![0.0f32; 480];
        while out.len() < n {
            let need = r.input_needed(480, step);
            let from = r.next_input() as usize;
            let to = (from + need).min(input.len());
            if to > from {
                r.push(&input[from..to]);
                fed = to;
            }
            r.process(step, &mut chunk);
            out.extend_from_slice(&chunk);
        }
        let _ = fed;
        out
    }

    #[test]
    fn unity_at_integer_position_is_bit_exact() {
        let out = run(1.0, 100.0, 1000.0, 4800);
        for (i, v) in out.iter().enumerate() {
            let want = (0.5
                * (2.0 * std::f64::consts::PI * 1000.0 * (i + 100) as f64 / 48_000.0).sin())
                as f32;
            assert_eq!(*v, want);
        }
    }

    #[test]
    fn unity_copy_pads_missing_input_with_silence() {
        // Position 10 with input pushed from frame 10 on, only 5 frames of it: 5 copied, the
        // rest silent; then the position is 18 and the next input frame is read next.
        let mut r = FracResampler::new(2, 64);
        r.reset(10.0);
        let input: Vec<f32> = (0..10).map(|i| i as f32 + 1.0).collect();
        r.push(&input);
        let mut out = vec![9.0f32; 16];
        r.process(1.0, &mut out);
        assert_eq!(&out[..10], &input[..]);
        assert!(out[10..].iter().all(|&v| v == 0.0), "{out:?}");
        assert_eq!(r.position(), 18.0);
        // Reading from before the first input frame: silence first, then the input.
        let mut r = FracResampler::new(2, 64);
        r.reset(3.0);
        r.push(&input);
        let mut out = vec![9.0f32; 16];
        r.process(1.0, &mut out);
        assert_eq!(&out[..10], &input[..]);
        assert!(out[10..].iter().all(|&v| v == 0.0), "{out:?}");
        assert_eq!(super::floor_i64(-2.5), -3);
        assert_eq!(super::floor_i64(-3.0), -3);
        assert_eq!(super::floor_i64(2.999), 2);
    }

    #[test]
    fn tone_through_400_ppm_is_clean() {
        // a DAC 400 ppm fast consumes 1.0004 input frames per output frame
        let out = run(1.0004, 50.3, 1000.0, 48_000);
        let x: Vec<f64> = out[1000..].iter().map(|v| *v as f64).collect();
        let (db, _) = thd_n_db(&x, 1000.0 * 1.0004, 48_000.0);
        println!("THD+N at 400 ppm: {db:.1} dB");
        assert!(db < -90.0, "THD+N {db:.1} dB");
    }

    #[test]
    fn fractional_delay_is_accurate() {
        // position 100.25: output i is input at i + 100.25
        let out = run(1.0, 100.25, 440.0, 4800);
        for (i, v) in out.iter().enumerate().skip(TAPS) {
            let want =
                0.5 * (2.0 * std::f64::consts::PI * 440.0 * (i as f64 + 100.25) / 48_000.0).sin();
            assert!((*v as f64 - want).abs() < 2e-5, "frame {i}: {v} vs {want}");
        }
    }
}
