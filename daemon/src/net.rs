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

/// Datagrams to one destination, sent together at the end of a burst: a run of datagrams of
/// one size (the last may be shorter) leaves in one `sendmsg` with UDP generic segmentation
/// offload (`UDP_SEGMENT`), which the kernel cuts into those same datagrams on the wire. One
/// trip through the socket, routing and (on a real network) the driver's queue instead of one
/// per datagram. Where the kernel or the route refuses it, every datagram is sent alone.
pub struct SendBatch {
    /// The datagrams queued, back to back.
    buf: Vec<u8>,
    /// Size of each (the last may be shorter), and how many.
    seg: usize,
    count: usize,
    /// The last one queued was shorter than `seg`: nothing more can join.
    closed: bool,
    gso: bool,
}

/// What a batch of datagrams failed with, and how many of them did not leave.
#[derive(Debug)]
pub struct SendError {
    pub error: std::io::Error,
    pub lost: usize,
}

impl SendBatch {
    /// The kernel's limit of segments per send (`UDP_MAX_SEGMENTS`).
    const MAX_SEGMENTS: usize = 64;
    /// Bytes per send: one UDP datagram's worth, with room for the headers.
    const MAX_BYTES: usize = 60_000;

    /// A batch; `segmentation` false sends every datagram on its own.
    pub fn new(segmentation: bool) -> Self {
        SendBatch {
            buf: Vec::with_capacity(Self::MAX_BYTES),
            seg: 0,
            count: 0,
            closed: false,
            gso: segmentation && cfg!(target_os = "linux"),
        }
    }

    /// Nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether runs of datagrams still leave in one send (false once the kernel refused it).
    pub fn segmenting(&self) -> bool {
        self.gso
    }

    /// Queues `datagram` for `dest`, first sending what is queued if it cannot join them.
    /// Errors are those of that send.
    pub fn push(
        &mut self,
        socket: &UdpSocket,
        dest: std::net::SocketAddr,
        datagram: &[u8],
    ) -> Result<(), SendError> {
        let joins = self.count > 0
            && !self.closed
            && !datagram.is_empty()
            && datagram.len() <= self.seg
            && self.count < Self::MAX_SEGMENTS
            && self.buf.len() + datagram.len() <= Self::MAX_BYTES;
        let flushed = if joins || self.count == 0 {
            Ok(())
        } else {
            self.flush(socket, dest)
        };
        if self.count == 0 {
            self.seg = datagram.len();
        }
        self.closed = datagram.len() < self.seg;
        self.buf.extend_from_slice(datagram);
        self.count += 1;
        if !self.gso || datagram.is_empty() {
            let now = self.flush(socket, dest);
            return match (flushed, now) {
                (Ok(()), r) | (r, Ok(())) => r,
                (Err(a), Err(b)) => Err(SendError {
                    error: a.error,
                    lost: a.lost + b.lost,
                }),
            };
        }
        flushed
    }

    /// Sends everything queued to `dest`.
    pub fn flush(
        &mut self,
        socket: &UdpSocket,
        dest: std::net::SocketAddr,
    ) -> Result<(), SendError> {
        let (count, seg) = (self.count, self.seg);
        self.count = 0;
        self.closed = false;
        let r = match count {
            0 => Ok(()),
            1 => socket.send_to(&self.buf, dest).map(drop),
            _ => match send_segmented(socket, dest, &self.buf, seg) {
                // Refused (no offload for this route, a small MTU, an old kernel): one send
                // per datagram from now on.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                    ) =>
                {
                    log::info!("sending datagrams one by one: segmentation offload refused ({e})");
                    self.gso = false;
                    let r = self.send_one_by_one(socket, dest, seg);
                    self.buf.clear();
                    return r;
                }
                r => r,
            },
        };
        self.buf.clear();
        r.map_err(|error| SendError { error, lost: count })
    }

    /// Sends the queued datagrams (`seg` bytes each, the last may be shorter) one at a time.
    fn send_one_by_one(
        &self,
        socket: &UdpSocket,
        dest: std::net::SocketAddr,
        seg: usize,
    ) -> Result<(), SendError> {
        let mut failed: Option<SendError> = None;
        for d in self.buf.chunks(seg.max(1)) {
            if let Err(error) = socket.send_to(d, dest) {
                failed.get_or_insert(SendError { error, lost: 0 }).lost += 1;
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// One `sendmsg` of `buf` to `dest`, which the kernel cuts into datagrams of `seg` bytes.
#[cfg(target_os = "linux")]
fn send_segmented(
    socket: &UdpSocket,
    dest: std::net::SocketAddr,
    buf: &[u8],
    seg: usize,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let std::net::SocketAddr::V4(dest) = dest else {
        return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    };
    let seg = u16::try_from(seg).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a plain C struct; all-zero is a valid value for it.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = dest.port().to_be();
    addr.sin_addr.s_addr = u32::from_ne_bytes(dest.ip().octets());
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for one control message carrying a u16, aligned for `cmsghdr`.
    let mut control = [0u64; 4];
    // SAFETY: every pointer in `msg` points at a live local of the size given with it, the
    // control buffer is aligned for `cmsghdr` and larger than CMSG_SPACE(2) (24 bytes), and
    // the kernel only reads from `buf`.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(2) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), seg);
        libc::sendmsg(socket.as_raw_fd(), &msg, 0)
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn send_segmented(
    _: &UdpSocket,
    _: std::net::SocketAddr,
    _: &[u8],
    _: usize,
) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP))
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
    use super::{RealtimeRate, SendBatch};
    use crate::clock::LocalNs;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// Datagrams of these sizes, each filled with its own index, through a batch (flushed
    /// where `flush_after` says, and at the end); returns what arrived, in order.
    fn through_batch(batch: &mut SendBatch, tx: &UdpSocket, sizes: &[usize]) -> Vec<Vec<u8>> {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let dest = rx.local_addr().unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            batch.push(tx, dest, &vec![i as u8; n]).unwrap();
            if i == 3 {
                // A flush between two of a run: what follows starts a new one.
                batch.flush(tx, dest).unwrap();
                assert!(batch.is_empty());
            }
        }
        batch.flush(tx, dest).unwrap();
        let mut got = vec![];
        let mut buf = [0u8; 2048];
        while got.len() < sizes.len() {
            let n = rx.recv(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        got
    }

    fn sizes() -> Vec<usize> {
        // A run of equal sizes, one shorter (the end of a run), larger ones (a new run), a
        // run longer than the kernel's 64 segments, an empty one, and one left alone.
        let mut s = vec![1000, 1000, 1000, 1000, 1000, 1000, 300, 1300, 1300, 1000];
        s.extend(std::iter::repeat_n(90, 70));
        s.extend([0, 1200]);
        s
    }

    fn assert_arrived(got: &[Vec<u8>], sizes: &[usize]) {
        assert_eq!(got.len(), sizes.len());
        for (i, (d, &n)) in got.iter().zip(sizes).enumerate() {
            assert_eq!(d.len(), n, "datagram {i}");
            assert!(
                d.iter().all(|&b| b == i as u8),
                "datagram {i} carries another's bytes"
            );
        }
    }

    #[test]
    fn a_batch_delivers_every_datagram_whole_and_in_order() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for segmentation in [true, false] {
            let mut batch = SendBatch::new(segmentation);
            let got = through_batch(&mut batch, &tx, &sizes());
            assert_arrived(&got, &sizes());
            // Loopback takes segmented sends on any kernel since 4.18.
            assert_eq!(
                batch.segmenting(),
                segmentation && cfg!(target_os = "linux")
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_refused_segmented_send_goes_out_one_by_one() {
        use std::os::fd::AsRawFd;
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Without UDP checksums (SO_NO_CHECK) the kernel refuses segmentation offload.
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option of the size given.
        let r = unsafe {
            libc::setsockopt(
                tx.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        let mut batch = SendBatch::new(true);
        let got = through_batch(&mut batch, &tx, &sizes());
        assert_arrived(&got, &sizes());
        assert!(!batch.segmenting());
    }

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
