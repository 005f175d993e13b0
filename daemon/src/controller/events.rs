//! The controller's events (see `api::events`). A zone's changes are found by its streamer
//! thread as it publishes its status ([`compare_zone`], every wake-up while anybody listens);
//! the speaker list, whose "left" is a matter of time passing, by a watcher every 50 ms.

use super::registry::SpeakerInfo;
use crate::api::events::{Event, Events, SpeakerChange};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What was last published of a zone.
#[derive(Default)]
pub(super) struct ZoneSeen {
    state: Option<super::streamer::TransportState>,
    track: Option<(Option<usize>, Option<String>)>,
    volume: Option<(u8, bool)>,
    /// The newest error seen (time, item).
    last_error: Option<(i64, String)>,
}

/// Watches a controller's speaker list.
pub(crate) fn watch_controller(ctx: Arc<super::api::Ctx>, events: Arc<Events>) {
    tokio::spawn(async move {
        let mut speakers = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if !events.listened() {
                // Nobody listens: sleep until somebody does, then start from a fresh picture.
                speakers.clear();
                events.idle().await;
                continue;
            }
            compare_speakers(&mut speakers, ctx.speakers(), &events);
        }
    });
}

/// Publishes what changed in `z` since `seen` (nothing the first time: that is the picture
/// a new listener starts from).
pub(super) fn compare_zone(seen: &mut ZoneSeen, z: &super::streamer::ZoneStatus, ev: &Events) {
    let first = seen.state.is_none();
    if seen.state != Some(z.state) {
        if !first {
            ev.publish(Event::Transport {
                zone: z.zone.clone(),
                state: z.state,
            });
        }
        seen.state = Some(z.state);
    }
    let vol = (z.volume, z.muted);
    if seen.volume != Some(vol) {
        if !first {
            ev.publish(Event::ZoneVolume {
                zone: z.zone.clone(),
                volume: z.volume,
                muted: z.muted,
            });
        }
        seen.volume = Some(vol);
    }
    // (Compared without a copy: this runs at every wake-up of the streamer while anybody
    // listens.)
    let was = seen.track.as_ref().map(|(i, t)| (*i, t.as_deref()));
    if was != Some((z.index, z.title.as_deref())) {
        let titled = z.title.is_some() || was.is_some_and(|t| t.1.is_some());
        if !first && titled {
            ev.publish(Event::Track {
                zone: z.zone.clone(),
                index: z.index,
                title: z.title.clone(),
                uri: z.uri.clone(),
                duration_s: z.duration_s,
            });
        }
        seen.track = Some((z.index, z.title.clone()));
    }
    fn key(e: &super::streamer::ErrorEvent) -> (i64, &str) {
        (e.at_ms, e.item.as_str())
    }
    let newest_seen = seen
        .last_error
        .as_ref()
        .map(|(at, item)| (*at, item.as_str()));
    if z.errors.last().map(key) == newest_seen {
        return;
    }
    if !first {
        // The list keeps the last 32: report the ones after the newest seen.
        let after = newest_seen
            .and_then(|k| z.errors.iter().rposition(|e| key(e) == k))
            .map_or(0, |i| i + 1);
        for e in &z.errors[after.min(z.errors.len())..] {
            ev.publish(Event::Error {
                zone: z.zone.clone(),
                item: e.item.clone(),
                message: e.message.clone(),
                at_ms: e.at_ms,
            });
        }
    }
    seen.last_error = z.errors.last().map(|e| (e.at_ms, e.item.clone()));
}

fn compare_speakers(seen: &mut BTreeMap<String, SpeakerInfo>, now: Vec<SpeakerInfo>, ev: &Events) {
    let fresh = seen.is_empty();
    for s in now {
        let name = s.name.clone();
        let speaker = |what| Event::speaker(&name, what);
        match seen.get(&s.name) {
            None if !fresh => {
                ev.publish(speaker(SpeakerChange::Joined));
            }
            None => {}
            Some(old) => {
                if old.online != s.online {
                    ev.publish(speaker(if s.online {
                        SpeakerChange::Joined
                    } else {
                        SpeakerChange::Left
                    }));
                }
                if old.zone != s.zone && s.zone.is_some() {
                    ev.publish(Event::Speaker {
                        speaker: name.clone(),
                        event: SpeakerChange::Moved,
                        zone: s.zone.clone(),
                    });
                }
                if old.locked != s.locked {
                    ev.publish(speaker(if s.locked {
                        SpeakerChange::Locked
                    } else {
                        SpeakerChange::LostSync
                    }));
                }
                if (old.volume, old.muted) != (s.volume, s.muted) {
                    ev.publish(Event::SpeakerVolume {
                        speaker: name.clone(),
                        volume: s.volume,
                        muted: s.muted,
                    });
                }
            }
        }
        seen.insert(s.name.clone(), s);
    }
}
