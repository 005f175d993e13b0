//! Playout scheduling (pure logic): which frame goes into each slot of the output so that it is
//! heard at its presentation time.
//!
//! The scheduler predicts the controller time of the next output slot from what it has written
//! (`t0 + frames / rate`) and compares that prediction with the time measured from the device
//! (delay + timestamp through the clock model). Within a threshold the prediction stands, so
//! frames stay sample-exact; beyond it the timeline is re-anchored to the measurement (a resync,
//! counted) and the frame lookup drops or inserts frames to land back on schedule.

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
    /// Timeline re-anchored because the measured error exceeded the threshold.
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
    threshold_ns: i64,
    last_error_ns: Option<i64>,
    stats: ScheduleStats,
}

impl Scheduler {
    pub fn new(rate: u32, channels: usize, threshold_ns: i64) -> Self {
        Scheduler {
            rate,
            channels,
            cursor: 0,
            timeline: None,
            threshold_ns,
            last_error_ns: None,
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
        self.last_error_ns = None;
    }

    /// Predicted controller time at which the next written frame is heard.
    pub fn next_time(&self) -> Option<ControllerNs> {
        self.timeline
            .map(|t| t.t0.plus(frames_to_ns(t.frames, self.rate)))
    }

    /// Feeds a measurement of when the next written frame will be heard.
    pub fn observe(&mut self, measured: ControllerNs) {
        match self.next_time() {
            None => {
                self.timeline = Some(Timeline {
                    t0: measured,
                    frames: 0,
                })
            }
            Some(predicted) => {
                let err = measured.since(predicted);
                self.last_error_ns = Some(err);
                if err.abs() > self.threshold_ns {
                    self.stats.resyncs += 1;
                    self.timeline = Some(Timeline {
                        t0: measured,
                        frames: 0,
                    });
                }
            }
        }
    }

    /// Last measured error (measured - predicted), ns.
    pub fn last_error_ns(&self) -> Option<i64> {
        self.last_error_ns
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
        let mut s = Scheduler::new(RATE, 1, 2_000_000);
        s.observe(ControllerNs(100_000_000));
        assert_eq!(run(&mut s, &mut jb, 6), vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
        assert_eq!(run(&mut s, &mut jb, 6), vec![4.0, 5.0, 6.0, 7.0, 8.0, 0.0]);
        assert_eq!(s.stats().played, 8);
    }

    #[test]
    fn late_join_skips_to_the_frame_due_now() {
        let mut jb = JitterBuffer::new(RATE, 1, 64);
        jb.insert(chunk(1000, 95, 10));
        let mut s = Scheduler::new(RATE, 1, 2_000_000);
        s.observe(ControllerNs(100_000_000));
        // frame 1005 is due at 100 ms
        assert_eq!(run(&mut s, &mut jb, 3), vec![1006.0, 1007.0, 1008.0]);
        assert_eq!(s.stats().late, 5);
    }

    #[test]
    fn lost_packet_is_concealed_and_timing_kept() {
        let mut jb = JitterBuffer::new(RATE, 1, 64);
        jb.insert(chunk(0, 100, 2));
        jb.insert(chunk(4, 104, 2)); // frames 2, 3 lost
        let mut s = Scheduler::new(RATE, 1, 2_000_000);
        s.observe(ControllerNs(100_000_000));
        assert_eq!(run(&mut s, &mut jb, 6), vec![1.0, 2.0, 0.0, 0.0, 5.0, 6.0]);
        assert_eq!(s.stats().lost, 2);
    }

    #[test]
    fn small_measurement_noise_keeps_frames_exact_large_error_resyncs() {
        let mut jb = JitterBuffer::new(RATE, 1, 64);
        jb.insert(chunk(0, 100, 20));
        let mut s = Scheduler::new(RATE, 1, 2_000_000);
        s.observe(ControllerNs(100_000_000));
        assert_eq!(run(&mut s, &mut jb, 2), vec![1.0, 2.0]);
        s.observe(ControllerNs(102_000_000 + 400_000)); // 0.4 frame of noise: ignored
        assert_eq!(run(&mut s, &mut jb, 2), vec![3.0, 4.0]);
        s.observe(ControllerNs(107_000_000)); // 3 ms late: resync, skip 3 frames
        assert_eq!(run(&mut s, &mut jb, 2), vec![8.0, 9.0]);
        assert_eq!(s.stats().resyncs, 1);
    }
}
