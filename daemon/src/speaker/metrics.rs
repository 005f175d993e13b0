//! The speaker's Prometheus metrics, read from the same counters as its JSON status.

use super::Shared;
use crate::api::metrics::Metrics;

/// Writes the speaker's figures: lock, clock model, playout, and the stream's counters.
pub fn write(s: &Shared, m: &mut Metrics) {
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
    m.counters(&[
        (
            "chorus_frames_played_total",
            "Stream frames played.",
            p.frames_played,
        ),
        (
            "chorus_frames_lost_total",
            "Frames concealed because they never arrived.",
            p.frames_lost,
        ),
        (
            "chorus_frames_late_total",
            "Frames skipped because their time had passed.",
            p.frames_late,
        ),
        (
            "chorus_concealments_total",
            "Fades to silence over a missing stretch or an ended stream.",
            p.concealments,
        ),
        ("chorus_resyncs_total", "Timeline re-anchors.", p.resyncs),
        (
            "chorus_output_errors_total",
            "Device errors (xruns, unplugs), recovered.",
            p.output_errors,
        ),
        (
            "chorus_output_opens_total",
            "Times the output device was opened.",
            st.output_opens,
        ),
    ]);
    network(m, n);
}

/// The stream's counters: what came, what was refused and why, what was repaired.
fn network(m: &mut Metrics, n: &super::NetworkStatus) {
    m.counters(&[
        (
            "chorus_packets_total",
            "Audio datagrams accepted.",
            n.packets,
        ),
        (
            "chorus_packets_invalid_total",
            "Malformed datagrams on the stream.",
            n.invalid,
        ),
        (
            "chorus_packets_unauthenticated_total",
            "Datagrams without a valid tag.",
            n.unauthenticated,
        ),
        (
            "chorus_packets_duplicate_total",
            "Datagrams received again (duplicates, replays).",
            n.duplicates,
        ),
        (
            "chorus_packets_too_old_total",
            "Datagrams older than the replay window.",
            n.too_old,
        ),
        (
            "chorus_packets_implausible_total",
            "Audio due far from now or numbered ahead of its time (forged).",
            n.implausible,
        ),
        (
            "chorus_packets_foreign_session_total",
            "Audio of another session not due now.",
            n.foreign_session,
        ),
        (
            "chorus_packets_foreign_format_total",
            "Audio in another format than the zone's.",
            n.foreign_format,
        ),
        (
            "chorus_jitter_buffer_overflows_total",
            "Datagrams dropped by a full jitter buffer.",
            n.queue_overflow,
        ),
        (
            "chorus_sessions_total",
            "Stream sessions started.",
            n.sessions,
        ),
        (
            "chorus_repairs_requested_total",
            "Missing datagrams asked for again (each request counts).",
            n.repairs_requested,
        ),
        (
            "chorus_repaired_total",
            "Datagrams received after being asked for.",
            n.repaired,
        ),
        (
            "chorus_repairs_abandoned_total",
            "Missing datagrams given up (too late to play).",
            n.repairs_abandoned,
        ),
        (
            "chorus_parity_received_total",
            "Parity datagrams received (forward error correction).",
            n.parity,
        ),
        (
            "chorus_fec_recovered_total",
            "Datagrams rebuilt from parity.",
            n.fec_recovered,
        ),
        (
            "chorus_fec_unrecoverable_total",
            "Parities that came with two or more of their datagrams missing.",
            n.fec_unrecoverable,
        ),
    ]);
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
