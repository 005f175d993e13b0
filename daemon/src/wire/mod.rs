//! The wire format: every datagram chorus sends or receives. Pure encode/decode, no sockets.
//! Every byte is treated as hostile: parsers check lengths before reading and never panic.
//! The format is documented in docs/PROTOCOL.md; keep the two in step.

// Lengths and counts from the network must not wrap: every narrowing cast here is checked or
// says why it cannot truncate (tests aside).
#![cfg_attr(not(test), warn(clippy::cast_possible_truncation))]

pub mod auth;
pub mod fec;
pub mod flac;
mod flac_bits;
pub mod flac_encode;
#[doc(hidden)]
pub mod packet;
pub mod repair;
pub mod sync;

pub use packet::{
    Announce, AudioHeader, AudioPacket, Codec, Delivery, Heartbeat, Packet, Pcm, SampleFormat,
};
pub use sync::{SyncRequest, SyncResponse};

/// First four bytes of every chorus datagram.
pub const MAGIC: [u8; 4] = *b"CHRS";
/// Wire version this build speaks.
pub const VERSION: u8 = 1;
/// Largest datagram chorus sends (no IP fragmentation on a 1500-byte MTU).
pub const MAX_DATAGRAM: usize = 1400;
/// Length of the common prefix (magic, version, kind, reserved).
pub const PREFIX_LEN: usize = 8;

/// Why a datagram was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("datagram too short: {len} bytes, need {need}")]
    TooShort { len: usize, need: usize },
    #[error("datagram too long: {len} bytes, limit {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("bad magic (not a chorus datagram)")]
    BadMagic,
    #[error("unsupported wire version {0} (this build speaks {VERSION})")]
    UnsupportedVersion(u8),
    #[error("unknown datagram kind {0}")]
    UnknownKind(u8),
    #[error("unknown sample format code {0}")]
    BadSampleFormat(u8),
    #[error("invalid stream format: {0}")]
    BadStreamFormat(&'static str),
    #[error("payload length {got} does not match header ({expected} bytes)")]
    LengthMismatch { expected: usize, got: usize },
    #[error("heartbeat body is not valid: {0}")]
    BadHeartbeat(String),
    #[error("not authenticated: {0}")]
    Unauthenticated(&'static str),
}

/// Datagram kinds (byte 5).
pub mod kind {
    pub const AUDIO: u8 = 1;
    pub const SYNC_REQUEST: u8 = 2;
    pub const SYNC_RESPONSE: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const ANNOUNCE: u8 = 5;
    pub const REPAIR: u8 = 6;
    pub const PARITY: u8 = 7;
}

pub(crate) fn put_prefix(out: &mut Vec<u8>, kind: u8) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&[0, 0]);
}

/// Checks the common prefix and returns the datagram kind.
pub fn check_prefix(buf: &[u8]) -> Result<u8, WireError> {
    if buf.len() < PREFIX_LEN {
        return Err(WireError::TooShort {
            len: buf.len(),
            need: PREFIX_LEN,
        });
    }
    if buf.len() > MAX_DATAGRAM {
        return Err(WireError::TooLong {
            len: buf.len(),
            limit: MAX_DATAGRAM,
        });
    }
    if buf[0..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if buf[4] != VERSION {
        return Err(WireError::UnsupportedVersion(buf[4]));
    }
    Ok(buf[5])
}

/// Little-endian reader over a slice whose length was checked by the caller.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let end = self.pos + N;
        let s = self.buf.get(self.pos..end).ok_or(WireError::TooShort {
            len: self.buf.len(),
            need: end,
        })?;
        self.pos = end;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }
}
