//! `Client` and `ClientBuilder`: configuration, the pool, and the request loop (connect or reuse,
//! send, read the head, retry once, follow redirects).

use std::fmt;
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use green_net::TcpStream;
use green_tls::TlsConnector;
use http::header::{
    HeaderName, HeaderValue, ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING,
    CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, PROXY_AUTHORIZATION, TRANSFER_ENCODING, USER_AGENT,
};
use http::{HeaderMap, Method, StatusCode, Version};
use url::Url;

use super::conn::{Conn, Deadlines, KeyRef, PoolKey, Stream};
use super::error::{Error, Result, TimeoutKind};
use super::into_url::{self, IntoUrl};
use super::pool::{ClientStats, Pool};
use super::proxy::{self, Proxy, Route};
use super::request::{BodyKind, Request, RequestBuilder};
use super::response::{BodyReader, Coding, Headers, RawBody, Response, DRAIN_LIMIT};
use crate::proto::{self, BodyDecoder, ChunkedEncoder, Fields, Known, Limits, Parsed, RawResponse};

/// `User-Agent: green/<version>`.
const DEFAULT_USER_AGENT: &str = concat!("green/", env!("CARGO_PKG_VERSION"));

/// How long a request with `Expect: 100-continue` waits for the interim response before sending
/// its body anyway (RFC 9110 §10.1.1: the server may not know the expectation).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// Request bodies up to this size are sent in the same write as the head.
const COALESCE_BODY: usize = 16 * 1024;

/// Read size for streaming request bodies (one chunk each).
const STREAM_CHUNK: usize = 16 * 1024;

struct Config {
    user_agent: HeaderValue,
    default_headers: HeaderMap,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    timeout: Option<Duration>,
    max_redirects: usize,
    body_limit: Option<u64>,
    gzip: bool,
    deflate: bool,
    proxies: Vec<Proxy>,
    limits: Limits,
    nodelay: bool,
    #[cfg(feature = "cookies")]
    jar: Option<Arc<super::cookies::Jar>>,
}

struct Inner {
    config: Config,
    pool: Arc<Pool>,
    tls: OnceLock<TlsConnector>,
}

/// An HTTP/1.1 client with a keep-alive connection pool; cheap to clone (clones share the pool
/// and the configuration).
///
/// A `Client` is `Send + Sync`: greenlets of one thread share it freely, and it can be used from
/// several threads (each with its own hub). A pooled connection made on one thread and reused on
/// another registers with that thread's hub; for throughput, prefer one client per thread.
///
/// ```no_run
/// use std::time::Duration;
/// let client = green_http::client::Client::builder()
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// let pages: Vec<_> = ["http://example.com/", "http://example.org/"]
///     .into_iter()
///     .map(|url| {
///         let client = client.clone();
///         green_runtime::spawn(move || client.get(url).send()?.text())
///     })
///     .collect();
/// for page in green_runtime::joinall(pages) {
///     println!("{} bytes", page.unwrap()?.len());
/// }
/// # Ok::<(), green_http::client::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("Client")
            .field("user_agent", &c.user_agent)
            .field("connect_timeout", &c.connect_timeout)
            .field("read_timeout", &c.read_timeout)
            .field("timeout", &c.timeout)
            .field("max_redirects", &c.max_redirects)
            .field("body_limit", &c.body_limit)
            .field("proxies", &c.proxies)
            .field("pool", &self.inner.pool)
            .finish()
    }
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

/// Configures a [`Client`]: `Client::builder().timeout(d).build()?`.
#[must_use]
pub struct ClientBuilder {
    config: Config,
    max_idle_per_host: usize,
    idle_timeout: Option<Duration>,
    use_env_proxies: bool,
    tls: Option<TlsConnector>,
    root_certs: Vec<Vec<u8>>,
    error: Option<Error>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("timeout", &self.config.timeout)
            .field("max_idle_per_host", &self.max_idle_per_host)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder::new()
    }
}

impl ClientBuilder {
    /// The defaults: no timeouts except a 30 s connect timeout, 10 redirects, a 10 MB body limit
    /// for `text`/`bytes`/`json`, gzip and deflate, proxies from the environment, 32 idle
    /// connections per host kept 90 s.
    pub fn new() -> ClientBuilder {
        ClientBuilder {
            config: Config {
                user_agent: HeaderValue::from_static(DEFAULT_USER_AGENT),
                default_headers: HeaderMap::new(),
                connect_timeout: Some(Duration::from_secs(30)),
                read_timeout: None,
                timeout: None,
                max_redirects: 10,
                body_limit: Some(10 * 1024 * 1024),
                gzip: true,
                deflate: true,
                proxies: Vec::new(),
                limits: Limits::default(),
                nodelay: true,
                #[cfg(feature = "cookies")]
                jar: None,
            },
            max_idle_per_host: 32,
            idle_timeout: Some(Duration::from_secs(90)),
            use_env_proxies: true,
            tls: None,
            root_certs: Vec::new(),
            error: None,
        }
    }

    /// The `User-Agent` header (default `green/<version>`).
    pub fn user_agent<V>(mut self, value: V) -> ClientBuilder
    where
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: fmt::Display,
    {
        match HeaderValue::try_from(value) {
            Ok(v) => self.config.user_agent = v,
            Err(err) => self.fail(err),
        }
        self
    }

    /// Headers sent with every request (a request's own headers of the same name win).
    pub fn default_headers(mut self, headers: HeaderMap) -> ClientBuilder {
        self.config.default_headers = headers;
        self
    }

    /// Bounds DNS, the TCP connection, a proxy tunnel and the TLS handshake together: one
    /// deadline from the start of connecting, which a server trickling its handshake cannot
    /// stretch (default 30 s); `None` for no bound but the total deadline.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> ClientBuilder {
        self.config.connect_timeout = timeout.into();
        self
    }

    /// Bounds each read and write: no byte received (or sent) for this long fails the request.
    pub fn read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> ClientBuilder {
        self.config.read_timeout = timeout.into();
        self
    }

    /// A total deadline per request: DNS, connect, TLS, sending, the head, every redirect, and
    /// reading the body, wherever the body is read. Absolute, like reqwest's and Go's
    /// `Client.Timeout`: a peer trickling bytes (a TLS record a byte at a time) cannot stretch it.
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> ClientBuilder {
        self.config.timeout = timeout.into();
        self
    }

    /// Follows at most `max` redirects (default 10); 0 returns redirect responses as they are.
    pub fn max_redirects(mut self, max: usize) -> ClientBuilder {
        self.config.max_redirects = max;
        self
    }

    /// The most body bytes `text`, `bytes` and `json` accept (default 10 MB, after decoding);
    /// `None` for no limit. Streaming with `into_reader` has no limit.
    pub fn body_limit(mut self, limit: impl Into<Option<u64>>) -> ClientBuilder {
        self.config.body_limit = limit.into();
        self
    }

    /// Whether to ask for and decode gzip bodies (default yes).
    pub fn gzip(mut self, enable: bool) -> ClientBuilder {
        self.config.gzip = enable;
        self
    }

    /// Whether to ask for and decode deflate bodies (default yes).
    pub fn deflate(mut self, enable: bool) -> ClientBuilder {
        self.config.deflate = enable;
        self
    }

    /// Adds a proxy; proxies added here are tried before those of the environment.
    pub fn proxy(mut self, proxy: Proxy) -> ClientBuilder {
        self.config.proxies.push(proxy);
        self
    }

    /// Ignores `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`.
    pub fn no_proxy(mut self) -> ClientBuilder {
        self.use_env_proxies = false;
        self
    }

    /// How many idle connections to keep per origin (default 32; 0 disables keep-alive reuse).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> ClientBuilder {
        self.max_idle_per_host = max;
        self
    }

    /// Closes idle connections older than this instead of reusing them (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> ClientBuilder {
        self.idle_timeout = timeout.into();
        self
    }

    /// The largest response head accepted (default 64 KiB); beyond it the request fails.
    pub fn max_header_bytes(mut self, max: usize) -> ClientBuilder {
        self.config.limits.max_header_bytes = max;
        self
    }

    /// Sets `TCP_NODELAY` on connections (default yes).
    pub fn tcp_nodelay(mut self, enable: bool) -> ClientBuilder {
        self.config.nodelay = enable;
        self
    }

    /// The TLS connector for `https` (default: `TlsConnector::new()`, the system roots).
    pub fn tls_connector(mut self, connector: TlsConnector) -> ClientBuilder {
        self.tls = Some(connector);
        self
    }

    /// Trusts this certificate (PEM or DER) in addition to the system roots.
    pub fn add_root_certificate(mut self, cert: impl AsRef<[u8]>) -> ClientBuilder {
        self.root_certs.push(cert.as_ref().to_vec());
        self
    }

    /// Keeps cookies in a jar of this client's own.
    #[cfg(feature = "cookies")]
    pub fn cookie_store(mut self, enable: bool) -> ClientBuilder {
        self.config.jar = enable.then(|| Arc::new(super::cookies::Jar::new()));
        self
    }

    /// Keeps cookies in `jar` (shared with whoever else holds it).
    #[cfg(feature = "cookies")]
    pub fn cookie_jar(mut self, jar: Arc<super::cookies::Jar>) -> ClientBuilder {
        self.config.jar = Some(jar);
        self
    }

    fn fail(&mut self, err: impl fmt::Display) {
        if self.error.is_none() {
            self.error = Some(Error::Builder {
                url: None,
                message: err.to_string(),
            });
        }
    }

    /// The client, or the first configuration error.
    pub fn build(mut self) -> Result<Client> {
        if let Some(err) = self.error {
            return Err(err);
        }
        if self.use_env_proxies {
            self.config.proxies.extend(proxy::from_env());
        }
        let tls = OnceLock::new();
        if let Some(connector) = self.tls {
            let _ = tls.set(connector);
        } else if !self.root_certs.is_empty() {
            let mut builder = TlsConnector::builder();
            for cert in &self.root_certs {
                builder = builder.add_root_certificate(cert);
            }
            let connector = builder.build().map_err(|err| Error::Builder {
                url: None,
                message: format!("invalid root certificate: {err}"),
            })?;
            let _ = tls.set(connector);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                pool: Arc::new(Pool::new(self.max_idle_per_host, self.idle_timeout)),
                config: self.config,
                tls,
            }),
        })
    }
}

/// What went wrong in one attempt, and whether the request may be retried on a new connection.
struct Failure {
    error: Box<Error>,
    /// Nothing of a response arrived: the connection may have been closed while idle.
    before_response: bool,
}

/// A response head read from a connection, with its body still on it.
struct Exchange {
    head: RawResponse,
    conn: Box<Conn>,
    /// The request did not end its body (a final answer before `100 Continue`): do not reuse.
    body_unsent: bool,
}

impl Client {
    /// A client with the default configuration.
    pub fn new() -> Client {
        ClientBuilder::new()
            .build()
            .expect("the default configuration is valid")
    }

    /// A [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// A `GET` request.
    pub fn get(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST` request.
    pub fn post(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A `PUT` request.
    pub fn put(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// A `PATCH` request.
    pub fn patch(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// A `DELETE` request.
    pub fn delete(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// A `HEAD` request.
    pub fn head(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::HEAD, url)
    }

    /// A request with any method.
    pub fn request(&self, method: Method, url: impl IntoUrl) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, url.into_url())
    }

    /// Counters of connections opened, reused, discarded and retried.
    pub fn stats(&self) -> ClientStats {
        self.inner.pool.stats()
    }

    /// Closes every idle pooled connection.
    pub fn close_idle(&self) {
        self.inner.pool.clear();
    }

    /// The cookie jar, when cookies are enabled.
    #[cfg(feature = "cookies")]
    pub fn cookie_jar(&self) -> Option<&Arc<super::cookies::Jar>> {
        self.inner.config.jar.as_ref()
    }

    fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Sends `req`, following redirects.
    pub(crate) fn execute(&self, mut req: Request) -> Result<Response> {
        let config = self.config();
        let timeout = req.timeout.or(config.timeout);
        let deadlines = Deadlines {
            read: config.read_timeout,
            total: timeout.and_then(|t| Instant::now().checked_add(t)),
        };
        let mut redirects = Vec::new();
        loop {
            let (exchange, remote_addr) = self.send(&mut req, deadlines)?;
            let Exchange {
                head,
                conn,
                body_unsent,
            } = exchange;
            // The head's fields are read in place; its HeaderMap is built only if the caller
            // asks for the headers (`Response::headers`).
            #[cfg(feature = "cookies")]
            if let Some(jar) = &config.jar {
                for value in head.values(Known::SetCookie) {
                    if let Some(text) = super::response::visible_ascii(value) {
                        jar.add_cookie_str(text, &req.url);
                    }
                }
            }
            let framing = proto::response_framing_in(&req.method, head.status, head.version, &head)
                .map_err(|err| Error::Request {
                    url: Url::clone(&req.url),
                    source: err.into(),
                })?;
            let reusable = !body_unsent
                && !proto::connection_has(&req.headers, "close")
                && proto::reusable_in(head.version, &head, framing);
            let raw = RawBody::new(
                conn,
                BodyDecoder::new(framing),
                reusable,
                self.inner.pool.clone(),
                req.url.clone(),
            );
            let coding = self.coding(&req, &head);
            let known_length = match (framing, coding) {
                (proto::Framing::Length(n), Coding::Identity) => Some(n),
                _ => None,
            };
            let mut body = BodyReader::new(raw, coding);

            if let Some(next) = self.redirect_target(&req, &head, redirects.len())? {
                body.drain(DRAIN_LIMIT);
                let from = Url::clone(&req.url);
                self.prepare_redirect(&mut req, head.status, next)?;
                redirects.push(from);
                continue;
            }
            return Ok(Response {
                status: head.status,
                version: head.version,
                headers: Headers::new(head, coding != Coding::Identity),
                url: req.url,
                redirects,
                remote_addr,
                body,
                limit: config.body_limit,
                known_length,
            });
        }
    }

    /// The content coding to undo (the response then leaves out the Content-Encoding and
    /// Content-Length fields, which describe the encoded bytes).
    fn coding(&self, req: &Request, head: &RawResponse) -> Coding {
        if req.headers.contains_key(ACCEPT_ENCODING) {
            return Coding::Identity;
        }
        let config = self.config();
        let coding = match head.values(Known::ContentEncoding).next() {
            Some(v) if config.gzip && (v.eq_ignore_ascii_case(b"gzip") || v == b"x-gzip") => {
                Coding::Gzip
            }
            Some(v) if config.deflate && v.eq_ignore_ascii_case(b"deflate") => Coding::Deflate,
            _ => return Coding::Identity,
        };
        coding
    }

    /// Where a redirect response sends the request next, if it is to be followed.
    fn redirect_target(
        &self,
        req: &Request,
        head: &RawResponse,
        followed: usize,
    ) -> Result<Option<Url>> {
        let status = head.status;
        let is_redirect = matches!(
            status,
            StatusCode::MOVED_PERMANENTLY
                | StatusCode::FOUND
                | StatusCode::SEE_OTHER
                | StatusCode::TEMPORARY_REDIRECT
                | StatusCode::PERMANENT_REDIRECT
        );
        let max = self.config().max_redirects;
        if !is_redirect || max == 0 {
            return Ok(None);
        }
        let Some(location) = head.values(Known::Location).next() else {
            return Ok(None);
        };
        let redirect_error = |message: String| Error::Redirect {
            url: Url::clone(&req.url),
            message,
        };
        if followed >= max {
            return Err(redirect_error(format!("too many redirects (limit {max})")));
        }
        let location = String::from_utf8_lossy(location);
        let mut next = req
            .url
            .join(&location)
            .map_err(|err| redirect_error(format!("invalid Location {location:?}: {err}")))?;
        if !matches!(next.scheme(), "http" | "https") || next.host_str().is_none() {
            return Err(redirect_error(format!(
                "the Location {location:?} is not an http(s) URL"
            )));
        }
        if next.fragment().is_none() {
            next.set_fragment(req.url.fragment());
        }
        Ok(Some(next))
    }

    /// Points `req` at `next`: method and body by status, credentials dropped across origins.
    fn prepare_redirect(&self, req: &mut Request, status: StatusCode, next: Url) -> Result<()> {
        let to_get = matches!(
            status,
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER
        );
        if to_get {
            if req.method != Method::HEAD {
                req.method = Method::GET;
            }
            req.body = super::request::Body::empty();
            for name in [
                CONTENT_TYPE,
                CONTENT_LENGTH,
                TRANSFER_ENCODING,
                CONTENT_ENCODING,
            ] {
                req.headers.remove(name);
            }
        } else if !req.body.is_replayable() {
            return Err(Error::Redirect {
                url: Url::clone(&req.url),
                message: format!(
                    "{status} must resend the request body, and a streaming body cannot be replayed"
                ),
            });
        }
        let mut next = next;
        if let Some((user, pass)) = into_url::take_credentials(&mut next) {
            req.headers.insert(
                AUTHORIZATION,
                super::request::basic_auth_value(&user, pass.as_deref()),
            );
        } else if !into_url::same_origin(&req.url, &next) {
            for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION] {
                req.headers.remove(name);
            }
        }
        req.url = Arc::new(next);
        Ok(())
    }

    /// One request on a pooled or new connection, retried once on a new connection when a reused
    /// one failed before any response byte and the request is idempotent and replayable.
    fn send(
        &self,
        req: &mut Request,
        deadlines: Deadlines,
    ) -> Result<(Exchange, Option<std::net::SocketAddr>)> {
        let route = proxy::route_for(&self.config().proxies, &req.url);
        // The key borrows the URL while `req` is lent to `exchange` (a retry needs it again).
        let url = Arc::clone(&req.url);
        let key = pool_key(&url, route.as_ref());
        let mut retried = false;
        let retryable = is_idempotent(&req.method) && req.body.is_replayable();
        loop {
            let pooled = if retried {
                None
            } else {
                self.inner.pool.checkout(key, retryable)
            };
            let mut conn = match pooled {
                Some(conn) => conn,
                None => self.connect(&req.url, route.as_ref(), key.to_owned(), deadlines)?,
            };
            let remote_addr = if route.is_none() { conn.peer() } else { None };
            conn.set_deadlines(deadlines);
            let reused = conn.reused;
            match self.exchange(conn, req, route.as_ref()) {
                Ok(exchange) => return Ok((exchange, remote_addr)),
                Err(failure) => {
                    let retry = failure.before_response && reused && !retried && retryable;
                    if !retry {
                        return Err(*failure.error);
                    }
                    self.inner.pool.count_retry();
                    retried = true;
                }
            }
        }
    }

    fn tls(&self) -> io::Result<TlsConnector> {
        if let Some(connector) = self.inner.tls.get() {
            return Ok(connector.clone());
        }
        let connector = TlsConnector::new()?;
        Ok(self.inner.tls.get_or_init(|| connector).clone())
    }

    /// A new connection for `url`: TCP (to the proxy, if any), the CONNECT tunnel for https
    /// through a proxy, then TLS.
    fn connect(
        &self,
        url: &Url,
        route: Option<&Route>,
        key: PoolKey,
        deadlines: Deadlines,
    ) -> Result<Box<Conn>> {
        let config = self.config();
        let step = config.connect_timeout;
        // The connect timeout bounds TCP and the TLS handshake together.
        let connect_deadline = step.and_then(|s| Instant::now().checked_add(s));
        let timeout_error = |kind| Error::Timeout {
            url: url.clone(),
            kind,
            during: "connecting",
        };
        let connect_error = |source| Error::Connect {
            url: url.clone(),
            source,
        };
        let (host, port) = match route {
            Some(route) => (into_url::host(&route.url), into_url::port(&route.url)),
            None => (into_url::host(url), into_url::port(url)),
        };
        let tcp = match deadlines.next(step, TimeoutKind::Connect) {
            Err(kind) => return Err(timeout_error(kind)),
            Ok(None) => TcpStream::connect((host, port)).map_err(connect_error)?,
            Ok(Some((timeout, kind))) => TcpStream::connect_with_timeout((host, port), timeout)
                .map_err(|err| {
                    if err.kind() == io::ErrorKind::TimedOut {
                        timeout_error(kind)
                    } else {
                        connect_error(err)
                    }
                })?,
        };
        self.inner.pool.count_connect();
        if config.nodelay {
            let _ = tcp.set_nodelay(true);
        }
        // Boxed: a connection moves between the pool, the request and the body reader, as one
        // pointer rather than its ~250 bytes.
        let mut conn = Conn::new(Stream::Plain(tcp), key);
        if url.scheme() != "https" {
            return Ok(Box::new(conn));
        }
        // The tunnel's reads are bounded by the connect deadline (and the total one).
        let total_or_connect = match (deadlines.total, connect_deadline) {
            (Some(total), Some(connect)) => Some(total.min(connect)),
            (total, connect) => total.or(connect),
        };
        conn.set_deadlines(Deadlines {
            read: step,
            total: total_or_connect,
        });
        if let Some(route) = route {
            self.tunnel(&mut conn, url, route, deadlines.total)?;
        }
        let connector = self.tls().map_err(connect_error)?;
        let mut conn = conn
            .upgrade_tls(
                &connector,
                into_url::host(url),
                deadlines.total,
                connect_deadline,
            )
            .map_err(|(err, kind)| {
                if err.kind() == io::ErrorKind::TimedOut {
                    timeout_error(kind)
                } else {
                    connect_error(err)
                }
            })?;
        conn.set_deadlines(deadlines);
        Ok(Box::new(conn))
    }

    /// `CONNECT host:port` through the proxy; the connection then leads to the origin.
    /// `total` is the request's own total deadline (`conn`'s may be the earlier connect one).
    fn tunnel(
        &self,
        conn: &mut Conn,
        url: &Url,
        route: &Route,
        total: Option<Instant>,
    ) -> Result<()> {
        let authority = format!("{}:{}", url.host_str().unwrap_or(""), into_url::port(url));
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::try_from(authority.as_str()).map_err(|e| Error::Builder {
                url: Some(url.clone()),
                message: e.to_string(),
            })?,
        );
        headers.insert(USER_AGENT, self.config().user_agent.clone());
        if let Some(auth) = &route.auth {
            headers.insert(PROXY_AUTHORIZATION, auth.clone());
        }
        let mut out = Vec::new();
        proto::write_request_head(
            &mut out,
            &Method::CONNECT,
            &authority,
            Version::HTTP_11,
            &headers,
        );
        let io_error = |err: io::Error| {
            if err.kind() == io::ErrorKind::TimedOut {
                Error::Timeout {
                    url: url.clone(),
                    kind: if total.is_some_and(|t| Instant::now() >= t) {
                        TimeoutKind::Total
                    } else {
                        TimeoutKind::Connect
                    },
                    during: "opening the proxy tunnel",
                }
            } else {
                Error::Connect {
                    url: url.clone(),
                    source: io::Error::new(err.kind(), format!("proxy tunnel: {err}")),
                }
            }
        };
        conn.write_all(&out).map_err(io_error)?;
        let head = loop {
            match proto::parse_response(conn.buffered(), &self.config().limits) {
                Ok(Parsed::Complete(head, used)) => {
                    conn.consume(used);
                    if proto::is_interim(head.status()) {
                        continue;
                    }
                    break head;
                }
                Ok(Parsed::Partial) => match conn.fill() {
                    Ok(0) => {
                        return Err(io_error(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the proxy closed the connection",
                        )))
                    }
                    Ok(_) => {}
                    Err(err) => return Err(io_error(err)),
                },
                Err(err) => return Err(io_error(err.into())),
            }
        };
        if !head.status().is_success() {
            return Err(Error::Connect {
                url: url.clone(),
                source: io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!(
                        "the proxy {} answered CONNECT with {}",
                        route.url,
                        head.status()
                    ),
                ),
            });
        }
        Ok(())
    }

    /// The request head's fields, in sending order.
    fn request_headers(&self, req: &Request, route: Option<&Route>) -> Result<HeaderMap> {
        let config = self.config();
        let mut headers = HeaderMap::with_capacity(req.headers.len() + 8);
        if !req.headers.contains_key(HOST) {
            let host = HeaderValue::from_str(into_url::host_header(&req.url)).map_err(|e| {
                Error::Builder {
                    url: Some(Url::clone(&req.url)),
                    message: e.to_string(),
                }
            })?;
            headers.insert(HOST, host);
        }
        for (name, value) in &req.headers {
            if name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
                headers.append(name.clone(), value.clone());
            }
        }
        for (name, value) in &config.default_headers {
            if !req.headers.contains_key(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let defaults: [(HeaderName, Option<HeaderValue>); 3] = [
            (USER_AGENT, Some(config.user_agent.clone())),
            (ACCEPT, Some(HeaderValue::from_static("*/*"))),
            (
                ACCEPT_ENCODING,
                match (config.gzip, config.deflate) {
                    (true, true) => Some(HeaderValue::from_static("gzip, deflate")),
                    (true, false) => Some(HeaderValue::from_static("gzip")),
                    (false, true) => Some(HeaderValue::from_static("deflate")),
                    (false, false) => None,
                },
            ),
        ];
        for (name, value) in defaults {
            if let Some(value) = value {
                if !headers.contains_key(&name) {
                    headers.insert(name, value);
                }
            }
        }
        #[cfg(feature = "cookies")]
        if let Some(cookies) = config.jar.as_ref().and_then(|jar| jar.cookies(&req.url)) {
            let value = match headers.get(COOKIE) {
                Some(own) => {
                    let mut joined = own.as_bytes().to_vec();
                    joined.extend_from_slice(b"; ");
                    joined.extend_from_slice(cookies.as_bytes());
                    HeaderValue::from_bytes(&joined).unwrap_or(cookies)
                }
                None => cookies,
            };
            headers.insert(COOKIE, value);
        }
        if let (Some(route), "http") = (route, req.url.scheme()) {
            if let Some(auth) = &route.auth {
                if !headers.contains_key(PROXY_AUTHORIZATION) {
                    headers.insert(PROXY_AUTHORIZATION, auth.clone());
                }
            }
        }
        match req.body.len() {
            None => {
                headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
            Some(0) if !method_expects_body(&req.method) => {}
            Some(len) => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            }
        }
        Ok(headers)
    }

    /// The common request head, written straight into `out` without building a `HeaderMap`: when
    /// the request adds nothing to the client's defaults (no headers of its own, no default
    /// headers, no cookie jar, no proxy, no body). The bytes are those of
    /// [`request_headers`](Self::request_headers) + `write_request_head`; `false` (nothing
    /// written) when the request needs the general path.
    fn write_plain_head(&self, out: &mut Vec<u8>, req: &Request, route: Option<&Route>) -> bool {
        let config = self.config();
        #[cfg(feature = "cookies")]
        if config.jar.is_some() {
            return false;
        }
        let host = into_url::host_header(&req.url);
        let plain = route.is_none()
            && req.headers.is_empty()
            && config.default_headers.is_empty()
            && req.body.is_empty()
            && !method_expects_body(&req.method)
            && !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_graphic());
        if !plain {
            return false;
        }
        #[cfg(debug_assertions)]
        let start = out.len();
        let target = into_url::origin_form(&req.url);
        out.extend_from_slice(req.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\nuser-agent: ");
        out.extend_from_slice(config.user_agent.as_bytes());
        out.extend_from_slice(b"\r\naccept: */*\r\n");
        out.extend_from_slice(match (config.gzip, config.deflate) {
            (true, true) => b"accept-encoding: gzip, deflate\r\n\r\n".as_slice(),
            (true, false) => b"accept-encoding: gzip\r\n\r\n",
            (false, true) => b"accept-encoding: deflate\r\n\r\n",
            (false, false) => b"\r\n",
        });
        // Debug builds (the tests) check the shortcut against the general path.
        #[cfg(debug_assertions)]
        if let Ok(headers) = self.request_headers(req, route) {
            let mut general = Vec::new();
            proto::write_request_head(
                &mut general,
                &req.method,
                target,
                Version::HTTP_11,
                &headers,
            );
            debug_assert_eq!(out[start..], general[..], "plain request head");
        }
        true
    }

    /// Sends `req` on `conn` and reads the response head (skipping interim responses).
    fn exchange(
        &self,
        mut conn: Box<Conn>,
        req: &mut Request,
        route: Option<&Route>,
    ) -> std::result::Result<Exchange, Failure> {
        let fatal = |error| Failure {
            error: Box::new(error),
            before_response: false,
        };
        let mut out = conn.take_write_buf();
        let has_body = !req.body.is_empty();
        let expect_continue = if self.write_plain_head(&mut out, req, route) {
            false
        } else {
            let headers = self.request_headers(req, route).map_err(fatal)?;
            let target = match (route, req.url.scheme()) {
                (Some(_), "http") => into_url::absolute_form(&req.url),
                _ => into_url::origin_form(&req.url),
            };
            proto::write_request_head(&mut out, &req.method, target, Version::HTTP_11, &headers);
            has_body && proto::expects_continue(Version::HTTP_11, &headers)
        };
        let send_error = |url: &Url, conn: &Conn, err: io::Error| {
            self.io_failure(url, conn, err, true, "sending the request")
        };

        if let (BodyKind::Bytes(bytes), false) = (&req.body.kind, expect_continue) {
            if bytes.len() <= COALESCE_BODY {
                out.extend_from_slice(bytes);
                conn.write_all(&out)
                    .map_err(|e| send_error(&req.url, &conn, e))?;
                conn.keep_write_buf(out);
                conn.flush().map_err(|e| send_error(&req.url, &conn, e))?;
                return self.read_head(conn, req, false, false);
            }
        }
        conn.write_all(&out)
            .map_err(|e| send_error(&req.url, &conn, e))?;
        conn.keep_write_buf(out);
        if !has_body {
            conn.flush().map_err(|e| send_error(&req.url, &conn, e))?;
            return self.read_head(conn, req, false, false);
        }
        if expect_continue {
            conn.flush().map_err(|e| send_error(&req.url, &conn, e))?;
            return self.read_head(conn, req, true, false);
        }
        self.send_body(&mut conn, req)?;
        self.read_head(conn, req, false, false)
    }

    fn send_body(&self, conn: &mut Conn, req: &mut Request) -> std::result::Result<(), Failure> {
        let url = Url::clone(&req.url);
        let send_error = |conn: &Conn, err: io::Error| {
            self.io_failure(&url, conn, err, true, "sending the body")
        };
        match &mut req.body.kind {
            BodyKind::Empty => {}
            BodyKind::Bytes(bytes) => conn.write_all(bytes).map_err(|e| send_error(conn, e))?,
            BodyKind::Reader(reader) => {
                let mut encoder = ChunkedEncoder::new();
                let mut buf = vec![0u8; STREAM_CHUNK];
                let mut out = Vec::with_capacity(STREAM_CHUNK + 32);
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        Err(err) => {
                            return Err(Failure {
                                error: Box::new(Error::Request {
                                    url: Url::clone(&req.url),
                                    source: io::Error::new(
                                        err.kind(),
                                        format!("reading the request body: {err}"),
                                    ),
                                }),
                                before_response: false,
                            })
                        }
                    };
                    out.clear();
                    if n == 0 {
                        encoder.finish(None, &mut out);
                        conn.write_all(&out).map_err(|e| send_error(conn, e))?;
                        break;
                    }
                    encoder.encode(&buf[..n], &mut out);
                    conn.write_all(&out).map_err(|e| send_error(conn, e))?;
                }
                // Sent once: a redirect or retry cannot send it again.
                req.body.kind = BodyKind::Spent;
            }
            BodyKind::Spent => unreachable!("a spent body is not sent"),
        }
        conn.flush().map_err(|e| send_error(conn, e))
    }

    /// Reads the response head. With `awaiting_continue` the body is still unsent: it goes out on
    /// `100 Continue` or after [`CONTINUE_WAIT`] without an answer, and not at all if a final
    /// response comes first (the connection is then not reused).
    fn read_head(
        &self,
        mut conn: Box<Conn>,
        req: &mut Request,
        mut awaiting_continue: bool,
        mut received: bool,
    ) -> std::result::Result<Exchange, Failure> {
        let limits = &self.config().limits;
        let deadlines = conn.deadlines();
        if awaiting_continue {
            conn.set_deadlines(shorter_read(deadlines, CONTINUE_WAIT));
        }
        loop {
            // Nothing buffered (a reused connection's first read is still to come) parses as
            // partial: go straight to the read.
            let parsed = if conn.buffered().is_empty() {
                Ok(Parsed::Partial)
            } else {
                proto::parse_response_raw(conn.buffered(), limits)
            };
            match parsed {
                Ok(Parsed::Complete(head, used)) => {
                    conn.consume(used);
                    if proto::is_interim(head.status) {
                        if awaiting_continue && head.status == StatusCode::CONTINUE {
                            awaiting_continue = false;
                            conn.set_deadlines(deadlines);
                            self.send_body(&mut conn, req)?;
                        }
                        continue;
                    }
                    if awaiting_continue {
                        conn.set_deadlines(deadlines);
                    }
                    return Ok(Exchange {
                        head,
                        conn,
                        body_unsent: awaiting_continue,
                    });
                }
                Ok(Parsed::Partial) => {}
                Err(err) => {
                    return Err(Failure {
                        error: Box::new(Error::Request {
                            url: Url::clone(&req.url),
                            source: err.into(),
                        }),
                        before_response: false,
                    })
                }
            }
            match conn.fill() {
                Ok(0) => {
                    let err = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        if received || !conn.buffered().is_empty() {
                            "the connection closed in the middle of the response head"
                        } else {
                            "the connection closed before any response"
                        },
                    );
                    let before = !received && conn.buffered().is_empty();
                    return Err(self.io_failure(
                        &req.url,
                        &conn,
                        err,
                        before,
                        "reading the response head",
                    ));
                }
                Ok(_) => received = true,
                Err(err)
                    if awaiting_continue
                        && err.kind() == io::ErrorKind::TimedOut
                        && conn.timeout_kind() == TimeoutKind::Read
                        && conn.buffered().is_empty() =>
                {
                    // No 100 Continue in time: send the body anyway.
                    awaiting_continue = false;
                    conn.set_deadlines(deadlines);
                    self.send_body(&mut conn, req)?;
                }
                Err(err) => {
                    let before = !received && conn.buffered().is_empty();
                    return Err(self.io_failure(
                        &req.url,
                        &conn,
                        err,
                        before,
                        "reading the response head",
                    ));
                }
            }
        }
    }

    /// An I/O failure on `conn` as a `Failure`: timeouts are never retried.
    fn io_failure(
        &self,
        url: &Url,
        conn: &Conn,
        err: io::Error,
        before_response: bool,
        during: &'static str,
    ) -> Failure {
        if err.kind() == io::ErrorKind::TimedOut {
            return Failure {
                error: Box::new(Error::Timeout {
                    url: url.clone(),
                    kind: conn.timeout_kind(),
                    during,
                }),
                before_response: false,
            };
        }
        Failure {
            error: Box::new(Error::Request {
                url: url.clone(),
                source: err,
            }),
            before_response,
        }
    }
}

fn shorter_read(deadlines: Deadlines, wait: Duration) -> Deadlines {
    Deadlines {
        read: Some(deadlines.read.map_or(wait, |r| r.min(wait))),
        total: deadlines.total,
    }
}

/// The pool key of a request to `url` (through `route`), borrowed from the URLs. Hosts of
/// `http(s)` URLs are already lowercase (the `url` crate normalises them), so equal origins give
/// equal keys.
fn pool_key<'a>(url: &'a Url, route: Option<&'a Route>) -> KeyRef<'a> {
    let via = route.map(|r| (into_url::host(&r.url), into_url::port(&r.url)));
    match (url.scheme(), via) {
        ("http", Some((host, port))) => KeyRef {
            scheme: "proxy",
            host,
            port,
            via: None,
        },
        (scheme, via) => KeyRef {
            scheme: if scheme == "https" { "https" } else { "http" },
            host: into_url::host(url),
            port: into_url::port(url),
            via,
        },
    }
}

/// Methods that may be sent twice with the effect of once (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// Methods whose empty body is still announced with `Content-Length: 0`.
fn method_expects_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}
