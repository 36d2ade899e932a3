//! Green TCP: `TcpStream` and `TcpListener` with std's API; connecting to a name uses Happy
//! Eyeballs (RFC 8305).
//!
//! A name resolving to several addresses is connected to by racing attempts: the addresses, in the
//! resolver's RFC 6724 order, are interleaved by family; attempt *n + 1* starts 250 ms after attempt
//! *n*, or at once when an attempt fails; the first connection wins and the others are killed (their
//! sockets closed). A timeout bounds the whole race, and the error when every attempt fails names
//! each address with its error.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use green_runtime::unversioned::{current_waiter, park_until, Waiter};
use green_runtime::{GreenFd, Greenlet};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::addr::{each_addr, resolve, ToSocketAddrs};
use crate::sock::{impl_stream_io, Sock};

/// Delay between starting two connection attempts (RFC 8305's "Connection Attempt Delay").
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Default `listen` backlog of [`TcpListener::bind`].
pub const DEFAULT_BACKLOG: i32 = 1024;

/// A green TCP connection: `std::net::TcpStream`'s API; blocking calls block only the greenlet.
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use green_net::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// green_runtime::spawn(move || -> std::io::Result<()> {
///     let (stream, _) = listener.accept()?;
///     let mut lines = BufReader::new(&stream);
///     let mut line = String::new();
///     lines.read_line(&mut line)?;
///     (&stream).write_all(line.to_uppercase().as_bytes())
/// });
///
/// let mut stream = TcpStream::connect(addr)?; // a name ("localhost:80") resolves green too
/// stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
/// stream.write_all(b"hello\n")?;
/// let mut reply = String::new();
/// BufReader::new(&stream).read_line(&mut reply)?;
/// assert_eq!(reply, "HELLO\n");
/// # std::io::Result::Ok(())
/// ```
///
/// # Sharing between greenlets, and closing a shared stream
///
/// `Read` and `Write` are implemented for `&TcpStream` too, so greenlets of one thread share a
/// stream through an `Rc<TcpStream>` (one reading, one writing, say), or each holds a
/// [`try_clone`](TcpStream::try_clone) of it. Dropping one handle closes nothing while another
/// lives, and a greenlet blocked in `read` stays blocked. To end the connection for everyone,
/// call [`shutdown(Shutdown::Both)`](TcpStream::shutdown) from any greenlet: a read blocked on
/// the same socket (through the `Rc` or a clone) wakes and returns `Ok(0)`, end of stream, and
/// later writes fail with `ErrorKind::BrokenPipe`. The socket itself closes when the last handle
/// is dropped. (gevent closes a socket under a blocked reader with `cancel_wait`; green's
/// equivalent for raw descriptors is [`notify_close`](green_runtime::notify_close).)
///
/// ```no_run
/// use std::io::Read;
/// use std::net::Shutdown;
/// use std::rc::Rc;
///
/// let stream = Rc::new(green_net::TcpStream::connect("127.0.0.1:7000")?);
/// let reader = {
///     let stream = stream.clone();
///     green_runtime::spawn(move || {
///         let mut buf = [0; 1024];
///         while (&*stream).read(&mut buf)? > 0 {}
///         std::io::Result::Ok(())
///     })
/// };
/// // ... later, from any greenlet: the reader's read returns Ok(0).
/// stream.shutdown(Shutdown::Both)?;
/// reader.join().unwrap()?;
/// # std::io::Result::Ok(())
/// ```
pub struct TcpStream {
    sock: Sock<std::net::TcpStream>,
}

impl_stream_io!(TcpStream, tcp);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl TcpStream {
    /// Connects to `addr`; a host name is resolved through green DNS and its addresses raced
    /// with Happy Eyeballs. No timeout beyond the kernel's own, like std.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let addrs = resolve(addr)?;
        connect_any(addrs, None, None)
    }

    /// Connects to one address, failing with `ErrorKind::TimedOut` after `timeout` (std's API).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        connect_one(*addr, Instant::now().checked_add(timeout), None)
            .map(TcpStream::from_fd)
            .map_err(|err| naming(*addr, err))
    }

    /// Resolves and connects with Happy Eyeballs, `timeout` bounding DNS and all attempts.
    pub fn connect_with_timeout(
        addr: impl ToSocketAddrs,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        let deadline = Instant::now().checked_add(timeout);
        let addrs = green_runtime::with_timeout(timeout, || resolve(addr))??;
        connect_any(addrs, deadline, None)
    }

    /// Not in std: connects from the local address `local` (its port chosen by the kernel), as
    /// curl's `--interface` and reqwest's `local_address` do. Only the resolved addresses of
    /// `local`'s family are tried (raced with Happy Eyeballs); `timeout`, if any, bounds DNS and
    /// the attempts.
    pub fn connect_from(
        local: IpAddr,
        addr: impl ToSocketAddrs,
        timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let addrs = match timeout {
            Some(timeout) => green_runtime::with_timeout(timeout, || resolve(addr))??,
            None => resolve(addr)?,
        };
        let addrs: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| a.is_ipv4() == local.is_ipv4())
            .collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no address of the local address {local}'s family to connect to"),
            ));
        }
        connect_any(addrs, deadline, Some(local))
    }

    fn from_fd(fd: GreenFd<std::net::TcpStream>) -> TcpStream {
        TcpStream {
            sock: Sock::from_fd(fd),
        }
    }

    /// Wraps a std stream (made non-blocking; this type keeps blocking semantics for greenlets).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        Ok(TcpStream {
            sock: Sock::new(stream),
        })
    }

    /// Unwraps the std stream, made blocking again.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        let stream = self.sock.fd.into_inner();
        stream.set_nonblocking(false)?;
        Ok(stream)
    }

    /// Reads without consuming, like `recv(MSG_PEEK)`.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read_op(|s| s.peek(buf))
    }

    /// Not in std: whether this thread's hub knows the receive queue is empty (the last read
    /// came back short and no readiness event, data or end of stream, has arrived since); `false`
    /// means unknown. Lets a connection pool skip a `peek` liveness probe on an idle connection.
    pub fn known_empty(&self) -> bool {
        self.sock.fd.known_empty()
    }

    /// Not in std: waits, honouring the read timeout, until a read may find something (data, end
    /// of stream or an error), without reading. Parks only while the stream is
    /// [`known_empty`](Self::known_empty); otherwise returns at once (readiness may be
    /// spurious: the next read may still wait). Lets a server hold no read buffer while a
    /// keep-alive connection is idle, at no extra syscall.
    pub fn wait_readable(&self) -> io::Result<()> {
        if self.sock.fd.known_empty() {
            self.sock.fd.wait_readable(self.sock.read_deadline())?;
        }
        Ok(())
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.get().shutdown(how)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get().peer_addr()
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.sock.get().set_nodelay(nodelay)
    }

    /// Reads `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.sock.get().nodelay()
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock.get().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.sock.get().ttl()
    }

    /// Enables TCP keepalive with the given idle time, or disables it.
    pub fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        let sock = SockRef::from(self.sock.get());
        match idle {
            None => sock.set_keepalive(false),
            Some(idle) => sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle)),
        }
    }

    /// Sets `SO_LINGER`.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        SockRef::from(self.sock.get()).set_linger(linger)
    }
}

/// Starts a non-blocking connect to `addr` and parks until it completes or `deadline` passes.
fn connect_one(
    addr: SocketAddr,
    deadline: Option<Instant>,
    local: Option<IpAddr>,
) -> io::Result<GreenFd<std::net::TcpStream>> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    if let Some(local) = local {
        socket.bind(&SocketAddr::new(local, 0).into())?;
    }
    let fd = GreenFd::new(std::net::TcpStream::from(socket));
    match SockRef::from(fd.get_ref()).connect(&addr.into()) {
        Ok(()) => return Ok(fd),
        Err(err)
            if err.raw_os_error() == Some(libc::EINPROGRESS)
                || err.kind() == io::ErrorKind::WouldBlock => {}
        Err(err) => return Err(err),
    }
    loop {
        fd.wait_writable(deadline)?;
        if let Some(err) = fd.get_ref().take_error()? {
            return Err(err);
        }
        match fd.get_ref().peer_addr() {
            Ok(_) => return Ok(fd),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => continue,
            Err(err) => return Err(err),
        }
    }
}

/// A connect error saying which address failed (std's errors do not).
fn naming(addr: SocketAddr, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("could not connect to {addr}: {err}"))
}

/// Orders addresses for Happy Eyeballs: keep the resolver's order, alternating families.
fn interleave_families(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_is_v6 = first.is_ipv6();
    let (mut preferred, mut other): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == first_is_v6);
    let mut out = Vec::with_capacity(preferred.len() + other.len());
    preferred.reverse();
    other.reverse();
    loop {
        match (preferred.pop(), other.pop()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

#[derive(Default)]
struct Race {
    winner: Option<GreenFd<std::net::TcpStream>>,
    failures: Vec<(SocketAddr, io::Error)>,
    waiter: Option<Waiter>,
}

fn describe_failures(failures: &[(SocketAddr, io::Error)]) -> String {
    failures
        .iter()
        .map(|(addr, err)| format!("{addr}: {err}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Connects to the first address that accepts, racing attempts per RFC 8305.
fn connect_any(
    addrs: Vec<SocketAddr>,
    deadline: Option<Instant>,
    local: Option<IpAddr>,
) -> io::Result<TcpStream> {
    if let [addr] = addrs[..] {
        return connect_one(addr, deadline, local)
            .map(TcpStream::from_fd)
            .map_err(|err| naming(addr, err));
    }
    let order = interleave_families(addrs);
    let race = Rc::new(RefCell::new(Race::default()));
    let mut attempts = Attempts(Vec::new());
    let result = loop {
        if attempts.0.len() < order.len() {
            let addr = order[attempts.0.len()];
            let race = race.clone();
            attempts.0.push(green_runtime::spawn(move || {
                let outcome = connect_one(addr, deadline, local);
                let mut race = race.borrow_mut();
                match outcome {
                    Ok(fd) if race.winner.is_none() => race.winner = Some(fd),
                    Ok(_) => {}
                    Err(err) => race.failures.push((addr, err)),
                }
                if let Some(waiter) = race.waiter.take() {
                    waiter.wake();
                }
            }));
        }
        let failures_before = race.borrow().failures.len();
        let next_start =
            (attempts.0.len() < order.len()).then(|| Instant::now() + CONNECTION_ATTEMPT_DELAY);
        let wake_at = match (next_start, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        loop {
            {
                let race = race.borrow();
                if race.winner.is_some() || race.failures.len() > failures_before {
                    break;
                }
            }
            race.borrow_mut().waiter = Some(current_waiter());
            let elapsed = park_until(wake_at).map_err(|e| io::Error::other(e.to_string()));
            race.borrow_mut().waiter = None;
            if elapsed? {
                break;
            }
        }
        let mut state = race.borrow_mut();
        if let Some(fd) = state.winner.take() {
            break Ok(fd);
        }
        if state.failures.len() == order.len() {
            break Err(io::Error::new(
                state.failures[0].1.kind(),
                format!(
                    "could not connect to any address: {}",
                    describe_failures(&state.failures)
                ),
            ));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let tried: Vec<String> = order[..attempts.0.len()]
                .iter()
                .map(|a| a.to_string())
                .collect();
            break Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connection timed out (tried {}; failed: {})",
                    tried.join(", "),
                    describe_failures(&state.failures)
                ),
            ));
        }
    };
    drop(attempts);
    result.map(TcpStream::from_fd)
}

/// The racing connection attempts, killed (their sockets closed) when the race ends — also when
/// the caller is killed or times out mid-race (`kill_nowait` never blocks, so it is safe while
/// unwinding).
struct Attempts(Vec<Greenlet<()>>);

impl Drop for Attempts {
    fn drop(&mut self) {
        for attempt in &self.0 {
            attempt.kill_nowait();
        }
    }
}

/// A green TCP listener: `std::net::TcpListener`'s API; `accept` blocks only the greenlet.
pub struct TcpListener {
    sock: Sock<std::net::TcpListener>,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

/// Options for binding a [`TcpListener`]: backlog, `SO_REUSEPORT`, `IPV6_V6ONLY`.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    backlog: i32,
    reuse_port: bool,
    only_v6: Option<bool>,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            backlog: DEFAULT_BACKLOG,
            reuse_port: false,
            only_v6: None,
        }
    }
}

impl ListenerOptions {
    /// Default options: backlog 1024, `SO_REUSEADDR`, no `SO_REUSEPORT`.
    pub fn new() -> ListenerOptions {
        ListenerOptions::default()
    }

    /// The `listen` backlog.
    pub fn backlog(mut self, backlog: i32) -> ListenerOptions {
        self.backlog = backlog;
        self
    }

    /// Sets `SO_REUSEPORT`, so several listeners (one hub per core) can share a port.
    pub fn reuse_port(mut self, reuse: bool) -> ListenerOptions {
        self.reuse_port = reuse;
        self
    }

    /// Sets `IPV6_V6ONLY` on IPv6 listeners.
    pub fn only_v6(mut self, only: bool) -> ListenerOptions {
        self.only_v6 = Some(only);
        self
    }

    /// Binds a listener with these options (the first address of `addr` that works).
    pub fn bind(&self, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        each_addr(addr, |addr| {
            let socket = Socket::new(
                Domain::for_address(*addr),
                Type::STREAM.nonblocking().cloexec(),
                Some(Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            if self.reuse_port {
                socket.set_reuse_port(true)?;
            }
            if let (Some(only), true) = (self.only_v6, addr.is_ipv6()) {
                socket.set_only_v6(only)?;
            }
            socket.bind(&(*addr).into())?;
            socket.listen(self.backlog)?;
            Ok(TcpListener {
                sock: Sock::new(std::net::TcpListener::from(socket)),
            })
        })
    }
}

impl TcpListener {
    /// Binds with `SO_REUSEADDR` and a backlog of [`DEFAULT_BACKLOG`].
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        ListenerOptions::new().bind(addr)
    }

    /// Options for binding with another backlog or `SO_REUSEPORT`.
    pub fn options() -> ListenerOptions {
        ListenerOptions::new()
    }

    /// Accepts a connection, parking the greenlet until one arrives.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.sock.read_op(|l| l.accept())?;
        Ok((TcpStream::from_std(stream)?, addr))
    }

    /// Accepts with a deadline: `ErrorKind::TimedOut` when it passes.
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self
            .sock
            .read_op_until(Instant::now().checked_add(timeout), |l| l.accept())?;
        Ok((TcpStream::from_std(stream)?, addr))
    }

    /// An endless iterator of accepted connections.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get().local_addr()
    }

    /// Sets `IP_TTL` for accepted connections.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock.get().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.sock.get().ttl()
    }

    /// Wraps a std listener.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener {
            sock: Sock::new(listener),
        })
    }

    /// Unwraps the std listener, made blocking again.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        let listener = self.sock.fd.into_inner();
        listener.set_nonblocking(false)?;
        Ok(listener)
    }
}

/// The iterator of [`TcpListener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(stream, _)| stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_alternates_families_starting_with_the_first() {
        let addrs: Vec<SocketAddr> = ["[::1]:1", "[::2]:1", "1.0.0.1:1", "1.0.0.2:1", "[::3]:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let order: Vec<String> = interleave_families(addrs)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            order,
            ["[::1]:1", "1.0.0.1:1", "[::2]:1", "1.0.0.2:1", "[::3]:1"]
        );
    }
}

crate::sock::impl_socket_common!(TcpStream);
crate::sock::impl_socket_timeouts!(TcpStream);

crate::sock::impl_socket_common!(TcpListener);
