//! Socket set-up shared by both roles (socket2).

use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

/// A non-blocking UDP socket bound to `port` (shared with other receivers on the host) and
/// joined to `group` on the interface with address `interface`.
pub fn multicast_receiver(
    group: Ipv4Addr,
    port: u16,
    interface: Ipv4Addr,
) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
    s.join_multicast_v4(&group, &interface)?;
    // Only the group joined here: Linux otherwise hands a socket bound to the port the
    // datagrams of every group any socket of the host joined on it (two zones on one port,
    // or a speaker moving between them, would hear both streams).
    #[cfg(target_os = "linux")]
    s.set_multicast_all_v4(false)?;
    s.set_recv_buffer_size(1 << 20)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A blocking UDP socket for sending to a multicast group.
pub fn multicast_sender(
    interface: Ipv4Addr,
    ttl: u32,
    loopback: bool,
) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_multicast_if_v4(&interface)?;
    s.set_multicast_ttl_v4(ttl)?;
    s.set_multicast_loop_v4(loopback)?;
    s.bind(&SocketAddrV4::new(interface, 0).into())?;
    Ok(s.into())
}

/// Asks the kernel to stamp every datagram received on `socket` (`SO_TIMESTAMPNS`).
pub fn enable_rx_timestamps(socket: &impl std::os::fd::AsFd) -> std::io::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
        .map_err(std::io::Error::from)
}

/// How fast a local clock runs against `CLOCK_REALTIME`, the clock of the kernel's receive
/// timestamps, learnt from the pairs of readings every receive takes. A stamp's age is measured
/// on the realtime clock; read long after the datagram arrived (clock sync reads its answers a
/// poll later), the age must be converted: 500 ms on a clock 100 ppm off is 50 µs of error.
#[derive(Debug, Clone, Copy)]
pub struct RealtimeRate {
    /// Readings (realtime, local) the rate is measured from.
    base: Option<(i64, crate::clock::LocalNs)>,
    /// Local nanoseconds per realtime nanosecond, once measured.
    rate: Option<f64>,
}

/// The shortest span the rate is measured over (readings jitter by a microsecond or so: 0.1 ppm).
const RATE_SPAN_MIN_NS: i64 = 10_000_000_000;
/// The span after which the readings the rate is measured from move up to the latest.
const RATE_SPAN_MAX_NS: i64 = 60_000_000_000;

impl RealtimeRate {
    pub const fn new() -> Self {
        RealtimeRate {
            base: None,
            rate: None,
        }
    }

    /// Whether the rate is known yet (a stamp's age can be trusted long after it arrived).
    pub fn known(&self) -> bool {
        self.rate.is_some()
    }

    /// Takes a pair of readings made together.
    pub fn observe(&mut self, realtime_ns: i64, local: crate::clock::LocalNs) {
        let Some((r0, l0)) = self.base else {
            self.base = Some((realtime_ns, local));
            return;
        };
        let span = realtime_ns - r0;
        if !(0..=10 * RATE_SPAN_MAX_NS).contains(&span) {
            // The realtime clock was stepped (set by hand, or by NTP): start over.
            *self = RealtimeRate::new();
            self.base = Some((realtime_ns, local));
            return;
        }
        if span < RATE_SPAN_MIN_NS {
            return;
        }
        let rate = local.since(l0) as f64 / span as f64;
        if (rate - 1.0).abs() < 1e-3 {
            self.rate = Some(rate);
        } else {
            // A step hidden in the span: no rate but a fresh start.
            *self = RealtimeRate::new();
        }
        if span > RATE_SPAN_MAX_NS || self.base.is_none() {
            self.base = Some((realtime_ns, local));
        }
    }

    /// A span of the realtime clock on the local clock.
    pub fn local_ns(&self, realtime_ns: i64) -> i64 {
        match self.rate {
            Some(r) => (realtime_ns as f64 * r) as i64,
            None => realtime_ns,
        }
    }
}

impl Default for RealtimeRate {
    fn default() -> Self {
        RealtimeRate::new()
    }
}

/// Receives one datagram (blocking within the socket's read timeout, or with `wait` false
/// only what is there) with its kernel receive timestamp, converted at once from
/// `CLOCK_REALTIME` (what the kernel stamps) to `clock`: the time elapsed since the stamp is
/// measured on the realtime clock, converted by `rate` (which the readings taken here teach)
/// and taken off `clock.now()`. Without a stamp (not enabled, or not supported) the time of the
/// call is used.
pub fn recv_stamped(
    socket: &std::net::UdpSocket,
    buf: &mut [u8],
    clock: &crate::clock::SharedClock,
    rate: &mut RealtimeRate,
    wait: bool,
) -> std::io::Result<(usize, std::net::SocketAddr, crate::clock::LocalNs)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let flags = if wait {
        MsgFlags::empty()
    } else {
        MsgFlags::MSG_DONTWAIT
    };
    let msg = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), flags)
        .map_err(std::io::Error::from)?;
    let now = clock.now();
    let real = crate::clock::realtime_ns_for_measurement();
    rate.observe(real, now);
    let mut t = now;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                let stamp = crate::clock::timespec_ns(&ts);
                let age = (real - stamp).clamp(0, 1_000_000_000);
                t = now.plus(-rate.local_ns(age));
            }
        }
    }
    let from = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| std::net::SocketAddr::V4((*v4).into()))
        })
        .ok_or_else(|| std::io::Error::other("datagram without an IPv4 source"))?;
    Ok((msg.bytes, from, t))
}

#[cfg(test)]
mod tests {
    use super::RealtimeRate;
    use crate::clock::LocalNs;

    /// Readings every 250 ms of a local clock `ppm` fast against realtime, from `t0`.
    fn feed(r: &mut RealtimeRate, from_s: f64, to_s: f64, ppm: f64, local0: i64) {
        let mut t = from_s;
        while t <= to_s {
            let real = (t * 1e9) as i64;
            r.observe(
                real,
                LocalNs(local0 + (real as f64 * (1.0 + ppm * 1e-6)) as i64),
            );
            t += 0.25;
        }
    }

    #[test]
    fn realtime_rate_converts_ages_after_ten_seconds() {
        let mut r = RealtimeRate::new();
        feed(&mut r, 1000.0, 1009.0, 100.0, 5_000_000_000);
        assert!(!r.known());
        assert_eq!(r.local_ns(250_000_000), 250_000_000);
        feed(&mut r, 1009.25, 1200.0, 100.0, 5_000_000_000);
        assert!(r.known());
        // 250 ms of realtime are 250.025 ms on a clock 100 ppm fast (within a nanosecond or so).
        assert!(
            (r.local_ns(250_000_000) - 250_025_000).abs() <= 2,
            "{}",
            r.local_ns(250_000_000)
        );
    }

    #[test]
    fn a_stepped_realtime_clock_starts_the_rate_over() {
        let mut r = RealtimeRate::new();
        feed(&mut r, 1000.0, 1030.0, -50.0, 0);
        assert!(r.known());
        // Set back by an hour: no rate until ten seconds more were seen.
        feed(&mut r, 1030.25 - 3600.0, 1035.0 - 3600.0, -50.0, 0);
        assert!(!r.known());
        // Stepped forward by a second inside a span: the span's rate is nonsense, not used.
        let mut r = RealtimeRate::new();
        feed(&mut r, 0.0, 5.0, 0.0, 0);
        feed(&mut r, 6.25, 12.0, 0.0, -1_000_000_000);
        assert!(!r.known());
        feed(&mut r, 12.25, 40.0, 0.0, -1_000_000_000);
        assert!(r.known());
        assert_eq!(r.local_ns(1_000_000), 1_000_000);
    }
}
