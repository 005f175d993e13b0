//! Replays device readings logged by a speaker built with `--features readings-log` through
//! the device clock, as the playout thread would have taken them (without its probes' timing),
//! and prints every 100 ms of host time what the model says:
//! `host_ns position heard_local_ns after_local_ns jittery restarts uncertainty_us`.
//! `tests/rig/replay-diff` compares two speakers' outputs. Usage: devclock_replay READINGS > OUT
use chorus::clock::LocalNs;
use chorus::speaker::devclock::{DeviceClock, Reading};
use std::io::BufRead;

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: devclock_replay READINGS");
        std::process::exit(2);
    };
    let lines = std::io::BufReader::new(std::fs::File::open(path)?).lines();
    let mut dc = DeviceClock::new(48_000);
    let mut next = i64::MIN;
    for line in lines {
        let line = line?;
        // A line cut short by the speaker's end is skipped.
        let Ok(v) = line
            .split(' ')
            .map(str::parse::<i64>)
            .collect::<Result<Vec<i64>, _>>()
        else {
            continue;
        };
        let [before, stamp, after, position, host, ..] = v[..] else {
            continue;
        };
        dc.handle_reading(Reading {
            before: LocalNs(before),
            stamp: LocalNs(stamp),
            after: LocalNs(after),
            position,
        });
        if host >= next {
            next = host + 100_000_000;
            let st = dc.status();
            if let Some(h) = dc.heard(st.position) {
                let jittery = u8::from(st.edge_jitter_us.is_some());
                println!(
                    "{host} {} {} {after} {jittery} {} {:.1}",
                    st.position, h.0, st.restarts, st.uncertainty_us
                );
            }
        }
    }
    Ok(())
}
