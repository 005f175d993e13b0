//! The jitter buffer: received audio keyed by frame index, until the playout thread takes it.

use crate::clock::{frames_to_ns, ControllerNs};
use std::collections::BTreeMap;

/// A run of decoded frames from one datagram.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub session: u32,
    pub frame_index: u64,
    pub pts: ControllerNs,
    /// Interleaved samples.
    pub samples: Vec<f32>,
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
    /// Contiguous interleaved samples from it.
    pub samples: &'a [f32],
}

/// Chunks keyed by the index of their first frame.
pub struct JitterBuffer {
    channels: usize,
    rate: u32,
    session: Option<u32>,
    chunks: BTreeMap<u64, Chunk>,
    max_chunks: usize,
    floor: u64,
}

impl JitterBuffer {
    pub fn new(rate: u32, channels: usize, max_chunks: usize) -> Self {
        JitterBuffer {
            channels,
            rate,
            session: None,
            chunks: BTreeMap::new(),
            max_chunks,
            floor: 0,
        }
    }

    fn frames(&self, c: &Chunk) -> u64 {
        (c.samples.len() / self.channels) as u64
    }

    /// Inserts a chunk.
    pub fn insert(&mut self, chunk: Chunk) -> Insert {
        let mut result = Insert::Inserted;
        if self.session != Some(chunk.session) {
            self.chunks.clear();
            self.floor = 0;
            self.session = Some(chunk.session);
            result = Insert::NewSession;
        }
        if chunk.frame_index + self.frames(&chunk) <= self.floor {
            return Insert::Stale;
        }
        if self.chunks.contains_key(&chunk.frame_index) {
            return Insert::Duplicate;
        }
        if self.chunks.len() >= self.max_chunks {
            return Insert::Full;
        }
        self.chunks.insert(chunk.frame_index, chunk);
        result
    }

    /// The first frames available at or after `cursor`.
    pub fn find(&self, cursor: u64) -> Option<Available<'_>> {
        if let Some((_, c)) = self.chunks.range(..=cursor).next_back() {
            let end = c.frame_index + self.frames(c);
            if cursor < end {
                let off = cursor - c.frame_index;
                return Some(Available {
                    frame_index: cursor,
                    pts: c.pts.plus(frames_to_ns(off as i64, self.rate)),
                    samples: &c.samples[off as usize * self.channels..],
                });
            }
        }
        self.chunks.range(cursor..).next().map(|(_, c)| Available {
            frame_index: c.frame_index,
            pts: c.pts,
            samples: &c.samples,
        })
    }

    /// Drops every chunk that ends at or before `cursor`; later inserts below it are stale.
    pub fn discard_before(&mut self, cursor: u64) {
        self.floor = self.floor.max(cursor);
        while let Some(entry) = self.chunks.first_entry() {
            let c = entry.get();
            if c.frame_index + (c.samples.len() / self.channels) as u64 <= cursor {
                entry.remove();
            } else {
                break;
            }
        }
    }

    /// Frames held.
    pub fn buffered_frames(&self) -> u64 {
        self.chunks.values().map(|c| self.frames(c)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(session: u32, idx: u64, frames: usize) -> Chunk {
        Chunk {
            session,
            frame_index: idx,
            pts: ControllerNs(idx as i64 * 1_000_000),
            samples: (0..frames * 2)
                .map(|i| (idx as usize * 2 + i) as f32)
                .collect(),
        }
    }

    #[test]
    fn finds_inside_and_after_chunks() {
        let mut jb = JitterBuffer::new(1000, 2, 16);
        assert_eq!(jb.insert(chunk(1, 10, 5)), Insert::NewSession);
        assert_eq!(jb.insert(chunk(1, 20, 5)), Insert::Inserted);
        assert_eq!(jb.insert(chunk(1, 20, 5)), Insert::Duplicate);
        let a = jb.find(12).unwrap();
        assert_eq!(
            (a.frame_index, a.pts, a.samples.len()),
            (12, ControllerNs(12_000_000), 6)
        );
        assert_eq!(a.samples[0], 24.0);
        assert_eq!(jb.find(15).unwrap().frame_index, 20);
        assert!(jb.find(25).is_none());
        jb.discard_before(15);
        assert_eq!(jb.buffered_frames(), 5);
        assert_eq!(jb.insert(chunk(1, 10, 5)), Insert::Stale);
        assert_eq!(jb.insert(chunk(2, 0, 5)), Insert::NewSession);
        assert_eq!(jb.buffered_frames(), 5);
    }

    #[test]
    fn bounded() {
        let mut jb = JitterBuffer::new(1000, 2, 2);
        jb.insert(chunk(1, 0, 1));
        jb.insert(chunk(1, 1, 1));
        assert_eq!(jb.insert(chunk(1, 2, 1)), Insert::Full);
    }
}
