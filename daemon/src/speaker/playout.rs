//! The playout thread: one per output. It owns the device, the stream socket, the jitter buffer,
//! the scheduler, the resampler and its servo. Between two writes to the device it drains the
//! socket (one `recvmmsg`), so the stream costs no wake-ups of its own; it never waits on a lock
//! (the clock snapshot is read with `try_lock`).
//!
//! Before each write it computes when the first frame of that write will be heard (device delay
//! and timestamp through the clock model), compares it with the presentation time of the stream
//! position the resampler will read for it, and lets the servo set the resampling ratio. Errors
//! beyond a few milliseconds (start, underrun, seek) re-anchor the stream instead.

use super::devclock::DeviceClock;
use super::jitter::JitterBuffer;
use super::net::StreamReceiver;
use super::output::{Output, OutputError};
use super::reading::read_device;
use super::resampler::{FracResampler, TAPS};
use super::schedule::Scheduler;
use super::servo::RateServo;
use super::volume::{gain_for, VolumeRamp};
use super::{Shared, Switch};
use crate::clock::{frames_to_ns, ns_to_frames, ControllerNs, SharedClock};
use crate::sync::ClockSnapshot;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timing error beyond which the stream is re-anchored (frames dropped or inserted) instead of
/// being pulled in by the resampler.
pub const RESYNC_THRESHOLD_NS: i64 = 3_000_000;

/// Audio left in the device when the playout thread refills it.
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

/// An output problem (errors, a loss) is cleared after this long of successful writes.
const PROBLEM_CLEARS_AFTER: Duration = Duration::from_secs(5);
/// Time between attempts to open a missing output.
const REOPEN_EVERY: Duration = Duration::from_secs(2);
/// Output errors in a row after which the device counts as lost and is reopened.
const LOST_AFTER: u32 = 10;

/// Why `run` returned.
enum Stop {
    Shutdown,
    DeviceLost(String),
}

/// The playout thread's body: opens the output (retrying every 2 s while the device is missing
/// or busy, reported in the API and logged once), plays until shutdown, and reopens the device
/// when it is lost (unplugged) — the process never exits over its sound card.
pub fn supervise(
    mut open: impl FnMut() -> Result<Box<dyn Output>, OutputError>,
    mut rx: StreamReceiver,
    shared: Arc<Shared>,
    clock: SharedClock,
    shutdown: Arc<AtomicBool>,
    mut tap: Option<StreamTap>,
) {
    realtime::promote_current_thread();
    let mut failures: u64 = 0;
    let mut last_problem = String::new();
    // The output was lost (not missing): its problem stays shown until it plays again.
    let mut lost = false;
    // A move to another zone under way (kept across device reopenings).
    let mut next: Option<Switch> = None;
    while !shutdown.load(Ordering::Relaxed) {
        match open() {
            Ok(out) => {
                if failures > 0 {
                    log::info!("output open after {failures} failed attempts");
                }
                failures = 0;
                last_problem.clear();
                shared.output_opens.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut o) = shared.output.lock() {
                    *o = Some(out.info());
                }
                if !lost {
                    if let Ok(mut p) = shared.output_problem.lock() {
                        *p = None;
                    }
                }
                match run(
                    out, &mut rx, &mut next, &shared, &clock, &shutdown, &mut tap,
                ) {
                    Stop::Shutdown => break,
                    Stop::DeviceLost(why) => {
                        log::error!("output lost ({why}); reopening it every 2 s");
                        set_problem(&shared, format!("lost: {why}"));
                        lost = true;
                        idle(&mut rx, &mut next, &shared, &clock, &shutdown, REOPEN_EVERY);
                    }
                }
            }
            Err(e) => {
                lost = false;
                failures += 1;
                let why = e.to_string();
                // Once per distinct problem, and then every 5 minutes: not a log flood.
                if why != last_problem || failures % 150 == 0 {
                    log::error!("cannot open the output: {why}; retrying every 2 s");
                    last_problem = why.clone();
                }
                set_problem(&shared, why);
                idle(&mut rx, &mut next, &shared, &clock, &shutdown, REOPEN_EVERY);
            }
        }
    }
    if let Some(t) = tap {
        t.finish();
    }
}

fn set_problem(shared: &Shared, why: String) {
    if let Ok(mut o) = shared.output.lock() {
        *o = None;
    }
    if let Ok(mut p) = shared.output_problem.lock() {
        *p = Some(why);
    }
    shared.stats.playing.store(false, Ordering::Relaxed);
}

/// Waits without a device: discards the stream (it will be stale by the time a device is back)
/// but follows the controller's announcements, and keeps the watchdog pulse going (the process
/// is healthy, the hardware is not).
fn idle(
    rx: &mut StreamReceiver,
    next: &mut Option<Switch>,
    shared: &Shared,
    clock: &SharedClock,
    shutdown: &AtomicBool,
    span: Duration,
) {
    let end = std::time::Instant::now() + span;
    while std::time::Instant::now() < end && !shutdown.load(Ordering::Relaxed) {
        // A move to another zone: nothing plays, take its stream at once.
        if let Some(n) = next
            .take()
            .or_else(|| shared.switch.try_lock().ok().and_then(|mut s| s.take()))
        {
            *rx = n.rx;
            shared.moving.store(false, Ordering::Relaxed);
        }
        shared
            .stats
            .playout_alive_ns
            .store(clock.now().0, Ordering::Relaxed);
        let snapshot = shared.snapshot.try_lock().ok().and_then(|s| *s);
        let local = clock.now();
        rx.drain(
            shared,
            local.0,
            snapshot.map(|s| s.to_controller(local)),
            None,
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Plays until `shutdown` is set (then finishes the output) or the device is lost.
fn run(
    mut out: Box<dyn Output>,
    rx: &mut StreamReceiver,
    next: &mut Option<Switch>,
    shared: &Arc<Shared>,
    clock: &SharedClock,
    shutdown: &AtomicBool,
    tap: &mut Option<StreamTap>,
) -> Stop {
    let info = out.info();
    let ch = info.channels as usize;
    let rate = info.rate;
    let period = info.period_frames.max(32);
    let buffer = info.buffer_frames.max(2 * period);
    // Queued frames at which a full device is refilled: 20 ms against an underrun (whole
    // periods, at least one, at most half the buffer). With the default 100 ms buffer and
    // 150 ms latency the thread wakes every 80 ms.
    let guard = (ns_to_frames(LOW_WATER_NS, rate) as usize / period).max(1);
    let low_water = (period * guard.min((buffer / period / 2).max(1))).min(buffer - period) as i64;
    let mut jb = jitter_buffer(rate, ch);
    // This period fades the old zone out; the next plays the new one.
    let mut switching = false;
    let mut sched = Scheduler::new(rate, ch);
    let mut servo = RateServo::new(rate);
    let mut rs = FracResampler::new(ch, 2 * period + 4 * TAPS);
    let mut volume = VolumeRamp::new(
        gain_for(
            shared.volume.load(Ordering::Relaxed),
            shared.muted.load(Ordering::Relaxed),
        ),
        (rate as usize) * 30 / 1000,
    );
    let mut chunk = vec![0.0f32; period * ch];
    let mut input = vec![0.0f32; (2 * period + 4 * TAPS) * ch];
    let mut snapshot: Option<ClockSnapshot> = None;
    // Where the DAC really is, from every status reading; frames written since the device
    // (re)started, which its position counts against.
    let mut device = DeviceClock::new(rate);
    let mut dev_frames: i64 = 0;
    // For devices that cannot report their delay: when the first written frame is heard, and
    // frames written since.
    let mut own_timeline: Option<(ControllerNs, i64)> = None;
    let stats = &shared.stats;
    // Frames written since the stream was anchored (for the servo's rate estimate).
    let mut written: i64 = 0;
    // Output errors in a row (a successful write ends a row), since when writes succeed, and
    // whether the output's problem was cleared since.
    let mut failed_recoveries = 0u32;
    let mut good_since = Instant::now();
    let mut cleared = false;
    // Re-anchoring under a fade.
    let mut fade = Fade::None;
    // The socket was read since the last sleep.
    let mut drained = false;
    // The last sleep was to a probe of the device clock: watch for the edge.
    let mut watch = false;
    // SIGTERM: one more period, faded out, then the device is drained (never a click).
    let mut stopping = false;
    let mut stop_turns = 0;
    loop {
        if shutdown.load(Ordering::Relaxed) {
            if !stopping {
                stopping = true;
                if !stats.playing.load(Ordering::Relaxed) || sched.anchor_time().is_none() {
                    break;
                }
                fade = Fade::Out;
            }
            // A device that keeps failing does not hold the shutdown up.
            stop_turns += 1;
            if stop_turns > 8 {
                break;
            }
        }
        if failed_recoveries >= LOST_AFTER {
            let _ = out.finish();
            return Stop::DeviceLost(format!("{failed_recoveries} errors in a row"));
        }
        let local = clock.now();
        stats.playout_alive_ns.store(local.0, Ordering::Relaxed);
        if let Ok(s) = shared.snapshot.try_lock() {
            snapshot = *s;
        }
        // Once per wake-up: the periods written back to back after it were sent long before.
        if !drained {
            drained = true;
            let now = snapshot.map(|s| s.to_controller(local));
            if rx.drain(shared, local.0, now, Some(&mut jb)) {
                sched.reset_stream();
                // Re-anchor on the new session's presentation grid.
                sched.reset_timeline();
            }
            // A move asked for (the newest one wins over one still waiting to be due).
            if let Ok(mut s) = shared.switch.try_lock() {
                if let Some(newer) = s.take() {
                    *next = Some(newer);
                }
            }
            if let Some(n) = next.as_mut() {
                n.rx.drain(shared, local.0, now, Some(&mut n.jb));
            }
        }
        let delay = match read_device(&mut *out, &mut device, clock, dev_frames, watch) {
            Ok(d) => d,
            Err(e) => {
                failed_recoveries =
                    output_error(&mut *out, &mut sched, shared, e, failed_recoveries);
                restart_device(&mut device, &mut dev_frames, &mut own_timeline);
                drained = false;
                continue;
            }
        };
        watch = false;
        let extra = shared.extra_latency_us.load(Ordering::Relaxed) * 1000;
        // How much is queued in the device, and when will the next written frame be heard? Not
        // from this one reading (stale by up to a pointer step on most devices) but from the
        // device clock's model of all of them, which also knows the DAC's true rate.
        // So is the queue: a reading stale by a step of 1024 frames overstates it by up to
        // 21 ms, more than the low-water mark, and a refill timed by it came too late (the
        // sim's device ran dry at a step of 1024 frames).
        let (queued, measured) = match (delay, snapshot) {
            (Some(d), s) => {
                let heard = device
                    .heard(dev_frames)
                    .filter(|_| d.frames > 0)
                    .unwrap_or(d.at.plus(frames_to_ns(d.frames, rate)));
                let left = ns_to_frames(heard.since(clock.now()).max(0), rate).min(d.frames);
                (left, s.map(|s| s.to_controller(heard).plus(extra)))
            }
            (None, s) => {
                // The device cannot tell: our own count of written frames says when.
                let now = s
                    .map(|s| s.to_controller(clock.now()))
                    .unwrap_or(ControllerNs(clock.now().0));
                let (t0, n) = *own_timeline.get_or_insert((now.plus(extra), 0));
                let next = t0.plus(frames_to_ns(n, rate));
                let queued = ns_to_frames(next.since(now.plus(extra)).max(0), rate);
                (queued, s.map(|_| next))
            }
        };
        // Full, or the next frames to write are not here while the stream is coming in (lost
        // and being repaired, or late) and the device holds more than the low-water mark: they
        // may still come. A frame is written early only if it is here: the write horizon is
        // the buffer or the newest audio, whichever is nearer. And the device is filled only
        // as far ahead as leaves a hole in the stream time to show and be repaired before its
        // frames are due: the zone's latency (the stream's lead less the controller's send
        // burst) less `REPAIR_ROOM_NS`, in whole periods above the low-water mark. At 100 ms
        // latency that is 60 ms (a wake-up every 40 ms), at 150 ms the whole 100 ms buffer
        // (every 80 ms): on small boards a wake-up costs more CPU than rendering a period.
        let fill = rx.lead_ns(local.0).map_or(buffer, |lead| {
            fill_frames(lead, extra, rate, (low_water as usize, period, buffer))
        });
        let full = queued as usize + period > fill;
        let waiting = !full
            && queued > low_water
            && sched.anchor_time().is_some()
            && (rx.repairing() || rx.flowing(local.0))
            // What the resampler reads for a period, and the concealment fade's look-ahead
            // beyond it (a period is more than both).
            && !sched.ready(&jb, 2 * period + TAPS);
        if full || waiting {
            // Sleep until the device has drained to the low-water mark, then write periods
            // back to back until it is full again: eight periods per wake-up with the
            // defaults, with 20 ms still queued against an underrun. (10 ms saved more but underran
            // under load: a loaded test machine heard it.)
            let wait = frames_to_ns(queued - low_water, rate);
            // While datagrams are being repaired, wake every 5 ms to take them in; while audio
            // is late, every 20 ms (a loss burst under way shows as a gap then).
            let longest = if rx.repairing() {
                REPAIR_POLL_NS
            } else if waiting {
                LATE_POLL_NS
            } else {
                1_000_000_000
            };
            let wait = wait.clamp(200_000, longest);
            // Read the device next when it tells most about where it is (within a pointer step
            // before the refill is due; see `DeviceClock::probe`).
            let now = clock.now();
            let at = device.probe(now.plus(wait), now.plus(wait / 2));
            watch = at != now.plus(wait);
            publish_device(shared, &device);
            std::thread::sleep(Duration::from_nanos(at.since(now).max(100_000) as u64));
            drained = false;
            continue;
        }
        if let (Some(n), false) = (&next, switching) {
            if switch_due(n, measured) {
                if sched.anchor_time().is_some() && stats.playing.load(Ordering::Relaxed) {
                    // The old zone fades out over this period; the new one is anchored and
                    // fades in with the next.
                    switching = true;
                    fade = Fade::Out;
                } else if let Some(n) = next.take() {
                    // Nothing playing: take the new stream at once.
                    adopt(n, rx, &mut jb, &mut sched, shared);
                    fade = Fade::None;
                }
            }
        }
        let step = match (measured, sched.anchor_time()) {
            // The last period before stopping: on the timeline as it is, whatever the error.
            _ if stopping => servo.step(),
            // The old zone's last period, faded out on its timeline.
            _ if switching => servo.step(),
            (None, _) => {
                sched.reset_timeline();
                1.0
            }
            (Some(_), None) if delay.is_some_and(|d| d.frames == 0 || !device.settled()) => {
                // The device is idle (just opened, or stopped by an xrun): it starts with the
                // first write, so a stamp taken now says nothing about when the next frame will
                // be heard (the time taken to render the period would become timing error,
                // ~100 µs on a small machine, for the servo to pull in over seconds). Start it
                // with a period of silence, then measure. Likewise while the device clock has
                // not measured the DAC's rate yet (the first second after the device opened).
                chunk.fill(0.0);
                if let Err(e) = out.write(&chunk) {
                    failed_recoveries =
                        output_error(&mut *out, &mut sched, shared, e, failed_recoveries);
                    restart_device(&mut device, &mut dev_frames, &mut own_timeline);
                } else {
                    dev_frames += period as i64;
                }
                drained = false;
                continue;
            }
            (Some(m), None) => {
                anchor(on_grid(m, &jb, rate), &mut sched, &mut rs, &mut servo);
                // The DAC's rate against the controller's clock, from the device clock and the
                // clock sync: one second of frames on the controller's clock.
                let span = |s: ClockSnapshot| {
                    let a = s.to_controller(device.heard(dev_frames)?);
                    Some(
                        s.to_controller(device.heard(dev_frames + rate as i64)?)
                            .since(a),
                    )
                };
                if let Some(ns) = snapshot.and_then(span) {
                    servo.prime(ns as f64 * 1e-9);
                }
                written = 0;
                fade = Fade::In;
                1.0
            }
            (Some(m), Some(_)) if fade == Fade::Out => {
                // The last period faded out on the old timeline: jump, and fade in.
                anchor(on_grid(m, &jb, rate), &mut sched, &mut rs, &mut servo);
                written = 0;
                fade = Fade::In;
                servo.step()
            }
            (Some(m), Some(t0)) => {
                // Where the next output frame reads the stream, and when that should be heard.
                let due = t0.0 as f64 + rs.position() * 1e9 / rate as f64;
                // The device clock has already discounted stale position reports, so an error
                // beyond the threshold is real at once (a stall, an underrun, a seek).
                let err_ns = m.0 as f64 - due;
                stats.sync_error_ns.store(err_ns as i64, Ordering::Relaxed);
                if err_ns.abs() > RESYNC_THRESHOLD_NS as f64 {
                    // Rare (start-up, underrun, seek): a log line is affordable here.
                    log::info!(
                        "resync: timing error {:.0} us, resampler at {:+.1} ppm",
                        err_ns / 1000.0,
                        (servo.step() - 1.0) * 1e6
                    );
                    // Drop or insert frames under a fade: this period fades out on the old
                    // timeline, the next one jumps and fades in. Never a click.
                    fade = Fade::Out;
                    servo.step()
                } else {
                    servo.update(written, m.0 as f64, err_ns * rate as f64 * 1e-9)
                }
            }
        };
        // Pull the stream frames the resampler needs, then make one period for the device.
        let need = rs.input_needed(period, step).min(input.len() / ch);
        if need > 0 {
            if sched.anchor_time().is_some() {
                sched.fill(&mut jb, &mut input[..need * ch]);
            } else {
                input[..need * ch].fill(0.0);
            }
            rs.push(&input[..need * ch]);
            if let Some(t) = tap.as_mut() {
                t.write(&input[..need * ch]);
            }
        }
        rs.process(step, &mut chunk);
        match fade {
            Fade::Out => apply_fade(&mut chunk, ch, false),
            Fade::In => {
                apply_fade(&mut chunk, ch, true);
                fade = Fade::None;
            }
            Fade::None => {}
        }
        let target = gain_for(
            shared.volume.load(Ordering::Relaxed),
            shared.muted.load(Ordering::Relaxed),
        );
        volume.apply(target, &mut chunk, ch);
        if let Err(e) = out.write(&chunk) {
            failed_recoveries = output_error(&mut *out, &mut sched, shared, e, failed_recoveries);
            restart_device(&mut device, &mut dev_frames, &mut own_timeline);
            drained = false;
            continue;
        }
        if failed_recoveries > 0 {
            good_since = Instant::now();
            cleared = false;
        }
        failed_recoveries = 0;
        if !cleared && good_since.elapsed() > PROBLEM_CLEARS_AFTER {
            // Playing again for a while: the problem of a lost or failing output is over.
            if let Ok(mut p) = shared.output_problem.try_lock() {
                *p = None;
                cleared = true;
            }
        }
        dev_frames += period as i64;
        if switching {
            if let Some(n) = next.take() {
                adopt(n, rx, &mut jb, &mut sched, shared);
            }
            switching = false;
            fade = Fade::None;
        }
        if let Some((_, n)) = &mut own_timeline {
            *n += period as i64;
        }
        written += period as i64;
        let st = sched.stats();
        stats.frames_played.store(st.played, Ordering::Relaxed);
        stats.frames_silence.store(st.silence, Ordering::Relaxed);
        stats.frames_late.store(st.late, Ordering::Relaxed);
        stats.frames_lost.store(st.lost, Ordering::Relaxed);
        stats.concealments.store(st.concealments, Ordering::Relaxed);
        stats.resyncs.store(st.resyncs, Ordering::Relaxed);
        stats
            .buffered_frames
            .store(jb.buffered_frames(), Ordering::Relaxed);
        stats
            .ratio_ppb
            .store(((servo.step() - 1.0) * 1e9) as i64, Ordering::Relaxed);
        stats.resampling.store(servo.engaged(), Ordering::Relaxed);
        stats
            .playing
            .store(jb.buffered_frames() > 0, Ordering::Relaxed);
        if stopping {
            break;
        }
    }
    if let Err(e) = out.finish() {
        log::warn!("closing output: {e}");
    }
    Stop::Shutdown
}

/// Testing only: records the scheduled stream before the resampler (see `testing.stream-tap`).
/// Writes a file from the playout thread, so it is not for production use.
pub struct StreamTap {
    wav: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
}

impl StreamTap {
    pub fn create(path: &str, rate: u32, channels: u8) -> Result<Self, hound::Error> {
        let spec = hound::WavSpec {
            channels: channels as u16,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        Ok(StreamTap {
            wav: hound::WavWriter::create(path, spec)?,
        })
    }
    fn write(&mut self, samples: &[f32]) {
        for s in samples {
            let _ = self
                .wav
                .write_sample((s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16);
        }
    }
    fn finish(self) {
        let _ = self.wav.finalize();
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

/// (Re-)anchors the timeline at `t0`: the scheduler's slots, the resampler's read position and
/// the servo's rate history all start over from there.
fn anchor(t0: ControllerNs, sched: &mut Scheduler, rs: &mut FracResampler, servo: &mut RateServo) {
    sched.anchor(t0);
    rs.reset(0.0);
    servo.restart();
}

/// How far ahead to fill the device, frames, for a stream that arrives `lead_ns` before its
/// presentation time at the most (and `extra_ns` of latency after the DAC): the zone's latency
/// less `REPAIR_ROOM_NS`, at least `MIN_FILL_NS`, in whole periods above the low-water mark
/// (at least one), at most the buffer.
fn fill_frames(
    lead_ns: i64,
    extra_ns: i64,
    rate: u32,
    (low_water, period, buffer): (usize, usize, usize),
) -> usize {
    let room = (SEND_BURST_NS + REPAIR_ROOM_NS).saturating_add(extra_ns);
    let ahead =
        ns_to_frames(lead_ns.saturating_sub(room), rate).max(ns_to_frames(MIN_FILL_NS, rate));
    let above = (ahead - low_water as i64).max(0) as usize;
    (low_water + period * above.div_ceil(period).max(1)).min(buffer)
}

/// A jitter buffer with 200 ms of spare datagram buffers (of the format with the most frames
/// per datagram, 16-bit): allocated here, never on the playout thread's way.
pub fn jitter_buffer(rate: u32, ch: usize) -> JitterBuffer {
    let mut jb = JitterBuffer::new(rate, ch, 4096);
    let per_datagram =
        crate::wire::AudioHeader::max_frames(ch as u8, crate::wire::SampleFormat::S16);
    // Enough for the default 150 ms latency: a deeper buffer (a higher latency) allocates the
    // rest in its first second, and from then on the buffers that leave are recycled. Each
    // spare is resident memory (2 KiB; 200 ms of them is 0.07 MiB at 48 kHz stereo).
    jb.reserve_spares(
        rate as usize / 5 / per_datagram.max(1) + 8,
        super::net::SLOT,
    );
    jb
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

/// A fade around a jump of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fade {
    None,
    /// This period fades out; the next re-anchors.
    Out,
    /// This period fades in after a (re-)anchor.
    In,
}

/// A raised-cosine fade over the whole buffer (one period, 10 ms by default).
fn apply_fade(samples: &mut [f32], channels: usize, fade_in: bool) {
    let n = samples.len() / channels;
    for (i, frame) in samples.chunks_exact_mut(channels).enumerate() {
        let x = (i as f32 + 0.5) / n as f32;
        let up = 0.5 - 0.5 * (std::f32::consts::PI * x).cos();
        let g = if fade_in { up } else { 1.0 - up };
        for s in frame {
            *s *= g;
        }
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
    let n = shared.stats.output_errors.fetch_add(1, Ordering::Relaxed) + 1;
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

/// Real-time care for the playout thread.
pub mod realtime {
    /// Priority of the playout thread under SCHED_FIFO (below the kernel's IRQ threads at 50..,
    /// above ordinary processes).
    pub const PRIORITY: i32 = 40;

    /// Asks for SCHED_FIFO on the calling thread; logs and carries on at normal priority when
    /// not permitted.
    pub fn promote_current_thread() {
        let param = libc::sched_param {
            sched_priority: PRIORITY,
        };
        // SAFETY: plain syscall on the calling thread with a valid parameter struct.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        if rc == 0 {
            log::info!("playout thread: SCHED_FIFO priority {PRIORITY}");
        } else {
            log::info!(
                "playout thread: no real-time priority ({}); running at normal priority",
                std::io::Error::last_os_error()
            );
        }
    }

    /// Locks the process's memory so the playout path never waits on a page fault; logs and
    /// carries on when not permitted.
    /// Locks memory on fault (MCL_ONFAULT): every page the process touches stays resident, so
    /// the playout path never waits for the disk once it has run, but the parts of the binary
    /// and libraries it never touches are not loaded just to be locked (plain MCL_CURRENT made a
    /// speaker 13 MiB resident, most of it code it never runs).
    pub fn lock_memory() {
        // SAFETY: mlockall has no memory-safety preconditions.
        let flags = libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT;
        if unsafe { libc::mlockall(flags) } == 0 {
            log::info!("memory locked (on fault)");
            return;
        }
        // Kernels before 4.4 know no MCL_ONFAULT.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
            log::info!("memory locked");
        } else {
            log::info!(
                "memory not locked ({}); page faults may delay playout",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fill_frames;

    #[test]
    fn the_device_is_filled_to_the_latency_less_the_room_a_repair_needs() {
        const MS: i64 = 1_000_000;
        // 48 kHz, the default device: 10 ms periods, 100 ms buffer, refilled at 20 ms.
        let dev = (960, 480, 4800);
        let fill =
            |lead_ms: i64, extra_ms: i64| fill_frames(lead_ms * MS, extra_ms * MS, 48_000, dev);
        // Default latency (150 ms, found as up to 170 ms of lead): the whole buffer.
        assert_eq!(fill(168, 0), 4800);
        assert_eq!(fill(150 + 20, 0), 4800);
        // 100 ms: 60 ms, as the 60 ms buffer of before (a wake-up every 40 ms), also when the
        // lead found falls short of the burst by a little.
        assert_eq!(fill(120, 0), 2880);
        assert_eq!(fill(112, 0), 2880);
        // 120 ms: 80 ms. An extra latency after the DAC comes off.
        assert_eq!(fill(140, 0), 3840);
        assert_eq!(fill(140, 20), 2880);
        // Shorter latencies, or more after the DAC: never less than 60 ms (25 wake-ups a
        // second, as before), whatever the lead.
        assert_eq!(fill(170, 80), 2880);
        assert_eq!(fill(70, 0), 2880);
        assert_eq!(fill(-5_000, 0), 2880);
        assert_eq!(fill_frames(i64::MIN, i64::MAX, 48_000, dev), 2880);
        // A configured buffer smaller than that is filled whole; a configured period of 1024
        // frames: whole periods above the low-water mark (one period), 64 ms at least.
        assert_eq!(fill_frames(0, 0, 48_000, (960, 480, 1920)), 1920);
        assert_eq!(fill_frames(0, 0, 48_000, (1024, 1024, 8192)), 3072);
        // A lead from a forged datagram: no more than the buffer.
        assert_eq!(fill_frames(i64::MAX, 0, 48_000, dev), 4800);
    }
}
