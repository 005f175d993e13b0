//! The event stream (`GET /api/v1/events`, Server-Sent Events): state changes as they happen,
//! for home automation that wants to react instead of poll. A watcher task per role
//! (`controller::events`, `speaker::events`) compares its state every 50 ms and publishes what
//! changed; handlers that change state publish at once.
//!
//! Events (SSE `event:` name, JSON `data:`):
//! - `transport` `{"zone", "state"}`: playing, paused, stopped
//! - `track` `{"zone", "index", "title", "uri", "duration_s"}`: now playing changed
//! - `volume` `{"speaker", "volume", "muted"}` or `{"zone", "volume", "muted"}`
//! - `speaker` `{"speaker", "event"}`: joined, left (no heartbeat for a while), locked,
//!   lost_sync; moved (with `"zone"`: it now plays that zone)
//! - `error` `{"zone", "item", "message"}`: an item that could not be played

use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::{json, Value};
use std::convert::Infallible;
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
