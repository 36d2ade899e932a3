//! [`GreenFd`]: any non-blocking fd made green-blocking (async-io's `Async<T>`, for greenlets).
//!
//! Green sockets, pipes and users' own fd types are built the same way: keep the fd non-blocking,
//! try the syscall, and on `WouldBlock` park on the hub until the fd may be ready, then retry.
//! `GreenFd` owns the value holding the fd and a unique owner id, so a hub that still remembers a
//! registration for the same fd number from an earlier (closed) owner re-registers instead of
//! waiting on a dead registration. Dropping it tells the current thread's hub that the fd is going
//! away, which wakes any greenlet still waiting on it with an error.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::hub::io::{notify_close, read_drained, set_read_drained, wait_source};

/// A value owning a non-blocking fd, with green-blocking helpers.
///
/// The caller makes the fd non-blocking before wrapping it (std sockets: `set_nonblocking(true)`).
/// `GreenFd<T>` is `Send`/`Sync` when `T` is: used on another thread, the fd registers with that
/// thread's hub.
pub struct GreenFd<T: AsFd> {
    inner: Option<T>,
    source: u64,
}

impl<T: AsFd + fmt::Debug> fmt::Debug for GreenFd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenFd")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<T: AsFd> GreenFd<T> {
    /// Wraps a value whose fd is already non-blocking.
    pub fn new(inner: T) -> GreenFd<T> {
        static NEXT_SOURCE: AtomicU64 = AtomicU64::new(1);
        GreenFd {
            inner: Some(inner),
            source: NEXT_SOURCE.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The wrapped value.
    pub fn get_ref(&self) -> &T {
        self.inner
            .as_ref()
            .expect("GreenFd holds its value until dropped")
    }

    /// The wrapped value, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner
            .as_mut()
            .expect("GreenFd holds its value until dropped")
    }

    /// Unwraps the value (still non-blocking), forgetting this hub's registration of its fd.
    pub fn into_inner(mut self) -> T {
        let inner = self
            .inner
            .take()
            .expect("GreenFd holds its value until dropped");
        notify_close(inner.as_fd().as_raw_fd());
        inner
    }

    fn raw(&self) -> RawFd {
        self.get_ref().as_fd().as_raw_fd()
    }

    /// Parks until the fd may be readable, or `deadline` passes (`ErrorKind::TimedOut`).
    pub fn wait_readable(&self, deadline: Option<Instant>) -> io::Result<()> {
        wait_source(self.raw(), self.source, true, deadline)
    }

    /// Parks until the fd may be writable, or `deadline` passes (`ErrorKind::TimedOut`).
    pub fn wait_writable(&self, deadline: Option<Instant>) -> io::Result<()> {
        wait_source(self.raw(), self.source, false, deadline)
    }

    /// Runs `op` until it does not fail with `WouldBlock`, parking for readability in between.
    pub fn read_with<R>(
        &self,
        deadline: Option<Instant>,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        self.retry(true, || deadline, op)
    }

    /// [`read_with`](Self::read_with) with the deadline worked out only if the call has to
    /// park: `deadline` is called at most once, when `op` first fails with `WouldBlock`. A
    /// socket's timeout (`now + timeout`) then costs a clock read only for a read that waits.
    pub fn read_with_lazy_deadline<R>(
        &self,
        deadline: impl FnOnce() -> Option<Instant>,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        self.retry(true, deadline, op)
    }

    /// [`read_with`](Self::read_with) for a read of at most `len` bytes from a TCP stream, whose
    /// read stops short only when the receive queue is empty (a Unix stream or a datagram socket
    /// may stop at a message boundary with data left: use `read_with` for those).
    ///
    /// A read returning fewer bytes than asked (but some) leaves the fd known to be empty, so the
    /// next `read_stream_with` parks until the hub sees a new readiness edge instead of first
    /// making a syscall bound to fail with `EAGAIN` (tokio's "clear readiness"): a
    /// request/response loop makes one read syscall per message instead of two. An edge for data
    /// that arrives meanwhile wakes the park as usual; once the peer has shut down or the socket
    /// has failed, reads never park first.
    pub fn read_stream_with(
        &self,
        deadline: Option<Instant>,
        len: usize,
        op: impl FnMut(&T) -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.read_stream_with_lazy_deadline(|| deadline, len, op)
    }

    /// [`read_stream_with`](Self::read_stream_with) with the deadline worked out only if the
    /// read has to park (see [`read_with_lazy_deadline`](Self::read_with_lazy_deadline)).
    pub fn read_stream_with_lazy_deadline(
        &self,
        deadline: impl FnOnce() -> Option<Instant>,
        len: usize,
        op: impl FnMut(&T) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let n = if read_drained(self.raw(), self.source) {
            let deadline = deadline();
            self.wait_readable(deadline)?;
            self.retry(true, || deadline, op)?
        } else {
            self.retry(true, deadline, op)?
        };
        if n > 0 && n < len {
            set_read_drained(self.raw(), self.source);
        }
        Ok(n)
    }

    /// Whether this thread's hub knows the fd has nothing to read: the last
    /// [`read_stream_with`](Self::read_stream_with) came back short and no readiness event (data,
    /// end of stream, error) has been seen since. `false` means "unknown", not "readable". A
    /// connection pool can skip a liveness probe (a `MSG_PEEK` syscall) when this is `true`.
    pub fn known_empty(&self) -> bool {
        read_drained(self.raw(), self.source)
    }

    /// Runs `op` until it does not fail with `WouldBlock`, parking for writability in between.
    pub fn write_with<R>(
        &self,
        deadline: Option<Instant>,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        self.retry(false, || deadline, op)
    }

    /// [`write_with`](Self::write_with) with the deadline worked out only if the call has to
    /// park (see [`read_with_lazy_deadline`](Self::read_with_lazy_deadline)).
    pub fn write_with_lazy_deadline<R>(
        &self,
        deadline: impl FnOnce() -> Option<Instant>,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        self.retry(false, deadline, op)
    }

    /// Retries `op` while it fails with `WouldBlock` (parking for the given direction, until
    /// the deadline `deadline` gives when first asked) or `Interrupted`.
    fn retry<R>(
        &self,
        readable: bool,
        deadline: impl FnOnce() -> Option<Instant>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut deadline = Some(deadline);
        let mut known: Option<Option<Instant>> = None;
        loop {
            match op(self.get_ref()) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let deadline = *known.get_or_insert_with(|| deadline.take().and_then(|d| d()));
                    wait_source(self.raw(), self.source, readable, deadline)?
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }
}

impl<T: AsFd> AsFd for GreenFd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl<T: AsFd> AsRawFd for GreenFd<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

impl<T: AsFd> Drop for GreenFd<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            notify_close(inner.as_fd().as_raw_fd());
            drop(inner);
        }
    }
}
