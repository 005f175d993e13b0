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
