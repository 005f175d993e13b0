//! The controller's side of FLAC on the wire: one FLAC frame per audio datagram, with the
//! fixed polynomial predictors (orders 0 to 4) and partitioned Rice coding, as libFLAC's lower
//! levels (Snapcast's encoder) do. Written here, not taken from `flacenc` as at first: its
//! linear prediction cost 5 ms of the controller's CPU per second of 48 kHz stereo on this
//! machine (the float autocorrelation is a libm call per multiply-add on baseline x86-64), and
//! its fixed predictors alone 2.5 ms, where these take a tenth of that for the same bytes
//! (docs/decisions/wifi.md). The samples are quantised exactly as the PCM encoder does
//! ([`super::packet::quantiser`]), so a FLAC zone plays the very integers a PCM zone would;
//! the speaker's decoder ([`super::flac`]) reads any FLAC frame, not only these.

use super::auth::TAG_LEN;
use super::fec::MAX_PROTECTED;
use super::flac::bits;
use super::flac_bits::{crc16, crc8};
use super::packet::{encode_audio, put_audio_header, quantiser, AUDIO_HEADER_LEN};
use super::{AudioHeader, Codec, SampleFormat};

/// Fewest frames a FLAC frame holds here; shorter blocks go as PCM.
pub const MIN_FRAMES: usize = 32;
/// Most frames a FLAC frame's header can name.
const MAX_FRAMES: usize = 65_536;
/// Rice partitions: at most 2^this many per subframe.
const MAX_PARTITION_ORDER: u32 = 6;

/// Encodes blocks of a stream's samples to FLAC frames; keeps its buffers between blocks.
#[derive(Debug)]
pub struct FlacEncoder {
    channels: usize,
    format: SampleFormat,
    bps: u32,
    /// The header's sample rate code and the bits after it (count, value).
    rate_code: (u32, u32, u32),
    /// Planar samples: each channel a block long; then mid and side for stereo.
    planes: Vec<i32>,
    residual: Vec<u32>,
    w: BitWriter,
}

/// How one channel goes: its plane, the bits per sample there, and its predictor's order
/// (None: verbatim; Some(None): constant).
#[derive(Debug, Clone, Copy)]
struct Choice {
    plane: usize,
    bps: u32,
    order: Option<Option<usize>>,
    cost: u64,
}

impl FlacEncoder {
    /// An encoder for a stream of this shape, or why FLAC cannot carry it.
    pub fn new(rate: u32, channels: u8, format: SampleFormat) -> Result<Self, String> {
        let bps = bits(format).ok_or("FLAC carries 16 or 24-bit samples, not 32")?;
        let ch = usize::from(channels);
        if !(1..=8).contains(&ch) {
            return Err(format!("FLAC carries 1 to 8 channels, not {ch}"));
        }
        let rate_code = rate_code(rate).ok_or(format!("FLAC cannot carry {rate} Hz"))?;
        Ok(FlacEncoder {
            channels: ch,
            format,
            bps,
            rate_code,
            planes: Vec::new(),
            residual: Vec::new(),
            w: BitWriter::default(),
        })
    }

    /// Encodes `samples` (interleaved, whole frames) as one FLAC frame and appends it to `out`
    /// when it takes at most `room` bytes. False, with `out` unchanged, when it does not fit or
    /// the block is shorter than [`MIN_FRAMES`]: the caller sends those frames another way.
    pub fn encode(&mut self, samples: &[f32], room: usize, out: &mut Vec<u8>) -> bool {
        let (ch, n) = (self.channels, samples.len() / self.channels);
        if !(MIN_FRAMES..=MAX_FRAMES).contains(&n) {
            return false;
        }
        let planes = if ch == 2 { 4 } else { ch };
        self.planes.resize(planes * n, 0);
        let q = quantiser(self.format);
        for (i, frame) in samples.chunks_exact(ch).enumerate() {
            for (c, &s) in frame.iter().enumerate() {
                self.planes[c * n + i] = q(s);
            }
        }
        let (assignment, choices) = self.choose(n);
        self.w.clear();
        self.header(n, assignment);
        for c in &choices[..ch] {
            self.subframe(c, n);
        }
        self.w.align();
        let crc = crc16(self.w.bytes());
        self.w.put(u32::from(crc), 16);
        if self.w.bytes().len() > room {
            return false;
        }
        out.extend_from_slice(self.w.bytes());
        true
    }

    /// The channel assignment (independent, or for stereo left/side, side/right or mid/side,
    /// whichever costs least) and each channel's choice.
    fn choose(&mut self, n: usize) -> (u32, [Choice; 8]) {
        let none = Choice {
            plane: 0,
            bps: self.bps,
            order: None,
            cost: 0,
        };
        let mut choices = [none; 8];
        if self.channels != 2 {
            for (c, choice) in choices.iter_mut().take(self.channels).enumerate() {
                *choice = best_predictor(&self.planes[c * n..(c + 1) * n], c, self.bps);
            }
            // 1 to 8 channels (`new`): independent, their count less one.
            return (u32::try_from(self.channels - 1).unwrap_or(0), choices);
        }
        let (lr, ms) = self.planes.split_at_mut(2 * n);
        let (l, r) = lr.split_at(n);
        let (m, s) = ms.split_at_mut(n);
        for i in 0..n {
            // Side has a bit more than the channels; mid as FLAC defines it.
            s[i] = l[i] - r[i];
            m[i] = (l[i] + r[i]) >> 1;
        }
        let c: [Choice; 4] = std::array::from_fn(|p| {
            let bps = self.bps + u32::from(p == 3);
            best_predictor(&self.planes[p * n..(p + 1) * n], p, bps)
        });
        // independent, left/side, side/right, mid/side
        let options = [
            (1, [c[0], c[1]]),
            (8, [c[0], c[3]]),
            (9, [c[3], c[1]]),
            (10, [c[2], c[3]]),
        ];
        let (assignment, pair) = options
            .into_iter()
            .min_by_key(|(_, p)| p[0].cost + p[1].cost)
            .unwrap_or((1, [c[0], c[1]]));
        (choices[0], choices[1]) = (pair[0], pair[1]);
        (assignment, choices)
    }

    /// The frame header (RFC 9639 §9.1), its CRC-8 last.
    fn header(&mut self, n: usize, assignment: u32) {
        self.w.put(0xFFF8, 16); // sync code, fixed block size
        let big = n > 256;
        self.w.put(if big { 7 } else { 6 }, 4);
        self.w.put(self.rate_code.0, 4);
        self.w.put(assignment, 4);
        self.w.put(if self.bps == 16 { 4 } else { 6 }, 3);
        self.w.put(0, 1);
        self.w.put(0, 8); // frame number 0: chorus's header numbers the frames
        self.w
            .put(u32::try_from(n - 1).unwrap_or(0), if big { 16 } else { 8 });
        if self.rate_code.1 > 0 {
            self.w.put(self.rate_code.2, self.rate_code.1);
        }
        let crc = crc8(self.w.bytes());
        self.w.put(crc, 8);
    }

    /// One subframe (RFC 9639 §9.2): constant, verbatim or fixed with its residual.
    fn subframe(&mut self, c: &Choice, n: usize) {
        let x = &self.planes[c.plane * n..(c.plane + 1) * n];
        match c.order {
            Some(None) => {
                self.w.put(0, 8);
                self.w.put_signed(x[0], c.bps);
            }
            None => {
                self.w.put(0b0000_0010, 8);
                for &v in x {
                    self.w.put_signed(v, c.bps);
                }
            }
            Some(Some(order)) => {
                self.w.put((8 + u32::try_from(order).unwrap_or(0)) << 1, 8);
                for &v in &x[..order] {
                    self.w.put_signed(v, c.bps);
                }
                self.residual.clear();
                self.residual
                    .extend((order..n).map(|i| zigzag(predicted(x, i, order))));
                rice(&mut self.w, &self.residual, n, order);
            }
        }
    }
}

/// The header's code for `rate`, and the bits that follow it (count, value).
fn rate_code(rate: u32) -> Option<(u32, u32, u32)> {
    let named = [
        (88_200, 1),
        (176_400, 2),
        (192_000, 3),
        (8_000, 4),
        (16_000, 5),
        (22_050, 6),
        (24_000, 7),
        (32_000, 8),
        (44_100, 9),
        (48_000, 10),
        (96_000, 11),
    ];
    if let Some(&(_, code)) = named.iter().find(|(r, _)| *r == rate) {
        return Some((code, 0, 0));
    }
    match rate {
        r if r % 1000 == 0 && r / 1000 < 256 => Some((12, 8, r / 1000)),
        r if (1..65_536).contains(&r) => Some((13, 16, r)),
        r if r % 10 == 0 && r / 10 < 65_536 => Some((14, 16, r / 10)),
        _ => None,
    }
}

/// The residual of the fixed predictor of `order` at sample `i` (i >= order).
#[inline(always)]
fn predicted(x: &[i32], i: usize, order: usize) -> i32 {
    match order {
        0 => x[i],
        1 => x[i] - x[i - 1],
        2 => x[i] - 2 * x[i - 1] + x[i - 2],
        3 => x[i] - 3 * x[i - 1] + 3 * x[i - 2] - x[i - 3],
        _ => x[i] - 4 * x[i - 1] + 6 * x[i - 2] - 4 * x[i - 3] + x[i - 4],
    }
}

fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// The fixed order whose residual is smallest (sum of magnitudes from sample 4 on, as libFLAC
/// chooses), or a constant or verbatim subframe when that costs less; with its cost in bits
/// (an estimate for the Rice coding, from one parameter for the whole block).
fn best_predictor(x: &[i32], plane: usize, bps: u32) -> Choice {
    let n = x.len();
    let verbatim = Choice {
        plane,
        bps,
        order: None,
        cost: n as u64 * u64::from(bps),
    };
    if x.iter().all(|&v| v == x[0]) {
        return Choice {
            order: Some(None),
            cost: u64::from(bps),
            ..verbatim
        };
    }
    let mut sums = [0u64; 5];
    for i in 4..n {
        let e0 = i64::from(x[i]);
        let e1 = e0 - i64::from(x[i - 1]);
        let e2 = e1 - (i64::from(x[i - 1]) - i64::from(x[i - 2]));
        let d2 = i64::from(x[i - 1]) - 2 * i64::from(x[i - 2]) + i64::from(x[i - 3]);
        let e3 = e2 - d2;
        let d3 = d2 - (i64::from(x[i - 2]) - 2 * i64::from(x[i - 3]) + i64::from(x[i - 4]));
        let e4 = e3 - d3;
        for (s, e) in sums.iter_mut().zip([e0, e1, e2, e3, e4]) {
            *s += e.unsigned_abs();
        }
    }
    let (order, sum) = (0..5)
        .map(|o| (o, sums[o]))
        .min_by_key(|&(_, s)| s)
        .unwrap_or((0, 0));
    let count = (n - 4).max(1) as u64;
    // Zigzag doubles the magnitudes: a parameter near log2 of their mean.
    let k = param_for(2 * sum, count);
    let cost = 6 + order as u64 * u64::from(bps) + n as u64 * (u64::from(k) + 1) + ((2 * sum) >> k);
    if cost < verbatim.cost {
        Choice {
            order: Some(Some(order)),
            cost,
            ..verbatim
        }
    } else {
        verbatim
    }
}

/// A Rice parameter for `count` values summing to `sum`: the bits of their mean, less one.
fn param_for(sum: u64, count: u64) -> u32 {
    let mean = sum / count.max(1);
    (64 - mean.leading_zeros()).saturating_sub(1).min(30)
}

/// The residual (zigzag-folded, from sample `order` on) as partitioned Rice codes: the
/// partition order whose estimated bits are fewest, a parameter per partition.
fn rice(w: &mut BitWriter, res: &[u32], n: usize, order: usize) {
    // Sums of the finest partitions that fit, then coarser ones add them up.
    let mut top = 0;
    while top < MAX_PARTITION_ORDER && n % (2 << top) == 0 && (n >> (top + 1)) > order {
        top += 1;
    }
    let mut sums = [0u64; 1 << MAX_PARTITION_ORDER];
    let per = n >> top;
    for (p, s) in sums.iter_mut().take(1 << top).enumerate() {
        let (a, b) = ((p * per).saturating_sub(order), (p + 1) * per - order);
        *s = res[a..b].iter().map(|&u| u64::from(u)).sum();
    }
    let (mut best, mut best_bits) = (0, u64::MAX);
    for po in (0..=top).rev() {
        let parts = 1usize << po;
        let span = 1usize << (top - po);
        let per = (n >> po) as u64;
        let bits: u64 = (0..parts)
            .map(|p| {
                let sum: u64 = sums[p * span..(p + 1) * span].iter().sum();
                let count = if p == 0 { per - order as u64 } else { per };
                let k = param_for(sum, count);
                5 + count * (u64::from(k) + 1) + (sum >> k)
            })
            .sum();
        if bits < best_bits {
            (best, best_bits) = (po, bits);
        }
    }
    let parts = 1usize << best;
    let span = 1usize << (top - best);
    let per = n >> best;
    let params: [u32; 1 << MAX_PARTITION_ORDER] = std::array::from_fn(|p| {
        if p >= parts {
            return 0;
        }
        let sum: u64 = sums[p * span..(p + 1) * span].iter().sum();
        let count = if p == 0 { per - order } else { per };
        param_for(sum, count as u64)
    });
    // Parameters up to 14 take 4 bits; larger ones (24-bit residuals) 5.
    let wide = params[..parts].iter().any(|&k| k >= 15);
    w.put(u32::from(wide), 2);
    w.put(best, 4);
    let mut at = 0;
    for (p, &k) in params[..parts].iter().enumerate() {
        w.put(k, if wide { 5 } else { 4 });
        let end = (p + 1) * per - order;
        for &u in &res[at..end] {
            w.put_rice(u, k);
        }
        at = end;
    }
}

/// A big-endian bit writer into a byte vector.
#[derive(Debug, Default)]
struct BitWriter {
    buf: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn clear(&mut self) {
        self.buf.clear();
        (self.acc, self.n) = (0, 0);
    }
    /// The whole bytes written.
    fn bytes(&self) -> &[u8] {
        &self.buf
    }
    /// The low `bits` (0..=32) bits of `v`.
    #[allow(clippy::cast_possible_truncation, reason = "one byte at a time")]
    fn put(&mut self, v: u32, bits: u32) {
        if bits == 0 {
            return;
        }
        self.acc = (self.acc << bits) | (u64::from(v) & ((1u64 << bits) - 1));
        self.n += bits;
        while self.n >= 8 {
            self.n -= 8;
            self.buf.push((self.acc >> self.n) as u8);
        }
    }
    fn put_signed(&mut self, v: i32, bits: u32) {
        self.put(v as u32, bits);
    }
    /// `u` Rice-coded with parameter `k`: `u >> k` zeros, a one, the low `k` bits.
    fn put_rice(&mut self, u: u32, k: u32) {
        let mut q = u >> k;
        let code = (1 << k) | (u & ((1 << k) - 1));
        if q + k < 32 {
            // The quotient's zeros are the leading zeros of one wider field.
            self.put(code, q + k + 1);
            return;
        }
        while q >= 32 {
            self.put(0, 32);
            q -= 32;
        }
        self.put(0, q);
        self.put(code, k + 1);
    }
    /// Zeros to the next byte boundary.
    fn align(&mut self) {
        let pad = (8 - self.n % 8) % 8;
        self.put(0, pad);
    }
}

/// Room for a FLAC frame in an audio datagram (with a tag, under a parity datagram's limit).
pub const FLAC_ROOM: usize = MAX_PROTECTED - AUDIO_HEADER_LEN - TAG_LEN;

/// What [`build_datagram`] put in the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    /// Frames it carries (of those offered).
    pub frames: usize,
    /// A FLAC stream's block went as PCM.
    pub fallback: bool,
}

/// Builds the next audio datagram of a stream into `out`: `head` with its codec and frame
/// count set, and the first frames of `samples` (interleaved, whole frames). With an encoder,
/// a FLAC frame of all of them if it fits a datagram, else of half, else of a quarter (a
/// half always fits: its PCM is half of the 2 KiB a speaker decodes into, and FLAC stores
/// what it cannot predict verbatim); PCM of at most `pcm_max` frames otherwise (blocks under
/// 32 frames, the end of a fade or of a stream), or without one.
pub fn build_datagram(
    flac: Option<&mut FlacEncoder>,
    head: AudioHeader,
    samples: &[f32],
    pcm_max: usize,
    out: &mut Vec<u8>,
) -> Built {
    let ch = usize::from(head.channels.max(1));
    let left = samples.len() / ch;
    let with = |codec, frames: usize| AudioHeader {
        codec,
        frames: u16::try_from(frames).unwrap_or(u16::MAX),
        ..head
    };
    let fallback = flac.is_some();
    if let Some(enc) = flac {
        for n in [left, left / 2, left / 4] {
            put_audio_header(&with(Codec::Flac, n), out);
            if n <= usize::from(u16::MAX) && enc.encode(&samples[..n * ch], FLAC_ROOM, out) {
                return Built {
                    frames: n,
                    fallback: false,
                };
            }
        }
    }
    let n = left.min(pcm_max);
    encode_audio(&with(Codec::Pcm, n), &samples[..n * ch], out);
    Built {
        frames: n,
        fallback,
    }
}
