//! Channel remixing: any source layout to the zone's channel count.

use symphonia::core::audio::Channels;

/// A mixing matrix from `inputs` to `outputs` channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Remixer {
    inputs: usize,
    outputs: usize,
    /// Row-major `outputs x inputs`.
    gains: Vec<f32>,
    identity: bool,
}

const MINUS_3DB: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Where a source channel belongs in a stereo mix: (left gain, right gain).
fn stereo_gains(pos: Channels) -> (f32, f32) {
    use symphonia::core::audio::Channels as C;
    if pos.intersects(C::FRONT_LEFT | C::FRONT_LEFT_WIDE | C::FRONT_LEFT_HIGH) {
        (1.0, 0.0)
    } else if pos.intersects(C::FRONT_RIGHT | C::FRONT_RIGHT_WIDE | C::FRONT_RIGHT_HIGH) {
        (0.0, 1.0)
    } else if pos
        .intersects(C::FRONT_CENTRE | C::FRONT_CENTRE_HIGH | C::REAR_CENTRE | C::TOP_CENTRE)
    {
        (MINUS_3DB, MINUS_3DB)
    } else if pos.intersects(
        C::REAR_LEFT
            | C::SIDE_LEFT
            | C::FRONT_LEFT_CENTRE
            | C::REAR_LEFT_CENTRE
            | C::TOP_FRONT_LEFT
            | C::TOP_REAR_LEFT,
    ) {
        (MINUS_3DB, 0.0)
    } else if pos.intersects(
        C::REAR_RIGHT
            | C::SIDE_RIGHT
            | C::FRONT_RIGHT_CENTRE
            | C::REAR_RIGHT_CENTRE
            | C::TOP_FRONT_RIGHT
            | C::TOP_REAR_RIGHT,
    ) {
        (0.0, MINUS_3DB)
    } else {
        // LFE and anything unknown: left out of a stereo mix.
        (0.0, 0.0)
    }
}

impl Remixer {
    /// Builds the matrix. `layout` gives channel positions when the container knows them.
    pub fn new(inputs: usize, outputs: usize, layout: Option<Channels>) -> Remixer {
        let mut g = vec![0.0f32; inputs * outputs];
        let at = |o: usize, i: usize| o * inputs + i;
        if inputs == outputs {
            for c in 0..inputs {
                g[at(c, c)] = 1.0;
            }
        } else if inputs == 1 {
            // mono: the same signal on the front pair (or the only channel)
            for o in 0..outputs.min(2) {
                g[at(o, 0)] = 1.0;
            }
        } else if outputs == 1 {
            for i in 0..inputs {
                g[at(0, i)] = 1.0 / inputs as f32;
            }
        } else if outputs == 2 {
            let positions: Vec<Channels> = layout
                .filter(|l| l.count() == inputs)
                .map(|l| l.iter().collect())
                .unwrap_or_default();
            for i in 0..inputs {
                let (l, r) = match positions.get(i) {
                    Some(p) => stereo_gains(*p),
                    None if i % 2 == 0 => (1.0, 0.0),
                    None => (0.0, 1.0),
                };
                g[at(0, i)] = l;
                g[at(1, i)] = r;
            }
            // Never clip a downmix: scale rows whose gains add up to more than one.
            for o in 0..2 {
                let sum: f32 = (0..inputs).map(|i| g[at(o, i)]).sum();
                if sum > 1.0 {
                    for i in 0..inputs {
                        g[at(o, i)] /= sum;
                    }
                }
            }
        } else {
            for c in 0..inputs.min(outputs) {
                g[at(c, c)] = 1.0;
            }
        }
        Remixer {
            inputs,
            outputs,
            gains: g,
            identity: inputs == outputs,
        }
    }

    /// Input channel count.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Mixes interleaved `input` frames, appending to `out`.
    pub fn process(&self, input: &[f32], out: &mut Vec<f32>) {
        if self.identity {
            out.extend_from_slice(input);
            return;
        }
        for frame in input.chunks_exact(self.inputs) {
            for o in 0..self.outputs {
                let row = &self.gains[o * self.inputs..(o + 1) * self.inputs];
                out.push(row.iter().zip(frame).map(|(g, s)| g * s).sum());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_to_stereo_duplicates() {
        let mut out = vec![];
        Remixer::new(1, 2, None).process(&[0.5, -0.25], &mut out);
        assert_eq!(out, vec![0.5, 0.5, -0.25, -0.25]);
    }

    #[test]
    fn stereo_to_mono_averages() {
        let mut out = vec![];
        Remixer::new(2, 1, None).process(&[0.5, 0.25], &mut out);
        assert_eq!(out, vec![0.375]);
    }

    #[test]
    fn five_one_to_stereo_keeps_sides_apart_and_never_clips() {
        use symphonia::core::audio::Channels as C;
        let layout = C::FRONT_LEFT
            | C::FRONT_RIGHT
            | C::FRONT_CENTRE
            | C::LFE1
            | C::REAR_LEFT
            | C::REAR_RIGHT;
        let m = Remixer::new(6, 2, Some(layout));
        let mut out = vec![];
        m.process(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], &mut out);
        assert!(out[0] > 0.3 && out[1] == 0.0);
        out.clear();
        m.process(&[1.0; 6], &mut out);
        assert!(out.iter().all(|v| *v <= 1.0 + 1e-6), "{out:?}");
    }
}
