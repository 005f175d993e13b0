//! The air of a Wi-Fi link, for `chorus-rig relay --air multicast|unicast`: when a datagram
//! that enters it at `now` comes out, or that it never does. What a home access point does
//! with each kind (the defaults, each a flag):
//!
//! - **Group traffic** (`multicast`) goes out only after a DTIM beacon (every `--dtim-ms`,
//!   102.4 ms: a beacon interval of 100 TU and a DTIM period of 1; 3 is common too), as soon
//!   as a station in power save is associated; then all of it in one burst at the basic rate
//!   (`--air-kbps`, 6 Mbit/s: the datagrams queue behind each other, and past
//!   `--air-queue-ms` of queue they are dropped), with no acknowledgement and no retry: each
//!   is lost with `--loss-pct` (as plain relays do too).
//! - **Station traffic** (`unicast`, both ways) goes at once, at a data rate where airtime
//!   does not count (`--air-kbps 0`), but each attempt fails with `--retry-pct` (15 %) and a
//!   retry comes after a random backoff of up to `--retry-ms` (2 ms) that doubles each time;
//!   after 7 attempts the frame is lost. The receiver hands frames up in order (802.11's
//!   block-ack reorder buffer), so a retried one holds back those after it.
//! - **Outages** (`--burst-ms` every `--burst-every-ms`: interference, a scan, a neighbour's
//!   burst) lose group traffic and hold station traffic until they end (its retries go on).

use rand::Rng;
use std::time::{Duration, Instant};

/// Attempts of a unicast frame before the access point gives up (its retry limit).
const ATTEMPTS: u32 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Multicast,
    Unicast,
}

pub struct Air {
    pub kind: Kind,
    /// Beacons with a DTIM come at `start + k * dtim` (multicast; zero: no wait).
    pub dtim: Duration,
    pub start: Instant,
    /// The rate the air carries it at, kbit/s (zero: airtime does not count).
    pub kbps: f64,
    /// Queue beyond which a datagram is dropped.
    pub queue: Duration,
    /// Probability that one attempt fails, and the first retry's longest backoff (unicast).
    pub retry: f64,
    pub retry_max: Duration,
    /// When the air is free again.
    busy_until: Instant,
    /// The last delivery each way (station traffic is handed up in order).
    last: [Instant; 2],
}

impl Air {
    pub fn new(kind: Kind, start: Instant) -> Air {
        Air {
            kind,
            dtim: Duration::ZERO,
            start,
            kbps: 0.0,
            queue: Duration::from_millis(500),
            retry: 0.0,
            retry_max: Duration::from_millis(2),
            busy_until: start,
            last: [start; 2],
        }
    }

    /// When a datagram of `len` bytes that comes at `now` (or, held by an outage, at the end
    /// of it) is delivered; None: lost. `up`: from the station.
    pub fn due(
        &mut self,
        len: usize,
        now: Instant,
        up: bool,
        rng: &mut impl Rng,
    ) -> Option<Instant> {
        let mut t = now;
        if self.kind == Kind::Multicast && !self.dtim.is_zero() {
            let since = t.duration_since(self.start).as_nanos();
            let period = self.dtim.as_nanos();
            let next = since.div_ceil(period) * period;
            t = self.start + Duration::from_nanos(next as u64);
        }
        if self.kbps > 0.0 {
            let start = t.max(self.busy_until);
            if start.duration_since(now) > self.queue {
                return None;
            }
            // 8 bits a byte, plus the 802.11 and IP/UDP headers (about 60 bytes).
            let airtime = (len + 60) as f64 * 8.0 / (self.kbps * 1000.0);
            self.busy_until = start + Duration::from_secs_f64(airtime);
            t = self.busy_until;
        }
        if self.kind == Kind::Unicast {
            let mut backoff = self.retry_max;
            let mut attempts = 1;
            while rng.gen::<f64>() < self.retry {
                if attempts == ATTEMPTS {
                    return None;
                }
                attempts += 1;
                t += backoff.mul_f64(rng.gen::<f64>());
                backoff *= 2;
            }
            let last = &mut self.last[usize::from(up)];
            t = t.max(*last);
            *last = t;
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn group_traffic_waits_for_the_next_dtim_and_queues_behind_itself() {
        let start = Instant::now();
        let mut air = Air::new(Kind::Multicast, start);
        air.dtim = Duration::from_micros(102_400);
        air.kbps = 6_000.0;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let at = start + Duration::from_millis(10);
        let a = air.due(1_000, at, false, &mut rng).unwrap();
        let b = air.due(1_000, at, false, &mut rng).unwrap();
        // 1060 bytes at 6 Mbit/s: 1.413 ms each, after the beacon at 102.4 ms.
        let ms = |t: Instant| t.duration_since(start).as_secs_f64() * 1e3;
        assert!((ms(a) - 103.813).abs() < 0.01, "{}", ms(a));
        assert!((ms(b) - 105.227).abs() < 0.01, "{}", ms(b));
    }

    #[test]
    fn station_traffic_is_retried_and_lost_only_after_the_retry_limit() {
        let start = Instant::now();
        let mut air = Air::new(Kind::Unicast, start);
        air.retry = 0.5;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut late, mut lost) = (0, 0);
        for _ in 0..10_000 {
            air.last = [start; 2];
            match air.due(500, start, true, &mut rng) {
                Some(t) if t > start => late += 1,
                Some(_) => {}
                None => lost += 1,
            }
        }
        // Half retried at least once; 1/2^7 of them lost.
        assert!((4_500..5_500).contains(&late), "{late}");
        assert!((40..120).contains(&lost), "{lost}");
        air.retry = 0.0;
        air.last = [start; 2];
        assert_eq!(air.due(500, start, true, &mut rng), Some(start));
        // In order: after one held back, the next comes no earlier.
        air.last[1] = start + Duration::from_millis(3);
        assert_eq!(
            air.due(500, start, true, &mut rng),
            Some(start + Duration::from_millis(3))
        );
        assert_eq!(air.due(500, start, false, &mut rng), Some(start));
    }
}
