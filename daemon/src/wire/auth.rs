//! Datagram authentication with a pre-shared key: HMAC-SHA256 truncated to 128 bits, appended
//! to every datagram (audio, announcements, sync, heartbeats, repair requests) and flagged in the
//! prefix. A receiver with a key accepts only datagrams whose tag verifies (compared in constant
//! time); one without a key accepts only untagged ones, so a half-configured zone fails loudly
//! (counted and logged) instead of half working. Integrity only, not secrecy: audio on a home
//! LAN is not the secret, control of it is.
//!
//! Replays are handled where the datagrams are understood: audio by a per-session sequence
//! window and a freshness check on new sessions (the speaker's receiver), sync answers by the
//! request id and t1 they must echo (the sync client).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{WireError, PREFIX_LEN};

/// Bytes of tag appended to an authenticated datagram.
pub const TAG_LEN: usize = 16;
/// Bit of prefix byte 6 that marks a tagged datagram.
pub const FLAG_TAGGED: u8 = 0x01;
/// Shortest key accepted, bytes.
pub const MIN_KEY_LEN: usize = 16;

/// Seals outgoing datagrams and opens incoming ones, with or without a key. Cloning is cheap
/// (the keyed HMAC state is precomputed and copied), and neither operation allocates.
#[derive(Clone)]
pub struct Auth {
    mac: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Auth({})",
            if self.mac.is_some() { "keyed" } else { "none" }
        )
    }
}

impl Auth {
    /// No key: datagrams go out untagged and only untagged ones are accepted.
    pub fn none() -> Auth {
        Auth { mac: None }
    }

    /// A pre-shared key (at least `MIN_KEY_LEN` bytes; callers validate).
    pub fn with_key(key: &[u8]) -> Auth {
        Auth {
            // HMAC takes keys of any length.
            mac: Hmac::<Sha256>::new_from_slice(key).ok(),
        }
    }

    pub fn keyed(&self) -> bool {
        self.mac.is_some()
    }

    /// Tags a complete datagram in place (with a key; without one it is left as it is).
    pub fn seal(&self, datagram: &mut Vec<u8>) {
        let Some(mac) = &self.mac else { return };
        if datagram.len() < PREFIX_LEN {
            return;
        }
        datagram[6] |= FLAG_TAGGED;
        let mut m = mac.clone();
        m.update(datagram);
        let tag = m.finalize().into_bytes();
        datagram.extend_from_slice(&tag[..TAG_LEN]);
    }

    /// Checks a received datagram and returns the part to parse (without its tag).
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Result<&'a [u8], WireError> {
        if datagram.len() < PREFIX_LEN {
            return Err(WireError::TooShort {
                len: datagram.len(),
                need: PREFIX_LEN,
            });
        }
        let tagged = datagram[6] & FLAG_TAGGED != 0;
        match (&self.mac, tagged) {
            (None, false) => Ok(datagram),
            (None, true) => Err(WireError::Unauthenticated(
                "tagged, but no key is configured",
            )),
            (Some(_), false) => Err(WireError::Unauthenticated("no tag")),
            (Some(mac), true) => {
                if datagram.len() < PREFIX_LEN + TAG_LEN {
                    return Err(WireError::Unauthenticated("tag cut short"));
                }
                let (body, tag) = datagram.split_at(datagram.len() - TAG_LEN);
                let mut m = mac.clone();
                m.update(body);
                m.verify_truncated_left(tag)
                    .map_err(|_| WireError::Unauthenticated("tag does not verify"))?;
                Ok(body)
            }
        }
    }
}

/// A sliding window of sequence numbers already received (per stream session): refuses
/// duplicates and anything older than the window. 128 datagrams: about 0.9 s of 48 kHz stereo.
#[derive(Debug, Default, Clone)]
pub struct ReplayWindow {
    /// Highest sequence number seen, if any.
    top: Option<u32>,
    /// Bit i: `top - i` was seen.
    seen: u128,
}

/// Outcome of offering a sequence number to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    New,
    /// Already received (a duplicate or a replay).
    Again,
    /// Older than the window.
    TooOld,
}

impl ReplayWindow {
    /// Records `seq` (wrapping arithmetic: the sequence wraps after 2^32 datagrams).
    pub fn offer(&mut self, seq: u32) -> Seen {
        let Some(top) = self.top else {
            self.top = Some(seq);
            self.seen = 1;
            return Seen::New;
        };
        let ahead = seq.wrapping_sub(top);
        if ahead != 0 && ahead < u32::MAX / 2 {
            self.seen = if ahead >= 128 { 0 } else { self.seen << ahead };
            self.seen |= 1;
            self.top = Some(seq);
            return Seen::New;
        }
        let back = top.wrapping_sub(seq);
        if back >= 128 {
            return Seen::TooOld;
        }
        let bit = 1u128 << back;
        if self.seen & bit != 0 {
            return Seen::Again;
        }
        self.seen |= bit;
        Seen::New
    }

    /// Forgets everything (a new session).
    pub fn reset(&mut self) {
        *self = ReplayWindow::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram() -> Vec<u8> {
        let mut d = b"CHRS\x01\x02\x00\x00".to_vec();
        d.extend_from_slice(&[7u8; 32]);
        d
    }

    #[test]
    fn sealed_datagrams_open_and_tampering_is_caught() {
        let a = Auth::with_key(b"0123456789abcdef0123");
        let mut d = datagram();
        a.seal(&mut d);
        assert_eq!(d.len(), 40 + TAG_LEN);
        let body = a.open(&d).unwrap();
        assert_eq!(&body[8..], &[7u8; 32]);
        // Any flipped bit, anywhere, fails.
        for i in 0..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 0x10;
            assert!(a.open(&bad).is_err(), "byte {i}");
        }
        // Another key, no key, no tag.
        assert!(Auth::with_key(b"another key, just as long")
            .open(&d)
            .is_err());
        assert!(Auth::none().open(&d).is_err());
        assert!(a.open(&datagram()).is_err());
        assert!(a.open(&d[..d.len() - 1]).is_err());
        assert!(a.open(&d[..10]).is_err());
        // Without a key nothing changes.
        let mut plain = datagram();
        Auth::none().seal(&mut plain);
        assert_eq!(plain, datagram());
        assert_eq!(Auth::none().open(&plain).unwrap(), &plain[..]);
    }

    #[test]
    fn replay_window_refuses_duplicates_and_old_numbers() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.offer(1000), Seen::New);
        assert_eq!(w.offer(1002), Seen::New);
        assert_eq!(w.offer(1001), Seen::New); // late, not seen: fine
        assert_eq!(w.offer(1001), Seen::Again);
        assert_eq!(w.offer(1002), Seen::Again);
        assert_eq!(w.offer(1000 - 200), Seen::TooOld);
        assert_eq!(w.offer(1300), Seen::New); // a jump clears the window
        assert_eq!(w.offer(1100), Seen::TooOld);
        assert_eq!(w.offer(1299), Seen::New);
        // Across the wrap of the 32-bit sequence.
        let mut w = ReplayWindow::default();
        assert_eq!(w.offer(u32::MAX - 1), Seen::New);
        assert_eq!(w.offer(u32::MAX), Seen::New);
        assert_eq!(w.offer(0), Seen::New);
        assert_eq!(w.offer(u32::MAX), Seen::Again);
        assert_eq!(w.offer(1), Seen::New);
    }
}
