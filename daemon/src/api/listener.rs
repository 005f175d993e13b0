//! The API's listener: a bounded number of connections, none of which may sit idle for ever.
//!
//! axum's server holds every connection it accepts until the client closes it, and reads the
//! request headers with no deadline (hyper's header timeout needs a timer axum does not give
//! it): 1100 idle half-open connections used up the default 1024 descriptors and the API
//! stopped answering. Here each connection holds a permit (512 in all, 32 per source
//! address; a connection beyond its address's share is closed at once, one beyond the total
//! waits for a permit), must send its first byte within 10 s, and is closed after 120 s in
//! which nothing was read or written (the event stream writes a keep-alive every 15 s).

use axum::serve::Listener;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections open at once, and from one address.
pub(crate) const MAX_CONNECTIONS: usize = 512;
pub(crate) const MAX_PER_ADDRESS: usize = 32;
/// A connection's first byte must come within this.
const FIRST_BYTE: Duration = Duration::from_secs(10);
/// A connection on which nothing moved for this long is closed.
const IDLE: Duration = Duration::from_secs(120);

/// Open connections per source address.
type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

pub(crate) struct CappedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    counts: Counts,
}

impl CappedListener {
    pub(crate) fn new(inner: TcpListener) -> Self {
        CappedListener {
            inner,
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            counts: Arc::default(),
        }
    }
}

impl Listener for CappedListener {
    type Io = Capped;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Capped, SocketAddr) {
        loop {
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                // Never closed; if it were, serve without a cap rather than not at all.
                std::future::pending::<()>().await;
                continue;
            };
            let (io, addr) = Listener::accept(&mut self.inner).await;
            let ip = addr.ip();
            let admitted = self.counts.lock().is_ok_and(|mut c| {
                let n = c.entry(ip).or_insert(0);
                *n += 1;
                *n <= MAX_PER_ADDRESS
            });
            let conn = Capped {
                io,
                _permit: permit,
                counts: self.counts.clone(),
                ip,
                started: false,
                deadline: Box::pin(tokio::time::sleep(FIRST_BYTE)),
            };
            if admitted {
                return (conn, addr);
            }
            // Over its share: dropped here (closing it and returning its permit).
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One accepted connection, holding its permit until it closes.
pub(crate) struct Capped {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    counts: Counts,
    ip: IpAddr,
    /// Whether a byte was read yet.
    started: bool,
    deadline: Pin<Box<Sleep>>,
}

impl Capped {
    /// Something moved: the idle deadline starts again.
    fn moved(&mut self) {
        self.started = true;
        self.deadline.as_mut().reset(Instant::now() + IDLE);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }

    /// After a write: bytes out restart the idle deadline (once the client has spoken: they
    /// do not count as its first byte); a write stuck past the deadline ends the connection.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) if n > 0 => {
                if self.started {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "idle connection")
}

impl Drop for Capped {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock() {
            if let Some(n) = c.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.remove(&self.ip);
                }
            }
        }
    }
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.moved();
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        self.wrote(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
