//! The controller's side of FLAC on the wire: one FLAC frame per audio datagram, encoded by
//! `flacenc` (pure Rust, no C library to package for arm64; about 300 × real time for 48 kHz
//! stereo on a small core, `cargo bench -p chorusd -- flac`). The samples are quantised
//! exactly as the PCM encoder does ([`super::packet::quantiser`]), so a FLAC zone plays the
//! very integers a PCM zone would.

use super::flac::bits;
use super::packet::quantiser;
use super::SampleFormat;
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
