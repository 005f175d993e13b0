//! The speaker's counters, each written down once (see `crate::counters!`): the stream's and
//! the playout's.

crate::counters! {
    /// The stream's counters: what came, what was refused and why, what was repaired.
    pub struct NetCounters => NetworkStatus {
        /// Audio datagrams accepted.
        packets => "chorus_packets_total",
        /// Malformed datagrams on the stream.
        invalid => "chorus_packets_invalid_total",
        /// Audio in another format than the zone's.
        foreign_format => "chorus_packets_foreign_format_total",
        /// Datagrams received twice (or replayed) within the replay window.
        duplicates => "chorus_packets_duplicate_total",
        /// Datagrams without a valid authentication tag (or with one when no key is set).
        unauthenticated => "chorus_packets_unauthenticated_total",
        /// Audio of another stream session that was not due now (replayed or forged).
        foreign_session => "chorus_packets_foreign_session_total",
        /// Audio older than the replay window.
        too_old => "chorus_packets_too_old_total",
        /// Audio of the stream playing due far from now or numbered ahead of its time (forged).
        implausible => "chorus_packets_implausible_total",
        /// Missing datagrams asked for again (each request counts).
        repairs_requested => "chorus_repairs_requested_total",
        /// Datagrams received after being asked for.
        repaired => "chorus_repaired_total",
        /// Missing datagrams given up on (too late to play).
        repairs_abandoned => "chorus_repairs_abandoned_total",
        /// Parity datagrams received (forward error correction).
        parity => "chorus_parity_received_total",
        /// Datagrams rebuilt from parity.
        fec_recovered => "chorus_fec_recovered_total",
        /// Parities that came with two or more datagrams of their group missing (left to
        /// repair requests).
        fec_unrecoverable => "chorus_fec_unrecoverable_total",
        /// Datagrams dropped by a full jitter buffer.
        queue_overflow => "chorus_jitter_buffer_overflows_total",
        /// Stream sessions started.
        sessions => "chorus_sessions_total",
    }
}

crate::counters! {
    /// The playout's counters: what was played, what was missing, what was corrected.
    pub struct PlayoutCounters => PlayoutCounts {
        /// Stream frames played.
        frames_played => "chorus_frames_played_total",
        /// Frames of silence written (nothing due yet, or a gap).
        frames_silence => "chorus_frames_silence_total",
        /// Frames skipped because their time had passed.
        frames_late => "chorus_frames_late_total",
        /// Frames that never arrived in time (concealed: silence between fades).
        frames_lost => "chorus_frames_lost_total",
        /// Fades to silence over a missing stretch or an ended stream.
        concealments => "chorus_concealments_total",
        /// Timeline re-anchors.
        resyncs => "chorus_resyncs_total",
        /// Device errors (xruns, unplugs), recovered.
        output_errors => "chorus_output_errors_total",
    }
}
