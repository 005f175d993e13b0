//! The playout timeline (pure logic): what the playout thread does next, from what it sees.
//!
//! Each turn the thread (the I/O shell in playout.rs) reads the device, the socket and the
//! clock, and describes what it found in a [`View`]; [`Timeline::plan`] answers with one
//! [`Plan`]: sleep until the device needs more, write a period of silence, take the next zone's
//! stream, or write a period of the stream at a resampling step, perhaps (re-)anchored and
//! faded. After a write [`Timeline::wrote`] says whether the next zone's stream takes over and
//! whether the thread stops. The servo lives here; the scheduler, resampler and device are the
//! shell's. No I/O, no clock reads, no allocation: tested in simulated time below.

use super::servo::RateServo;
use crate::clock::{frames_to_ns, ns_to_frames, ControllerNs, Frames, Nanos};

/// Timing error beyond which the stream is re-anchored (frames dropped or inserted) instead of
/// being pulled in by the resampler.
pub(crate) const RESYNC_THRESHOLD_NS: i64 = 3_000_000;
/// After the device clock learnt a moved timeline again, an error beyond this is jumped at
/// once rather than pulled in: the device's sound broke when its timeline moved anyway, and
/// at the resampler's rail a millisecond takes a second, two speakers that found the move at
/// different moments parted by hundreds of µs meanwhile (a JACK rig's xruns).
const RELEARNT_JUMP_NS: f64 = 200_000.0;

/// Audio left in the device when the playout thread refills it, at least; and half of what it
/// fills, if that is more. A whole machine stopped for longer than what is left (a VM's host,
/// an SD card's write holding the kernel) empties the device: 20 ms alone was too little on a
/// CI VM whose host stalled it for 40-80 ms now and then (one hole per stall, each followed by
/// a re-anchor); half of a 100 ms fill rides out 50 ms for 20 wake-ups a second instead of 12.5.
const LOW_WATER_NS: i64 = 20_000_000;
/// Room a hole in the stream needs between the arrival of the audio after it and the frames
/// the device holds: a loss burst (20 ms tested) and the repair's round trips. The device is
/// filled no further ahead than the zone's latency less this.
const REPAIR_ROOM_NS: i64 = 40_000_000;
/// How much further ahead than the zone's latency the controller sends audio (its bursts).
/// The newest datagram at a wake-up came with the last burst, so the largest lead found is
/// between the latency and this much more: found short, the device is filled less far (more
/// wake-ups), never with less room for a repair.
const SEND_BURST_NS: i64 = 20_000_000;
/// The device is filled at least this far ahead (the 60 ms buffer of before: 25 wake-ups a
/// second), whatever the latency: with one too short for the room a repair needs (or a large
/// latency after the DAC), repairs get less room rather than the thread more wake-ups.
const MIN_FILL_NS: i64 = 60_000_000;
/// While repairs are outstanding, the playout thread wakes this often to take them in.
const REPAIR_POLL_NS: i64 = 5_000_000;
/// While the next frames to write are late (not here, nothing known lost), it wakes this often.
const LATE_POLL_NS: i64 = 20_000_000;
/// The longest sleep, and the shortest.
const LONGEST_SLEEP_NS: i64 = 1_000_000_000;
const SHORTEST_SLEEP_NS: i64 = 200_000;
/// Turns after a shutdown was asked for after which the thread stops, faded out or not (a
/// device that keeps failing does not hold the shutdown up).
const STOP_TURNS: u32 = 8;

/// A fade around a jump of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fade {
    None,
    /// This period fades out; the next re-anchors.
    Out,
    /// This period fades in after a (re-)anchor.
    In,
}

/// What the shell sees at the start of a turn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct View {
    /// Frames queued in the device (from the device clock's model).
    pub queued: Frames,
    /// When the next frame written will be heard, on the controller's clock (None: the clock
    /// is not synchronised yet, or the device cannot tell and no clock is known).
    pub heard: Option<ControllerNs>,
    /// `heard` moved onto the stream's grid of frame times (where an anchor goes).
    pub grid: Option<ControllerNs>,
    /// How far the stream leads its presentation time at the most (None: no stream).
    pub lead: Option<Nanos>,
    /// Latency after the DAC (the speaker's extra latency), ns.
    pub extra: Nanos,
    /// Where the stream is placed on the timeline (None: not placed).
    pub anchor: Option<ControllerNs>,
    /// The stream position the next output frame reads, frames since the anchor.
    pub read_position: f64,
    /// The frames the next period needs are in the jitter buffer.
    pub ready: bool,
    /// Datagrams are being repaired; the stream is coming in.
    pub repairing: bool,
    pub flowing: bool,
    /// The device has not started (nothing queued) or its clock has not settled: a stamp now
    /// says little about when the next frame will be heard.
    pub unsettled: bool,
    /// The device clock started again on the running device (its timeline moved) and has
    /// not learnt it yet: the stream is not measured against it meanwhile.
    pub relearning: bool,
    /// The DAC's rate against the controller's clock (from the device clock and clock sync),
    /// when both are known: the servo starts there.
    pub dac_ratio: Option<f64>,
    /// A move to another zone was asked for: whether its stream is due now.
    pub next_due: Option<bool>,
    /// The stream is playing (frames buffered).
    pub playing: bool,
}

/// Why the timeline jumps (drops or inserts frames) instead of pulling an error in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jump {
    /// The speaker's own error went beyond `RESYNC_THRESHOLD_NS` (a stall, an underrun, a
    /// seek): a resync.
    Resync,
    /// The device's timeline moved on its own (a sound server's late or skipped cycle) and the
    /// device clock has learnt it again: every speaker on that graph follows it.
    DeviceMoved,
}

/// The jumps since the timeline was made, by cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Jumps {
    pub resyncs: u64,
    pub device_moved: u64,
}

/// One period of the stream, as the timeline wants it written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Period {
    /// Place the stream on the timeline here first: the scheduler's slots and the resampler's
    /// read position start over (the servo's rate history already did).
    pub anchor: Option<ControllerNs>,
    /// Forget where the stream is placed (no clock to place it by).
    pub unplace: bool,
    /// Resampling step (stream frames per output frame).
    pub step: f64,
    pub fade: Fade,
    /// The timing error measured for this period (ns; positive: the frame is heard late), and
    /// why it is jumped, if it is (this period fades out, the next jumps).
    pub error_ns: Option<f64>,
    pub resync: Option<Jump>,
}

/// What to do this turn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Plan {
    /// Nothing to write: sleep this long (the device clock may move the wake-up earlier).
    Sleep(Nanos),
    /// Write a period of silence: the device starts with it, or learns its clock meanwhile.
    Silence,
    /// Take the next zone's stream now (nothing plays), then look again.
    Adopt,
    /// Write this period of the stream.
    Write(Period),
}

/// What follows a successful write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct After {
    /// The old zone faded out with this period: the next zone's stream takes over.
    pub adopt: bool,
    /// The last period before shutdown was written.
    pub stop: bool,
}

/// The timeline's state: the servo, the fade under way, a move or a stop under way, and
/// frames written since the last anchor.
#[derive(Debug, Clone)]
pub(crate) struct Timeline {
    rate: u32,
    period: i64,
    buffer: i64,
    low_water: i64,
    /// The low-water mark by time alone; the device's headroom may raise it.
    base_low_water: i64,
    servo: RateServo,
    fade: Fade,
    written: i64,
    switching: bool,
    stopping: bool,
    stop_turns: u32,
    /// The device clock relearnt its timeline: the next error measured beyond
    /// `RELEARNT_JUMP_NS` is jumped.
    relearnt: bool,
    jumps: Jumps,
}

impl Timeline {
    /// A timeline for a device of `period` and `buffer` frames at `rate`.
    pub(crate) fn new(rate: u32, period: usize, buffer: usize) -> Self {
        let period = period.max(1);
        let buffer = buffer.max(2 * period);
        // Queued frames at which a full device is refilled: 20 ms against an underrun (whole
        // periods, at least one, at most half the buffer). With the default 100 ms buffer and
        // 150 ms latency the thread wakes every 50 ms (see `sleep`).
        let guard = (ns_to_frames(LOW_WATER_NS, rate) as usize / period).max(1);
        let low_water = (period * guard.min((buffer / period / 2).max(1))).min(buffer - period);
        Timeline {
            rate,
            period: period as i64,
            buffer: buffer as i64,
            low_water: low_water as i64,
            base_low_water: low_water as i64,
            servo: RateServo::new(rate),
            fade: Fade::None,
            written: 0,
            switching: false,
            stopping: false,
            stop_turns: 0,
            relearnt: false,
            jumps: Jumps::default(),
        }
    }

    /// What the device needs queued for its next bite (`Output::headroom`): the refill comes
    /// a period before that, if that is later than by time alone (at most a period short of
    /// the whole buffer).
    pub(crate) fn set_headroom(&mut self, frames: Frames) {
        self.low_water = self
            .base_low_water
            .max(frames.0 + self.period)
            .min(self.buffer - self.period);
    }

    /// Queued frames at which the device is refilled.
    #[cfg(test)]
    pub(crate) fn low_water(&self) -> Frames {
        Frames(self.low_water)
    }

    /// The servo, for the status.
    pub(crate) fn servo(&self) -> &RateServo {
        &self.servo
    }

    /// Shutdown was asked for: whether to stop at once (nothing plays, or the turns to fade out
    /// are spent). Otherwise the next period fades out and is the last.
    pub(crate) fn shutdown(&mut self, playing: bool, anchored: bool) -> bool {
        if !self.stopping {
            self.stopping = true;
            if !playing || !anchored {
                return true;
            }
            self.fade = Fade::Out;
        }
        self.stop_turns += 1;
        self.stop_turns > STOP_TURNS
    }

    /// How far ahead to fill the device, frames, for a stream that arrives `lead` before its
    /// presentation time at the most (and `extra` latency after the DAC): the zone's
    /// latency less `REPAIR_ROOM_NS`, at least `MIN_FILL_NS`, in whole periods above the
    /// low-water mark (at least one), at most the buffer.
    fn fill(&self, lead: Option<Nanos>, extra: Nanos) -> i64 {
        let Some(Nanos(lead)) = lead else {
            return self.buffer;
        };
        let room = (SEND_BURST_NS + REPAIR_ROOM_NS).saturating_add(extra.0);
        let ahead = ns_to_frames(lead.saturating_sub(room), self.rate)
            .max(ns_to_frames(MIN_FILL_NS, self.rate));
        let above = (ahead - self.low_water).max(0);
        let periods = ((above + self.period - 1) / self.period).max(1);
        (self.low_water + self.period * periods).min(self.buffer)
    }

    /// The sleep, when the device is full, or when the next frames to write are not here while
    /// the stream is coming in (lost and being repaired, or late) and the device holds more
    /// than the low-water mark: they may still come. A frame is written early only if it is
    /// here; and the device is filled only as far ahead as leaves a hole in the stream time to
    /// show and be repaired before its frames are due.
    fn sleep(&self, v: &View) -> Option<Nanos> {
        let queued = v.queued.0;
        let fill = self.fill(v.lead, v.extra);
        let full = queued + self.period > fill;
        // Refilled when half the fill is left, in whole periods (never above the fill less a
        // period), or at the low-water mark if that is more.
        let half = (fill / 2 / self.period * self.period).min(fill - self.period);
        let low_water = self.low_water.max(half);
        let waiting = !full
            && queued > low_water
            && v.anchor.is_some()
            && (v.repairing || v.flowing)
            && !v.ready;
        if !full && !waiting {
            return None;
        }
        // Until the device has drained to the low-water mark; then periods back to back until
        // it is full again (five per wake-up with the defaults, 50 ms still queued against an
        // underrun). While datagrams are being repaired, every 5 ms to take them in; while
        // audio is late, every 20 ms (a loss burst under way shows as a gap then).
        let longest = if v.repairing {
            REPAIR_POLL_NS
        } else if waiting {
            LATE_POLL_NS
        } else {
            LONGEST_SLEEP_NS
        };
        let wait = frames_to_ns(queued - low_water, self.rate);
        Some(Nanos(wait.clamp(SHORTEST_SLEEP_NS, longest)))
    }

    /// What to do this turn.
    pub(crate) fn plan(&mut self, v: &View) -> Plan {
        // Seen at any turn, a sleep's too: the device clock may have learnt the timeline
        // again by the next write.
        self.relearnt |= v.relearning;
        if let Some(ns) = self.sleep(v) {
            return Plan::Sleep(ns);
        }
        if let (Some(true), false) = (v.next_due, self.switching) {
            if v.anchor.is_some() && v.playing {
                // The old zone fades out over this period; the new one is anchored and fades
                // in with the next.
                self.switching = true;
                self.fade = Fade::Out;
            } else {
                return Plan::Adopt;
            }
        }
        let mut p = Period {
            anchor: None,
            unplace: false,
            step: self.servo.step(),
            fade: self.fade,
            error_ns: None,
            resync: None,
        };
        match (v.heard, v.anchor) {
            // The last period before stopping, or the old zone's last: on the timeline as it
            // is, whatever the error, faded out.
            _ if self.stopping || self.switching => {}
            (None, _) => {
                p.unplace = true;
                p.step = 1.0;
            }
            // The device is idle (just opened, or stopped by an xrun): it starts with the first
            // write, so a stamp taken now says nothing about when the next frame will be heard.
            // Likewise while its clock has not measured the DAC's rate yet.
            (Some(_), None) if v.unsettled => return Plan::Silence,
            (Some(m), None) => {
                self.place(v.grid.unwrap_or(m), &mut p);
                if let Some(r) = v.dac_ratio {
                    self.servo.prime(r);
                }
                p.step = 1.0;
            }
            // The last period faded out on the old timeline: jump, and fade in.
            (Some(m), Some(_)) if self.fade == Fade::Out => {
                self.place(v.grid.unwrap_or(m), &mut p);
                p.step = self.servo.step();
            }
            // The device's timeline moved and is being learnt again: the stream plays on as
            // it was until then.
            (Some(_), Some(_)) if v.relearning => {}
            (Some(m), Some(t0)) => {
                // When the frame the next output frame reads should be heard, against when it
                // will be. The device clock has already discounted stale position reports, so
                // an error beyond the threshold is real at once (a stall, an underrun, a seek).
                let due = t0.0 as f64 + v.read_position * 1e9 / self.rate as f64;
                let err = m.0 as f64 - due;
                p.error_ns = Some(err);
                let (threshold, jump) = if std::mem::take(&mut self.relearnt) {
                    // The heard times before the move lie on another line: a rate fitted
                    // across both adds to the pull-in until the servo's window passed the
                    // move. The rate itself is kept.
                    self.servo.restart();
                    (RELEARNT_JUMP_NS, Jump::DeviceMoved)
                } else {
                    (RESYNC_THRESHOLD_NS as f64, Jump::Resync)
                };
                if err.abs() > threshold {
                    // Drop or insert frames under a fade: this period fades out on the old
                    // timeline, the next one jumps and fades in. Never a click.
                    match jump {
                        Jump::Resync => self.jumps.resyncs += 1,
                        Jump::DeviceMoved => self.jumps.device_moved += 1,
                    }
                    p.resync = Some(jump);
                    self.fade = Fade::Out;
                    p.fade = Fade::Out;
                } else {
                    p.step =
                        self.servo
                            .update(self.written, m.0 as f64, err * self.rate as f64 * 1e-9);
                }
            }
        }
        // A fade in is this period's alone.
        if self.fade == Fade::In {
            self.fade = Fade::None;
        }
        Plan::Write(p)
    }

    /// (Re-)anchors at `t0`: the servo's rate history starts over, and this period fades in.
    fn place(&mut self, t0: ControllerNs, p: &mut Period) {
        self.servo.restart();
        self.written = 0;
        self.fade = Fade::In;
        p.anchor = Some(t0);
        p.fade = Fade::In;
    }

    /// The jumps so far, by cause.
    pub(crate) fn jumps(&self) -> Jumps {
        self.jumps
    }

    /// A period was written to the device.
    pub(crate) fn wrote(&mut self) -> After {
        self.written += self.period;
        let adopt = std::mem::take(&mut self.switching);
        if adopt {
            self.fade = Fade::None;
        }
        After {
            adopt,
            stop: self.stopping,
        }
    }
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
