//! Playout scheduling (pure logic): turns the jitter buffer into a gapless stream of frames on
//! the controller's grid, one frame per slot, starting at an anchor time `t0`: frame `n` of the
//! output of `fill` is the one due at `t0 + n / rate`. A frame whose presentation time lies
//! ahead gets silence before it, a frame whose time has passed is skipped (late join, resync), a
//! missing frame is concealed with silence and counted. The resampler after it maps this
//! stream onto the DAC's clock.

use super::jitter::JitterBuffer;
use crate::clock::{frames_to_ns, ns_to_frames, ControllerNs};

/// Counters kept by the scheduler.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleStats {
    /// Audio frames written.
    pub played: u64,
    /// Silent frames written (idle, waiting, gaps).
    pub silence: u64,
    /// Frames skipped because their time had passed (joining, resync).
    pub late: u64,
    /// Frames that never arrived before their time (concealed with silence).
    pub lost: u64,
    /// Timeline re-anchored (the measured error exceeded the playout's threshold).
    pub resyncs: u64,
}

#[derive(Debug, Clone, Copy)]
struct Timeline {
    t0: ControllerNs,
    frames: i64,
}

/// The scheduler.
pub struct Scheduler {
    rate: u32,
    channels: usize,
    cursor: u64,
    timeline: Option<Timeline>,
    stats: ScheduleStats,
}

impl Scheduler {
    pub fn new(rate: u32, channels: usize) -> Self {
        Scheduler {
            rate,
            channels,
            cursor: 0,
            timeline: None,
            stats: ScheduleStats::default(),
        }
    }

    /// A new stream session started: frame indices start over.
    pub fn reset_stream(&mut self) {
        self.cursor = 0;
    }

    /// Forget the timeline (device restarted).
    pub fn reset_timeline(&mut self) {
        self.timeline = None;
    }

    /// Anchors the stream timeline: the next frame `fill` produces is the one due at `t0`
    /// (controller time). Re-anchoring drops or inserts frames to land on the new schedule.
    pub fn anchor(&mut self, t0: ControllerNs) {
        if self.timeline.is_some() {
            self.stats.resyncs += 1;
        }
        self.timeline = Some(Timeline { t0, frames: 0 });
    }

    /// The anchor: controller time of the first frame produced since anchoring.
    pub fn anchor_time(&self) -> Option<ControllerNs> {
        self.timeline.map(|t| t.t0)
    }

    /// Frames produced since anchoring.
    pub fn produced(&self) -> i64 {
        self.timeline.map(|t| t.frames).unwrap_or(0)
    }

    pub fn stats(&self) -> ScheduleStats {
        self.stats
    }

    /// Fills `out` (interleaved) with the frames due in the next slots, silence where none is.
    /// Without a timeline (clock not locked yet) it writes silence.
    pub fn fill(&mut self, jb: &mut JitterBuffer, out: &mut [f32]) {
        let ch = self.channels;
        let n = out.len() / ch;
        let Some(tl) = self.timeline else {
            out.fill(0.0);
            self.stats.silence += n as u64;
            return;
        };
        let t0 = tl.t0.plus(frames_to_ns(tl.frames, self.rate));
        let mut i = 0usize;
        while i < n {
            let slot_time = t0.plus(frames_to_ns(i as i64, self.rate));
            let Some(av) = jb.find(self.cursor) else {
                out[i * ch..].fill(0.0);
                self.stats.silence += (n - i) as u64;
                break;
            };
            let lead = ns_to_frames(av.pts.since(slot_time), self.rate);
            if lead > 0 {
                // Not due yet: silence until it is.
                let k = (lead as usize).min(n - i);
                out[i * ch..(i + k) * ch].fill(0.0);
                self.stats.silence += k as u64;
                i += k;
            } else if lead < 0 {
                // Its time has passed: skip to the frame due now.
                let skip = (-lead) as u64;
                self.stats.late += skip.min((av.samples.len() / ch) as u64);
                self.cursor = av.frame_index + skip;
                jb.discard_before(self.cursor);
            } else {
                if av.frame_index > self.cursor {
                    self.stats.lost += av.frame_index - self.cursor;
                }
                let k = (av.samples.len() / ch).min(n - i);
                out[i * ch..(i + k) * ch].copy_from_slice(&av.samples[..k * ch]);
                self.stats.played += k as u64;
                self.cursor = av.frame_index + k as u64;
                i += k;
                jb.discard_before(self.cursor);
            }
        }
        self.timeline = Some(Timeline {
            t0: tl.t0,
            frames: tl.frames + n as i64,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::jitter::Chunk;
    use super::*;

    const RATE: u32 = 1000; // 1 ms per frame keeps the arithmetic readable

    fn chunk(idx: u64, pts_ms: i64, frames: usize) -> Chunk {
        Chunk {
            session: 1,
            frame_index: idx,
            pts: ControllerNs(pts_ms * 1_000_000),
            samples: (0..frames).map(|i| (idx as usize + i + 1) as f32).collect(),
        }
    }

    fn run(s: &mut Scheduler, jb: &mut JitterBuffer, n: usize) -> Vec<f32> {
        let mut out = vec![9.0; n];
        s.fill(jb, &mut out);
        out
    }

    #[test]
    fn plays_at_presentation_time() {
        let mut jb = JitterBuffer::new(RATE, 1, 64);
        jb.insert(chunk(0, 103, 4));
        jb.insert(chunk(4, 107, 4));
        let mut s = Scheduler::new(RATE, 1);
        s.anchor(ControllerNs(100_000_000));
        assert_eq!(run(&mut s, &mut jb, 6), vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
        assert_eq!(run(&mut s, &mut jb, 6), vec![4.0, 5.0, 6.0, 7.0, 8.0, 0.0]);
        assert_eq!(s.stats().played, 8);
    }

    #[test]
    fn late_join_skips_to_the_frame_due_now() {
        let mut jb = JitterBuffer::new(RATE, 1, 64);
        jb.insert(chunk(1000, 95, 10));
        let mut s = Scheduler::new(RATE, 1);
        s.anchor(ControllerNs(100_000_000));
        // frame 1005 is due at 100 ms
        assert_eq!(run(&mut s, &mut jb, 3), vec![1006.0, 1007.0, 1008.0]);
        assert_eq!(s.stats().late, 5);
    }

    #[test]
    fn lost_packet_is_concealed_and_timing_kept() {
        let mut jb = JitterBuffer::new(RATE, 1, 64);
        jb.insert(chunk(0, 100, 2));
        jb.insert(chunk(4, 104, 2)); // frames 2, 3 lost
        let mut s = Scheduler::new(RATE, 1);
        s.anchor(ControllerNs(100_000_000));
        assert_eq!(run(&mut s, &mut jb, 6), vec![1.0, 2.0, 0.0, 0.0, 5.0, 6.0]);
        assert_eq!(s.stats().lost, 2);
    }

    #[test]
    fn reanchoring_skips_to_the_new_schedule() {
        let mut jb = JitterBuffer::new(RATE, 1, 64);
        jb.insert(chunk(0, 100, 20));
        let mut s = Scheduler::new(RATE, 1);
        s.anchor(ControllerNs(100_000_000));
        assert_eq!(run(&mut s, &mut jb, 2), vec![1.0, 2.0]);
        assert_eq!(s.produced(), 2);
        s.anchor(ControllerNs(107_000_000)); // 5 ms further than the 102 ms it was at
        assert_eq!(run(&mut s, &mut jb, 2), vec![8.0, 9.0]);
        assert_eq!(s.stats().resyncs, 1);
    }
}
