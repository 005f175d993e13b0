//! Repair requests (kind 6): a speaker asks the controller, unicast to its sync port, to send
//! again audio datagrams of the current session it did not receive. The controller answers each
//! with the datagram itself, unicast to the request's source. Fixed size, no allocation: the
//! speaker builds these on its real-time playout thread.

use super::{kind, put_prefix, Reader, WireError, PREFIX_LEN};

/// Sequence numbers one request can carry.
pub const MAX_SEQS: usize = 32;
/// Bytes before the sequence numbers.
const HEAD_LEN: usize = PREFIX_LEN + 8;

/// Which datagrams to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairRequest {
    pub session: u32,
    len: u8,
    seqs: [u32; MAX_SEQS],
}

impl RepairRequest {
    pub fn new(session: u32) -> Self {
        RepairRequest {
            session,
            len: 0,
            seqs: [0; MAX_SEQS],
        }
    }

    /// Adds a sequence number; false when full.
    pub fn push(&mut self, seq: u32) -> bool {
        if self.len as usize == MAX_SEQS {
            return false;
        }
        self.seqs[self.len as usize] = seq;
        self.len += 1;
        true
    }

    pub fn seqs(&self) -> &[u32] {
        &self.seqs[..self.len as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the datagram into `out` (cleared first; with capacity for `MAX_SEQS` and a tag
    /// nothing is allocated).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        put_prefix(out, kind::REPAIR);
        out.extend_from_slice(&self.session.to_le_bytes());
        out.extend_from_slice(&u16::from(self.len).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        for s in self.seqs() {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
}

pub(crate) fn parse_repair(buf: &[u8]) -> Result<RepairRequest, WireError> {
    if buf.len() < HEAD_LEN {
        return Err(WireError::TooShort {
            len: buf.len(),
            need: HEAD_LEN,
        });
    }
    let mut r = Reader::new(buf, PREFIX_LEN);
    let session = r.u32()?;
    let count = r.u16()? as usize;
    let _reserved = r.u16()?;
    if count == 0 || count > MAX_SEQS {
        return Err(WireError::BadStreamFormat("repair request count"));
    }
    let expected = HEAD_LEN + 4 * count;
    if buf.len() != expected {
        return Err(WireError::LengthMismatch {
            expected,
            got: buf.len(),
        });
    }
    let mut req = RepairRequest::new(session);
    for _ in 0..count {
        req.push(r.u32()?);
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::packet::{parse, Packet};

    #[test]
    fn round_trip_and_bounds() {
        let mut q = RepairRequest::new(77);
        for s in [5, 9, u32::MAX] {
            assert!(q.push(s));
        }
        let mut d = Vec::new();
        q.encode_into(&mut d);
        assert_eq!(d.len(), HEAD_LEN + 12);
        assert_eq!(parse(&d), Ok(Packet::Repair(q)));
        // Full at MAX_SEQS.
        let mut full = RepairRequest::new(1);
        for s in 0..MAX_SEQS as u32 {
            assert!(full.push(s));
        }
        assert!(!full.push(99));
        // Truncated, padded, zero and absurd counts.
        assert!(parse(&d[..d.len() - 1]).is_err());
        let mut long = d.clone();
        long.push(0);
        assert!(parse(&long).is_err());
        let mut zero = d.clone();
        zero[12..14].copy_from_slice(&0u16.to_le_bytes());
        assert!(parse(&zero[..HEAD_LEN]).is_err());
        let mut absurd = d.clone();
        absurd[12..14].copy_from_slice(&60_000u16.to_le_bytes());
        assert!(parse(&absurd).is_err());
    }
}
