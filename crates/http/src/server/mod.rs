//! An HTTP/1.1 server: one greenlet per connection on a green [`StreamServer`], a plain
//! `Fn(Request<Body>) -> Response<Body>` handler (or one returning `Result<Response<Body>, E>`,
//! see [`IntoResponse`]), on one hub ([`Server::start`]) or one hub per thread
//! ([`Server::workers`]).
//!
//! `Request` and `Response` are the `http` crate's (re-exported as
//! [`green_http::Request`](crate::Request) and [`green_http::Response`](crate::Response)); their
//! body is this module's [`Body`], both ways. It is not the client's
//! [`client::Body`](crate::client::Body).
//!
//! ```
//! use std::io::Read;
//! use green_http::server::{Body, Server};
//! use green_http::Response;
//!
//! let server = Server::bind("127.0.0.1:0")
//!     .unwrap()
//!     .start(|req| {
//!         let mut body = String::new();
//!         req.into_body().read_to_string(&mut body).unwrap();
//!         Response::new(Body::from(body.to_uppercase()))
//!     })
//!     .unwrap();
//! # use std::io::Write;
//! # let mut conn = green_net::TcpStream::connect(server.local_addr()).unwrap();
//! # conn.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi").unwrap();
//! # let mut reply = String::new();
//! # conn.read_to_string(&mut reply).unwrap();
//! # assert!(reply.ends_with("\r\n\r\nHI"), "{reply}");
//! server.stop(std::time::Duration::from_secs(1));
//! ```
//!
//! # Behaviour
//!
//! * Keep-alive: HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`; a request or
//!   response with `Connection: close` ends the connection. Pipelined requests are answered in
//!   order. Unread request body (up to 256 KiB) is read past after the response so the
//!   connection can be reused; beyond that the connection closes.
//! * Memory: a connection holds a 16 KiB read and a write buffer only while it has bytes to
//!   handle; waiting for its next request it gives them back to a small per-thread pool, at no
//!   syscall. One idle for a second also gives back the stack pages its request left resident
//!   below its waiting frames (one `madvise`), so an idle keep-alive connection costs about
//!   5.7 KB: one stack page and its state. Over TLS the buffers stay with the connection while
//!   it waits.
//! * Responses to pipelined requests go out in one write; the `Date` field is formatted once a
//!   second (the second of the hub's clock reading for the current loop turn, as nginx uses
//!   the time it caches per event-loop iteration: a handler that computes for a long time
//!   without blocking gets the second its turn began in), and the fields the server adds
//!   (Content-Length, Date, Connection) are written without entering the response's
//!   `HeaderMap`.
//! * A request with the same target or Host value as the one before it on its connection (the
//!   usual case) shares the `Uri` and `HeaderValue` parsed and checked then, instead of parsing
//!   and checking those bytes again.
//! * Request bodies (Content-Length or chunked) are the [`Body`] of the request, read from the
//!   connection as the handler reads. A response body with a known length is sent with
//!   Content-Length (or the handler's own Content-Length header), one without is sent chunked
//!   (close-delimited to HTTP/1.0 clients). HEAD, 204 and 304 responses carry no body.
//! * `Expect: 100-continue`: `100 Continue` is sent when the handler first reads the body, so a
//!   handler that rejects the request from its head alone (401, 413, …) never makes the client
//!   send the body; the connection then closes after the response.
//! * Limits answer with a status and close: a malformed head 400, an over-long target 414, an
//!   oversized head or too many header fields 431, a body over the limit 413 (before it is read
//!   when Content-Length announces it), a missing Host in HTTP/1.1 400, an unsupported
//!   `Expect` 417, another HTTP version 505.
//! * Timeouts: [`header_timeout`](Server::header_timeout) for a head to arrive (slow clients are
//!   answered 408 and closed; on a new connection one absolute deadline covers the TLS handshake
//!   and the head, so a client trickling bytes cannot stretch it),
//!   [`keep_alive_timeout`](Server::keep_alive_timeout) for an idle connection's next request,
//!   and per-read/per-write timeouts for bodies.
//! * Requests are checked before the handler sees them: a Host value that is not
//!   `host[:port]` is 400 (RFC 9112 §3.2), a target in the wrong form for its method is 400
//!   (`GET echo`, `GET *`, userinfo in an absolute-form target; `OPTIONS *` is fine), CONNECT is
//!   405 unless [`allow_connect`](Server::allow_connect). `HTTP/1.2` and later 1.x are answered
//!   as 1.1 (RFC 9112 §2.3).
//! * A handler that panics gets its client a 500 and the connection closes; the panic is
//!   reported like any greenlet's. A handler returning `Err(e)` gets its client a 500 and
//!   `e` logged; the connection stays open. The peer's address is in the request's extensions
//!   as a `SocketAddr` (unless [`peer_addr_extension(false)`](Server::peer_addr_extension)).
//! * Response bodies stream from any `Read` ([`Body::from_reader`], chunked) or a file
//!   ([`Body::from_file`], Content-Length). A `101 Switching Protocols` answer to a request
//!   with `Upgrade` hands the connection to its [`Body::upgrade`] function (a WebSocket on the
//!   HTTP port), as does a 2xx to an allowed CONNECT (a tunnel).
//! * When accept fails for want of descriptors (`EMFILE`), the connections idle longest are
//!   closed to make room, as nginx does, instead of leaving new clients to wait for timeouts.
//! * [`ServerHandle::stop`] stops accepting, closes idle connections at once, lets running
//!   requests finish (their responses say `Connection: close`) for the grace period, then kills
//!   the rest.

mod body;
mod buffers;
mod conn;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod upgrade;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A [`Server`] running on several threads ([`Server::workers`]): green-net's handle, which
/// `StreamServer` workers share.
#[doc(no_inline)]
pub use green_net::WorkersHandle;
use green_net::{ListenerOptions, StreamServer, TcpListener, TcpStream, ToSocketAddrs};
use green_tls::TlsAcceptor;

pub use body::Body;
use http::{Request, Response};
pub use upgrade::Upgraded;

use crate::proto::Limits;
use conn::{Config, Shared};

/// What a handler may return: a [`Response`], or a `Result` whose error (any `Display`) is
/// logged (`log::error!`, with the client's address) and answered `500 Internal Server Error`
/// without the error's text; the connection stays usable.
pub trait IntoResponse: sealed::Sealed {
    /// The response, or the error's text.
    #[doc(hidden)]
    fn into_response(self) -> Result<Response<Body>, String>;
}

impl IntoResponse for Response<Body> {
    fn into_response(self) -> Result<Response<Body>, String> {
        Ok(self)
    }
}

impl<E: fmt::Display> IntoResponse for Result<Response<Body>, E> {
    fn into_response(self) -> Result<Response<Body>, String> {
        self.map_err(|err| err.to_string())
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Response<super::Body> {}
    impl<E: std::fmt::Display> Sealed for Result<super::Response<super::Body>, E> {}
}

/// The default limit on request bodies: 10 MiB.
pub const DEFAULT_MAX_BODY: u64 = 10 * 1024 * 1024;

/// An HTTP/1.1 server on a bound listener, configured by its builder methods and run by
/// [`start`](Self::start) or [`serve`](Self::serve).
///
/// ```
/// use std::time::Duration;
/// use green_http::server::{Body, Server};
/// use green_http::{Method, Request, Response, StatusCode};
///
/// let server = Server::bind("127.0.0.1:0")?
///     .header_timeout(Duration::from_secs(5))
///     .max_connections(1000)
///     .start(|req: Request<Body>| match (req.method(), req.uri().path()) {
///         (&Method::GET, "/hello") => Response::new(Body::from("hello")),
///         _ => Response::builder()
///             .status(StatusCode::NOT_FOUND)
///             .body(Body::empty())
///             .unwrap(),
///     })?; // serves from greenlets on this thread's hub; `serve` would block here instead
///
/// let base = format!("http://{}", server.local_addr());
/// assert_eq!(green_http::get(format!("{base}/hello")).unwrap().text().unwrap(), "hello");
/// assert_eq!(green_http::get(format!("{base}/other")).unwrap().status(), 404);
/// server.stop(Duration::from_secs(1));
/// # std::io::Result::Ok(())
/// ```
pub struct Server {
    listener: TcpListener,
    config: Config,
    max_connections: Option<usize>,
    tls: Option<TlsAcceptor>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("config", &self.config)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Server {
    /// Binds a listener on `addr` (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        Ok(Server::from_listener(TcpListener::bind(addr)?))
    }

    /// A server on an existing listener.
    pub fn from_listener(listener: TcpListener) -> Server {
        Server {
            listener,
            config: Config {
                limits: Limits {
                    max_body: Some(DEFAULT_MAX_BODY),
                    ..Limits::default()
                },
                header_timeout: Duration::from_secs(10),
                keep_alive_timeout: Duration::from_secs(30),
                read_timeout: Some(Duration::from_secs(30)),
                write_timeout: Some(Duration::from_secs(30)),
                keep_alive: true,
                allow_connect: false,
                peer_addr_extension: true,
            },
            max_connections: None,
            tls: None,
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// All parsing limits at once (the default body limit is [`DEFAULT_MAX_BODY`]; the others are
    /// [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Server {
        self.config.limits = limits;
        self
    }

    /// The largest request body accepted (413 beyond it); `None` for no limit.
    pub fn max_body(mut self, limit: Option<u64>) -> Server {
        self.config.limits.max_body = limit;
        self
    }

    /// The largest request head in bytes (431 beyond it).
    pub fn max_header_bytes(mut self, bytes: usize) -> Server {
        self.config.limits.max_header_bytes = bytes;
        self
    }

    /// The most header fields in a request (431 beyond it).
    pub fn max_headers(mut self, count: usize) -> Server {
        self.config.limits.max_headers = count;
        self
    }

    /// The longest request target (414 beyond it).
    pub fn max_uri_len(mut self, len: usize) -> Server {
        self.config.limits.max_uri_len = len;
        self
    }

    /// How long a client has to send a request head, counted from the connection (first request:
    /// one absolute deadline for the TLS handshake and the whole head, however the client
    /// trickles them) or the head's first byte (later requests). Default 10 s. This and every
    /// other timeout here may be as large as `Duration::MAX`: one too large to add to the clock
    /// means no timeout.
    pub fn header_timeout(mut self, timeout: Duration) -> Server {
        self.config.header_timeout = timeout;
        self
    }

    /// How long an idle keep-alive connection waits for its next request. Default 30 s.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Server {
        self.config.keep_alive_timeout = timeout;
        self
    }

    /// Whether connections are kept alive between requests (default `true`).
    pub fn keep_alive(mut self, enabled: bool) -> Server {
        self.config.keep_alive = enabled;
        self
    }

    /// The timeout of each read of a request body (default 30 s; `None` waits forever).
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Server {
        self.config.read_timeout = timeout;
        self
    }

    /// The timeout of each write of a response (default 30 s; `None` waits forever).
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Server {
        self.config.write_timeout = timeout;
        self
    }

    /// Lets CONNECT requests reach the handler (default: refused with 405). The target must be
    /// authority-form (`host:port`, else 400). A 2xx answer carries no Content-Length or
    /// Transfer-Encoding (RFC 9110 §9.3.6) and ends HTTP on the connection: its
    /// [`Body::upgrade`] function gets the connection as the tunnel (without one the connection
    /// closes).
    pub fn allow_connect(mut self, allow: bool) -> Server {
        self.config.allow_connect = allow;
        self
    }

    /// Whether each request's extensions carry the peer's address as a `SocketAddr` (default
    /// `true`). Inserting it costs three allocations per request (the `http` crate's
    /// `Extensions` map); a server whose handlers never read it can turn it off.
    pub fn peer_addr_extension(mut self, enabled: bool) -> Server {
        self.config.peer_addr_extension = enabled;
        self
    }

    /// Serves at most `n` connections at once; while `n` are open the server stops accepting
    /// (the kernel's backlog holds new ones).
    pub fn max_connections(mut self, n: usize) -> Server {
        self.max_connections = Some(n);
        self
    }

    /// Serves HTTPS: each connection's TLS handshake runs in its own greenlet, bounded by the
    /// header timeout.
    pub fn tls(mut self, acceptor: TlsAcceptor) -> Server {
        self.tls = Some(acceptor);
        self
    }

    /// Starts serving in the background on this thread's hub; returns at once.
    pub fn start<H, R>(self, handler: H) -> io::Result<ServerHandle>
    where
        H: Fn(Request<Body>) -> R + 'static,
        R: IntoResponse,
    {
        let local_addr = self.listener.local_addr()?;
        let shared = Rc::new(Shared::default());
        let server = StreamServer::from_listener(
            self.listener,
            connection_handler(handler, self.config, self.tls, shared.clone()),
        )
        .on_exhaustion({
            let shared = shared.clone();
            move || shared.close_oldest_idle()
        });
        let server = match self.max_connections {
            Some(n) => server.max_connections(n),
            None => server,
        };
        Ok(ServerHandle {
            inner: server.start()?,
            shared,
            local_addr,
        })
    }

    /// Serves until the calling greenlet is killed, like `StreamServer::serve_forever`: the kill
    /// stops accepting; connections already open are left to finish.
    pub fn serve<H, R>(self, handler: H) -> io::Result<()>
    where
        H: Fn(Request<Body>) -> R + 'static,
        R: IntoResponse,
    {
        let shared = Rc::new(Shared::default());
        let server = StreamServer::from_listener(
            self.listener,
            connection_handler(handler, self.config, self.tls, shared.clone()),
        )
        .on_exhaustion(move || shared.close_oldest_idle());
        let server = match self.max_connections {
            Some(n) => server.max_connections(n),
            None => server,
        };
        server.serve_forever()
    }
}

impl Server {
    /// Serves on `n` threads, each with its own hub and its own `SO_REUSEPORT` listener on this
    /// server's address (the kernel spreads connections over them), as
    /// `StreamServer::workers` does; every setting applies per worker (so does
    /// [`max_connections`](Self::max_connections)). The handler is shared by the threads, hence
    /// `Send + Sync`; per-thread state goes in a `thread_local!`. Returns once every worker
    /// listens.
    ///
    /// ```
    /// use green_http::server::{Body, Server};
    /// use green_http::Response;
    ///
    /// let workers = Server::bind("127.0.0.1:0")
    ///     .unwrap()
    ///     .workers(2, |_req| Response::new(Body::from("hello")))
    ///     .unwrap();
    /// let reply = green_http::get(format!("http://{}/", workers.local_addr())).unwrap();
    /// assert_eq!(reply.text().unwrap(), "hello");
    /// workers.stop(std::time::Duration::from_secs(1));
    /// ```
    ///
    /// # Caveats
    ///
    /// The listener this server was bound with is closed and its address bound again with
    /// `SO_REUSEPORT` by each worker: a listener from [`from_listener`](Self::from_listener)
    /// must not be shared with another process meanwhile.
    pub fn workers<H, R>(self, n: usize, handler: H) -> io::Result<WorkersHandle>
    where
        H: Fn(Request<Body>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        let addr = self.listener.local_addr()?;
        drop(self.listener);
        let handler = Arc::new(handler);
        let (config, tls, max_connections) = (self.config, self.tls, self.max_connections);
        WorkersHandle::spawn(n, "green-http-worker", move |_, _| {
            let server = Server {
                listener: ListenerOptions::new().reuse_port(true).bind(addr)?,
                config: config.clone(),
                max_connections,
                tls: tls.clone(),
            };
            let handler = handler.clone();
            let server = server.start(move |req| handler(req))?;
            Ok((addr, move |grace| server.stop(grace)))
        })
    }
}

fn connection_handler<H, R>(
    handler: H,
    config: Config,
    tls: Option<TlsAcceptor>,
    shared: Rc<Shared>,
) -> impl Fn(TcpStream, SocketAddr) + 'static
where
    H: Fn(Request<Body>) -> R + 'static,
    R: IntoResponse,
{
    move |stream: TcpStream, peer: SocketAddr| {
        let _ = stream.set_nodelay(true);
        let head_deadline = Instant::now().checked_add(config.header_timeout);
        match &tls {
            None => conn::serve(stream, peer, &handler, &config, &shared, head_deadline),
            Some(acceptor) => serve_tls(
                acceptor,
                stream,
                peer,
                &handler,
                &config,
                &shared,
                head_deadline,
            ),
        }
    }
}

/// [`conn::serve`] over TLS, after the handshake. Not inlined: the handshake's state would
/// otherwise deepen the frame every plain connection waits under (a greenlet's stack keeps
/// every page it touched).
#[inline(never)]
fn serve_tls<H, R>(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    handler: &H,
    config: &Config,
    shared: &Shared,
    head_deadline: Option<Instant>,
) where
    H: Fn(Request<Body>) -> R,
    R: IntoResponse,
{
    let _ = stream.set_read_timeout(Some(config.header_timeout));
    let _ = stream.set_write_timeout(Some(config.header_timeout));
    match acceptor.accept_until(stream, head_deadline) {
        Ok(tls) => conn::serve(tls, peer, handler, config, shared, head_deadline),
        // Go's server logs these too ("TLS handshake error from …"); at debug level, as scanners
        // and slowloris clients make many.
        Err(err) => log::debug!("TLS handshake error from {peer}: {err}"),
    }
}

/// A running [`Server`]; dropping it leaves the server running.
pub struct ServerHandle {
    inner: green_net::ServerHandle,
    shared: Rc<Shared>,
    local_addr: SocketAddr,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.connections())
            .finish()
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.inner.connections()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted()
    }

    /// Graceful stop: stops accepting, closes idle keep-alive connections at once, lets requests
    /// in progress finish for up to `grace` (their responses close their connections), then
    /// kills what is left. Returns whether everything finished within `grace`. Always returns,
    /// by `grace` plus [`STOP_KILL_WAIT`](green_net::server::STOP_KILL_WAIT) at most: handlers
    /// whose unwinding blocks are abandoned and logged (see `green_net::ServerHandle::stop`).
    pub fn stop(&self, grace: Duration) -> bool {
        self.shared.stop();
        self.inner.stop(grace)
    }

    /// Blocks until the server is stopped.
    pub fn wait(&self) {
        self.inner.wait();
    }
}
