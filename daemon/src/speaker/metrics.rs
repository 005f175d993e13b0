//! The speaker's Prometheus metrics, read from the same counters as its JSON status.

use super::Shared;
use crate::api::metrics::Metrics;

/// Writes the speaker's figures: lock, clock model, playout, and the stream's counters.
pub(crate) fn write(s: &Shared, m: &mut Metrics) {
    let flag = |b: bool| f64::from(u8::from(b));
    let st = s.status();
    let (p, n) = (&st.playout, &st.network);
    m.gauge(
        "chorus_locked",
        "1 while the clock model is locked to the controller.",
        flag(st.locked),
    );
    if let Some(c) = &st.clock {
        clock(m, c);
    }
    m.gauge_table(&[
        (
            "chorus_sync_error_seconds",
            "Last playout timing error.",
            p.sync_error_us.unwrap_or(f64::NAN) * 1e-6,
        ),
        (
            "chorus_buffered_seconds",
            "Audio in the jitter buffer.",
            p.buffered_ms * 1e-3,
        ),
        (
            "chorus_resampler_ratio_ppm",
            "Drift correction of the resampler.",
            p.ratio_ppm,
        ),
    ]);
    p.counts.write_metrics(|n, h, v| m.counter(n, h, v));
    m.counter(
        "chorus_output_opens_total",
        "Times the output device was opened.",
        st.output_opens,
    );
    n.write_metrics(|n, h, v| m.counter(n, h, v));
}

/// The clock model: offset, frequency, round trip and its own error estimate.
fn clock(m: &mut Metrics, c: &super::ClockStatus) {
    m.gauge_table(&[
        (
            "chorus_clock_offset_seconds",
            "Controller minus local clock.",
            c.offset_ns as f64 * 1e-9,
        ),
        (
            "chorus_clock_frequency_ppm",
            "Controller clock rate relative to ours.",
            c.freq_ppm,
        ),
        (
            "chorus_clock_rtt_seconds",
            "Last sync round trip.",
            c.rtt_us * 1e-6,
        ),
        (
            "chorus_clock_estimated_error_seconds",
            "Estimated offset error.",
            c.est_error_us * 1e-6,
        ),
    ]);
}
