//! The transport (pure logic): the queue, the item playing, play/pause/stop and repeat. A
//! command changes them and answers with the [`Effects`] the streamer carries out on its
//! source, fade and clock (open the item now at `index`, close it, fade, seek, start a fresh
//! timeline). No I/O: tested below.

use super::streamer::{Command, Repeat, TransportState};
use crate::audio::Item;
use rand::seq::SliceRandom;

/// What the transport knows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transport {
    pub state: TransportState,
    /// What was asked to play (a file, a folder, a playlist, a station).
    pub uri: Option<String>,
    pub queue: Vec<Item>,
    /// Bumped at every change of the queue (the status copies the queue only then).
    pub queue_version: u64,
    /// The item playing (or to play next).
    pub index: usize,
    pub repeat: Repeat,
}

/// A change of the fade under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FadeChange {
    #[default]
    Keep,
    /// No fade: the next frames play at full level (a new item starts as it was made).
    Cancel,
    /// Fade in from silence.
    In,
}

/// What the streamer does after a command, in this order: close the source, change the fade,
/// start the timeline at the next slot from now, set volume and mute, seek, open the item at
/// `index`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Effects {
    pub close: bool,
    pub fade: FadeChange,
    pub resync: bool,
    pub volume: Option<u8>,
    pub mute: Option<bool>,
    pub seek: Option<f64>,
    pub open: bool,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            state: TransportState::Stopped,
            uri: None,
            queue: vec![],
            queue_version: 0,
            index: 0,
            repeat: Repeat::Off,
        }
    }
}

impl Transport {
    /// Applies `cmd`. `loaded`: an item is open; `position_s`: how far into it.
    pub(crate) fn apply(
        &mut self,
        cmd: Command,
        loaded: bool,
        position_s: f64,
        rng: &mut impl rand::Rng,
    ) -> Effects {
        let was_playing = self.state == TransportState::Playing;
        let mut e = Effects::default();
        match cmd {
            Command::Play { uri, items } => {
                self.uri = Some(uri);
                self.queue = items;
                self.queue_version += 1;
                self.index = 0;
                self.state = TransportState::Playing;
                (e.close, e.fade, e.resync, e.open) =
                    (true, FadeChange::Cancel, !was_playing, true);
            }
            Command::Pause => {
                if was_playing {
                    self.state = TransportState::Paused;
                }
                e.fade = FadeChange::Cancel;
            }
            Command::Resume => match self.state {
                TransportState::Paused => {
                    self.state = TransportState::Playing;
                    (e.resync, e.fade) = (true, FadeChange::In);
                }
                TransportState::Stopped if !self.queue.is_empty() => {
                    self.state = TransportState::Playing;
                    (e.resync, e.open) = (true, !loaded);
                }
                _ => {}
            },
            Command::Stop => {
                self.state = TransportState::Stopped;
                self.index = 0;
                (e.close, e.fade) = (true, FadeChange::Cancel);
            }
            Command::Next => {
                self.index += 1;
                if self.repeat != Repeat::Off && self.index >= self.queue.len() {
                    self.index = 0;
                }
                (e.fade, e.open) = (FadeChange::Cancel, true);
            }
            Command::Previous => {
                // Past its first 3 s an item starts over; before, the one before it plays.
                if !(loaded && position_s > 3.0) {
                    self.index = self.index.saturating_sub(1);
                }
                (e.fade, e.open) = (FadeChange::Cancel, true);
            }
            Command::Seek(secs) => {
                e.seek = Some(secs);
                e.fade = if was_playing {
                    FadeChange::In
                } else {
                    FadeChange::Cancel
                };
            }
            Command::SetRepeat(r) => self.repeat = r,
            Command::ZoneVolume(v) => e.volume = Some(v.min(100)),
            Command::ZoneMute(m) => e.mute = Some(m),
            cmd => self.edit_queue(cmd, loaded, rng, &mut e),
        }
        e
    }

    /// Queue edits; the item playing stays the one playing (or, removed, the next takes its
    /// place).
    fn edit_queue(
        &mut self,
        cmd: Command,
        loaded: bool,
        rng: &mut impl rand::Rng,
        e: &mut Effects,
    ) {
        match cmd {
            Command::Add { at, items } => {
                let at = at.unwrap_or(self.queue.len()).min(self.queue.len());
                let n = items.len();
                self.queue.splice(at..at, items);
                if at <= self.index && loaded {
                    self.index += n;
                }
            }
            Command::Remove(at) if at < self.queue.len() => {
                self.queue.remove(at);
                if at < self.index {
                    self.index -= 1;
                } else if at == self.index && loaded {
                    // The item playing went: the next one takes its place (after the fade).
                    if self.repeat == Repeat::All && self.index >= self.queue.len() {
                        self.index = 0;
                    }
                    (e.fade, e.open) = (FadeChange::Cancel, true);
                }
            }
            Command::Move { from, to } if from < self.queue.len() && to < self.queue.len() => {
                let item = self.queue.remove(from);
                self.queue.insert(to, item);
                if loaded {
                    self.index = index_after_move(self.index, from, to);
                }
            }
            Command::Clear => {
                self.queue.clear();
                self.state = TransportState::Stopped;
                self.index = 0;
                (e.close, e.fade) = (true, FadeChange::Cancel);
            }
            Command::Shuffle => {
                if loaded && self.index < self.queue.len() {
                    let current = self.queue.remove(self.index);
                    self.queue.shuffle(rng);
                    self.queue.insert(0, current);
                    self.index = 0;
                } else {
                    self.queue.shuffle(rng);
                }
            }
            // Out of range: nothing changes.
            _ => return,
        }
        self.queue_version += 1;
    }

    /// The item at `index` could not be opened: the next one is tried.
    pub(crate) fn skip_failed(&mut self) {
        self.index += 1;
    }

    /// Nothing left to open: the queue has played (or failed) to its end.
    pub(crate) fn exhausted(&mut self) {
        self.state = TransportState::Stopped;
        self.index = 0;
    }

    /// The item playing ended: the next one, by the repeat mode.
    pub(crate) fn advance(&mut self) {
        self.index = self.after_this();
    }

    /// The item that plays when this one ends, if the queue has one (what `advance` chooses:
    /// the streamer opens it ahead).
    pub(crate) fn upcoming(&self) -> Option<&Item> {
        self.queue.get(self.after_this())
    }

    fn after_this(&self) -> usize {
        match self.repeat {
            Repeat::One => self.index,
            Repeat::All if self.index + 1 >= self.queue.len() => 0,
            _ => self.index + 1,
        }
    }
}

/// Where the item at `index` is after the item at `from` moved to `to`.
fn index_after_move(index: usize, from: usize, to: usize) -> usize {
    if from == index {
        to
    } else if from < index && to >= index {
        index - 1
    } else if from > index && to <= index {
        index + 1
    } else {
        index
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
