//! Tests of model.rs, and their simulated paths.

#![allow(unused_imports)]
use super::*;

#[cfg(test)]
mod basics {
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
    fn one_exchange_faster_than_the_path_does_not_unlock() {
        // The controller's send stamp t3 came 70 µs late once: that exchange's round trip
        // looks like 10 µs on an 80 µs path. The model stays locked and on time.
        let sim = Sim {
            offset: -2_000_000_000,
            ppm: 90.0,
        };
        let mut m = ClockModel::new(ModelParams::default());
        let mut t = 0;
        for i in 0..400 {
            let mut ex = sim.exchange(t, 40_000 + (i * 7_919) % 9_000, 40_000);
            if i == 300 {
                ex.t3 = ControllerNs(ex.t3.0 + 70_000);
            }
            m.handle_exchange(ex);
            assert!(i < 10 || m.locked(), "unlocked at exchange {i}");
            t += 25_000_000;
        }
        let s = m.snapshot().unwrap();
        let err = s.to_controller(sim.local(t)).0 - t;
        assert!(
            err.abs() < 10_000,
            "offset error {err} ns, min rtt {} accepted {} freq {}",
            m.min_rtt(),
            m.accepted,
            s.freq * 1e6
        );
    }

    /// A model fed 40 exchanges a second (forward delay `up(t)`, 30 µs back) until it calls the
    /// path quiet, and the time of the next exchange.
    fn quiet_model(sim: &Sim, up: impl Fn(i64) -> i64) -> (ClockModel, i64) {
        let mut m = ClockModel::new(ModelParams::default());
        let mut t = 0;
        while !m.quiet() {
            m.handle_exchange(sim.exchange(t, up(t), 30_000));
            t += 25_000_000;
            assert!(t < 20_000_000_000, "never quiet");
        }
        (m, t)
    }

    #[test]
    fn quiet_path_stays_quiet_at_the_slow_poll() {
        // 40 exchanges a second until quiet, then 2 a second (what the sync client does) for
        // three minutes: the 70 s window then holds 140, fewer than it took to become quiet.
        let sim = Sim {
            offset: 1_000_000,
            ppm: 40.0,
        };
        let (mut m, mut t) = quiet_model(&sim, |t| 30_000 + t % 7_000);
        for _ in 0..2 * 180 {
            m.handle_exchange(sim.exchange(t, 30_000 + t % 7_000, 30_000));
            t += crate::sync::QUIET_POLL_NS;
            assert!(
                m.quiet(),
                "fell back to the fast poll at {} s",
                t / 1_000_000_000
            );
        }
        // A path that turns jittery is not quiet any more (once the quiet minute has left the
        // window).
        for i in 0..2_800 {
            m.handle_exchange(sim.exchange(t, 30_000 + (i * 7_919 % 2_000) * 1_000, 30_000));
            t += 25_000_000;
        }
        assert!(!m.quiet());
    }

    #[test]
    fn a_step_on_the_quiet_path_brings_back_the_fast_poll() {
        let sim = Sim {
            offset: 1_000_000,
            ppm: 40.0,
        };
        let (mut m, mut t) = quiet_model(&sim, |_| 30_000);
        for _ in 0..20 {
            t += crate::sync::QUIET_POLL_NS;
            m.handle_exchange(sim.exchange(t, 30_000, 30_000));
        }
        assert!(m.quiet());
        // The controller's clock steps by 20 ms (a controller restarted on another host).
        let stepped = Sim {
            offset: sim.offset - 20_000_000,
            ppm: sim.ppm,
        };
        t += crate::sync::QUIET_POLL_NS;
        m.handle_exchange(stepped.exchange(t, 30_000, 30_000));
        assert!(!m.quiet(), "an impossible exchange left the slow poll on");
        // What the client then does: an exchange every 25 ms.
        for _ in 0..ModelParams::default().step_after - 1 {
            t += 25_000_000;
            m.handle_exchange(stepped.exchange(t, 30_000, 30_000));
        }
        assert_eq!(m.steps(), 1);
        assert!(!m.quiet(), "quiet on a re-learnt history of twelve");
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
/// Test support: a deterministic generator, and the exchange at true time `t` of a speaker
/// whose clock reads `local(true time)`, over a path of 2 ms ± 1 ms (uniform) each way.
#[cfg(test)]
mod jittered {
    use super::*;

    pub(super) struct Rng(pub u64);

    impl Rng {
        /// Uniform in [0, 1).
        pub(super) fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    pub(super) fn exchange(local: impl Fn(i64) -> LocalNs, t: i64, rng: &mut Rng) -> Exchange {
        let up = (1_000_000.0 + 2_000_000.0 * rng.uniform()) as i64;
        let down = (1_000_000.0 + 2_000_000.0 * rng.uniform()) as i64;
        Exchange {
            t1: local(t),
            t2: ControllerNs(t + up),
            t3: ControllerNs(t + up + 10_000),
            t4: local(t + up + 10_000 + down),
        }
    }
}

#[cfg(test)]
mod jitter_tests {
    use super::jittered::{exchange, Rng};
    use super::*;

    /// 2 ms ± 1 ms (uniform) each way, exchanges every 50 ms, speaker clock +3 s and -150 ppm.
    /// Returns (offset error ns, frequency error ppm) every 5 s.
    fn run(lost_every: u64) -> Vec<(i64, f64)> {
        let mut m = ClockModel::new(ModelParams::default());
        let mut rng = Rng(99);
        let ppm = -150.0;
        let local = |t: i64| LocalNs(t + 3_000_000_000 + (t as f64 * ppm * 1e-6) as i64);
        let truth = -ppm / (1.0 + ppm * 1e-6);
        let mut out = vec![];
        for i in 0..800u64 {
            let t = i as i64 * 50_000_000;
            let ex = exchange(local, t, &mut rng);
            if lost_every == 0 || i % lost_every != 0 {
                m.handle_exchange(ex);
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
        // exchanges of a long window keep it within 100 µs and the frequency within a few ppm,
        // and once the delay envelopes take over (after 8 s) within 20 µs.
        for (k, (off, f)) in run(0).into_iter().enumerate().skip(2) {
            assert!(
                off.abs() < if k >= 3 { 20_000 } else { 100_000 },
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

#[cfg(test)]
mod step_tests {
    use super::jittered::{exchange, Rng};
    use super::*;

    /// A speaker clock with piecewise behaviour: the controller-minus-local offset as a function
    /// of true time is supplied by the test. Exchanges every 25 ms, 2 ms ± 1 ms each way.
    fn run(
        seconds: i64,
        offset_at: impl Fn(i64) -> f64,
        mut check: impl FnMut(i64, &ClockModel, i64, f64),
    ) {
        let mut m = ClockModel::new(ModelParams::default());
        let mut rng = Rng(7);
        // local = true - offset(true)
        let local = |t: i64| LocalNs(t - offset_at(t).round() as i64);
        for i in 0..seconds * 40 {
            let t = i * 25_000_000;
            m.handle_exchange(exchange(local, t, &mut rng));
            if i % 40 == 39 {
                let s = m.snapshot().unwrap();
                let err = s.to_controller(local(t)).0 - t;
                // true frequency of controller relative to local: d(offset)/d(local)
                let f = (offset_at(t + 1_000_000_000) - offset_at(t)) / 1e9;
                check(t / 1_000_000_000, &m, err, s.freq - f);
            }
        }
    }

    #[test]
    fn offset_step_is_detected_and_relearned() {
        // The controller's clock steps by 20 ms at 30 s (a controller restart on another host
        // would look like this); the model notices within a second and re-learns within 6 s.
        let mut steps_seen = 0;
        run(
            60,
            |t| 3e9 + 80e-6 * t as f64 + if t >= 30_000_000_000 { 20e6 } else { 0.0 },
            |sec, m, err, _| {
                steps_seen = m.steps();
                if !(30..36).contains(&sec) && sec > 5 {
                    assert!(err.abs() < 150_000, "at {sec} s: offset error {err} ns");
                }
            },
        );
        assert_eq!(steps_seen, 1);
    }

    #[test]
    fn frequency_step_is_followed() {
        // The speaker crystal warms up: its frequency error moves by 3 ppm at 40 s. The window
        // lags, but the offset error stays within 100 µs and the frequency converges again.
        let ppm = |t: i64| if t < 40_000_000_000 { 50e-6 } else { 53e-6 };
        let offset = |t: i64| {
            let t40 = 40_000_000_000i64;
            if t < t40 {
                1e9 + ppm(t) * t as f64
            } else {
                1e9 + 50e-6 * t40 as f64 + ppm(t) * (t - t40) as f64
            }
        };
        run(140, offset, |sec, m, err, ferr| {
            if sec > 10 {
                assert!(err.abs() < 100_000, "at {sec} s: offset error {err} ns");
                assert_eq!(m.steps(), 0, "a frequency step is not a clock step");
            }
            if sec > 110 {
                assert!(ferr.abs() < 0.5e-6, "at {sec} s: frequency error {ferr}");
                assert!(err.abs() < 20_000, "at {sec} s: offset error {err} ns");
            }
        });
    }
}
