//! FLAC frames in audio datagrams (RFC 9639): the decoder a speaker runs on every FLAC datagram.
//!
//! A datagram carries exactly one FLAC frame, decodable alone (FLAC frames are: no state
//! crosses them), so a lost datagram loses only its own frames and parity and repair work as
//! for PCM. Only the frame travels: rate, channels and bit depth are in chorus's own header,
//! and the frame must agree with it.
//!
//! Written here rather than taken from a decoder crate because it runs on the playout thread:
//! it allocates nothing per frame (one work buffer, sized once), decodes straight into the
//! jitter buffer's PCM bytes, and treats every bit as hostile (a frame's lengths, orders and
//! Rice parameters are checked against the block before they are used; both CRCs are
//! verified). The encoder is on the controller ([`super::flac_encode`]).

use super::flac_bits::{be16, crc16, crc8, Bits};
use super::SampleFormat;

/// Most samples (all channels) a FLAC datagram may carry: its PCM must fit a receive slot of
/// the speaker (2048 bytes) at 16 bits.
pub const MAX_SAMPLES: usize = MAX_PCM_BYTES / 2;
/// Most bytes a FLAC datagram's frames take as PCM of the stream's format.
pub const MAX_PCM_BYTES: usize = 2048;

/// Why a FLAC frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlacError {
    #[error("FLAC frame ends early")]
    Truncated,
    #[error("FLAC frame: {0}")]
    Invalid(&'static str),
    #[error("FLAC frame does not match the datagram's header: {0}")]
    Mismatch(&'static str),
    #[error("FLAC frame CRC does not match")]
    Crc,
}

/// What the datagram's header says the frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub rate: u32,
    pub channels: u8,
    pub format: SampleFormat,
    pub frames: usize,
}

/// Bits per sample of a format FLAC can carry (it has no 32-bit integer frames in encoders
/// we use).
pub fn bits(format: SampleFormat) -> Option<u32> {
    match format {
        SampleFormat::S16 => Some(16),
        SampleFormat::S24 => Some(24),
        SampleFormat::S32 => None,
    }
}

/// Decodes one frame at a time; holds the planar work buffer (sized once).
pub struct FlacDecoder {
    work: Vec<i32>,
}

impl Default for FlacDecoder {
    /// For datagrams: up to [`MAX_SAMPLES`] samples a frame.
    fn default() -> Self {
        Self::with_capacity(MAX_SAMPLES)
    }
}

/// The frame header's fields that matter here.
struct Header {
    block: usize,
    /// 0..=7 independent channels (count - 1), 8 left/side, 9 right/side, 10 mid/side.
    assignment: u32,
    channels: usize,
}

impl FlacDecoder {
    /// A decoder for frames of up to `samples` samples (all channels).
    pub fn with_capacity(samples: usize) -> Self {
        FlacDecoder {
            work: vec![0; samples],
        }
    }

    /// Decodes `frame` (exactly one FLAC frame, CRC-16 last) into `out` as interleaved PCM of
    /// `expect.format`; returns the bytes written. Refuses a frame whose block, channels, bit
    /// depth or rate differ from `expect`, or that does not fit `out`.
    pub fn decode(
        &mut self,
        frame: &[u8],
        expect: Expect,
        out: &mut [u8],
    ) -> Result<usize, FlacError> {
        let bps = bits(expect.format).ok_or(FlacError::Mismatch("no FLAC at 32 bits"))?;
        let ch = usize::from(expect.channels);
        let samples = expect.frames * ch;
        let bytes = samples * expect.format.bytes();
        if samples > self.work.len() || bytes > out.len() || expect.frames == 0 {
            return Err(FlacError::Mismatch(
                "more samples than a datagram may carry",
            ));
        }
        if frame.len() < 2 || crc16(&frame[..frame.len() - 2]) != be16(&frame[frame.len() - 2..]) {
            return Err(FlacError::Crc);
        }
        let mut r = Bits::new(&frame[..frame.len() - 2]);
        let h = header(&mut r, expect, bps)?;
        let work = &mut self.work[..samples];
        for (c, plane) in work.chunks_exact_mut(h.block).enumerate() {
            // The side channel of a stereo decorrelation has one bit more.
            let side = matches!((h.assignment, c), (8, 1) | (9, 0) | (10, 1));
            subframe(&mut r, bps + u32::from(side), plane)?;
        }
        if r.rest_after_padding()? != 0 {
            return Err(FlacError::Invalid("bytes after the last subframe"));
        }
        decorrelate(h.assignment, work, h.block);
        interleave(work, h.channels, h.block, expect.format, &mut out[..bytes]);
        Ok(bytes)
    }
}

/// Reads and checks the frame header (RFC 9639 §9.1), CRC-8 included.
fn header(r: &mut Bits<'_>, expect: Expect, bps: u32) -> Result<Header, FlacError> {
    let start = r.bytes_read();
    let sync = r.read(15)?;
    if sync != 0x7FFC {
        return Err(FlacError::Invalid("no frame sync code"));
    }
    let _variable = r.read(1)?;
    let (block_code, rate_code) = (r.read(4)?, r.read(4)?);
    let (assignment, depth_code) = (r.read(4)?, r.read(3)?);
    if r.read(1)? != 0 {
        return Err(FlacError::Invalid("reserved bit set"));
    }
    coded_number(r)?;
    let block = match block_code {
        1 => 192,
        2..=5 => 576 << (block_code - 2),
        6 => r.read(8)? as usize + 1,
        7 => r.read(16)? as usize + 1,
        8..=15 => 256 << (block_code - 8),
        _ => return Err(FlacError::Invalid("reserved block size")),
    };
    let rate = match rate_code {
        0 => None,
        1 => Some(88_200),
        2 => Some(176_400),
        3 => Some(192_000),
        4 => Some(8_000),
        5 => Some(16_000),
        6 => Some(22_050),
        7 => Some(24_000),
        8 => Some(32_000),
        9 => Some(44_100),
        10 => Some(48_000),
        11 => Some(96_000),
        12 => Some(r.read(8)? * 1000),
        13 => Some(r.read(16)?),
        14 => Some(r.read(16)? * 10),
        _ => return Err(FlacError::Invalid("reserved sample rate")),
    };
    let depth = match depth_code {
        0 => None,
        1 => Some(8),
        2 => Some(12),
        4 => Some(16),
        5 => Some(20),
        6 => Some(24),
        7 => Some(32),
        _ => return Err(FlacError::Invalid("reserved bit depth")),
    };
    let channels = match assignment {
        0..=7 => assignment as usize + 1,
        8..=10 => 2,
        _ => return Err(FlacError::Invalid("reserved channel assignment")),
    };
    let header_bytes = r.bytes_read() - start;
    let crc = r.read(8)?;
    if crc8(r.span(start, header_bytes)) != crc {
        return Err(FlacError::Crc);
    }
    if block != expect.frames {
        return Err(FlacError::Mismatch("block size"));
    }
    if channels != usize::from(expect.channels) {
        return Err(FlacError::Mismatch("channels"));
    }
    if depth.is_some_and(|d| d != bps) {
        return Err(FlacError::Mismatch("bit depth"));
    }
    if rate.is_some_and(|f| f != expect.rate) {
        return Err(FlacError::Mismatch("sample rate"));
    }
    Ok(Header {
        block,
        assignment,
        channels,
    })
}

/// Skips the frame or sample number (UTF-8-like, 1 to 7 bytes): chorus's header numbers
/// the frames.
fn coded_number(r: &mut Bits<'_>) -> Result<(), FlacError> {
    // The first byte's leading ones (it sits in the low 8 bits of the u32).
    let first = r.read(8)?;
    let extra = match (first << 24).leading_ones() {
        0 => 0,
        n @ 2..=7 => n - 1,
        _ => return Err(FlacError::Invalid("bad coded number")),
    };
    for _ in 0..extra {
        if r.read(8)? >> 6 != 0b10 {
            return Err(FlacError::Invalid("bad coded number"));
        }
    }
    Ok(())
}

/// One subframe (RFC 9639 §9.2) into `out` (its channel's plane, one block long).
fn subframe(r: &mut Bits<'_>, bps: u32, out: &mut [i32]) -> Result<(), FlacError> {
    if r.read(1)? != 0 {
        return Err(FlacError::Invalid("subframe padding bit set"));
    }
    let kind = r.read(6)?;
    let wasted = if r.read(1)? == 1 {
        r.unary(bps)? + 1
    } else {
        0
    };
    if wasted >= bps {
        return Err(FlacError::Invalid("all bits wasted"));
    }
    let bps = bps - wasted;
    match kind {
        0 => {
            let v = r.signed(bps)?;
            out.fill(v);
        }
        1 => {
            for s in out.iter_mut() {
                *s = r.signed(bps)?;
            }
        }
        8..=12 => fixed(r, bps, (kind - 8) as usize, out)?,
        32..=63 => lpc(r, bps, (kind - 31) as usize, out)?,
        _ => return Err(FlacError::Invalid("reserved subframe type")),
    }
    if wasted > 0 {
        for s in out.iter_mut() {
            *s = s.wrapping_shl(wasted);
        }
    }
    Ok(())
}

fn warm_up(r: &mut Bits<'_>, bps: u32, order: usize, out: &mut [i32]) -> Result<(), FlacError> {
    if order > out.len() {
        return Err(FlacError::Invalid("predictor order longer than the block"));
    }
    for s in &mut out[..order] {
        *s = r.signed(bps)?;
    }
    Ok(())
}

/// A fixed predictor (orders 0 to 4).
fn fixed(r: &mut Bits<'_>, bps: u32, order: usize, out: &mut [i32]) -> Result<(), FlacError> {
    warm_up(r, bps, order, out)?;
    residual(r, order, out)?;
    fitted(fixed_predict(out, order))
}

/// A predictor's result: whether every value fitted 32 bits.
fn fitted(fits: bool) -> Result<(), FlacError> {
    if fits {
        Ok(())
    } else {
        Err(FlacError::Invalid("prediction overflows"))
    }
}

/// The fixed predictors, each with its history in registers; false if a result overflowed.
/// (The general `predict` with these coefficients was half as fast.)
#[allow(
    clippy::cast_possible_truncation,
    reason = "the truncation is checked: false when a value does not fit"
)]
fn fixed_predict(out: &mut [i32], order: usize) -> bool {
    let mut fits = true;
    // The history is what was stored, 32 bits: a forged frame's overflowing values cannot
    // grow on in it (16 times a sample at order 4: past 64 bits within a block).
    let mut put = |s: &mut i32, v: i64| {
        *s = v as i32;
        fits &= i64::from(*s) == v;
        i64::from(*s)
    };
    let h = |i: usize| out.get(i).map_or(0, |&v| i64::from(v));
    let (mut a, mut b, mut c, mut d) = (
        h(order.wrapping_sub(1)),
        h(order.wrapping_sub(2)),
        h(order.wrapping_sub(3)),
        h(order.wrapping_sub(4)),
    );
    let Some(rest) = out.get_mut(order..) else {
        return false;
    };
    match order {
        0 => {}
        1 => rest.iter_mut().for_each(|s| a = put(s, i64::from(*s) + a)),
        2 => rest.iter_mut().for_each(|s| {
            (a, b) = (put(s, i64::from(*s) + 2 * a - b), a);
        }),
        3 => rest.iter_mut().for_each(|s| {
            (a, b, c) = (put(s, i64::from(*s) + 3 * a - 3 * b + c), a, b);
        }),
        _ => rest.iter_mut().for_each(|s| {
            (a, b, c, d) = (put(s, i64::from(*s) + 4 * a - 6 * b + 4 * c - d), a, b, c);
        }),
    }
    fits
}

/// A linear predictor with quantised coefficients (orders 1 to 32).
fn lpc(r: &mut Bits<'_>, bps: u32, order: usize, out: &mut [i32]) -> Result<(), FlacError> {
    warm_up(r, bps, order, out)?;
    let precision = r.read(4)?;
    if precision == 15 {
        return Err(FlacError::Invalid("reserved coefficient precision"));
    }
    let shift = r.signed(5)?;
    if shift < 0 {
        return Err(FlacError::Invalid("negative prediction shift"));
    }
    let mut coeffs = [0i64; 32];
    for c in &mut coeffs[..order] {
        *c = i64::from(r.signed(precision + 1)?);
    }
    residual(r, order, out)?;
    predict(out, &coeffs[..order], shift.unsigned_abs())
}

/// Adds the prediction to the residual in `out[coeffs.len()..]`: `coeffs[j]` weighs the sample
/// `j + 1` back. A result outside 32 bits is refused (a valid stream never has one). The
/// orders encoders use are unrolled (`run`): the loop over a slice of coefficients per sample
/// was most of the decoder's time.
fn predict(out: &mut [i32], coeffs: &[i64], shift: u32) -> Result<(), FlacError> {
    let fits = match coeffs.len() {
        0 => true,
        1 => run::<1>(out, coeffs, shift),
        2 => run::<2>(out, coeffs, shift),
        3 => run::<3>(out, coeffs, shift),
        4 => run::<4>(out, coeffs, shift),
        5 => run::<5>(out, coeffs, shift),
        6 => run::<6>(out, coeffs, shift),
        7 => run::<7>(out, coeffs, shift),
        8 => run::<8>(out, coeffs, shift),
        12 => run::<12>(out, coeffs, shift),
        order => (order..out.len()).all(|i| {
            let sum: i64 = coeffs
                .iter()
                .zip(out[i - order..i].iter().rev())
                .map(|(c, &s)| c * i64::from(s))
                .sum();
            store(&mut out[i], sum, shift)
        }),
    };
    fitted(fits)
}

/// `predict` for `N` coefficients; false if a result overflowed.
#[inline(always)]
fn run<const N: usize>(out: &mut [i32], coeffs: &[i64], shift: u32) -> bool {
    let Ok(c) = <[i64; N]>::try_from(coeffs) else {
        return false;
    };
    let mut fits = true;
    for i in N..out.len() {
        // A window of known length: no bounds check per coefficient.
        let w: &[i32; N] = match out[i - N..i].try_into() {
            Ok(w) => w,
            Err(_) => return false,
        };
        let mut sum = 0i64;
        for j in 0..N {
            sum += c[j] * i64::from(w[N - 1 - j]);
        }
        fits &= store(&mut out[i], sum, shift);
    }
    fits
}

/// The residual in `s` plus the prediction `sum >> shift`, if it fits 32 bits.
#[inline(always)]
#[allow(
    clippy::cast_possible_truncation,
    reason = "the truncation is checked: false when the value does not fit"
)]
fn store(s: &mut i32, sum: i64, shift: u32) -> bool {
    let v = (sum >> shift) + i64::from(*s);
    *s = v as i32;
    i64::from(*s) == v
}

/// The Rice-coded residual (RFC 9639 §9.2.7) into `out[order..]`.
fn residual(r: &mut Bits<'_>, order: usize, out: &mut [i32]) -> Result<(), FlacError> {
    let param_bits = match r.read(2)? {
        0 => 4,
        1 => 5,
        _ => return Err(FlacError::Invalid("reserved residual coding")),
    };
    let escape = (1u32 << param_bits) - 1;
    let partition_order = r.read(4)?;
    let block = out.len();
    let per = block >> partition_order;
    if per << partition_order != block || per < order {
        return Err(FlacError::Invalid("partitions do not fit the block"));
    }
    let mut at = order;
    for p in 0..(1usize << partition_order) {
        let end = (p + 1) * per;
        let param = r.read(param_bits)?;
        if param == escape {
            let width = r.read(5)?;
            for s in &mut out[at..end] {
                *s = if width == 0 { 0 } else { r.signed(width)? };
            }
        } else {
            r.rice_into(param, &mut out[at..end])?;
        }
        at = end;
    }
    Ok(())
}

/// Undoes the stereo decorrelation (planes: channel 0 then channel 1).
fn decorrelate(assignment: u32, work: &mut [i32], block: usize) {
    if !(8..=10).contains(&assignment) {
        return;
    }
    let (a, b) = work.split_at_mut(block);
    for (x, y) in a.iter_mut().zip(b.iter_mut()) {
        let (l, r) = match assignment {
            // left, side = left - right
            8 => (*x, x.wrapping_sub(*y)),
            // side = left - right, right
            9 => (x.wrapping_add(*y), *y),
            // mid = (left + right) >> 1, side = left - right
            _ => {
                let mid = (x.wrapping_shl(1)) | (*y & 1);
                (mid.wrapping_add(*y) >> 1, mid.wrapping_sub(*y) >> 1)
            }
        };
        (*x, *y) = (l, r);
    }
}

/// Planar integers to interleaved PCM bytes of `format`.
fn interleave(work: &[i32], ch: usize, block: usize, format: SampleFormat, out: &mut [u8]) {
    match format {
        SampleFormat::S16 => interleave_as::<2>(work, ch, block, out),
        SampleFormat::S24 => interleave_as::<3>(work, ch, block, out),
        SampleFormat::S32 => interleave_as::<4>(work, ch, block, out),
    }
}

/// `interleave` for samples `W` bytes wide (a copy of known length per sample).
fn interleave_as<const W: usize>(work: &[i32], ch: usize, block: usize, out: &mut [u8]) {
    if ch == 2 {
        // Stereo, the usual stream: both planes side by side, no index arithmetic.
        let (l, r) = work.split_at(block);
        for ((f, a), b) in out.chunks_exact_mut(2 * W).zip(l).zip(r) {
            f[..W].copy_from_slice(&a.to_le_bytes()[..W]);
            f[W..].copy_from_slice(&b.to_le_bytes()[..W]);
        }
        return;
    }
    for (i, frame) in out.chunks_exact_mut(ch * W).enumerate() {
        for (c, d) in frame.chunks_exact_mut(W).enumerate() {
            d.copy_from_slice(&work[c * block + i].to_le_bytes()[..W]);
        }
    }
}

#[cfg(test)]
#[path = "flac_tests.rs"]
mod tests;
