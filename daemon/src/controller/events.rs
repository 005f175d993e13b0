//! The controller's event watcher: compares its zones and speaker list every 50 ms while
//! anybody listens, and publishes what changed (see `api::events`).

use super::registry::SpeakerInfo;
use crate::api::events::{Event, Events, SpeakerChange};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What the watcher last saw of a controller.
#[derive(Default)]
struct ZoneSeen {
    state: Option<String>,
    track: Option<(Option<usize>, Option<String>)>,
    volume: Option<(u8, bool)>,
    /// The newest error seen (time, item).
    last_error: Option<(i64, String)>,
}

/// Watches a controller's zone and speaker list.
pub fn watch_controller(ctx: Arc<super::api::Ctx>, events: Arc<Events>) {
    tokio::spawn(async move {
        let fresh = || -> Vec<ZoneSeen> { ctx.zones.iter().map(|_| ZoneSeen::default()).collect() };
        let mut seen = fresh();
        let mut speakers = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if !events.listened() {
                // Nobody listens: sleep until somebody does, then start from a fresh picture.
                seen = fresh();
                speakers.clear();
                events.idle().await;
                continue;
            }
            for (i, s) in seen.iter_mut().enumerate() {
                if let Ok(z) = ctx.zone_status(super::api::Zoned(i)) {
                    compare_zone(s, &z, &events);
                }
            }
            compare_speakers(&mut speakers, ctx.speakers(), &events);
        }
    });
}

fn compare_zone(seen: &mut ZoneSeen, z: &super::streamer::ZoneStatus, ev: &Events) {
    let state = serde_json::to_value(z.state)
        .ok()
        .and_then(|v| v.as_str().map(String::from));
    let first = seen.state.is_none();
    if seen.state != state {
        if !first {
            ev.publish(Event::Transport {
                zone: z.zone.clone(),
                state: state.clone().unwrap_or_default(),
            });
        }
        seen.state = state;
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
    let track = (z.index, z.title.clone());
    if seen.track.as_ref() != Some(&track) {
        if !first && (track.1.is_some() || seen.track.as_ref().is_some_and(|t| t.1.is_some())) {
            ev.publish(Event::Track {
                zone: z.zone.clone(),
                index: z.index,
                title: z.title.clone(),
                uri: z.uri.clone(),
                duration_s: z.duration_s,
            });
        }
        seen.track = Some(track);
    }
    let key = |e: &super::streamer::ErrorEvent| (e.at_ms, e.item.clone());
    if !first {
        // The list keeps the last 32: report the ones after the newest seen.
        let after = seen
            .last_error
            .as_ref()
            .and_then(|k| z.errors.iter().rposition(|e| key(e) == *k))
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
    seen.last_error = z.errors.last().map(key);
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
