//! Playout scheduling (pure logic): turns the jitter buffer into a gapless stream of frames on
//! the controller's grid, one frame per slot, starting at an anchor time `t0`: frame `n` of the
//! output of `fill` is the one due at `t0 + n / rate`. A frame whose presentation time lies
//! ahead gets silence before it, a frame whose time has passed is skipped (late join, resync), a
//! missing frame is concealed with silence and counted. Audio never stops or starts with a
//! step: when the next frame is missing (a lost packet, or a controller that went away) the
//! frames before the gap fade out, and the audio after it fades back in, over a few ms. The
//! resampler after it maps this stream onto the DAC's clock.

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
    /// Times audio faded out because the next frame was missing (gaps and stream ends).
    pub concealments: u64,
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
    /// Length of the concealment fades, frames.
    fade: usize,
    /// Frames of fade-in still to apply (audio resuming after a concealed gap).
    fade_in_left: usize,
    /// A fade-out under way towards a gap: (frames done, length).
    fade_out: Option<(usize, usize)>,
}

/// Concealment fades last 2.5 ms: short enough to lose little, long enough not to click.
const CONCEAL_FADE_NS: i64 = 2_500_000;

use crate::dsp::fade::rising;

impl Scheduler {
    pub fn new(rate: u32, channels: usize) -> Self {
        Scheduler {
            rate,
            channels,
            cursor: 0,
            timeline: None,
            stats: ScheduleStats::default(),
            fade: ns_to_frames(CONCEAL_FADE_NS, rate).max(1) as usize,
            fade_in_left: 0,
            fade_out: None,
        }
    }

    /// Sets the length of the concealment fades (frames; 0: hard cuts, for tests of timing).
    pub fn with_conceal_fade(mut self, frames: usize) -> Self {
        self.fade = frames;
        self
    }

    /// A new stream session started: frame indices start over.
    pub fn reset_stream(&mut self) {
        self.cursor = 0;
        // A new stream starts as its controller made it (which fades its own transport).
        self.fade_in_left = 0;
        self.fade_out = None;
    }

    /// Forget the timeline (device restarted).
    pub fn reset_timeline(&mut self) {
        self.timeline = None;
    }

    /// Anchors the stream timeline: the next frame `fill` produces is the one due at `t0`
    /// (controller time). Re-anchoring drops or inserts frames to land on the new schedule.
    pub fn anchor(&mut self, t0: ControllerNs) {
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

    /// Whether the next `n` frames of the stream are all held (no gap to conceal yet).
    pub fn ready(&self, jb: &JitterBuffer, n: usize) -> bool {
        jb.contiguous(self.cursor, n as u64) >= n as u64
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
                self.stats.late += skip.min(av.frames as u64);
                self.cursor = av.frame_index + skip;
                jb.discard_before(self.cursor);
            } else {
                if av.frame_index > self.cursor {
                    self.stats.lost += av.frame_index - self.cursor;
                }
                let k = av.frames.min(n - i);
                let run = &mut out[i * ch..(i + k) * ch];
                av.decode(run);
                self.stats.played += k as u64;
                self.cursor = av.frame_index + k as u64;
                i += k;
                jb.discard_before(self.cursor);
                self.conceal(jb, run);
            }
        }
        self.timeline = Some(Timeline {
            t0: tl.t0,
            frames: tl.frames + n as i64,
        });
    }

    /// Shapes a run of audio just copied out (the cursor is past it): it fades in after a
    /// concealed gap, and it fades out so as to reach silence where the next gap begins — the
    /// fade starts up to a fade's length before the end of the run when the gap is that close.
    fn conceal(&mut self, jb: &JitterBuffer, run: &mut [f32]) {
        let ch = self.channels;
        let frames = run.len() / ch;
        let mut first = 0;
        if let Some((done, len)) = self.fade_out {
            // Finishing a fade-out begun in the previous run.
            let k = (len - done).min(frames);
            for (j, f) in run.chunks_exact_mut(ch).take(k).enumerate() {
                let g = rising(len - 1 - (done + j), len);
                f.iter_mut().for_each(|s| *s *= g);
            }
            first = k;
            if done + k < len {
                self.fade_out = Some((done + k, len));
                return;
            }
            // Faded out; whatever follows (a late packet filled the gap) fades in.
            self.fade_out = None;
            self.fade_in_left = self.fade;
            if first == frames {
                return;
            }
        }
        if self.fade_in_left > 0 {
            let k = self.fade_in_left.min(frames - first);
            let done = self.fade - self.fade_in_left;
            for (j, f) in run.chunks_exact_mut(ch).skip(first).take(k).enumerate() {
                let g = rising(done + j, self.fade);
                f.iter_mut().for_each(|s| *s *= g);
            }
            self.fade_in_left -= k;
        }
        if self.fade == 0 {
            return;
        }
        let ahead = jb.contiguous(self.cursor, self.fade as u64) as usize;
        if ahead >= self.fade {
            return;
        }
        // A gap `ahead` frames after this run: fade so as to be silent when it begins.
        let len = self.fade.min(frames - first + ahead);
        let start = frames + ahead - len;
        let here = frames - start;
        for (j, f) in run.chunks_exact_mut(ch).skip(start).enumerate() {
            let g = rising(len - 1 - j, len);
            f.iter_mut().for_each(|s| *s *= g);
        }
        self.fade_out = (here < len).then_some((here, len));
        if here >= len {
            self.fade_in_left = self.fade;
        }
        self.stats.concealments += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::jitter::Chunk;
    use super::*;
    use crate::wire::SampleFormat;

    const RATE: u32 = 1000; // 1 ms per frame keeps the arithmetic readable

    /// Frame k of the stream holds (k + 1) / 32768 (exact in 16 bits).
    fn chunk(idx: u64, pts_ms: i64, frames: usize) -> Chunk {
        let samples: Vec<f32> = (0..frames)
            .map(|i| (idx as usize + i + 1) as f32 / 32768.0)
            .collect();
        let pts = ControllerNs(pts_ms * 1_000_000);
        Chunk::encode((1, idx, pts), SampleFormat::S16, 1, &samples)
    }

    fn sched() -> Scheduler {
        Scheduler::new(RATE, 1).with_conceal_fade(0)
    }

    /// `n` slots filled, in the units of `chunk`'s values.
    fn run(s: &mut Scheduler, jb: &mut JitterBuffer, n: usize) -> Vec<f32> {
        let mut out = vec![9.0; n];
        s.fill(jb, &mut out);
        out.iter().map(|v| v * 32768.0).collect()
    }

    #[test]
    fn plays_at_presentation_time() {
        let mut jb = JitterBuffer::new(RATE, 1, 64);
        jb.insert(chunk(0, 103, 4));
        jb.insert(chunk(4, 107, 4));
        let mut s = sched();
        s.anchor(ControllerNs(100_000_000));
        assert_eq!(run(&mut s, &mut jb, 6), vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
        assert_eq!(run(&mut s, &mut jb, 6), vec![4.0, 5.0, 6.0, 7.0, 8.0, 0.0]);
        assert_eq!(s.stats().played, 8);
    }

    #[test]
    fn late_join_skips_to_the_frame_due_now() {
        let mut jb = JitterBuffer::new(RATE, 1, 64);
        jb.insert(chunk(1000, 95, 10));
        let mut s = sched();
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
        let mut s = sched();
        s.anchor(ControllerNs(100_000_000));
        assert_eq!(run(&mut s, &mut jb, 6), vec![1.0, 2.0, 0.0, 0.0, 5.0, 6.0]);
        assert_eq!(s.stats().lost, 2);
    }

    #[test]
    fn gaps_and_stream_ends_fade_out_and_back_in() {
        // 48 kHz: fades of 120 frames. A constant signal, frames 0..1000 and 1200..2000 (a lost
        // stretch between), then nothing (the controller went away).
        const R: u32 = 48_000;
        let ms = |f: u64| 100_000_000 + f as i64 * 1_000_000_000 / R as i64;
        let mut jb = JitterBuffer::new(R, 1, 64);
        for (idx, n) in [(0u64, 1000usize), (1200, 800)] {
            let pts = ControllerNs(ms(idx));
            jb.insert(Chunk::encode(
                (1, idx, pts),
                SampleFormat::S16,
                1,
                &vec![0.5; n],
            ));
        }
        let mut s = Scheduler::new(R, 1);
        s.anchor(ControllerNs(ms(0)));
        let mut out = Vec::new();
        for _ in 0..5 {
            let mut buf = vec![9.0f32; 480];
            s.fill(&mut jb, &mut buf);
            out.extend(buf);
        }
        // Untouched away from the edges, silent in the gap and after the end.
        assert!(out[..880].iter().all(|&v| v == 0.5));
        assert!(out[1000..1200].iter().all(|&v| v == 0.0));
        assert!(out[1320..1880].iter().all(|&v| v == 0.5));
        assert!(out[2000..].iter().all(|&v| v == 0.0));
        // Each fade moves smoothly from 0.5 to 0 (or back): no step larger than a raised
        // cosine's over 120 frames (0.5 * pi / 120 / 2 ≈ 0.0065).
        let steps = out.windows(2).map(|w| (w[1] - w[0]).abs());
        let worst = steps.fold(0.0f32, f32::max);
        assert!(worst < 0.007, "largest step {worst}");
        assert_eq!(s.stats().lost, 200);
        assert_eq!(s.stats().concealments, 2);
    }

    #[test]
    fn an_unbroken_stream_is_never_touched() {
        // 7 ms datagrams read in 10 ms periods: chunk edges fall everywhere in the periods.
        const R: u32 = 48_000;
        let mut jb = JitterBuffer::new(R, 2, 4096);
        let mut s = Scheduler::new(R, 2);
        s.anchor(ControllerNs(0));
        let mut next = 0u64;
        for _ in 0..200 {
            while next < s.cursor + 5_000 {
                let pts = ControllerNs(frames_to_ns(next as i64, R));
                let half = [0.5; 336 * 2];
                jb.insert(Chunk::encode((1, next, pts), SampleFormat::S16, 2, &half));
                next += 336;
            }
            let mut buf = vec![0.0f32; 480 * 2];
            s.fill(&mut jb, &mut buf);
            assert!(buf.iter().all(|&v| v == 0.5));
        }
        assert_eq!(s.stats().concealments, 0, "{:?}", s.stats());
    }

    #[test]
    fn reanchoring_skips_to_the_new_schedule() {
        let mut jb = JitterBuffer::new(RATE, 1, 64);
        jb.insert(chunk(0, 100, 20));
        let mut s = sched();
        s.anchor(ControllerNs(100_000_000));
        assert_eq!(run(&mut s, &mut jb, 2), vec![1.0, 2.0]);
        assert_eq!(s.produced(), 2);
        s.anchor(ControllerNs(107_000_000)); // 5 ms further than the 102 ms it was at
        assert_eq!(run(&mut s, &mut jb, 2), vec![8.0, 9.0]);
    }
}
