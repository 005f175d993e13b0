//! The playout timeline in simulated time.

use super::*;

const RATE: u32 = 48_000;
const PERIOD: usize = 480;
const MS: i64 = 1_000_000;

fn timeline() -> Timeline {
    Timeline::new(RATE, PERIOD, 4_800)
}

/// A device with nothing queued, a synchronised clock, a stream 150 ms ahead and its next
/// frames here, not yet placed.
fn view(heard_ns: i64) -> View {
    View {
        queued: Frames(0),
        heard: Some(ControllerNs(heard_ns)),
        grid: Some(ControllerNs(heard_ns)),
        lead: Some(Nanos(150 * MS)),
        extra: Nanos(0),
        anchor: None,
        read_position: 0.0,
        ready: true,
        repairing: false,
        flowing: true,
        unsettled: false,
        relearning: false,
        dac_ratio: None,
        next_due: None,
        playing: true,
    }
}

fn period(plan: Plan) -> Period {
    match plan {
        Plan::Write(p) => p,
        other => panic!("expected a period, got {other:?}"),
    }
}

#[test]
fn a_full_device_sleeps_until_the_low_water_mark() {
    let mut t = timeline();
    assert_eq!(t.low_water(), Frames(960));
    // Filled to the latency less the room a repair needs: 150 - 60 ms = 4320 frames; refilled
    // when half of that is left, in whole periods (1920 frames, more than the 960 of the mark).
    let v = View {
        queued: Frames(4_000),
        ..view(0)
    };
    assert_eq!(t.plan(&v), Plan::Sleep(Nanos(43_333_333)));
    // One period short of that: a period is written.
    let v = View {
        queued: Frames(3_800),
        ..view(0)
    };
    assert!(matches!(t.plan(&v), Plan::Write(_)));
    // Without a stream the whole buffer is filled.
    let v = View {
        queued: Frames(4_000),
        lead: None,
        ..view(0)
    };
    assert!(matches!(t.plan(&v), Plan::Write(_)));
}

#[test]
fn late_audio_is_waited_for_while_the_device_holds_enough() {
    let mut t = timeline();
    let late = View {
        queued: Frames(3_360),
        anchor: Some(ControllerNs(0)),
        ready: false,
        ..view(0)
    };
    assert_eq!(t.plan(&late), Plan::Sleep(Nanos(20 * MS)));
    let repairing = View {
        repairing: true,
        ..late
    };
    assert_eq!(t.plan(&repairing), Plan::Sleep(Nanos(5 * MS)));
    // At the low-water mark it is written (concealed) rather than let the device run dry.
    let low = View {
        queued: Frames(900),
        ..late
    };
    assert!(matches!(t.plan(&low), Plan::Write(_)));
    // A stream that stopped coming is not waited for.
    let stopped = View {
        flowing: false,
        ..late
    };
    assert!(matches!(t.plan(&stopped), Plan::Write(_)));
}

#[test]
fn the_stream_is_placed_on_its_grid_once_the_device_has_settled() {
    let mut t = timeline();
    let unsettled = View {
        unsettled: true,
        ..view(5 * MS)
    };
    assert_eq!(t.plan(&unsettled), Plan::Silence);
    let first = View {
        grid: Some(ControllerNs(5 * MS + 7_000)),
        dac_ratio: Some(1.0 + 300e-6),
        ..view(5 * MS)
    };
    let p = period(t.plan(&first));
    assert_eq!(p.anchor, Some(ControllerNs(5 * MS + 7_000)));
    assert_eq!((p.fade, p.step), (Fade::In, 1.0));
    t.wrote();
    let next = View {
        anchor: Some(ControllerNs(5 * MS + 7_000)),
        read_position: 480.0,
        ..view(15 * MS + 7_000)
    };
    let p = period(t.plan(&next));
    assert_eq!((p.anchor, p.fade, p.resync), (None, Fade::None, None));
    assert_eq!(p.error_ns, Some(0.0));
    // The servo started at the DAC's measured rate: no error yet, and already that step.
    assert!((p.step - (1.0 + 300e-6)).abs() < 1e-9, "{}", p.step);
    // No clock: the stream is taken off the timeline.
    let p = period(t.plan(&View {
        heard: None,
        ..next
    }));
    assert!(p.unplace);
}

#[test]
fn an_error_beyond_the_threshold_fades_out_then_jumps_and_fades_in() {
    let mut t = timeline();
    let placed = View {
        anchor: Some(ControllerNs(0)),
        ..view(5 * MS)
    };
    let p = period(t.plan(&placed));
    assert_eq!(p.resync, Some(Jump::Resync));
    assert_eq!((p.fade, p.anchor), (Fade::Out, None));
    assert_eq!(p.error_ns, Some(5e6));
    t.wrote();
    let p = period(t.plan(&View {
        grid: Some(ControllerNs(15 * MS)),
        ..view(15 * MS)
    }));
    assert_eq!((p.fade, p.anchor), (Fade::In, Some(ControllerNs(15 * MS))));
    // Within the threshold: pulled in by the resampler, no jump.
    let p = period(t.plan(&View {
        anchor: Some(ControllerNs(0)),
        ..view(2 * MS)
    }));
    assert_eq!(p.resync, None);
    assert_eq!((p.fade, p.anchor), (Fade::None, None));
    let jumps = t.jumps();
    assert_eq!((jumps.resyncs, jumps.device_moved), (1, 0));
}

#[test]
fn a_relearnt_device_timeline_is_waited_for_then_jumped_once() {
    // The device clock restarted on a timeline that moved by 0.5 ms: while it learns it again
    // the stream plays on unmeasured, then the first error beyond 0.2 ms is jumped, not
    // pulled in at the rail; later ones are the servo's again.
    let mut t = timeline();
    let placed = |ns, relearning| View {
        anchor: Some(ControllerNs(0)),
        relearning,
        ..view(ns)
    };
    let p = period(t.plan(&placed(9 * MS, true)));
    assert_eq!((p.error_ns, p.resync, p.fade), (None, None, Fade::None));
    t.wrote();
    // Seen only while the device was full, it counts as well.
    let mut fresh = timeline();
    let full = View {
        queued: Frames(4_000),
        ..placed(9 * MS, true)
    };
    assert!(matches!(fresh.plan(&full), Plan::Sleep(_)));
    assert!(period(fresh.plan(&placed(MS / 2, false))).resync.is_some());
    let p = period(t.plan(&placed(MS / 2, false)));
    assert_eq!(
        (p.error_ns, p.resync, p.fade),
        (Some(5e5), Some(Jump::DeviceMoved), Fade::Out)
    );
    t.wrote();
    let p = period(t.plan(&placed(MS / 2, false)));
    assert_eq!(p.fade, Fade::In);
    t.wrote();
    let p = period(t.plan(&placed(MS / 2, false)));
    assert_eq!((p.resync, p.fade), (None, Fade::None));
    // Counted as the device's, not as a resync of the speaker's own.
    let jumps = t.jumps();
    assert_eq!((jumps.resyncs, jumps.device_moved), (0, 1));
}

#[test]
fn a_small_move_of_the_device_timeline_is_pulled_in_at_no_more_than_it_needs() {
    // A DAC at the controller's rate, whose timeline moves 150 µs late (a sound server's late
    // cycle) after 20 s; the device clock takes 10 periods to learn it again. The move is
    // below the jump after a relearn, so the resampler pulls it in: at the proportional
    // loop's rate (150 ppm for 150 µs, less as it closes), not more, which a rate fitted
    // across the move would add (168 ppm).
    let mut t = timeline();
    let t0 = ControllerNs(1_000 * MS);
    let (mut heard, mut read, mut worst) = (t0.0 as f64, 0.0, 0.0f64);
    for k in 0..4_000 {
        if k == 2_000 {
            heard += 150e3;
        }
        let v = View {
            anchor: Some(t0),
            read_position: read,
            heard: Some(ControllerNs(heard as i64)),
            relearning: (2_000..2_010).contains(&k),
            ..view(heard as i64)
        };
        let p = period(t.plan(&v));
        assert_eq!(p.resync, None, "period {k}: {p:?}");
        if k >= 2_000 {
            worst = worst.max((p.step - 1.0).abs() * 1e6);
        }
        read += p.step * PERIOD as f64;
        heard += 10e6;
        t.wrote();
    }
    assert!((100.0..160.0).contains(&worst), "{worst} ppm");
    assert!(
        (t.servo().step() - 1.0).abs() < 5e-6,
        "{}",
        t.servo().step()
    );
}

#[test]
fn a_dac_off_by_200_ppm_is_followed_by_the_resampler_without_a_jump() {
    // The DAC runs 200 ppm slow against the controller's clock: each period of 480 output
    // frames lasts 10 ms × (1 + 200e-6). The stream frames read must keep pace with when they
    // are heard: the step settles at 1 + 200e-6 and the error near zero.
    let mut t = timeline();
    let slow = 1.0 + 200e-6;
    let t0 = ControllerNs(1_000 * MS);
    let mut heard = t0.0 as f64;
    let mut read = 0.0;
    let mut worst_late = 0.0f64;
    for k in 0..6_000 {
        let v = View {
            anchor: Some(t0),
            read_position: read,
            heard: Some(ControllerNs(heard as i64)),
            ..view(heard as i64)
        };
        let p = period(t.plan(&v));
        assert_eq!(p.resync, None, "period {k}: {p:?}");
        if k > 3_000 {
            worst_late = worst_late.max(p.error_ns.unwrap().abs());
        }
        read += p.step * PERIOD as f64;
        heard += 10e6 * slow;
        t.wrote();
    }
    assert!(worst_late < 20_000.0, "{worst_late} ns");
    assert!(
        (t.servo().step() - slow).abs() < 10e-6,
        "{}",
        t.servo().step()
    );
}

#[test]
fn a_move_fades_the_old_zone_out_and_the_new_one_takes_over_after_the_write() {
    let mut t = timeline();
    let playing = View {
        anchor: Some(ControllerNs(5 * MS)),
        next_due: Some(true),
        ..view(5 * MS)
    };
    let p = period(t.plan(&playing));
    assert_eq!(p.fade, Fade::Out);
    assert_eq!(
        t.wrote(),
        After {
            adopt: true,
            stop: false
        }
    );
    // Not due yet: the old zone plays on.
    let mut t = timeline();
    let p = period(t.plan(&View {
        next_due: Some(false),
        ..playing
    }));
    assert_eq!(p.fade, Fade::None);
    assert!(!t.wrote().adopt);
    // Nothing playing: the new stream is taken at once.
    let mut t = timeline();
    assert_eq!(
        t.plan(&View {
            playing: false,
            ..playing
        }),
        Plan::Adopt
    );
}

#[test]
fn shutdown_fades_out_one_period_then_stops() {
    let mut t = timeline();
    assert!(!t.shutdown(true, true));
    let p = period(t.plan(&View {
        anchor: Some(ControllerNs(5 * MS)),
        ..view(5 * MS)
    }));
    assert_eq!(p.fade, Fade::Out);
    assert!(t.wrote().stop);
    // Nothing playing: at once.
    assert!(timeline().shutdown(false, true));
    // A device that keeps failing does not hold it up.
    let mut t = timeline();
    let turns = (0..20).take_while(|_| !t.shutdown(true, true)).count();
    assert_eq!(turns, 8);
}

#[test]
fn the_device_is_filled_to_the_latency_less_the_room_a_repair_needs() {
    // 48 kHz, the default device: 10 ms periods, 100 ms buffer, refilled at 20 ms.
    let t = timeline();
    let fill =
        |lead_ms: i64, extra_ms: i64| t.fill(Some(Nanos(lead_ms * MS)), Nanos(extra_ms * MS));
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
    assert_eq!(t.fill(Some(Nanos(i64::MIN)), Nanos(i64::MAX)), 2880);
    // A configured buffer smaller than that is filled whole; a configured period of 1024
    // frames: whole periods above the low-water mark (one period), 64 ms at least.
    assert_eq!(
        Timeline::new(RATE, 480, 1920).fill(Some(Nanos(0)), Nanos(0)),
        1920
    );
    assert_eq!(
        Timeline::new(RATE, 1024, 8192).fill(Some(Nanos(0)), Nanos(0)),
        3072
    );
    // A lead from a forged datagram: no more than the buffer; no stream: the buffer.
    assert_eq!(t.fill(Some(Nanos(i64::MAX)), Nanos(0)), 4800);
    assert_eq!(t.fill(None, Nanos(0)), 4800);
}

#[test]
fn a_device_that_bites_a_quantum_at_a_time_is_refilled_before_its_bite() {
    // PipeWire at quantum 1024 through a 10 ms period, 100 ms buffer: the bite and the
    // quantum in flight (2041 frames) and a period more; never less than by time alone, never
    // more than a period short of the buffer.
    let mut t = Timeline::new(48_000, 480, 4800);
    t.set_headroom(Frames(2041));
    assert_eq!(t.low_water(), Frames(2521));
    t.set_headroom(Frames(0));
    assert_eq!(t.low_water(), Frames(960));
    t.set_headroom(Frames(10_000));
    assert_eq!(t.low_water(), Frames(4320));
}
