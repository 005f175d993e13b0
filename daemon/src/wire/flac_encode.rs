//! The controller's side of FLAC on the wire: one FLAC frame per audio datagram, encoded by
//! `flacenc` (pure Rust, no C library to package for arm64; about 300 × real time for 48 kHz
//! stereo on a small core, `cargo bench -p chorusd -- flac`). The samples are quantised
//! exactly as the PCM encoder does ([`super::packet::quantiser`]), so a FLAC zone plays the
//! very integers a PCM zone would.

use super::auth::TAG_LEN;
use super::fec::MAX_PROTECTED;
use super::flac::bits;
use super::packet::{encode_audio, put_audio_header, quantiser, AUDIO_HEADER_LEN};
use super::{AudioHeader, Codec, SampleFormat};
use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, StreamInfo};
use flacenc::error::{Verified, Verify};
use flacenc::source::{Fill, FrameBuf};

/// Fewest frames a FLAC frame may hold here (flacenc's limit); shorter blocks go as PCM.
pub const MIN_FRAMES: usize = 32;

/// Encodes blocks of a stream's samples to FLAC frames; keeps its buffers between blocks.
pub struct FlacEncoder {
    config: Verified<flacenc::config::Encoder>,
    info: StreamInfo,
    channels: usize,
    format: SampleFormat,
    fb: FrameBuf,
    ints: Vec<i32>,
    sink: ByteSink,
}

impl std::fmt::Debug for FlacEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlacEncoder({} ch, {:?})", self.channels, self.format)
    }
}

impl FlacEncoder {
    /// An encoder for a stream of this shape, or why FLAC cannot carry it.
    pub fn new(rate: u32, channels: u8, format: SampleFormat) -> Result<Self, String> {
        let depth = bits(format).ok_or("FLAC carries 16 or 24-bit samples, not 32")? as usize;
        let ch = usize::from(channels);
        if ch == 0 {
            return Err("no channels".into());
        }
        let info = StreamInfo::new(rate as usize, ch, depth).map_err(|e| e.to_string())?;
        let mut config = flacenc::config::Encoder::default();
        config.multithread = false;
        // Measured on music (tests/rig/codec-bench, docs/decisions/wifi.md): in a block of a
        // datagram (512 frames at 48 kHz/16, 341 at 96 kHz/24) an LPC of order 6 compresses
        // better than flacenc's 10 (less to send for the coefficients) and costs less. Above
        // 48 kHz the fixed predictors alone come within 3 % of LPC's bytes at 3 times the
        // speed (the LPC's float autocorrelation is a libm call per multiply-add on baseline
        // x86-64), so they alone are used.
        config.subframe_coding.qlpc.lpc_order = 6;
        config.subframe_coding.use_lpc = rate <= 48_000;
        let config = config.into_verified().map_err(|(_, e)| e.to_string())?;
        let fb = FrameBuf::with_size(ch, MIN_FRAMES).map_err(|e| e.to_string())?;
        let mut enc = FlacEncoder {
            config,
            info,
            channels: ch,
            format,
            fb,
            ints: Vec::new(),
            sink: ByteSink::new(),
        };
        // A trial block: flacenc refuses, at its first frame, rates a FLAC header cannot name.
        let silence = vec![0.0; MIN_FRAMES * ch];
        if !enc.encode(&silence, usize::MAX, &mut Vec::new()) {
            return Err(format!("FLAC cannot carry {rate} Hz, {channels} channels"));
        }
        Ok(enc)
    }

    /// Encodes `samples` (interleaved, whole frames) as one FLAC frame and appends it to `out`
    /// when it takes at most `room` bytes. False, with `out` unchanged, when it does not fit or
    /// the block is shorter than [`MIN_FRAMES`]: the caller sends those frames another way.
    pub fn encode(&mut self, samples: &[f32], room: usize, out: &mut Vec<u8>) -> bool {
        let frames = samples.len() / self.channels;
        if frames < MIN_FRAMES {
            return false;
        }
        let q = quantiser(self.format);
        self.ints.clear();
        self.ints
            .extend(samples[..frames * self.channels].iter().map(|&s| q(s)));
        self.fb.resize(frames);
        if self.fb.fill_interleaved(&self.ints).is_err() {
            return false;
        }
        let Ok(frame) = flacenc::encode_fixed_size_frame(&self.config, &self.fb, 0, &self.info)
        else {
            return false;
        };
        if frame.count_bits().div_ceil(8) > room {
            return false;
        }
        self.sink.clear();
        if frame.write(&mut self.sink).is_err() {
            return false;
        }
        out.extend_from_slice(self.sink.as_slice());
        true
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
