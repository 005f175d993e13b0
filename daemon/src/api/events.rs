//! The event stream (`GET /api/v1/events`, Server-Sent Events): state changes as they happen,
//! for home automation that wants to react instead of poll. A watcher task compares the roles'
//! state every 50 ms and publishes what changed; handlers that change state publish at once.
//!
//! Events (SSE `event:` name, JSON `data:`):
//! - `transport` `{"zone", "state"}`: playing, paused, stopped
//! - `track` `{"zone", "index", "title", "uri", "duration_s"}`: now playing changed
//! - `volume` `{"speaker", "volume", "muted"}` or `{"zone", "volume", "muted"}`
//! - `speaker` `{"speaker", "event"}`: joined, left (no heartbeat for a while), locked,
//!   lost_sync; moved (with `"zone"`: it now plays that zone)
//! - `error` `{"zone", "item", "message"}`: an item that could not be played

use crate::controller::registry::SpeakerInfo;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Kind name that ends every open stream (sent on shutdown, so that the HTTP server's graceful
/// shutdown does not wait on clients that never hang up).
const CLOSE: &str = "\u{0}close";

/// The publisher. Cheap to clone-share; publishing without subscribers costs nothing.
pub struct Events {
    tx: broadcast::Sender<(&'static str, String)>,
    /// Wakes the watchers when a client subscribes (with nobody listening they sleep: a
    /// speaker on a small board should not wake 20 times a second for nobody).
    subscribed: tokio::sync::Notify,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            // A slow client that falls 256 events behind misses some (and is told so).
            tx: broadcast::channel(256).0,
            subscribed: tokio::sync::Notify::new(),
        }
    }
}

impl Events {
    pub fn publish(&self, kind: &'static str, data: Value) {
        let _ = self.tx.send((kind, data.to_string()));
    }

    /// Returns once a client is subscribed (at once if one is).
    async fn idle(&self) {
        loop {
            let woken = self.subscribed.notified();
            if self.tx.receiver_count() > 0 {
                return;
            }
            woken.await;
        }
    }

    /// Ends every open stream.
    pub fn close(&self) {
        let _ = self.tx.send((CLOSE, String::new()));
    }

    /// A client's stream: every event from now on, and a comment every 15 s to keep proxies
    /// from closing an idle connection.
    pub fn stream(
        &self,
    ) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>> + use<>> {
        let rx = self.tx.subscribe();
        self.subscribed.notify_waiters();
        let s = futures_util::stream::unfold(rx, |mut rx| async move {
            let ev = match rx.recv().await {
                Ok((CLOSE, _)) | Err(broadcast::error::RecvError::Closed) => return None,
                Ok((kind, data)) => Event::default().event(kind).data(data),
                Err(broadcast::error::RecvError::Lagged(n)) => Event::default()
                    .event("lagged")
                    .data(json!({ "missed": n }).to_string()),
            };
            Some((Ok(ev), rx))
        });
        Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    }
}

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
pub fn watch_controller(ctx: Arc<crate::controller::api::Ctx>, events: Arc<Events>) {
    tokio::spawn(async move {
        let fresh = || -> Vec<ZoneSeen> { ctx.zones.iter().map(|_| ZoneSeen::default()).collect() };
        let mut seen = fresh();
        let mut speakers = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if events.tx.receiver_count() == 0 {
                // Nobody listens: sleep until somebody does, then start from a fresh picture.
                seen = fresh();
                speakers.clear();
                events.idle().await;
                continue;
            }
            for (i, s) in seen.iter_mut().enumerate() {
                if let Ok(z) = ctx.zone_status(crate::controller::api::Zoned(i)) {
                    compare_zone(s, &z, &events);
                }
            }
            compare_speakers(&mut speakers, ctx.speakers(), &events);
        }
    });
}

fn compare_zone(seen: &mut ZoneSeen, z: &crate::controller::streamer::ZoneStatus, ev: &Events) {
    let state = serde_json::to_value(z.state)
        .ok()
        .and_then(|v| v.as_str().map(String::from));
    let first = seen.state.is_none();
    if seen.state != state {
        if !first {
            ev.publish("transport", json!({ "zone": z.zone, "state": state }));
        }
        seen.state = state;
    }
    let vol = (z.volume, z.muted);
    if seen.volume != Some(vol) {
        if !first {
            ev.publish(
                "volume",
                json!({ "zone": z.zone, "volume": z.volume, "muted": z.muted }),
            );
        }
        seen.volume = Some(vol);
    }
    let track = (z.index, z.title.clone());
    if seen.track.as_ref() != Some(&track) {
        if !first && (track.1.is_some() || seen.track.as_ref().is_some_and(|t| t.1.is_some())) {
            ev.publish(
                "track",
                json!({
                    "zone": z.zone,
                    "index": z.index,
                    "title": z.title,
                    "uri": z.uri,
                    "duration_s": z.duration_s
                }),
            );
        }
        seen.track = Some(track);
    }
    let key = |e: &crate::controller::streamer::ErrorEvent| (e.at_ms, e.item.clone());
    if !first {
        // The list keeps the last 32: report the ones after the newest seen.
        let after = seen
            .last_error
            .as_ref()
            .and_then(|k| z.errors.iter().rposition(|e| key(e) == *k))
            .map_or(0, |i| i + 1);
        for e in &z.errors[after.min(z.errors.len())..] {
            ev.publish(
                "error",
                json!({ "zone": z.zone, "item": e.item, "message": e.message, "at_ms": e.at_ms }),
            );
        }
    }
    seen.last_error = z.errors.last().map(key);
}

fn compare_speakers(seen: &mut BTreeMap<String, SpeakerInfo>, now: Vec<SpeakerInfo>, ev: &Events) {
    let fresh = seen.is_empty();
    for s in now {
        let name = s.name.clone();
        let speaker = |what: &str| json!({ "speaker": name, "event": what });
        match seen.get(&s.name) {
            None if !fresh => {
                ev.publish("speaker", speaker("joined"));
            }
            None => {}
            Some(old) => {
                if old.online != s.online {
                    ev.publish("speaker", speaker(if s.online { "joined" } else { "left" }));
                }
                if old.zone != s.zone && s.zone.is_some() {
                    ev.publish(
                        "speaker",
                        json!({ "speaker": name, "event": "moved", "zone": s.zone }),
                    );
                }
                if old.locked != s.locked {
                    let what = if s.locked { "locked" } else { "lost_sync" };
                    ev.publish("speaker", speaker(what));
                }
                if (old.volume, old.muted) != (s.volume, s.muted) {
                    ev.publish(
                        "volume",
                        json!({ "speaker": name, "volume": s.volume, "muted": s.muted }),
                    );
                }
            }
        }
        seen.insert(s.name.clone(), s);
    }
}

/// Watches a speaker's own volume, mute and lock.
pub fn watch_speaker(shared: Arc<crate::speaker::Shared>, events: Arc<Events>) {
    use std::sync::atomic::Ordering::Relaxed;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let read = |s: &crate::speaker::Shared| {
            (
                s.volume.load(Relaxed),
                s.muted.load(Relaxed),
                s.locked.load(Relaxed),
            )
        };
        let mut last = read(&shared);
        loop {
            tick.tick().await;
            if events.tx.receiver_count() == 0 {
                events.idle().await;
                last = read(&shared);
                continue;
            }
            let now = read(&shared);
            if (now.0, now.1) != (last.0, last.1) {
                events.publish(
                    "volume",
                    json!({ "speaker": shared.name, "volume": now.0, "muted": now.1 }),
                );
            }
            if now.2 != last.2 {
                let what = if now.2 { "locked" } else { "lost_sync" };
                events.publish("speaker", json!({ "speaker": shared.name, "event": what }));
            }
            last = now;
        }
    });
}
