//! `Upgraded`: the connection a handler takes over after `101 Switching Protocols` (a WebSocket)
//! or a 2xx to CONNECT (a tunnel), with the bytes the client sent past its request head.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// What an upgraded connection reads and writes through: the transport, or a shared handle on it.
pub(crate) trait UpgradedIo: Read + Write {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn try_clone(&self) -> io::Result<Box<dyn UpgradedIo>>;
}

/// A connection handed over by [`Body::upgrade`](super::Body::upgrade): reads give first the
/// bytes the server had already read past the request (a client may send its first frames
/// right behind its request), then the socket's.
///
/// Timeouts start cleared (`None`); set them with [`set_read_timeout`](Self::set_read_timeout)
/// and [`set_write_timeout`](Self::set_write_timeout) as on a `TcpStream`.
///
/// # Caveats
///
/// Over plain TCP [`try_clone`](Self::try_clone) gives a second handle (a duplicated
/// descriptor) for a writer greenlet while another reads, as `TcpStream::try_clone` does. Over
/// TLS the stream has one handle only (`Unsupported`): read and write it from one greenlet.
pub struct Upgraded {
    io: Box<dyn UpgradedIo>,
    buffered: Vec<u8>,
    pos: usize,
    peer: SocketAddr,
}

impl Upgraded {
    pub(crate) fn new(io: Box<dyn UpgradedIo>, buffered: Vec<u8>, peer: SocketAddr) -> Upgraded {
        Upgraded {
            io,
            buffered,
            pos: 0,
            peer,
        }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The timeout of each read (`None`: wait forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_read_timeout(timeout)
    }

    /// The timeout of each write (`None`: wait forever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_write_timeout(timeout)
    }

    /// A second handle on the connection, for another greenlet (plain TCP only; see the type's
    /// caveats). It reads only what arrives after the bytes this handle has buffered.
    pub fn try_clone(&self) -> io::Result<Upgraded> {
        Ok(Upgraded::new(self.io.try_clone()?, Vec::new(), self.peer))
    }
}

impl Read for Upgraded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.buffered.len() {
            let n = (self.buffered.len() - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.buffered[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.buffered.len() {
                self.buffered = Vec::new();
                self.pos = 0;
            }
            return Ok(n);
        }
        self.io.read(buf)
    }
}

impl Write for Upgraded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io.flush()
    }
}

impl fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("peer", &self.peer)
            .field("buffered", &(self.buffered.len() - self.pos))
            .finish()
    }
}
