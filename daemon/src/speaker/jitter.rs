//! The jitter buffer: received audio keyed by frame index, until the playout thread takes it.

use crate::clock::{frames_to_ns, ControllerNs};
use crate::wire::{Pcm, SampleFormat};
use std::collections::VecDeque;

/// Spare datagram buffers kept beyond the ring's size (a batch of datagrams in flight).
const SPARE_EXTRA: usize = 64;

/// The frames of one datagram, kept as they came: the datagram's own buffer, which the
/// receiver read it into, so that they are decoded once, straight into the period they play in
/// (`Available::decode`), and never copied on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub session: u32,
    pub frame_index: u64,
    pub pts: ControllerNs,
    /// Frames held, and their encoding (interleaved, the buffer's channels).
    pub frames: u32,
    pub format: SampleFormat,
    /// The datagram's buffer; the frames start `offset` bytes in.
    pub data: Vec<u8>,
    pub offset: usize,
}

impl Chunk {
    /// A chunk holding `samples` (interleaved, `channels` of them a frame) encoded as
    /// `format`, as a datagram of them would arrive (tests, benches).
    pub fn encode(
        (session, frame_index, pts): (u32, u64, ControllerNs),
        format: SampleFormat,
        channels: usize,
        samples: &[f32],
    ) -> Chunk {
        let mut data = vec![0xA5; 3];
        format.encode(samples, &mut data);
        Chunk {
            session,
            frame_index,
            pts,
            frames: (samples.len() / channels.max(1)) as u32,
            format,
            data,
            offset: 3,
        }
    }
}

/// What happened to an inserted chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    Inserted,
    /// A new stream session began: everything older was discarded.
    NewSession,
    /// Already have it.
    Duplicate,
    /// Its frames were already played or skipped.
    Stale,
    /// The buffer is full.
    Full,
}

/// Frames available at or after a cursor.
#[derive(Debug, PartialEq)]
pub struct Available<'a> {
    /// Index of the first available frame (>= cursor).
    pub frame_index: u64,
    /// Its presentation time.
    pub pts: ControllerNs,
    /// Contiguous frames from it (in one datagram).
    pub frames: usize,
    format: SampleFormat,
    /// Their encoded samples.
    bytes: &'a [u8],
}

impl Available<'_> {
    /// Decodes the first `out.len()` samples (whole frames, at most `frames` of them) into
    /// `out`.
    pub fn decode(&self, out: &mut [f32]) {
        let n = self.format.decode_into(self.bytes, out);
        debug_assert_eq!(n, out.len(), "more samples asked for than available");
        out[n..].fill(0.0);
    }
}

/// Chunks in order of their first frame, in a ring allocated once: inserting, finding and
/// discarding never allocate, and the datagram buffers of chunks that leave are kept for the
/// receiver to read the next datagrams into (`take_spare`) instead of being freed — this runs
/// on the real-time playout thread.
pub struct JitterBuffer {
    channels: usize,
    rate: u32,
    session: Option<u32>,
    chunks: VecDeque<Chunk>,
    max_chunks: usize,
    floor: u64,
    frames: u64,
    /// Datagram buffers of chunks that left, for reuse (capacity reserved: pushing never
    /// allocates).
    spare: Vec<Vec<u8>>,
}

impl JitterBuffer {
    pub fn new(rate: u32, channels: usize, max_chunks: usize) -> Self {
        JitterBuffer {
            channels,
            rate,
            session: None,
            chunks: VecDeque::with_capacity(max_chunks),
            max_chunks,
            floor: 0,
            frames: 0,
            spare: Vec::with_capacity(max_chunks + SPARE_EXTRA),
        }
    }

    /// Allocates `n` spare buffers of `len` bytes now, so that the playout thread does not
    /// allocate when more audio than ever before is waiting (after a stall, say).
    pub fn reserve_spares(&mut self, n: usize, len: usize) {
        while self.spare.len() < n.min(self.spare.capacity()) {
            self.spare.push(vec![0; len]);
        }
    }

    /// A buffer of `len` bytes to read a datagram into: one that a chunk left behind, or a new
    /// one while the buffer is filling for the first time. Its contents are left as they were.
    pub fn take_spare(&mut self, len: usize) -> Vec<u8> {
        let mut v = self.spare.pop().unwrap_or_default();
        v.resize(len, 0);
        v
    }

    /// Takes back a buffer that was not inserted after all.
    pub fn give_back(&mut self, data: Vec<u8>) {
        if self.spare.len() < self.spare.capacity() {
            self.spare.push(data);
        }
    }

    fn frames(&self, c: &Chunk) -> u64 {
        u64::from(c.frames)
    }

    fn recycle(&mut self, c: Chunk) {
        self.give_back(c.data);
    }

    /// Inserts a chunk.
    pub fn insert(&mut self, chunk: Chunk) -> Insert {
        let mut result = Insert::Inserted;
        if self.session != Some(chunk.session) {
            while let Some(c) = self.chunks.pop_front() {
                self.recycle(c);
            }
            self.frames = 0;
            self.floor = 0;
            self.session = Some(chunk.session);
            result = Insert::NewSession;
        }
        let outcome = if chunk.frame_index + self.frames(&chunk) <= self.floor {
            Some(Insert::Stale)
        } else if self.chunks.len() >= self.max_chunks {
            Some(Insert::Full)
        } else {
            None
        };
        if let Some(o) = outcome {
            self.recycle(chunk);
            return o;
        }
        let at = self
            .chunks
            .partition_point(|c| c.frame_index < chunk.frame_index);
        if self
            .chunks
            .get(at)
            .is_some_and(|c| c.frame_index == chunk.frame_index)
        {
            self.recycle(chunk);
            return Insert::Duplicate;
        }
        self.frames += self.frames(&chunk);
        // In order (the usual case) this is a push at the back; capacity was reserved.
        self.chunks.insert(at, chunk);
        result
    }

    /// The first frames available at or after `cursor`.
    pub fn find(&self, cursor: u64) -> Option<Available<'_>> {
        let after = self.chunks.partition_point(|c| c.frame_index <= cursor);
        if after > 0 {
            let c = &self.chunks[after - 1];
            let end = c.frame_index + self.frames(c);
            if cursor < end {
                let off = cursor - c.frame_index;
                return Some(self.available(c, off));
            }
        }
        self.chunks.get(after).map(|c| self.available(c, 0))
    }

    /// The frames of `c` from its `off`-th on.
    fn available<'a>(&self, c: &'a Chunk, off: u64) -> Available<'a> {
        let start = c.offset + off as usize * self.channels * c.format.bytes();
        let end = c.offset + c.frames as usize * self.channels * c.format.bytes();
        Available {
            frame_index: c.frame_index + off,
            pts: c.pts.plus(frames_to_ns(off as i64, self.rate)),
            frames: (u64::from(c.frames) - off) as usize,
            format: c.format,
            // The receiver made the chunk from a datagram that holds its frames (a range
            // outside it would be a bug; it yields no audio rather than a panic).
            bytes: c.data.get(start..end).unwrap_or_default(),
        }
    }

    /// Frames held without a gap from `cursor` on, counting at most `max`.
    pub fn contiguous(&self, cursor: u64, max: u64) -> u64 {
        let mut at = self
            .chunks
            .partition_point(|c| c.frame_index + self.frames(c) <= cursor);
        let mut pos = cursor;
        while pos - cursor < max {
            let Some(c) = self.chunks.get(at) else { break };
            if c.frame_index > pos {
                break;
            }
            pos = c.frame_index + self.frames(c);
            at += 1;
        }
        (pos - cursor).min(max)
    }

    /// Drops every chunk that ends at or before `cursor`; later inserts below it are stale.
    pub fn discard_before(&mut self, cursor: u64) {
        self.floor = self.floor.max(cursor);
        while let Some(c) = self.chunks.front() {
            if c.frame_index + self.frames(c) > cursor {
                break;
            }
            if let Some(c) = self.chunks.pop_front() {
                self.frames -= self.frames(&c);
                self.recycle(c);
            }
        }
    }

    /// A point of the stream's presentation grid: the first held chunk's frame index and
    /// presentation time (every frame of the session lies on this grid).
    pub fn grid(&self) -> Option<(u64, ControllerNs)> {
        self.chunks.front().map(|c| (c.frame_index, c.pts))
    }

    /// Frames held.
    pub fn buffered_frames(&self) -> u64 {
        self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample values n / 32768 (exact in 16 bits), counting up from 2 × idx.
    fn chunk(session: u32, idx: u64, frames: usize) -> Chunk {
        let samples: Vec<f32> = (0..frames * 2)
            .map(|i| (idx as usize * 2 + i) as f32 / 32768.0)
            .collect();
        let pts = ControllerNs(idx as i64 * 1_000_000);
        Chunk::encode((session, idx, pts), SampleFormat::S16, 2, &samples)
    }

    fn decoded(a: &Available<'_>) -> Vec<f32> {
        let mut out = vec![9.0; a.frames * 2];
        a.decode(&mut out);
        out.iter().map(|v| v * 32768.0).collect()
    }

    #[test]
    fn finds_inside_and_after_chunks() {
        let mut jb = JitterBuffer::new(1000, 2, 16);
        assert_eq!(jb.insert(chunk(1, 10, 5)), Insert::NewSession);
        assert_eq!(jb.insert(chunk(1, 20, 5)), Insert::Inserted);
        assert_eq!(jb.insert(chunk(1, 20, 5)), Insert::Duplicate);
        let a = jb.find(12).unwrap();
        assert_eq!(
            (a.frame_index, a.pts, a.frames),
            (12, ControllerNs(12_000_000), 3)
        );
        assert_eq!(decoded(&a), [24.0, 25.0, 26.0, 27.0, 28.0, 29.0]);
        assert_eq!(jb.find(15).unwrap().frame_index, 20);
        assert_eq!(jb.contiguous(12, 100), 3);
        assert_eq!(jb.contiguous(15, 100), 0);
        jb.insert(chunk(1, 15, 5));
        assert_eq!(jb.contiguous(12, 100), 13);
        assert_eq!(jb.contiguous(12, 4), 4);
        assert!(jb.find(25).is_none());
        jb.discard_before(15);
        assert_eq!(jb.buffered_frames(), 10);
        assert_eq!(jb.insert(chunk(1, 10, 5)), Insert::Stale);
        assert_eq!(jb.insert(chunk(2, 0, 5)), Insert::NewSession);
        assert_eq!(jb.buffered_frames(), 5);
    }

    #[test]
    fn out_of_order_and_recycled() {
        let mut jb = JitterBuffer::new(1000, 2, 16);
        jb.insert(chunk(1, 30, 5));
        jb.insert(chunk(1, 10, 5));
        jb.insert(chunk(1, 20, 5));
        assert_eq!(jb.insert(chunk(1, 20, 5)), Insert::Duplicate);
        assert_eq!(jb.find(0).unwrap().frame_index, 10);
        assert_eq!(jb.find(16).unwrap().frame_index, 20);
        assert_eq!(jb.buffered_frames(), 15);
        jb.discard_before(25);
        assert_eq!(jb.buffered_frames(), 5);
        assert_eq!(jb.find(0).unwrap().frame_index, 30);
        // the duplicate and the two discarded chunks came back, their memory kept
        let back: Vec<Vec<u8>> = (0..4).map(|_| jb.take_spare(8)).collect();
        assert!(back[..3].iter().all(|v| v.len() == 8 && v.capacity() >= 23));
        assert!(back[3].capacity() < 23, "only three were given back");
    }

    #[test]
    fn bounded() {
        let mut jb = JitterBuffer::new(1000, 2, 2);
        jb.insert(chunk(1, 0, 1));
        jb.insert(chunk(1, 1, 1));
        assert_eq!(jb.insert(chunk(1, 2, 1)), Insert::Full);
    }
}
