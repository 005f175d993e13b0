//! The FLAC decoder's bit reader and the frame checksums (RFC 9639, sections 9.1.8 and 9.3),
//! shared by the decoder ([`super::flac`]) and the encoder ([`super::flac_encode`]).

use super::flac::FlacError;

/// A big-endian bit reader that refuses to read past its slice.
pub(super) struct Bits<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Bits { buf, pos: 0 }
    }
    pub(super) fn bytes_read(&self) -> usize {
        self.pos / 8
    }
    pub(super) fn span(&self, start: usize, len: usize) -> &'a [u8] {
        &self.buf[start..start + len]
    }
    /// The 64 bits from the byte holding `pos`, zeros past the end.
    pub(super) fn word(&self) -> u64 {
        let i = self.pos / 8;
        match self.buf.get(i..i + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().unwrap_or_default()),
            None => {
                let mut b = [0u8; 8];
                let rest = &self.buf[i.min(self.buf.len())..];
                b[..rest.len()].copy_from_slice(rest);
                u64::from_be_bytes(b)
            }
        }
    }
    /// `n` (0..=32) bits as an unsigned number.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the word is shifted right by 64 - n >= 32 bits first"
    )]
    pub(super) fn read(&mut self, n: u32) -> Result<u32, FlacError> {
        if n == 0 {
            return Ok(0);
        }
        if self.pos + n as usize > self.buf.len() * 8 {
            return Err(FlacError::Truncated);
        }
        let v = (self.word() << (self.pos % 8)) >> (64 - n);
        self.pos += n as usize;
        Ok(v as u32)
    }
    /// `n` (1..=32) bits as a two's complement number.
    pub(super) fn signed(&mut self, n: u32) -> Result<i32, FlacError> {
        let v = self.read(n)?;
        Ok(((v << (32 - n)) as i32) >> (32 - n))
    }
    /// Zeros up to the next one bit (consumed): their count, at most `limit`.
    pub(super) fn unary(&mut self, limit: u32) -> Result<u32, FlacError> {
        let mut count = 0u32;
        loop {
            if self.pos >= self.buf.len() * 8 {
                return Err(FlacError::Truncated);
            }
            let w = self.word() << (self.pos % 8);
            // Up to 56 valid bits in the word from here (more near the end are zeros, which
            // the length check above catches on the next turn).
            let zeros = w.leading_zeros().min(56);
            if zeros < 56 {
                self.pos += zeros as usize + 1;
                if self.pos > self.buf.len() * 8 {
                    return Err(FlacError::Truncated);
                }
                count = count.saturating_add(zeros);
                return if count > limit {
                    Err(FlacError::Invalid("unary run too long"))
                } else {
                    Ok(count)
                };
            }
            self.pos += 56;
            count = count.saturating_add(56);
            if count > limit {
                return Err(FlacError::Invalid("unary run too long"));
            }
        }
    }
    /// One Rice-coded residual with parameter `param` (0..=30), the long way: a unary
    /// quotient, `param` low bits, zigzag-folded. `rice_into` takes the usual ones faster.
    pub(super) fn rice(&mut self, param: u32) -> Result<i32, FlacError> {
        let q = self.unary(u32::MAX)?;
        let low = self.read(param)?;
        unfold((u64::from(q) << param) | u64::from(low))
    }

    /// Rice-coded residuals with parameter `param` (0..=30) into `out`: several from each
    /// 64-bit load (one load per residual was most of the decoder's time), without a branch
    /// per residual but the one that ends the load; one at a time near the end of the frame,
    /// or for a code longer than a load holds.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a bit offset in a byte, 0..8"
    )]
    pub(super) fn rice_into(&mut self, param: u32, out: &mut [i32]) -> Result<(), FlacError> {
        debug_assert!(param <= 30);
        let mut k = 0;
        // Every folded value ORed: one past 32 bits is a residual that overflows.
        let mut folded = 0u64;
        while k < out.len() {
            let at = self.pos / 8;
            let Some(word) = self.buf.get(at..at + 8) else {
                break;
            };
            let skip = (self.pos % 8) as u32;
            let mut w = u64::from_be_bytes(word.try_into().unwrap_or_default()) << skip;
            let mut left = 64 - skip;
            let first = k;
            for s in &mut out[k..] {
                let q = w.leading_zeros();
                let used = q + 1 + param;
                if used > left {
                    break;
                }
                // used <= left <= 64, so q <= 63: no shift below reaches 64.
                let rest = (w << q) << 1;
                let low = (rest >> 1) >> (63 - param);
                w = rest << param;
                left -= used;
                let u = (u64::from(q) << param) | low;
                folded |= u;
                *s = unfold32(u);
                k += 1;
            }
            self.pos += (64 - skip - left) as usize;
            if k == first {
                // A code longer than the load: the long way.
                out[k] = self.rice(param)?;
                k += 1;
            }
        }
        if folded >> 32 != 0 {
            return Err(FlacError::Invalid("residual overflows"));
        }
        for s in &mut out[k..] {
            *s = self.rice(param)?;
        }
        Ok(())
    }

    /// Skips the zero padding to the byte boundary; the count of whole bytes left after it.
    pub(super) fn rest_after_padding(&mut self) -> Result<usize, FlacError> {
        let pad = [0, 7, 6, 5, 4, 3, 2, 1][self.pos % 8];
        if self.read(pad)? != 0 {
            return Err(FlacError::Invalid("padding bits set"));
        }
        Ok(self.buf.len() - self.pos / 8)
    }
}

/// A zigzag-folded residual back to its signed value, if it fits 32 bits.
pub(super) fn unfold(u: u64) -> Result<i32, FlacError> {
    if u >> 32 != 0 {
        return Err(FlacError::Invalid("residual overflows"));
    }
    Ok(unfold32(u))
}

/// `unfold` of a value known to be below 2^32 (else its high bits are lost).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "below 2^32, u >> 1 fits 31 bits and u & 1 one"
)]
fn unfold32(u: u64) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

pub(super) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// CRC-8, polynomial x^8 + x^2 + x + 1, initial 0 (the frame header's).
pub(super) fn crc8(data: &[u8]) -> u32 {
    let mut crc = 0u16;
    for &b in data {
        crc = CRC8[usize::from(crc ^ u16::from(b))];
    }
    u32::from(crc)
}

/// CRC-16, polynomial x^16 + x^15 + x^2 + 1, initial 0 (the whole frame's): eight bytes a
/// step ("slicing by eight": `CRC16_AFTER[k]` is a byte's CRC followed by k zero bytes), so
/// the eight lookups of a step do not wait on each other; over a frame this is a third of the
/// time of a byte at a time.
pub(super) fn crc16(data: &[u8]) -> u16 {
    let t = &CRC16_AFTER;
    let mut crc = 0u16;
    let mut steps = data.chunks_exact(8);
    for b in &mut steps {
        let x = |k: usize, i: usize| t[k][usize::from(b[i])];
        crc = t[7][usize::from((crc >> 8) ^ u16::from(b[0]))]
            ^ t[6][usize::from((crc & 0xFF) ^ u16::from(b[1]))]
            ^ x(5, 2)
            ^ x(4, 3)
            ^ x(3, 4)
            ^ x(2, 5)
            ^ x(1, 6)
            ^ x(0, 7);
    }
    for &b in steps.remainder() {
        crc = (crc << 8) ^ t[0][usize::from((crc >> 8) ^ u16::from(b))];
    }
    crc
}

const CRC8: [u16; 256] = crc_table(0x07, 8);
const CRC16_AFTER: [[u16; 256]; 8] = crc16_slices();

/// Entry `[k][i]`: the CRC-16 of byte `i` followed by `k` zero bytes.
const fn crc16_slices() -> [[u16; 256]; 8] {
    let mut t = [crc_table(0x8005, 16); 8];
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let c = t[k - 1][i];
            t[k][i] = (c << 8) ^ t[0][(c >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// The table of an MSB-first CRC of `width` bits (8 or 16) with polynomial `poly`: entry `i`
/// is the CRC of byte `i`.
#[allow(
    clippy::cast_possible_truncation,
    reason = "table index below 256; values masked to the CRC's width"
)]
const fn crc_table(poly: u16, width: u32) -> [u16; 256] {
    let (top, mask) = (1u32 << (width - 1), (1u32 << width) - 1);
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << (width - 8);
        let mut k = 0;
        while k < 8 {
            c = if c & top != 0 {
                (c << 1) ^ poly as u32
            } else {
                c << 1
            } & mask;
            k += 1;
        }
        t[i] = c as u16;
        i += 1;
    }
    t
}
