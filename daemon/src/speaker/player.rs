//! The playing loop's I/O: each turn it reads the socket, the device (through the model of its
//! clock, [`super::devclock`]) and the clock sync, describes what it saw to the timeline
//! ([`super::timeline`], pure), and does what that says: sleep (to the device clock's probe),
//! write silence, take a new zone's stream, or render and write a period (scheduler, resampler,
//! fade, volume). Device errors are recovered here and counted; the counters are published as
//! atomics, never behind a lock this thread could wait on.

use super::devclock::DeviceClock;
use super::jitter::JitterBuffer;
use super::net::StreamReceiver;
use super::output::{Delay, Output, OutputError};
use super::playout::{jitter_buffer, LOST_AFTER};
use super::reading::read_device;
use super::schedule::Scheduler;
use super::tap::StreamTap;
use super::timeline::{Fade, Jump, Period, Plan, Timeline, View};
use super::{Shared, Switch};
use crate::clock::{frames_to_ns, ns_to_frames, ControllerNs, Frames, LocalNs, Nanos, SharedClock};
use crate::dsp::resampler::{FracResampler, TAPS};
use crate::dsp::volume::{gain_for, VolumeRamp};
use crate::sync::ClockSnapshot;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An output problem (errors, a loss) is cleared after this long of successful writes.
const PROBLEM_CLEARS_AFTER: Duration = Duration::from_secs(5);

/// Why `run` returned.
pub(super) enum Stop {
    Shutdown,
    DeviceLost(String),
}

/// Plays until `shutdown` is set (then finishes the output) or the device is lost.
pub(super) fn run(
    out: Box<dyn Output>,
    rx: &mut StreamReceiver,
    next: &mut Option<Switch>,
    shared: &Arc<Shared>,
    clock: &SharedClock,
    shutdown: &AtomicBool,
    tap: &mut Option<StreamTap>,
) -> Stop {
    let mut p = Player::new(out, rx, next, shared, clock, tap);
    loop {
        if shutdown.load(Ordering::Relaxed) {
            // One more period, faded out, then the device is drained (never a click).
            let playing = shared.stats.playing.load(Ordering::Relaxed);
            if p.timeline
                .shutdown(playing, p.sched.anchor_time().is_some())
            {
                break;
            }
        }
        if p.failed_recoveries >= LOST_AFTER {
            let _ = p.out.finish();
            return Stop::DeviceLost(format!("{} errors in a row", p.failed_recoveries));
        }
        if p.turn() {
            break;
        }
    }
    if let Err(e) = p.out.finish() {
        log::warn!("closing output: {e}");
    }
    Stop::Shutdown
}

/// The playout thread's state: the device and the model of its clock, the stream's buffers, the
/// renderer (scheduler, resampler, volume), and the timeline that decides. Its methods are the
/// I/O around [`Timeline::plan`].
struct Player<'a> {
    out: Box<dyn Output>,
    rx: &'a mut StreamReceiver,
    next: &'a mut Option<Switch>,
    shared: &'a Arc<Shared>,
    clock: &'a SharedClock,
    tap: &'a mut Option<StreamTap>,
    rate: u32,
    ch: usize,
    period: usize,
    timeline: Timeline,
    jb: JitterBuffer,
    sched: Scheduler,
    rs: FracResampler,
    volume: VolumeRamp,
    chunk: Vec<f32>,
    input: Vec<f32>,
    snapshot: Option<ClockSnapshot>,
    /// Where the DAC really is, from every status reading; frames written since the device
    /// (re)started, which its position counts against.
    device: DeviceClock,
    dev_frames: i64,
    /// For devices that cannot report their delay: when the first written frame is heard, and
    /// frames written since.
    own_timeline: Option<(ControllerNs, i64)>,
    /// Output errors in a row (a successful write ends a row), since when writes succeed, and
    /// whether the output's problem was cleared since.
    failed_recoveries: u32,
    good_since: Instant,
    cleared: bool,
    /// The socket was read since the last sleep.
    drained: bool,
    /// The last sleep was to a probe of the device clock: watch for the edge.
    watch: bool,
}

impl<'a> Player<'a> {
    fn new(
        out: Box<dyn Output>,
        rx: &'a mut StreamReceiver,
        next: &'a mut Option<Switch>,
        shared: &'a Arc<Shared>,
        clock: &'a SharedClock,
        tap: &'a mut Option<StreamTap>,
    ) -> Self {
        let info = out.info();
        let (ch, rate) = (info.channels as usize, info.rate);
        let period = info.period_frames.max(32);
        let buffer = info.buffer_frames.max(2 * period);
        let gain = gain_for(
            shared.volume.load(Ordering::Relaxed),
            shared.muted.load(Ordering::Relaxed),
        );
        Player {
            out,
            rx,
            next,
            shared,
            clock,
            tap,
            rate,
            ch,
            period,
            timeline: Timeline::new(rate, period, buffer),
            jb: jitter_buffer(rate, ch),
            sched: Scheduler::new(rate, ch),
            rs: FracResampler::new(ch, 2 * period + 4 * TAPS),
            volume: VolumeRamp::new(gain, (rate as usize) * 30 / 1000),
            chunk: vec![0.0f32; period * ch],
            input: vec![0.0f32; (2 * period + 4 * TAPS) * ch],
            snapshot: None,
            device: DeviceClock::new(rate),
            dev_frames: 0,
            own_timeline: None,
            failed_recoveries: 0,
            good_since: Instant::now(),
            cleared: false,
            drained: false,
            watch: false,
        }
    }

    /// One turn: look at the socket, the device and the clock, and do what the timeline says.
    /// True when the thread is to stop.
    fn turn(&mut self) -> bool {
        let local = self.clock.now();
        let stats = &self.shared.stats;
        stats.playout_alive_ns.store(local.0, Ordering::Relaxed);
        if let Ok(s) = self.shared.snapshot.try_lock() {
            self.snapshot = *s;
        }
        // Once per wake-up: the periods written back to back after it were sent long before.
        if !self.drained {
            self.drain(local);
        }
        let delay = match read_device(
            &mut *self.out,
            &mut self.device,
            self.clock,
            self.dev_frames,
            self.watch,
        ) {
            Ok(d) => d,
            Err(e) => {
                self.failed(e);
                return false;
            }
        };
        self.watch = false;
        self.timeline.set_headroom(self.out.headroom());
        let view = self.look(delay, local);
        match self.timeline.plan(&view) {
            Plan::Sleep(ns) => self.sleep(ns),
            Plan::Adopt => {
                if let Some(n) = self.next.take() {
                    adopt(n, self.rx, &mut self.jb, &mut self.sched, self.shared);
                }
            }
            Plan::Silence => {
                // The device starts with a period of silence, then is measured.
                self.chunk.fill(0.0);
                self.write_chunk();
                self.drained = false;
            }
            Plan::Write(period) => return self.play(period),
        }
        false
    }

    /// Takes in what the socket holds, for this stream and the one a move goes to.
    fn drain(&mut self, local: LocalNs) {
        self.drained = true;
        let now = self.snapshot.map(|s| s.to_controller(local));
        if self.rx.drain(self.shared, local.0, now, Some(&mut self.jb)) {
            self.sched.reset_stream();
            // Re-anchor on the new session's presentation grid.
            self.sched.reset_timeline();
        }
        // A move asked for (the newest one wins over one still waiting to be due).
        if let Ok(mut s) = self.shared.switch.try_lock() {
            if let Some(newer) = s.take() {
                *self.next = Some(newer);
            }
        }
        if let Some(n) = self.next.as_mut() {
            n.rx.drain(self.shared, local.0, now, Some(&mut n.jb));
        }
    }

    /// What the timeline needs to decide, from the device's delay and the clock.
    fn look(&mut self, delay: Option<Delay>, local: LocalNs) -> View {
        let extra = self.shared.extra_latency_us.load(Ordering::Relaxed) * 1000;
        let (queued, heard) = self.queue(delay, extra);
        View {
            queued: Frames(queued),
            heard,
            grid: heard.map(|m| on_grid(m, &self.jb, self.rate)),
            lead: self.rx.lead_ns(local.0).map(Nanos),
            extra: Nanos(extra),
            anchor: self.sched.anchor_time(),
            read_position: self.rs.position(),
            // What the resampler reads for a period, and the concealment fade's look-ahead
            // beyond it (a period is more than both).
            ready: self.sched.ready(&self.jb, 2 * self.period + TAPS),
            repairing: self.rx.repairing(),
            flowing: self.rx.flowing(local.0),
            unsettled: delay.is_some_and(|d| d.frames == 0 || !self.device.settled()),
            relearning: self.device.relearning(),
            dac_ratio: self.snapshot.and_then(|s| self.dac_ratio(s)),
            next_due: self.next.as_ref().map(|n| switch_due(n, heard)),
            playing: self.shared.stats.playing.load(Ordering::Relaxed),
        }
    }

    /// How much is queued in the device, and when the next written frame will be heard on the
    /// controller's clock. Not from this one reading (stale by up to a pointer step on most
    /// devices) but from the device clock's model of all of them, which also knows the DAC's
    /// true rate. So is the queue: a reading stale by a step of 1024 frames overstates it by
    /// up to 21 ms, more than the low-water mark, and a refill timed by it came too late (the
    /// sim's device ran dry at a step of 1024 frames).
    fn queue(&mut self, delay: Option<Delay>, extra: i64) -> (i64, Option<ControllerNs>) {
        let rate = self.rate;
        match (delay, self.snapshot) {
            (Some(d), s) => {
                let heard = self
                    .device
                    .heard(self.dev_frames)
                    .filter(|_| d.frames > 0)
                    .unwrap_or(d.at.plus(frames_to_ns(d.frames, rate)));
                let left = ns_to_frames(heard.since(self.clock.now()).max(0), rate).min(d.frames);
                (left, s.map(|s| s.to_controller(heard).plus(extra)))
            }
            (None, s) => {
                // The device cannot tell: our own count of written frames says when.
                let now = s
                    .map(|s| s.to_controller(self.clock.now()))
                    .unwrap_or(ControllerNs(self.clock.now().0));
                let (t0, n) = *self.own_timeline.get_or_insert((now.plus(extra), 0));
                let next = t0.plus(frames_to_ns(n, rate));
                let queued = ns_to_frames(next.since(now.plus(extra)).max(0), rate);
                (queued, s.map(|_| next))
            }
        }
    }

    /// The DAC's rate against the controller's clock, from the device clock and the clock
    /// sync: one second of frames on the controller's clock.
    fn dac_ratio(&self, s: ClockSnapshot) -> Option<f64> {
        let a = s.to_controller(self.device.heard(self.dev_frames)?);
        let b = s.to_controller(self.device.heard(self.dev_frames + self.rate as i64)?);
        Some(b.since(a) as f64 * 1e-9)
    }

    /// Sleeps about `ns`: until the device clock's probe when it asks for one (within a
    /// pointer step before the refill is due; see `DeviceClock::probe`).
    fn sleep(&mut self, Nanos(ns): Nanos) {
        let now = self.clock.now();
        let at = self.device.probe(now.plus(ns), now.plus(ns / 2));
        self.watch = at != now.plus(ns);
        publish_device(self.shared, &self.device);
        self.out
            .sleep(Duration::from_nanos(at.since(now).max(100_000) as u64));
        self.drained = false;
    }

    /// Renders and writes one period of the stream as the timeline planned it. True when it
    /// was the last before shutdown.
    fn play(&mut self, p: Period) -> bool {
        if let Some(err) = p.error_ns {
            self.shared
                .stats
                .sync_error_ns
                .store(err as i64, Ordering::Relaxed);
            if let Some(jump) = p.resync {
                // Rare (start-up, underrun, seek, the device's own xrun): a log line is
                // affordable here.
                let why = match jump {
                    Jump::Resync => "resync",
                    Jump::DeviceMoved => "following the device's moved timeline",
                };
                log::info!(
                    "{why}: timing error {:.0} us, resampler at {:+.1} ppm",
                    err / 1000.0,
                    (self.timeline.servo().step() - 1.0) * 1e6
                );
            }
        }
        if p.unplace {
            self.sched.reset_timeline();
        }
        if let Some(t0) = p.anchor {
            self.sched.anchor(t0);
            self.rs.reset(0.0);
        }
        self.render(p.step, p.fade);
        if !self.write_chunk() {
            return false;
        }
        let after = self.timeline.wrote();
        if after.adopt {
            if let Some(n) = self.next.take() {
                adopt(n, self.rx, &mut self.jb, &mut self.sched, self.shared);
            }
        }
        if let Some((_, n)) = &mut self.own_timeline {
            *n += self.period as i64;
        }
        self.publish();
        after.stop
    }

    /// Pulls the stream frames the resampler needs, then makes one period for the device.
    fn render(&mut self, step: f64, fade: Fade) {
        let ch = self.ch;
        let need = self
            .rs
            .input_needed(self.period, step)
            .min(self.input.len() / ch);
        if need > 0 {
            let input = &mut self.input[..need * ch];
            if self.sched.anchor_time().is_some() {
                self.sched.fill(&mut self.jb, input);
            } else {
                input.fill(0.0);
            }
            self.rs.push(input);
            if let Some(t) = self.tap.as_mut() {
                t.write(input);
            }
        }
        self.rs.process(step, &mut self.chunk);
        match fade {
            Fade::Out => crate::dsp::fade::apply(&mut self.chunk, ch, false),
            Fade::In => crate::dsp::fade::apply(&mut self.chunk, ch, true),
            Fade::None => {}
        }
        let target = gain_for(
            self.shared.volume.load(Ordering::Relaxed),
            self.shared.muted.load(Ordering::Relaxed),
        );
        self.volume.apply(target, &mut self.chunk, ch);
    }

    /// Writes the period rendered; false when the device failed (then it is recovered, and
    /// restarts).
    fn write_chunk(&mut self) -> bool {
        if let Err(e) = self.out.write(&self.chunk) {
            self.failed(e);
            return false;
        }
        if self.failed_recoveries > 0 {
            self.good_since = Instant::now();
            self.cleared = false;
        }
        self.failed_recoveries = 0;
        if !self.cleared && self.good_since.elapsed() > PROBLEM_CLEARS_AFTER {
            // Playing again for a while: the problem of a lost or failing output is over.
            if let Ok(mut p) = self.shared.output_problem.try_lock() {
                *p = None;
                self.cleared = true;
            }
        }
        self.dev_frames += self.period as i64;
        true
    }

    /// The device failed a read or a write: recovered (or counted towards lost), and its
    /// position is learned again.
    fn failed(&mut self, e: OutputError) {
        self.failed_recoveries = output_error(
            &mut *self.out,
            &mut self.sched,
            self.shared,
            e,
            self.failed_recoveries,
        );
        restart_device(
            &mut self.device,
            &mut self.dev_frames,
            &mut self.own_timeline,
        );
        self.drained = false;
    }

    /// The counters, for the API (atomics: never a lock on this thread).
    fn publish(&self) {
        let stats = &self.shared.stats;
        let (st, jumps, p) = (self.sched.stats(), self.timeline.jumps(), &stats.playout);
        for (counter, value) in [
            (&p.frames_played, st.played),
            (&p.frames_silence, st.silence),
            (&p.frames_late, st.late),
            (&p.frames_lost, st.lost),
            (&p.concealments, st.concealments),
            (&p.resyncs, jumps.resyncs),
            (&p.device_jumps, jumps.device_moved),
        ] {
            counter.store(value, Ordering::Relaxed);
        }
        let buffered = self.jb.buffered_frames();
        stats.buffered_frames.store(buffered, Ordering::Relaxed);
        let servo = self.timeline.servo();
        stats
            .ratio_ppb
            .store(((servo.step() - 1.0) * 1e9) as i64, Ordering::Relaxed);
        stats.resampling.store(servo.engaged(), Ordering::Relaxed);
        stats.playing.store(buffered > 0, Ordering::Relaxed);
    }
}

/// Where to anchor the timeline when the next output frame will be heard at `m`: on the
/// stream's presentation grid point nearest to `m` (the scheduler places frames in whole slots).
/// The servo then measures the remaining fraction of a frame as error: it pulls it in with the
/// resampler once engaged, and while the DAC needs no correction the output stays a bit-exact
/// copy within half a frame. Anchoring at `m` itself left each speaker off by up to half a
/// frame (±10 µs at 48 kHz) that its servo could not see (the error is measured against the
/// anchor). Without audio yet there is no grid: anchor at `m` (a new session re-anchors).
fn on_grid(m: ControllerNs, jb: &JitterBuffer, rate: u32) -> ControllerNs {
    let Some((_, pts)) = jb.grid() else {
        return m;
    };
    let frames = (m.since(pts) as f64 * rate as f64 * 1e-9).round();
    pts.plus(frames_to_ns(frames as i64, rate))
}

/// Plays the new zone's stream from now on: its receiver and buffer replace the old ones (freed
/// here: once per move, not per packet), and the timeline is anchored afresh on its grid with
/// the next period (not counted as a resync).
fn adopt(
    n: Switch,
    rx: &mut StreamReceiver,
    jb: &mut JitterBuffer,
    sched: &mut Scheduler,
    shared: &Shared,
) {
    log::info!("switched to the new zone's stream");
    *rx = n.rx;
    *jb = n.jb;
    sched.reset_stream();
    sched.reset_timeline();
    shared.moving.store(false, Ordering::Relaxed);
}

/// A move waits at most this long for the new zone's stream to be due (it may be stopped, or
/// its latency long): then the old one fades out and the new one plays what it has.
const SWITCH_WAIT_NS: i64 = 1_500_000_000;
/// A move to a zone that sends nothing at all waits this long.
const SWITCH_IDLE_NS: i64 = 300_000_000;

/// Whether the move to another zone happens with the next period: when the new stream has a
/// frame due by the time it would be heard (so it plays on without a gap), or when waiting
/// longer would not help.
fn switch_due(n: &Switch, measured: Option<ControllerNs>) -> bool {
    let waited = n.asked.elapsed().as_nanos() as i64;
    match (n.jb.grid(), measured) {
        (Some((_, first)), Some(m)) => first <= m || waited > SWITCH_WAIT_NS,
        (None, _) => waited > SWITCH_IDLE_NS,
        (Some(_), None) => true,
    }
}

/// The device restarted (recovered from an error): its position counts from zero again, and
/// where it is must be learned again.
fn restart_device(
    device: &mut DeviceClock,
    dev_frames: &mut i64,
    own_timeline: &mut Option<(ControllerNs, i64)>,
) {
    device.reset();
    *dev_frames = 0;
    *own_timeline = None;
}

/// Publishes what the device clock knows for the API (never waits for the lock).
fn publish_device(shared: &Shared, device: &DeviceClock) {
    if let Ok(mut d) = shared.device_clock.try_lock() {
        *d = Some(device.status());
    }
}

/// Counts and logs an output error (xrun, device trouble) and tries to recover the device.
/// Returns the number of errors in a row (a successful write ends a row). The second and
/// later ones wait before going on, 10 ms doubling to 500 ms: a recovery that "succeeds" and
/// the next write fails again (a file output on a full disk) kept the real-time thread
/// spinning a whole core at a million failed writes a second. After `LOST_AFTER` in a row
/// (about 2 s) the output counts as lost: `output_problem` says why and it is reopened.
fn output_error(
    out: &mut dyn Output,
    sched: &mut Scheduler,
    shared: &Shared,
    e: OutputError,
    before: u32,
) -> u32 {
    let n = shared
        .stats
        .playout
        .output_errors
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    if n.is_power_of_two() {
        log::warn!("output error ({n} so far): {e}");
    }
    sched.reset_timeline();
    if let Err(e) = out.recover() {
        if before == 0 {
            log::warn!("output recovery failed: {e}");
        }
    }
    if before > 0 {
        // Repeated: shown in the status (never waiting for the lock on this thread).
        if let Ok(mut p) = shared.output_problem.try_lock() {
            *p = Some(format!("{e} ({} errors in a row)", before + 1));
        }
        std::thread::sleep(Duration::from_millis(
            (10u64 << (before - 1).min(6)).min(500),
        ));
    }
    before + 1
}
