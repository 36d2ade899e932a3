//! What every green socket shares: the `GreenFd`, std-style timeouts and the non-blocking flag.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use green_runtime::GreenFd;

/// A non-blocking std socket plus the std-visible blocking behaviour: read and write timeouts
/// (expiry gives `ErrorKind::TimedOut`) and `set_nonblocking`.
#[derive(Debug)]
pub(crate) struct Sock<T: AsFd> {
    pub(crate) fd: GreenFd<T>,
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    nonblocking: AtomicBool,
}

fn encode(timeout: Option<Duration>) -> io::Result<u64> {
    match timeout {
        None => Ok(0),
        Some(d) if d.is_zero() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        )),
        Some(d) => Ok(d.as_nanos().clamp(1, u64::MAX as u128) as u64),
    }
}

fn decode(nanos: u64) -> Option<Duration> {
    (nanos != 0).then(|| Duration::from_nanos(nanos))
}

impl<T: AsFd> Sock<T> {
    /// Wraps a socket that is already non-blocking.
    pub(crate) fn new(inner: T) -> Sock<T> {
        Sock::from_fd(GreenFd::new(inner))
    }

    /// Wraps a socket already inside a `GreenFd` (keeping its hub registration).
    pub(crate) fn from_fd(fd: GreenFd<T>) -> Sock<T> {
        Sock {
            fd,
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
            nonblocking: AtomicBool::new(false),
        }
    }

    pub(crate) fn get(&self) -> &T {
        self.fd.get_ref()
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout.store(encode(timeout)?, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout
            .store(encode(timeout)?, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        decode(self.read_timeout.load(Ordering::Relaxed))
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        decode(self.write_timeout.load(Ordering::Relaxed))
    }

    pub(crate) fn set_nonblocking(&self, nonblocking: bool) {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
    }

    /// Copies timeouts and the non-blocking flag to a clone.
    pub(crate) fn clone_settings<U: AsFd>(&self, clone: U) -> Sock<U> {
        let sock = Sock::new(clone);
        sock.read_timeout
            .store(self.read_timeout.load(Ordering::Relaxed), Ordering::Relaxed);
        sock.write_timeout.store(
            self.write_timeout.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        sock.set_nonblocking(self.nonblocking.load(Ordering::Relaxed));
        sock
    }

    pub(crate) fn read_deadline(&self) -> Option<Instant> {
        self.read_timeout()
            .and_then(|t| Instant::now().checked_add(t))
    }

    pub(crate) fn write_deadline(&self) -> Option<Instant> {
        self.write_timeout()
            .and_then(|t| Instant::now().checked_add(t))
    }

    /// Runs a read-side syscall green-blocking, honouring the read timeout (which starts, and
    /// costs a clock read, only once the call has to wait).
    pub(crate) fn read_op<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        if self.nonblocking.load(Ordering::Relaxed) {
            return op(self.get());
        }
        self.fd.read_with_lazy_deadline(|| self.read_deadline(), op)
    }

    pub(crate) fn read_op_until<R>(
        &self,
        deadline: Option<Instant>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        if self.nonblocking.load(Ordering::Relaxed) {
            return op(self.get());
        }
        self.fd.read_with(deadline, op)
    }

    /// Runs a read of at most `len` bytes from a TCP stream green-blocking, honouring the read
    /// timeout; a short read lets the next one wait for readiness before its syscall (see
    /// `GreenFd::read_stream_with`).
    pub(crate) fn read_stream_op(
        &self,
        len: usize,
        mut op: impl FnMut(&T) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.nonblocking.load(Ordering::Relaxed) {
            return op(self.get());
        }
        self.fd
            .read_stream_with_lazy_deadline(|| self.read_deadline(), len, op)
    }

    /// Runs a write-side syscall green-blocking, honouring the write timeout (which starts, and
    /// costs a clock read, only once the call has to wait).
    pub(crate) fn write_op<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        let mut deadline = None;
        self.write_op_lazy(&mut deadline, op)
    }

    /// [`write_op`](Self::write_op) for one of several writes under one deadline: `deadline`
    /// holds it once a write has had to wait (`None` until then).
    pub(crate) fn write_op_lazy<R>(
        &self,
        deadline: &mut Option<Option<Instant>>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        if self.nonblocking.load(Ordering::Relaxed) {
            return op(self.get());
        }
        self.fd.write_with_lazy_deadline(
            || *deadline.get_or_insert_with(|| self.write_deadline()),
            op,
        )
    }
}

/// `Read` and `Write` for a green stream type and for references to it, like std's, with
/// `write_all` honouring one write deadline for the whole buffer. The type must have a
/// `sock: Sock<Inner>` field where `&Inner: Read + Write`. With `tcp`, reads go through
/// `Sock::read_stream_op` (a short TCP read means the socket is empty, which saves the next
/// read's `EAGAIN` syscall); Unix streams may stop a read at a message boundary, so they do not.
macro_rules! impl_stream_io {
    ($ty:ty) => {
        impl std::io::Read for &$ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.sock.read_op(|s| std::io::Read::read(&mut &*s, buf))
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                self.sock
                    .read_op(|s| std::io::Read::read_vectored(&mut &*s, bufs))
            }
        }

        $crate::sock::impl_stream_io!(@common $ty);
    };
    ($ty:ty, tcp) => {
        impl std::io::Read for &$ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let len = buf.len();
                self.sock
                    .read_stream_op(len, |s| std::io::Read::read(&mut &*s, buf))
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                let len = bufs.iter().map(|b| b.len()).sum();
                self.sock
                    .read_stream_op(len, |s| std::io::Read::read_vectored(&mut &*s, bufs))
            }
        }

        $crate::sock::impl_stream_io!(@common $ty);
    };
    (@common $ty:ty) => {

        impl std::io::Read for $ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                (&*self).read(buf)
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }

        impl std::io::Write for &$ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.sock.write_op(|s| std::io::Write::write(&mut &*s, buf))
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.sock
                    .write_op(|s| std::io::Write::write_vectored(&mut &*s, bufs))
            }

            fn write_all(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
                // One deadline for the whole buffer, from the first write that has to wait.
                let mut deadline = None;
                while !buf.is_empty() {
                    let n = self.sock.write_op_lazy(&mut deadline, |s| {
                        std::io::Write::write(&mut &*s, buf)
                    })?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    buf = &buf[n..];
                }
                Ok(())
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Write for $ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                (&*self).write(buf)
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                (&*self).write_vectored(bufs)
            }

            fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
                (&*self).write_all(buf)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}

pub(crate) use impl_stream_io;

/// The std methods every green socket type shares: `set_nonblocking`, `try_clone`, `take_error`,
/// `AsFd` and `AsRawFd`. The type must have a `sock: Sock<Inner>` field where `Inner` has std's
/// `try_clone` and `take_error`.
macro_rules! impl_socket_common {
    ($ty:ident) => {
        impl $ty {
            /// With `true`, calls return `WouldBlock` instead of parking the greenlet (std's
            /// behaviour).
            pub fn set_nonblocking(&self, nonblocking: bool) -> std::io::Result<()> {
                self.sock.set_nonblocking(nonblocking);
                Ok(())
            }

            /// A second handle to the same socket (a `dup` of the fd), with the same timeouts.
            pub fn try_clone(&self) -> std::io::Result<$ty> {
                Ok($ty {
                    sock: self.sock.clone_settings(self.sock.get().try_clone()?),
                })
            }

            /// Takes the pending socket error (`SO_ERROR`).
            pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
                self.sock.get().take_error()
            }
        }

        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(self.sock.get())
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(self.sock.get())
            }
        }
    };
}

pub(crate) use impl_socket_common;

/// std's read and write timeout accessors; expiry gives `ErrorKind::TimedOut`.
macro_rules! impl_socket_timeouts {
    ($ty:ident) => {
        impl $ty {
            /// Sets the read timeout: a read blocked longer fails with `ErrorKind::TimedOut`.
            /// `Some(0)` is an error, as with std.
            pub fn set_read_timeout(
                &self,
                timeout: Option<std::time::Duration>,
            ) -> std::io::Result<()> {
                self.sock.set_read_timeout(timeout)
            }

            /// Sets the write timeout (one deadline for a whole `write_all`).
            pub fn set_write_timeout(
                &self,
                timeout: Option<std::time::Duration>,
            ) -> std::io::Result<()> {
                self.sock.set_write_timeout(timeout)
            }

            /// The read timeout.
            pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.sock.read_timeout())
            }

            /// The write timeout.
            pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.sock.write_timeout())
            }
        }
    };
}

pub(crate) use impl_socket_timeouts;
