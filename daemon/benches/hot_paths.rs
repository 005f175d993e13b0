//! The hot paths, with criterion: packet encode and parse, the playout resampler, decoding per
//! format, and the playout thread's work per period. Run: `cargo bench -p chorusd` (add `-- --quick` for a fast pass). Each prints its
//! time; the decode and resampler benches also print how many times real time that is.

use chorus::audio::decode::FileDecoder;
use chorus::clock::ControllerNs;
use chorus::dsp::resampler::FracResampler;
use chorus::wire::packet::{encode_audio, parse, AudioHeader, Packet};
use chorus::wire::Pcm;
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
            codec: chorus::wire::Codec::Pcm,
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

/// The header of a 48 kHz 16-bit stereo PCM datagram of session 1.
fn stereo_s16(seq: u32, frame_index: u64, pts: ControllerNs, frames: usize) -> AudioHeader {
    AudioHeader {
        session: 1,
        seq,
        frame_index,
        pts,
        rate: 48_000,
        channels: 2,
        format: SampleFormat::S16,
        codec: chorus::wire::Codec::Pcm,
        frames: frames as u16,
    }
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

/// The playout thread's work for one 10 ms period at 48 kHz/16-bit stereo, as in steady state
/// with a DAC 300 ppm fast: the datagrams that period needs parsed and filed in the jitter
/// buffer in the recycled buffers they came in, the scheduler's slots filled (decoding them),
/// the resampler interpolating, the volume applied and the period converted and written to
/// ALSA's `null` device. Not timed: encoding the datagrams (the controller's work) into the
/// jitter buffer's spare buffers (the kernel's copy, on a speaker), and the sleeps between
/// wake-ups.
fn playout(c: &mut Criterion) {
    use chorus::dsp::resampler::TAPS;
    use chorus::dsp::volume::VolumeRamp;
    use chorus::speaker::jitter::Chunk;
    use chorus::speaker::output::{alsa::AlsaOutput, Output};
    use chorus::speaker::playout::jitter_buffer;
    use chorus::speaker::schedule::Scheduler;
    const RATE: u32 = 48_000;
    const PERIOD: usize = 480;
    const STEP: f64 = 1.0003;
    let mut out = match AlsaOutput::open(
        "null",
        RATE,
        2,
        SampleFormat::S16,
        PERIOD,
        6 * PERIOD,
        chorus::clock::process_clock(0.0, 0.0),
    ) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("playout bench skipped: ALSA null device: {e}");
            return;
        }
    };
    let fpp = AudioHeader::max_frames(2, SampleFormat::S16);
    let mut jb = jitter_buffer(RATE, 2);
    let mut sched = Scheduler::new(RATE, 2);
    let mut rs = FracResampler::new(2, 2 * PERIOD + 4 * TAPS);
    let mut volume = VolumeRamp::new(0.5, RATE as usize * 30 / 1000);
    let mut input = vec![0.0f32; (2 * PERIOD + 4 * TAPS) * 2];
    let mut chunk = vec![0.0f32; PERIOD * 2];
    let mut samples = Vec::with_capacity(2 * fpp);
    let mut datagrams: Vec<Vec<u8>> = Vec::with_capacity(8);
    let frame_ns = |f: u64| (f as i64) * 1_000_000_000 / RATE as i64;
    let t0 = ControllerNs(1_000_000_000);
    sched.anchor(t0);
    rs.reset(0.0);
    let (mut seq, mut sent, mut taken) = (0u32, 0u64, 0u64);
    let mut g = c.benchmark_group("playout");
    g.throughput(Throughput::Elements(PERIOD as u64));
    g.bench_function(
        "one 480-frame period, 48k/16 stereo, DAC +300 ppm, to ALSA null",
        |b| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: the controller's datagrams covering what this period reads.
                    let need = rs.input_needed(PERIOD, STEP).min(input.len() / 2);
                    while sent < taken + need as u64 + TAPS as u64 {
                        samples.clear();
                        for i in 0..fpp as u64 {
                            let v = ((sent + i) as f32 * 0.0575).sin() * 0.4;
                            samples.extend_from_slice(&[v, -v]);
                        }
                        let h = stereo_s16(seq, sent, t0.plus(frame_ns(sent)), fpp);
                        let mut d = jb.take_spare(0);
                        encode_audio(&h, &samples, &mut d);
                        datagrams.push(d);
                        seq += 1;
                        sent += fpp as u64;
                    }
                    let t = Instant::now();
                    for d in datagrams.drain(..) {
                        let Ok(Packet::Audio(a)) = parse(&d) else {
                            continue;
                        };
                        let (h, offset) =
                            (a.header, a.payload.as_ptr() as usize - d.as_ptr() as usize);
                        jb.insert(Chunk {
                            session: h.session,
                            frame_index: h.frame_index,
                            pts: h.pts,
                            frames: u32::from(h.frames),
                            format: h.format,
                            data: d,
                            offset,
                        });
                    }
                    sched.fill(&mut jb, &mut input[..need * 2]);
                    rs.push(&input[..need * 2]);
                    rs.process(STEP, &mut chunk);
                    volume.apply(0.5, &mut chunk, 2);
                    let written = out.write(&chunk);
                    spent += t.elapsed();
                    assert!(written.is_ok(), "ALSA null refused a write");
                    taken += need as u64;
                }
                spent
            })
        },
    );
    g.finish();
}

criterion_group!(benches, packets, resampler, decode, playout);
criterion_main!(benches);
