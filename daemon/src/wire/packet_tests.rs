//! Tests of packet.rs.

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
        codec: crate::wire::Codec::Pcm,
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
        let scale = super::scale(format) as f64;
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
                AUDIO_HEADER_LEN + n * ch as usize * format.bytes() + super::super::auth::TAG_LEN
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
        unicast_port: Some(40_123),
        delivery: Some(crate::wire::Delivery::Unicast),
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
    let port0 = Heartbeat {
        unicast_port: Some(0),
        ..hb.clone()
    };
    assert!(matches!(
        parse(&encode_heartbeat(&port0)),
        Err(WireError::BadHeartbeat(_))
    ));
    let legacy = encode_heartbeat(&Heartbeat { stream: None, ..hb });
    assert!(!String::from_utf8_lossy(&legacy).contains("stream"));
    assert!(matches!(parse(&legacy), Ok(Packet::Heartbeat(h)) if h.stream.is_none()));
}

/// Mutations of valid datagrams of every kind (bit flips, byte overwrites with extreme
/// values, truncations, extensions, splices) through the one entry point the network uses:
/// never a panic, and whatever parses is self-consistent. A deterministic stand-in for the
/// fuzzer that runs in every test run.
#[test]
#[allow(clippy::too_many_lines)] // one property over every kind of datagram, read top to bottom
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
        unicast_port: None,
        delivery: None,
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
                    assert_eq!(a.payload.len(), a.header.pcm_len(), "{a:?}");
                    assert!(a.header.pcm_len() + AUDIO_HEADER_LEN <= crate::wire::MAX_DATAGRAM);
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
