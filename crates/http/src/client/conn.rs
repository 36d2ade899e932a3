//! One client connection: plain TCP or TLS, its read buffer, and the deadlines of the request
//! that is using it.
//!
//! Timeouts are threaded through as deadlines rather than wrapped in `with_timeout`: the response
//! is returned to the caller after its head, and its body is read later, outside any scope
//! `send()` could open. So every read and write first sets the socket's own timeout to the
//! nearer of "read timeout from now" and "the request's total deadline", and a `TimedOut` is then
//! reported as the one that was nearer. Green sockets keep their timeouts in the socket object
//! (no system call), so doing this per read costs nothing. A TLS read or write is many socket
//! calls (a record trickled a byte at a time renews a socket timeout with each byte), so a TLS
//! connection also gets the total deadline as the `TlsStream`'s own absolute deadline, and its
//! handshake the nearer of the connect and total deadlines.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use green_net::TcpStream;
use green_tls::{TlsConnector, TlsStream};

use super::error::TimeoutKind;

/// Initial size of a connection's read buffer (grown for larger heads).
const READ_BUF: usize = 16 * 1024;

/// A request head buffer up to this capacity is kept for the thread's next request.
const KEEP_WRITE_BUF: usize = 4096;

thread_local! {
    /// The buffer request heads are written into, one per thread rather than one per
    /// connection: with many connections in turn, a connection's own buffer has left the CPU
    /// cache by its next request, the thread's has not. A request that finds it taken (another
    /// greenlet's write is parked) uses a new one.
    static HEAD_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Where a pooled connection leads: a connection is reused only for the same key.
#[derive(Debug, Clone)]
pub(crate) struct PoolKey {
    /// `"http"`, `"https"`, or `"proxy"` for plain requests through an HTTP proxy (any origin).
    pub(crate) scheme: &'static str,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The proxy (host, port) a tunnel goes through.
    pub(crate) via: Option<(String, u16)>,
}

/// A [`PoolKey`] borrowed from the request's URL: looking a connection up in the pool needs no
/// allocation (the owned key is made only for a new connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyRef<'a> {
    pub(crate) scheme: &'static str,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) via: Option<(&'a str, u16)>,
}

/// Hashes the host and port only: keys that differ in scheme or proxy alone are rare, and equal
/// keys still hash equally (SipHash costs per field written).
impl std::hash::Hash for KeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.host.hash(state);
        self.port.hash(state);
    }
}

impl KeyRef<'_> {
    pub(crate) fn to_owned(self) -> PoolKey {
        PoolKey {
            scheme: self.scheme,
            host: self.host.to_owned(),
            port: self.port,
            via: self.via.map(|(host, port)| (host.to_owned(), port)),
        }
    }
}

/// Either form of key, for the pool's map: `PoolKey` hashes and compares as its `KeyRef`, so a
/// `KeyRef` finds it (`HashMap::get_mut(&key as &dyn AsKeyRef)`).
pub(crate) trait AsKeyRef {
    fn key_ref(&self) -> KeyRef<'_>;
}

impl AsKeyRef for PoolKey {
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef {
            scheme: self.scheme,
            host: &self.host,
            port: self.port,
            via: self.via.as_ref().map(|(host, port)| (host.as_str(), *port)),
        }
    }
}

impl AsKeyRef for KeyRef<'_> {
    fn key_ref(&self) -> KeyRef<'_> {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn AsKeyRef + 'a> for PoolKey {
    fn borrow(&self) -> &(dyn AsKeyRef + 'a) {
        self
    }
}

impl std::hash::Hash for dyn AsKeyRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key_ref().hash(state);
    }
}

impl PartialEq for dyn AsKeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key_ref() == other.key_ref()
    }
}

impl Eq for dyn AsKeyRef + '_ {}

impl std::hash::Hash for PoolKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key_ref().hash(state);
    }
}

impl PartialEq for PoolKey {
    fn eq(&self, other: &Self) -> bool {
        self.key_ref() == other.key_ref()
    }
}

impl Eq for PoolKey {}

pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }
}

/// The deadlines of the request in progress.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Deadlines {
    /// Per read (and per write): no progress for this long is a read timeout.
    pub(crate) read: Option<Duration>,
    /// The request's total deadline.
    pub(crate) total: Option<Instant>,
}

impl Deadlines {
    /// The timeout to arm for the next I/O step bounded by `step` (the read or connect timeout),
    /// and which deadline it is. `Err` when the total deadline already passed.
    pub(crate) fn next(
        &self,
        step: Option<Duration>,
        step_kind: TimeoutKind,
    ) -> Result<Option<(Duration, TimeoutKind)>, TimeoutKind> {
        let total = match self.total {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(TimeoutKind::Total);
                }
                Some(left)
            }
            None => None,
        };
        Ok(match (step, total) {
            (Some(s), Some(t)) if s < t => Some((s, step_kind)),
            (_, Some(t)) => Some((t, TimeoutKind::Total)),
            (Some(s), None) => Some((s, step_kind)),
            (None, None) => None,
        })
    }
}

/// A connection with its read buffer.
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pub(crate) key: PoolKey,
    /// Whether this connection served an earlier request.
    pub(crate) reused: bool,
    deadlines: Deadlines,
    /// Which deadline the last armed timeout was.
    armed: TimeoutKind,
    peer: Option<SocketAddr>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("key", &self.key)
            .field("tls", &matches!(self.stream, Stream::Tls(_)))
            .field("reused", &self.reused)
            .field("buffered", &(self.end - self.start))
            .finish()
    }
}

impl Conn {
    pub(crate) fn new(stream: Stream, key: PoolKey) -> Conn {
        let peer = stream.tcp().peer_addr().ok();
        Conn {
            peer,
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            key,
            reused: false,
            deadlines: Deadlines::default(),
            armed: TimeoutKind::Read,
        }
    }

    /// An empty buffer to write a request head into (the thread's, see [`HEAD_BUF`]).
    pub(crate) fn take_write_buf(&mut self) -> Vec<u8> {
        let mut buf = HEAD_BUF.try_with(Cell::take).unwrap_or_default();
        buf.clear();
        if buf.capacity() == 0 {
            buf.reserve(256);
        }
        buf
    }

    /// Keeps `buf` for the thread's next request head unless it grew large (a coalesced body).
    pub(crate) fn keep_write_buf(&mut self, buf: Vec<u8>) {
        if buf.capacity() <= KEEP_WRITE_BUF {
            let _ = HEAD_BUF.try_with(|kept| kept.set(buf));
        }
    }

    /// Sets the deadlines for the request now using the connection.
    pub(crate) fn set_deadlines(&mut self, deadlines: Deadlines) {
        self.deadlines = deadlines;
    }

    /// The address at the other end of the TCP connection.
    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The deadlines in force.
    pub(crate) fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// Which deadline a `TimedOut` error from this connection hit.
    pub(crate) fn timeout_kind(&self) -> TimeoutKind {
        // A TLS stream's own deadline is the total one.
        if self.deadlines.total.is_some_and(|d| Instant::now() >= d) {
            return TimeoutKind::Total;
        }
        self.armed
    }

    fn arm(&mut self) -> io::Result<()> {
        match self.deadlines.next(self.deadlines.read, TimeoutKind::Read) {
            Ok(next) => {
                let timeout = next.map(|(d, kind)| {
                    self.armed = kind;
                    d
                });
                if let Stream::Tls(tls) = &mut self.stream {
                    tls.set_deadline(self.deadlines.total);
                }
                let tcp = self.stream.tcp();
                tcp.set_read_timeout(timeout)?;
                tcp.set_write_timeout(timeout)
            }
            Err(kind) => {
                self.armed = kind;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request deadline has passed",
                ))
            }
        }
    }

    /// The bytes read and not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes into the buffer (after those buffered); `Ok(0)` at the end of the
    /// stream. A TLS peer that closes without `close_notify` also gives `Ok(0)`: the HTTP
    /// framing decides whether the message was complete.
    pub(crate) fn fill(&mut self) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.buf.resize(READ_BUF, 0);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.buf.len() * 2;
                self.buf.resize(len, 0);
            }
        }
        self.arm()?;
        let buf = &mut self.buf[self.end..];
        let n = match &mut self.stream {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => match tls.read(buf) {
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }?;
        self.end += n;
        Ok(n)
    }

    /// Reads straight into `out` when nothing is buffered (large body reads skip the copy).
    pub(crate) fn read_direct(&mut self, out: &mut [u8]) -> io::Result<usize> {
        debug_assert!(self.buffered().is_empty());
        self.arm()?;
        match &mut self.stream {
            Stream::Plain(tcp) => tcp.read(out),
            Stream::Tls(tls) => match tls.read(out) {
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }

    /// Writes all of `data`.
    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.arm()?;
        match &mut self.stream {
            Stream::Plain(tcp) => tcp.write_all(data),
            Stream::Tls(tls) => tls.write_all(data),
        }
    }

    /// Flushes what TLS still holds.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if let Stream::Plain(_) = self.stream {
            return Ok(());
        }
        self.arm()?;
        match &mut self.stream {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(tls) => tls.flush(),
        }
    }

    /// Whether an idle connection looks usable: nothing buffered, and a non-blocking peek finds
    /// neither the end of the stream nor bytes nobody asked for (a server's late error response,
    /// a TLS alert).
    ///
    /// With `retryable` (the request would be retried if the connection turned out dead) the
    /// peek is skipped when the hub knows the socket is empty: no readiness event, data or end of
    /// stream, since the last short read. That knowledge lags by one hub poll: a FIN that
    /// arrived while this thread never went back to the hub (busy, or blocked outside green) is
    /// not seen yet. The retry covers that case as it covers a close racing with the request; a
    /// request that cannot be retried always gets the peek.
    pub(crate) fn is_alive(&self, retryable: bool) -> bool {
        if !self.buffered().is_empty() {
            return false;
        }
        // A TLS connection asks its TCP stream: TLS bytes or a FIN show there first.
        let tcp = self.stream.tcp();
        if retryable && tcp.known_empty() {
            return true;
        }
        if tcp.set_nonblocking(true).is_err() {
            return false;
        }
        let peeked = tcp.peek(&mut [0u8; 1]);
        let restored = tcp.set_nonblocking(false).is_ok();
        restored && matches!(peeked, Err(err) if err.kind() == io::ErrorKind::WouldBlock)
    }

    /// Turns a plain connection into TLS with `server_name`, the handshake bounded by the nearer
    /// of the request's `total` deadline and `connect_deadline` (absolute: a server trickling its
    /// handshake does not extend them).
    pub(crate) fn upgrade_tls(
        self,
        connector: &TlsConnector,
        server_name: &str,
        total: Option<Instant>,
        connect_deadline: Option<Instant>,
    ) -> Result<Conn, (io::Error, TimeoutKind)> {
        let Stream::Plain(tcp) = self.stream else {
            unreachable!("TLS over TLS is not used")
        };
        let (deadline, kind) = match (connect_deadline, total) {
            (Some(connect), Some(total)) if total <= connect => (Some(total), TimeoutKind::Total),
            (Some(connect), _) => (Some(connect), TimeoutKind::Connect),
            (None, total) => (total, TimeoutKind::Total),
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err((io::Error::from(io::ErrorKind::TimedOut), kind));
        }
        // The deadline bounds every step; per-read socket timeouts are armed again per request.
        let set = tcp
            .set_read_timeout(None)
            .and_then(|()| tcp.set_write_timeout(None));
        if let Err(err) = set {
            return Err((err, kind));
        }
        let tls = connector
            .connect_until(server_name, tcp, deadline)
            .map_err(|err| (err, kind))?;
        let mut conn = Conn::new(Stream::Tls(Box::new(tls)), self.key);
        conn.deadlines = self.deadlines;
        Ok(conn)
    }
}
