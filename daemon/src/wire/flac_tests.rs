use super::super::flac_encode::FlacEncoder;
use super::super::packet::quantiser;
use super::super::Pcm;
use super::*;

/// A signal with some of everything: two tones, noise, a step; per channel a little
/// different (so stereo decorrelation has work), at `amp` of full scale.
fn signal(frames: usize, ch: usize, amp: f32, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    let mut noise = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x as f32 / u32::MAX as f32) - 0.5
    };
    (0..frames * ch)
        .map(|i| {
            let (n, c) = ((i / ch) as f32, (i % ch) as f32);
            let tone = (n * 0.031 * (1.0 + c * 0.1)).sin() * 0.6 + (n * 0.27).sin() * 0.2;
            let step = if n as usize > frames / 2 { 0.1 } else { -0.1 };
            amp * (tone + step + 0.1 * noise())
        })
        .collect()
}

fn expect(frames: usize, ch: u8, format: SampleFormat) -> Expect {
    Expect {
        rate: 48_000,
        channels: ch,
        format,
        frames,
    }
}

/// Encodes with our encoder, decodes here, and compares with the PCM the same samples make.
fn round_trip(samples: &[f32], ch: u8, format: SampleFormat) -> usize {
    let frames = samples.len() / usize::from(ch);
    let mut enc = FlacEncoder::new(48_000, ch, format).expect("encoder");
    let mut frame = Vec::new();
    assert!(enc.encode(samples, usize::MAX, &mut frame));
    let mut pcm = Vec::new();
    format.encode(samples, &mut pcm);
    let mut out = vec![0u8; pcm.len()];
    let n = FlacDecoder::with_capacity(samples.len())
        .decode(&frame, expect(frames, ch, format), &mut out)
        .expect("decodes");
    assert_eq!(n, pcm.len());
    assert!(out == pcm, "decoded PCM differs ({ch} ch, {format:?})");
    frame.len()
}

#[test]
fn encoded_frames_decode_to_the_exact_pcm() {
    for (ch, format, frames) in [
        (2, SampleFormat::S16, 512),
        (2, SampleFormat::S16, 256),
        (2, SampleFormat::S16, 33),
        (1, SampleFormat::S16, 1024),
        (2, SampleFormat::S24, 341),
        (6, SampleFormat::S24, 113),
    ] {
        for (amp, seed) in [(0.5, 1), (1.2, 2), (0.001, 3)] {
            round_trip(&signal(frames, ch, amp, seed), ch as u8, format);
        }
        // Silence (constant subframes), a full-scale square (clipped), and samples whose low
        // bits are all zero (wasted bits).
        round_trip(&vec![0.0; frames * ch], ch as u8, format);
        let square: Vec<f32> = (0..frames * ch)
            .map(|i| if (i / ch / 7) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        round_trip(&square, ch as u8, format);
        let coarse: Vec<f32> = signal(frames, ch, 0.5, 4)
            .iter()
            .map(|s| (s * 64.0).round() / 64.0)
            .collect();
        round_trip(&coarse, ch as u8, format);
    }
}

/// A FLAC stream of our encoder's frames: STREAMINFO, then the frames numbered 0, 1, ...
/// (the encoder numbers every frame 0: chorus's header numbers them).
fn stream_of(samples: &[f32], ch: u8, format: SampleFormat, block: usize) -> Vec<u8> {
    let mut enc = FlacEncoder::new(48_000, ch, format).expect("encoder");
    let mut stream = b"fLaC".to_vec();
    stream.extend([0x80, 0, 0, 34]);
    stream.extend((block as u16).to_be_bytes());
    stream.extend((block as u16).to_be_bytes());
    stream.extend([0; 6]);
    let total = (samples.len() / usize::from(ch)) as u64;
    let bits = u64::from(format.bits());
    let packed = (48_000u64 << 44) | (u64::from(ch) - 1) << 41 | (bits - 1) << 36 | total;
    stream.extend(packed.to_be_bytes());
    stream.extend([0; 16]);
    for (k, chunk) in samples.chunks(block * usize::from(ch)).enumerate() {
        let mut f = Vec::new();
        assert!(enc.encode(chunk, usize::MAX, &mut f));
        f[4] = k as u8;
        let crc_at = if block > 256 { 7 } else { 6 };
        f[crc_at] = crc8(&f[..crc_at]) as u8;
        let end = f.len() - 2;
        let crc = crc16(&f[..end]);
        f[end..].copy_from_slice(&crc.to_be_bytes());
        stream.extend(f);
    }
    stream
}

#[test]
fn encoded_frames_decode_under_symphonia() {
    // Another decoder than ours: the encoder writes FLAC, not a private dialect of it.
    for (ch, format, block) in [
        (2, SampleFormat::S16, 512),
        (2, SampleFormat::S24, 341),
        (1, SampleFormat::S16, 256),
        (6, SampleFormat::S24, 113),
    ] {
        let mut samples = signal(block * 5, ch, 0.5, 5);
        // A silent block (constant subframes) and a clipped one.
        samples.extend(vec![0.0; block * ch]);
        samples.extend(signal(block, ch, 3.0, 6));
        let stream = stream_of(&samples, ch as u8, format, block);
        let q = quantiser(format);
        let want: Vec<i32> = samples.iter().map(|&s| q(s)).collect();
        let got = symphonia_decodes(stream, format.bits().into());
        assert_eq!(got.len(), want.len(), "{ch} ch {format:?}");
        assert!(
            got == want,
            "{ch} ch {format:?}: symphonia decodes other samples"
        );
    }
}

#[test]
fn music_like_signal_compresses() {
    let samples = signal(512, 2, 0.3, 9);
    let len = round_trip(&samples, 2, SampleFormat::S16);
    assert!(len < 2048 * 9 / 10, "{len} bytes for 2048 of PCM");
}

/// Block size and rate of the frame header at `data[0..]` (the codes these fixtures use).
fn block_and_rate(data: &[u8]) -> (usize, u32) {
    let block = match data[2] >> 4 {
        c @ 8..=15 => 256usize << (c - 8),
        // In the header after the number (a last, shorter frame): tried from 4096 down.
        6 | 7 => 4096,
        c => panic!("block code {c}"),
    };
    let rate = match data[2] & 15 {
        9 => 44_100,
        10 => 48_000,
        c => panic!("rate code {c}"),
    };
    (block, rate)
}

/// Every sample of a file as symphonia decodes it, at `bits` bits.
fn symphonia_samples(path: &str, bits: u32) -> Vec<i32> {
    symphonia_decodes(std::fs::read(path).expect("fixture"), bits)
}

/// Every sample of a FLAC stream as symphonia decodes it, at `bits` bits.
fn symphonia_decodes(stream: Vec<u8>, bits: u32) -> Vec<i32> {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::io::MediaSourceStream;
    let source = std::io::Cursor::new(stream);
    let mss = MediaSourceStream::new(Box::new(source), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &symphonia::core::probe::Hint::new(),
            mss,
            &Default::default(),
            &Default::default(),
        )
        .expect("probe");
    let mut format = probed.format;
    let track = format.default_track().expect("track").clone();
    let mut dec = symphonia::default::get_codecs()
        .make(&track.codec_params, &Default::default())
        .expect("decoder");
    let mut out = vec![];
    while let Ok(p) = format.next_packet() {
        let d = dec.decode(&p).expect("decode");
        let mut sb = SampleBuffer::<i32>::new(d.capacity() as u64, *d.spec());
        sb.copy_interleaved_ref(d);
        out.extend(sb.samples().iter().map(|s| s >> (32 - bits)));
    }
    out
}

/// The frames of a FLAC file made by another encoder (libFLAC, through sox), each cut where
/// the next one starts (the decode checks both CRCs: a false sync code fails), decoded here:
/// the same samples as symphonia's.
fn file_decodes_like_symphonia(path: &str, ch: u8, format: SampleFormat) {
    let data = std::fs::read(path).expect("fixture");
    // "fLaC", then metadata blocks (the last has bit 7 of its type set).
    let mut pos = 4;
    loop {
        let last = data[pos] & 0x80 != 0;
        let len = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]);
        pos += 4 + len as usize;
        if last {
            break;
        }
    }
    let (mut dec, mut out) = (
        FlacDecoder::with_capacity(8 * 4096),
        vec![0u8; 8 * 4096 * 4],
    );
    let (mut ours, mut frames_seen) = (Vec::<i32>::new(), 0);
    let q = quantiser(format);
    while pos < data.len() {
        let (block, rate) = block_and_rate(&data[pos..]);
        let ends = (pos + 2..data.len() - 1)
            .filter(|&i| data[i] == 0xFF && data[i + 1] & 0xFE == 0xF8)
            .chain([data.len()]);
        let decoded = ends.into_iter().find_map(|end| {
            // The last frame may be shorter than the block (its size is then in the header,
            // which says so: try each).
            let sizes: Vec<usize> = if end == data.len() {
                (1..=block).rev().collect()
            } else {
                vec![block]
            };
            sizes.into_iter().find_map(|frames| {
                let e = Expect {
                    rate,
                    channels: ch,
                    format,
                    frames,
                };
                dec.decode(&data[pos..end], e, &mut out)
                    .ok()
                    .map(|n| (end, n))
            })
        });
        let (end, n) = decoded.expect("a frame decodes");
        let mut f = Vec::new();
        format.decode(&out[..n], &mut f);
        ours.extend(f.iter().map(|&s| q(s)));
        frames_seen += 1;
        pos = end;
    }
    let theirs = symphonia_samples(path, format.bits().into());
    assert!(frames_seen > 1);
    assert_eq!(ours.len(), theirs.len(), "{path}");
    assert!(ours == theirs, "{path}: samples differ from symphonia's");
}

#[test]
fn frames_of_another_encoder_decode_like_symphonia() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/");
    file_decodes_like_symphonia(
        &format!("{dir}tone_44k1_s16_stereo.flac"),
        2,
        SampleFormat::S16,
    );
    file_decodes_like_symphonia(&format!("{dir}tone_48k_s24_5.1.flac"), 6, SampleFormat::S24);
}

/// A valid frame, and the header it was made for.
fn valid_frame() -> (Vec<u8>, Expect) {
    let samples = signal(512, 2, 0.5, 5);
    let mut enc = FlacEncoder::new(48_000, 2, SampleFormat::S16).expect("encoder");
    let mut frame = Vec::new();
    assert!(enc.encode(&samples, usize::MAX, &mut frame));
    (frame, expect(512, 2, SampleFormat::S16))
}

#[test]
fn damaged_frames_are_refused() {
    let (frame, e) = valid_frame();
    let mut out = vec![0u8; MAX_PCM_BYTES];
    let mut dec = FlacDecoder::default();
    assert!(dec.decode(&frame, e, &mut out).is_ok());
    // Every single flipped bit: the CRCs (or the header's checks) refuse it.
    for bit in 0..frame.len() * 8 {
        let mut f = frame.clone();
        f[bit / 8] ^= 0x80 >> (bit % 8);
        assert!(dec.decode(&f, e, &mut out).is_err(), "bit {bit} flipped");
    }
    // Every truncation, and bytes added.
    for len in 0..frame.len() {
        assert!(
            dec.decode(&frame[..len], e, &mut out).is_err(),
            "cut to {len}"
        );
    }
    let mut longer = frame.clone();
    longer.push(0);
    assert!(dec.decode(&longer, e, &mut out).is_err());
}

#[test]
fn frames_that_disagree_with_the_header_are_refused() {
    let (frame, e) = valid_frame();
    let mut out = vec![0u8; MAX_PCM_BYTES];
    let mut dec = FlacDecoder::default();
    for wrong in [
        Expect { frames: 511, ..e },
        Expect { channels: 1, ..e },
        Expect { rate: 44_100, ..e },
        Expect {
            format: SampleFormat::S24,
            ..e
        },
        Expect {
            format: SampleFormat::S32,
            ..e
        },
    ] {
        assert!(
            matches!(
                dec.decode(&frame, wrong, &mut out),
                Err(FlacError::Mismatch(_))
            ),
            "{wrong:?}"
        );
    }
    // Room for less than the frame decodes to.
    assert!(dec.decode(&frame, e, &mut out[..2047]).is_err());
}

/// Frames whose CRCs are right but whose contents are not (a forger can compute CRCs): the
/// decoder refuses or decodes them, never panics, never writes past the frame's PCM.
#[test]
fn forged_frames_with_valid_crcs_never_panic() {
    let (frame, e) = valid_frame();
    let mut out = vec![0u8; MAX_PCM_BYTES + 8];
    let mut dec = FlacDecoder::default();
    let mut x = 0x9E37_79B9u32;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let mut f = frame.clone();
        // Keep the header (its CRC-8 covers it) and scramble a few body bytes.
        // The whole body (its CRC-16 recomputed) half the time, else a shorter one.
        let len = if x & 1 == 0 {
            f.len() - 2
        } else {
            7 + (x as usize % (f.len() - 9))
        };
        for k in 0..1 + (x >> 24) as usize % 4 {
            let i = 6 + (x as usize >> (k * 3)) % (len - 6);
            f[i] ^= (x >> (8 + k)) as u8 | 1;
        }
        f.truncate(len);
        let crc = crc16(&f);
        f.extend_from_slice(&crc.to_be_bytes());
        out[MAX_PCM_BYTES..].fill(0xEE);
        if let Ok(n) = dec.decode(&f, e, &mut out[..MAX_PCM_BYTES]) {
            assert_eq!(n, 2048);
        }
        assert!(out[MAX_PCM_BYTES..].iter().all(|&b| b == 0xEE));
    }
}

/// Bits, most significant first, packed into bytes (a frame built by hand).
#[derive(Default)]
struct Bitstream(Vec<bool>);

impl Bitstream {
    fn put(&mut self, v: u64, n: u32) {
        self.0.extend((0..n).rev().map(|i| v >> i & 1 == 1));
    }
    fn bytes(&self) -> Vec<u8> {
        self.0
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |b, (i, &x)| b | u8::from(x) << (7 - i))
            })
            .collect()
    }
}

#[test]
fn a_fixed_predictor_whose_values_overflow_is_refused() {
    // Mono, 16-bit, 1024 frames at 48 kHz (the most a datagram may carry); one order-4 fixed
    // subframe whose warm-up swings between the extremes and whose residuals (escaped, 31
    // bits) are the largest there are: each prediction overflows, and carried on unchecked
    // (a fourfold sum of the residuals, growing as n^4) they would pass 64 bits in the block.
    let mut b = Bitstream::default();
    b.put(0xFFF8, 16);
    b.put(7, 4);
    b.put(10, 4);
    b.put(0, 4);
    b.put(4, 3);
    b.put(0, 1);
    b.put(0, 8);
    b.put(1023, 16);
    let head = b.bytes();
    b.put(u64::from(crc8(&head)), 8);
    b.put(12 << 1, 8);
    for v in [0x7FFFu64, 0x8000, 0x7FFF, 0x8000] {
        b.put(v, 16);
    }
    b.put(0, 2);
    b.put(0, 4);
    b.put(15, 4);
    b.put(31, 5);
    for _ in 0..1020 {
        b.put(0x3FFF_FFFF, 31);
    }
    while b.0.len() % 8 != 0 {
        b.0.push(false);
    }
    let mut frame = b.bytes();
    let crc = crc16(&frame);
    frame.extend_from_slice(&crc.to_be_bytes());
    let e = Expect {
        rate: 48_000,
        channels: 1,
        format: SampleFormat::S16,
        frames: 1024,
    };
    let mut out = vec![0u8; 2048];
    let r = FlacDecoder::default().decode(&frame, e, &mut out);
    assert_eq!(r, Err(FlacError::Invalid("prediction overflows")));
}

#[test]
fn the_checksums_match_their_catalogued_check_values_at_every_length() {
    // CRC-16/UMTS (x^16 + x^15 + x^2 + 1, initial 0) and CRC-8/SMBUS of "123456789".
    assert_eq!(crc16(b"123456789"), 0xFEE8);
    assert_eq!(crc8(b"123456789"), 0xF4);
    // Eight bytes a step must agree with one bit at a time, whatever the remainder.
    let bitwise = |data: &[u8]| {
        let mut crc = 0u16;
        for &b in data {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x8005
                } else {
                    crc << 1
                };
            }
        }
        crc
    };
    let data: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
    for n in 0..data.len() {
        assert_eq!(crc16(&data[..n]), bitwise(&data[..n]), "length {n}");
    }
}
