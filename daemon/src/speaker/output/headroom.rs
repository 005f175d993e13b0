//! How much a device needs queued (pure logic): learnt from its status, for the refill.
//!
//! A sound server's ALSA plugin takes audio from its ring a graph cycle at a time: PipeWire's
//! drops the ring's fill by a whole quantum (1024 frames, 21 ms, by default) at once, JACK's
//! by a period, and the delay it reports counts a quantum more that has already left the ring
//! for the graph. Measured on PipeWire 0.3.65 at quantum 1024, read every 0.1 ms: the fill
//! went 4800, 3776, 2752 a cycle apart and the delay was the fill plus 1017 right after each
//! cycle. A refill timed by the delay alone (at 20 ms left) found the ring empty at the next
//! cycle: the plugin reported an xrun, 12-18 per speaker in the first ten seconds, and the
//! timeline re-anchored by a quantum. So the device needs, beyond the ring's empty point, the
//! largest bite it takes (two readings close together see it whole) and the largest part of
//! its delay outside the ring.

/// Two readings at most this far apart see a bite whole, not a bite and what played since.
const CLOSE_NS: i64 = 2_000_000;

/// The device's bite and what of its delay is out of the ring, learnt as it plays.
#[derive(Debug, Default, Clone, Copy)]
pub struct Headroom {
    /// (frames out of the ring, local ns) at the last reading.
    last: Option<(i64, i64)>,
    chunk: i64,
    in_flight: i64,
}

impl Headroom {
    /// One reading: `consumed` frames have left the ring (written less its fill) at `at_ns`,
    /// and `in_flight` of the reported delay is outside it (delay less fill). Neither counts
    /// beyond `cap` (a glitch must not pin the refill to the whole buffer).
    pub fn note(&mut self, consumed: i64, at_ns: i64, in_flight: i64, cap: i64) {
        if let Some((c0, t0)) = self.last {
            let bite = consumed - c0;
            if at_ns - t0 <= CLOSE_NS && bite > self.chunk {
                self.chunk = bite.min(cap);
            }
        }
        self.last = Some((consumed, at_ns));
        self.in_flight = self.in_flight.max(in_flight.clamp(0, cap));
    }

    /// The ring was reset (an xrun recovered): the next reading starts a new count.
    pub fn restart(&mut self) {
        self.last = None;
    }

    /// Frames the device needs queued (by its delay) for its next bite to find them.
    pub fn frames(&self) -> i64 {
        self.chunk + self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graph_that_takes_a_quantum_at_a_time_needs_it_and_what_is_in_flight() {
        // PipeWire at quantum 1024: a cycle every 21.33 ms takes 1024 frames from the ring;
        // the delay is the fill plus what of the last quantum has not played (interpolated).
        let mut h = Headroom::default();
        let mut written = 4800i64;
        for k in 0..2000i64 {
            let t = k * 100_000; // a reading every 0.1 ms
            let cycle = t / 21_333_333;
            let consumed = cycle * 1024;
            let mut fill = written - consumed;
            if fill < 2752 {
                written += 2048;
                fill += 2048;
            }
            let into = (t % 21_333_333) as f64 / 21_333_333.0;
            let delay = fill + ((1.0 - into) * 1017.0) as i64;
            h.note(written - fill, t, delay - fill, 2400);
        }
        assert_eq!(h.chunk, 1024);
        assert!((1000..=1017).contains(&h.in_flight), "{h:?}");
        assert!(h.frames() >= 2024);
    }

    #[test]
    fn a_device_that_plays_smoothly_needs_little_and_far_readings_teach_nothing() {
        let mut h = Headroom::default();
        // A hardware pointer read every 10 ms: each reading finds 480 frames more gone, but
        // not in one bite.
        for k in 0..100 {
            h.note(k * 480, k * 10_000_000, 3, 2400);
        }
        assert_eq!(h.frames(), 3);
        // Close readings of a pointer that moves 48 frames at a time.
        for k in 0..100 {
            h.note(48_000 + k * 48, 1_000_000_000 + k * 1_000_000, 0, 2400);
        }
        assert_eq!(h.frames(), 48 + 3);
        // A reset ring (after an xrun) is no bite, and nothing counts beyond the cap.
        h.restart();
        h.note(0, 2_000_000_000, 10_000, 2400);
        assert_eq!(h.frames(), 48 + 2400);
    }
}
