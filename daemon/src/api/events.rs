//! The event stream (`GET /api/v1/events`, Server-Sent Events): state changes as they happen,
//! for home automation that wants to react instead of poll. The speaker publishes where its
//! state changes (`Shared::set_volume`, `Shared::set_locked`); the controller's watcher
//! (`controller::events`) compares its zones and speaker list every 50 ms while anybody
//! listens.
//!
//! Events (SSE `event:` name, JSON `data:`):
//! - `transport` `{"zone", "state"}`: playing, paused, stopped
//! - `track` `{"zone", "index", "title", "uri", "duration_s"}`: now playing changed
//! - `volume` `{"speaker", "volume", "muted"}` or `{"zone", "volume", "muted"}`
//! - `speaker` `{"speaker", "event"}`: joined, left (no heartbeat for a while), locked,
//!   lost_sync; moved (with `"zone"`: it now plays that zone)
//! - `error` `{"zone", "item", "message"}`: an item that could not be played

use axum::response::sse::{Event as Sse_, KeepAlive, Sse};
use serde::Serialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast;

/// Kind name that ends every open stream (sent on shutdown, so that the HTTP server's graceful
/// shutdown does not wait on clients that never hang up).
const CLOSE: &str = "\u{0}close";

/// One event: the SSE `event:` name is [`Event::kind`], the `data:` the variant's fields as a
/// JSON object (the names above; one definition, used by every publisher).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// A zone's transport state changed (`playing`, `paused`, `stopped`).
    Transport { zone: String, state: String },
    /// A zone's now-playing item changed.
    Track {
        zone: String,
        index: Option<usize>,
        title: Option<String>,
        uri: Option<String>,
        duration_s: Option<f64>,
    },
    /// A zone's volume or mute changed.
    ZoneVolume {
        zone: String,
        volume: u8,
        muted: bool,
    },
    /// A speaker's volume or mute changed.
    SpeakerVolume {
        speaker: String,
        volume: u8,
        muted: bool,
    },
    /// A speaker joined, left, locked, lost sync or moved (then `zone` is where it plays).
    Speaker {
        speaker: String,
        event: SpeakerChange,
        #[serde(skip_serializing_if = "Option::is_none")]
        zone: Option<String>,
    },
    /// An item of a zone's queue could not be played (`at_ms`: controller clock).
    Error {
        zone: String,
        item: String,
        message: String,
        at_ms: i64,
    },
}

/// What happened to a speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeakerChange {
    Joined,
    Left,
    Locked,
    LostSync,
    Moved,
}

impl Event {
    /// The SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Transport { .. } => "transport",
            Event::Track { .. } => "track",
            Event::ZoneVolume { .. } | Event::SpeakerVolume { .. } => "volume",
            Event::Speaker { .. } => "speaker",
            Event::Error { .. } => "error",
        }
    }

    /// A speaker's change without a zone.
    pub fn speaker(speaker: &str, event: SpeakerChange) -> Self {
        Event::Speaker {
            speaker: speaker.to_string(),
            event,
            zone: None,
        }
    }
}

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
    pub fn publish(&self, ev: Event) {
        if self.listened() {
            let data = serde_json::to_string(&ev).unwrap_or_default();
            let _ = self.tx.send((ev.kind(), data));
        }
    }

    /// Whether any client listens.
    pub fn listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Returns once a client is subscribed (at once if one is).
    pub async fn idle(&self) {
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
    ) -> Sse<impl futures_util::Stream<Item = Result<Sse_, Infallible>> + use<>> {
        let rx = self.tx.subscribe();
        self.subscribed.notify_waiters();
        let s = futures_util::stream::unfold(rx, |mut rx| async move {
            let ev = match rx.recv().await {
                Ok((CLOSE, _)) | Err(broadcast::error::RecvError::Closed) => return None,
                Ok((kind, data)) => Sse_::default().event(kind).data(data),
                Err(broadcast::error::RecvError::Lagged(n)) => Sse_::default()
                    .event("lagged")
                    .data(json!({ "missed": n }).to_string()),
            };
            Some((Ok(ev), rx))
        });
        Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(ev: &Event) -> (&'static str, serde_json::Value) {
        (ev.kind(), serde_json::to_value(ev).unwrap())
    }

    #[test]
    fn events_keep_the_names_and_fields_clients_read() {
        assert_eq!(
            wire(&Event::Transport {
                zone: "home".into(),
                state: "playing".into()
            }),
            ("transport", json!({ "zone": "home", "state": "playing" }))
        );
        assert_eq!(
            wire(&Event::ZoneVolume {
                zone: "home".into(),
                volume: 40,
                muted: false
            }),
            (
                "volume",
                json!({ "zone": "home", "volume": 40, "muted": false })
            )
        );
        assert_eq!(
            wire(&Event::SpeakerVolume {
                speaker: "k".into(),
                volume: 7,
                muted: true
            }),
            (
                "volume",
                json!({ "speaker": "k", "volume": 7, "muted": true })
            )
        );
        assert_eq!(
            wire(&Event::speaker("k", SpeakerChange::LostSync)),
            ("speaker", json!({ "speaker": "k", "event": "lost_sync" }))
        );
        assert_eq!(
            wire(&Event::Speaker {
                speaker: "k".into(),
                event: SpeakerChange::Moved,
                zone: Some("attic".into())
            }),
            (
                "speaker",
                json!({ "speaker": "k", "event": "moved", "zone": "attic" })
            )
        );
        assert_eq!(
            wire(&Event::Track {
                zone: "home".into(),
                index: Some(2),
                title: None,
                uri: Some("a.flac".into()),
                duration_s: Some(1.5)
            }),
            (
                "track",
                json!({ "zone": "home", "index": 2, "title": null, "uri": "a.flac", "duration_s": 1.5 })
            )
        );
        assert_eq!(
            wire(&Event::Error {
                zone: "home".into(),
                item: "x".into(),
                message: "bad".into(),
                at_ms: 5
            }),
            (
                "error",
                json!({ "zone": "home", "item": "x", "message": "bad", "at_ms": 5 })
            )
        );
    }
}
