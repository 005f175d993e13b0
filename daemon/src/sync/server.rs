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

/// Serves sync requests and heartbeats until the socket fails.
pub async fn serve(
    socket: UdpSocket,
    clock: SharedClock,
    registry: Arc<Registry>,
    stats: Arc<ServerStats>,
) {
    let mut buf = [0u8; 2048];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("sync service receive failed: {e}");
                continue;
            }
        };
        // t2 as close to reception as user space allows.
        let t2 = ControllerNs(clock.now().0);
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
