//! The speakers a controller has heard from (heartbeats).

use crate::clock::ControllerNs;
use crate::wire::Heartbeat;
pub(crate) use chorus_api::SpeakerInfo;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// A speaker is reported lost after this long without a heartbeat.
pub(crate) const LOST_AFTER_NS: i64 = 5_000_000_000;
/// ... and forgotten after this long (forged names must not fill the registry for good).
pub(crate) const FORGET_AFTER_NS: i64 = 600_000_000_000;
/// Speakers known at most.
const CAPACITY: usize = 256;
/// A heartbeat that moves a speaker to another address must have been sent within this span of
/// now (by the speaker's clock model): a replayed one is older.
const FRESH_NS: i64 = 2_000_000_000;

/// What became of a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heard {
    Joined,
    Updated,
    /// From another address than the speaker's, without a fresh send time (a replay, or
    /// forged): the entry stays where it is.
    RefusedMove,
    /// Not newer than the last one taken (a replay from the same address).
    RefusedStale,
    /// The registry is full of speakers still online.
    RefusedFull,
}

#[derive(Debug, Clone)]
struct Entry {
    addr: IpAddr,
    heartbeat: Heartbeat,
    last_seen: ControllerNs,
    /// How its zone's datagrams reach it (the sync service decides, after each heartbeat).
    delivery: chorus_api::Delivery,
}

/// Known speakers, keyed by name.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<BTreeMap<String, Entry>>,
}

impl Registry {
    /// Records a heartbeat from `from` at controller time `now`. A speaker known at another
    /// address moves only with a heartbeat sent within 2 s of now and newer than its last; one
    /// at its address takes any heartbeat not older than its last. Speakers silent for 10 min
    /// are forgotten, and a full registry makes room by forgetting the longest-silent offline
    /// one.
    pub(crate) fn handle_heartbeat(
        &self,
        from: SocketAddr,
        hb: Heartbeat,
        now: ControllerNs,
    ) -> Heard {
        let Ok(mut m) = self.inner.lock() else {
            return Heard::RefusedFull;
        };
        m.retain(|_, e| now.since(e.last_seen) < FORGET_AFTER_NS);
        let heard = match m.get(&hb.name) {
            Some(e) => {
                let newer = match (hb.sent_ns, e.heartbeat.sent_ns) {
                    (Some(t), Some(last)) => t > last,
                    (None, Some(_)) => e.addr == from.ip(),
                    _ => true,
                };
                let fresh = hb
                    .sent_ns
                    .is_some_and(|t| now.since(ControllerNs(t)).unsigned_abs() <= FRESH_NS as u64);
                if e.addr != from.ip() && !(fresh && newer) {
                    return Heard::RefusedMove;
                }
                if !newer {
                    return Heard::RefusedStale;
                }
                if e.addr != from.ip() {
                    log::info!("speaker {} moved to {}", hb.name, from.ip());
                }
                Heard::Updated
            }
            None => {
                if m.len() >= CAPACITY && !make_room(&mut m, now) {
                    return Heard::RefusedFull;
                }
                log::info!("speaker {} joined from {}", hb.name, from.ip());
                Heard::Joined
            }
        };
        m.insert(
            hb.name.clone(),
            Entry {
                addr: from.ip(),
                heartbeat: hb,
                last_seen: now,
                delivery: chorus_api::Delivery::Multicast,
            },
        );
        heard
    }

    /// Speakers heard from (whether still online or not).
    pub(crate) fn count(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// All known speakers, as of `now`.
    pub(crate) fn list(&self, now: ControllerNs) -> Vec<SpeakerInfo> {
        let Ok(m) = self.inner.lock() else {
            return vec![];
        };
        m.values()
            .map(|e| {
                let ago = now.since(e.last_seen);
                SpeakerInfo {
                    name: e.heartbeat.name.clone(),
                    api_url: format!("http://{}", SocketAddr::new(e.addr, e.heartbeat.api_port)),
                    volume: e.heartbeat.volume,
                    muted: e.heartbeat.muted,
                    locked: e.heartbeat.locked,
                    sync_error_us: e.heartbeat.sync_error_us,
                    zone: None,
                    stream: e.heartbeat.stream.clone(),
                    delivery: e.delivery,
                    online: ago < LOST_AFTER_NS,
                    last_seen_ms_ago: ago / 1_000_000,
                }
            })
            .collect()
    }

    /// How speaker `name`'s zone reaches it now (after its last heartbeat).
    pub(crate) fn set_delivery(&self, name: &str, delivery: chorus_api::Delivery) {
        if let Some(e) = self
            .inner
            .lock()
            .ok()
            .as_mut()
            .and_then(|m| m.get_mut(name))
        {
            e.delivery = delivery;
        }
    }

    /// A volume or mute change made through the controller, ahead of the speaker's next
    /// heartbeat.
    pub(crate) fn note_volume(&self, name: &str, volume: u8, muted: bool) {
        if let Ok(mut m) = self.inner.lock() {
            if let Some(e) = m.get_mut(name) {
                e.heartbeat.volume = volume;
                e.heartbeat.muted = muted;
            }
        }
    }

    /// A move to another zone made through the controller, ahead of the next heartbeat.
    pub(crate) fn note_stream(&self, name: &str, stream: String) {
        if let Ok(mut m) = self.inner.lock() {
            if let Some(e) = m.get_mut(name) {
                e.heartbeat.stream = Some(stream);
            }
        }
    }

    /// The address a speaker is known at.
    #[cfg(test)]
    fn addr_of(&self, name: &str) -> Option<IpAddr> {
        self.inner.lock().ok()?.get(name).map(|e| e.addr)
    }
}

/// Forgets the offline speaker silent the longest, else the one silent the longest that never
/// sent a stamped heartbeat (a speaker whose clock is locked stamps them; forged names kept
/// online by a flood do not); false when every one is online and stamped.
fn make_room(m: &mut BTreeMap<String, Entry>, now: ControllerNs) -> bool {
    let oldest = |unstamped: bool| {
        m.iter()
            .filter(|(_, e)| {
                if unstamped {
                    e.heartbeat.sent_ns.is_none()
                } else {
                    now.since(e.last_seen) >= LOST_AFTER_NS
                }
            })
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(k, _)| k.clone())
    };
    let victim = oldest(false).or_else(|| oldest(true));
    victim.is_some_and(|k| m.remove(&k).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(name: &str, sent_ns: Option<i64>) -> Heartbeat {
        Heartbeat {
            name: name.into(),
            api_port: 7780,
            volume: 50,
            muted: false,
            locked: true,
            sync_error_us: None,
            stream: None,
            sent_ns,
            unicast_port: None,
            delivery: None,
        }
    }

    fn at(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 7701)
    }

    #[test]
    fn a_replayed_or_unstamped_heartbeat_does_not_move_a_speaker() {
        let r = Registry::default();
        let s = 1_000_000_000_000i64;
        let t = |k: i64| ControllerNs(s + k * 1_000_000_000);
        let real = at("10.0.0.2");
        assert_eq!(
            r.handle_heartbeat(real, hb("spk1", Some(s)), t(0)),
            Heard::Joined
        );
        assert_eq!(
            r.handle_heartbeat(real, hb("spk1", Some(s + 1_000_000_000)), t(1)),
            Heard::Updated
        );
        // Forged, from another host: unstamped; a replay of the last one (not newer); a stamp
        // 10 s old (a replay of an old capture).
        let evil = at("10.0.0.66");
        assert_eq!(
            r.handle_heartbeat(evil, hb("spk1", None), t(2)),
            Heard::RefusedMove
        );
        assert_eq!(
            r.handle_heartbeat(evil, hb("spk1", Some(s + 1_000_000_000)), t(2)),
            Heard::RefusedMove
        );
        assert_eq!(
            r.handle_heartbeat(evil, hb("spk1", Some(s - 8_000_000_000)), t(2)),
            Heard::RefusedMove
        );
        // A replay from the speaker's own address: not newer.
        assert_eq!(
            r.handle_heartbeat(real, hb("spk1", Some(s)), t(2)),
            Heard::RefusedStale
        );
        assert_eq!(r.addr_of("spk1"), Some(real.ip()));
        // The speaker itself moved (DHCP): its next heartbeat is fresh and newer.
        let new = at("10.0.0.3");
        assert_eq!(
            r.handle_heartbeat(new, hb("spk1", Some(s + 3_000_000_000)), t(3)),
            Heard::Updated
        );
        assert_eq!(r.addr_of("spk1"), Some(new.ip()));
    }

    #[test]
    fn forged_names_do_not_fill_the_registry_for_good() {
        let r = Registry::default();
        let t0 = ControllerNs(1_000_000_000_000);
        for k in 0..CAPACITY {
            let h = hb(&format!("forged{k}"), None);
            assert_eq!(r.handle_heartbeat(at("10.0.0.66"), h, t0), Heard::Joined);
        }
        // Online but never stamped (forged names kept alive by a flood): a newcomer takes the
        // place of one at once.
        let t1 = t0.plus(1);
        let new = r.handle_heartbeat(at("10.0.0.3"), hb("new", None), t1);
        assert_eq!(new, Heard::Joined);
        assert_eq!(r.count(), CAPACITY);
        // Stamped and online (real speakers): a newcomer waits until one is offline.
        let full = Registry::default();
        for k in 0..CAPACITY {
            let h = hb(&format!("real{k}"), Some(t0.0));
            assert_eq!(full.handle_heartbeat(at("10.0.0.66"), h, t0), Heard::Joined);
        }
        let late = |t| full.handle_heartbeat(at("10.0.0.2"), hb("late", None), t);
        assert_eq!(late(t1), Heard::RefusedFull);
        assert_eq!(late(t0.plus(LOST_AFTER_NS)), Heard::Joined);
        // After 10 min the silent are all gone.
        let later = t0.plus(LOST_AFTER_NS);
        let real = r.handle_heartbeat(at("10.0.0.2"), hb("real", None), later);
        assert_eq!(real, Heard::Joined);
        let much_later = t0.plus(FORGET_AFTER_NS + 1);
        assert_eq!(
            r.handle_heartbeat(at("10.0.0.2"), hb("real", None), much_later),
            Heard::Updated
        );
        assert_eq!(r.count(), 1);
    }
}
