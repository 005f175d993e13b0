//! Signed calls from the controller to a speaker's API (pure logic, no I/O).
//!
//! The controller learns a speaker's address from its heartbeats: UDP, which anyone on the LAN
//! can forge. Sending the API token there would hand it to whoever forged the heartbeat. So
//! the controller never sends the token to a speaker: it proves it knows it. The header
//! `Authorization: Chorus-Signed n=<nonce>,mac=<hex>` carries HMAC-SHA256 under the token of
//! the method, the path, the nonce and the SHA-256 of the body. A forged address learns one
//! MAC for one exact request, which the speaker takes once at most (nonces are remembered).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};

/// The scheme's name in the `Authorization` header.
pub(crate) const SCHEME: &str = "Chorus-Signed ";
/// Nonces remembered (the oldest leave first).
const NONCES: usize = 4096;

fn mac(token: &[u8], method: &str, path: &str, nonce: u64, body: &[u8]) -> [u8; 32] {
    // new_from_slice takes a key of any length.
    let mut m = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes any key length");
    m.update(method.as_bytes());
    m.update(b"\n");
    m.update(path.as_bytes());
    m.update(b"\n");
    m.update(&nonce.to_le_bytes());
    m.update(&Sha256::digest(body));
    m.finalize().into_bytes().into()
}

/// The `Authorization` header value for a call.
pub(crate) fn sign(token: &[u8], method: &str, path: &str, nonce: u64, body: &[u8]) -> String {
    let tag = mac(token, method, path, nonce, body);
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{SCHEME}n={nonce},mac={hex}")
}

/// Why a signed call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Malformed,
    BadMac,
    Replayed,
}

/// The nonces already taken.
#[derive(Debug, Default)]
pub(crate) struct Nonces {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
}

impl Nonces {
    /// Checks a `Chorus-Signed` header value (`value` after the scheme) against the token and
    /// the call; takes its nonce when it is good.
    pub(crate) fn verify(
        &mut self,
        token: &[u8],
        value: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(), Refused> {
        let (nonce, hex) = parse(value).ok_or(Refused::Malformed)?;
        let want = mac(token, method, path, nonce, body);
        // Constant time: every byte compared, differences folded.
        if hex.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return Err(Refused::BadMac);
        }
        if !self.seen.insert(nonce) {
            return Err(Refused::Replayed);
        }
        self.order.push_back(nonce);
        while self.order.len() > NONCES {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        Ok(())
    }
}

/// `n=<u64>,mac=<64 hex digits>`.
fn parse(value: &str) -> Option<(u64, [u8; 32])> {
    let (n, m) = value.trim().split_once(',')?;
    let nonce = n.trim().strip_prefix("n=")?.parse().ok()?;
    let hex = m.trim().strip_prefix("mac=")?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(s, 16).ok()?;
    }
    Some((nonce, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_call_is_taken_once_and_only_as_signed() {
        let token = b"s3cret-token";
        let body = br#"{"volume":40}"#;
        let h = sign(token, "PUT", "/api/v1/speaker/volume", 7, body);
        let v = h.strip_prefix(SCHEME).unwrap();
        assert!(!v.contains("s3cret"));
        let mut n = Nonces::default();
        let check = |n: &mut Nonces, t: &[u8], m: &str, p: &str, b: &[u8]| n.verify(t, v, m, p, b);
        // Another body, path, method or token: refused, and the nonce is not used up.
        assert_eq!(
            check(
                &mut n,
                token,
                "PUT",
                "/api/v1/speaker/volume",
                br#"{"volume":100}"#
            ),
            Err(Refused::BadMac)
        );
        assert_eq!(
            check(&mut n, token, "PUT", "/api/v1/speaker/zone", body),
            Err(Refused::BadMac)
        );
        assert_eq!(
            check(&mut n, token, "POST", "/api/v1/speaker/volume", body),
            Err(Refused::BadMac)
        );
        assert_eq!(
            check(&mut n, b"other", "PUT", "/api/v1/speaker/volume", body),
            Err(Refused::BadMac)
        );
        assert_eq!(
            check(&mut n, token, "PUT", "/api/v1/speaker/volume", body),
            Ok(())
        );
        assert_eq!(
            check(&mut n, token, "PUT", "/api/v1/speaker/volume", body),
            Err(Refused::Replayed)
        );
        for bad in [
            "",
            "n=1",
            "n=x,mac=00",
            "n=1,mac=zz",
            &format!("n=1,mac={}", "0".repeat(63)),
        ] {
            assert_eq!(
                n.verify(token, bad, "PUT", "/", b""),
                Err(Refused::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn nonces_are_bounded() {
        let mut n = Nonces::default();
        for k in 0..(NONCES as u64 + 10) {
            let h = sign(b"t", "PUT", "/", k, b"");
            n.verify(b"t", h.strip_prefix(SCHEME).unwrap(), "PUT", "/", b"")
                .unwrap();
        }
        assert_eq!(n.seen.len(), NONCES);
        assert_eq!(n.order.len(), NONCES);
    }
}
