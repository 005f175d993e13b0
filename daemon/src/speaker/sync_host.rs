//! The speaker as the host of its clock-sync client (`sync::client`): where the controller is,
//! the model the exchanges feed, and what the heartbeat says.

use super::Shared;
use crate::sync::client::Host;
use crate::sync::{ClockModel, ClockSnapshot};
use crate::wire::{Delivery, Heartbeat};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

pub(crate) struct SyncHost {
    pub shared: Arc<Shared>,
    /// Where the speaker's API listens (told in the heartbeat).
    pub api_port: u16,
    /// Tests only: the stream the heartbeat names, when not the zone's (`[testing]
    /// heartbeat-stream`: a speaker that hears the zone through a relay's copy on another
    /// group still takes the zone's stream by unicast).
    pub heartbeat_stream: Option<String>,
}

impl Host for SyncHost {
    fn controller(&self) -> Option<SocketAddr> {
        self.shared.controller.lock().ok().and_then(|c| *c)
    }

    fn model(&self) -> &Mutex<ClockModel> {
        &self.shared.model
    }

    fn snapshot(&self) -> &Mutex<Option<ClockSnapshot>> {
        &self.shared.snapshot
    }

    fn set_locked(&self, locked: bool) -> bool {
        self.shared.set_locked(locked)
    }

    fn unauthenticated(&self) {
        let net = &self.shared.stats.net;
        net.unauthenticated.fetch_add(1, Ordering::Relaxed);
    }

    fn heartbeat_now(&self) -> bool {
        self.shared.heartbeat_now.swap(false, Ordering::Relaxed)
    }

    fn heartbeat(&self) -> Heartbeat {
        let s = &self.shared;
        Heartbeat {
            name: s.name.clone(),
            api_port: self.api_port,
            volume: s.volume.load(Ordering::Relaxed),
            muted: s.muted.load(Ordering::Relaxed),
            locked: s.locked.load(Ordering::Relaxed),
            sync_error_us: s.sync_error_us(),
            stream: Some(
                self.heartbeat_stream
                    .clone()
                    .unwrap_or_else(|| s.zone().stream()),
            ),
            sent_ns: None,
            unicast_port: Some(s.unicast_port.load(Ordering::Relaxed)).filter(|&p| p != 0),
            delivery: Some(if s.wants_unicast.load(Ordering::Relaxed) {
                Delivery::Unicast
            } else {
                Delivery::Multicast
            }),
        }
    }
}
