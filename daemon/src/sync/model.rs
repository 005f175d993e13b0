//! The speaker's model of the controller clock: `controller = local + offset(local)`, with
//! `offset(t) = offset_ref + freq * (t - t_ref)`.
//!
//! Each four-timestamp exchange gives an offset sample and a round-trip time. Queuing delay only
//! ever adds to the round trip, and it makes the offset sample wrong by up to half of what it
//! added, so the fastest exchanges are the truest: the model keeps a window of recent samples,
//! accepts only those whose round trip is close to the window's minimum, and fits offset and
//! frequency to them by least squares. No I/O and no clock reads here: callers pass timestamps.

use crate::clock::{ControllerNs, LocalNs};
use std::collections::VecDeque;

/// One completed exchange (t1, t4 on the speaker clock; t2, t3 on the controller clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub t1: LocalNs,
    pub t2: ControllerNs,
    pub t3: ControllerNs,
    pub t4: LocalNs,
}

impl Exchange {
    /// Round-trip network delay, ns (controller processing time excluded).
    pub fn rtt(&self) -> i64 {
        self.t4.since(self.t1) - self.t3.since(self.t2)
    }
    /// Offset estimate `controller - local`, ns.
    pub fn offset(&self) -> i64 {
        ((self.t2.0 - self.t1.0) + (self.t3.0 - self.t4.0)) / 2
    }
    /// Local time the offset sample refers to (midpoint of the exchange).
    pub fn mid(&self) -> LocalNs {
        LocalNs(self.t1.0 + self.t4.since(self.t1) / 2)
    }
}

/// A read-only copy of the model, cheap to pass to the playout thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSnapshot {
    pub t_ref: LocalNs,
    pub offset_ref: i64,
    /// Frequency of the controller clock relative to ours, minus one (e.g. 150e-6).
    pub freq: f64,
}

impl ClockSnapshot {
    /// Controller time corresponding to a local time.
    pub fn to_controller(&self, t: LocalNs) -> ControllerNs {
        let dt = t.since(self.t_ref);
        ControllerNs(t.0 + self.offset_ref + (dt as f64 * self.freq) as i64)
    }
    /// Local time corresponding to a controller time.
    pub fn to_local(&self, c: ControllerNs) -> LocalNs {
        // c = t + off + freq*(t - ref)  =>  t = (c - off + freq*ref) / (1 + freq)
        let guess = c.0 - self.offset_ref;
        let dt = guess - self.t_ref.0;
        LocalNs(guess - (dt as f64 * self.freq / (1.0 + self.freq)) as i64)
    }
}

/// Parameters of the model.
#[derive(Debug, Clone, Copy)]
pub struct ModelParams {
    /// Exchanges kept.
    pub window: usize,
    /// Exchanges seen before the model reports lock.
    pub lock_after: usize,
    /// Accept samples whose RTT is within `min_rtt * rtt_factor + rtt_slack_ns`.
    pub rtt_factor: f64,
    pub rtt_slack_ns: i64,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            window: 2048,
            lock_after: 6,
            rtt_factor: 1.5,
            rtt_slack_ns: 20_000,
        }
    }
}

/// The clock model.
#[derive(Debug, Clone)]
pub struct ClockModel {
    params: ModelParams,
    history: VecDeque<Exchange>,
    snapshot: Option<ClockSnapshot>,
    last_rtt: i64,
    min_rtt: i64,
    accepted: usize,
    rejected_total: u64,
}

impl ClockModel {
    pub fn new(params: ModelParams) -> Self {
        ClockModel {
            params,
            history: VecDeque::with_capacity(params.window),
            snapshot: None,
            last_rtt: 0,
            min_rtt: 0,
            accepted: 0,
            rejected_total: 0,
        }
    }

    /// Feeds one exchange. Exchanges with a negative round trip (impossible unless a clock
    /// jumped or a datagram was forged) are rejected.
    pub fn handle_exchange(&mut self, ex: Exchange) {
        let rtt = ex.rtt();
        if rtt < 0 || ex.t4 < ex.t1 {
            self.rejected_total += 1;
            return;
        }
        self.last_rtt = rtt;
        if self.history.len() == self.params.window {
            self.history.pop_front();
        }
        self.history.push_back(ex);
        self.refit();
    }

    fn refit(&mut self) {
        let mut rtts: Vec<i64> = self.history.iter().map(Exchange::rtt).collect();
        rtts.sort_unstable();
        let min_rtt = rtts.first().copied().unwrap_or(0);
        self.min_rtt = min_rtt;
        // Keep exchanges close to the fastest, and never more than the fastest tenth (at least
        // six): on a jittery path the fastest few are the ones whose two directions were both
        // quick, so their asymmetry — the offset error — is smallest.
        let tenth = rtts[(rtts.len() / 10).max(5).min(rtts.len() - 1)];
        let limit = ((min_rtt as f64 * self.params.rtt_factor) as i64 + self.params.rtt_slack_ns)
            .min(tenth.max(min_rtt));
        let good: Vec<&Exchange> = self.history.iter().filter(|e| e.rtt() <= limit).collect();
        self.accepted = good.len();
        let Some(last) = good.last() else { return };
        let t_ref = last.mid();
        // Least squares on (x = mid - t_ref in seconds, y = offset - offset_last in ns).
        let y0 = last.offset();
        let n = good.len() as f64;
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for e in &good {
            let x = e.mid().since(t_ref) as f64 * 1e-9;
            let y = (e.offset() - y0) as f64;
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        let var = sxx - sx * sx / n;
        // Frequency needs a time span; with samples close together keep the previous estimate.
        let span = good.first().map(|f| t_ref.since(f.mid())).unwrap_or(0);
        let prev_freq = self.snapshot.map(|s| s.freq).unwrap_or(0.0);
        let (slope_ns_per_s, intercept) = if good.len() >= 3 && span > 200_000_000 && var > 0.0 {
            let b = (sxy - sx * sy / n) / var;
            (b, (sy - b * sx) / n)
        } else {
            let b = prev_freq * 1e9;
            (b, (sy - b * sx) / n)
        };
        let freq = (slope_ns_per_s * 1e-9).clamp(-2e-3, 2e-3);
        self.snapshot = Some(ClockSnapshot {
            t_ref,
            offset_ref: y0 + intercept.round() as i64,
            freq,
        });
    }

    /// The current estimate, once there is one.
    pub fn snapshot(&self) -> Option<ClockSnapshot> {
        self.snapshot
    }
    /// True when enough exchanges back the estimate (and at least three pass the RTT filter).
    pub fn locked(&self) -> bool {
        self.history.len() >= self.params.lock_after && self.accepted >= 3
    }
    /// RTT of the last exchange, ns.
    pub fn last_rtt(&self) -> i64 {
        self.last_rtt
    }
    /// Smallest RTT in the window, ns: half of it bounds the offset error of the best sample.
    pub fn min_rtt(&self) -> i64 {
        self.min_rtt
    }
    /// Exchanges rejected as impossible.
    pub fn rejected(&self) -> u64 {
        self.rejected_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated pair of clocks: controller = true; speaker = true*(1+ppm) + offset.
    struct Sim {
        offset: i64,
        ppm: f64,
    }
    impl Sim {
        fn local(&self, true_ns: i64) -> LocalNs {
            LocalNs(true_ns + self.offset + (true_ns as f64 * self.ppm * 1e-6) as i64)
        }
        fn exchange(&self, t: i64, up: i64, down: i64) -> Exchange {
            Exchange {
                t1: self.local(t),
                t2: ControllerNs(t + up),
                t3: ControllerNs(t + up + 10_000),
                t4: self.local(t + up + 10_000 + down),
            }
        }
    }

    #[test]
    fn converges_on_offset_and_frequency() {
        let sim = Sim {
            offset: 3_000_000_000,
            ppm: -150.0,
        };
        let mut m = ClockModel::new(ModelParams::default());
        for i in 0..40 {
            m.handle_exchange(sim.exchange(i * 250_000_000, 40_000, 40_000));
        }
        assert!(m.locked());
        let s = m.snapshot().unwrap();
        let t = 10_000_000_000;
        let err = s.to_controller(sim.local(t)).0 - t;
        assert!(err.abs() < 2_000, "offset error {err} ns");
        // controller runs 150 ppm fast relative to this speaker
        assert!((s.freq * 1e6 - 150.0).abs() < 2.0, "freq {}", s.freq * 1e6);
        let back = s.to_local(ControllerNs(t));
        assert!((back.0 - sim.local(t).0).abs() < 2, "to_local inverse");
    }

    #[test]
    fn ignores_delayed_exchanges() {
        // Every third exchange is queued 5 ms on the way out: an average would be off by ~800 µs.
        let sim = Sim {
            offset: -2_000_000_000,
            ppm: 0.0,
        };
        let mut m = ClockModel::new(ModelParams::default());
        for i in 0..60 {
            let up = if i % 3 == 0 { 5_000_000 } else { 50_000 };
            m.handle_exchange(sim.exchange(i * 100_000_000, up, 50_000));
        }
        let s = m.snapshot().unwrap();
        let err = s.to_controller(sim.local(6_000_000_000)).0 - 6_000_000_000;
        assert!(err.abs() < 5_000, "offset error {err} ns");
    }

    #[test]
    fn rejects_impossible_exchange() {
        let mut m = ClockModel::new(ModelParams::default());
        m.handle_exchange(Exchange {
            t1: LocalNs(100),
            t2: ControllerNs(0),
            t3: ControllerNs(1_000),
            t4: LocalNs(150),
        });
        assert_eq!(m.rejected(), 1);
        assert!(m.snapshot().is_none());
    }
}
#[cfg(test)]
mod jitter_tests {
    use super::*;

    /// 2 ms ± 1 ms (uniform) each way, exchanges every 50 ms, speaker clock +3 s and -150 ppm.
    /// Returns (offset error ns, frequency error ppm) every 5 s.
    fn run(lost_every: u64) -> Vec<(i64, f64)> {
        let mut m = ClockModel::new(ModelParams::default());
        let mut seed = 99u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let ppm = -150.0;
        let local = |t: i64| LocalNs(t + 3_000_000_000 + (t as f64 * ppm * 1e-6) as i64);
        let truth = -ppm / (1.0 + ppm * 1e-6);
        let mut out = vec![];
        for i in 0..800u64 {
            let t = i as i64 * 50_000_000;
            let up = (1_000_000.0 + 2_000_000.0 * rnd()) as i64;
            let down = (1_000_000.0 + 2_000_000.0 * rnd()) as i64;
            if lost_every == 0 || i % lost_every != 0 {
                m.handle_exchange(Exchange {
                    t1: local(t),
                    t2: ControllerNs(t + up),
                    t3: ControllerNs(t + up + 10_000),
                    t4: local(t + up + 10_000 + down),
                });
            }
            if i % 100 == 99 {
                let s = m.snapshot().unwrap();
                out.push((s.to_controller(local(t)).0 - t, s.freq * 1e6 - truth));
            }
        }
        out
    }

    #[test]
    fn holds_under_uniform_jitter() {
        // An average of all exchanges would be off by up to the jitter (±1 ms); the fastest
        // exchanges of a long window keep it within 100 µs and the frequency within a few ppm.
        for (k, (off, f)) in run(0).into_iter().enumerate().skip(2) {
            assert!(
                off.abs() < 100_000,
                "after {} s: offset error {off} ns",
                5 * (k + 1)
            );
            assert!(
                f.abs() < 5.0,
                "after {} s: frequency error {f} ppm",
                5 * (k + 1)
            );
        }
    }

    #[test]
    fn holds_through_lost_exchanges() {
        // every third exchange lost
        for (k, (off, f)) in run(3).into_iter().enumerate().skip(2) {
            assert!(
                off.abs() < 150_000,
                "after {} s: offset error {off} ns",
                5 * (k + 1)
            );
            assert!(
                f.abs() < 8.0,
                "after {} s: frequency error {f} ppm",
                5 * (k + 1)
            );
        }
    }
}
