//! Which audio datagrams the speaker takes (pure logic): the zone's format, the session playing
//! (or a new one due about now), plausible in number and time, and not seen before. What it
//! refuses it says why, for the counters. No I/O: tested below.

use super::net::Expect;
use super::plausible::Plausibility;
use crate::clock::ControllerNs;
use crate::wire::auth::{ReplayWindow, Seen};
use crate::wire::AudioHeader;

/// A datagram of another session than the one playing is taken as a new stream (a controller
/// restarted) only when it is due within this span of now: a replayed datagram of an old
/// session, or a forged one, must not flush the stream that plays.
const NEW_SESSION_SPAN_NS: i64 = 2_000_000_000;

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    ForeignFormat,
    ForeignSession,
    Implausible,
    Duplicate,
    TooOld,
}

/// A datagram taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// Of the session playing.
    Same,
    /// The first of a new session: what was missing of the old one is moot.
    NewSession,
    /// Behind the replay window, but believable datagrams keep coming there: the window's top
    /// was forged (or the controller's numbering jumped), and it started again on them.
    WindowRestarted,
}

/// The admission's state: the session playing, its replay window and its plausibility.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    expect: Expect,
    session: Option<u32>,
    window: ReplayWindow,
    plausible: Plausibility,
}

impl Admission {
    pub(crate) fn new(expect: Expect) -> Self {
        Admission {
            expect,
            session: None,
            window: ReplayWindow::default(),
            plausible: Plausibility::default(),
        }
    }

    /// The session playing.
    pub(crate) fn session(&self) -> Option<u32> {
        self.session
    }

    /// Takes audio with header `h` or says why not; `now` is the controller's clock, when
    /// known (without it, a new session is taken whenever it is due).
    pub(crate) fn admit(
        &mut self,
        h: &AudioHeader,
        now: Option<ControllerNs>,
    ) -> Result<Admitted, Refused> {
        if h.rate != self.expect.rate || h.channels != self.expect.channels {
            return Err(Refused::ForeignFormat);
        }
        let mut admitted = Admitted::Same;
        if self.session != Some(h.session) {
            if now.is_some_and(|t| h.pts.since(t).unsigned_abs() > NEW_SESSION_SPAN_NS as u64) {
                return Err(Refused::ForeignSession);
            }
            self.session = Some(h.session);
            self.window.reset();
            self.plausible.reset();
            admitted = Admitted::NewSession;
        }
        let datagram_ns = i64::from(shortest_run(h)) * 1_000_000_000 / i64::from(h.rate.max(1));
        if !self.plausible.believe(h.seq, h.pts, datagram_ns, now) {
            return Err(Refused::Implausible);
        }
        match self.window.offer(h.seq) {
            Seen::New => {}
            Seen::Again => return Err(Refused::Duplicate),
            Seen::TooOld => {
                if !self.plausible.too_old() {
                    return Err(Refused::TooOld);
                }
                self.window.reset();
                self.window.offer(h.seq);
                admitted = Admitted::WindowRestarted;
            }
        }
        self.plausible.accepted(h.seq, h.pts);
        Ok(admitted)
    }
}

/// Frames per sequence number the plausibility check may count on from a datagram like `h`.
/// A FLAC stream's datagrams vary: a block that does not fit one datagram goes as two
/// halves, or as four quarters, or as PCM (the controller's `send_packet`), so after a run of
/// lost quarters a whole block's length per number would overstate how far time moved, and
/// every whole block after it would be refused: a quarter is counted.
fn shortest_run(h: &AudioHeader) -> u16 {
    match h.codec {
        crate::wire::Codec::Pcm => h.frames,
        crate::wire::Codec::Flac => {
            let quarter = AudioHeader::max_flac_frames(h.channels, h.format) / 4;
            h.frames.min(u16::try_from(quarter).unwrap_or(u16::MAX))
        }
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
