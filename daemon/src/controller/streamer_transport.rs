//! The streamer's transport: commands (play, pause, seek, next, ...) and queue edits, and
//! opening the item that plays.

use super::*;
use crate::controller::prefetch::Prefetch;

impl Streamer {
    pub(super) fn command(&mut self, cmd: Command, reply: Option<Reply>) {
        log::info!("transport: {cmd:?}");
        let touches_current = match &cmd {
            Command::Resume
            | Command::Add { .. }
            | Command::Move { .. }
            | Command::Shuffle
            | Command::SetRepeat(_)
            | Command::ZoneVolume(_)
            | Command::ZoneMute(_) => false,
            Command::Remove(at) => *at == self.t.index,
            _ => true,
        };
        let needs_fade =
            self.t.state == TransportState::Playing && self.source.is_some() && touches_current;
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
            // A command that replaces one still waiting for its fade answers for it.
            if let Some(old) = std::mem::replace(&mut self.pending_reply, reply) {
                self.replies.push(old);
            }
        } else {
            self.apply(cmd);
            self.replies.extend(reply);
        }
    }

    /// Applies a command: the transport decides, this carries out its effects on the source,
    /// the fade and the timeline.
    pub(super) fn apply(&mut self, cmd: Command) {
        let loaded = self.source.is_some();
        let position = self.source.as_ref().map_or(0.0, |s| s.position_s());
        let e = self.t.apply(cmd, loaded, position, &mut rand::thread_rng());
        self.carry_out(e);
    }

    fn carry_out(&mut self, e: Effects) {
        if e.close {
            self.source = None;
        }
        match e.fade {
            FadeChange::Keep => {}
            FadeChange::Cancel => self.fade = None,
            FadeChange::In => {
                self.fade = Some(Fade {
                    dir: FadeDir::In,
                    done: 0,
                    total: self.fade_frames,
                })
            }
        }
        if e.resync {
            self.next_slot = self.slot_now();
        }
        if let Some(v) = e.volume {
            self.volume = v;
        }
        if let Some(m) = e.mute {
            self.muted = m;
        }
        if let Some(secs) = e.seek {
            let result = match &mut self.source {
                Some(s) => s.seek(secs).map_err(|e| e.to_string()),
                None => Err("nothing is playing".to_string()),
            };
            if let Err(err) = result {
                let item = self.current_name();
                self.record_error(item, format!("seek to {secs:.3} s failed: {err}"));
            }
        }
        if e.open {
            self.open_current();
        }
    }

    pub(super) fn current_name(&self) -> String {
        self.t
            .queue
            .get(self.t.index)
            .map(Item::to_string)
            .unwrap_or_default()
    }

    /// Opens the item at `index`, skipping (and reporting) items that cannot be played. Stops at
    /// the end of the queue.
    pub(super) fn open_current(&mut self) {
        self.source = None;
        let (rate, ch, raw) = (self.p.rate, self.p.channels as usize, self.p.raw_formats);
        while self.t.index < self.t.queue.len() {
            let item = self.t.queue[self.t.index].clone();
            let ahead = self.prefetch.take().and_then(|p| p.take(&item));
            match ahead.unwrap_or_else(|| Source::open_with(&item, rate, ch, raw)) {
                Ok(s) => {
                    let (r, c) = s.source_format();
                    log::info!("playing {item} ({r} Hz, {c} ch)");
                    self.source = Some(s);
                    self.opened += 1;
                    self.prefetch = self
                        .t
                        .upcoming()
                        .and_then(|next| Prefetch::start(next, rate, ch, raw));
                    return;
                }
                Err(e) => {
                    self.record_error(item.to_string(), e.to_string());
                    self.t.skip_failed();
                }
            }
        }
        self.t.exhausted();
    }
}
