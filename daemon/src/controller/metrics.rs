//! The controller's Prometheus metrics, read from the same counters as its JSON status.

use super::api::{Ctx, Zoned};
use super::streamer::{TransportState, ZoneStatus};
use crate::api::metrics::Metrics;

/// Writes the controller's figures: one sample per zone, labelled with its name, the sync
/// service's counters and the speakers it hears.
pub fn write(c: &Ctx, m: &mut Metrics) {
    // One sample per zone, labelled with its name.
    let zones: Vec<_> = (0..c.zones.len())
        .filter_map(|i| c.zone_status(Zoned(i)).ok())
        .collect();
    type Field = fn(&ZoneStatus) -> f64;
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
            |z| f64::from(u8::from(z.state == TransportState::Playing)),
        ),
    ];
    for (name, help, kind, field) in table {
        m.header(name, help, kind);
        for z in &zones {
            m.sample(name, &[("zone", &z.zone)], field(z));
        }
    }
    c.sync_stats
        .snapshot()
        .write_metrics(|n, h, v| m.counter(n, h, v));
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
