//! Clock-sync exchange: NTP-style four timestamps over unicast UDP.
//!
//! The speaker sends a request stamped `t1` (its clock); the controller stamps arrival `t2` and
//! departure `t3` (controller clock) and echoes `t1`; the speaker stamps arrival `t4`.
//! Requests are padded to the response length so that the service never amplifies traffic.

use super::{kind, put_prefix, Reader, WireError, PREFIX_LEN};
use crate::clock::{ControllerNs, LocalNs};

/// Length of both request and response datagrams.
pub const SYNC_LEN: usize = 40;

/// A speaker's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRequest {
    /// Exchange id chosen by the speaker.
    pub id: u64,
    /// Speaker transmit time.
    pub t1: LocalNs,
    /// The controller time `t3` of the last answer the speaker got (0: none): proof that it
    /// receives the service's answers at its address (see `controller::proof`).
    pub proof: i64,
}

/// The controller's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncResponse {
    pub id: u64,
    pub t1: LocalNs,
    /// Controller receive time.
    pub t2: ControllerNs,
    /// Controller transmit time.
    pub t3: ControllerNs,
}

impl SyncRequest {
    /// Encodes the request (padded to [`SYNC_LEN`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SYNC_LEN);
        put_prefix(&mut out, kind::SYNC_REQUEST);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.t1.0.to_le_bytes());
        out.extend_from_slice(&self.proof.to_le_bytes());
        out.resize(SYNC_LEN, 0);
        out
    }
}

impl SyncResponse {
    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SYNC_LEN);
        put_prefix(&mut out, kind::SYNC_RESPONSE);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.t1.0.to_le_bytes());
        out.extend_from_slice(&self.t2.0.to_le_bytes());
        out.extend_from_slice(&self.t3.0.to_le_bytes());
        out
    }
}

fn exact_len(buf: &[u8]) -> Result<(), WireError> {
    if buf.len() < SYNC_LEN {
        return Err(WireError::TooShort {
            len: buf.len(),
            need: SYNC_LEN,
        });
    }
    if buf.len() > SYNC_LEN {
        return Err(WireError::TooLong {
            len: buf.len(),
            limit: SYNC_LEN,
        });
    }
    Ok(())
}

pub(crate) fn parse_request(buf: &[u8]) -> Result<SyncRequest, WireError> {
    exact_len(buf)?;
    let mut r = Reader::new(buf, PREFIX_LEN);
    Ok(SyncRequest {
        id: r.u64()?,
        t1: LocalNs(r.i64()?),
        proof: r.i64()?,
    })
}

pub(crate) fn parse_response(buf: &[u8]) -> Result<SyncResponse, WireError> {
    exact_len(buf)?;
    let mut r = Reader::new(buf, PREFIX_LEN);
    Ok(SyncResponse {
        id: r.u64()?,
        t1: LocalNs(r.i64()?),
        t2: ControllerNs(r.i64()?),
        t3: ControllerNs(r.i64()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::packet::{parse, Packet};

    #[test]
    fn round_trip_and_no_amplification() {
        let q = SyncRequest {
            id: 9,
            t1: LocalNs(-77),
            proof: 123_456,
        };
        let a = SyncResponse {
            id: 9,
            t1: LocalNs(-77),
            t2: ControllerNs(5),
            t3: ControllerNs(6),
        };
        let (qb, ab) = (q.encode(), a.encode());
        assert_eq!(qb.len(), ab.len());
        assert_eq!(parse(&qb).unwrap(), Packet::SyncRequest(q));
        assert_eq!(parse(&ab).unwrap(), Packet::SyncResponse(a));
        assert!(parse(&qb[..30]).is_err());
        let mut long = qb.clone();
        long.push(0);
        assert!(parse(&long).is_err());
    }
}
