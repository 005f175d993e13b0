//! Where a zone's datagrams go: its multicast group (unless the zone sends by unicast only)
//! and every speaker served by unicast ([`super::unicast`]), each destination with a batch of
//! its own (a run of datagrams to one address leaves in one send with segmentation offload).

use super::unicast::UnicastTargets;
use crate::net::{SendBatch, SendError};
use chorus_api::ZoneCounts;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

pub(crate) struct Fanout {
    /// The group, and whether its audio goes there (not when the zone sends by unicast only:
    /// announcements always do, so that speakers find the controller).
    group: (SocketAddr, SendBatch),
    multicast: bool,
    unicast: Vec<(SocketAddr, SendBatch)>,
    targets: Arc<Mutex<UnicastTargets>>,
    /// The zone's stream, `group:port` (how heartbeats name it).
    stream: String,
    live: Vec<SocketAddr>,
}

impl Fanout {
    pub(crate) fn new(
        (group, multicast): (SocketAddr, bool),
        targets: Arc<Mutex<UnicastTargets>>,
        stream: String,
    ) -> Self {
        Fanout {
            group: (group, SendBatch::new(true)),
            multicast,
            unicast: Vec::new(),
            targets,
            stream,
            live: Vec::new(),
        }
    }

    /// Takes the speakers served by unicast now (once a wake-up, before its datagrams; a busy
    /// table is read at the next).
    pub(crate) fn refresh(&mut self, now_ns: i64) {
        let Ok(t) = self.targets.try_lock() else {
            return;
        };
        t.of(&self.stream, now_ns, &mut self.live);
        drop(t);
        let live = &self.live;
        self.unicast.retain(|(a, _)| live.contains(a));
        for &a in live {
            if !self.unicast.iter().any(|(b, _)| *b == a) {
                log::info!("zone stream {}: sending to {a} by unicast", self.stream);
                self.unicast.push((a, SendBatch::new(true)));
            }
        }
    }

    /// Queues an audio or parity datagram for every destination.
    pub(crate) fn push(&mut self, socket: &UdpSocket, datagram: &[u8], counts: &mut ZoneCounts) {
        if self.multicast {
            self.push_group(socket, datagram, counts);
        }
        self.push_unicast(socket, datagram, counts);
    }

    /// Queues an announcement: to the group always, and to every speaker served by unicast.
    pub(crate) fn push_announce(
        &mut self,
        socket: &UdpSocket,
        datagram: &[u8],
        counts: &mut ZoneCounts,
    ) {
        self.push_group(socket, datagram, counts);
        self.push_unicast(socket, datagram, counts);
    }

    fn push_group(&mut self, socket: &UdpSocket, datagram: &[u8], counts: &mut ZoneCounts) {
        let (g, b) = &mut self.group;
        count_send(&mut counts.send_errors, *g, b.push(socket, *g, datagram));
    }

    fn push_unicast(&mut self, socket: &UdpSocket, datagram: &[u8], counts: &mut ZoneCounts) {
        for (a, b) in &mut self.unicast {
            count_send(&mut counts.send_errors, *a, b.push(socket, *a, datagram));
            counts.unicast_sent += 1;
        }
    }

    /// Sends what is queued (at the end of a wake-up).
    pub(crate) fn flush(&mut self, socket: &UdpSocket, counts: &mut ZoneCounts) {
        let (g, b) = &mut self.group;
        count_send(&mut counts.send_errors, *g, b.flush(socket, *g));
        for (a, b) in &mut self.unicast {
            count_send(&mut counts.send_errors, *a, b.flush(socket, *a));
        }
    }
}

/// Counts datagrams a send lost, logging the first and then at powers of two.
fn count_send(errors: &mut u64, dest: SocketAddr, sent: Result<(), SendError>) {
    let Err(SendError { error, lost }) = sent else {
        return;
    };
    let before = *errors;
    *errors += lost as u64;
    if (before + 1..=*errors).any(u64::is_power_of_two) {
        log::warn!("send to {dest} failed ({errors} datagrams): {error}");
    }
}
