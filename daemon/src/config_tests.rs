//! Tests of config.rs.

use super::*;

#[test]
fn device_sizes_follow_the_rate_unless_configured() {
    let mut s = SpeakerConfig::default();
    assert_eq!(s.device_frames(48_000), (480, 4800));
    assert_eq!(s.device_frames(96_000), (960, 9600));
    assert_eq!(s.device_frames(44_100), (441, 4410));
    // A configured period: the buffer is 100 ms or more, in whole periods.
    s.period_frames = 1024;
    assert_eq!(s.device_frames(48_000), (1024, 5120));
    // A configured buffer is kept (at least two periods).
    s.buffer_frames = 1500;
    assert_eq!(s.device_frames(48_000), (1024, 2048));
    s.period_frames = 0;
    assert_eq!(s.device_frames(48_000), (480, 1500));
    // Rates nobody plays stay within what the device API takes.
    s.buffer_frames = 0;
    let (p, b) = s.device_frames(u32::MAX);
    assert!(p <= 16_384 && b >= 2 * p, "{p} {b}");
}

#[test]
fn defaults_are_valid() {
    assert_eq!(Config::default().validate(), vec![]);
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn secrets_beside_the_config_are_used_unless_turned_off() {
    let dir = std::env::temp_dir().join(format!("chorus-beside-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chorus.toml");
    std::fs::write(&path, "").unwrap();
    // Nothing beside it: no key, no token.
    let cfg = load(&path).unwrap();
    assert_eq!(cfg.security.load_key().unwrap(), None);
    assert_eq!(cfg.api.load_token().unwrap(), None);
    // What the package makes at install.
    std::fs::write(dir.join("key"), "00112233445566778899aabbccddeeff\n").unwrap();
    std::fs::write(dir.join("api-token"), "0123456789abcdef0123\n").unwrap();
    let cfg = load(&path).unwrap();
    assert_eq!(
        cfg.security.load_key().unwrap().unwrap(),
        b"00112233445566778899aabbccddeeff"
    );
    assert_eq!(
        cfg.api.load_token().unwrap().unwrap(),
        b"0123456789abcdef0123"
    );
    // Turned off, or named elsewhere.
    std::fs::write(
        &path,
        "[security]\nkey-file = \"\"\n[api]\ntoken = \"abcdefghijklmnopqrst\"\n",
    )
    .unwrap();
    let cfg = load(&path).unwrap();
    assert_eq!(cfg.security.load_key().unwrap(), None);
    assert_eq!(
        cfg.api.load_token().unwrap().unwrap(),
        b"abcdefghijklmnopqrst"
    );
    // One beside it that is not a regular file is refused, by its key.
    std::fs::remove_file(dir.join("key")).unwrap();
    std::fs::create_dir(dir.join("key")).unwrap();
    std::fs::write(&path, "").unwrap();
    match load(&path) {
        Err(ConfigError::Invalid { problems, .. }) => {
            assert!(
                problems.iter().any(|p| p.key == "security.key-file"),
                "{problems:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn example_config_is_valid() {
    let text = include_str!("../../config/chorus.toml");
    let cfg = parse(text).expect("example parses");
    assert_eq!(cfg.validate(), vec![]);
}

#[test]
fn reserved_groups_devices_as_key_files_and_huge_values_are_refused() {
    for g in ["224.0.0.1", "224.0.0.251", "10.0.0.1"] {
        let cfg = parse(&format!("[zone]\ngroup = \"{g}\"\n")).unwrap();
        assert!(cfg.validate().iter().any(|p| p.key == "zone.group"), "{g}");
    }
    let cfg = parse("[zone]\ngroup = \"239.255.9.9\"\n").unwrap();
    assert!(cfg.validate().iter().all(|p| p.key != "zone.group"));
    for dev in ["/dev/zero", "/dev/urandom", "/tmp"] {
        let err = super::secrets::read_small(dev).unwrap_err();
        assert!(
            err.to_string().contains("not a regular file"),
            "{dev}: {err}"
        );
    }
    let huge = "x".repeat(100_000);
    let cfg = parse(&format!("[zone]\ngroup = \"{huge}\"\n")).unwrap();
    let p = cfg.validate();
    let m = &p.iter().find(|p| p.key == "zone.group").unwrap().message;
    assert!(m.chars().count() <= 201, "{}", m.len());
}

#[test]
fn unknown_key_is_named() {
    let Problem { key, message: msg } = parse("[speaker]\nvolumme = 3\n").unwrap_err();
    assert_eq!(key, "speaker.volumme");
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn wrong_type_is_named() {
    let Problem { key, .. } = parse("[zone]\nport = \"loud\"\n").unwrap_err();
    assert_eq!(key, "zone.port");
}

#[test]
fn every_problem_is_reported() {
    let cfg = parse(
        "[zone]\ngroup = \"10.0.0.1\"\nrate = 5\n[speaker]\nvolume = 120\noutput = \"file\"\n",
    )
    .unwrap();
    let keys: Vec<String> = cfg.validate().into_iter().map(|p| p.key).collect();
    for k in ["zone.group", "zone.rate", "speaker.volume", "speaker.path"] {
        assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
    }
}

#[test]
fn flac_is_taken_for_16_and_24_bits_only() {
    let ok = parse("[zone]\ncodec = \"flac\"\nsample-format = \"s24\"\n").unwrap();
    assert_eq!(ok.validate(), vec![]);
    assert_eq!(ok.codec_of("home"), Codec::Flac);
    let bad = parse("[zone]\ncodec = \"flac\"\nsample-format = \"s32\"\n").unwrap();
    let p = bad.validate();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "zone.codec");
    assert!(p[0].message.contains("32"), "{}", p[0].message);
    // A further zone may send FLAC while the first sends PCM, and is checked the same way.
    let mixed = parse(
        "[zone]\nsample-format = \"s32\"\n[[controller.zones]]\nname = \"k\"\n\
         group = \"239.255.77.2\"\ncodec = \"flac\"\n",
    )
    .unwrap();
    assert_eq!(mixed.codec_of("k"), Codec::Flac);
    assert_eq!(mixed.codec_of("home"), Codec::Pcm);
    let keys: Vec<String> = mixed.validate().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, vec!["controller.zones[0].codec"]);
    assert!(parse("[zone]\ncodec = \"mp3\"\n").is_err());
}
