//! What the speaker takes and what it refuses, and why.

use super::*;
use crate::wire::SampleFormat;

const MS: i64 = 1_000_000;

fn expect() -> Expect {
    Expect {
        rate: 48_000,
        channels: 2,
    }
}

/// Datagram `seq` of `session`: 240 frames (5 ms) each, the first due at 1 s.
fn datagram(session: u32, seq: u32) -> AudioHeader {
    AudioHeader {
        session,
        seq,
        frame_index: u64::from(seq) * 240,
        pts: ControllerNs(1_000 * MS + i64::from(seq) * 5 * MS),
        rate: 48_000,
        channels: 2,
        format: SampleFormat::S16,
        codec: crate::wire::Codec::Pcm,
        frames: 240,
    }
}

#[test]
fn the_stream_is_taken_once_in_any_order_and_its_format_only() {
    let mut a = Admission::new(expect());
    let now = Some(ControllerNs(900 * MS));
    assert_eq!(a.admit(&datagram(7, 0), now), Ok(Admitted::NewSession));
    assert_eq!(a.session(), Some(7));
    assert_eq!(a.admit(&datagram(7, 2), now), Ok(Admitted::Same));
    assert_eq!(a.admit(&datagram(7, 1), now), Ok(Admitted::Same));
    assert_eq!(a.admit(&datagram(7, 1), now), Err(Refused::Duplicate));
    let mono = AudioHeader {
        channels: 1,
        ..datagram(7, 3)
    };
    assert_eq!(a.admit(&mono, now), Err(Refused::ForeignFormat));
}

#[test]
fn forged_datagrams_do_not_take_the_stream_over() {
    let mut a = Admission::new(expect());
    let now = Some(ControllerNs(900 * MS));
    assert!(a.admit(&datagram(7, 0), now).is_ok());
    // Numbered 2^31 ahead of its time (the attack of issue #9): refused, and the true stream
    // goes on.
    let forged = |seq| AudioHeader {
        pts: ControllerNs(1_005 * MS),
        ..datagram(7, seq)
    };
    assert_eq!(
        a.admit(&forged(u32::MAX / 2 - 1), now),
        Err(Refused::Implausible)
    );
    // Exactly half the numbers ahead counts as behind: too old for the window.
    assert_eq!(a.admit(&forged(u32::MAX / 2), now), Err(Refused::TooOld));
    assert_eq!(a.admit(&datagram(7, 1), now), Ok(Admitted::Same));
    // Due 26 s ahead, or at i64::MIN: refused.
    let far = AudioHeader {
        pts: ControllerNs(27_000 * MS),
        ..datagram(7, 2)
    };
    assert_eq!(a.admit(&far, now), Err(Refused::Implausible));
    // Another session not due now (a replay of an old one): refused; the session stays.
    let old = AudioHeader {
        pts: ControllerNs(i64::MIN),
        ..datagram(9, 0)
    };
    assert_eq!(a.admit(&old, now), Err(Refused::ForeignSession));
    assert_eq!(a.session(), Some(7));
    // A restarted controller's session, due about now: taken.
    assert_eq!(a.admit(&datagram(8, 0), now), Ok(Admitted::NewSession));
}
