//! FLAC on the wire, with criterion: the bytes of a stream's audio datagrams against PCM's,
//! and how fast the controller encodes them and a speaker decodes them, in times real time.
//!
//! On real music when `CHORUS_MUSIC` lists WAV files (colon-separated; `tests/rig/codec-bench`
//! fetches some and converts them to the zone formats), else on the fixture tones, which are
//! not music (a pure tone compresses far better than music does). Each file is streamed in its
//! own rate, channels and bit depth (16-bit, or 24-bit for a 24-bit WAV), in blocks as the
//! streamer reads them. Run: `cargo bench -p chorusd --bench flac` (add `-- --quick`).

use chorus::clock::ControllerNs;
use chorus::wire::flac::{Expect, FlacDecoder, MAX_PCM_BYTES};
use chorus::wire::flac_encode::{build_datagram, FlacEncoder};
use chorus::wire::packet::{parse, Packet};
use chorus::wire::{AudioHeader, Codec, SampleFormat};
use criterion::{criterion_group, criterion_main, Criterion};
use std::path::PathBuf;
use std::time::Instant;

/// A file's samples (interleaved, as floats), its rate, channels and the format to send.
struct Music {
    name: String,
    samples: Vec<f32>,
    rate: u32,
    channels: u8,
    format: SampleFormat,
}

/// A 16 or 24-bit integer WAV file.
fn load(path: &str) -> Music {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let spec = r.spec();
    let (format, scale) = match spec.bits_per_sample {
        16 => (SampleFormat::S16, 32_768.0),
        24 => (SampleFormat::S24, 8_388_608.0),
        b => panic!("{path}: {b}-bit samples (16 or 24 here)"),
    };
    let samples = r
        .samples::<i32>()
        .map(|s| s.expect("sample") as f32 / scale)
        .collect();
    let name = PathBuf::from(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Music {
        name,
        samples,
        rate: spec.sample_rate,
        channels: spec.channels as u8,
        format,
    }
}

fn files() -> Vec<Music> {
    match std::env::var("CHORUS_MUSIC") {
        Ok(list) if !list.is_empty() => list.split(':').map(load).collect(),
        _ => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/");
            println!("CHORUS_MUSIC not set: fixture tones, not music");
            ["tone_44k1_s16_stereo.wav", "tone_96k_s24_stereo.wav"]
                .iter()
                .map(|f| load(&format!("{dir}{f}")))
                .collect()
        }
    }
}

/// The stream's audio datagrams, as the streamer builds them (blocks as it reads them).
fn datagrams(m: &Music, flac: Option<&mut FlacEncoder>) -> Vec<Vec<u8>> {
    let ch = usize::from(m.channels);
    let pcm_max = AudioHeader::max_frames(m.channels, m.format);
    let block = match flac {
        Some(_) => AudioHeader::max_flac_frames(m.channels, m.format),
        None => pcm_max,
    };
    let mut enc = flac;
    let mut out = vec![];
    let mut at = 0;
    let frames = m.samples.len() / ch;
    while at < frames {
        let left = (frames - at).min(block);
        let mut done = 0;
        while done < left {
            let head = AudioHeader {
                session: 1,
                seq: out.len() as u32,
                frame_index: (at + done) as u64,
                pts: ControllerNs(0),
                rate: m.rate,
                channels: m.channels,
                format: m.format,
                codec: Codec::Pcm,
                frames: 0,
            };
            let mut d = Vec::with_capacity(1400);
            let span = &m.samples[(at + done) * ch..(at + left) * ch];
            done += build_datagram(enc.as_deref_mut(), head, span, pcm_max, &mut d).frames;
            out.push(d);
        }
        at += left;
    }
    out
}

/// Decodes every FLAC datagram (as a speaker does); the frames decoded.
fn decode_all(dec: &mut FlacDecoder, datagrams: &[Vec<u8>], out: &mut [u8]) -> usize {
    let mut frames = 0;
    for d in datagrams {
        let Ok(Packet::Audio(a)) = parse(d) else {
            continue;
        };
        let h = a.header;
        if h.codec == Codec::Flac {
            let e = Expect {
                rate: h.rate,
                channels: h.channels,
                format: h.format,
                frames: usize::from(h.frames),
            };
            if dec.decode(a.payload, e, out).is_ok() {
                frames += usize::from(h.frames);
            }
        }
    }
    frames
}

fn bytes(d: &[Vec<u8>]) -> usize {
    d.iter().map(Vec::len).sum()
}

fn flac(c: &mut Criterion) {
    let mut g = c.benchmark_group("flac");
    g.sample_size(10);
    for m in files() {
        let seconds = m.samples.len() as f64 / f64::from(m.channels) / f64::from(m.rate);
        let mut enc = FlacEncoder::new(m.rate, m.channels, m.format).expect("FLAC carries it");
        let t = Instant::now();
        let flac = datagrams(&m, Some(&mut enc));
        let encode_s = t.elapsed().as_secs_f64();
        let pcm = datagrams(&m, None);
        let mut dec = FlacDecoder::default();
        let mut out = vec![0u8; MAX_PCM_BYTES];
        let t = Instant::now();
        let decoded = decode_all(&mut dec, &flac, &mut out);
        let decode_s = t.elapsed().as_secs_f64();
        let fallbacks = flac
            .iter()
            .filter(|d| matches!(parse(d), Ok(Packet::Audio(a)) if a.header.codec == Codec::Pcm))
            .count();
        println!(
            "{} ({} Hz, {} ch, {:?}, {seconds:.0} s): FLAC {} datagrams {} bytes, PCM {} \
             datagrams {} bytes: {:.1} % of PCM's bytes; {fallbacks} blocks as PCM; encode \
             {:.0} x real time, decode {:.0} x ({decoded} frames)",
            m.name,
            m.rate,
            m.channels,
            m.format,
            flac.len(),
            bytes(&flac),
            pcm.len(),
            bytes(&pcm),
            100.0 * bytes(&flac) as f64 / bytes(&pcm) as f64,
            seconds / encode_s,
            seconds / decode_s,
        );
        // Criterion's own figures, on the first 10 s.
        let ch = usize::from(m.channels);
        let cut = (m.rate as usize * 10 * ch).min(m.samples.len());
        let excerpt = Music {
            name: m.name.clone(),
            samples: m.samples[..cut].to_vec(),
            ..m
        };
        g.bench_function(format!("encode 10 s of {}", excerpt.name), |b| {
            b.iter(|| datagrams(&excerpt, Some(&mut enc)))
        });
        let ten = datagrams(&excerpt, Some(&mut enc));
        g.bench_function(format!("decode 10 s of {}", excerpt.name), |b| {
            b.iter(|| decode_all(&mut dec, &ten, &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, flac);
criterion_main!(benches);
