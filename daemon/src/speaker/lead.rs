//! How far ahead of its time the stream arrives: the largest lead of the last second or two;
//! and from it, whether a stream that went quiet is still coming.

/// A stream quiet for less than this is still coming, whatever its lead.
const QUIET_NS: i64 = 50_000_000;

/// Whether a stream whose last datagrams came `quiet_ns` ago, `lead` ahead of their time at
/// the most, is still coming: frames not here yet are late, not absent (a loss burst under
/// way, a send burst still to come, or a path that holds the stream up and then delivers it,
/// as a Wi-Fi access point does through an outage and its retries), for as long as what it
/// holds can still come before it is due: its lead. A stream that stopped was waited for
/// 50 ms, and a 60 ms outage left a hole of silence where the audio came in time after it.
pub(super) fn still_coming(quiet_ns: i64, lead: Option<i64>) -> bool {
    quiet_ns < lead.unwrap_or(0).max(QUIET_NS)
}

/// The largest of a quantity over the last one to two seconds (two one-second buckets).
#[derive(Debug, Clone, Copy)]
pub(super) struct RecentMax {
    /// Start of the current bucket, local ns, and the largest values of it and the one before.
    since: i64,
    current: i64,
    previous: i64,
}

impl Default for RecentMax {
    fn default() -> Self {
        RecentMax {
            since: i64::MIN / 2,
            current: i64::MIN,
            previous: i64::MIN,
        }
    }
}

impl RecentMax {
    const BUCKET_NS: i64 = 1_000_000_000;

    pub(super) fn note(&mut self, local_ns: i64, value: i64) {
        let age = local_ns - self.since;
        if age >= Self::BUCKET_NS {
            self.previous = if age < 2 * Self::BUCKET_NS {
                self.current
            } else {
                i64::MIN
            };
            self.current = i64::MIN;
            self.since = local_ns;
        }
        self.current = self.current.max(value);
    }

    pub(super) fn get(&self, local_ns: i64) -> Option<i64> {
        let age = local_ns - self.since;
        let v = match age {
            a if a < Self::BUCKET_NS => self.current.max(self.previous),
            a if a < 2 * Self::BUCKET_NS => self.current,
            _ => i64::MIN,
        };
        (v != i64::MIN).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::{still_coming, RecentMax};

    #[test]
    fn a_stream_held_up_for_less_than_its_lead_is_still_coming() {
        const MS: i64 = 1_000_000;
        // 150 ms ahead: an outage of 60 ms, or of 140, is waited for; 160 ms is the end.
        assert!(still_coming(60 * MS, Some(150 * MS)));
        assert!(still_coming(140 * MS, Some(150 * MS)));
        assert!(!still_coming(160 * MS, Some(150 * MS)));
        // No lead known (or a short one): 50 ms.
        assert!(still_coming(40 * MS, None));
        assert!(!still_coming(60 * MS, None));
        assert!(!still_coming(60 * MS, Some(20 * MS)));
    }

    #[test]
    fn the_lead_is_the_largest_of_the_last_one_to_two_seconds() {
        const S: i64 = 1_000_000_000;
        let mut l = RecentMax::default();
        assert_eq!(l.get(0), None);
        l.note(0, 150);
        l.note(S / 2, 120);
        l.note(S / 2, 170);
        assert_eq!(l.get(S / 2), Some(170));
        // A new bucket: the last one's largest still counts for a second.
        l.note(S + 1, 160);
        assert_eq!(l.get(S + 1), Some(170));
        l.note(2 * S + 2, 140);
        assert_eq!(l.get(2 * S + 2), Some(160));
        l.note(3 * S + 3, 130);
        assert_eq!(l.get(3 * S + 3), Some(140));
        // Nothing noted for a while: the current bucket alone, then nothing (the stream
        // stopped).
        assert_eq!(l.get(4 * S + 10), Some(130));
        assert_eq!(l.get(5 * S + 10), None);
        // After a pause, older values are forgotten.
        l.note(10 * S, 90);
        l.note(10 * S + S / 2, 95);
        assert_eq!(l.get(10 * S + S / 2), Some(95));
        l.note(11 * S + 1, 80);
        assert_eq!(l.get(11 * S + 1), Some(95));
    }
}
