//! The hot paths, with criterion: packet encode and parse, the playout resampler, decoding per
//! format. Run: `cargo bench -p chorusd` (add `-- --quick` for a fast pass). Each prints its
//! time; the decode and resampler benches also print how many times real time that is.

use chorus::audio::decode::FileDecoder;
use chorus::clock::ControllerNs;
use chorus::speaker::resampler::FracResampler;
use chorus::wire::packet::{encode_audio, parse, AudioHeader, Packet};
use chorus::wire::SampleFormat;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::path::PathBuf;
use std::time::Instant;

fn packets(c: &mut Criterion) {
    let mut g = c.benchmark_group("packet");
    for format in [SampleFormat::S16, SampleFormat::S24] {
        // A full datagram: 5 ms at 48 kHz in 16 bits, less in 24.
        let frames = AudioHeader::max_frames(2, format).min(240);
        let h = AudioHeader {
            session: 1,
            seq: 2,
            frame_index: 3,
            pts: ControllerNs(4),
            rate: 48_000,
            channels: 2,
            format,
            frames: frames as u16,
        };
        let samples: Vec<f32> = (0..2 * frames).map(|i| (i as f32 / 480.0) - 0.5).collect();
        let mut out = Vec::with_capacity(1500);
        g.throughput(Throughput::Elements(frames as u64));
        g.bench_function(format!("encode {format:?} {frames} frames"), |b| {
            b.iter(|| encode_audio(&h, &samples, &mut out))
        });
        encode_audio(&h, &samples, &mut out);
        let bytes = out.clone();
        let mut decoded = Vec::with_capacity(480);
        assert!(matches!(parse(&bytes), Ok(Packet::Audio(_))));
        g.bench_function(format!("parse+decode {format:?} {frames} frames"), |b| {
            b.iter(|| {
                if let Ok(Packet::Audio(a)) = parse(&bytes) {
                    decoded.clear();
                    a.header.format.decode(a.payload, &mut decoded);
                }
            })
        });
    }
    g.finish();
}

fn resampler(c: &mut Criterion) {
    let mut g = c.benchmark_group("resampler");
    let input: Vec<f32> = (0..2 * 512)
        .map(|i| ((i / 2) as f32 * 0.05).sin() * 0.5)
        .collect();
    let mut out = vec![0.0f32; 2 * 480];
    g.throughput(Throughput::Elements(480));
    for (name, step) in [("bit-exact copy", 1.0), ("interpolating +300 ppm", 1.0003)] {
        g.bench_function(format!("{name}, one 480-frame period"), |b| {
            b.iter_batched_ref(
                || FracResampler::new(2, 2 * 480 + 128),
                |rs| {
                    let need = rs.input_needed(480, step);
                    rs.push(&input[..need.min(512) * 2]);
                    rs.process(step, &mut out);
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    // Seconds of audio per second of CPU, over 60 s of 48 kHz stereo.
    let mut rs = FracResampler::new(2, 2 * 480 + 128);
    let t = Instant::now();
    for _ in 0..6000 {
        let need = rs.input_needed(480, 1.0003);
        rs.push(&input[..need.min(512) * 2]);
        rs.process(1.0003, &mut out);
    }
    println!(
        "resampler, interpolating: {:.0} x real time",
        60.0 / t.elapsed().as_secs_f64()
    );
}

fn decode(c: &mut Criterion) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut g = c.benchmark_group("decode");
    for file in [
        "tone_44k1_s16_stereo.flac",
        "tone_44k1_stereo.mp3",
        "tone_48k_mono.ogg",
        "tone_44k1_stereo.m4a",
        "tone_96k_s24_stereo.wav",
    ] {
        let path = fixtures.join(file);
        let whole = |path: &PathBuf| -> (usize, u32) {
            let mut d = FileDecoder::open(path).expect("fixture");
            let mut buf = Vec::new();
            let mut frames = 0;
            while let Ok(n) = d.next_chunk(&mut buf) {
                if n == 0 {
                    break;
                }
                frames += n;
                buf.clear();
            }
            (frames, d.rate)
        };
        let (frames, rate) = whole(&path);
        g.bench_function(format!("{file} (open + whole file)"), |b| {
            b.iter(|| whole(&path))
        });
        let t = Instant::now();
        let runs = 50;
        for _ in 0..runs {
            whole(&path);
        }
        let per = t.elapsed().as_secs_f64() / runs as f64;
        println!(
            "decode {file}: {:.0} x real time ({:.2} s of audio, open included)",
            frames as f64 / rate as f64 / per,
            frames as f64 / rate as f64
        );
    }
    g.finish();
}

criterion_group!(benches, packets, resampler, decode);
criterion_main!(benches);
