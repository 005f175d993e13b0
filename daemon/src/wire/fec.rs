//! Forward error correction (kind 7): after every group of `count` consecutive audio datagrams
//! the controller multicasts their XOR parity. A speaker that received all but one datagram of
//! the group rebuilds the missing one at once, without a round trip to the controller.
//!
//! The parity covers the datagrams exactly as they went out, authentication tag included, so a
//! rebuilt datagram is checked like any other: a forged or corrupted parity can only produce a
//! datagram whose tag does not verify (or, without a key, whose sequence number is already
//! taken or whose group is wrong). Datagrams of different lengths are XORed as if padded with
//! zeros to the longest, whose length the parity body has; the XOR of their lengths says how
//! long the missing one was.
//!
//! ```text
//! prefix(8) | session u32 | first_seq u32 | count u8 | reserved u8 | length_xor u16 | body
//! ```

use super::auth::TAG_LEN;
use super::{kind, put_prefix, Reader, WireError, MAX_DATAGRAM, PREFIX_LEN};

/// Bytes before the parity body.
pub const HEAD_LEN: usize = PREFIX_LEN + 12;
/// Largest group (datagrams covered by one parity).
pub const MAX_GROUP: usize = 32;
/// Longest datagram a parity can cover: the parity, with its header and its own tag, must
/// still fit `MAX_DATAGRAM`. Audio datagrams are sized to stay within it.
pub const MAX_PROTECTED: usize = MAX_DATAGRAM - HEAD_LEN - TAG_LEN;

/// A parsed parity datagram (body borrowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parity<'a> {
    pub session: u32,
    /// Sequence number of the group's first datagram; the group is `count` consecutive ones.
    pub first_seq: u32,
    pub count: u8,
    length_xor: u16,
    body: &'a [u8],
}

impl Parity<'_> {
    /// True if `seq` belongs to this parity's group.
    pub fn covers(&self, seq: u32) -> bool {
        seq.wrapping_sub(self.first_seq) < u32::from(self.count)
    }

    /// Rebuilds the group's one missing datagram into `out` from the others (in any order),
    /// returning false when the lengths do not add up (a corrupted or forged parity). The
    /// caller must pass exactly `count - 1` datagrams.
    pub fn rebuild<'d>(&self, others: impl Iterator<Item = &'d [u8]>, out: &mut Vec<u8>) -> bool {
        out.clear();
        out.extend_from_slice(self.body);
        let mut len = self.length_xor;
        for d in others {
            if d.len() > out.len() {
                return false;
            }
            let Ok(n) = u16::try_from(d.len()) else {
                return false;
            };
            len ^= n;
            xor_into(&mut out[..d.len()], d);
        }
        let len = len as usize;
        if len < PREFIX_LEN || len > out.len() {
            return false;
        }
        out.truncate(len);
        true
    }
}

fn xor_into(acc: &mut [u8], d: &[u8]) {
    // Word at a time: the compiler turns this into vector XORs.
    let mut a = acc.chunks_exact_mut(8);
    let mut b = d.chunks_exact(8);
    for (x, y) in (&mut a).zip(&mut b) {
        let v = u64::from_ne_bytes(x[..].try_into().unwrap_or([0; 8]))
            ^ u64::from_ne_bytes(y.try_into().unwrap_or([0; 8]));
        x.copy_from_slice(&v.to_ne_bytes());
    }
    for (x, y) in a.into_remainder().iter_mut().zip(b.remainder()) {
        *x ^= y;
    }
}

/// Accumulates the parity of a group as its datagrams go out. Allocates once.
#[derive(Debug)]
pub struct ParityBuilder {
    group: u8,
    session: u32,
    first_seq: u32,
    count: u8,
    length_xor: u16,
    acc: Vec<u8>,
}

impl ParityBuilder {
    /// Groups of `group` datagrams (clamped to 1..=MAX_GROUP).
    pub fn new(group: usize) -> Self {
        ParityBuilder {
            group: u8::try_from(group.clamp(1, MAX_GROUP)).unwrap_or(1),
            session: 0,
            first_seq: 0,
            count: 0,
            length_xor: 0,
            acc: Vec::with_capacity(MAX_PROTECTED),
        }
    }

    /// Adds a datagram as sent (longer than `MAX_PROTECTED`: not covered, the group restarts
    /// after it). True when the group is complete: then `finish` writes its parity.
    pub fn add(&mut self, session: u32, seq: u32, datagram: &[u8]) -> bool {
        if datagram.len() > MAX_PROTECTED {
            self.count = 0;
            return false;
        }
        if self.count == 0 {
            self.session = session;
            self.first_seq = seq;
            self.length_xor = 0;
            self.acc.clear();
        }
        if self.acc.len() < datagram.len() {
            self.acc.resize(datagram.len(), 0);
        }
        xor_into(&mut self.acc[..datagram.len()], datagram);
        // Our own datagrams, at most MAX_DATAGRAM (1400) bytes.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "at most MAX_DATAGRAM bytes"
        )]
        let n = datagram.len() as u16;
        self.length_xor ^= n;
        self.count += 1;
        self.count == self.group
    }

    /// Datagrams in the group so far.
    pub fn pending(&self) -> usize {
        self.count as usize
    }

    /// Writes the parity of the datagrams added since the last one into `out` (cleared first)
    /// and starts a new group; false (and `out` left empty) when there were none.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        if self.count == 0 {
            return false;
        }
        put_prefix(out, kind::PARITY);
        out.extend_from_slice(&self.session.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.push(self.count);
        out.push(0);
        out.extend_from_slice(&self.length_xor.to_le_bytes());
        out.extend_from_slice(&self.acc);
        self.count = 0;
        true
    }
}

pub(crate) fn parse_parity(buf: &[u8]) -> Result<Parity<'_>, WireError> {
    if buf.len() <= HEAD_LEN {
        return Err(WireError::TooShort {
            len: buf.len(),
            need: HEAD_LEN + 1,
        });
    }
    let mut r = Reader::new(buf, PREFIX_LEN);
    let session = r.u32()?;
    let first_seq = r.u32()?;
    let count = r.u8()?;
    let _reserved = r.u8()?;
    let length_xor = r.u16()?;
    if count == 0 || count as usize > MAX_GROUP {
        return Err(WireError::BadStreamFormat(
            "parity group size outside 1..=32",
        ));
    }
    let body = r.rest();
    if body.len() > MAX_PROTECTED {
        return Err(WireError::TooLong {
            len: body.len(),
            limit: MAX_PROTECTED,
        });
    }
    Ok(Parity {
        session,
        first_seq,
        count,
        length_xor,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::packet::{parse, Packet};

    fn datagrams() -> Vec<Vec<u8>> {
        // Different lengths, the last one shortest (a stream's end), one of odd length.
        [1364usize, 1364, 901, 1364, 77]
            .iter()
            .enumerate()
            .map(|(k, &n)| (0..n).map(|i| (i * 31 + k * 7) as u8).collect())
            .collect()
    }

    fn parity_of(ds: &[Vec<u8>]) -> Vec<u8> {
        let mut b = ParityBuilder::new(ds.len());
        for (i, d) in ds.iter().enumerate() {
            let done = b.add(9, 100 + i as u32, d);
            assert_eq!(done, i + 1 == ds.len());
        }
        let mut out = vec![];
        assert!(b.finish(&mut out));
        assert!(out.len() <= MAX_DATAGRAM - TAG_LEN);
        out
    }

    #[test]
    fn rebuilds_any_one_missing_datagram() {
        let ds = datagrams();
        let pd = parity_of(&ds);
        let Ok(Packet::Parity(p)) = parse(&pd) else {
            panic!("parity does not parse")
        };
        assert_eq!((p.session, p.first_seq, p.count), (9, 100, 5));
        assert!(p.covers(100) && p.covers(104) && !p.covers(105) && !p.covers(99));
        for missing in 0..ds.len() {
            let others = ds
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, d)| d.as_slice());
            let mut out = vec![];
            assert!(p.rebuild(others, &mut out), "missing {missing}");
            assert_eq!(out, ds[missing], "missing {missing}");
        }
    }

    #[test]
    fn partial_group_and_restart() {
        let ds = datagrams();
        let mut b = ParityBuilder::new(8);
        assert!(!b.add(1, 5, &ds[0]));
        assert!(!b.add(1, 6, &ds[2]));
        assert_eq!(b.pending(), 2);
        let mut out = vec![];
        assert!(b.finish(&mut out));
        let Ok(Packet::Parity(p)) = parse(&out) else {
            panic!()
        };
        assert_eq!((p.first_seq, p.count), (5, 2));
        let mut back = vec![];
        assert!(p.rebuild([ds[0].as_slice()].into_iter(), &mut back));
        assert_eq!(back, ds[2]);
        // Nothing pending: no parity.
        assert!(!b.finish(&mut out));
        assert!(out.is_empty());
        // A datagram too long to cover restarts the group.
        assert!(!b.add(1, 7, &ds[0]));
        assert!(!b.add(1, 8, &vec![0; MAX_PROTECTED + 1]));
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn rejects_malformed_and_inconsistent() {
        let ds = datagrams();
        let pd = parity_of(&ds);
        assert!(parse(&pd[..HEAD_LEN]).is_err());
        let mut zero = pd.clone();
        zero[16] = 0;
        assert!(parse(&zero).is_err());
        let mut big = pd.clone();
        big[16] = 33;
        assert!(parse(&big).is_err());
        let mut long = pd.clone();
        long.resize(MAX_DATAGRAM, 0);
        assert!(parse(&long).is_err());
        // A length XOR that does not add up, or an "other" longer than the body: no rebuild.
        let mut bad_len = pd.clone();
        bad_len[18] ^= 0xff;
        bad_len[19] ^= 0x7f;
        let Ok(Packet::Parity(p)) = parse(&bad_len) else {
            panic!()
        };
        let mut out = vec![];
        assert!(!p.rebuild(ds[1..].iter().map(|d| d.as_slice()), &mut out));
        let Ok(Packet::Parity(p)) = parse(&pd) else {
            panic!()
        };
        let huge = vec![0u8; 1399];
        assert!(!p.rebuild([huge.as_slice()].into_iter(), &mut out));
    }
}
