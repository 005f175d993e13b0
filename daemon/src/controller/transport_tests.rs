//! The transport's rules, without a source or a clock.

use super::*;
use rand::SeedableRng;

fn items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| Item::File(format!("/m/{i}.flac").into()))
        .collect()
}

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(7)
}

/// A transport playing `n` items, at item `at` (open).
fn playing(n: usize, at: usize) -> Transport {
    let mut t = Transport::default();
    t.apply(
        Command::Play {
            uri: "/m".into(),
            items: items(n),
        },
        false,
        0.0,
        &mut rng(),
    );
    t.index = at;
    t
}

#[test]
fn play_replaces_the_queue_and_starts_a_fresh_timeline_only_from_silence() {
    let mut t = Transport::default();
    let e = t.apply(
        Command::Play {
            uri: "/m".into(),
            items: items(3),
        },
        false,
        0.0,
        &mut rng(),
    );
    assert_eq!(
        (t.state, t.index, t.queue.len()),
        (TransportState::Playing, 0, 3)
    );
    assert!(e.close && e.open && e.resync && e.fade == FadeChange::Cancel);
    // Already playing: the new queue follows on the same timeline (no gap, no jump).
    let e = t.apply(
        Command::Play {
            uri: "/n".into(),
            items: items(2),
        },
        true,
        10.0,
        &mut rng(),
    );
    assert!(e.open && !e.resync);
    assert_eq!(t.uri.as_deref(), Some("/n"));
}

#[test]
fn pause_and_resume_fade_back_in_on_a_fresh_timeline() {
    let mut t = playing(3, 1);
    let e = t.apply(Command::Pause, true, 5.0, &mut rng());
    assert_eq!(t.state, TransportState::Paused);
    assert!(!e.open && !e.close);
    let e = t.apply(Command::Resume, true, 5.0, &mut rng());
    assert_eq!(t.state, TransportState::Playing);
    assert!(e.resync && e.fade == FadeChange::In && !e.open);
    // From stopped, resume opens the item again.
    t.apply(Command::Stop, true, 5.0, &mut rng());
    assert_eq!((t.state, t.index), (TransportState::Stopped, 0));
    let e = t.apply(Command::Resume, false, 0.0, &mut rng());
    assert!(e.open && e.resync);
}

#[test]
fn next_and_previous_follow_the_repeat_mode_and_the_three_second_rule() {
    let mut t = playing(3, 2);
    let e = t.apply(Command::Next, true, 1.0, &mut rng());
    assert_eq!(t.index, 3); // past the end: opening finds nothing and stops
    assert!(e.open);
    let mut t = playing(3, 2);
    t.apply(Command::SetRepeat(Repeat::All), true, 1.0, &mut rng());
    t.apply(Command::Next, true, 1.0, &mut rng());
    assert_eq!(t.index, 0);
    // Previous: past 3 s the item starts over, before it the one before plays.
    let mut t = playing(3, 2);
    t.apply(Command::Previous, true, 3.5, &mut rng());
    assert_eq!(t.index, 2);
    t.apply(Command::Previous, true, 1.0, &mut rng());
    assert_eq!(t.index, 1);
    // The end of an item: repeat one plays it again, all wraps, off goes on.
    // What is opened ahead is what `advance` then plays.
    let mut t = playing(3, 2);
    assert_eq!(t.upcoming(), None);
    t.repeat = Repeat::One;
    assert_eq!(t.upcoming(), Some(&items(3)[2]));
    t.advance();
    assert_eq!(t.index, 2);
    t.repeat = Repeat::All;
    assert_eq!(t.upcoming(), Some(&items(3)[0]));
    t.advance();
    assert_eq!(t.index, 0);
    t.repeat = Repeat::Off;
    assert_eq!(t.upcoming(), Some(&items(3)[1]));
}

#[test]
fn queue_edits_keep_the_item_playing() {
    // a b c d e, c playing.
    let mut t = playing(5, 2);
    let v = t.queue_version;
    t.apply(
        Command::Add {
            at: Some(0),
            items: items(2),
        },
        true,
        1.0,
        &mut rng(),
    );
    assert_eq!((t.index, t.queue.len()), (4, 7));
    assert!(t.queue_version > v);
    // Removing one before it moves it; removing it plays the next.
    let e = t.apply(Command::Remove(0), true, 1.0, &mut rng());
    assert_eq!(t.index, 3);
    assert!(!e.open);
    let e = t.apply(Command::Remove(3), true, 1.0, &mut rng());
    assert_eq!(t.index, 3);
    assert!(e.open);
    // Out of range: nothing changes, not even the version.
    let v = t.queue_version;
    t.apply(Command::Remove(99), true, 1.0, &mut rng());
    assert_eq!(t.queue_version, v);
    // Shuffle: the item playing stays playing, first.
    let playing_item = t.queue[t.index].clone();
    t.apply(Command::Shuffle, true, 1.0, &mut rng());
    assert_eq!((t.index, &t.queue[0]), (0, &playing_item));
    // Clear stops.
    let e = t.apply(Command::Clear, true, 1.0, &mut rng());
    assert!(e.close && t.queue.is_empty() && t.state == TransportState::Stopped);
}

#[test]
fn the_item_playing_stays_the_one_playing_when_another_moves() {
    // Queue a b c d e, c (2) playing.
    assert_eq!(index_after_move(2, 2, 4), 4); // c itself moves to the end
    assert_eq!(index_after_move(2, 0, 3), 1); // a moves after c
    assert_eq!(index_after_move(2, 4, 0), 3); // e moves before c
    assert_eq!(index_after_move(2, 3, 4), 2); // d and e swap behind it
    assert_eq!(index_after_move(2, 0, 1), 2); // a and b swap before it
    assert_eq!(index_after_move(2, 4, 2), 3); // e into c's place: c after it
    assert_eq!(index_after_move(2, 0, 2), 1); // a into c's place: c before it
    let mut t = playing(5, 2);
    t.apply(Command::Move { from: 0, to: 4 }, true, 1.0, &mut rng());
    assert_eq!(t.index, 1);
    assert_eq!(t.queue[1], Item::File("/m/2.flac".into()));
}

#[test]
fn seek_fades_in_while_playing_and_volume_is_the_streamers() {
    let mut t = playing(2, 0);
    let e = t.apply(Command::Seek(30.0), true, 1.0, &mut rng());
    assert_eq!((e.seek, e.fade), (Some(30.0), FadeChange::In));
    t.apply(Command::Pause, true, 30.0, &mut rng());
    let e = t.apply(Command::Seek(10.0), true, 30.0, &mut rng());
    assert_eq!(e.fade, FadeChange::Cancel);
    let e = t.apply(Command::ZoneVolume(250), true, 30.0, &mut rng());
    assert_eq!(e.volume, Some(100));
    assert_eq!(t.state, TransportState::Paused);
}
