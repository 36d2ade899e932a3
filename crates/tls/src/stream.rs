//! `TlsStream`: a rustls connection driven over a blocking `Read + Write`.
//!
//! rustls is sans-IO: it turns bytes read from the socket into plaintext and plaintext into bytes
//! to send, and says when it wants either. This module is the small I/O loop around it. Over a
//! green socket every `read`/`write` of the loop parks only the calling greenlet, and the socket's
//! own timeouts (`set_read_timeout`) bound each of them, the handshake included. A socket timeout
//! is renewed by every byte, so a peer that trickles one byte at a time never trips it; the
//! stream's own deadline ([`TlsStream::set_deadline`]) is absolute: each socket call the loop makes
//! runs inside a `with_timeout` scope for the time left, which works over any green stream.
//!
//! The loop is written out here rather than using `rustls::StreamOwned` so that failures come
//! back as [`TlsError`]s that name the host and the certificate problem, a failed connection stays
//! failed instead of reading on, a `write` whose data rustls accepted never reports an error for
//! it, and every socket call can be bounded by the deadline.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::{Connection, HandshakeKind, ProtocolVersion, SupportedCipherSuite};

use crate::error::TlsError;
use crate::verify;

/// A TLS connection over the stream `S` (typically a green `TcpStream`), client or server side.
///
/// Made by [`TlsConnector::connect`](crate::TlsConnector::connect),
/// [`TlsAcceptor::accept`](crate::TlsAcceptor::accept) or [`connect`](crate::connect), which
/// complete the handshake before returning, or by [`TlsStream::new`] from a rustls connection of
/// your own (the handshake then runs on first use or on [`handshake`](Self::handshake)).
///
/// Differences from a plain stream:
/// * `read` returns `Ok(0)` only once the peer sent `close_notify`; a peer that closed the
///   transport without it gives `ErrorKind::UnexpectedEof` (a possibly truncated message).
/// * Dropping the stream does not send `close_notify` (that would be I/O in `Drop`): call
///   [`shutdown`](Self::shutdown) first for a clean close.
/// * It is one state machine: unlike `&TcpStream`, it cannot be read in one greenlet while another
///   writes it.
///
/// # Deadlines
///
/// The socket's own timeouts (`set_read_timeout`) bound each socket read, and every byte renews
/// them: a peer sending one byte every 300 ms keeps a handshake or a `read` waiting for a whole
/// TLS record going forever. [`set_deadline`](Self::set_deadline) sets an absolute deadline
/// instead (Go's `SetDeadline`): every socket read and write the stream makes from then on, the
/// handshake's included, fails with `ErrorKind::TimedOut` once it has passed, however the peer
/// trickles. [`TlsConnector::connect_until`](crate::TlsConnector::connect_until) and
/// [`TlsAcceptor::accept_until`](crate::TlsAcceptor::accept_until) bound a handshake that way.
/// A handshake that times out (by either kind of timeout) says so naming TLS and the peer, with
/// kind `TimedOut`.
///
/// # Caveats
///
/// * The deadline interrupts green blocking calls (it is a `with_timeout` scope around each
///   socket call); over a stream that blocks the OS thread it is only checked between calls.
/// * With a deadline set, each socket call costs a hub timer; without one the loop is unchanged.
pub struct TlsStream<S> {
    conn: Connection,
    sock: S,
    server_name: Option<String>,
    failed: Option<TlsError>,
    deadline: Option<Instant>,
}

impl<S: fmt::Debug> fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.conn {
            Connection::Client(_) => "client",
            Connection::Server(_) => "server",
        };
        f.debug_struct("TlsStream")
            .field("side", &side)
            .field("server_name", &self.server_name())
            .field("handshaking", &self.conn.is_handshaking())
            .field("protocol_version", &self.conn.protocol_version())
            .field(
                "alpn_protocol",
                &self.alpn_protocol().map(String::from_utf8_lossy),
            )
            .field("deadline", &self.deadline)
            .field("stream", &self.sock)
            .finish()
    }
}

impl<S: Read + Write> TlsStream<S> {
    /// Wraps a rustls connection (client or server) and the stream it runs over; nothing is sent
    /// yet. `server_name` is the name reported in errors (for a client, the one it verifies).
    pub fn new(conn: impl Into<Connection>, stream: S, server_name: Option<String>) -> Self {
        TlsStream {
            conn: conn.into(),
            sock: stream,
            server_name,
            failed: None,
            deadline: None,
        }
    }

    /// Runs the handshake to completion (a no-op once done). Each socket read and write parks only
    /// the calling greenlet and is bounded by the socket's own timeouts and by the stream's
    /// [deadline](Self::set_deadline). A timeout gives `ErrorKind::TimedOut` with a message that
    /// names TLS and the peer.
    pub fn handshake(&mut self) -> io::Result<()> {
        self.check_failed()?;
        if !self.conn.is_handshaking() {
            return Ok(());
        }
        self.drive_handshake().map_err(|err| {
            if err.kind() == io::ErrorKind::TimedOut {
                io::Error::new(io::ErrorKind::TimedOut, self.handshake_timeout_message())
            } else {
                err
            }
        })
    }

    fn handshake_timeout_message(&self) -> String {
        let peer = match (self.server_name(), self.is_client()) {
            (Some(name), true) => format!("server '{name}'"),
            (Some(name), false) => format!("a client (SNI '{name}')"),
            (None, true) => "the server".to_owned(),
            (None, false) => "a client".to_owned(),
        };
        let bound = if self.deadline_passed() {
            "did not finish by its deadline"
        } else {
            "timed out waiting for the peer (socket timeout)"
        };
        format!("TLS handshake with {peer} {bound}")
    }

    fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn drive_handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            self.flush_tls()?;
            if !self.conn.is_handshaking() {
                break;
            }
            if !self.conn.wants_read() {
                return Err(io::Error::other(
                    "TLS handshake stalled: nothing to send or receive",
                ));
            }
            if self.read_tls()? == 0 {
                let with = self.server_name().map(|n| format!(" with '{n}'"));
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the peer closed the connection during the TLS handshake{}",
                        with.unwrap_or_default()
                    ),
                ));
            }
        }
        // The last flight (a TLS 1.3 client's Finished) goes out now, not with the first write:
        // a server that speaks first waits for it.
        self.flush_tls()
    }

    /// Sends `close_notify` and flushes it: the peer's reads then end with `Ok(0)`. Does not wait
    /// for the peer's own `close_notify` and does not close the underlying stream.
    pub fn shutdown(&mut self) -> io::Result<()> {
        self.check_failed()?;
        self.conn.send_close_notify();
        self.flush_tls()?;
        self.sock.flush()
    }

    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            Some(err) => Err(err.clone().into_io()),
            None => Ok(()),
        }
    }

    /// Writes whatever rustls has queued for the peer.
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let (conn, sock) = (&mut self.conn, &mut self.sock);
            if within(self.deadline, || conn.write_tls(sock))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Reads once from the socket into rustls and processes what came (0 = end of stream).
    fn read_tls(&mut self) -> io::Result<usize> {
        let (conn, sock) = (&mut self.conn, &mut self.sock);
        let n = within(self.deadline, || conn.read_tls(sock))?;
        verify::reset_self_signed();
        if let Err(error) = self.conn.process_new_packets() {
            let self_signed = verify::take_self_signed();
            // Best effort: tell the peer why (rustls queued an alert).
            let _ = self.flush_tls();
            let err = TlsError::new(error, self.server_name().map(str::to_owned), self_signed);
            self.failed = Some(err.clone());
            return Err(err.into_io());
        }
        Ok(n)
    }
}

/// Runs one socket call, bounded by `deadline` when there is one.
///
/// The call unwinds out of rustls's `read_tls`/`write_tls` when the scope expires; that is safe:
/// both only record bytes after the socket call returned them, and an expiry means the socket
/// call returned nothing.
fn within<R>(deadline: Option<Instant>, op: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
    let Some(deadline) = deadline else {
        return op();
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(deadline_passed());
    }
    green_runtime::with_timeout(left, op).unwrap_or_else(|_| Err(deadline_passed()))
}

fn deadline_passed() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the TLS stream's deadline has passed",
    )
}

impl<S> TlsStream<S> {
    /// Sets an absolute deadline for every socket read and write the stream makes from now on
    /// (the handshake's included); `None` removes it. Once it has passed, the handshake, `read`,
    /// `write`, `flush` and `shutdown` fail with `ErrorKind::TimedOut` wherever they are, however
    /// the peer trickles its bytes. Unlike a socket timeout, progress does not renew it. A call
    /// that timed out may be retried after moving the deadline; the session stays consistent.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// [`set_deadline`](Self::set_deadline) to `timeout` from now (`None`: no deadline; a
    /// timeout too large to represent means none).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    }

    /// The deadline in force, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    /// The underlying stream, mutably (reading or writing it directly corrupts the TLS session;
    /// setting timeouts is fine).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.sock
    }

    /// Unwraps the underlying stream, without sending `close_notify`.
    pub fn into_inner(self) -> S {
        self.sock
    }

    /// The rustls connection, for anything not mirrored here.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The rustls connection, mutably.
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Whether this is the client side.
    pub fn is_client(&self) -> bool {
        matches!(self.conn, Connection::Client(_))
    }

    /// Client side: the name it verified the server against. Server side: the SNI name the client
    /// sent (`None` when it sent none, as clients connecting to an IP address do).
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Client(_) => self.server_name.as_deref(),
            Connection::Server(conn) => conn.server_name().or(self.server_name.as_deref()),
        }
    }

    /// The peer's certificate chain, end entity first (a server sees one only if it asked for
    /// client certificates).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// The negotiated TLS version, once the handshake is far enough along.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The ALPN protocol both sides agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The negotiated cipher suite.
    pub fn negotiated_cipher_suite(&self) -> Option<SupportedCipherSuite> {
        self.conn.negotiated_cipher_suite()
    }

    /// Whether the handshake was full or resumed a previous session (`None` while handshaking).
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.conn.handshake_kind()
    }

    /// Whether the handshake resumed a previous session.
    pub fn is_resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.handshake()?;
        loop {
            match self.conn.reader().read(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // Ok(0): the peer's close_notify; UnexpectedEof: it closed without one.
                done => return done,
            }
            self.check_failed()?;
            // Replies rustls owes the peer (a TLS 1.3 KeyUpdate) go out before waiting on it.
            self.flush_tls()?;
            self.read_tls()?;
        }
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handshake()?;
        // Errors from sending earlier data surface here, before new data is taken.
        self.flush_tls()?;
        let n = self.conn.writer().write(buf)?;
        // The data is rustls's now: a failure to send it is reported by the next call instead
        // (write's contract: an error means nothing was written).
        let _ = self.flush_tls();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check_failed()?;
        self.conn.writer().flush()?;
        self.flush_tls()?;
        self.sock.flush()
    }
}

/// ALPN protocol ids as text, for `Debug` output.
pub(crate) fn alpn_names(protocols: &[Vec<u8>]) -> Vec<std::borrow::Cow<'_, str>> {
    protocols
        .iter()
        .map(|p| String::from_utf8_lossy(p))
        .collect()
}
