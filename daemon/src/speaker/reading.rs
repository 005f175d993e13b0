//! Reading the device for the device clock (the thin I/O shell around `devclock`).

use super::devclock::{DeviceClock, Reading};
use super::output::{Delay, Output, OutputError};
use crate::clock::SharedClock;

/// Reads the device and tells the device clock. After a probe (`watch`, aimed a little before
/// an edge), reads it again until the position moves or `DeviceClock::watch_ns` pass: the
/// readings on either side of the edge then bound it to the length of one call (a few µs on a
/// JACK plugin) rather than the time it takes to write a period (80–190 µs), and each wake-up
/// sees an edge, not every other one. Costs at most 0.4 ms per wake-up (a step more after an
/// edge that came late), on devices with a coarse pointer only.
pub(crate) fn read_device(
    out: &mut dyn Output,
    device: &mut DeviceClock,
    clock: &SharedClock,
    dev_frames: i64,
    watch: bool,
) -> Result<Option<Delay>, OutputError> {
    let mut start = None;
    let mut until = None;
    loop {
        let before = clock.now();
        let delay = out.delay()?;
        let Some(d) = delay.filter(|d| d.frames > 0) else {
            return Ok(delay);
        };
        let position = dev_frames - d.frames;
        let after = clock.now();
        // From the first reading, not from the wake-up: a thread that got the CPU late (or
        // was preempted in its first call) still watches the edge it was aimed before.
        let until = *until.get_or_insert(after.plus(device.watch_ns()));
        #[cfg(feature = "readings-log")]
        log_reading(before, d.at, after, position);
        device.handle_reading(Reading {
            before,
            stamp: d.at,
            after,
            position,
        });
        if !watch || *start.get_or_insert(position) != position || after.0 >= until.0 {
            return Ok(delay);
        }
    }
}

/// Appends a reading to `$CHORUS_READINGS_LOG/readings.PID`: the clock before the call, the
/// stamp, the clock after, the position (local ns, frames) and the host's `CLOCK_MONOTONIC` at
/// the end (which the replay maps the local clock to). Errors end the log, not the playout.
#[cfg(feature = "readings-log")]
fn log_reading(
    before: crate::clock::LocalNs,
    stamp: crate::clock::LocalNs,
    after: crate::clock::LocalNs,
    position: i64,
) {
    use std::io::Write;
    use std::sync::Mutex;
    static LOG: Mutex<Option<std::io::BufWriter<std::fs::File>>> = Mutex::new(None);
    let Ok(mut log) = LOG.lock() else { return };
    if log.is_none() {
        let Ok(dir) = std::env::var("CHORUS_READINGS_LOG") else {
            return;
        };
        let path = format!("{dir}/readings.{}", std::process::id());
        *log = std::fs::File::create(path)
            .ok()
            .map(|f| std::io::BufWriter::with_capacity(1 << 16, f));
    }
    let Ok(host) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) else {
        return;
    };
    let host = host.tv_sec() * 1_000_000_000 + host.tv_nsec();
    if let Some(w) = log.as_mut() {
        if writeln!(w, "{} {} {} {position} {host}", before.0, stamp.0, after.0).is_err() {
            *log = None;
        }
    }
}
