//! Host stalls: a scenario that plays in real time is run again when it failed while the
//! machine itself stopped (a VM whose host took its CPUs away, as a CI machine's did for 40-80
//! ms at a time). Then every process stopped at once, the speakers' devices ran on, and what
//! the scenario saw was the host, not chorus. A failure without a stall is a failure at once;
//! so is the last try's, stall or not.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A wake-up this late (from a 2 ms sleep) is a stall of the host.
const STALL: Duration = Duration::from_millis(25);
/// Tries in all.
const TRIES: u32 = 3;

/// Faults of the host a scenario saw itself during the current try (`host_fault`). One count
/// for the whole test process: only a scenario alone in its test binary (the device test) may
/// report faults, or a parallel scenario's try would reset or share them.
static FAULTS: AtomicU64 = AtomicU64::new(0);

/// A scenario saw the host fail under it (a JACK server's own xrun: its cycle came late and its
/// timeline moved): a failure of this try counts as the host's, as after a stall. Says so.
pub fn host_fault(what: &str) {
    eprintln!("host fault during this try: {what}");
    FAULTS.fetch_add(1, Ordering::Relaxed);
}

/// Watches for stalls while it lives: a thread that sleeps 2 ms at a time and notes how late
/// it woke.
struct Watch {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    worst_us: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start() -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let worst_us = Arc::new(AtomicU64::new(0));
        let (s, c, w) = (stop.clone(), count.clone(), worst_us.clone());
        // The scenario starts once the watch does: a stall before its first nap went unseen.
        let started = Arc::new(std::sync::Barrier::new(2));
        let go = started.clone();
        let thread = std::thread::spawn(move || {
            let nap = Duration::from_millis(2);
            go.wait();
            while !s.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                std::thread::sleep(nap);
                let late = t0.elapsed().saturating_sub(nap);
                if late >= STALL {
                    c.fetch_add(1, Ordering::Relaxed);
                    w.fetch_max(late.as_micros() as u64, Ordering::Relaxed);
                }
            }
        });
        started.wait();
        Watch {
            stop,
            count,
            worst_us,
            thread: Some(thread),
        }
    }

    /// Stops the watch and says what it saw: stalls, and the worst, ms. Its last nap is
    /// finished first, so a stall that ended just before (the scenario's failure came right
    /// after it) is counted; read at once, it was sometimes not yet (a flaky self-test).
    fn finish(mut self) -> (u64, f64) {
        self.end();
        (
            self.count.load(Ordering::Relaxed),
            self.worst_us.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }
}

impl Watch {
    fn end(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.end();
    }
}

/// Runs a real-time scenario, again (up to three tries in all) when it failed while the host
/// stalled; says so on stderr.
pub fn retry_on_host_stall(mut scenario: impl FnMut()) {
    for attempt in 1..=TRIES {
        FAULTS.store(0, Ordering::Relaxed);
        let watch = Watch::start();
        let result = catch_unwind(AssertUnwindSafe(&mut scenario));
        let (stalls, worst_ms) = watch.finish();
        let stalls = stalls + FAULTS.load(Ordering::Relaxed);
        match result {
            Ok(()) => return,
            Err(panic) if stalls == 0 || attempt == TRIES => resume_unwind(panic),
            Err(_) => eprintln!(
                "the host stalled or failed {stalls} time(s) during try {attempt} of {TRIES} \
                 (worst stall {worst_ms:.0} ms late from a 2 ms sleep), and the scenario \
                 failed: again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::Mutex;

    /// These tests stop the whole test process: one at a time, so that no other sees a stall.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn a_failure_without_a_stall_is_not_tried_again() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let tries = Cell::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            retry_on_host_stall(|| {
                tries.set(tries.get() + 1);
                panic!("a real failure");
            })
        }));
        assert!(r.is_err());
        assert_eq!(tries.get(), 1);
    }

    #[test]
    fn a_failure_during_a_stall_is_tried_again_and_may_pass() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let tries = Cell::new(0);
        retry_on_host_stall(|| {
            tries.set(tries.get() + 1);
            if tries.get() == 1 {
                stop_this_process_for(Duration::from_millis(60));
                panic!("failed during a stall");
            }
        });
        assert_eq!(tries.get(), 2);
    }

    #[test]
    fn the_last_try_fails_for_good() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let tries = Cell::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            retry_on_host_stall(|| {
                tries.set(tries.get() + 1);
                stop_this_process_for(Duration::from_millis(60));
                panic!("fails every time");
            })
        }));
        assert!(r.is_err());
        assert_eq!(tries.get(), TRIES);
    }

    /// The whole process stops (as under a stalled host), from a helper process.
    fn stop_this_process_for(d: Duration) {
        let pid = std::process::id().to_string();
        let script = format!(
            "kill -STOP {pid}; sleep {}; kill -CONT {pid}",
            d.as_secs_f64()
        );
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .expect("sh");
        let _ = child.wait();
    }
}
