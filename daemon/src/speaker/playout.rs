//! The playout thread: one per output. It owns the device, the stream socket, the jitter buffer,
//! the scheduler, the resampler and its servo. Between two writes to the device it drains the
//! socket (one `recvmmsg`), so the stream costs no wake-ups of its own; it never waits on a lock
//! (the clock snapshot is read with `try_lock`).
//!
//! This file supervises the device: opens it (and again while it is missing or lost) and waits
//! without one; [`super::player`] plays on it, doing what the timeline ([`super::timeline`],
//! pure) decides.

use super::jitter::JitterBuffer;
use super::net::StreamReceiver;
use super::output::{Output, OutputError};
use super::player::{run, Stop};
use super::tap::StreamTap;
use super::{Shared, Switch};
use crate::clock::SharedClock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Time between attempts to open a missing output.
const REOPEN_EVERY: Duration = Duration::from_secs(2);
/// Output errors in a row after which the device counts as lost and is reopened.
pub(super) const LOST_AFTER: u32 = 10;

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
    super::realtime::promote_current_thread();
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
