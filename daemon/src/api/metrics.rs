//! Prometheus text exposition (version 0.0.4) for `/metrics`: a small writer, no registry. Every
//! figure is read from the same counters the JSON status shows.

use std::fmt::Write;

/// Builds one exposition document.
#[derive(Default)]
pub struct Metrics {
    out: String,
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        if value.is_finite() {
            let _ = writeln!(self.out, " {value}");
        } else {
            let _ = writeln!(self.out, " NaN");
        }
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A counter (`name` should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        self.sample(name, &[], value as f64);
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        self.sample(name, &[], value);
    }

    /// Counters from a table of (name, help, value).
    pub fn counters(&mut self, table: &[(&str, &str, u64)]) {
        for &(name, help, v) in table {
            self.counter(name, help, v);
        }
    }

    /// Gauges from a table of (name, help, value).
    pub fn gauge_table(&mut self, table: &[(&str, &str, f64)]) {
        for &(name, help, v) in table {
            self.gauge(name, help, v);
        }
    }

    /// A gauge with one sample per label set.
    pub fn gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, f64)>,
    ) {
        self.header(name, help, "gauge");
        for (labels, v) in samples {
            self.sample(name, &labels, v);
        }
    }

    /// The process's CPU time and resident memory.
    pub fn process(&mut self) {
        // SAFETY: getrusage fills the struct it is given; all-zero is a valid value for it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } == 0 {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            let name = "process_cpu_seconds_total";
            self.header(name, "User and system CPU time of this process.", "counter");
            self.sample(name, &[], secs(u.ru_utime) + secs(u.ru_stime));
        }
        let rss_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            });
        if let Some(kib) = rss_kib {
            self.gauge(
                "process_resident_memory_bytes",
                "Resident memory of this process.",
                kib * 1024.0,
            );
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// The metrics of the roles that run here, read from the same counters as the JSON status.
pub fn render(
    controller: Option<&crate::controller::api::Ctx>,
    speaker: Option<&crate::speaker::Shared>,
) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let flag = |b: bool| f64::from(u8::from(b));
    let mut m = Metrics::default();
    if let Some(c) = controller {
        // One sample per zone, labelled with its name.
        let zones: Vec<_> = (0..c.zones.len())
            .filter_map(|i| c.zone_status(crate::controller::api::Zoned(i)).ok())
            .collect();
        type Field = fn(&crate::controller::streamer::ZoneStatus) -> f64;
        let table: [(&str, &str, &str, Field); 5] = [
            (
                "chorus_controller_packets_sent_total",
                "Audio datagrams sent.",
                "counter",
                |z| z.packets_sent as f64,
            ),
            (
                "chorus_controller_parity_sent_total",
                "Parity datagrams sent (forward error correction).",
                "counter",
                |z| z.parity_sent as f64,
            ),
            (
                "chorus_controller_frames_sent_total",
                "Audio frames sent.",
                "counter",
                |z| z.frames_sent as f64,
            ),
            (
                "chorus_controller_send_errors_total",
                "Failed multicast sends.",
                "counter",
                |z| z.send_errors as f64,
            ),
            (
                "chorus_controller_playing",
                "1 while the zone plays.",
                "gauge",
                |z| {
                    f64::from(u8::from(
                        z.state == crate::controller::streamer::TransportState::Playing,
                    ))
                },
            ),
        ];
        for (name, help, kind, field) in table {
            m.header(name, help, kind);
            for z in &zones {
                m.sample(name, &[("zone", &z.zone)], field(z));
            }
        }
        let st = &c.sync_stats;
        m.counters(&[
            (
                "chorus_sync_requests_total",
                "Clock-sync requests answered.",
                st.requests.load(Relaxed),
            ),
            (
                "chorus_sync_heartbeats_total",
                "Speaker heartbeats received.",
                st.heartbeats.load(Relaxed),
            ),
            (
                "chorus_sync_heartbeats_refused_total",
                "Heartbeats refused (replayed, forged moves, registry full).",
                st.heartbeats_refused.load(Relaxed),
            ),
            (
                "chorus_sync_invalid_total",
                "Malformed datagrams on the sync port.",
                st.invalid.load(Relaxed),
            ),
            (
                "chorus_sync_unauthenticated_total",
                "Datagrams on the sync port without a valid tag.",
                st.unauthenticated.load(Relaxed),
            ),
            (
                "chorus_sync_rate_limited_total",
                "Datagrams dropped by the per-source limits.",
                st.rate_limited.load(Relaxed),
            ),
            (
                "chorus_repair_requests_total",
                "Repair requests received from speakers.",
                st.repair_requests.load(Relaxed),
            ),
            (
                "chorus_repairs_sent_total",
                "Datagrams sent again on request.",
                st.repairs_sent.load(Relaxed),
            ),
            (
                "chorus_repairs_refused_total",
                "Datagrams asked for and not sent (unknown source, over its share, gone).",
                st.repairs_refused.load(Relaxed),
            ),
        ]);
        let speakers = c.speakers();
        m.gauge(
            "chorus_speakers_online",
            "Speakers heard from in the last few seconds.",
            speakers.iter().filter(|s| s.online).count() as f64,
        );
        m.gauges(
            "chorus_speaker_reported_sync_error_seconds",
            "Playout timing error each speaker reports.",
            speakers.iter().filter_map(|s| {
                s.sync_error_us
                    .map(|e| (vec![("speaker", s.name.as_str())], e * 1e-6))
            }),
        );
    }
    if let Some(s) = speaker {
        let st = s.status();
        let (p, n) = (&st.playout, &st.network);
        m.gauge(
            "chorus_locked",
            "1 while the clock model is locked to the controller.",
            flag(st.locked),
        );
        if let Some(c) = &st.clock {
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
    m.process();
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let mut m = Metrics::default();
        m.counter("chorus_x_total", "Things.", 3);
        m.gauges(
            "chorus_y",
            "Per speaker.",
            [(vec![("speaker", "a \"b\"\\c")], 1.5), (vec![], f64::NAN)],
        );
        let text = m.finish();
        assert_eq!(
            text,
            "# HELP chorus_x_total Things.\n# TYPE chorus_x_total counter\nchorus_x_total 3\n\
             # HELP chorus_y Per speaker.\n# TYPE chorus_y gauge\n\
             chorus_y{speaker=\"a \\\"b\\\"\\\\c\"} 1.5\nchorus_y NaN\n"
        );
    }
}
