//! The next item of a queue, opened ahead on a thread of its own: opening a file and probing
//! its format reads the disk (a slow one, or a network share, for longer than the stream's
//! latency), and the streamer's thread paces the stream. Live sources (radio, FIFO, line-in)
//! are opened when they play: opened early they would connect, or read, too soon.

use crate::audio::source::RawFormats;
use crate::audio::{AudioError, Item, Source};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};

/// Opening threads running at once, at most: a dropped prefetch's thread runs until its open
/// returns, and a share that hangs must not collect one thread per `next`.
const MOST: usize = 2;
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// An item being (or done being) opened.
pub(super) struct Prefetch {
    item: Item,
    rx: Receiver<Result<Source, AudioError>>,
}

impl Prefetch {
    /// Starts opening `item` (a file) for a zone of `rate` Hz and `channels` channels.
    pub(super) fn start(item: &Item, rate: u32, channels: usize, raw: RawFormats) -> Option<Self> {
        if !matches!(item, Item::File(_)) {
            return None;
        }
        if RUNNING.fetch_add(1, Ordering::SeqCst) >= MOST {
            // Opened when it plays, as without a prefetch.
            RUNNING.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let (tx, rx) = sync_channel(1);
        let it = item.clone();
        let spawned = std::thread::Builder::new()
            .name("chorus-prefetch".into())
            .spawn(move || {
                // The streamer may have moved on: then nobody takes it.
                let _ = tx.send(Source::open_with(&it, rate, channels, raw));
                RUNNING.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Prefetch {
            item: item.clone(),
            rx,
        })
    }

    /// The opened source, if it is `item`'s (waiting for the thread if it is not done yet:
    /// no longer than opening it here would take). None: open it here.
    pub(super) fn take(self, item: &Item) -> Option<Result<Source, AudioError>> {
        if self.item != *item {
            return None;
        }
        self.rx.recv().ok()
    }
}
