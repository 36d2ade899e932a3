//! Green Unix-domain sockets: `UnixStream`, `UnixListener`, `UnixDatagram` with std's API.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::{self as std_unix, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::sock::{impl_stream_io, Sock};

/// A green Unix stream socket: `std::os::unix::net::UnixStream`'s API.
pub struct UnixStream {
    sock: Sock<std_unix::UnixStream>,
}

impl_stream_io!(UnixStream);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl UnixStream {
    /// Connects to the socket at `path`. A listener whose backlog is full makes a non-blocking
    /// Unix connect fail with `EAGAIN` (it gives no readiness event to wait for), so the attempt
    /// is retried with a growing green sleep, bounded by the write timeout if one is set later
    /// (none at connect time: like std, it waits as long as the listener exists).
    pub fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let addr = socket2::SockAddr::unix(path.as_ref())?;
        let socket = socket2::Socket::new(
            socket2::Domain::UNIX,
            socket2::Type::STREAM.nonblocking().cloexec(),
            None,
        )?;
        let mut pause = Duration::from_millis(1);
        loop {
            match socket.connect(&addr) {
                Ok(()) => break,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    green_runtime::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(UnixStream {
            sock: Sock::new(std_unix::UnixStream::from(std::os::fd::OwnedFd::from(
                socket,
            ))),
        })
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std_unix::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    /// Wraps a std stream.
    pub fn from_std(stream: std_unix::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        Ok(UnixStream {
            sock: Sock::new(stream),
        })
    }

    /// Unwraps the std stream, made blocking again.
    pub fn into_std(self) -> io::Result<std_unix::UnixStream> {
        let stream = self.sock.fd.into_inner();
        stream.set_nonblocking(false)?;
        Ok(stream)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get().peer_addr()
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.get().shutdown(how)
    }
}

/// A green Unix listener: `std::os::unix::net::UnixListener`'s API.
pub struct UnixListener {
    sock: Sock<std_unix::UnixListener>,
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

impl UnixListener {
    /// Binds to `path`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        UnixListener::from_std(std_unix::UnixListener::bind(path)?)
    }

    /// Wraps a std listener.
    pub fn from_std(listener: std_unix::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        Ok(UnixListener {
            sock: Sock::new(listener),
        })
    }

    /// Accepts a connection, parking the greenlet until one arrives.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (stream, addr) = self.sock.read_op(|l| l.accept())?;
        Ok((UnixStream::from_std(stream)?, addr))
    }

    /// An endless iterator of accepted connections.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<UnixStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get().local_addr()
    }
}

/// A green Unix datagram socket: `std::os::unix::net::UnixDatagram`'s API.
pub struct UnixDatagram {
    sock: Sock<std_unix::UnixDatagram>,
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

impl UnixDatagram {
    /// Binds to `path`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std_unix::UnixDatagram::bind(path)?)
    }

    /// An unbound socket.
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(std_unix::UnixDatagram::unbound()?)
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = std_unix::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_std(a)?, UnixDatagram::from_std(b)?))
    }

    /// Wraps a std socket.
    pub fn from_std(socket: std_unix::UnixDatagram) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        Ok(UnixDatagram {
            sock: Sock::new(socket),
        })
    }

    /// Sets the default peer.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.sock.get().connect(path)
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write_op(|s| s.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read_op(|s| s.recv(buf))
    }

    /// Sends to the socket at `path`.
    pub fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let path = path.as_ref();
        self.sock.write_op(|s| s.send_to(buf, path))
    }

    /// Receives a datagram and its source address.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.read_op(|s| s.recv_from(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get().peer_addr()
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.get().shutdown(how)
    }
}

crate::sock::impl_socket_common!(UnixStream);
crate::sock::impl_socket_timeouts!(UnixStream);

crate::sock::impl_socket_common!(UnixListener);

crate::sock::impl_socket_common!(UnixDatagram);
crate::sock::impl_socket_timeouts!(UnixDatagram);
