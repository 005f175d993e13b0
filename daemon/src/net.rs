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

/// Receives one datagram (blocking, within the socket's read timeout) with its kernel receive
/// timestamp, converted at once from `CLOCK_REALTIME` (what the kernel stamps) to `clock`: the
/// time elapsed since the stamp is measured on the realtime clock and taken off `clock.now()`.
/// Without a stamp (not enabled, or not supported) the time of the call is used.
pub fn recv_stamped_blocking(
    socket: &std::net::UdpSocket,
    buf: &mut [u8],
    clock: &crate::clock::SharedClock,
) -> std::io::Result<(usize, std::net::SocketAddr, crate::clock::LocalNs)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let now = clock.now();
    let mut t = now;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                let stamp = crate::clock::timespec_ns(&ts);
                let age =
                    (crate::clock::realtime_ns_for_measurement() - stamp).clamp(0, 1_000_000_000);
                t = now.plus(-age);
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
