//! Signal measurements shared by the unit tests, the integration tests and the rigs.

/// THD+N of a tone in dB (residual after a least-squares sine fit), searching the frequency
/// near `hz`; returns (dB, fitted frequency).
pub fn thd_n_db(x: &[f64], hz: f64, rate: f64) -> (f64, f64) {
    let fit = |f: f64| -> (f64, f64) {
        let w = 2.0 * std::f64::consts::PI * f / rate;
        let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, y) in x.iter().enumerate() {
            let (s, c) = (w * i as f64).sin_cos();
            ss += s * s;
            sc += s * c;
            cc += c * c;
            ys += y * s;
            yc += y * c;
        }
        let det = ss * cc - sc * sc;
        let a = (ys * cc - yc * sc) / det;
        let b = (yc * ss - ys * sc) / det;
        let (mut sig, mut res) = (0.0, 0.0);
        for (i, y) in x.iter().enumerate() {
            let (s, c) = (w * i as f64).sin_cos();
            let m = a * s + b * c;
            sig += m * m;
            res += (y - m) * (y - m);
        }
        (10.0 * (res / sig).log10(), f)
    };
    // Grid search of the best-fitting frequency within ±0.1 %, refined four times.
    let (mut lo, mut hi) = (hz * 0.999, hz * 1.001);
    let mut best = fit(hz);
    for _ in 0..4 {
        let grid: Vec<(f64, f64)> = (0..=40)
            .map(|i| fit(lo + (hi - lo) * i as f64 / 40.0))
            .collect();
        let i = (0..grid.len())
            .min_by(|a, b| grid[*a].0.total_cmp(&grid[*b].0))
            .unwrap_or(0);
        best = grid[i];
        let step = (hi - lo) / 40.0;
        lo = best.1 - step;
        hi = best.1 + step;
    }
    best
}
