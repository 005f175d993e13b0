//! The device clock (pure logic): where the DAC really is, from many status readings, none of
//! which is trusted alone.
//!
//! A reading says the device had consumed `position` frames when it was stamped. Most devices
//! move that position in steps (a period for ALSA plugins such as JACK, PulseAudio, PipeWire and
//! bluealsa; 10 ms for the Raspberry Pi's firmware audio; a URB for USB) and stamp the status
//! when it is *read*, not when the position moved. Such a reading is stale by up to a step, and
//! only ever one way: the position it shows was reached at or before its stamp (`τ(p) ≤ t`), and
//! the next step had not come yet (`τ(p + step) > t`). Each reading is therefore a bound on the
//! moment the device passed a position, and the model keeps the tightest pair of bounds on one
//! reference position: the bracket `(lo, hi]` in which the true edge lies.
//!
//! Readings taken right after an edge tighten `hi`, readings just before one tighten `lo`; a
//! reading in the middle of a step tells little. So the model also says *when* to read next
//! ([`DeviceClock::probe`]): at the middle of the bracket, shifted to an edge near the time the
//! caller wanted to wake anyway. Every wake-up is then a step of a bisection, and the bracket
//! shrinks from a step (5–21 ms) to the jitter of the caller's wake-ups within a second, whatever
//! the alignment of those wake-ups with the device's own periods (which otherwise may sample the
//! same phase of the sawtooth for ever). A side of the bracket that no reading has tightened for
//! half a second is explored by a probe half a step beyond it, so the bracket cannot rest on a
//! wrong line that its own probes keep confirming.
//!
//! The rate (local ns per DAC frame) comes from the upper bounds alone: their lower hull over
//! the last 30 s (a late callback or a late reading only ever lifts a bound, so the hull rests
//! on the earliest ones), as the chord of the hull between a quarter and three quarters of the
//! window. Its uncertainty (30 ppm over 1 s of bounds, 1 ppm over
//! 30 s) widens the bracket as the reference moves forward, and a bracket left before that
//! line by a rate still being learned moves up to it. When readings contradict the bracket
//! (jittery edges) the early side wins: an edge seen early is the truest, as the fastest
//! exchange is in the clock filter. A contradiction far beyond a step means the device
//! restarted or stalled: the model starts again (keeping the rate).
//!
//! A stamp at the call may be taken before the pointer is read, with a preemption between: a
//! reading bounds the edge by the clock reads around the call, not by its stamp. Readings whose
//! stamps lie before the call (hardware-pointer or audio timestamps) are exact: both bounds
//! close on the stamp. No I/O and no clock reads here.

use super::floor::Floor;
use crate::clock::LocalNs;
pub(crate) use chorus_api::{DeviceStatus, Stamps};
use fit::gcd;
use moves::Carried;
use std::collections::VecDeque;

/// Largest rate error assumed before the rate is measured: DAC and CPU clock together.
const PRIOR_PPM: f64 = 1000.0;
/// The rate's uncertainty never counts as less than this (crystals wander with temperature).
const FLOOR_PPM: f64 = 1.0;
/// Narrowest bracket kept: below this, readings only contradict each other (edge jitter).
const MIN_BRACKET_NS: f64 = 2_000.0;
/// Upper bounds for the rate: one per bucket this long (the lowest), the last 30 s.
const BUCKET_NS: f64 = 20_000_000.0;
const WINDOW_NS: f64 = 30_000_000_000.0;
const BOUNDS: usize = 1536;
/// The most the bracket is moved up to the bounds' line per fit.
const MAX_LIFT_NS: f64 = 5_000.0;
/// ... once the bounds span this long.
const SETTLED_NS: f64 = 10_000_000_000.0;
/// Bounds from the device's first half second are not used for the rate.
const WARMUP_NS: f64 = 500_000_000.0;
/// ... and from exact stamps once they span this long.
const EXACT_FIT_AFTER_NS: f64 = 100_000_000.0;
/// The rate is fitted once the bounds span this long.
const FIT_AFTER_NS: f64 = 300_000_000.0;
/// Contradictions this large while no reading came near the bracket for this long restart it.
const SHIFT_NS: f64 = 500_000.0;
const SHIFT_AFTER_NS: f64 = 1_000_000_000.0;
/// A contradiction this much beyond a step restarts the model.
const RESTART_SLACK_NS: f64 = 3_000_000.0;
/// A side of the bracket no reading has tightened for this long is explored by a probe half a
/// step beyond it.
const RELAX_NS: f64 = 500_000_000.0;
/// Pointer steps shorter than this need no probing: a reading is at most this stale.
const PROBE_ABOVE_NS: f64 = 400_000.0;
/// Bracket width before anything is known: the longest pointer step expected.
const UNKNOWN_NS: f64 = 25_000_000.0;
/// Position increments kept to detect the step.
const INCREMENTS: usize = 32;
/// Probes aim this far before the floor's next edge, so that the readings after them see it.
const PROBE_LEAD_NS: f64 = 100_000.0;
/// An upper bound joins the floor only if the reading before it came at most this much
/// earlier.
const TIGHT_NS: f64 = 250_000.0;
/// An edge seen between readings this close together joins the phase track, at most one per
/// `TRACK_EVERY_NS`, the last `TRACK` of them.
const TRACK_WIDTH_NS: f64 = 50_000.0;
const TRACK_EVERY_NS: f64 = 20_000_000.0;
const TRACK: usize = 128;
/// The track gives the rate once it spans this long, until the bounds span `SETTLED_NS`.
const TRACK_AFTER_NS: f64 = 300_000_000.0;
/// The bracket is this narrow before the stream starts on it.
const SETTLED_WIDTH_NS: f64 = 50_000.0;
/// ... and its rate known this well (10 us over the 100 ms a frame is written ahead).
const SETTLED_PPM: f64 = 100.0;
/// A device read this long without a rate fit counts as settled all the same, restarts of the
/// model or not: on a host that stalled for 50 ms of every 70 (a CI VM) a JACK server's
/// timeline moved at every stall, the model restarted 11 times a second, and two speakers
/// stayed silent for a whole track. A model that cannot settle is what there is to play by.
const SETTLE_MOST_NS: i64 = 2_000_000_000;
/// A floor further than this outside the bracket is wrong (it rests on bounds of a timeline
/// that has moved): it starts again.
const FLOOR_SLACK_NS: f64 = 300_000.0;
/// Edges are jittery after this many of them came late (a reading at the call crossed the
/// bracket by more than `CROSSING_NS`, less than `CROSSING_MOST_NS`), each after one that did
/// not. The floor says so when enough lower bounds lie above its line, but on a JACK rig the
/// reading before an edge comes 30-140 µs before it (the graph holds the playout thread's
/// CPU), few do, and one of two speakers took 57 s to say so: it kept the bracket while the
/// other followed the line, and stepped by 43 µs when it switched. Replayed, these crossings
/// said it at 22.7 s (7.7 s on the other).
const CROSSING_NS: f64 = 5_000.0;
const CROSSINGS: u32 = 8;
const CROSSING_MOST_NS: f64 = 300_000.0;
/// An edge that came this much after the model's latest time for it is late; this many late
/// edges in a row mean the device's timeline moved (a JACK server's cycle came late and its
/// whole schedule moved with it): the model starts again there. The playout thread watches an
/// edge for 0.4 ms after a probe, so a move of a few ms shows only as watches that ended
/// before their edge, each a lower bound 0.3-1 ms past the model; a contradiction a step wide
/// (`RESTART_SLACK_NS`) never comes, and the line alone took the speakers seconds at the
/// servo's rail. A jittery edge is late by 0.15 ms at most but one in fifty or so (a loaded
/// machine): never four in a row.
const LATE_EDGE_NS: f64 = 300_000.0;
const LATE_EDGES: u32 = 4;
/// After the model started again on a running device, the timeline waits for its bracket to
/// narrow (or this long) before it measures the stream against it.
const RELEARN_MOST_NS: i64 = 1_000_000_000;
/// ... and until this many edges since came on time: a device that froze (its server
/// stopped) pins a restarted bracket on readings that showed no movement, narrow and wrong,
/// and the stream jumped by it (16 ms where the device had moved 24) before the device moved
/// again.
const RELEARN_EDGES: u32 = 4;
/// Meanwhile the playout thread wakes at the next edge at least this long after its last
/// reading.
const URGENT_AFTER_NS: f64 = 500_000.0;
/// A restart this soon after the one before is a storm (a device, or a host, that keeps
/// stopping): the urgent probes and long watches, each a wake-up a step and a busy read up to
/// a step long on a real-time thread, are not spent on it.
const STORM_NS: i64 = 2_000_000_000;
/// Late edges count as in a row within this long of the first.
const LATE_WINDOW_NS: f64 = 300_000_000.0;
/// After a probe the device is read again and again until its position moves, for at most
/// this long; after a late edge, for a step more (the next edge is seen wherever it came).
const EDGE_WATCH_NS: i64 = 400_000;

/// One status reading of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Local time just before the status call.
    pub before: LocalNs,
    /// The time the device gave with its status.
    pub stamp: LocalNs,
    /// Local time just after the call.
    pub after: LocalNs,
    /// Frames the device had consumed since it started (frames written less its delay).
    pub position: i64,
}

/// The model. Times are ns since `origin`, positions frames since the device started.
#[derive(Debug, Clone)]
pub struct DeviceClock {
    nominal: f64,
    /// Local ns per DAC frame, and its uncertainty.
    rate: f64,
    rate_sigma: f64,
    origin: Option<LocalNs>,
    /// The device reached `p_ref` within `(lo, hi]`.
    p_ref: i64,
    lo: f64,
    hi: f64,
    /// When a reading last tightened each side (or a probe last explored beyond it), and the
    /// time of the newest reading.
    lo_at: f64,
    hi_at: f64,
    last_t: f64,
    /// The clock read before the newest reading's call.
    last_lo: f64,
    increments: VecDeque<i64>,
    step: i64,
    /// (position, time) of the first reading that showed a new position: upper bounds that a
    /// late edge only ever lifts. The lowest of each closed bucket, and of the open one with
    /// its start.
    bounds: VecDeque<(i64, f64)>,
    open: Option<(f64, (i64, f64))>,
    /// (position, time) before which the device had not passed the position: lower bounds
    /// (a reading that still showed the step before it). The highest of each closed bucket.
    lows: VecDeque<(i64, f64)>,
    open_low: Option<(f64, (i64, f64))>,
    /// Scratch for the hulls (kept: the playout thread does not allocate while it plays).
    hull: Vec<(f64, f64)>,
    hull_lo: Vec<(f64, f64)>,
    /// The last 64 readings' stamp kinds (bit set: at call).
    at_call: u64,
    kinds: u32,
    /// When the caller was asked to read next, and how late it reads (ns, smoothed).
    asked: Option<f64>,
    lateness: f64,
    restarts: u64,
    /// The first reading since the device was opened (or recovered), and the newest: local
    /// times, kept over the model's own restarts.
    opened: Option<LocalNs>,
    newest: LocalNs,
    /// When a reading last came within `SHIFT_NS / 2` of the bracket.
    near: f64,
    /// The line under many edges: the estimate, once it has a few seconds of bounds, if the
    /// edges are jittery (which, once seen, the device stays).
    floor: Floor,
    jittery: bool,
    /// A restart on jittery edges keeps the floor until the new bracket is learnt.
    carried: Option<Carried>,
    /// Late edges after one that was not (`count_crossing`), whether the edge now being
    /// watched came late, and whether the one before did.
    crossings: u32,
    crossed: bool,
    crossed_before: bool,
    /// (position, time) of narrow brackets: the phase, whose slope is the rate long before the
    /// upper bounds' hull has the span to give it.
    track: VecDeque<(i64, f64)>,
    track_at: f64,
    /// The rate was measured (not the prior).
    fitted: bool,
    /// Late edges in a row (`LATE_EDGE_NS`), since the first of them.
    late_edges: u32,
    late_since: f64,
    /// Over a restart the rate is kept, with this uncertainty, until new bounds know it as
    /// well: the first second's bounds alone were 44 ppm off on a JACK rig.
    kept_sigma: Option<f64>,
    /// The uncertainty of the bounds' own rate (their hull's), from the last fit: the phase
    /// track's rate is taken only where it knows better.
    hull_sigma: f64,
    /// When the model last started again on a running device (local time), and the edges that
    /// came on time since (a late one sets the count back).
    relearn_since: Option<LocalNs>,
    relearn_edges: u32,
    /// The model restarted within `STORM_NS` of the restart before: no urgent probes then.
    storm: bool,
}

impl DeviceClock {
    /// A model for a device playing `rate` frames per second.
    pub fn new(rate: u32) -> Self {
        let nominal = 1e9 / rate.max(1) as f64;
        DeviceClock {
            nominal,
            rate: nominal,
            rate_sigma: nominal * PRIOR_PPM * 1e-6,
            origin: None,
            p_ref: 0,
            lo: 0.0,
            hi: 0.0,
            lo_at: 0.0,
            hi_at: 0.0,
            last_t: 0.0,
            last_lo: 0.0,
            increments: VecDeque::with_capacity(INCREMENTS),
            step: 1,
            bounds: VecDeque::with_capacity(BOUNDS),
            open: None,
            lows: VecDeque::with_capacity(BOUNDS),
            open_low: None,
            hull: Vec::with_capacity(BOUNDS),
            hull_lo: Vec::with_capacity(BOUNDS),
            at_call: 0,
            kinds: 0,
            asked: None,
            lateness: 0.0,
            restarts: 0,
            opened: None,
            newest: LocalNs(0),
            crossings: 0,
            crossed: false,
            crossed_before: false,
            near: 0.0,
            floor: Floor::new(nominal),
            jittery: false,
            carried: None,
            track: VecDeque::with_capacity(TRACK),
            track_at: f64::NEG_INFINITY,
            fitted: false,
            late_edges: 0,
            late_since: 0.0,
            kept_sigma: None,
            hull_sigma: f64::INFINITY,
            relearn_since: None,
            relearn_edges: 0,
            storm: false,
        }
    }

    /// Forgets the device's position (it restarted: opened, recovered from an xrun). Its rate
    /// and the kind of pointer and stamps it has are kept: they are the device's, not the run's.
    pub(crate) fn reset(&mut self) {
        self.origin = None;
        self.bounds.clear();
        self.open = None;
        self.lows.clear();
        self.open_low = None;
        self.asked = None;
        self.floor.clear();
        self.carried = None;
        self.opened = None;
        self.relearn_since = None;
    }

    /// Takes one reading in.
    pub fn handle_reading(&mut self, r: Reading) {
        self.opened.get_or_insert(r.before);
        self.newest = r.after;
        let early = r.stamp.0 < r.before.0 - 1_000;
        self.at_call = (self.at_call << 1) | u64::from(!early);
        self.kinds = (self.kinds + 1).min(64);
        // A stamp before the call is exact when the device stamps that way (not just noise).
        let exact = early && self.stamps() == Stamps::AtPointerUpdate;
        let Some(origin) = self.origin else {
            self.start(r);
            return;
        };
        // A stamp at the call may have been taken before the pointer was read, and the thread
        // may have been preempted in between (a loaded machine): only the clock reads around
        // the call bound it for sure. An exact stamp is the moment itself.
        let (t_lo, t_hi) = if exact {
            let t = r.stamp.since(origin) as f64;
            (t, t)
        } else {
            (r.before.since(origin) as f64, r.after.since(origin) as f64)
        };
        if let Some(asked) = self.asked.take() {
            let late = (r.before.since(origin) as f64 - asked).clamp(0.0, 2_000_000.0);
            self.lateness += (late - self.lateness) / 8.0;
        }
        let dp = r.position - self.p_ref;
        if dp < 0 {
            // The position went back: the device restarted without telling.
            self.restart(r);
            return;
        }
        if dp > 0 && self.moved(dp, t_hi) {
            // The reading before this one still showed the step before: a lower bound on this
            // edge, which a watch that saw it makes a bracket a few µs wide at once.
            let before = origin.0 as f64 + self.last_lo;
            self.restart(r);
            if dp == self.step {
                self.lo = self.lo.max(before - r.stamp.0 as f64);
            }
            return;
        }
        if dp > 0 {
            self.note_increment(dp);
            let widen = self.rate_sigma * dp as f64;
            self.lo += self.rate * dp as f64 - widen;
            self.hi += self.rate * dp as f64 + widen;
            self.p_ref = r.position;
            self.count_crossing();
            self.note_edge(r.position, self.last_lo, t_hi);
            self.add_bound(r.position, t_hi);
        }
        // τ(p) ≤ t_hi; and the next step had not come: τ(p + step) > t_lo. An exact stamp is
        // τ(p).
        let hi = t_hi;
        let lo = if exact {
            t_hi - MIN_BRACKET_NS
        } else if self.increments.len() < 2 {
            // The step is not known yet: no lower bound.
            f64::NEG_INFINITY
        } else {
            self.add_low(r.position + self.step, t_lo);
            t_lo - (self.rate + self.rate_sigma) * self.step as f64
        };
        let conflict = (lo - self.hi).max(self.lo - hi);
        // Until the step is known, a device that has not moved yet is not a contradiction.
        let step_ns = if self.increments.len() < 2 {
            self.step_ns().max(UNKNOWN_NS)
        } else {
            self.step_ns()
        };
        if conflict > step_ns + RESTART_SLACK_NS {
            self.restart(r);
            return;
        }
        // A shift smaller than that (a JACK server's cycle 3.9 ms late: its timeline moved
        // with it) shows as readings that contradict the bracket while none has come near
        // it for a second: the model starts again there too. (Followed by the line alone, the
        // rate bent by 100 ppm and more for a minute: a unit test, and two speakers parted by
        // 250 µs on a JACK rig.)
        if (hi - self.mid()).abs() < SHIFT_NS / 2.0 {
            self.near = t_hi;
        }
        if self.bounds.len() >= 8 && conflict > SHIFT_NS && t_hi - self.near > SHIFT_AFTER_NS {
            self.restart(r);
            return;
        }
        self.last_t = t_hi;
        self.last_lo = t_lo;
        if hi < self.hi {
            (self.hi, self.hi_at) = (hi, t_hi);
        }
        if lo > self.lo {
            (self.lo, self.lo_at) = (lo, t_hi);
        }
        if self.lo > self.hi - MIN_BRACKET_NS {
            // Jittery edges: the early side wins. A sharp edge never comes after another
            // edge's upper bound allows: readings at the call that cross the bracket by more
            // than a few µs, with the rate known, say this edge came late.
            let cross = self.lo - self.hi;
            if !exact && self.rate_known() && cross > CROSSING_NS && cross < CROSSING_MOST_NS {
                self.crossed = true;
            }
            self.lo = self.hi - MIN_BRACKET_NS;
        }
    }

    fn start(&mut self, r: Reading) {
        self.origin = Some(r.stamp);
        self.p_ref = r.position;
        self.hi = 0.0;
        self.lo = -UNKNOWN_NS;
        self.near = 0.0;
        (self.lo_at, self.hi_at, self.last_t, self.last_lo) = (0.0, 0.0, 0.0, 0.0);
        self.bounds.clear();
        self.open = None;
        self.lows.clear();
        self.open_low = None;
        if self.carried.is_none() {
            self.floor.clear();
        }
        self.track.clear();
        self.track_at = f64::NEG_INFINITY;
        self.hull_sigma = f64::INFINITY;
        self.add_bound(r.position, 0.0);
        self.asked = None;
        self.late_edges = 0;
    }

    /// A new edge: the one before it counts towards jittery edges if it came late after one
    /// that did not. Jitter makes edges late now and then; a timeline that moved makes every
    /// edge late from then on, which counts once.
    fn count_crossing(&mut self) {
        if self.crossed && !self.crossed_before {
            self.crossings = self.crossings.saturating_add(1);
            self.jittery |= self.crossings >= CROSSINGS;
        }
        self.crossed_before = self.crossed;
        self.crossed = false;
    }

    fn step_ns(&self) -> f64 {
        self.rate * self.step as f64
    }

    /// The step is the greatest common divisor of the recent increments, unless they share
    /// no useful one (an exact pointer, or an irregular one): then the smallest increment.
    fn note_increment(&mut self, dp: i64) {
        if self.increments.len() == INCREMENTS {
            self.increments.pop_front();
        }
        self.increments.push_back(dp);
        let smallest = self.increments.iter().copied().min().unwrap_or(1);
        let common = self.increments.iter().copied().fold(0, gcd);
        self.step = if common >= 32 { common } else { smallest }.max(1);
    }

    /// The floor's line when the edges are jittery (a plugin's callback): there it is the
    /// steadier estimate. Sharp edges (a hardware pointer, the sim) the bracket pins to a
    /// microsecond, where the floor, fitted to upper bounds alone, sits a fraction of the
    /// readings' spacing late (32 µs in a unit test whose readings kept one phase). Once seen
    /// jittery, a device stays so: at a period of 1024 frames the JACK plugin's edges looked
    /// sharp now and then, one speaker went back to the bracket while the other kept the
    /// line, and they parted by 20-30 µs.
    fn jittery_floor(&self) -> Option<super::floor::Line> {
        self.floor
            .line()
            .filter(|_| self.jittery && self.carried.is_none())
    }

    fn mid(&self) -> f64 {
        0.5 * (self.lo + self.hi)
    }

    /// When the device consumes frame `frame` (counted like `Reading::position`), local time:
    /// the frame after the last one written is the next one heard. None before any reading.
    pub fn heard(&self, frame: i64) -> Option<LocalNs> {
        let origin = self.origin?;
        let above = self.carried.map_or(0.0, |c| c.above_bracket);
        let t = match self.jittery_floor() {
            Some(line) => line.at(frame),
            None => self.mid() + above + self.rate * (frame - self.p_ref) as f64,
        };
        Some(origin.plus(t.round() as i64))
    }

    /// When to read the device next, given that the caller would wake at `natural` and may wake
    /// as early as `earliest`: at the middle of the bracket, moved by whole steps to at most one
    /// step before `natural` (earlier is always safe for a refill). Devices with a fine pointer
    /// or exact stamps need no probing, and a probe before `earliest` is not asked for: then
    /// `natural` itself.
    pub(crate) fn probe(&mut self, natural: LocalNs, earliest: LocalNs) -> LocalNs {
        let Some(origin) = self.origin else {
            return natural;
        };
        let step = self.step_ns();
        if step < PROBE_ABOVE_NS || self.stamps() == Stamps::AtPointerUpdate {
            return natural;
        }
        // A side no reading has tightened for half a second is explored: the probe aims half a
        // step beyond it (one side at a time). Without that the bracket could rest on a wrong
        // line for good: probes at a bracket that lies late only ever find the position
        // already moved, so its early side is never tested, and the rate fitted to those
        // readings confirms the line (a unit test was 33 ppm off, its error growing without
        // end). The estimate itself (`heard`) keeps the bracket.
        // Otherwise, once the floor is known, a little before its edge: the readings after
        // the probe see the edge move, each an upper bound close to it.
        let (mut lo, mut hi) = (self.lo, self.hi);
        let mut aim = 0.5 * (lo + hi);
        if self.last_t - self.lo_at > RELAX_NS {
            lo = lo.min(hi - 0.5 * step);
            self.lo_at = self.last_t;
            aim = 0.5 * (lo + hi);
        } else if self.last_t - self.hi_at > RELAX_NS {
            hi = hi.max(lo + 0.5 * step);
            self.hi_at = self.last_t;
            aim = 0.5 * (lo + hi);
        } else if let Some(line) = self.jittery_floor() {
            aim = line.at(self.p_ref) - PROBE_LEAD_NS;
        } else if self.carried.is_some() {
            // Early enough that the watch sees the early edges too (see `Carried`).
            aim -= 2.0 * PROBE_LEAD_NS;
        }
        let aim = aim - self.lateness;
        let want = natural.since(origin) as f64;
        let k = ((want - aim) / step).floor();
        let mut at = aim + k * step;
        // An edge came late (the timeline may have moved) or the model is learning a moved
        // one: the next edge, not the last before the refill, so that a few wake-ups a step
        // apart tell it and bisect it within tens of ms, not seconds (the two speakers of a
        // JACK rig jumped up to 0.4 s apart, a millisecond out of step meanwhile).
        if self.urgent() {
            let next = ((self.last_t + URGENT_AFTER_NS - aim) / step).ceil();
            at = aim + next * step;
            if at > want {
                return natural;
            }
        } else if at < earliest.since(origin) as f64 {
            return natural;
        }
        self.asked = Some(at);
        origin.plus(at.round() as i64)
    }

    /// Whether the DAC's rate is measured and its position known to `SETTLED_WIDTH_NS` (or
    /// the device has been read for `SETTLE_MOST_NS` without: then that is all there is). Until then a frame a buffer ahead is
    /// placed off by the rate error times the buffer (53 us at 530 ppm and 100 ms), which the
    /// servo pulls in over seconds: the stream should not start on it.
    pub(crate) fn settled(&self) -> bool {
        let narrow = self.hi - self.lo < SETTLED_WIDTH_NS || self.jittery_floor().is_some();
        let read_for = self.opened.map_or(0, |o| self.newest.since(o));
        (self.fitted && narrow && self.rate_known()) || read_for > SETTLE_MOST_NS
    }

    /// Whether the rate is known to `SETTLED_PPM`.
    fn rate_known(&self) -> bool {
        self.rate_sigma <= self.nominal * SETTLED_PPM * 1e-6
    }

    /// How the device stamps its status (most of the last 64 readings).
    pub(crate) fn stamps(&self) -> Stamps {
        let n = self.kinds.min(64);
        let mask = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        if 2 * (self.at_call & mask).count_ones() >= n {
            Stamps::AtCall
        } else {
            Stamps::AtPointerUpdate
        }
    }

    /// What the model knows, for the API.
    pub fn status(&self) -> DeviceStatus {
        DeviceStatus {
            pointer_step_frames: self.step as u64,
            stamps: self.stamps(),
            rate_ppm: (self.nominal / self.jittery_floor().map_or(self.rate, |l| l.ns_per_frame)
                - 1.0)
                * 1e6,
            uncertainty_us: (self.hi - self.lo) / 1000.0,
            restarts: self.restarts,
            edge_jitter_us: self.jittery_floor().map(|_| self.floor.spread() / 1000.0),
            position: self.p_ref,
            position_at_ns: self.heard(self.p_ref).map_or(0, |t| t.0),
        }
    }
}

#[path = "devclock_fit.rs"]
mod fit;

#[path = "devclock_moves.rs"]
mod moves;

#[cfg(test)]
#[path = "devclock_tests.rs"]
mod tests;
