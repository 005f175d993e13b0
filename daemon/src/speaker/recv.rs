//! Reading a batch of datagrams from a socket with one `recvmmsg`, into buffers that stay
//! the caller's (no copy, no allocation).

use super::net::{BATCH, SLOT};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;

/// One `recvmmsg` on `fd` into the first `BATCH` of `slots`: datagram lengths and senders
/// (None: truncated, not IPv4); the count read.
pub(super) fn recv_batch(
    fd: std::os::fd::RawFd,
    slots: &mut [Vec<u8>],
    (lens, from): (&mut [usize; BATCH], &mut [Option<SocketAddr>; BATCH]),
    stats: &super::NetworkCounters,
) -> usize {
    // SAFETY: plain C structs, all-zero is a valid value for each.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut names: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, slot) in slots.iter_mut().take(BATCH).enumerate() {
        iov[i].iov_base = slot.as_mut_ptr().cast();
        iov[i].iov_len = slot.len();
        hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
        hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every header points at its own iovec, slot and address, all alive and
    // exclusively borrowed for the call; the kernel writes at most the lengths given.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            BATCH as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r <= 0 {
        // EAGAIN: nothing waiting. Other errors (ENOMEM, ...) are transient for UDP.
        return 0;
    }
    let n = r as usize;
    for i in 0..n {
        let h = &hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || h.msg_len as usize > SLOT {
            stats.invalid.fetch_add(1, Ordering::Relaxed);
            lens[i] = 0;
            from[i] = None;
            continue;
        }
        lens[i] = h.msg_len as usize;
        from[i] = (names[i].sin_family == libc::AF_INET as libc::sa_family_t).then(|| {
            SocketAddr::new(
                Ipv4Addr::from(u32::from_be(names[i].sin_addr.s_addr)).into(),
                u16::from_be(names[i].sin_port),
            )
        });
    }
    n
}
