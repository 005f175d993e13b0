//! The speaker's network tasks: the multicast receiver, the clock-sync client and the
//! heartbeat to the controller.

use super::jitter::Chunk;
use super::Shared;
use crate::clock::{LocalNs, SharedClock};
use crate::net::multicast_receiver;
use crate::sync::Exchange;
use crate::wire::packet::{encode_heartbeat, parse, Packet};
use crate::wire::{Heartbeat, SyncRequest};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// The zone's stream format, as this speaker expects it.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub rate: u32,
    pub channels: u8,
}

/// Receives the zone's multicast stream, decodes packets and hands them to the playout thread.
/// The receiver's side of the channels to the playout thread.
pub struct PlayoutLink {
    /// Chunks to play.
    pub tx: SyncSender<Chunk>,
    /// Sample buffers the playout thread is done with, for reuse.
    pub pool: std::sync::mpsc::Receiver<Vec<f32>>,
}

pub async fn receive(
    group: Ipv4Addr,
    port: u16,
    interface: Ipv4Addr,
    expect: Expect,
    link: PlayoutLink,
    shared: Arc<Shared>,
    fixed_controller: bool,
) -> std::io::Result<()> {
    let PlayoutLink { tx, pool } = link;
    let socket = UdpSocket::from_std(multicast_receiver(group, port, interface)?)?;
    let mut buf = vec![0u8; 2048];
    let stats = &shared.stats;
    loop {
        let (len, from) = socket.recv_from(&mut buf).await?;
        let pkt = match parse(&buf[..len]) {
            Ok(Packet::Audio(p)) => p,
            Ok(Packet::Announce(a)) => {
                if !fixed_controller {
                    let ctl = SocketAddr::new(from.ip(), a.sync_port);
                    if let Ok(mut c) = shared.controller.lock() {
                        if *c != Some(ctl) {
                            log::info!("controller found at {ctl}");
                            *c = Some(ctl);
                        }
                    }
                }
                continue;
            }
            Ok(_) | Err(_) => {
                stats.invalid_packets.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let h = pkt.header;
        if h.rate != expect.rate || h.channels != expect.channels {
            stats.foreign_format.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.packets.fetch_add(1, Ordering::Relaxed);
        // A buffer the playout thread is done with, or a new one.
        let mut samples = pool.try_recv().unwrap_or_default();
        samples.clear();
        samples.reserve(h.frames as usize * h.channels as usize);
        h.format.decode(&pkt.payload, &mut samples);
        let chunk = Chunk {
            session: h.session,
            frame_index: h.frame_index,
            pts: h.pts,
            samples,
        };
        match tx.try_send(chunk) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                stats.queue_overflow.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => return Ok(()),
        }
    }
}

/// Interval between sync exchanges.
/// Exchange interval while locking and on a jittery path: the envelope filter's precision
/// grows with the number of exchanges it sees.
const POLL: Duration = Duration::from_millis(25);
/// Exchange interval on a quiet path once locked: a sharp delay floor needs few exchanges, and
/// a controller with 32 speakers answers 128 exchanges a second instead of 1280.
const POLL_QUIET: Duration = Duration::from_millis(250);

/// Exchanges sync datagrams with the controller every 25 ms (lock after six, about 0.15 s), and
/// sends the heartbeat once a second.
pub async fn sync_client(
    shared: Arc<Shared>,
    clock: SharedClock,
    api_port: u16,
) -> std::io::Result<()> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    if let Err(e) = crate::net::enable_rx_timestamps(&socket) {
        log::warn!("no kernel receive timestamps for clock sync ({e}); using user-space times");
    }
    let mut outstanding: HashMap<u64, LocalNs> = HashMap::new();
    let mut next_id: u64 = rand::random::<u32>() as u64;
    let mut buf = [0u8; 256];
    let mut last_heartbeat = LocalNs(i64::MIN / 2);
    // The model's verdict after the last exchange (read under the lock taken for it).
    let mut quiet = false;
    loop {
        let controller = shared.controller.lock().ok().and_then(|c| *c);
        let Some(ctl) = controller else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let now = clock.now();
        if now.since(last_heartbeat) >= 1_000_000_000 {
            last_heartbeat = now;
            let hb = Heartbeat {
                name: shared.name.clone(),
                api_port,
                volume: shared.volume.load(Ordering::Relaxed),
                muted: shared.muted.load(Ordering::Relaxed),
                locked: shared.locked.load(Ordering::Relaxed),
                sync_error_us: shared.sync_error_us(),
            };
            let _ = socket.send_to(&encode_heartbeat(&hb), ctl).await;
        }
        next_id += 1;
        let t1 = clock.now();
        if outstanding.len() > 64 {
            outstanding.clear();
        }
        outstanding.insert(next_id, t1);
        let req = SyncRequest { id: next_id, t1 };
        if let Err(e) = socket.send_to(&req.encode(), ctl).await {
            log::debug!("sync request to {ctl} failed: {e}");
        }
        // 40 exchanges a second (40-byte datagrams): enough fast ones for the filter to pick
        // from even on a jittery path.
        let deadline = tokio::time::Instant::now() + if quiet { POLL_QUIET } else { POLL };
        while let Ok(Ok((len, from, t4, _))) = tokio::time::timeout_at(
            deadline,
            crate::net::recv_stamped(&socket, &mut buf, &clock),
        )
        .await
        {
            if from != ctl {
                continue;
            }
            let Ok(Packet::SyncResponse(resp)) = parse(&buf[..len]) else {
                continue;
            };
            // Only answers to our own requests, with the t1 we sent.
            if outstanding.remove(&resp.id) != Some(resp.t1) {
                continue;
            }
            let ex = Exchange {
                t1: resp.t1,
                t2: resp.t2,
                t3: resp.t3,
                t4,
            };
            if let Ok(mut m) = shared.model.lock() {
                m.handle_exchange(ex);
                quiet = m.quiet();
                let locked = m.locked();
                if locked && !shared.locked.swap(true, Ordering::Relaxed) {
                    if let Some(s) = m.snapshot() {
                        log::info!(
                            "clock locked to {ctl}: offset_ns={} ppm={:.1} rtt_us={:.0}",
                            s.offset_ref,
                            s.freq * 1e6,
                            m.last_rtt() as f64 / 1000.0
                        );
                    }
                }
                if locked {
                    if let Ok(mut snap) = shared.snapshot.lock() {
                        *snap = m.snapshot();
                    }
                }
            }
        }
    }
}
