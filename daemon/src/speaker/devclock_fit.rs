//! The device clock's line fits (pure arithmetic, no state).
use super::{MINIMA, MINIMA_AFTER_NS, MIN_BRACKET_NS};
use std::collections::VecDeque;

/// The rate (local ns per frame) from the lowest bound of each second, once they span
/// `MINIMA_AFTER_NS`: a least-squares line through them, then again without those far off it
/// (a second in which no reading came near an edge; a glitch). The hull's chord rests on a
/// few extremes: on a JACK rig its rate wandered by ±1 ppm over minutes (a slow ±20 µs wander
/// of each speaker); the seconds' minima, measured there by polling, lie within ±10 µs.
pub(super) fn minima_slope(
    minima: &VecDeque<(i64, f64)>,
    pts: &mut Vec<(f64, f64)>,
) -> Option<f64> {
    let (&(pa, ta), &(_, tz)) = (minima.front()?, minima.back()?);
    if minima.len() < 20 || tz - ta < MINIMA_AFTER_NS {
        return None;
    }
    pts.clear();
    pts.extend(minima.iter().map(|&(p, t)| ((p - pa) as f64, t - ta)));
    let (mut d, mut c) = fit(pts)?;
    for _ in 0..2 {
        // Median absolute residual, without allocating: the residuals are sorted in place.
        let mut res: [f64; MINIMA] = [0.0; MINIMA];
        for (i, p) in pts.iter().enumerate() {
            res[i] = (p.1 - d * p.0 - c).abs();
        }
        let k = pts.len();
        res[..k].sort_unstable_by(f64::total_cmp);
        let limit = 3.0 * res[k / 2] + MIN_BRACKET_NS;
        pts.retain(|p| (p.1 - d * p.0 - c).abs() <= limit);
        if pts.len() < 6 {
            return None;
        }
        (d, c) = fit(pts)?;
    }
    Some(d)
}

/// Least-squares line `y = d x + c` through `pts`: (d, c), or None when they do not span x.
fn fit(pts: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
    let (mx, my) = (sx / n, sy / n);
    let (sxx, sxy) = pts.iter().fold((0.0, 0.0), |(a, b), p| {
        let dx = p.0 - mx;
        (a + dx * dx, b + dx * (p.1 - my))
    });
    (sxx > 0.0).then(|| {
        let d = sxy / sxx;
        (d, my - d * mx)
    })
}

pub(super) fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}
