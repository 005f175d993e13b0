//! Replays the fuzz corpus (`daemon/fuzz/corpus/<target>/`, grown by `cargo fuzz`, see
//! docs/FUZZING.md) and a set of hand-made malformed datagrams through the same entry points as
//! the fuzz targets: no input may panic, and the parsers must refuse every malformed one.
#![allow(clippy::too_many_lines)] // scenarios read top to bottom

use chorus::fuzz;
use chorus::wire::auth::Auth;
use chorus::wire::packet::{encode_audio, parse};
use chorus::wire::repair::RepairRequest;
use chorus::wire::{AudioHeader, Codec, SampleFormat, SyncRequest};
use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn the_fuzz_corpus_replays_without_a_panic() {
    for (target, run) in [
        ("datagram", fuzz::datagram as fn(&[u8])),
        ("authenticated", fuzz::authenticated),
        ("config", fuzz::config),
        ("playlist", fuzz::playlist),
    ] {
        let inputs = corpus(target);
        assert!(inputs.len() > 100, "{target}: only {} inputs", inputs.len());
        for input in &inputs {
            run(input);
        }
        println!("{target}: {} inputs", inputs.len());
    }
}

fn audio(frames: u16, channels: u8, format: SampleFormat) -> Vec<u8> {
    let h = AudioHeader {
        session: 7,
        seq: 1,
        frame_index: 1000,
        pts: chorus::clock::ControllerNs(5_000_000_000),
        rate: 48_000,
        channels,
        format,
        codec: Codec::Pcm,
        frames,
    };
    let samples = vec![0.25f32; frames as usize * channels as usize];
    let mut d = Vec::new();
    encode_audio(&h, &samples, &mut d);
    d
}

#[test]
fn hand_made_malformed_datagrams_are_refused() {
    let good = audio(100, 2, SampleFormat::S16);
    assert!(parse(&good).is_ok());
    let mut bad: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("prefix only", good[..8].to_vec()),
        ("truncated header", good[..30].to_vec()),
        ("truncated payload", good[..good.len() - 1].to_vec()),
        ("one byte too many", [&good[..], &[0]].concat()),
        ("over the datagram limit", vec![0u8; 1401]),
    ];
    let mut set = |what: &'static str, at: usize, bytes: &[u8]| {
        let mut d = good.clone();
        d[at..at + bytes.len()].copy_from_slice(bytes);
        bad.push((what, d));
    };
    set("bad magic", 0, b"XHRS");
    set("wrong version", 4, &[2]);
    set("unknown kind", 5, &[99]);
    set("zero rate", 32, &0u32.to_le_bytes());
    set("absurd rate", 32, &u32::MAX.to_le_bytes());
    set("zero channels", 36, &[0]);
    set("absurd channels", 36, &[200]);
    set("unknown sample format", 37, &[9]);
    set("absurd frame count", 38, &u16::MAX.to_le_bytes());
    set("frame count off by one", 38, &101u16.to_le_bytes());
    set("huge frame index", 16, &u64::MAX.to_le_bytes());
    // FLAC: of 32-bit samples, more frames than a speaker decodes into, no frame at all, a
    // PCM payload called FLAC (refused by the decoder: the speaker's accept path).
    set("FLAC of 32-bit samples", 37, &[0x83]);
    let mut long = good.clone();
    long[37] = 0x81;
    long[38..40].copy_from_slice(&513u16.to_le_bytes());
    bad.push(("FLAC over the frame limit", long));
    let mut empty = good[..40].to_vec();
    empty[37] = 0x81;
    bad.push(("FLAC without a frame", empty));
    // Sync: wrong lengths.
    let sync = SyncRequest {
        id: 1,
        t1: chorus::clock::LocalNs(2),
        proof: 0,
    }
    .encode();
    bad.push(("sync request cut", sync[..sync.len() - 1].to_vec()));
    bad.push(("sync request padded", [&sync[..], &[0]].concat()));
    // Repair requests: count against length.
    let mut q = RepairRequest::new(7);
    q.push(1);
    q.push(2);
    let mut rq = Vec::new();
    q.encode_into(&mut rq);
    let mut zero = rq.clone();
    zero[12..14].copy_from_slice(&0u16.to_le_bytes());
    bad.push(("repair count zero", zero));
    let mut many = rq.clone();
    many[12..14].copy_from_slice(&40_000u16.to_le_bytes());
    bad.push(("repair count absurd", many));
    bad.push(("repair cut", rq[..rq.len() - 2].to_vec()));
    // Parity: group size zero or over the limit, header only, body over the limit.
    let mut fec = chorus::wire::fec::ParityBuilder::new(2);
    fec.add(7, 1, &good);
    fec.add(7, 2, &good[..50]);
    let mut pd = Vec::new();
    fec.finish(&mut pd);
    assert!(parse(&pd).is_ok());
    let mut zero = pd.clone();
    zero[16] = 0;
    bad.push(("parity group of zero", zero));
    let mut many = pd.clone();
    many[16] = 200;
    bad.push(("parity group absurd", many));
    bad.push(("parity header only", pd[..20].to_vec()));
    let mut long = pd.clone();
    long.resize(1400, 0);
    bad.push(("parity body too long", long));
    // Heartbeats: not JSON, too long, unknown fields.
    let hb = |body: &[u8]| [&b"CHRS\x01\x04\x00\x00"[..], body].concat();
    bad.push(("heartbeat not json", hb(b"{not json")));
    bad.push(("heartbeat huge", hb(&vec![b' '; 1000])));
    bad.push((
        "heartbeat unknown field",
        hb(br#"{"name":"a","api_port":1,"volume":1,"muted":false,"locked":false,"sync_error_us":null,"x":1}"#),
    ));
    bad.push((
        "heartbeat volume 300",
        hb(br#"{"name":"a","api_port":1,"volume":300,"muted":false,"locked":false,"sync_error_us":null}"#),
    ));
    for (what, d) in &bad {
        assert!(parse(d).is_err(), "{what} was accepted");
        fuzz::datagram(d);
        fuzz::authenticated(d);
    }
    // Tags: a keyed receiver refuses untagged, forged and cut tags; a keyless one refuses tags.
    let key = Auth::with_key(b"the zone's key, long enough");
    let mut sealed = good.clone();
    key.seal(&mut sealed);
    assert!(key.open(&sealed).is_ok());
    assert!(key.open(&good).is_err(), "untagged");
    assert!(Auth::none().open(&sealed).is_err(), "tagged, no key");
    let mut forged = sealed.clone();
    let n = forged.len();
    forged[n - 1] ^= 1;
    assert!(key.open(&forged).is_err(), "forged tag");
    assert!(key.open(&sealed[..n - 8]).is_err(), "cut tag");
}
