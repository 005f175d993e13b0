//! The speaker's event watcher: its own volume, mute and lock, every 50 ms while anybody
//! listens (see `api::events`).

use crate::api::events::{Event, Events, SpeakerChange};
use std::sync::Arc;
use std::time::Duration;

/// Watches a speaker's own volume, mute and lock.
pub fn watch_speaker(shared: Arc<super::Shared>, events: Arc<Events>) {
    use std::sync::atomic::Ordering::Relaxed;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let read = |s: &super::Shared| {
            (
                s.volume.load(Relaxed),
                s.muted.load(Relaxed),
                s.locked.load(Relaxed),
            )
        };
        let mut last = read(&shared);
        loop {
            tick.tick().await;
            if !events.listened() {
                events.idle().await;
                last = read(&shared);
                continue;
            }
            let now = read(&shared);
            if (now.0, now.1) != (last.0, last.1) {
                events.publish(Event::SpeakerVolume {
                    speaker: shared.name.clone(),
                    volume: now.0,
                    muted: now.1,
                });
            }
            if now.2 != last.2 {
                let what = if now.2 {
                    SpeakerChange::Locked
                } else {
                    SpeakerChange::LostSync
                };
                events.publish(Event::speaker(&shared.name, what));
            }
            last = now;
        }
    });
}
