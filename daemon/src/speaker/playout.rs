//! The playout thread: one per output. It owns the device, the jitter buffer and the
//! scheduler; the network side feeds it through a bounded channel and it never waits on a lock
//! (the clock snapshot is read with `try_lock`).

use super::jitter::{Chunk, Insert, JitterBuffer};
use super::output::Output;
use super::schedule::Scheduler;
use super::volume::{gain_for, VolumeRamp};
use super::Shared;
use crate::clock::{frames_to_ns, ControllerNs, SharedClock};
use crate::sync::ClockSnapshot;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// Timing error beyond which the timeline is re-anchored (frames dropped or inserted).
pub const RESYNC_THRESHOLD_NS: i64 = 2_000_000;

/// Runs until `shutdown` is set; then finishes the output.
pub fn run(
    mut out: Box<dyn Output>,
    rx: Receiver<Chunk>,
    shared: Arc<Shared>,
    clock: SharedClock,
    shutdown: Arc<AtomicBool>,
) {
    let info = out.info();
    let ch = info.channels as usize;
    let rate = info.rate;
    let period = info.period_frames.max(32);
    let buffer = info.buffer_frames.max(2 * period);
    let mut jb = JitterBuffer::new(rate, ch, 4096);
    let mut sched = Scheduler::new(rate, ch, RESYNC_THRESHOLD_NS);
    let mut volume = VolumeRamp::new(
        gain_for(
            shared.volume.load(Ordering::Relaxed),
            shared.muted.load(Ordering::Relaxed),
        ),
        (rate as usize) * 30 / 1000,
    );
    let mut chunk = vec![0.0f32; period * ch];
    let mut snapshot: Option<ClockSnapshot> = None;
    let stats = &shared.stats;
    while !shutdown.load(Ordering::Relaxed) {
        while let Ok(c) = rx.try_recv() {
            match jb.insert(c) {
                Insert::NewSession => {
                    stats.sessions.fetch_add(1, Ordering::Relaxed);
                    sched.reset_stream();
                }
                Insert::Duplicate => {
                    stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Insert::Full => {
                    stats.queue_overflow.fetch_add(1, Ordering::Relaxed);
                }
                Insert::Inserted | Insert::Stale => {}
            }
        }
        if let Ok(s) = shared.snapshot.try_lock() {
            snapshot = *s;
        }
        let delay = match out.delay() {
            Ok(d) => d,
            Err(e) => {
                output_error(&mut *out, &mut sched, &shared, e);
                continue;
            }
        };
        let extra = shared.extra_latency_us.load(Ordering::Relaxed) * 1000;
        // How much is queued in the device, and when will the next written frame be heard?
        let (queued, measured) = match (delay, snapshot) {
            (Some(d), Some(s)) => (
                d.frames,
                Some(
                    s.to_controller(d.at)
                        .plus(frames_to_ns(d.frames, rate) + extra),
                ),
            ),
            (Some(d), None) => (d.frames, None),
            (None, s) => {
                // The device cannot tell: our own timeline says how far ahead we are.
                let now = s
                    .map(|s| s.to_controller(clock.now()))
                    .unwrap_or(ControllerNs(clock.now().0));
                let ahead = sched
                    .next_time()
                    .map(|t| t.since(now.plus(extra)))
                    .unwrap_or(0);
                let queued = crate::clock::ns_to_frames(ahead.max(0), rate);
                (
                    queued,
                    s.map(|_| sched.next_time().unwrap_or(now.plus(extra))),
                )
            }
        };
        if queued as usize + period > buffer {
            let wait = frames_to_ns(queued + period as i64 - buffer as i64, rate);
            std::thread::sleep(Duration::from_nanos(wait.clamp(200_000, 20_000_000) as u64));
            continue;
        }
        if let Some(m) = measured {
            sched.observe(m);
        } else if snapshot.is_none() {
            sched.reset_timeline();
        }
        sched.fill(&mut jb, &mut chunk);
        let target = gain_for(
            shared.volume.load(Ordering::Relaxed),
            shared.muted.load(Ordering::Relaxed),
        );
        volume.apply(target, &mut chunk, ch);
        if let Err(e) = out.write(&chunk) {
            output_error(&mut *out, &mut sched, &shared, e);
            continue;
        }
        let st = sched.stats();
        stats.frames_played.store(st.played, Ordering::Relaxed);
        stats.frames_silence.store(st.silence, Ordering::Relaxed);
        stats.frames_late.store(st.late, Ordering::Relaxed);
        stats.frames_lost.store(st.lost, Ordering::Relaxed);
        stats.resyncs.store(st.resyncs, Ordering::Relaxed);
        stats
            .buffered_frames
            .store(jb.buffered_frames(), Ordering::Relaxed);
        if let Some(e) = sched.last_error_ns() {
            stats.sync_error_ns.store(e, Ordering::Relaxed);
        }
        stats
            .playing
            .store(jb.buffered_frames() > 0, Ordering::Relaxed);
    }
    if let Err(e) = out.finish() {
        log::warn!("closing output: {e}");
    }
}

fn output_error(
    out: &mut dyn Output,
    sched: &mut Scheduler,
    shared: &Shared,
    e: super::output::OutputError,
) {
    let n = shared.stats.output_errors.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        log::warn!("output error ({n} so far): {e}");
    }
    sched.reset_timeline();
    if let Err(e) = out.recover() {
        log::warn!("output recovery failed: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
