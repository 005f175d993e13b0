//! Audio and heartbeat datagrams.

use super::{check_prefix, kind, put_prefix, Reader, WireError, PREFIX_LEN};
use crate::clock::ControllerNs;
use serde::{Deserialize, Serialize};

pub use chorus_api::{Codec, Delivery, SampleFormat};

/// Encoding and decoding PCM of a [`SampleFormat`] on the wire (the format itself is an API
/// type: the zone's status shows it).
pub trait Pcm: Sized {
    /// Encodes float samples in [-1, 1) to this format, appending to `out`. Out-of-range
    /// samples are clipped.
    fn encode(self, samples: &[f32], out: &mut Vec<u8>);
    /// Decodes bytes of this format to float samples, appending to `out`. A trailing partial
    /// sample is ignored (callers check lengths first).
    fn decode(self, bytes: &[u8], out: &mut Vec<f32>);
    /// Decodes bytes of this format into `out`, as many samples as both hold (the speaker
    /// decodes a datagram's frames straight into the period being filled). Returns the count.
    fn decode_into(self, bytes: &[u8], out: &mut [f32]) -> usize;
}

impl Pcm for SampleFormat {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "samples: clamped to the format's range before they narrow"
    )]
    fn encode(self, samples: &[f32], out: &mut Vec<u8>) {
        let quantise = quantiser(self);
        // Written into room made up front, one loop per format: no capacity check or format
        // branch per sample.
        let start = out.len();
        out.resize(start + samples.len() * self.bytes(), 0);
        let room = &mut out[start..];
        match self {
            SampleFormat::S16 => {
                for (d, &s) in room.chunks_exact_mut(2).zip(samples) {
                    d.copy_from_slice(&(quantise(s) as i16).to_le_bytes());
                }
            }
            SampleFormat::S24 => {
                for (d, &s) in room.chunks_exact_mut(3).zip(samples) {
                    d.copy_from_slice(&quantise(s).to_le_bytes()[..3]);
                }
            }
            SampleFormat::S32 => {
                for (d, &s) in room.chunks_exact_mut(4).zip(samples) {
                    d.copy_from_slice(&quantise(s).to_le_bytes());
                }
            }
        }
    }
    fn decode(self, bytes: &[u8], out: &mut Vec<f32>) {
        let n = bytes.len() / self.bytes();
        out.reserve(n);
        let written = decode_uninit(self, bytes, &mut out.spare_capacity_mut()[..n]);
        // SAFETY: `decode_uninit` wrote the first `written` (= n) elements of the spare room.
        unsafe { out.set_len(out.len() + written) };
    }

    fn decode_into(self, bytes: &[u8], out: &mut [f32]) -> usize {
        // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the decoder only writes
        // initialised values: every element stays a valid f32.
        let out = unsafe {
            std::slice::from_raw_parts_mut(
                out.as_mut_ptr().cast::<std::mem::MaybeUninit<f32>>(),
                out.len(),
            )
        };
        decode_uninit(self, bytes, out)
    }
}

/// A float sample in [-1, 1) as the format's integer: rounded half away from zero by
/// truncating v ± 0.5 (`f64::round` is a libm call on baseline x86-64); `as` saturates, the
/// clip is an integer clamp. What PCM datagrams carry, and what FLAC frames encode.
#[allow(
    clippy::cast_possible_truncation,
    reason = "clamped to the format's range (at most 32 bits) before it narrows"
)]
pub(crate) fn quantiser(f: SampleFormat) -> impl Fn(f32) -> i32 {
    let scale = f64::from(scale(f));
    let (min, max) = (-scale as i64, scale as i64 - 1);
    move |s: f32| {
        let v = f64::from(s) * scale;
        ((v + 0.5f64.copysign(v)) as i64).clamp(min, max) as i32
    }
}

fn code(f: SampleFormat) -> u8 {
    match f {
        SampleFormat::S16 => 1,
        SampleFormat::S24 => 2,
        SampleFormat::S32 => 3,
    }
}
fn from_code(c: u8) -> Result<SampleFormat, WireError> {
    match c {
        1 => Ok(SampleFormat::S16),
        2 => Ok(SampleFormat::S24),
        3 => Ok(SampleFormat::S32),
        other => Err(WireError::BadSampleFormat(other)),
    }
}
/// Full-scale value for float conversion.
fn scale(f: SampleFormat) -> f32 {
    match f {
        SampleFormat::S16 => 32_768.0,
        SampleFormat::S24 => 8_388_608.0,
        SampleFormat::S32 => 2_147_483_648.0,
    }
}
/// Writes the first `min(bytes / sample size, out.len())` samples of `out`; returns that
/// count.
#[allow(
    clippy::cast_possible_truncation,
    reason = "a 32-bit sample scaled to [-1, 1) in f64, then to f32: rounding, no wrap"
)]
fn decode_uninit(f: SampleFormat, bytes: &[u8], out: &mut [std::mem::MaybeUninit<f32>]) -> usize {
    // 16 and 24-bit values and the power-of-two scale are exact in f32: no need for f64.
    let inv32 = 1.0 / scale(f);
    let inv = 1.0 / scale(f) as f64;
    let n = (bytes.len() / f.bytes()).min(out.len());
    let (bytes, dst) = (&bytes[..n * f.bytes()], &mut out[..n]);
    match f {
        SampleFormat::S16 => {
            for (b, d) in bytes.chunks_exact(2).zip(dst) {
                d.write(i16::from_le_bytes([b[0], b[1]]) as f32 * inv32);
            }
        }
        SampleFormat::S24 => {
            // Every sample but the last is read with a 4-byte load at its offset (the extra
            // byte is the next sample's, shifted out): the loop vectorises, 3-5x faster than
            // assembling each value from three bytes. The last sample has no byte after it.
            let Some(last) = n.checked_sub(1) else {
                return 0;
            };
            // Scaled by 1/256 more: the value sits in the top 24 bits of the i32.
            let inv_top = inv32 / 256.0;
            let (head, tail) = dst.split_at_mut(last);
            for (i, d) in head.iter_mut().enumerate() {
                let w: [u8; 4] = bytes[3 * i..3 * i + 4].try_into().unwrap_or_default();
                d.write(((u32::from_le_bytes(w) << 8) as i32) as f32 * inv_top);
            }
            let b = &bytes[3 * last..];
            tail[0].write((i32::from_le_bytes([0, b[0], b[1], b[2]])) as f32 * inv_top);
        }
        SampleFormat::S32 => {
            for (b, d) in bytes.chunks_exact(4).zip(dst) {
                d.write((i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64 * inv) as f32);
            }
        }
    }
    n
}

/// Fixed part of an audio datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioHeader {
    /// Stream session: changes when the controller restarts.
    pub session: u32,
    /// Datagram sequence number within the session (wraps).
    pub seq: u32,
    /// Stream index of the first frame in this datagram; increases by one per frame, never reused
    /// within a session.
    pub frame_index: u64,
    /// Controller time at which the first frame must be heard.
    pub pts: ControllerNs,
    /// Frames per second.
    pub rate: u32,
    /// Interleaved channels.
    pub channels: u8,
    /// Sample encoding (of the PCM, or of what the FLAC frame decodes to).
    pub format: SampleFormat,
    /// How the payload carries the frames.
    pub codec: Codec,
    /// Frames in the payload.
    pub frames: u16,
}

/// Length of the audio header including the common prefix.
pub const AUDIO_HEADER_LEN: usize = 40;

/// A parsed audio datagram (payload still encoded, borrowed from the datagram: parsing
/// allocates nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioPacket<'a> {
    pub header: AudioHeader,
    pub payload: &'a [u8],
}

/// Bit 7 of the sample format byte: the payload is one FLAC frame.
const FLAC_BIT: u8 = 0x80;

impl AudioHeader {
    /// Bytes of PCM the frames take (the payload's length, for PCM).
    pub fn pcm_len(&self) -> usize {
        self.frames as usize * self.channels as usize * self.format.bytes()
    }
    /// Most frames one FLAC datagram may carry: their PCM must fit what a speaker decodes
    /// into (`super::flac::MAX_PCM_BYTES`).
    pub fn max_flac_frames(channels: u8, format: SampleFormat) -> usize {
        (super::flac::MAX_PCM_BYTES / (channels as usize * format.bytes()).max(1))
            .min(usize::from(u16::MAX))
    }
    /// Whether the payload's length agrees with the header: exactly the PCM's for PCM; for
    /// FLAC, a frame (not empty, within a datagram) of at most `max_flac_frames`.
    fn check_payload(&self, len: usize) -> Result<(), WireError> {
        match self.codec {
            Codec::Pcm if len != self.pcm_len() => Err(WireError::LengthMismatch {
                expected: self.pcm_len(),
                got: len,
            }),
            Codec::Flac if super::flac::bits(self.format).is_none() => {
                Err(WireError::BadStreamFormat("FLAC of 32-bit samples"))
            }
            Codec::Flac
                if self.frames == 0
                    || usize::from(self.frames)
                        > Self::max_flac_frames(self.channels, self.format)
                    || len == 0 =>
            {
                Err(WireError::BadStreamFormat("FLAC frame count out of range"))
            }
            _ => Ok(()),
        }
    }
    /// Largest frame count that fits one datagram for this format, with room for an
    /// authentication tag, and small enough for a parity datagram to cover it.
    pub fn max_frames(channels: u8, format: SampleFormat) -> usize {
        (super::fec::MAX_PROTECTED - AUDIO_HEADER_LEN - super::auth::TAG_LEN)
            / (channels as usize * format.bytes()).max(1)
    }
}

/// Writes an audio datagram into `out` (cleared first). `samples` are interleaved floats,
/// encoded as PCM (`h.codec` must be PCM; a FLAC payload follows [`put_audio_header`]).
pub fn encode_audio(h: &AudioHeader, samples: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(h.codec, Codec::Pcm);
    put_audio_header(h, out);
    h.format.encode(samples, out);
}

/// Writes an audio datagram's header into `out` (cleared first); the payload follows.
pub fn put_audio_header(h: &AudioHeader, out: &mut Vec<u8>) {
    out.clear();
    put_prefix(out, kind::AUDIO);
    out.extend_from_slice(&h.session.to_le_bytes());
    out.extend_from_slice(&h.seq.to_le_bytes());
    out.extend_from_slice(&h.frame_index.to_le_bytes());
    out.extend_from_slice(&h.pts.0.to_le_bytes());
    out.extend_from_slice(&h.rate.to_le_bytes());
    out.push(h.channels);
    let flac = if h.codec == Codec::Flac { FLAC_BIT } else { 0 };
    out.push(code(h.format) | flac);
    out.extend_from_slice(&h.frames.to_le_bytes());
    debug_assert_eq!(out.len(), AUDIO_HEADER_LEN);
}

fn parse_audio(buf: &[u8]) -> Result<AudioPacket<'_>, WireError> {
    if buf.len() < AUDIO_HEADER_LEN {
        return Err(WireError::TooShort {
            len: buf.len(),
            need: AUDIO_HEADER_LEN,
        });
    }
    let mut r = Reader::new(buf, PREFIX_LEN);
    let session = r.u32()?;
    let seq = r.u32()?;
    let frame_index = r.u64()?;
    let pts = ControllerNs(r.i64()?);
    let rate = r.u32()?;
    let channels = r.u8()?;
    let format_byte = r.u8()?;
    let codec = if format_byte & FLAC_BIT != 0 {
        Codec::Flac
    } else {
        Codec::Pcm
    };
    let format = from_code(format_byte & !FLAC_BIT)?;
    let frames = r.u16()?;
    if !(8_000..=384_000).contains(&rate) {
        return Err(WireError::BadStreamFormat("rate outside 8000..=384000 Hz"));
    }
    if channels == 0 || channels > 8 {
        return Err(WireError::BadStreamFormat("channels outside 1..=8"));
    }
    if frame_index > i64::MAX as u64 / 2 {
        return Err(WireError::BadStreamFormat("frame index out of range"));
    }
    let header = AudioHeader {
        session,
        seq,
        frame_index,
        pts,
        rate,
        channels,
        format,
        codec,
        frames,
    };
    let payload = r.rest();
    header.check_payload(payload.len())?;
    Ok(AudioPacket { header, payload })
}

/// What a speaker tells its controller about itself, once a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Speaker name (unique in the zone).
    pub name: String,
    /// TCP port of the speaker's HTTP API (same address as the datagram's source).
    pub api_port: u16,
    /// Volume 0..=100.
    pub volume: u8,
    pub muted: bool,
    /// Clock model locked to the controller.
    pub locked: bool,
    /// Last measured playout error, microseconds (None until playing).
    pub sync_error_us: Option<f64>,
    /// The stream the speaker plays, `group:port` (absent from older speakers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// When it was sent, controller ns as the speaker's clock model has it (absent before the
    /// model locks, and from older speakers): a replayed heartbeat is stale, so it cannot move
    /// the speaker's entry to another address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ns: Option<i64>,
    /// UDP port (on the heartbeat's source address) where the speaker takes its zone's
    /// datagrams by unicast (absent from older speakers: multicast only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unicast_port: Option<u16>,
    /// How it asks to get them (absent: multicast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// Largest heartbeat body accepted.
pub const MAX_HEARTBEAT_BODY: usize = 512;

/// Writes a heartbeat datagram.
pub fn encode_heartbeat(hb: &Heartbeat) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    put_prefix(&mut out, kind::HEARTBEAT);
    // Serialising a plain struct of strings and numbers cannot fail.
    out.extend_from_slice(serde_json::to_vec(hb).unwrap_or_default().as_slice());
    out
}

fn parse_heartbeat(buf: &[u8]) -> Result<Heartbeat, WireError> {
    let body = &buf[PREFIX_LEN..];
    if body.len() > MAX_HEARTBEAT_BODY {
        return Err(WireError::TooLong {
            len: body.len(),
            limit: MAX_HEARTBEAT_BODY,
        });
    }
    let hb: Heartbeat =
        serde_json::from_slice(body).map_err(|e| WireError::BadHeartbeat(e.to_string()))?;
    if hb.name.is_empty()
        || hb.name.len() > 64
        || hb.name.chars().any(char::is_control)
        || hb.volume > 100
        || hb.stream.as_ref().is_some_and(|s| s.len() > 32)
        || hb.unicast_port == Some(0)
    {
        return Err(WireError::BadHeartbeat(
            "name must be 1..=64 bytes without control characters, volume 0..=100, stream at \
             most 32 bytes, unicast port not 0"
                .into(),
        ));
    }
    Ok(hb)
}

/// The controller's beacon on the zone's group, twice a second: where to find its sync
/// service, even while nothing plays. `sent_ns` (the controller's clock) tells a replayed
/// beacon from a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce {
    pub session: u32,
    pub sync_port: u16,
    pub sent_ns: i64,
}

/// Length of an announce datagram.
pub const ANNOUNCE_LEN: usize = 24;

/// Writes an announce datagram.
pub fn encode_announce(a: &Announce) -> Vec<u8> {
    let mut out = Vec::with_capacity(ANNOUNCE_LEN);
    put_prefix(&mut out, kind::ANNOUNCE);
    out.extend_from_slice(&a.session.to_le_bytes());
    out.extend_from_slice(&a.sync_port.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&a.sent_ns.to_le_bytes());
    out
}

fn parse_announce(buf: &[u8]) -> Result<Announce, WireError> {
    if buf.len() != ANNOUNCE_LEN {
        return Err(WireError::LengthMismatch {
            expected: ANNOUNCE_LEN,
            got: buf.len(),
        });
    }
    let mut r = Reader::new(buf, PREFIX_LEN);
    let session = r.u32()?;
    let sync_port = r.u16()?;
    if sync_port == 0 {
        return Err(WireError::BadStreamFormat("sync port 0"));
    }
    r.u16()?;
    let sent_ns = r.i64()?;
    Ok(Announce {
        session,
        sync_port,
        sent_ns,
    })
}

/// Any chorus datagram.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet<'a> {
    Audio(AudioPacket<'a>),
    SyncRequest(super::SyncRequest),
    SyncResponse(super::SyncResponse),
    Heartbeat(Heartbeat),
    Announce(Announce),
    Repair(super::repair::RepairRequest),
    Parity(super::fec::Parity<'a>),
}

/// Parses one datagram.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, WireError> {
    match check_prefix(buf)? {
        kind::AUDIO => parse_audio(buf).map(Packet::Audio),
        kind::SYNC_REQUEST => super::sync::parse_request(buf).map(Packet::SyncRequest),
        kind::SYNC_RESPONSE => super::sync::parse_response(buf).map(Packet::SyncResponse),
        kind::HEARTBEAT => parse_heartbeat(buf).map(Packet::Heartbeat),
        kind::ANNOUNCE => parse_announce(buf).map(Packet::Announce),
        kind::REPAIR => super::repair::parse_repair(buf).map(Packet::Repair),
        kind::PARITY => super::fec::parse_parity(buf).map(Packet::Parity),
        other => Err(WireError::UnknownKind(other)),
    }
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
