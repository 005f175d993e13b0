//! The device clock's tests, in simulated time.
use super::*;

/// A device consuming `rate_hz` (true) frames per second of local time from `start`, whose
/// position moves `step` frames at a time.
struct Dev {
    hz: f64,
    step: i64,
    start: f64,
    /// Stamps at the moment the position moved (true) or at the call.
    exact: bool,
    /// Each edge comes this late (ns; a plugin's callback): the least, and the most at
    /// random, with one edge in 50 late by 2 ms (a loaded machine).
    edge_late: (f64, f64),
}

impl Dev {
    fn position(&self, t: f64) -> i64 {
        let played = ((t - self.start) * self.hz * 1e-9).max(0.0);
        let p = (played / self.step as f64).floor() as i64 * self.step;
        if p > 0 && t < self.when(p) + self.late(p) {
            p - self.step
        } else {
            p
        }
    }
    fn late(&self, p: i64) -> f64 {
        let mut r = Rng(p as u64 ^ 0x9e37_79b9_7f4a_7c15);
        r.uniform();
        if self.edge_late.1 > 0.0 && r.uniform() < 0.02 {
            return 2e6;
        }
        self.edge_late.0 + r.uniform() * (self.edge_late.1 - self.edge_late.0)
    }
    fn when(&self, frame: i64) -> f64 {
        self.start + frame as f64 * 1e9 / self.hz
    }
    fn read(&self, t: f64) -> Reading {
        let p = self.position(t);
        let stamp = if self.exact {
            self.when(p)
        } else {
            t + 1_000.0
        };
        Reading {
            before: LocalNs(t as i64),
            stamp: LocalNs(stamp as i64),
            after: LocalNs(t as i64 + 2_000),
            position: p,
        }
    }
}

/// A reading stamped at the call: the clock read `before`, the position read at `read`, the
/// call returning `took` ns later.
fn at_call(before: f64, read: f64, took: f64, position: i64) -> Reading {
    Reading {
        before: LocalNs(before as i64),
        stamp: LocalNs(read as i64),
        after: LocalNs((read + took) as i64),
        position,
    }
}

struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Wakes every 80 ms (a lattice: phase-locked to a device whose step divides it), or at the
/// model's probe time before that, late by `late_us` at random; reads the device 8 times
/// 30 µs apart (a refill). Returns the worst |error| of the predicted heard time, µs, in
/// each second.
fn run(dev: &mut Dev, secs: usize, late_us: (f64, f64), probe: bool) -> (DeviceClock, Vec<f64>) {
    let mut m = DeviceClock::new(48_000);
    let mut rng = Rng(7);
    let mut worst = vec![0.0f64; secs];
    let wakes = secs * 1000 / 80;
    for w in 1..wakes {
        let natural = dev.start + w as f64 * 80e6;
        let at = if probe {
            m.probe(LocalNs(natural as i64), LocalNs(0)).0 as f64
        } else {
            natural
        };
        let late = (late_us.0 + rng.uniform() * (late_us.1 - late_us.0)) * 1e3;
        for i in 0..8 {
            let t = at.max(natural - 30e6) + late + i as f64 * 30e3;
            m.handle_reading(dev.read(t));
            let frame = dev.position(t) + 4_800;
            let err = (m.heard(frame).unwrap().0 as f64 - dev.when(frame)) / 1e3;
            let s = ((t - dev.start) / 1e9) as usize;
            if s < secs {
                worst[s] = worst[s].max(err.abs());
            }
        }
    }
    (m, worst)
}

fn dev(ppm: f64, step: i64) -> Dev {
    Dev {
        hz: 48_000.0 * (1.0 + ppm * 1e-6),
        step,
        start: 3e9,
        exact: false,
        edge_late: (0.0, 0.0),
    }
}

#[test]
fn a_coarse_pointer_stamped_at_the_call_is_found_to_a_few_microseconds() {
    // Steps of 10 ms (the Pi's firmware audio), 256 and 1024 frames (ALSA plugins), wake-ups
    // on an 80 ms lattice that the 10 ms and 256-frame steps divide: without probing every
    // reading would see the same phase of the sawtooth.
    for (ppm, step) in [(450.0, 480), (0.0, 256), (-500.0, 1024), (120.0, 48)] {
        let (m, worst) = run(&mut dev(ppm, step), 20, (30.0, 120.0), true);
        let st = m.status();
        assert_eq!(
            st.pointer_step_frames, step as u64,
            "{ppm} ppm, step {step}"
        );
        assert_eq!(st.stamps, Stamps::AtCall);
        assert_eq!(st.restarts, 0);
        assert!((st.rate_ppm - ppm).abs() < 3.0, "{ppm} ppm: {st:?}");
        assert!(worst[2] < 100.0, "{ppm} ppm, step {step}: {worst:?}");
        assert!(
            worst[5..].iter().all(|&e| e < 10.0),
            "{ppm} ppm, step {step}: {worst:?}"
        );
    }
}

#[test]
fn wake_ups_jittered_by_milliseconds_still_converge() {
    // Within 50 µs after 10 s (40 µs measured; 20 µs before the probes explored beyond
    // the bracket, which the next test needs).
    let (_, worst) = run(&mut dev(-300.0, 480), 30, (0.0, 3_000.0), true);
    assert!(worst[10..].iter().all(|&e| e < 50.0), "{worst:?}");
}

#[test]
fn a_bracket_that_lies_late_is_found_out() {
    // The sim's jittered wake-ups: the first reading of each wake-up up to 300 µs after
    // the clock read before it, then a reading every 80 µs. Without probes beyond the
    // bracket the model settled 33 ppm off at 530 ppm, its error growing without end.
    for ppm in [-150.0, 530.0] {
        let d = dev(ppm, 256);
        let mut m = DeviceClock::new(48_000);
        let mut rng = Rng(12345);
        let mut worst = [0.0f64; 30];
        for w in 1..(30 * 1000 / 80) {
            let natural = d.start + 5e6 + w as f64 * 80e6;
            let mut t = m.probe(LocalNs(natural as i64), LocalNs(0)).0 as f64;
            for i in 0..16 {
                let late = if i == 0 { rng.uniform() * 300e3 } else { 0.0 };
                let read = t + late + 20e3;
                let p = d.position(read);
                m.handle_reading(at_call(t, read, 1_000.0, p));
                let err = (m.heard(p + 4_800).unwrap().0 as f64 - d.when(p + 4_800)) / 1e3;
                let s = ((read - d.start) / 1e9) as usize;
                if s < 30 {
                    worst[s] = worst[s].max(err.abs());
                }
                t = read + 60e3;
            }
        }
        let st = m.status();
        assert!((st.rate_ppm - ppm).abs() < 3.0, "{ppm} ppm: {st:?}");
        assert!(
            worst[10..].iter().all(|&e| e < 60.0),
            "{ppm} ppm: {worst:?}"
        );
    }
}

#[test]
fn late_edges_and_late_wake_ups_leave_the_rate_and_the_earliest_edges() {
    // A plugin on a loaded machine: each edge 20-300 µs late, one in 50 by 2 ms; wake-ups
    // up to 3 ms late. The model finds the rate and stays near the earliest edges (20 µs
    // late, as for every speaker on that device): within 200 µs of them after 10 s, what
    // it holds today (35-150 µs measured), not yet the goal.
    for (ppm, step) in [(-200.0, 256), (150.0, 1024)] {
        let mut d = dev(ppm, step);
        d.edge_late = (20e3, 300e3);
        let (m, worst) = run(&mut d, 30, (0.0, 3_000.0), true);
        let st = m.status();
        assert_eq!(st.restarts, 0, "{st:?}");
        assert!((st.rate_ppm - ppm).abs() < 5.0, "{ppm} ppm: {st:?}");
        let off: Vec<f64> = worst[10..].iter().map(|e| e.abs() - 20.0).collect();
        assert!(off.iter().all(|&e| e.abs() < 200.0), "{ppm} ppm: {worst:?}");
    }
}

#[test]
fn without_probing_the_phase_locked_readings_leave_the_error_a_step_wide() {
    // The reason for probing: the same device and lattice, readings where the caller would
    // have woken anyway, stay off by a good part of the 10 ms step.
    let (_, worst) = run(&mut dev(0.0, 480), 20, (30.0, 60.0), false);
    assert!(worst[10..].iter().all(|&e| e > 500.0), "{worst:?}");
}

#[test]
fn exact_pointers_and_exact_stamps_need_no_probing() {
    let (m, worst) = run(&mut dev(200.0, 1), 10, (30.0, 120.0), true);
    assert_eq!(m.status().pointer_step_frames, 1);
    assert!(worst[3..].iter().all(|&e| e < 25.0), "{worst:?}");
    let mut d = dev(-450.0, 480);
    d.exact = true;
    let (m, worst) = run(&mut d, 10, (30.0, 120.0), false);
    assert_eq!(m.status().stamps, Stamps::AtPointerUpdate);
    assert!(worst[2..].iter().all(|&e| e < 5.0), "{worst:?}");
}

#[test]
fn a_device_that_stalls_is_learned_again() {
    let mut d = dev(100.0, 256);
    let (mut m, _) = run(&mut d, 5, (30.0, 120.0), true);
    // The device loses 50 ms (an underrun it did not report): its position is 50 ms behind
    // the model's line from now on.
    let t = d.start + 5.2e9;
    d.start += 50e6;
    for k in 0..200 {
        let at = m.probe(LocalNs((t + k as f64 * 80e6) as i64), LocalNs(0)).0 as f64 + 60e3;
        for i in 0..8 {
            m.handle_reading(d.read(at + i as f64 * 30e3));
        }
    }
    assert_eq!(m.status().restarts, 1);
    let t = t + 200.0 * 80e6;
    let frame = d.position(t) + 4_800;
    let err = (m.heard(frame).unwrap().0 as f64 - d.when(frame)) / 1e3;
    assert!(err.abs() < 10.0, "{err} µs");
}

#[test]
fn a_timeline_that_shifts_by_less_than_a_step_is_learned_again() {
    // Sharp edges whose timeline moved by 3.9 ms, read as the playout thread reads: the model
    // follows within a second instead of bending its rate for a minute.
    let mut d = dev(-150.0, 256);
    let mut m = DeviceClock::new(48_000);
    played(&mut m, &d, d.start, 20.0);
    d.start += 3.9e6;
    let (worst, _) = played(&mut m, &d, d.start + 20e9, 5.0);
    let st = m.status();
    assert_eq!(st.restarts, 1, "{st:?}");
    assert!((st.rate_ppm + 150.0).abs() < 3.0, "{st:?}");
    assert!(worst[2..].iter().all(|&e| e < 20.0), "{worst:?}");
}

#[test]
fn jittery_edges_are_told_from_sharp_ones_and_the_line_under_them_is_followed() {
    // A plugin's callback: each edge 0-150 µs late, one in 50 by 2 ms. The model says the
    // edges jitter, and its estimate is the line under their lower half (about 40 µs above
    // the earliest), steady within a few µs, where the bracket moved by tens.
    let mut d = dev(120.0, 256);
    d.edge_late = (0.0, 150e3);
    let (m, worst) = run(&mut d, 40, (30.0, 120.0), true);
    let st = m.status();
    let jitter = st.edge_jitter_us.expect("jittery edges");
    assert!((10.0..60.0).contains(&jitter), "{st:?}");
    assert!((st.rate_ppm - 120.0).abs() < 3.0, "{st:?}");
    let late = &worst[20..];
    let (lo, hi) = late
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), &e| (a.min(e), b.max(e)));
    assert!(hi < 70.0 && hi - lo < 20.0, "{worst:?}");
    // Sharp edges keep the bracket.
    let (m, _) = run(&mut dev(120.0, 256), 40, (30.0, 120.0), true);
    assert_eq!(m.status().edge_jitter_us, None);
}

/// Reads a cold device as the playout thread does: a wake-up every 20 ms or at the model's
/// probe, late by up to `jitter_us` (inside the status call when `in_call`: the clock read
/// before it is not late; otherwise the thread woke late), then, after a probe, again every
/// 5 µs until the position moves (at most 0.4 ms). Returns when the model first said it was
/// settled (s) and the worst |error| of the heard time of a frame 100 ms ahead after that, µs.
fn cold_start(d: &Dev, jitter_us: f64, in_call: bool, secs: f64) -> (f64, f64) {
    let mut m = DeviceClock::new(48_000);
    let mut rng = Rng(7);
    let (mut settled, mut worst) = (None, 0.0f64);
    for w in 1..(secs * 50.0) as usize {
        let natural = d.start + w as f64 * 20e6;
        let at = m
            .probe(LocalNs(natural as i64), LocalNs((natural - 10e6) as i64))
            .0 as f64;
        let late = rng.uniform() * jitter_us * 1e3;
        let before = if in_call { at } else { at + late - 1_000.0 };
        let (mut before, mut t, mut first) = (before, at + late, None);
        loop {
            let p = d.position(t);
            m.handle_reading(at_call(before, t, 2_000.0, p));
            if settled.is_none() && m.settled() {
                settled = Some((t - d.start) / 1e9);
            }
            if settled.is_some() {
                let err = m.heard(p + 4_800).unwrap().0 as f64 - d.when(p + 4_800);
                worst = worst.max(err.abs() / 1e3);
            }
            if at == natural || *first.get_or_insert(p) != p || t > at + late + 400e3 {
                break;
            }
            (before, t) = (t + 3_000.0, t + 5_000.0);
        }
    }
    (settled.unwrap_or(f64::INFINITY), worst)
}

#[test]
fn a_cold_device_settles_within_one_and_a_half_seconds_and_is_right_from_then() {
    // Until the rate is measured a frame 100 ms ahead is placed off by the rate error times
    // 100 ms (53 us at 530 ppm): the stream starts only once the model says it is settled.
    // The edges seen by the watch after each probe give the rate within half a second,
    // where the hull of upper bounds needed 1.5 s and more (settled at 1.0-1.1 s, within
    // 13-19 us after, measured).
    for (ppm, step, jitter) in [
        (530.0, 480, 100.0),
        (-350.0, 480, 100.0),
        (120.0, 1024, 100.0),
    ] {
        let (at, worst) = cold_start(&dev(ppm, step), jitter, true, 5.0);
        assert!(at < 1.5, "{ppm} ppm, step {step}: settled at {at} s");
        assert!(
            worst < 25.0,
            "{ppm} ppm, step {step}: {worst} us after {at} s"
        );
    }
}

#[test]
fn wake_ups_late_by_up_to_three_milliseconds_settle_within_two_seconds() {
    // A loaded machine's playout thread wakes late by 0-3 ms, whatever the probe asked for:
    // at every pointer step the model settles within 2 s and is right from then (measured:
    // settled at 0.9-1.6 s, within 1-12 us after).
    for (ppm, step) in [(-350.0, 48), (530.0, 256), (-350.0, 480), (120.0, 1024)] {
        let (at, worst) = cold_start(&dev(ppm, step), 3_000.0, false, 10.0);
        assert!(at < 2.0, "{ppm} ppm, step {step}: settled at {at} s");
        assert!(
            worst < 25.0,
            "{ppm} ppm, step {step}: {worst} us after {at} s"
        );
    }
}

#[test]
fn edges_that_cross_the_bracket_are_called_jittery_within_seconds() {
    // One edge in four on time (the reading before it 40 µs early, the one after 30 µs
    // late); the others late, with the reading before them 38 µs after the cycle began and the
    // one after at 60, 90 or 120 µs (a JACK rig: the graph holds the playout thread's CPU).
    // The floor's line under the lower half of the upper bounds lies near 45 µs: no reading
    // before an edge lies 5 µs above it, so the floor never calls these edges jittery (one of
    // two speakers on a JACK rig took 57 s). Against the earliest edges they cross the bracket
    // by 8 µs, after one that did not, and that says it within seconds. Otherwise one speaker
    // follows the line and the other the bracket (43 µs apart on that rig).
    let cycle = 1024.0 * 1e9 / 48_000.0;
    let at = |t: f64, k: i64| Reading {
        before: LocalNs(t as i64),
        stamp: LocalNs(t as i64 + 100),
        after: LocalNs(t as i64 + 200),
        position: k * 1024,
    };
    for late in [true, false] {
        let mut m = DeviceClock::new(48_000);
        for k in 1..(6.0e9 / cycle) as i64 {
            let c = 1e9 + k as f64 * cycle;
            let (old, new) = match k % 4 {
                _ if !late => (-40e3, 30e3),
                0 => (-40e3, 30e3),
                n => (38e3, 30e3 + 30e3 * n as f64),
            };
            m.handle_reading(at(c - cycle / 2.0, k - 1));
            m.handle_reading(at(c + old, k - 1));
            m.handle_reading(at(c + new, k));
        }
        let st = m.status();
        assert_eq!(st.edge_jitter_us.is_some(), late, "{st:?}");
    }
}

#[test]
fn a_model_that_keeps_restarting_settles_after_two_seconds_of_readings() {
    // Readings every 5 ms whose timeline moves by 30 ms every 70 ms (a JACK server on a host
    // that stalls): the model restarts again and again and never fits a rate. Playing by what
    // it knows beats silence: after 2 s of readings it counts as settled.
    let mut m = DeviceClock::new(48_000);
    let mut shift = 0.0;
    let mut settled_at = None;
    for k in 0..600 {
        let t = 1e9 + k as f64 * 5e6;
        if k % 14 == 13 {
            shift += 30e6;
        }
        let played = ((t - 1e9 - shift).max(0.0) * 48e-6) as i64 / 256 * 256;
        m.handle_reading(at_call(t, t + 1_000.0, 2_000.0, played));
        if settled_at.is_none() && m.settled() {
            settled_at = Some(t - 1e9);
        }
    }
    let st = m.status();
    assert!(st.restarts > 10, "{st:?}");
    // A storm of restarts: no urgent probes nor long watches (each a wake-up a step and a busy
    // read up to a step long, on a real-time thread).
    assert!(!m.urgent() && m.watch_ns() == EDGE_WATCH_NS, "{st:?}");
    let at = settled_at.expect("settled");
    assert!((2.0e9..2.1e9).contains(&at), "settled after {} s", at / 1e9);
    // A device opened again (an xrun recovered) is read for two seconds again.
    m.reset();
    m.handle_reading(at_call(5e9, 5e9 + 1_000.0, 2_000.0, 0));
    assert!(!m.settled());
}

/// Reads `d` as the playout thread does, from `from` for `secs`: a wake-up 50 ms after the
/// last one or at the model's probe (late by 30-120 µs), after a probe a reading every 5 µs
/// until the position moves (at most 0.4 ms), then five readings 150 µs apart (a refill's
/// writes). Returns the worst |error| of the heard time of a frame 100 ms ahead in each 0.5 s
/// (µs), and the wake-ups.
fn played(m: &mut DeviceClock, d: &Dev, from: f64, secs: f64) -> (Vec<f64>, usize) {
    let mut rng = Rng(11);
    let mut worst = vec![0.0f64; (secs * 2.0).ceil() as usize];
    let mut read = |m: &mut DeviceClock, t: f64| {
        let p = d.position(t);
        m.handle_reading(at_call(t - 1_000.0, t, 2_000.0, p));
        let err = m
            .heard(p + 4_800)
            .map_or(f64::INFINITY, |h| h.0 as f64 - d.when(p + 4_800));
        let k = (((t - from) / 0.5e9) as usize).min(worst.len() - 1);
        worst[k] = worst[k].max(err.abs() / 1e3);
        p
    };
    let (mut woke, mut wakes) = (from, 0);
    while woke < from + secs * 1e9 - 50e6 {
        let natural = woke + 50e6;
        let probe = m.probe(LocalNs(natural as i64), LocalNs((natural - 25e6) as i64));
        let at = probe.0 as f64 + (30.0 + rng.uniform() * 90.0) * 1e3;
        (woke, wakes) = (at, wakes + 1);
        let first = read(m, at);
        let mut t = at;
        let watch = m.watch_ns() as f64;
        while probe.0 as f64 != natural && t < at + watch {
            t += 5e3;
            if read(m, t) != first {
                break;
            }
        }
        for i in 1..=5 {
            read(m, t + i as f64 * 150e3);
        }
    }
    (worst, wakes)
}

#[test]
fn a_jittery_timeline_that_moves_by_less_than_a_step_is_followed_within_a_second() {
    // A JACK server's cycle came 3.9 ms late and its whole timeline moved with it. The
    // playout thread watches each edge for 0.4 ms after a probe, so the later edges show as
    // watches that end before their edge, never as a contradiction a step wide; followed by
    // the line alone, one speaker took seconds at the servo's rail and the pair parted by
    // milliseconds. Edges seen late by more than 0.3 ms, four in a row, restart the model; the
    // rate is kept over the restart (the first second's bounds alone are tens of ppm off).
    let mut d = dev(-150.0, 256);
    d.edge_late = (0.0, 150e3);
    let mut m = DeviceClock::new(48_000);
    let (heights, quiet) = played(&mut m, &d, d.start, 20.0);
    let before = m.status();
    assert!(
        before.edge_jitter_us.is_some() && before.restarts == 0,
        "{before:?}"
    );
    d.start += 3.9e6;
    let (worst, wakes) = played(&mut m, &d, d.start + 20e9, 6.0);
    let st = m.status();
    assert_eq!(st.restarts, 1, "{st:?} {worst:?}");
    // The rate kept over the restart (the floor's line, young again, may be a few ppm off).
    assert!(
        (m.nominal / m.rate - 1.0 + 150e-6).abs() < 3e-6,
        "{}",
        m.rate
    );
    // Within 46 µs from 0.5 s after the move (measured; the line under these edges lies
    // about 45 µs above the earliest); the model before took 1.5 s, at up to 10.5 ms. The
    // late edge's urgent probes cost a few wake-ups more, no more.
    assert!(worst[1..].iter().all(|&e| e < 60.0), "{worst:?}");
    // And from a second after it the estimate lies where it lay before (the line under the
    // edges, carried over the move), not on the bracket and then on a young line: before, it
    // went from 45 µs above the edges to 17 and back to 46 within 2 s, and on to 25.
    let height = heights[heights.len() - 4..].iter().sum::<f64>() / 4.0;
    assert!(
        worst[2..].iter().all(|&e| (e - height).abs() < 10.0),
        "{height:.1} µs before: {worst:.1?}"
    );
    assert!(
        wakes < quiet * 6 / 20 + 20,
        "{wakes} wake-ups in 6 s, {quiet} in 20 s"
    );
}

#[test]
fn a_carried_floor_whose_edges_no_watch_sees_closely_is_started_again() {
    // A device whose calls are slow: no edge after the restart is seen within 20 µs, and the
    // kept floor would wait for ever, the estimate on the bracket. After four times the bounds
    // it needs it lets the old floor go, and the floor starts again as it did before the carry.
    let mut d = dev(-150.0, 256);
    d.edge_late = (0.0, 150e3);
    let mut m = DeviceClock::new(48_000);
    played(&mut m, &d, d.start, 20.0);
    assert!(m.jittery_floor().is_some());
    m.carried = Some(moves::Carried::new(0.0, 0.0));
    let (p, t) = (m.p_ref, m.last_t);
    for k in 0..4 * moves::CARRY_BOUNDS as i64 {
        m.carry_floor(
            p + 256 * k,
            t + 5.3e6 * k as f64,
            t + 5.3e6 * k as f64 - 100e3,
        );
        assert!(m.carried.is_some());
    }
    m.carry_floor(p + 256 * 99, t + 6e8, t + 6e8 - 100e3);
    assert!(m.carried.is_none() && m.floor.line().is_none());
}

/// Two speakers' models of one device with jittery edges (the same edges), each woken on its
/// own 80 ms lattice, late by its own 30-120 µs: per second of `secs`, the largest difference
/// between where the two put the same frame (µs).
fn two_on_one(d: &Dev, secs: usize) -> Vec<f64> {
    let mut m = [DeviceClock::new(48_000), DeviceClock::new(48_000)];
    let mut rng = [Rng(7), Rng(1234)];
    let mut apart = vec![0.0f64; secs];
    for w in 1..secs * 1000 / 80 {
        for k in 0..2 {
            let natural = d.start + w as f64 * 80e6 + k as f64 * 23e6;
            let at = m[k].probe(LocalNs(natural as i64), LocalNs(0)).0 as f64;
            let late = (30.0 + rng[k].uniform() * 90.0) * 1e3;
            for i in 0..8 {
                m[k].handle_reading(d.read(at.max(natural - 30e6) + late + i as f64 * 30e3));
            }
        }
        let t = d.start + w as f64 * 80e6;
        let frame = d.position(t) + 4_800;
        if let (Some(a), Some(b)) = (m[0].heard(frame), m[1].heard(frame)) {
            let s = ((t - d.start) / 1e9) as usize;
            apart[s] = apart[s].max((a.0 - b.0).abs() as f64 / 1e3);
        }
    }
    apart
}

#[test]
fn two_speakers_on_one_jittery_device_agree_from_their_first_seconds() {
    // A plugin's callback, each edge 0-150 µs late: the two models must not part while they
    // learn (the rate of three edges of a phase track, or a bracket lifted to a line carried
    // at a rate 229 ppm off, put one 200-1300 µs off for its first 7 s), nor when they take
    // the line under the edges.
    for ppm in [120.0, -200.0] {
        let mut d = dev(ppm, 256);
        d.edge_late = (0.0, 150e3);
        let apart = two_on_one(&d, 20);
        assert!(
            apart[3..].iter().all(|&e| e < 100.0),
            "{ppm} ppm: {apart:.0?}"
        );
    }
}
