//! The controller's clock-sync and heartbeat service (unicast UDP).

use crate::clock::{ControllerNs, SharedClock};
use crate::controller::Registry;
use crate::wire::packet::{parse, Packet};
use crate::wire::SyncResponse;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;

/// Counters of the sync service.
#[derive(Default, Debug)]
pub struct ServerStats {
    pub requests: AtomicU64,
    pub heartbeats: AtomicU64,
    pub invalid: AtomicU64,
}

impl ServerStats {
    /// The counters as JSON, for the status API.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "heartbeats": self.heartbeats.load(Ordering::Relaxed),
            "invalid": self.invalid.load(Ordering::Relaxed),
        })
    }
}

/// Serves sync requests and heartbeats until the socket fails.
pub async fn serve(
    socket: UdpSocket,
    clock: SharedClock,
    registry: Arc<Registry>,
    stats: Arc<ServerStats>,
) {
    if let Err(e) = crate::net::enable_rx_timestamps(&socket) {
        log::warn!(
            "no kernel receive timestamps on the sync service ({e}); using user-space times"
        );
    }
    let mut buf = [0u8; 2048];
    loop {
        // t2 is the kernel's receive timestamp, on our clock.
        let (len, from, t2) = match crate::net::recv_stamped(&socket, &mut buf, &clock).await {
            Ok((n, from, t, _)) => (n, from, ControllerNs(t.0)),
            Err(e) => {
                log::warn!("sync service receive failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        match parse(&buf[..len]) {
            Ok(Packet::SyncRequest(req)) => {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                let mut resp = SyncResponse {
                    id: req.id,
                    t1: req.t1,
                    t2,
                    t3: t2,
                };
                resp.t3 = ControllerNs(clock.now().0);
                let _ = socket.send_to(&resp.encode(), from).await;
            }
            Ok(Packet::Heartbeat(hb)) => {
                stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                registry.handle_heartbeat(from, hb, t2);
            }
            Ok(_) | Err(_) => {
                stats.invalid.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
