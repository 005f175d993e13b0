//! The streamer's sending: each due datagram with its presentation time, the fades, the
//! parity after each group, the repeated tail of a stream that ends, and the announcement.

use super::*;
use crate::wire::flac_encode::build_datagram;

impl Streamer {
    pub(super) fn send_due(&mut self) {
        let now = self.clock.now().0;
        // After a stall (or a long pause in the loop) skip ahead rather than send stale audio.
        if self.pts(self.next_slot).0 - self.latency_ns < now - self.latency_ns / 2 {
            log::warn!("streamer fell behind; skipping ahead");
            self.next_slot = self.slot_now();
        }
        while self.t.state == TransportState::Playing {
            let pts = self.pts(self.next_slot);
            if pts.0 - self.latency_ns > now + BURST_NS {
                break;
            }
            let mut n = self.fpp;
            if let Some(f) = self.fade {
                if f.dir == FadeDir::Out {
                    n = n.min(f.remaining());
                }
            }
            self.buf.clear();
            let got = if n > 0 { self.read_frames(n) } else { 0 };
            self.apply_fade(got);
            if got > 0 {
                self.send_packet(pts, got);
            }
            if let Some(f) = self.fade {
                if f.remaining() == 0 {
                    self.fade = None;
                    if f.dir == FadeDir::Out {
                        if let Some(cmd) = self.pending.take() {
                            self.apply(cmd);
                            self.replies.extend(self.pending_reply.take());
                        }
                    }
                }
            }
            if self.pending.is_none() && self.source.is_none() {
                // End of the queue (reading past the last item stopped the transport): a
                // little silence after the last frame, so that the stream ends in silence. A
                // speaker fades out wherever its stream stops (a controller that dies must not
                // click); on this tail the fade changes nothing.
                let tail = (self.p.rate as usize * END_SILENCE_MS / 1000).min(self.fpp);
                self.buf.clear();
                self.buf.resize(tail * self.p.channels as usize, 0.0);
                self.send_packet(self.pts(self.next_slot), tail);
                self.t.state = TransportState::Stopped;
            }
        }
        if self.t.state != TransportState::Playing {
            // The stream stops here: protect the last, partial group too.
            self.send_parity();
            // Nothing follows the last datagrams to show a speaker that they went missing
            // (a loss burst at the very end): send the last few again twice, a quarter and
            // half the latency later: what a burst took is back at once, and a longer gap
            // shows while there is time to repair it. A speaker that has them drops the copies
            // as duplicates.
            let first = self.clock.now().0 + self.tail_step();
            self.tail = Some((self.seq.wrapping_sub(1), first, 2));
        }
    }

    /// Sends the stream's last datagram again, when due (see `send_due`).
    pub(super) fn repeat_tail(&mut self) {
        let Some((seq, due, left)) = self.tail else {
            return;
        };
        if self.t.state == TransportState::Playing {
            self.tail = None;
            return;
        }
        if self.clock.now().0 < due {
            return;
        }
        if let Ok(r) = self.recent.lock() {
            for s in (0..TAIL_REPEAT).rev().map(|back| seq.wrapping_sub(back)) {
                if let Some(d) = r.get(self.session, s) {
                    self.fanout.push(&self.socket, d, &mut self.counts);
                }
            }
        }
        self.tail = (left > 1).then_some((seq, due + self.tail_step(), left - 1));
    }

    /// Time between the sends of a stream's tail: a quarter of the latency (5 ms at least).
    pub(super) fn tail_step(&self) -> i64 {
        (self.latency_ns / 4).max(5_000_000)
    }

    /// Sends the parity of the datagrams added to the group since the last one, if any.
    pub(super) fn send_parity(&mut self) {
        let Some(fec) = &mut self.fec else { return };
        if !fec.finish(&mut self.fec_pkt) {
            return;
        }
        self.p.auth.seal(&mut self.fec_pkt);
        self.fanout
            .push(&self.socket, &self.fec_pkt, &mut self.counts);
        self.counts.parity_sent += 1;
    }

    pub(super) fn apply_fade(&mut self, frames: usize) {
        let Some(f) = &mut self.fade else { return };
        let ch = self.p.channels as usize;
        let n = frames.min(f.remaining());
        for i in 0..n {
            let g = f.gain(i);
            for s in &mut self.buf[i * ch..(i + 1) * ch] {
                *s *= g;
            }
        }
        if f.dir == FadeDir::Out && frames > n {
            self.buf[n * ch..frames * ch].fill(0.0);
        }
        f.done += n;
        if frames < n || (f.dir == FadeDir::Out && frames == 0) {
            // Source ended inside the fade: nothing left to fade.
            f.done = f.total;
        }
    }

    /// Sends the first `frames` frames of the buffer (at `pts`: the next slot's time), after
    /// the zone's gain, as one datagram or (FLAC) more.
    pub(super) fn send_packet(&mut self, pts: ControllerNs, frames: usize) {
        debug_assert_eq!(pts, self.pts(self.next_slot));
        let target = crate::dsp::volume::gain_for(self.volume, self.muted);
        let ch = self.p.channels as usize;
        self.gain.apply(target, &mut self.buf[..frames * ch], ch);
        let mut at = 0;
        while at < frames {
            let n = self.build_datagram(at, frames - at);
            self.emit(n);
            at += n;
        }
    }

    /// Builds the next datagram in `pkt` from the buffer's frames `at..at + left` (see
    /// [`build_datagram`]); returns how many it carries.
    fn build_datagram(&mut self, at: usize, left: usize) -> usize {
        let ch = self.p.channels as usize;
        let head = AudioHeader {
            session: self.session,
            seq: self.seq,
            frame_index: self.frame_index,
            pts: self.pts(self.next_slot),
            rate: self.p.rate,
            channels: self.p.channels,
            format: self.p.format,
            codec: Codec::Pcm,
            frames: 0,
        };
        let samples = &self.buf[at * ch..(at + left) * ch];
        let built = build_datagram(
            self.flac.as_mut(),
            head,
            samples,
            self.pcm_fpp,
            &mut self.pkt,
        );
        self.counts.pcm_fallbacks += u64::from(built.fallback);
        built.frames
    }

    /// Seals and sends the datagram built in `pkt`, which carries `frames` frames; keeps it
    /// for repairs and parity.
    fn emit(&mut self, frames: usize) {
        self.p.auth.seal(&mut self.pkt);
        if let Ok(mut r) = self.recent.lock() {
            r.store(self.seq, &self.pkt);
        }
        self.fanout.push(&self.socket, &self.pkt, &mut self.counts);
        let complete = self
            .fec
            .as_mut()
            .is_some_and(|f| f.add(self.session, self.seq, &self.pkt));
        if complete {
            self.send_parity();
        }
        self.seq = self.seq.wrapping_add(1);
        self.frame_index += frames as u64;
        self.next_slot += frames as i64;
        self.counts.frames_sent += frames as u64;
        self.counts.packets_sent += 1;
        self.counts.audio_bytes_sent += self.pkt.len() as u64;
    }

    pub(super) fn announce(&mut self) {
        let now = self.clock.now().0;
        if now - self.last_announce < ANNOUNCE_NS {
            return;
        }
        self.last_announce = now;
        let a = Announce {
            session: self.session,
            sync_port: self.p.sync_port,
            sent_ns: now,
        };
        let mut d = encode_announce(&a);
        self.p.auth.seal(&mut d);
        self.fanout
            .push_announce(&self.socket, &d, &mut self.counts);
    }
}
