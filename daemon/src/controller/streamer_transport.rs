//! The streamer's transport: commands (play, pause, seek, next, ...) and queue edits, and
//! opening the item that plays.

use super::*;

impl Streamer {
    pub(super) fn command(&mut self, cmd: Command) {
        log::info!("transport: {cmd:?}");
        let touches_current = match &cmd {
            Command::Resume
            | Command::Add { .. }
            | Command::Move { .. }
            | Command::Shuffle
            | Command::SetRepeat(_)
            | Command::ZoneVolume(_)
            | Command::ZoneMute(_) => false,
            Command::Remove(at) => *at == self.index,
            _ => true,
        };
        let needs_fade =
            self.state == TransportState::Playing && self.source.is_some() && touches_current;
        if needs_fade {
            // Fade out from the next frame on; the command takes effect when the fade ends.
            let done = match self.fade {
                // Already fading out: keep going from where it is.
                Some(Fade {
                    dir: FadeDir::Out,
                    done,
                    ..
                }) => done,
                // Fading in: start the fade-out at the same gain.
                Some(
                    f @ Fade {
                        dir: FadeDir::In, ..
                    },
                ) => f.remaining(),
                None => 0,
            };
            self.fade = Some(Fade {
                dir: FadeDir::Out,
                done,
                total: self.fade_frames,
            });
            self.pending = Some(cmd);
        } else {
            self.apply(cmd);
        }
    }

    pub(super) fn apply(&mut self, cmd: Command) {
        let was_playing = self.state == TransportState::Playing;
        match cmd {
            Command::Play { uri, items } => {
                self.uri = Some(uri);
                self.queue = items;
                self.queue_version += 1;
                self.index = 0;
                self.source = None;
                self.fade = None;
                if !was_playing {
                    self.next_slot = self.slot_now();
                }
                self.state = TransportState::Playing;
                self.open_current();
            }
            Command::Pause => {
                if self.state == TransportState::Playing {
                    self.state = TransportState::Paused;
                }
                self.fade = None;
            }
            Command::Resume => match self.state {
                TransportState::Paused => {
                    self.state = TransportState::Playing;
                    self.next_slot = self.slot_now();
                    self.fade = Some(Fade {
                        dir: FadeDir::In,
                        done: 0,
                        total: self.fade_frames,
                    });
                }
                TransportState::Stopped if !self.queue.is_empty() => {
                    self.state = TransportState::Playing;
                    self.next_slot = self.slot_now();
                    if self.source.is_none() {
                        self.open_current();
                    }
                }
                _ => {}
            },
            Command::Stop => {
                self.state = TransportState::Stopped;
                self.source = None;
                self.index = 0;
                self.fade = None;
            }
            Command::Next => {
                self.fade = None;
                self.index += 1;
                if self.repeat != Repeat::Off && self.index >= self.queue.len() {
                    self.index = 0;
                }
                self.open_current();
            }
            cmd @ (Command::Add { .. }
            | Command::Remove(_)
            | Command::Move { .. }
            | Command::Clear
            | Command::Shuffle) => self.edit_queue(cmd),
            Command::SetRepeat(r) => self.repeat = r,
            Command::ZoneVolume(v) => self.volume = v.min(100),
            Command::ZoneMute(m) => self.muted = m,
            Command::Previous => {
                self.fade = None;
                let restart = self
                    .source
                    .as_ref()
                    .map(|s| s.position_s() > 3.0)
                    .unwrap_or(false);
                if !restart {
                    self.index = self.index.saturating_sub(1);
                }
                self.open_current();
            }
            Command::Seek(secs) => {
                let result = match &mut self.source {
                    Some(s) => s.seek(secs).map_err(|e| e.to_string()),
                    None => Err("nothing is playing".to_string()),
                };
                if let Err(e) = result {
                    let item = self.current_name();
                    self.record_error(item, format!("seek to {secs:.3} s failed: {e}"));
                }
                if self.state == TransportState::Playing {
                    self.fade = Some(Fade {
                        dir: FadeDir::In,
                        done: 0,
                        total: self.fade_frames,
                    });
                } else {
                    self.fade = None;
                }
            }
        }
    }

    /// Queue edits; the item playing stays the one playing (or, removed, the next takes its
    /// place).
    pub(super) fn edit_queue(&mut self, cmd: Command) {
        match cmd {
            Command::Add { at, items } => {
                let at = at.unwrap_or(self.queue.len()).min(self.queue.len());
                let n = items.len();
                self.queue.splice(at..at, items);
                // The item playing stays the one playing.
                if at <= self.index && self.source.is_some() {
                    self.index += n;
                }
                self.queue_version += 1;
            }
            Command::Remove(at) if at < self.queue.len() => {
                self.queue.remove(at);
                self.queue_version += 1;
                if at < self.index {
                    self.index -= 1;
                } else if at == self.index && self.source.is_some() {
                    // The item playing went: the next one takes its place (after the fade).
                    self.fade = None;
                    if self.repeat == Repeat::All && self.index >= self.queue.len() {
                        self.index = 0;
                    }
                    self.open_current();
                }
            }
            Command::Move { from, to } if from < self.queue.len() && to < self.queue.len() => {
                let item = self.queue.remove(from);
                self.queue.insert(to, item);
                self.queue_version += 1;
                if self.source.is_some() {
                    self.index = index_after_move(self.index, from, to);
                }
            }
            Command::Clear => {
                self.queue.clear();
                self.queue_version += 1;
                self.state = TransportState::Stopped;
                self.source = None;
                self.index = 0;
                self.fade = None;
            }
            Command::Shuffle => {
                use rand::seq::SliceRandom;
                if self.source.is_some() && self.index < self.queue.len() {
                    let current = self.queue.remove(self.index);
                    self.queue.shuffle(&mut rand::thread_rng());
                    self.queue.insert(0, current);
                    self.index = 0;
                } else {
                    self.queue.shuffle(&mut rand::thread_rng());
                }
                self.queue_version += 1;
            }
            _ => {}
        }
    }

    pub(super) fn current_name(&self) -> String {
        self.queue
            .get(self.index)
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// Opens the item at `index`, skipping (and reporting) items that cannot be played. Stops at
    /// the end of the queue.
    pub(super) fn open_current(&mut self) {
        self.source = None;
        while self.index < self.queue.len() {
            let path = self.queue[self.index].clone();
            match Source::open_with(
                &path,
                self.p.rate,
                self.p.channels as usize,
                self.p.raw_formats,
            ) {
                Ok(s) => {
                    let (r, c) = s.source_format();
                    log::info!("playing {} ({} Hz, {} ch)", path.display(), r, c);
                    self.source = Some(s);
                    self.opened += 1;
                    return;
                }
                Err(e) => {
                    self.record_error(path.display().to_string(), e.to_string());
                    self.index += 1;
                }
            }
        }
        self.state = TransportState::Stopped;
        self.index = 0;
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
mod tests {
    use super::index_after_move;

    #[test]
    fn the_item_playing_stays_the_one_playing_when_another_moves() {
        // Queue a b c d e, c (2) playing.
        assert_eq!(index_after_move(2, 2, 4), 4); // c itself moves to the end
        assert_eq!(index_after_move(2, 0, 3), 1); // a moves after c
        assert_eq!(index_after_move(2, 4, 0), 3); // e moves before c
        assert_eq!(index_after_move(2, 3, 4), 2); // d and e swap behind it
        assert_eq!(index_after_move(2, 0, 1), 2); // a and b swap before it
        assert_eq!(index_after_move(2, 4, 2), 3); // e into c's place: c after it
        assert_eq!(index_after_move(2, 0, 2), 1); // a into c's place: c before it
    }
}
