//! The speakers a controller has heard from (heartbeats).

use crate::clock::ControllerNs;
use crate::wire::Heartbeat;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// A speaker is reported lost after this long without a heartbeat.
pub const LOST_AFTER_NS: i64 = 5_000_000_000;

#[derive(Debug, Clone)]
struct Entry {
    addr: IpAddr,
    heartbeat: Heartbeat,
    last_seen: ControllerNs,
}

/// What the API shows about a speaker.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpeakerInfo {
    pub name: String,
    pub api_url: String,
    pub volume: u8,
    pub muted: bool,
    pub locked: bool,
    pub sync_error_us: Option<f64>,
    /// The zone whose stream it plays (None: a stream this controller does not send).
    pub zone: Option<String>,
    /// That stream, `group:port`, as the speaker reports it.
    pub stream: Option<String>,
    pub online: bool,
    pub last_seen_ms_ago: i64,
}

/// Known speakers, keyed by name.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<BTreeMap<String, Entry>>,
}

impl Registry {
    /// Records a heartbeat from `from` at controller time `now`.
    pub fn handle_heartbeat(&self, from: SocketAddr, hb: Heartbeat, now: ControllerNs) {
        if let Ok(mut m) = self.inner.lock() {
            if !m.contains_key(&hb.name) {
                if m.len() >= 256 {
                    return;
                }
                log::info!("speaker {} joined from {}", hb.name, from.ip());
            }
            m.insert(
                hb.name.clone(),
                Entry {
                    addr: from.ip(),
                    heartbeat: hb,
                    last_seen: now,
                },
            );
        }
    }

    /// Speakers heard from (whether still online or not).
    pub fn count(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// All known speakers, as of `now`.
    pub fn list(&self, now: ControllerNs) -> Vec<SpeakerInfo> {
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
                    online: ago < LOST_AFTER_NS,
                    last_seen_ms_ago: ago / 1_000_000,
                }
            })
            .collect()
    }

    /// True when a speaker has sent heartbeats from `addr`.
    pub fn knows(&self, addr: std::net::IpAddr) -> bool {
        self.inner
            .lock()
            .is_ok_and(|m| m.values().any(|e| e.addr == addr))
    }

    /// A volume or mute change made through the controller, ahead of the speaker's next
    /// heartbeat.
    pub fn note_volume(&self, name: &str, volume: u8, muted: bool) {
        if let Ok(mut m) = self.inner.lock() {
            if let Some(e) = m.get_mut(name) {
                e.heartbeat.volume = volume;
                e.heartbeat.muted = muted;
            }
        }
    }

    /// A move to another zone made through the controller, ahead of the next heartbeat.
    pub fn note_stream(&self, name: &str, stream: String) {
        if let Ok(mut m) = self.inner.lock() {
            if let Some(e) = m.get_mut(name) {
                e.heartbeat.stream = Some(stream);
            }
        }
    }

    /// One speaker by name.
    pub fn get(&self, name: &str, now: ControllerNs) -> Option<SpeakerInfo> {
        self.list(now).into_iter().find(|s| s.name == name)
    }
}
