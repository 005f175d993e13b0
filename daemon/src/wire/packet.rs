//! Audio and heartbeat datagrams.

use super::{check_prefix, kind, put_prefix, Reader, WireError, PREFIX_LEN};
use crate::clock::ControllerNs;
use serde::{Deserialize, Serialize};

/// PCM sample encodings on the wire (always little-endian, interleaved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleFormat {
    /// Signed 16-bit.
    S16,
    /// Signed 24-bit, packed in 3 bytes.
    S24,
    /// Signed 32-bit.
    S32,
}

impl SampleFormat {
    /// Bytes per sample on the wire.
    pub fn bytes(self) -> usize {
        match self {
            SampleFormat::S16 => 2,
            SampleFormat::S24 => 3,
            SampleFormat::S32 => 4,
        }
    }
    /// Significant bits.
    pub fn bits(self) -> u16 {
        match self {
            SampleFormat::S16 => 16,
            SampleFormat::S24 => 24,
            SampleFormat::S32 => 32,
        }
    }
    fn code(self) -> u8 {
        match self {
            SampleFormat::S16 => 1,
            SampleFormat::S24 => 2,
            SampleFormat::S32 => 3,
        }
    }
    fn from_code(c: u8) -> Result<Self, WireError> {
        match c {
            1 => Ok(SampleFormat::S16),
            2 => Ok(SampleFormat::S24),
            3 => Ok(SampleFormat::S32),
            other => Err(WireError::BadSampleFormat(other)),
        }
    }
    /// Full-scale value for float conversion.
    fn scale(self) -> f32 {
        match self {
            SampleFormat::S16 => 32_768.0,
            SampleFormat::S24 => 8_388_608.0,
            SampleFormat::S32 => 2_147_483_648.0,
        }
    }
    /// Encodes float samples in [-1, 1) to this format, appending to `out`. Out-of-range
    /// samples are clipped.
    pub fn encode(self, samples: &[f32], out: &mut Vec<u8>) {
        let scale = self.scale() as f64;
        let (min, max) = (-scale as i64, scale as i64 - 1);
        // Rounded half away from zero by truncating v ± 0.5 (`f64::round` is a libm call on
        // baseline x86-64); `as` saturates, the clip is an integer clamp.
        let quantise = |s: f32| {
            let v = s as f64 * scale;
            ((v + 0.5f64.copysign(v)) as i64).clamp(min, max) as i32
        };
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
    /// Decodes bytes of this format to float samples, appending to `out`. A trailing partial
    /// sample is ignored (callers check lengths first).
    pub fn decode(self, bytes: &[u8], out: &mut Vec<f32>) {
        let n = bytes.len() / self.bytes();
        out.reserve(n);
        let written = self.decode_uninit(bytes, &mut out.spare_capacity_mut()[..n]);
        // SAFETY: `decode_uninit` wrote the first `written` (= n) elements of the spare room.
        unsafe { out.set_len(out.len() + written) };
    }

    /// Decodes bytes of this format into `out`, as many samples as both hold (the speaker
    /// decodes a datagram's frames straight into the period being filled). Returns the count.
    pub fn decode_into(self, bytes: &[u8], out: &mut [f32]) -> usize {
        // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the decoder only writes
        // initialised values: every element stays a valid f32.
        let out = unsafe {
            std::slice::from_raw_parts_mut(
                out.as_mut_ptr().cast::<std::mem::MaybeUninit<f32>>(),
                out.len(),
            )
        };
        self.decode_uninit(bytes, out)
    }

    /// Writes the first `min(bytes / sample size, out.len())` samples of `out`; returns that
    /// count.
    fn decode_uninit(self, bytes: &[u8], out: &mut [std::mem::MaybeUninit<f32>]) -> usize {
        // 16 and 24-bit values and the power-of-two scale are exact in f32: no need for f64.
        let inv32 = 1.0 / self.scale();
        let inv = 1.0 / self.scale() as f64;
        let n = (bytes.len() / self.bytes()).min(out.len());
        let (bytes, dst) = (&bytes[..n * self.bytes()], &mut out[..n]);
        match self {
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
    /// Sample encoding.
    pub format: SampleFormat,
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

impl AudioHeader {
    /// Payload bytes this header announces.
    pub fn payload_len(&self) -> usize {
        self.frames as usize * self.channels as usize * self.format.bytes()
    }
    /// Largest frame count that fits one datagram for this format, with room for an
    /// authentication tag, and small enough for a parity datagram to cover it.
    pub fn max_frames(channels: u8, format: SampleFormat) -> usize {
        (super::fec::MAX_PROTECTED - AUDIO_HEADER_LEN - super::auth::TAG_LEN)
            / (channels as usize * format.bytes()).max(1)
    }
}

/// Writes an audio datagram into `out` (cleared first). `samples` are interleaved floats.
pub fn encode_audio(h: &AudioHeader, samples: &[f32], out: &mut Vec<u8>) {
    out.clear();
    put_prefix(out, kind::AUDIO);
    out.extend_from_slice(&h.session.to_le_bytes());
    out.extend_from_slice(&h.seq.to_le_bytes());
    out.extend_from_slice(&h.frame_index.to_le_bytes());
    out.extend_from_slice(&h.pts.0.to_le_bytes());
    out.extend_from_slice(&h.rate.to_le_bytes());
    out.push(h.channels);
    out.push(h.format.code());
    out.extend_from_slice(&h.frames.to_le_bytes());
    debug_assert_eq!(out.len(), AUDIO_HEADER_LEN);
    h.format.encode(samples, out);
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
    let format = SampleFormat::from_code(r.u8()?)?;
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
        frames,
    };
    let payload = r.rest();
    if payload.len() != header.payload_len() {
        return Err(WireError::LengthMismatch {
            expected: header.payload_len(),
            got: payload.len(),
        });
    }
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
    {
        return Err(WireError::BadHeartbeat(
            "name must be 1..=64 bytes without control characters, volume 0..=100, stream at \
             most 32 bytes"
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
mod tests {
    use super::*;

    fn header(frames: u16, format: SampleFormat) -> AudioHeader {
        AudioHeader {
            session: 7,
            seq: 42,
            frame_index: 123_456,
            pts: ControllerNs(-5_000_000_123),
            rate: 48_000,
            channels: 2,
            format,
            frames,
        }
    }

    #[test]
    fn encode_rounds_like_round_and_clips() {
        let mut inputs: Vec<f32> = (0..200_001)
            .map(|i| (i as f32 / 100_000.0 - 1.0) * 1.01)
            .collect();
        inputs.extend((-32_768..32_767).map(|k| (k as f32 + 0.5) / 32_768.0));
        inputs.extend([0.0, -0.0, 1.0, -1.0, f32::MAX, f32::MIN, 1e-12, -1e-12]);
        for format in [SampleFormat::S16, SampleFormat::S24, SampleFormat::S32] {
            let scale = format.scale() as f64;
            let mut got = Vec::new();
            format.encode(&inputs, &mut got);
            let mut want = Vec::new();
            for &s in &inputs {
                let v = (s as f64 * scale).round().clamp(-scale, scale - 1.0) as i32;
                want.extend_from_slice(&v.to_le_bytes()[..format.bytes()]);
            }
            assert!(got == want, "{format:?}");
        }
    }

    #[test]
    fn decode_gives_each_value_exactly_at_any_length() {
        // 24-bit: extremes, signs and every byte pattern position, in runs of 0 to 9 samples
        // (the decoder takes four at a time and the rest one by one).
        let values: Vec<i32> = [-(1 << 23), (1 << 23) - 1, -1, 0, 1, 0x12_3456, -0x65_4321]
            .into_iter()
            .chain((0..200).map(|i| (i * 83_117 % (1 << 24)) - (1 << 23)))
            .collect();
        for n in 0..10 {
            for start in 0..values.len() - n {
                let run = &values[start..start + n];
                let bytes: Vec<u8> = run
                    .iter()
                    .flat_map(|v| v.to_le_bytes()[..3].to_vec())
                    .collect();
                let mut out = vec![9.0];
                SampleFormat::S24.decode(&bytes, &mut out);
                let want: Vec<f32> = std::iter::once(9.0)
                    .chain(run.iter().map(|&v| v as f32 / 8_388_608.0))
                    .collect();
                assert_eq!(out, want, "{run:?}");
                // Into a slice: as many as it holds, the rest of it untouched.
                let mut into = vec![7.0f32; n + 1];
                assert_eq!(SampleFormat::S24.decode_into(&bytes, &mut into), n);
                assert_eq!(&into[..n], &want[1..]);
                assert_eq!(into[n], 7.0);
                if n > 0 {
                    let mut short = vec![7.0f32; n - 1];
                    assert_eq!(SampleFormat::S24.decode_into(&bytes, &mut short), n - 1);
                    assert_eq!(&short[..], &want[1..n]);
                }
            }
        }
    }

    #[test]
    fn audio_round_trip_all_formats() {
        for format in [SampleFormat::S16, SampleFormat::S24, SampleFormat::S32] {
            let h = header(4, format);
            let samples = [0.0, -1.0, 0.5, -0.25, 0.999, 0.001, -0.5, 0.125];
            let mut buf = Vec::new();
            encode_audio(&h, &samples, &mut buf);
            let Packet::Audio(p) = parse(&buf).unwrap() else {
                panic!("not audio")
            };
            assert_eq!(p.header, h);
            let mut back = Vec::new();
            format.decode(p.payload, &mut back);
            for (a, b) in samples.iter().zip(&back) {
                assert!((a - b).abs() < 1.0 / 30_000.0, "{format:?} {a} {b}");
            }
        }
    }

    #[test]
    fn s16_is_bit_exact() {
        let samples: Vec<f32> = (-32768..32768)
            .step_by(7)
            .map(|v| v as f32 / 32768.0)
            .collect();
        let mut bytes = Vec::new();
        SampleFormat::S16.encode(&samples, &mut bytes);
        let mut back = Vec::new();
        SampleFormat::S16.decode(&bytes, &mut back);
        assert_eq!(samples, back);
    }

    #[test]
    fn max_frames_fit_a_datagram() {
        for format in [SampleFormat::S16, SampleFormat::S24, SampleFormat::S32] {
            for ch in 1..=8u8 {
                let n = AudioHeader::max_frames(ch, format);
                assert!(
                    AUDIO_HEADER_LEN
                        + n * ch as usize * format.bytes()
                        + super::super::auth::TAG_LEN
                        <= super::super::fec::MAX_PROTECTED
                );
            }
        }
    }

    #[test]
    fn rejects_malformed() {
        let mut buf = Vec::new();
        encode_audio(&header(2, SampleFormat::S16), &[0.0; 4], &mut buf);
        assert!(matches!(
            parse(&buf[..buf.len() - 1]),
            Err(WireError::LengthMismatch { .. })
        ));
        assert!(matches!(parse(&buf[..20]), Err(WireError::TooShort { .. })));
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert_eq!(parse(&bad), Err(WireError::BadMagic));
        let mut bad = buf.clone();
        bad[4] = 9;
        assert_eq!(parse(&bad), Err(WireError::UnsupportedVersion(9)));
        let mut bad = buf.clone();
        bad[5] = 77;
        assert_eq!(parse(&bad), Err(WireError::UnknownKind(77)));
        let mut bad = buf.clone();
        bad[37] = 0;
        assert_eq!(parse(&bad), Err(WireError::BadSampleFormat(0)));
        let mut bad = buf.clone();
        bad[36] = 0;
        assert!(matches!(parse(&bad), Err(WireError::BadStreamFormat(_))));
        let mut bad = buf.clone();
        bad[38] = 0xff;
        bad[39] = 0xff;
        assert!(matches!(parse(&bad), Err(WireError::LengthMismatch { .. })));
        let mut bad = buf.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse(&bad), Err(WireError::BadStreamFormat(_))));
        assert!(matches!(parse(&[0u8; 3]), Err(WireError::TooShort { .. })));
        assert!(matches!(
            parse(&vec![0u8; 5000]),
            Err(WireError::TooLong { .. })
        ));
    }

    #[test]
    fn announce_round_trip() {
        let a = Announce {
            session: 77,
            sync_port: 7701,
            sent_ns: -5_000_000_123,
        };
        let b = encode_announce(&a);
        assert_eq!(b.len(), ANNOUNCE_LEN);
        assert_eq!(parse(&b).unwrap(), Packet::Announce(a));
        assert!(parse(&b[..16]).is_err());
        let mut zero = b.clone();
        zero[12] = 0;
        zero[13] = 0;
        assert!(parse(&zero).is_err());
    }

    #[test]
    fn heartbeat_round_trip_and_rejects() {
        let hb = Heartbeat {
            name: "kitchen".into(),
            api_port: 7781,
            volume: 80,
            muted: false,
            locked: true,
            sync_error_us: Some(3.5),
            stream: Some("239.255.77.1:4010".into()),
            sent_ns: Some(1_234_567_890),
        };
        assert_eq!(
            parse(&encode_heartbeat(&hb)).unwrap(),
            Packet::Heartbeat(hb.clone())
        );
        let mut bad = encode_heartbeat(&hb);
        bad.truncate(bad.len() - 3);
        assert!(matches!(parse(&bad), Err(WireError::BadHeartbeat(_))));
        let loud = Heartbeat {
            volume: 101,
            ..hb.clone()
        };
        assert!(matches!(
            parse(&encode_heartbeat(&loud)),
            Err(WireError::BadHeartbeat(_))
        ));
        let long = Heartbeat {
            stream: Some("x".repeat(33)),
            ..hb.clone()
        };
        assert!(matches!(
            parse(&encode_heartbeat(&long)),
            Err(WireError::BadHeartbeat(_))
        ));
        // A name with an escape sequence (it would reach a terminal through chorusctl).
        let esc = Heartbeat {
            name: "kit\u{1b}[2Jchen".into(),
            ..hb.clone()
        };
        assert!(matches!(
            parse(&encode_heartbeat(&esc)),
            Err(WireError::BadHeartbeat(_))
        ));
        // An older speaker's heartbeat has no stream.
        let legacy = encode_heartbeat(&Heartbeat { stream: None, ..hb });
        assert!(!String::from_utf8_lossy(&legacy).contains("stream"));
        assert!(matches!(parse(&legacy), Ok(Packet::Heartbeat(h)) if h.stream.is_none()));
    }

    /// Mutations of valid datagrams of every kind (bit flips, byte overwrites with extreme
    /// values, truncations, extensions, splices) through the one entry point the network uses:
    /// never a panic, and whatever parses is self-consistent. A deterministic stand-in for the
    /// fuzzer that runs in every test run.
    #[test]
    fn mutated_datagrams_never_panic_and_parse_consistently() {
        let mut valid: Vec<Vec<u8>> = vec![];
        for format in [SampleFormat::S16, SampleFormat::S24, SampleFormat::S32] {
            let mut out = vec![];
            let samples: Vec<f32> = (0..480).map(|i| (i as f32 / 480.0) - 0.5).collect();
            encode_audio(&header(240, format), &samples, &mut out);
            valid.push(out);
        }
        valid.push(encode_heartbeat(&Heartbeat {
            name: "kitchen".into(),
            api_port: 7780,
            volume: 40,
            muted: false,
            locked: true,
            sync_error_us: Some(-3.5),
            stream: Some("239.255.77.2:4010".into()),
            sent_ns: None,
        }));
        valid.push(encode_announce(&Announce {
            session: 9,
            sync_port: 7701,
            sent_ns: 1_000_000_000,
        }));
        valid.push(
            crate::wire::SyncRequest {
                id: 5,
                t1: crate::clock::LocalNs(123),
                proof: 0,
            }
            .encode(),
        );
        let mut repair = crate::wire::repair::RepairRequest::new(3);
        for s in [1, 2, 40, 41] {
            repair.push(s);
        }
        let mut d = Vec::new();
        repair.encode_into(&mut d);
        valid.push(d);
        let mut fec = crate::wire::fec::ParityBuilder::new(2);
        fec.add(3, 7, &valid[0]);
        fec.add(3, 8, &valid[1]);
        let mut d = Vec::new();
        fec.finish(&mut d);
        valid.push(d);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let extremes = [0u8, 1, 0x7f, 0x80, 0xfe, 0xff];
        let mut parsed = 0;
        for round in 0..60_000 {
            let base = &valid[round % valid.len()];
            let mut d = base.clone();
            for _ in 0..1 + rnd() % 4 {
                let r = rnd();
                match r % 6 {
                    0 if !d.is_empty() => {
                        let i = (r >> 8) as usize % d.len();
                        d[i] ^= 1 << ((r >> 40) % 8);
                    }
                    1 if !d.is_empty() => {
                        let i = (r >> 8) as usize % d.len();
                        d[i] = extremes[(r >> 40) as usize % extremes.len()];
                    }
                    2 => {
                        let n = (r >> 8) as usize % (d.len() + 1);
                        d.truncate(n);
                    }
                    3 => d.extend((0..(r >> 8) % 64).map(|k| (k as u8).wrapping_mul(31))),
                    4 => {
                        let other = &valid[(r >> 8) as usize % valid.len()];
                        let cut = (r >> 24) as usize % (d.len().min(other.len()) + 1);
                        d.truncate(cut);
                        d.extend_from_slice(&other[cut..]);
                    }
                    _ => {
                        // a length or count field at its extreme: every 16-bit word of the header
                        let i = ((r >> 8) as usize % 20) * 2;
                        if i + 1 < d.len() {
                            d[i] = 0xff;
                            d[i + 1] = 0xff;
                        }
                    }
                }
            }
            if let Ok(p) = parse(&d) {
                parsed += 1;
                match p {
                    Packet::Audio(a) => {
                        assert_eq!(a.payload.len(), a.header.payload_len(), "{a:?}");
                        assert!(
                            a.header.payload_len() + AUDIO_HEADER_LEN <= crate::wire::MAX_DATAGRAM
                        );
                        let mut samples = vec![];
                        a.header.format.decode(a.payload, &mut samples);
                        assert!(samples.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
                    }
                    Packet::Heartbeat(h) => {
                        assert!(h.volume <= 100, "{h:?}");
                        assert!(!h.name.is_empty() && h.name.len() <= 64, "{h:?}");
                    }
                    Packet::Repair(q) => {
                        assert!(!q.is_empty() && q.seqs().len() <= 32, "{q:?}");
                    }
                    Packet::Parity(p) => {
                        // Rebuilding from whatever is at hand never panics.
                        let mut out = vec![];
                        let others = valid.iter().take(p.count as usize - 1);
                        if p.rebuild(others.map(|d| d.as_slice()), &mut out) {
                            assert!(out.len() <= crate::wire::fec::MAX_PROTECTED);
                        }
                    }
                    _ => {}
                }
            }
        }
        // Some mutations (flips in sample bytes) must still parse: the test exercised both sides.
        assert!(parsed > 1_000, "only {parsed} mutated datagrams parsed");
    }
}
