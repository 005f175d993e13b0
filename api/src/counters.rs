//! One table per group of counters: each row is a counter's help text (its doc comment), its
//! name in the JSON status and in Rust, and its Prometheus name. From the table come the atomic
//! counters the threads bump, the snapshot the JSON status serializes, and the Prometheus lines,
//! so a counter is written down once (it was in five places: the atomics, the status DTO, the
//! copy between them, the metrics writer and the API document).

/// `counters! { /// doc  pub struct Live => Snapshot { /// help  field => "metric_total", } }`
/// defines `Live` (one `AtomicU64` per row, `Default`), `Snapshot` (one `u64` per row,
/// serialized with the rows' names, its schema documented by the rows' docs), `Live::snapshot`,
/// and `Snapshot::write_metrics`, which hands one Prometheus counter per row, with the row's doc
/// as its help, to the caller's writer.
#[macro_export]
macro_rules! counters {
    (
        $(#[doc = $doc:literal])*
        pub struct $live:ident => $snap:ident {
            $( $(#[doc = $help:literal])+ $field:ident => $metric:literal, )+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Default)]
        pub struct $live {
            $( $(#[doc = $help])+ pub $field: ::std::sync::atomic::AtomicU64, )+
        }

        $(#[doc = $doc])*
        /// (A snapshot, for the status API.)
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq,
            ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema,
        )]
        pub struct $snap {
            $( $(#[doc = $help])+ pub $field: u64, )+
        }

        impl $live {
            /// Every counter's value now (each read on its own: they move independently).
            pub fn snapshot(&self) -> $snap {
                $snap {
                    $( $field: self.$field.load(::std::sync::atomic::Ordering::Relaxed), )+
                }
            }
        }

        impl $snap {
            /// Every row: (Prometheus name, help text (its doc), value).
            pub fn rows(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> {
                [$( ($metric, concat!($($help),+), self.$field), )+].into_iter()
            }

            /// One Prometheus counter per row: `counter(name, help, value)`.
            pub fn write_metrics(&self, mut counter: impl FnMut(&str, &str, u64)) {
                for (name, help, value) in self.rows() {
                    counter(name, help, value);
                }
            }

            /// The rows: (JSON name, Prometheus name), for tests and documents.
            pub const ROWS: &'static [(&'static str, &'static str)] =
                &[$( (stringify!($field), $metric), )+];
        }
    };
}

// The tables: the speaker's stream and playout, the controller's sync service and zones.

counters! {
    /// A zone's stream: what its controller sent. (Kept by the zone's streamer thread alone:
    /// it counts in the snapshot itself.)
    pub struct ZoneCounters => ZoneCounts {
        /// Audio frames sent.
        frames_sent => "chorus_controller_frames_sent_total",
        /// Audio datagrams sent.
        packets_sent => "chorus_controller_packets_sent_total",
        /// Bytes of audio datagrams sent (headers and tags included; parity apart).
        audio_bytes_sent => "chorus_controller_audio_bytes_sent_total",
        /// FLAC zones: blocks sent as PCM (shorter than FLAC's shortest, 32 frames, or not
        /// fitting a datagram even as quarters).
        pcm_fallbacks => "chorus_controller_pcm_fallbacks_total",
        /// Parity datagrams sent (forward error correction).
        parity_sent => "chorus_controller_parity_sent_total",
        /// Datagrams sent by unicast to speakers (each copy counts).
        unicast_sent => "chorus_controller_unicast_sent_total",
        /// Datagrams the network stack refused (failed multicast sends).
        send_errors => "chorus_controller_send_errors_total",
    }
}

counters! {
    /// The stream's counters: what came, what was refused and why, what was repaired.
    pub struct NetworkCounters => NetworkStatus {
        /// Audio datagrams accepted.
        packets => "chorus_packets_total",
        /// Of those, datagrams that came by unicast (to this speaker's own address).
        unicast_packets => "chorus_packets_unicast_total",
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

counters! {
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
        /// Timeline re-anchors of the speaker's own: its timing error went beyond 3 ms (a
        /// stall, an underrun, a seek).
        resyncs => "chorus_resyncs_total",
        /// Timeline jumps that follow the output device's own timeline where it moved (a
        /// sound server's late or skipped cycle moves every stream on it at once).
        device_jumps => "chorus_device_jumps_total",
        /// Device errors (xruns, unplugs), recovered.
        output_errors => "chorus_output_errors_total",
    }
}

counters! {
    /// Counters of the sync service: exchanges, heartbeats, repairs, and what it refused.
    pub struct SyncServiceCounters => SyncServiceStatus {
        /// Clock-sync requests answered.
        requests => "chorus_sync_requests_total",
        /// Speaker heartbeats received.
        heartbeats => "chorus_sync_heartbeats_total",
        /// Heartbeats refused: a known speaker's name from another address without a fresh
        /// send time (replayed or forged), a replay, or a registry full of online speakers.
        heartbeats_refused => "chorus_sync_heartbeats_refused_total",
        /// Malformed datagrams on the sync port.
        invalid => "chorus_sync_invalid_total",
        /// Datagrams on the sync port without a valid authentication tag.
        unauthenticated => "chorus_sync_unauthenticated_total",
        /// Datagrams dropped because their source sent more than its share.
        rate_limited => "chorus_sync_rate_limited_total",
        /// Repair requests received from speakers.
        repair_requests => "chorus_repair_requests_total",
        /// Datagrams sent again on request.
        repairs_sent => "chorus_repairs_sent_total",
        /// Datagrams asked for and not sent (unknown source, over its share, no longer held).
        repairs_refused => "chorus_repairs_refused_total",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    counters! {
        /// Two counters.
        pub struct Live => Snap {
            /// Things seen.
            seen => "test_seen_total",
            /// Things refused
            /// (two lines of doc).
            refused => "test_refused_total",
        }
    }

    #[test]
    fn one_table_gives_the_atomics_the_json_and_the_metrics() {
        let live = Live::default();
        live.seen.fetch_add(3, Ordering::Relaxed);
        live.refused.fetch_add(1, Ordering::Relaxed);
        let snap = live.snapshot();
        assert_eq!((snap.seen, snap.refused), (3, 1));
        let json = serde_json::to_value(snap).unwrap();
        assert_eq!(json, serde_json::json!({"seen": 3, "refused": 1}));
        assert_eq!(serde_json::from_value::<Snap>(json).unwrap(), snap);
        let mut lines = vec![];
        snap.write_metrics(|name, help, v| lines.push(format!("{name} {v} {}", help.trim())));
        assert_eq!(
            lines,
            [
                "test_seen_total 3 Things seen.",
                "test_refused_total 1 Things refused (two lines of doc)."
            ]
        );
        assert_eq!(Snap::ROWS[1], ("refused", "test_refused_total"));
    }
}
