//! Entry points for the fuzz targets (`daemon/fuzz`, run with `cargo fuzz`) and for the test
//! that replays their corpus in CI (`daemon/tests/fuzz_corpus.rs`): every parser of network
//! input, the config loader and the playlist parsers, fed arbitrary bytes. A harness above the
//! layers it drives (so the wire module need not know the config). They must never panic, and what they accept must be
//! self-consistent (checked here with assertions, which fuzzing turns into findings).

use crate::wire::auth::{Auth, ReplayWindow};
use crate::wire::packet::{parse, Packet, AUDIO_HEADER_LEN};
use crate::wire::{flac, Codec, Pcm, MAGIC, MAX_DATAGRAM, VERSION};

fn check_audio(a: &crate::wire::AudioPacket<'_>) {
    let h = &a.header;
    assert!(a.payload.len() + AUDIO_HEADER_LEN <= MAX_DATAGRAM);
    let pcm = match h.codec {
        Codec::Pcm => {
            assert_eq!(a.payload.len(), h.pcm_len());
            a.payload.to_vec()
        }
        Codec::Flac => {
            // Arbitrary bytes are almost never a valid frame: the decoder must refuse them
            // without panicking, and what it accepts must be exactly the frames announced.
            let mut out = vec![0u8; flac::MAX_PCM_BYTES];
            let expect = flac::Expect {
                rate: h.rate,
                channels: h.channels,
                format: h.format,
                frames: usize::from(h.frames),
            };
            let Ok(n) = flac::FlacDecoder::default().decode(a.payload, expect, &mut out) else {
                return;
            };
            assert_eq!(n, h.pcm_len());
            out.truncate(n);
            out
        }
    };
    let mut samples = Vec::new();
    h.format.decode(&pcm, &mut samples);
    assert_eq!(samples.len(), h.frames as usize * h.channels as usize);
    assert!(samples.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
}

fn check(data: &[u8]) {
    let Ok(p) = parse(data) else { return };
    match p {
        Packet::Audio(a) => check_audio(&a),
        Packet::Heartbeat(h) => {
            assert!(h.volume <= 100);
            assert!(!h.name.is_empty() && h.name.len() <= 64);
        }
        Packet::Repair(q) => {
            assert!(!q.is_empty() && q.seqs().len() <= crate::wire::repair::MAX_SEQS);
        }
        Packet::Parity(p) => {
            assert!(p.count as usize >= 1 && p.count as usize <= crate::wire::fec::MAX_GROUP);
            // Rebuild against the input itself: whatever comes out is within bounds.
            let mut out = Vec::new();
            let others = std::iter::repeat_n(data, p.count as usize - 1);
            if p.rebuild(others, &mut out) {
                assert!(out.len() <= crate::wire::fec::MAX_PROTECTED);
            }
        }
        Packet::Announce(a) => assert_ne!(a.sync_port, 0),
        Packet::SyncRequest(_) | Packet::SyncResponse(_) => {}
    }
}

/// Every datagram parser: the bytes as they are, and with a valid prefix of each kind in front
/// of them (so that every kind's parser sees every input, not only those that guess the magic).
pub fn datagram(data: &[u8]) {
    check(data);
    let mut d = Vec::with_capacity(data.len() + 8);
    for kind in 1..=7u8 {
        d.clear();
        d.extend_from_slice(&MAGIC);
        d.push(VERSION);
        d.push(kind);
        d.extend_from_slice(data);
        check(&d);
    }
}

/// The authentication layer in front of the parsers, and the replay window after it.
pub fn authenticated(data: &[u8]) {
    let keyed = Auth::with_key(b"a fuzzing key, long enough");
    if let Ok(body) = keyed.open(data) {
        datagram(body);
    }
    if let Ok(body) = Auth::none().open(data) {
        check(body);
    }
    // The bytes as a run of sequence numbers.
    let mut w = ReplayWindow::default();
    for c in data.chunks_exact(4) {
        w.offer(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
}

/// The config parser and validator (a hand-edited file is input too).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = crate::config::parse(text) {
        let _ = c.validate();
    }
}

/// Fuzz entry for the playlist parsers (`daemon/fuzz`, target `playlist`): the first byte
/// chooses .pls (odd) or .m3u, the rest is the text. Besides not panicking, what comes out must
/// be sane: no more entries than lines, none empty or spanning lines, each a station or an
/// absolute path.
pub fn playlist(data: &[u8]) {
    let (pls, text) = match data.split_first() {
        Some((first, rest)) => (first & 1 == 1, rest),
        None => (false, data),
    };
    let text = String::from_utf8_lossy(text);
    let entries = crate::controller::queue::parse_playlist(
        &text,
        pls,
        std::path::Path::new("/srv/music/lists"),
    );
    assert!(
        entries.len()
            <= text
                .lines()
                .count()
                .min(crate::controller::queue::MAX_ITEMS)
    );
    for e in &entries {
        let s = e.to_string_lossy();
        assert!(!s.is_empty() && !s.contains('\n'), "{s:?}");
        assert!(
            crate::audio::radio::is_radio(&s) || e.is_absolute(),
            "{s:?}"
        );
    }
}
