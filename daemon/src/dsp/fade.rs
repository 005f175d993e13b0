//! The one fade shape: a raised cosine, from silence to full (or back) without a step in level
//! or slope. Transport fades on the controller, concealment around a hole and re-anchoring on
//! the speaker all use it.

/// Gain at frame `pos` of a fade of `len` frames from silence to full (sampled at the middle
/// of each frame; 1 past the end).
pub fn rising(pos: usize, len: usize) -> f32 {
    let x = ((pos as f32 + 0.5) / len.max(1) as f32).min(1.0);
    0.5 - 0.5 * (std::f32::consts::PI * x).cos()
}

/// Fades interleaved `samples` of `channels` in (from silence) or out (to silence) over their
/// whole length.
pub fn apply(samples: &mut [f32], channels: usize, fade_in: bool) {
    let n = samples.len() / channels.max(1);
    for (i, frame) in samples.chunks_exact_mut(channels.max(1)).enumerate() {
        let up = rising(i, n);
        let g = if fade_in { up } else { 1.0 - up };
        for s in frame {
            *s *= g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fade_is_symmetric_and_ends_where_it_should() {
        let n = 480;
        assert!(rising(0, n) < 1e-4 && rising(n - 1, n) > 1.0 - 1e-4);
        assert_eq!(rising(n, n), 1.0);
        for i in 0..n {
            assert!((rising(i, n) + rising(n - 1 - i, n) - 1.0).abs() < 1e-6);
        }
        let mut s = vec![1.0f32; 2 * n];
        apply(&mut s, 2, false);
        assert!(s[0] > 0.9999 && s[2 * n - 1] < 1e-4 && s[0] == s[1]);
    }
}
