//! Which hosts have shown that they receive what the sync service sends them (pure logic).
//!
//! A repair answer is larger than its request, so the service must not answer a spoofed
//! source: an attacker who sent one forged heartbeat (any address can "join") could otherwise
//! reflect a stream at a victim, 256 times what it sends. A speaker proves its address by
//! echoing, in its next sync request, the controller time `t3` of the last answer it got: only
//! a host that receives the service's answers knows it. Repairs go only to hosts proven in the
//! last 10 s (a speaker polls at least every second).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// A proof is good for this long.
const PROVEN_FOR_NS: i64 = 10_000_000_000;
/// Sources and hosts remembered at most (the longest-idle leave first).
const CAPACITY: usize = 4096;

/// Answers remembered per source: a speaker polling 40 times a second on a slow path sends
/// its next request before the last answer arrives, so its proof may be a few answers old.
const RECENT: usize = 8;

/// The last `t3`s sent to each source (and when), and when each host last proved itself.
#[derive(Debug, Default)]
pub(crate) struct Proofs {
    sent: HashMap<SocketAddr, ([i64; RECENT], i64)>,
    proven: HashMap<IpAddr, i64>,
}

impl Proofs {
    /// A sync request from `from` at controller time `now` echoing `proof` (0: none).
    pub(crate) fn request(&mut self, from: SocketAddr, proof: i64, now: i64) {
        if proof != 0
            && self
                .sent
                .get(&from)
                .is_some_and(|(t3s, _)| t3s.contains(&proof))
        {
            insert_bounded(&mut self.proven, from.ip(), now, |&t| t);
        }
    }

    /// An answer went to `from` with `t3`, at controller time `now`.
    pub(crate) fn answered(&mut self, from: SocketAddr, t3: i64, now: i64) {
        let mut t3s = self.sent.get(&from).map_or([0; RECENT], |s| s.0);
        t3s.rotate_right(1);
        t3s[0] = t3;
        insert_bounded(&mut self.sent, from, (t3s, now), |&(_, t)| t);
    }

    /// Whether `host` proved itself in the last 10 s.
    pub(crate) fn proven(&self, host: IpAddr, now: i64) -> bool {
        self.proven
            .get(&host)
            .is_some_and(|&t| now.saturating_sub(t) < PROVEN_FOR_NS)
    }
}

/// Inserts into a map of at most `CAPACITY` entries: a newcomer to a full map takes the place
/// of the entry idle the longest (`at` gives an entry's last time), never is refused.
fn insert_bounded<K: std::hash::Hash + Eq + Copy, V>(
    map: &mut HashMap<K, V>,
    key: K,
    value: V,
    at: impl Fn(&V) -> i64,
) {
    if !map.contains_key(&key) && map.len() >= CAPACITY {
        if let Some(old) = map.iter().min_by_key(|(_, v)| at(v)).map(|(k, _)| *k) {
            map.remove(&old);
        }
    }
    map.insert(key, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_host_that_receives_the_answers_is_proven() {
        let mut p = Proofs::default();
        let spk = addr("10.0.0.2:40000");
        // No proof, a wrong one, one sent to another port of the same host: not proven.
        p.request(spk, 0, 1);
        p.answered(spk, 1_000_123, 2);
        p.request(spk, 1_000_124, 3);
        p.request(addr("10.0.0.2:40001"), 1_000_123, 3);
        assert!(!p.proven(spk.ip(), 4));
        // The t3 it was sent, even with newer answers still on their way: proven, for 10 s.
        p.answered(spk, 1_000_200, 4);
        p.request(spk, 1_000_123, 5);
        assert!(p.proven(spk.ip(), 6));
        assert!(p.proven(spk.ip(), 5 + PROVEN_FOR_NS - 1));
        assert!(!p.proven(spk.ip(), 5 + PROVEN_FOR_NS));
        // A spoofer that only sends (a victim's address) never sees a t3.
        assert!(!p.proven(addr("10.0.0.99:1").ip(), 6));
    }

    #[test]
    fn a_full_table_takes_newcomers() {
        let mut p = Proofs::default();
        for k in 0..CAPACITY as u32 {
            let a = SocketAddr::new(IpAddr::from(k.to_be_bytes()), 9);
            p.answered(a, 7, 100 + i64::from(k));
        }
        let late = addr("10.9.9.9:9");
        p.answered(late, 55, 1_000_000);
        p.request(late, 55, 1_000_001);
        assert!(p.proven(late.ip(), 1_000_002));
        assert_eq!(p.sent.len(), CAPACITY);
    }
}
