//! The controller's Prometheus metrics, read from the same counters as its JSON status.

use super::api::{Ctx, Zoned};
use super::streamer::TransportState;
use crate::api::metrics::Metrics;
use chorus_api::ZoneCounts;

/// Writes the controller's figures: one sample per zone, labelled with its name, the sync
/// service's counters and the speakers it hears.
pub(crate) fn write(c: &Ctx, m: &mut Metrics) {
    // One sample per zone, labelled with its name.
    let zones: Vec<_> = (0..c.zones.len())
        .filter_map(|i| c.zone_status(Zoned(i)).ok())
        .collect();
    // The zone counters' table, a header each, then a sample per zone.
    let rows: Vec<_> = zones
        .iter()
        .map(|z| z.counts.rows().collect::<Vec<_>>())
        .collect();
    for (i, (name, help, _)) in ZoneCounts::default().rows().enumerate() {
        m.header(name, help, "counter");
        for (z, r) in zones.iter().zip(&rows) {
            m.sample(name, &[("zone", &z.zone)], r[i].2 as f64);
        }
    }
    let playing = "chorus_controller_playing";
    m.header(playing, "1 while the zone plays.", "gauge");
    for z in &zones {
        let on = f64::from(u8::from(z.state == TransportState::Playing));
        m.sample(playing, &[("zone", &z.zone)], on);
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
