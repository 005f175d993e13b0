//! Every supported format decodes to the zone format (48 kHz stereo), with the right length
//! and pitch; broken files give clear errors.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus::audio::{AudioError, Source};
use chorus_tests::repo;

fn decode_all(name: &str) -> Result<Vec<f32>, AudioError> {
    let path = repo().join("tests/fixtures").join(name);
    let mut s = Source::open(&path, 48_000, 2)?;
    let mut out = vec![];
    while s.read(4096, &mut out)? > 0 {}
    Ok(out)
}

/// Frequency from the rate of upward zero crossings of the left channel.
fn pitch(samples: &[f32]) -> f64 {
    let left: Vec<f32> = samples.chunks_exact(2).map(|f| f[0]).collect();
    let mid = &left[left.len() / 10..left.len() * 9 / 10];
    let ups = mid.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
    ups as f64 * 48_000.0 / mid.len() as f64
}

#[test]
fn every_format_decodes_to_the_zone_format() {
    let files = [
        "tone_22k05_u8_mono.wav",
        "tone_44k1_s16_stereo.wav",
        "tone_96k_s24_stereo.wav",
        "tone_32k_s32_mono.wav",
        "tone_48k_f32_stereo.wav",
        "tone_44k1_s16_stereo.flac",
        "tone_48k_s24_5.1.flac",
        "tone_44k1_stereo.mp3",
        "tone_48k_mono.ogg",
        "tone_44k1_stereo.m4a",
    ];
    for f in files {
        let s = decode_all(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        let frames = s.len() / 2;
        let secs = frames as f64 / 48_000.0;
        // 0.5 s each; lossy codecs may add a little padding
        assert!((0.49..0.56).contains(&secs), "{f}: {secs:.4} s");
        let rms = (s.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
        assert!(rms > 0.1 && rms < 0.5, "{f}: rms {rms}");
        let hz = pitch(&s);
        assert!((hz - 440.0).abs() < 5.0, "{f}: pitch {hz:.1} Hz");
        // left and right carry the same tone (mono is duplicated, 5.1 folded down evenly)
        let lr: f64 = s
            .chunks_exact(2)
            .map(|c| (c[0] - c[1]).abs() as f64)
            .fold(0.0, f64::max);
        assert!(lr < 0.01, "{f}: channels differ by {lr}");
        println!("{f}: {frames} frames, rms {rms:.3}, {hz:.1} Hz");
    }
}

#[test]
fn broken_files_give_clear_errors() {
    let dir = chorus_tests::scratch("broken");
    let empty = dir.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let e = Source::open(&empty, 48_000, 2)
        .err()
        .expect("empty file accepted");
    assert!(e.to_string().contains("empty file"), "{e}");

    let junk = dir.join("junk.mp3");
    std::fs::write(
        &junk,
        (0..4000u32)
            .map(|i| (i * 31 % 253) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let e = match Source::open(&junk, 48_000, 2) {
        Err(e) => e,
        Ok(mut s) => {
            let mut out = vec![];
            loop {
                match s.read(4096, &mut out) {
                    Ok(0) => panic!("junk decoded as audio"),
                    Ok(_) => continue,
                    Err(e) => break e,
                }
            }
        }
    };
    assert!(
        e.to_string().contains("junk.mp3"),
        "error does not name the file: {e}"
    );

    let full = std::fs::read(repo().join("tests/fixtures/tone_44k1_s16_stereo.flac")).unwrap();
    let cut = dir.join("cut.flac");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let mut s = Source::open(&cut, 48_000, 2).expect("header is intact");
    let mut out = vec![];
    let err = loop {
        match s.read(4096, &mut out) {
            Ok(0) => panic!("truncation not reported"),
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, AudioError::Truncated { .. }), "{err}");
    assert!(!out.is_empty(), "the intact part should still play");

    let missing = Source::open(&dir.join("nope.ogg"), 48_000, 2)
        .err()
        .unwrap();
    assert!(missing.to_string().contains("cannot open"), "{missing}");
}

#[test]
fn seek_lands_on_the_requested_frame() {
    let dir = chorus_tests::scratch("seek");
    let p = dir.join("c.wav");
    chorus_tests::write_counter_wav(&p, 1, 48_000);
    let mut s = Source::open(&p, 48_000, 2).unwrap();
    s.seek(0.25).unwrap();
    let mut out = vec![];
    s.read(1, &mut out).unwrap();
    let frame = [(out[0] * 32768.0) as i16, (out[1] * 32768.0) as i16];
    assert_eq!(chorus_tests::counter(frame), 12_001);
}

#[test]
fn title_artist_and_album_come_from_the_tags() {
    // A WAV with a RIFF INFO list (INAM, IART, IPRD), written by hand.
    let dir = chorus_tests::scratch("tags");
    let path = dir.join("tagged.wav");
    chorus_tests::write_counter_wav(&path, 1, 4_800);
    let mut bytes = std::fs::read(&path).unwrap();
    let mut info = b"INFO".to_vec();
    for (id, text) in [
        (b"INAM", "Blue in Green"),
        (b"IART", "Miles Davis"),
        (b"IPRD", "Kind of Blue"),
    ] {
        let mut v = text.as_bytes().to_vec();
        v.push(0);
        if v.len() % 2 == 1 {
            v.push(0);
        }
        info.extend_from_slice(id);
        info.extend_from_slice(&(v.len() as u32).to_le_bytes());
        info.extend_from_slice(&v);
    }
    // Before the data chunk, where readers find it before the audio.
    let at = bytes.windows(4).position(|w| w == b"data").unwrap();
    let mut list = b"LIST".to_vec();
    list.extend_from_slice(&(info.len() as u32).to_le_bytes());
    list.extend_from_slice(&info);
    bytes.splice(at..at, list);
    let riff = (bytes.len() - 8) as u32;
    bytes[4..8].copy_from_slice(&riff.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let s = Source::open(&path, 48_000, 2).unwrap();
    assert_eq!(s.title(), "Blue in Green");
    assert_eq!(
        s.artist_album(),
        (Some("Miles Davis".into()), Some("Kind of Blue".into()))
    );
    // Untagged: the file name, no artist or album.
    let plain = dir.join("plain.wav");
    chorus_tests::write_counter_wav(&plain, 1, 4_800);
    let s = Source::open(&plain, 48_000, 2).unwrap();
    assert_eq!(s.title(), "plain");
    assert_eq!(s.artist_album(), (None, None));
}
