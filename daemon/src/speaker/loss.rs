//! What the stream is missing (pure logic): the parity ring that rebuilds a lost datagram,
//! the list of datagrams found missing and asked for again, and the sequence tracking that
//! finds them.

use crate::wire::fec::{Parity, MAX_PROTECTED};
use std::sync::atomic::Ordering;

/// Datagrams kept for rebuilding: comfortably more than a group of the largest size.
const FEC_RING: usize = 64;
/// A missing datagram is asked for at the latest this long after it was found missing while
/// its group's parity is still to come (the parity may rebuild it without a request). Short:
/// what arrives lands only 40 to 70 ms before it is written to the device (the latency less
/// the device's fill, which leaves 40 ms), and a request may need a second try.
const FEC_HOLD_MAX_NS: i64 = 25_000_000;

/// The session's audio datagrams as received (sealed), by sequence number, once the controller
/// is seen to send parity: a parity with exactly one datagram of its group missing rebuilds it.
pub(super) struct FecRing {
    /// A parity of the session playing arrived: datagrams are kept, requests held.
    active: bool,
    /// Group size and first sequence number of the group after the last parity seen.
    group: u8,
    next_first: u32,
    seqs: [Option<u32>; FEC_RING],
    lens: [u16; FEC_RING],
    data: Box<[u8]>,
    /// The datagram rebuilt last, and its sequence number.
    pub(super) out: Vec<u8>,
}

impl FecRing {
    pub(super) fn new() -> Self {
        FecRing {
            active: false,
            group: 0,
            next_first: 0,
            seqs: [None; FEC_RING],
            lens: [0; FEC_RING],
            data: vec![0u8; FEC_RING * MAX_PROTECTED].into_boxed_slice(),
            out: Vec::with_capacity(MAX_PROTECTED),
        }
    }

    pub(super) fn reset(&mut self) {
        self.active = false;
        self.seqs = [None; FEC_RING];
    }

    pub(super) fn store(&mut self, seq: u32, datagram: &[u8]) {
        if !self.active || datagram.len() > MAX_PROTECTED {
            return;
        }
        let i = seq as usize % FEC_RING;
        self.seqs[i] = Some(seq);
        self.lens[i] = datagram.len() as u16;
        self.data[i * MAX_PROTECTED..][..datagram.len()].copy_from_slice(datagram);
    }

    pub(super) fn get(&self, seq: u32) -> Option<&[u8]> {
        let i = seq as usize % FEC_RING;
        (self.seqs[i] == Some(seq))
            .then(|| &self.data[i * MAX_PROTECTED..][..self.lens[i] as usize])
    }

    /// How long a request for `seq`, found missing on the arrival of `now_seq`, waits for its
    /// group's parity: until a little after the group's last datagram is due to arrive
    /// (`datagram_ns` apart), at most `FEC_HOLD_MAX_NS` after `seq` itself was due (a datagram
    /// found missing at the end of a long burst of loss is asked for at once); nothing without
    /// parity or when the group's parity has come already.
    pub(super) fn hold_ns(&self, seq: u32, now_seq: u32, datagram_ns: i64) -> i64 {
        if !self.active || self.group == 0 {
            return 0;
        }
        let d = seq.wrapping_sub(self.next_first);
        if d >= u32::MAX / 2 {
            return 0;
        }
        let left = i64::from(self.group) - 1 - i64::from(d % u32::from(self.group));
        let overdue = i64::from(now_seq.wrapping_sub(seq).min(64)) * datagram_ns;
        (((left + 1) * datagram_ns + 5_000_000).min(FEC_HOLD_MAX_NS) - overdue).max(0)
    }

    /// Takes a parity of the session playing. With exactly one datagram of its group missing,
    /// rebuilds it into `out` and returns its sequence number; with more, lets the held
    /// requests for them go out now.
    pub(super) fn take(
        &mut self,
        p: &Parity<'_>,
        missing: &mut [Missing],
        stats: &super::NetworkCounters,
    ) -> Option<u32> {
        stats.parity.fetch_add(1, Ordering::Relaxed);
        self.group = p.count;
        self.next_first = p.first_seq.wrapping_add(u32::from(p.count));
        if !self.active {
            // Nothing kept yet: from now on.
            self.active = true;
            return None;
        }
        let mut lost = None;
        let mut n_lost = 0;
        for k in 0..u32::from(p.count) {
            let seq = p.first_seq.wrapping_add(k);
            if self.get(seq).is_none() {
                n_lost += 1;
                lost = Some(seq);
            }
        }
        let lost = lost?;
        let mut out = std::mem::take(&mut self.out);
        let rebuilt = n_lost == 1 && {
            let others = (0..u32::from(p.count))
                .map(|k| p.first_seq.wrapping_add(k))
                .filter(|&s| s != lost)
                .filter_map(|s| self.get(s));
            p.rebuild(others, &mut out)
        };
        self.out = out;
        if rebuilt {
            return Some(lost);
        }
        stats.fec_unrecoverable.fetch_add(1, Ordering::Relaxed);
        for m in missing
            .iter_mut()
            .filter(|m| p.covers(m.seq) && m.tries == 0)
        {
            m.asked = 0;
        }
        None
    }
}

/// A datagram found missing (a later one arrived first).
#[derive(Debug, Clone, Copy)]
pub(super) struct Missing {
    pub(super) seq: u32,
    /// When it was found missing and last asked for, local clock ns (asked: 0 = not yet).
    pub(super) found: i64,
    pub(super) asked: i64,
    pub(super) tries: u8,
}

/// Missing datagrams tracked at most (a longer hole is not worth repairing datagram by
/// datagram: 64 is 450 ms of 48 kHz stereo).
pub(super) const MAX_MISSING: usize = 64;
/// Time between two requests for the same datagram, and requests at most per datagram.
pub(super) const REPAIR_RETRY_NS: i64 = 15_000_000;
pub(super) const REPAIR_TRIES: u8 = 4;
/// After this long a missing datagram is given up (it would arrive too late to play).
pub(super) const REPAIR_GIVE_UP_NS: i64 = 100_000_000;

/// Notes a datagram's sequence number (and whether it was rebuilt from parity): the ones
/// skipped are missing, asked for after `hold(seq)` ns; one that was missing has arrived.
pub(super) fn track(
    next_seq: &mut Option<u32>,
    missing: &mut Vec<Missing>,
    (seq, by_fec): (u32, bool),
    local_ns: i64,
    hold: impl Fn(u32) -> i64,
    stats: &super::NetworkCounters,
) {
    if let Some(next) = *next_seq {
        let ahead = seq.wrapping_sub(next);
        if ahead >= u32::MAX / 2 {
            // Older than expected: a late or a repaired one.
            if let Some(i) = missing.iter().position(|m| m.seq == seq) {
                if missing[i].tries > 0 && !by_fec {
                    stats.repaired.fetch_add(1, Ordering::Relaxed);
                }
                missing.swap_remove(i);
            }
            return;
        }
        if (ahead as usize) < MAX_MISSING {
            for k in 0..ahead {
                if missing.len() == MAX_MISSING {
                    break;
                }
                let seq = next.wrapping_add(k);
                // Two or more missing in a row (a burst): one parity rebuilds one datagram of
                // its group at most, so they are asked for at once rather than held for it (a
                // FLAC datagram is 10.7 ms, a group 85 ms: the hold's 25 ms was a quarter of
                // what a repair has, and CI saw one come 5 ms late).
                let held = if ahead >= 2 { 0 } else { hold(seq) };
                missing.push(Missing {
                    seq,
                    found: local_ns,
                    // Requests go out once `asked` is REPAIR_RETRY_NS old.
                    asked: match held {
                        0 => 0,
                        h => local_ns - REPAIR_RETRY_NS + h,
                    },
                    tries: 0,
                });
            }
        }
    }
    *next_seq = Some(seq.wrapping_add(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_loss_waits_for_parity_and_a_burst_is_asked_for_at_once() {
        let stats = super::super::NetworkCounters::default();
        let (mut next, mut missing) = (None, Vec::new());
        let hold = |_| 20_000_000;
        for seq in [10, 11, 13] {
            track(&mut next, &mut missing, (seq, false), 1_000, hold, &stats);
        }
        // 12 is missing alone: held 20 ms for its group's parity (asked for once `asked` is a
        // retry old).
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].asked, 1_000 - REPAIR_RETRY_NS + 20_000_000);
        // 14-16 go missing together: asked for at once.
        track(&mut next, &mut missing, (17, false), 2_000, hold, &stats);
        let burst: Vec<_> = missing.iter().filter(|m| m.seq >= 14).collect();
        assert_eq!(burst.len(), 3);
        assert!(burst.iter().all(|m| m.asked == 0 && m.found == 2_000));
        // The one held arrives (repaired or late): no longer missing.
        track(&mut next, &mut missing, (12, false), 3_000, hold, &stats);
        assert!(missing.iter().all(|m| m.seq != 12));
    }
}
