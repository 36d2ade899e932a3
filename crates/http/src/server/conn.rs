//! One server connection: read a head, hand the handler a request whose body reads from the
//! connection, write its response, repeat while keep-alive allows.
//!
//! The connection's buffers sit in an `Rc<RefCell<Conn>>` shared with the request body reader,
//! because the handler reads the body (and may return it as the response body, which is then
//! read while the response is written) while the loop owns the connection. Borrows are never held
//! across a call into the handler or into a response body's `read`. Responses to pipelined
//! requests are batched: a response is flushed before the connection waits for more bytes, not
//! after each request.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use green_net::TcpStream;
use green_runtime::{GreenletExit, GreenletRef};
use green_tls::TlsStream;
use http::header::{
    HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, TRANSFER_ENCODING,
};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};

use super::body::Body;
use super::buffers::{self, READ_SIZE};
use super::upgrade::{Upgraded, UpgradedIo};
use super::IntoResponse;
use crate::proto::{
    self, BodyDecoder, BodyEncoder, Decoded, Framing, HeadCache, Limits, Parsed, ProtoError,
    RequestHead,
};

/// Buffered response bytes that force a write even while pipelined requests wait.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// In-memory response bodies larger than this are written directly instead of copied.
const COPY_BODY_MAX: usize = 32 * 1024;
/// The most unread request body the server reads and discards to keep a connection alive.
const DRAIN_LIMIT: u64 = 256 * 1024;
/// How long a keep-alive connection waits for its next request before it trims its stack.
const STACK_TRIM_AFTER: Duration = Duration::from_secs(1);
/// How long, and how much, a closing connection keeps reading so the peer gets the response
/// instead of a reset (nginx's lingering close).
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A stream the server speaks HTTP over: a green TCP stream, or TLS over one.
pub(crate) trait Transport: Read + Write + 'static {
    /// Whether one `read` may be several socket reads (TLS records), so that only an absolute
    /// deadline bounds it against a peer trickling bytes.
    const MULTI_READ: bool;
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Sets an absolute deadline on every socket call of the following reads (TLS: a `read` is
    /// several socket reads, each renewing a socket timeout). A plain stream reads with one
    /// socket call, whose timeout `Conn::fill_until` derives from the deadline: nothing to do.
    fn set_deadline(&mut self, deadline: Option<Instant>);
    /// Ends our direction of the connection (TLS: close_notify first).
    fn shutdown_write(&mut self);
    /// The stream an upgraded connection reads and writes through once the server has let go.
    fn upgraded(conn: &Rc<RefCell<Conn<Self>>>) -> io::Result<Box<dyn UpgradedIo>>
    where
        Self: Sized;
    /// Waits within `timeout` until a read may find something, without reading, so that an idle
    /// connection need not hold a read buffer (TLS: returns at once; its buffered records
    /// would make a wait on the socket wrong).
    fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Transport for TcpStream {
    const MULTI_READ: bool = false;

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }

    fn set_deadline(&mut self, _deadline: Option<Instant>) {}

    fn shutdown_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }

    fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)?;
        TcpStream::wait_readable(self)
    }

    fn upgraded(conn: &Rc<RefCell<Conn<Self>>>) -> io::Result<Box<dyn UpgradedIo>> {
        Ok(Box::new(conn.borrow().io.try_clone()?))
    }
}

impl UpgradedIo for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }

    fn try_clone(&self) -> io::Result<Box<dyn UpgradedIo>> {
        Ok(Box::new(TcpStream::try_clone(self)?))
    }
}

impl Transport for TlsStream<TcpStream> {
    const MULTI_READ: bool = true;

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.get_ref().set_read_timeout(timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.get_ref().set_write_timeout(timeout)
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) {
        TlsStream::set_deadline(self, deadline);
    }

    fn shutdown_write(&mut self) {
        let _ = self.shutdown();
        let _ = self.get_ref().shutdown(Shutdown::Write);
    }

    fn wait_readable(&self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn upgraded(conn: &Rc<RefCell<Conn<Self>>>) -> io::Result<Box<dyn UpgradedIo>> {
        shared_transport(conn)
    }
}

/// The upgraded stream of a transport that has one handle: reached through the connection.
pub(crate) fn shared_transport<T: Transport>(
    conn: &Rc<RefCell<Conn<T>>>,
) -> io::Result<Box<dyn UpgradedIo>> {
    Ok(Box::new(SharedTransport(conn.clone())))
}

/// An upgraded TLS connection: one session, so one handle, reached through the connection.
struct SharedTransport<T>(Rc<RefCell<Conn<T>>>);

impl<T: Transport> SharedTransport<T> {
    fn io(&self) -> io::Result<std::cell::RefMut<'_, Conn<T>>> {
        self.0.try_borrow_mut().map_err(|_| {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                "the upgraded connection is in use by another greenlet",
            )
        })
    }
}

impl<T: Transport> Read for SharedTransport<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io()?.io.read(buf)
    }
}

impl<T: Transport> Write for SharedTransport<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io()?.io.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io()?.io.flush()
    }
}

impl<T: Transport> UpgradedIo for SharedTransport<T> {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io()?.io.set_read_timeout(timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io()?.io.set_write_timeout(timeout)
    }

    fn try_clone(&self) -> io::Result<Box<dyn UpgradedIo>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "an upgraded TLS connection has one handle",
        ))
    }
}

/// Server settings every connection reads.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) limits: Limits,
    pub(crate) header_timeout: Duration,
    pub(crate) keep_alive_timeout: Duration,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) keep_alive: bool,
    pub(crate) allow_connect: bool,
    pub(crate) peer_addr_extension: bool,
}

/// State shared by a server's connections: the stop flag and who is idle (killable at once).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) stopping: Cell<bool>,
    /// A slot per open connection (free slots reused): its greenlet and since when (in
    /// [`idle_count`](Self::idle_count) order) it has been idle, `None` while it is busy. Taken
    /// once per connection, so going idle and busy again per request is a store.
    conns: RefCell<Vec<Option<ConnSlot>>>,
    free: RefCell<Vec<usize>>,
    idle_count: Cell<u64>,
}

#[derive(Debug)]
struct ConnSlot {
    greenlet: GreenletRef,
    idle_since: Option<u64>,
}

/// How long reclaiming descriptors waits for a killed idle connection to close.
const RECLAIM_WAIT: Duration = Duration::from_millis(100);

impl Shared {
    /// Marks the server stopping and kills every connection waiting for its next request.
    pub(crate) fn stop(&self) {
        self.stopping.set(true);
        let idle: Vec<GreenletRef> = self
            .conns
            .borrow_mut()
            .iter_mut()
            .flatten()
            .filter_map(|slot| slot.idle_since.take().map(|_| slot.greenlet.clone()))
            .collect();
        for greenlet in idle {
            greenlet.kill_nowait();
        }
    }

    /// Closes the connections idle longest, to free descriptors for new ones when accept has
    /// none left: an eighth of the idle ones, at least 1 and at most 32 (nginx's
    /// `ngx_drain_connections`). Returns how many it closed.
    pub(crate) fn close_oldest_idle(&self) -> usize {
        let oldest: Vec<GreenletRef> = {
            let conns = self.conns.borrow();
            let mut by_age: Vec<(u64, usize)> = conns
                .iter()
                .enumerate()
                .filter_map(|(i, slot)| Some((slot.as_ref()?.idle_since?, i)))
                .collect();
            let count = (by_age.len() / 8).clamp(1, 32).min(by_age.len());
            if count == 0 {
                return 0;
            }
            by_age.select_nth_unstable(count - 1);
            by_age[..count]
                .iter()
                .filter_map(|&(_, i)| Some(conns[i].as_ref()?.greenlet.clone()))
                .collect()
        };
        log::warn!(
            "HTTP server out of descriptors: closing the {} connection(s) idle longest",
            oldest.len()
        );
        for greenlet in &oldest {
            greenlet.kill_nowait();
        }
        for greenlet in &oldest {
            greenlet.kill_timeout(RECLAIM_WAIT);
        }
        oldest.len()
    }

    /// Gives the current greenlet (a connection's) a slot until the returned guard drops.
    fn register(&self) -> Registered<'_> {
        let slot = ConnSlot {
            greenlet: green_runtime::current(),
            idle_since: None,
        };
        let mut conns = self.conns.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(index) => {
                conns[index] = Some(slot);
                index
            }
            None => {
                conns.push(Some(slot));
                conns.len() - 1
            }
        };
        Registered {
            shared: self,
            index,
        }
    }
}

/// A connection's slot in [`Shared`], given back when the connection ends.
struct Registered<'a> {
    shared: &'a Shared,
    index: usize,
}

impl Registered<'_> {
    /// Marks the connection idle (killable at once by a stop) for as long as the guard lives.
    fn idle(&self) -> IdleGuard<'_> {
        let since = self.shared.idle_count.get();
        self.shared.idle_count.set(since + 1);
        self.set_idle(Some(since));
        IdleGuard { registered: self }
    }

    fn set_idle(&self, since: Option<u64>) {
        if let Ok(mut conns) = self.shared.conns.try_borrow_mut() {
            if let Some(Some(slot)) = conns.get_mut(self.index) {
                slot.idle_since = since;
            }
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut conns) = self.shared.conns.try_borrow_mut() {
            conns[self.index] = None;
            self.shared.free.borrow_mut().push(self.index);
        }
    }
}

/// Keeps a connection marked idle while it lives.
struct IdleGuard<'a> {
    registered: &'a Registered<'a>,
}

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.registered.set_idle(None);
    }
}

/// Whether the client asked for `100 Continue` and what became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    None,
    /// Asked for; sent when the handler first reads the body.
    Pending,
    Sent,
    /// The final response went out first: the client may or may not send the body now.
    Refused,
}

pub(crate) struct Conn<T> {
    io: T,
    /// Read and write buffers, lent by [`buffers`] while `buffers_held` (see [`Conn::idle_fill`]).
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    /// An empty header map whose allocation the next request head reuses (the last response's),
    /// lent with the buffers.
    spare_headers: HeaderMap,
    /// The last request's target and Host value, shared by the next request that repeats them.
    head_cache: HeadCache,
    buffers_held: bool,
    decoder: BodyDecoder,
    expect: Expect,
    /// Bumped after each response: a request body kept past its response reads nothing more.
    generation: u64,
    read_timeout: Option<Duration>,
}

fn timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

impl<T> Drop for Conn<T> {
    fn drop(&mut self) {
        self.release_buffers();
    }
}

impl<T> Conn<T> {
    fn new(io: T, read_timeout: Option<Duration>) -> Conn<T> {
        Conn {
            io,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            wbuf: Vec::new(),
            spare_headers: HeaderMap::new(),
            head_cache: HeadCache::default(),
            buffers_held: false,
            decoder: BodyDecoder::new(Framing::Empty),
            expect: Expect::None,
            generation: 0,
            read_timeout,
        }
    }

    fn hold_buffers(&mut self) {
        if !self.buffers_held {
            debug_assert!(
                self.rstart == self.rend,
                "unread bytes in a released buffer"
            );
            buffers::take(&mut self.rbuf, &mut self.wbuf, &mut self.spare_headers);
            self.rstart = 0;
            self.rend = 0;
            self.buffers_held = true;
        }
    }

    /// Keeps a written response's header map (emptied) for the next request head to fill, unless
    /// one is kept already or it grew large: swapped with the kept empty one, which the response
    /// then drops.
    fn recycle_headers(&mut self, headers: &mut HeaderMap) {
        if self.buffers_held
            && self.spare_headers.capacity() == 0
            && headers.capacity() <= buffers::HEADERS_KEEP_MAX
        {
            headers.clear();
            std::mem::swap(&mut self.spare_headers, headers);
        }
    }

    /// Gives the buffers back to the pool; only when nothing is left to read or write in them.
    fn release_buffers(&mut self) {
        if self.buffers_held {
            self.buffers_held = false;
            buffers::give(&mut self.rbuf, &mut self.wbuf, &mut self.spare_headers);
            self.rstart = 0;
            self.rend = 0;
        }
    }
}

impl<T: Transport> Conn<T> {
    fn pending(&self) -> &[u8] {
        &self.rbuf[self.rstart..self.rend]
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            let result = self.io.write_all(&self.wbuf);
            self.wbuf.clear();
            result?;
            self.io.flush()?;
        }
        Ok(())
    }

    /// Writes out what is buffered, then reads more bytes (0 at the peer's end).
    fn fill(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        self.flush()?;
        self.hold_buffers();
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rend == self.rbuf.len() {
            if self.rstart > 0 {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            } else {
                // A head longer than the buffer; the head limit bounds the growth.
                let len = self.rbuf.len() * 2;
                self.rbuf.resize(len, 0);
            }
        }
        self.io
            .set_read_timeout(timeout.map(|t| t.max(Duration::from_millis(1))))?;
        let n = self.io.read(&mut self.rbuf[self.rend..])?;
        self.rend += n;
        Ok(n)
    }

    /// Writes out what is buffered, then reads more bytes by `deadline` (one absolute deadline
    /// however the peer trickles; `None`: no limit). 0 at the peer's end.
    fn fill_until(&mut self, deadline: Option<Instant>) -> io::Result<usize> {
        // Pipelined responses still go out under the write timeout, not this deadline.
        self.flush()?;
        let timeout = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Some(left)
            }
            None => None,
        };
        self.io.set_deadline(deadline);
        let read = self.fill(timeout);
        self.io.set_deadline(None);
        read
    }

    /// Writes out what is buffered, then reads more bytes within `timeout` (absolute over TLS; a
    /// plain read is one socket call, bounded by the socket timeout without reading the clock).
    fn fill_within(&mut self, timeout: Duration) -> io::Result<usize> {
        if T::MULTI_READ {
            self.fill_until(Instant::now().checked_add(timeout))
        } else {
            self.fill(Some(timeout))
        }
    }

    /// [`fill_within`](Self::fill_within) for a connection with nothing buffered, waiting for its
    /// next request: the buffers go back to the pool while it waits, so an idle keep-alive
    /// connection holds none. No extra syscall: the wait parks only when the last read already
    /// found the socket empty, and the read that follows is the one `fill` would make.
    ///
    /// A connection still idle after [`STACK_TRIM_AFTER`] gives back its greenlet's stack pages
    /// below the waiting frames (left resident by the request before), then waits on: an idle
    /// connection keeps about one stack page, and a busy one pays nothing for it.
    fn idle_fill(&mut self, timeout: Duration) -> io::Result<usize> {
        debug_assert!(self.rstart == self.rend);
        self.flush()?;
        self.release_buffers();
        let first = timeout.min(STACK_TRIM_AFTER);
        match self.io.wait_readable(Some(first)) {
            Err(err) if timed_out(&err) && timeout > first => {
                green_runtime::trim_stack();
                self.io.wait_readable(Some(timeout - first))?;
            }
            waited => waited?,
        }
        self.fill_within(timeout)
    }

    /// Reads request body bytes into `buf`, the framing enforced; `Ok(0)` at its end.
    fn read_body(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.decoder.is_done() {
                return Ok(0);
            }
            if self.expect == Expect::Pending {
                self.wbuf.extend_from_slice(CONTINUE);
                self.expect = Expect::Sent;
            }
            if self.rstart < self.rend {
                let take = (self.rend - self.rstart).min(buf.len());
                let input = &self.rbuf[self.rstart..self.rstart + take];
                match self.decoder.decode(input)? {
                    (Decoded::Data(data), used) => {
                        let n = data.len();
                        buf[..n].copy_from_slice(data);
                        self.rstart += used;
                        return Ok(n);
                    }
                    (Decoded::End, used) => {
                        self.rstart += used;
                        return Ok(0);
                    }
                    (Decoded::NeedMore, used) => {
                        self.rstart += used;
                        continue;
                    }
                }
            }
            // Nothing buffered: a large Content-Length body is read straight into `buf`.
            if let Some(remaining) = self.decoder.remaining() {
                if buf.len() >= READ_SIZE {
                    self.flush()?;
                    self.io.set_read_timeout(self.read_timeout)?;
                    let want = remaining.min(buf.len() as u64) as usize;
                    let n = self.io.read(&mut buf[..want])?;
                    if n == 0 {
                        self.decoder.eof()?;
                        return Ok(0);
                    }
                    return match self.decoder.decode(&buf[..n])? {
                        (Decoded::Data(data), _) => Ok(data.len()),
                        _ => Ok(0),
                    };
                }
            }
            if self.fill(self.read_timeout)? == 0 {
                self.decoder.eof()?;
                return Ok(0);
            }
        }
    }
}

/// The request body handed to a handler: reads from the connection through the framing.
struct RequestBody<T> {
    conn: Rc<RefCell<Conn<T>>>,
    generation: u64,
}

impl<T: Transport> Read for RequestBody<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut conn = self.conn.try_borrow_mut().map_err(|_| {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                "the request body is being read elsewhere",
            )
        })?;
        if conn.generation != self.generation {
            return Err(io::Error::other(
                "the request body was read after its response was sent",
            ));
        }
        conn.read_body(buf)
    }
}

// Made once per request and matched at once: boxing the head would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Head {
    Request(RequestHead),
    /// The peer closed, went idle too long, or the server is stopping: close quietly.
    Close,
    /// Answer with this status and close.
    Reject(StatusCode, String),
}

/// Serves HTTP on `io` until the connection ends. The first request's head must arrive by
/// `first_deadline` (the connection's start plus the header timeout).
pub(crate) fn serve<T, H, R>(
    io: T,
    peer: SocketAddr,
    handler: &H,
    config: &Config,
    shared: &Shared,
    first_deadline: Option<Instant>,
) where
    T: Transport,
    H: Fn(Request<Body>) -> R,
    R: IntoResponse,
{
    let _ = io.set_write_timeout(config.write_timeout);
    let conn = Rc::new(RefCell::new(Conn::new(io, config.read_timeout)));
    let registered = shared.register();
    let mut first = Some(first_deadline);
    let linger = loop {
        let head = read_head(&mut conn.borrow_mut(), config, &registered, first.take());
        let request = match head {
            Head::Request(request) => request,
            Head::Close => break false,
            Head::Reject(status, why) => {
                let mut c = conn.borrow_mut();
                write_error(&mut c, status, &why);
                break true;
            }
        };
        match exchange(&conn, request, peer, handler, config, shared) {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Close) => break false,
            Ok(Next::Linger) => break true,
            // The connection belongs to the upgrade, which has ended: nothing more to say.
            Ok(Next::Upgraded) | Err(_) => return,
        }
    };
    let mut c = conn.borrow_mut();
    let _ = c.flush();
    c.io.shutdown_write();
    // Unread request bytes would make the kernel answer our close with a reset, which can
    // destroy the response before the client reads it.
    if linger && !shared.stopping.get() {
        // Read what the client still sends so that closing does not reset the connection
        // before it has read our response. A stop cuts this short.
        let _idle = registered.idle();
        let deadline = Instant::now() + LINGER_TIME;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            c.rstart = 0;
            c.rend = 0;
            match c.fill(Some(deadline - now)) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// Reads the next request head: the first one by `first` (its deadline), a later one within the
/// keep-alive timeout for its first byte and the header timeout from there.
fn read_head<T: Transport>(
    conn: &mut Conn<T>,
    config: &Config,
    registered: &Registered<'_>,
    first: Option<Option<Instant>>,
) -> Head {
    if conn.rstart == conn.rend {
        if registered.shared.stopping.get() {
            return Head::Close;
        }
        let _idle = registered.idle();
        let read = match first {
            Some(deadline) => conn.fill_until(deadline),
            None => conn.idle_fill(config.keep_alive_timeout),
        };
        match read {
            Ok(0) | Err(_) => return Head::Close,
            Ok(_) => {}
        }
    }
    // Read the clock only for a head that did not come whole (rare but for slow clients).
    let mut deadline = first;
    loop {
        let parsed = proto::parse_request_head(
            &conn.rbuf[conn.rstart..conn.rend],
            &config.limits,
            &mut conn.spare_headers,
            &mut conn.head_cache,
        );
        match parsed {
            Ok(Parsed::Complete(head, used)) => {
                conn.rstart += used;
                return Head::Request(head);
            }
            Ok(Parsed::Partial) => {}
            Err(err) => return Head::Reject(err.status(), err.to_string()),
        }
        let deadline =
            *deadline.get_or_insert_with(|| Instant::now().checked_add(config.header_timeout));
        match conn.fill_until(deadline) {
            Ok(0) => return Head::Close,
            Ok(_) => {}
            Err(err) if timed_out(&err) => {
                return Head::Reject(StatusCode::REQUEST_TIMEOUT, "request head too slow".into())
            }
            Err(_) => return Head::Close,
        }
    }
}

/// Checks a request head; the error is the status to answer with.
fn validate(head: &RequestHead, config: &Config) -> Result<Framing, (StatusCode, String)> {
    let request = &head.request;
    let reject = |err: ProtoError| (err.status(), err.to_string());
    let framing = if head.has_framing_fields() {
        proto::request_framing_in(request.version(), head).map_err(reject)?
    } else {
        Framing::Empty
    };
    if let (Framing::Length(n), Some(limit)) = (framing, config.limits.max_body) {
        if n > limit {
            return Err(reject(ProtoError::BodyTooLarge));
        }
    }
    if *request.method() == Method::CONNECT && !config.allow_connect {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not served".into(),
        ));
    }
    // Origin-form is every method's but CONNECT's: the check has nothing to add for it.
    if !head.origin_form() || *request.method() == Method::CONNECT {
        proto::check_request_target(request.method(), request.uri()).map_err(reject)?;
    }
    match head.hosts() {
        0 if request.version() == Version::HTTP_11 => {
            return Err((StatusCode::BAD_REQUEST, "missing Host header".into()));
        }
        0 => {}
        1 if head.host_valid() => {}
        1 => return Err((StatusCode::BAD_REQUEST, "invalid Host header".into())),
        _ => return Err((StatusCode::BAD_REQUEST, "several Host headers".into())),
    }
    if request.version() == Version::HTTP_11 {
        if let Some(expect) = head.expect() {
            if !expect.eq_ignore_ascii_case(b"100-continue") {
                return Err((
                    StatusCode::EXPECTATION_FAILED,
                    "unsupported expectation".into(),
                ));
            }
        }
    }
    Ok(framing)
}

/// What a connection does after an exchange.
enum Next {
    KeepAlive,
    Close,
    /// Close, reading what the client still sends for a moment: it may be sending a body.
    Linger,
    /// The connection was handed over (101 or a CONNECT tunnel) and that is over.
    Upgraded,
}

/// Runs one request/response exchange. Not inlined: its frames (request, response, the
/// handler's) would otherwise sit above every idle connection's wait and keep its stack pages.
#[inline(never)]
fn exchange<T, H, R>(
    conn: &Rc<RefCell<Conn<T>>>,
    head: RequestHead,
    peer: SocketAddr,
    handler: &H,
    config: &Config,
    shared: &Shared,
) -> io::Result<Next>
where
    T: Transport,
    H: Fn(Request<Body>) -> R,
    R: IntoResponse,
{
    let framing = match validate(&head, config) {
        Ok(framing) => framing,
        Err((status, why)) => {
            write_error(&mut conn.borrow_mut(), status, &why);
            return Ok(Next::Linger);
        }
    };
    let method = head.request.method().clone();
    let version = head.request.version();
    let mut keep_alive = config.keep_alive && proto::keep_alive_in(version, &head);
    let generation = {
        let mut c = conn.borrow_mut();
        c.decoder = BodyDecoder::with_limits(framing, &config.limits);
        let expects_continue = version == Version::HTTP_11
            && head
                .expect()
                .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
        c.expect = if !framing.is_empty() && expects_continue {
            Expect::Pending
        } else {
            Expect::None
        };
        c.generation
    };
    let body = match framing {
        Framing::Empty | Framing::Length(0) => Body::empty(),
        _ => {
            let reader = RequestBody {
                conn: conn.clone(),
                generation,
            };
            match framing {
                Framing::Length(n) => Body::sized(reader, n),
                _ => Body::from_reader(reader),
            }
        }
    };
    // Only a request that asked to switch may be answered 101 (RFC 9110 §15.2.2).
    let upgrade_asked = version == Version::HTTP_11 && head.has_upgrade();
    let (mut parts, ()) = head.request.into_parts();
    if config.peer_addr_extension {
        parts.extensions.insert(peer);
    }
    let request = Request::from_parts(parts, body);

    let mut response = match catch_unwind(AssertUnwindSafe(|| handler(request).into_response())) {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => {
            log::error!("handler error from {peer}: {err}");
            error_response(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Err(payload) => {
            if payload.is::<GreenletExit>() {
                resume_unwind(payload);
            }
            let mut c = conn.borrow_mut();
            if c.expect == Expect::Pending {
                c.expect = Expect::Refused;
            }
            write_error(&mut c, StatusCode::INTERNAL_SERVER_ERROR, "");
            c.generation += 1;
            return Ok(if c.decoder.is_done() {
                Next::Close
            } else {
                Next::Linger
            });
        }
    };
    let status = response.status();
    let tunnel = method == Method::CONNECT && status.is_success();
    if status == StatusCode::SWITCHING_PROTOCOLS || tunnel {
        if tunnel || upgrade_asked {
            return switch_protocols(conn, response, peer);
        }
        log::error!("handler answered 101 to a request from {peer} that asked for no upgrade");
        response = error_response(StatusCode::INTERNAL_SERVER_ERROR);
    }
    if shared.stopping.get() {
        keep_alive = false;
    }
    let complete = write_response(conn, &method, version, response, &mut keep_alive);
    let mut c = conn.borrow_mut();
    c.generation += 1;
    if !complete? || !keep_alive {
        return Ok(if c.decoder.is_done() {
            Next::Close
        } else {
            Next::Linger
        });
    }
    // The handler may have left part of the request body unread: read past it.
    if !c.decoder.is_done() {
        if c.expect != Expect::None && c.expect != Expect::Sent {
            return Ok(Next::Linger);
        }
        if !drain_body(&mut c) {
            return Ok(Next::Linger);
        }
    }
    if c.rend - c.rstart == 0 || c.wbuf.len() >= WRITE_HIGH_WATER {
        c.flush()?;
    }
    Ok(if shared.stopping.get() {
        Next::Close
    } else {
        Next::KeepAlive
    })
}

/// A plain-text response with the status's reason as its body.
fn error_response(status: StatusCode) -> Response<Body> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or("Error"));
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Sends a 101 (or a 2xx to CONNECT) head, without body framing (RFC 9110 §9.3.6: none in a
/// 2xx to CONNECT), and hands the connection to the body's upgrade function, if any; without
/// one the connection just closes.
fn switch_protocols<T: Transport>(
    conn: &Rc<RefCell<Conn<T>>>,
    response: Response<Body>,
    peer: SocketAddr,
) -> io::Result<Next> {
    let (mut parts, mut body) = response.into_parts();
    let take_over = body.take_upgrade();
    drop(body);
    let headers = &mut parts.headers;
    headers.remove(CONTENT_LENGTH);
    headers.remove(TRANSFER_ENCODING);
    if take_over.is_none() {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if !headers.contains_key(DATE) {
        headers.insert(DATE, date());
    }
    let mut c = conn.borrow_mut();
    if c.expect == Expect::Pending {
        c.expect = Expect::Refused;
    }
    proto::write_response_head(&mut c.wbuf, Version::HTTP_11, parts.status, headers);
    c.generation += 1;
    c.flush()?;
    let Some(take_over) = take_over else {
        return Ok(if c.decoder.is_done() {
            Next::Close
        } else {
            Next::Linger
        });
    };
    // What follows the request's body is the new protocol's: read past the body first.
    if !c.decoder.is_done() {
        if c.expect == Expect::Refused {
            return Ok(Next::Linger);
        }
        let mut scratch = [0u8; 4096];
        let mut drained = 0u64;
        loop {
            match c.read_body(&mut scratch) {
                Ok(0) => break,
                Ok(n) if drained + (n as u64) <= DRAIN_LIMIT => drained += n as u64,
                Ok(_) | Err(_) => return Ok(Next::Linger),
            }
        }
    }
    c.io.set_read_timeout(None)?;
    c.io.set_write_timeout(None)?;
    let buffered = c.pending().to_vec();
    c.rstart = c.rend;
    drop(c);
    let io = T::upgraded(conn)?;
    take_over(Upgraded::new(io, buffered, peer));
    Ok(Next::Upgraded)
}

/// The `Date` field line and the empty line that ends a head (`date: <IMF-fixdate>\r\n\r\n`)
/// for now, formatted once per second per
/// thread (as hyper does). Whether the second has changed is judged by the hub's clock reading
/// of this loop turn ([`recent_now`](green_runtime::unversioned::recent_now)), not a clock read
/// per response, as nginx dates responses by the time it caches per event-loop iteration: a
/// handler that computes for a long time without blocking answers with the second its hub turn
/// began in.
fn with_date_tail<R>(use_tail: impl FnOnce(&[u8]) -> R) -> R {
    struct CachedDate {
        /// When the wall clock's second changes next, on the monotonic clock.
        valid_until: Option<Instant>,
        tail: [u8; DATE_TAIL_LEN],
    }
    thread_local! {
        static DATE: RefCell<CachedDate> = const {
            RefCell::new(CachedDate { valid_until: None, tail: [0; DATE_TAIL_LEN] })
        };
    }
    let recent = green_runtime::unversioned::recent_now();
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.valid_until.is_none_or(|until| recent >= until) {
            let wall = SystemTime::now();
            let monotonic = Instant::now();
            let since_epoch = wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            let text = httpdate::fmt_http_date(wall);
            let text = if text.len() == DATE_LEN {
                text.as_bytes()
            } else {
                b"Thu, 01 Jan 1970 00:00:00 GMT"
            };
            cached.tail[..DATE_PREFIX.len()].copy_from_slice(DATE_PREFIX);
            cached.tail[DATE_PREFIX.len()..DATE_PREFIX.len() + DATE_LEN].copy_from_slice(text);
            cached.tail[DATE_TAIL_LEN - 4..].copy_from_slice(b"\r\n\r\n");
            let to_next_second =
                Duration::from_nanos(1_000_000_000 - u64::from(since_epoch.subsec_nanos()));
            cached.valid_until = monotonic.checked_add(to_next_second);
        }
        use_tail(&cached.tail)
    })
}

/// The length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LEN: usize = 29;
const DATE_PREFIX: &[u8] = b"date: ";
const DATE_TAIL_LEN: usize = DATE_PREFIX.len() + DATE_LEN + 4;

fn date() -> HeaderValue {
    with_date_tail(|tail| {
        HeaderValue::from_bytes(&tail[DATE_PREFIX.len()..DATE_PREFIX.len() + DATE_LEN])
            .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
    })
}

/// Reads and discards the rest of a request body, up to [`DRAIN_LIMIT`]; whether it ended.
/// Not inlined: its scratch buffer would otherwise deepen every exchange's stack by 4 KiB, and a
/// greenlet's stack keeps every page it ever touched.
#[inline(never)]
fn drain_body<T: Transport>(conn: &mut Conn<T>) -> bool {
    let mut scratch = [0u8; 4096];
    let mut drained = 0u64;
    loop {
        match conn.read_body(&mut scratch) {
            Ok(0) => return true,
            Ok(n) => {
                drained += n as u64;
                if drained > DRAIN_LIMIT {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

/// Which of the fields the server's response rules read a handler's response has.
#[derive(Debug, Default)]
struct ResponseFields {
    content_length: bool,
    transfer_encoding: bool,
    connection: bool,
    date: bool,
}

impl ResponseFields {
    fn of(headers: &HeaderMap) -> ResponseFields {
        let mut present = ResponseFields::default();
        for name in headers.keys() {
            if *name == CONTENT_LENGTH {
                present.content_length = true;
            } else if *name == TRANSFER_ENCODING {
                present.transfer_encoding = true;
            } else if *name == CONNECTION {
                present.connection = true;
            } else if *name == DATE {
                present.date = true;
            }
        }
        present
    }
}

/// Header lines the server adds to a handler's response, written after the handler's own
/// fields without entering them in its `HeaderMap` (no allocation, no hashing).
#[derive(Debug, Default)]
struct AddedFields {
    content_length: Option<u64>,
    chunked: bool,
    connection: Option<&'static str>,
    date: bool,
}

/// Appends a response head: the status line, the handler's fields, the added ones (Date last,
/// cached with the empty line after it), the empty line.
fn write_head(
    out: &mut Vec<u8>,
    version: Version,
    status: StatusCode,
    headers: &HeaderMap,
    added: &AddedFields,
) {
    if version == Version::HTTP_11 && status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(if version == Version::HTTP_10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(length) = added.content_length {
        push_content_length(out, length);
    }
    if added.chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if let Some(connection) = added.connection {
        out.extend_from_slice(b"connection: ");
        out.extend_from_slice(connection.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if added.date {
        with_date_tail(|tail| out.extend_from_slice(tail));
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the line `content-length: <n>\r\n`, made on the stack and copied once.
fn push_content_length(out: &mut Vec<u8>, mut n: u64) {
    const NAME: &[u8] = b"content-length: ";
    let mut line = [0u8; NAME.len() + 20 + 2];
    let mut start = line.len() - 2;
    line[start..].copy_from_slice(b"\r\n");
    loop {
        start -= 1;
        line[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    start -= NAME.len();
    line[start..start + NAME.len()].copy_from_slice(NAME);
    out.extend_from_slice(&line[start..]);
}

/// Buffers a short plain-text error response that closes the connection.
fn write_error<T: Transport>(conn: &mut Conn<T>, status: StatusCode, detail: &str) {
    let mut text = status.canonical_reason().unwrap_or("Error").to_string();
    if !detail.is_empty() {
        text.push_str(": ");
        text.push_str(detail);
    }
    text.push('\n');
    let mut headers = HeaderMap::new();
    headers.insert(DATE, date());
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        // Required in a 405 (RFC 9110 §15.5.6); the handler's methods are unknown here, and the
        // only method refused before the handler is CONNECT, whose target is no resource of ours.
        headers.insert(ALLOW, HeaderValue::from_static(""));
    }
    proto::write_response_head(&mut conn.wbuf, Version::HTTP_11, status, &headers);
    conn.wbuf.extend_from_slice(text.as_bytes());
}

/// Writes a handler's response. Returns `Ok(false)` if its body could not be completed as
/// framed (the connection must close); clears `keep_alive` when the response ends the
/// connection.
fn write_response<T: Transport>(
    conn: &Rc<RefCell<Conn<T>>>,
    method: &Method,
    version: Version,
    response: Response<Body>,
    keep_alive: &mut bool,
) -> io::Result<bool> {
    {
        let mut c = conn.borrow_mut();
        if c.expect == Expect::Pending {
            // The client waits for 100 Continue or this response: it may still send the body or
            // not, so nothing after this response can be read as the next request.
            c.expect = Expect::Refused;
            *keep_alive = false;
        }
    }
    let (mut parts, mut body) = response.into_parts();
    let status = parts.status;
    let headers = &mut parts.headers;
    if status.is_informational() {
        // No upgrades: a 1xx as the final answer ends HTTP on this connection.
        *keep_alive = false;
    }
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    // One pass over the handler's field names instead of a hashed lookup per rule below.
    let mut present = ResponseFields::of(headers);
    if present.content_length && (status.is_informational() || status == StatusCode::NO_CONTENT) {
        headers.remove(CONTENT_LENGTH);
        present.content_length = false;
    }
    if present.transfer_encoding && (status.is_informational() || status == StatusCode::NO_CONTENT)
    {
        headers.remove(TRANSFER_ENCODING);
        present.transfer_encoding = false;
    }
    let user_chunked = present.transfer_encoding && proto::is_chunked(headers);
    if present.transfer_encoding {
        headers.remove(TRANSFER_ENCODING);
    }
    let user_length = if present.content_length {
        match proto::content_length(headers) {
            Ok(n) => n,
            Err(_) => {
                headers.remove(CONTENT_LENGTH);
                None
            }
        }
    } else {
        None
    };
    let mut added_length = None;
    let framing = if bodiless_status {
        Framing::Empty
    } else if user_chunked && version == Version::HTTP_11 {
        headers.remove(CONTENT_LENGTH);
        Framing::Chunked
    } else if let Some(n) = user_length {
        Framing::Length(n)
    } else if let Some(n) = body.len() {
        added_length = Some(n);
        Framing::Length(n)
    } else if version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        *keep_alive = false;
        Framing::CloseDelimited
    };
    let send_body = *method != Method::HEAD && !bodiless_status;
    let mut added = AddedFields {
        content_length: added_length,
        ..AddedFields::default()
    };
    if send_body && framing == Framing::Chunked {
        added.chunked = true;
    } else if *method == Method::HEAD && framing == Framing::Chunked {
        // A HEAD response shows the headers a GET would: with an unknown length, none.
        headers.remove(CONTENT_LENGTH);
    }
    if present.connection && proto::connection_has(headers, "close") {
        *keep_alive = false;
    }
    if !*keep_alive {
        added.connection = Some("close");
    } else if version == Version::HTTP_10 {
        added.connection = Some("keep-alive");
    }
    if added.connection.is_some() && present.connection {
        headers.remove(CONNECTION);
    }
    added.date = !present.date;
    {
        let mut c = conn.borrow_mut();
        write_head(&mut c.wbuf, version, status, headers, &added);
        c.recycle_headers(headers);
    }
    if !send_body {
        return Ok(true);
    }
    let mut encoder = BodyEncoder::new(framing);
    if let Some(bytes) = body.as_bytes() {
        let fits = match framing {
            Framing::Length(n) => n == bytes.len() as u64,
            _ => true,
        };
        if fits {
            let mut c = conn.borrow_mut();
            if bytes.len() > COPY_BODY_MAX && framing != Framing::Chunked {
                c.flush()?;
                c.io.write_all(bytes)?;
                c.io.flush()?;
            } else {
                let c = &mut *c;
                encoder.encode(bytes, &mut c.wbuf)?;
                encoder.finish(&mut c.wbuf)?;
            }
            return Ok(true);
        }
    }
    let mut scratch = vec![0u8; READ_SIZE];
    loop {
        let want = match encoder.remaining() {
            Some(0) => break,
            Some(n) => n.min(scratch.len() as u64) as usize,
            None => scratch.len(),
        };
        let n = body.read(&mut scratch[..want])?;
        if n == 0 {
            break;
        }
        let mut c = conn.borrow_mut();
        let c = &mut *c;
        encoder.encode(&scratch[..n], &mut c.wbuf)?;
        if c.wbuf.len() >= WRITE_HIGH_WATER {
            c.flush()?;
        }
    }
    let mut c = conn.borrow_mut();
    let c = &mut *c;
    match encoder.finish(&mut c.wbuf) {
        Ok(()) => Ok(true),
        Err(_) => {
            // The body ended short of its Content-Length: the client sees a truncated message.
            *keep_alive = false;
            c.flush()?;
            Ok(false)
        }
    }
}
