//! The event stream (`GET /api/v1/events`, Server-Sent Events): state changes as they happen,
//! for home automation that wants to react instead of poll. The speaker publishes where its
//! state changes (`Shared::set_volume`, `Shared::set_locked`), a zone's streamer as it
//! publishes its status, and the controller's watcher (`controller::events`) compares the
//! speaker list every 50 ms while anybody listens (its "left" is time passing).
//!
//! The events themselves (SSE `event:` name, JSON `data:`) are `chorus_api::Event`.

use axum::response::sse::{Event as Sse_, KeepAlive, Sse};
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast;

/// Kind name that ends every open stream (sent on shutdown, so that the HTTP server's graceful
/// shutdown does not wait on clients that never hang up).
const CLOSE: &str = "\u{0}close";

pub(crate) use chorus_api::{Event, SpeakerChange};

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
                state: chorus_api::TransportState::Playing
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
