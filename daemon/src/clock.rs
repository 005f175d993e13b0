//! Time, as chorus sees it.
//!
//! Three clocks matter (see docs/ARCHITECTURE.md): the controller clock, which every wire
//! timestamp uses; each speaker's own CPU clock; and each DAC's crystal. Values from the first
//! two are kept apart by type ([`ControllerNs`], [`LocalNs`]) so that a conversion can only
//! happen through a clock model.
//!
//! Nothing in chorus reads `CLOCK_REALTIME` or `SystemTime` for synchronisation: only the
//! [`Clock`] trait, whose production implementation reads `CLOCK_MONOTONIC_RAW`.

// Times and frame counts from the network pass through these conversions: none may wrap.
#![cfg_attr(not(test), warn(clippy::cast_possible_truncation))]

use std::sync::Arc;

/// Nanoseconds on the controller's clock (its `CLOCK_MONOTONIC_RAW`, possibly skewed in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ControllerNs(pub i64);

/// Nanoseconds on this process's own clock (see [`Clock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LocalNs(pub i64);

impl ControllerNs {
    /// `self - other` in nanoseconds.
    pub fn since(self, other: ControllerNs) -> i64 {
        // Saturating: presentation times come off the network.
        self.0.saturating_sub(other.0)
    }
    /// This instant shifted by `ns` nanoseconds.
    pub fn plus(self, ns: i64) -> ControllerNs {
        ControllerNs(self.0.saturating_add(ns))
    }
}

impl LocalNs {
    /// `self - other` in nanoseconds.
    pub fn since(self, other: LocalNs) -> i64 {
        self.0 - other.0
    }
    /// This instant shifted by `ns` nanoseconds.
    pub fn plus(self, ns: i64) -> LocalNs {
        LocalNs(self.0 + ns)
    }
}

/// A duration in nanoseconds, on the clock its context names (a sleep, a lead, a latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub i64);

/// A count of audio frames, at the rate its context names (queued in a device, a fill depth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Frames(pub i64);

impl Nanos {
    /// Whole frames in this long at `rate` Hz, rounded to the nearest.
    pub fn frames_at(self, rate: u32) -> Frames {
        Frames(ns_to_frames(self.0, rate))
    }
}

impl Frames {
    /// How long these frames last at `rate` Hz, rounded to the nearest nanosecond.
    pub fn time_at(self, rate: u32) -> Nanos {
        Nanos(frames_to_ns(self.0, rate))
    }
}

/// Nanoseconds for `frames` at `rate` Hz (0 counts as 1), rounded to the nearest nanosecond.
pub fn frames_to_ns(frames: i64, rate: u32) -> i64 {
    let num = frames as i128 * 1_000_000_000i128;
    let r = rate.max(1) as i128;
    let q = if num >= 0 {
        (num + r / 2) / r
    } else {
        (num - r / 2) / r
    };
    saturate(q)
}

/// Whole frames in `ns` nanoseconds at `rate` Hz, rounded to the nearest frame.
pub fn ns_to_frames(ns: i64, rate: u32) -> i64 {
    let num = ns as i128 * rate as i128;
    let d = 1_000_000_000i128;
    let q = if num >= 0 {
        (num + d / 2) / d
    } else {
        (num - d / 2) / d
    };
    saturate(q)
}

/// `q` as an i64, held at its ends: a frame count or a time from the network far out of range
/// saturates instead of wrapping to the other side.
fn saturate(q: i128) -> i64 {
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

/// A monotonic clock in nanoseconds.
///
/// Contract: `now` never goes backwards and has no steps; its rate may differ from true time
/// (that is what the sync servo estimates). Implementations must be cheap and callable from
/// the real-time playout thread (no allocation, no locks).
pub trait Clock: Send + Sync {
    /// The current time on this clock.
    fn now(&self) -> LocalNs;
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;

/// Reads `CLOCK_MONOTONIC_RAW` (not slewed by NTP, never stepped).
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicRaw;

/// `CLOCK_MONOTONIC_RAW` in nanoseconds.
pub fn monotonic_raw_ns() -> i64 {
    read_clock(nix::time::ClockId::CLOCK_MONOTONIC_RAW)
}

/// `CLOCK_REALTIME` in nanoseconds. Used for two things only: the `sim` output logs when
/// frames are heard on this clock because it is the one clock that all processes on a host
/// share, even across time namespaces (measurement); and kernel packet timestamps, which are
/// realtime, are converted to our clock by measuring their age on it. Never used as a time base
/// for synchronisation.
pub fn realtime_ns_for_measurement() -> i64 {
    read_clock(nix::time::ClockId::CLOCK_REALTIME)
}

/// Nanoseconds of a timespec, in 64 bits whatever the platform's `time_t` (32 bits on armhf).
#[allow(clippy::unnecessary_cast)]
pub fn timespec_ns(ts: &nix::sys::time::TimeSpec) -> i64 {
    ts.tv_sec() as i64 * 1_000_000_000 + ts.tv_nsec() as i64
}

fn read_clock(id: nix::time::ClockId) -> i64 {
    match nix::time::clock_gettime(id) {
        Ok(ts) => timespec_ns(&ts),
        // clock_gettime on these ids cannot fail on Linux; keep the path panic-free anyway.
        Err(_) => 0,
    }
}

impl Clock for MonotonicRaw {
    fn now(&self) -> LocalNs {
        LocalNs(monotonic_raw_ns())
    }
}

/// A clock that runs `ppm` parts per million fast (negative: slow) and `offset_ns` ahead of the
/// clock it wraps. Tests and the benchmark give each speaker one of these so that a sync bug
/// cannot hide behind processes sharing one host clock.
pub struct SkewedClock {
    inner: SharedClock,
    anchor: i64,
    offset_ns: i64,
    ppm: f64,
}

impl SkewedClock {
    /// Wraps `inner`; the frequency error accumulates from the moment of construction.
    pub fn new(inner: SharedClock, offset_ns: i64, ppm: f64) -> Self {
        let anchor = inner.now().0;
        SkewedClock {
            inner,
            anchor,
            offset_ns,
            ppm,
        }
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> LocalNs {
        let raw = self.inner.now().0;
        let elapsed = raw - self.anchor;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "`as` saturates; a test clock"
        )]
        let skew = (elapsed as f64 * self.ppm * 1e-6) as i64;
        LocalNs(raw + self.offset_ns + skew)
    }
}

/// The clock a process should use: the raw monotonic clock, skewed when the config asks for it
/// (testing only).
pub fn process_clock(offset_ms: f64, ppm: f64) -> SharedClock {
    let raw: SharedClock = Arc::new(MonotonicRaw);
    if offset_ms == 0.0 && ppm == 0.0 {
        raw
    } else {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "`as` saturates; a test clock"
        )]
        let offset_ns = (offset_ms * 1e6) as i64;
        Arc::new(SkewedClock::new(raw, offset_ns, ppm))
    }
}

#[cfg(test)]
pub mod test_clock {
    //! A clock advanced by hand, for simulated-time tests.
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// Manually advanced clock.
    #[derive(Default)]
    pub struct ManualClock(pub AtomicI64);

    impl ManualClock {
        pub fn advance(&self, ns: i64) {
            self.0.fetch_add(ns, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> LocalNs {
            LocalNs(self.0.load(Ordering::SeqCst))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_clock::ManualClock;
    use super::*;

    #[test]
    fn conversions_saturate_instead_of_wrapping() {
        assert_eq!(frames_to_ns(i64::MAX, 48_000), i64::MAX);
        assert_eq!(frames_to_ns(i64::MIN, 48_000), i64::MIN);
        assert_eq!(ns_to_frames(i64::MAX, u32::MAX), i64::MAX);
        assert_eq!(frames_to_ns(5, 0), 5_000_000_000);
    }

    #[test]
    fn frame_ns_round_trip() {
        for rate in [44_100u32, 48_000, 96_000] {
            for f in [0i64, 1, 7, 480, 44_099, 1_000_000, -5] {
                assert_eq!(ns_to_frames(frames_to_ns(f, rate), rate), f);
            }
        }
        assert_eq!(frames_to_ns(48_000, 48_000), 1_000_000_000);
        assert_eq!(frames_to_ns(1, 48_000), 20_833);
    }

    #[test]
    fn skewed_clock_runs_fast_and_offset() {
        let base = Arc::new(ManualClock::default());
        let skewed = SkewedClock::new(base.clone(), 3_000_000_000, 150.0);
        assert_eq!(skewed.now().0, 3_000_000_000);
        base.advance(1_000_000_000);
        // one second later the skewed clock has gained 150 µs
        assert_eq!(skewed.now().0, 3_000_000_000 + 1_000_000_000 + 150_000);
    }
}
