//! `Client` and `ClientBuilder`: configuration, the pool, and the request loop (connect or reuse,
//! send, read the head, retry once, follow redirects).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
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
use super::redirect::{Action, Attempt, Hop, Policy};
use super::request::{Body, BodyKind, Request, RequestBuilder};
use super::response::{
    BodyReader, ClientResponse, Coding, Headers, Layer, Layers, RawBody, DRAIN_LIMIT, MAX_LAYERS,
};
use super::retry::Retry;
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
    redirect: Policy,
    retry: Option<Retry>,
    body_limit: Option<u64>,
    gzip: bool,
    deflate: bool,
    #[cfg(feature = "brotli")]
    brotli: bool,
    #[cfg(feature = "zstd")]
    zstd: bool,
    /// The `Accept-Encoding` sent: the codings above that are on (set by `build`).
    accept_encoding: Option<HeaderValue>,
    decompressed_limit: Option<u64>,
    proxies: Vec<Proxy>,
    limits: Limits,
    nodelay: bool,
    /// Host names (lowercase) connected to at these addresses instead of resolving them.
    resolve: HashMap<String, Vec<SocketAddr>>,
    local_address: Option<IpAddr>,
    #[cfg(feature = "cookies")]
    jar: Option<Arc<super::cookies::Jar>>,
}

impl Config {
    /// The layer that undoes the content coding `token`, and whether it is turned on; `None` for
    /// a coding this build cannot undo.
    fn layer(&self, token: &[u8]) -> Option<(Layer, bool)> {
        let is = |name: &str| token.eq_ignore_ascii_case(name.as_bytes());
        if is("gzip") || is("x-gzip") {
            return Some((Layer::Gzip, self.gzip));
        }
        if is("deflate") {
            return Some((Layer::Deflate, self.deflate));
        }
        #[cfg(feature = "brotli")]
        if is("br") {
            return Some((Layer::Brotli, self.brotli));
        }
        #[cfg(feature = "zstd")]
        if is("zstd") {
            return Some((Layer::Zstd, self.zstd));
        }
        None
    }

    /// `Accept-Encoding`: the codings compiled in and turned on, `None` if there is none.
    fn accept_encoding_value(&self) -> Option<HeaderValue> {
        let codings = [
            ("gzip", self.gzip),
            ("deflate", self.deflate),
            #[cfg(feature = "brotli")]
            ("br", self.brotli),
            #[cfg(feature = "zstd")]
            ("zstd", self.zstd),
        ];
        let on: Vec<&str> = codings
            .iter()
            .filter(|(_, enabled)| *enabled)
            .map(|(name, _)| *name)
            .collect();
        (!on.is_empty()).then(|| HeaderValue::from_str(&on.join(", ")).expect("token list"))
    }
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
/// ```
/// use std::time::Duration;
/// # use green_http::server::{Body, Server};
/// # let server = Server::bind("127.0.0.1:0").unwrap()
/// #     .start(|req: green_http::Request<Body>| green_http::Response::new(Body::from(req.uri().path().to_string())))
/// #     .unwrap();
/// # let base = format!("http://{}", server.local_addr());
/// let client = green_http::client::Client::builder()
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// let pages: Vec<_> = ["/a", "/b", "/c"]
///     .into_iter()
///     .map(|path| {
///         let (client, url) = (client.clone(), format!("{base}{path}"));
///         green_runtime::spawn(move || client.get(url).send()?.text())
///     })
///     .collect();
/// let texts: Vec<String> = green_runtime::joinall(pages)
///     .into_iter()
///     .map(|page| page.unwrap())
///     .collect::<Result<_, _>>()?;
/// assert_eq!(texts, ["/a", "/b", "/c"]);
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
            .field("redirect", &c.redirect)
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
    tls_options: TlsOptions,
    error: Option<Error>,
}

/// What the client's own TLS connector is built with (unless one is given).
#[derive(Default)]
struct TlsOptions {
    root_certs: Vec<Vec<u8>>,
    root_files: Vec<std::path::PathBuf>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    accept_invalid_certs: bool,
    accept_invalid_hostnames: bool,
}

impl TlsOptions {
    fn is_default(&self) -> bool {
        self.root_certs.is_empty()
            && self.root_files.is_empty()
            && self.identity.is_none()
            && !self.accept_invalid_certs
            && !self.accept_invalid_hostnames
    }
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
                redirect: Policy::default(),
                retry: None,
                body_limit: Some(10 * 1024 * 1024),
                gzip: true,
                deflate: true,
                #[cfg(feature = "brotli")]
                brotli: true,
                #[cfg(feature = "zstd")]
                zstd: true,
                accept_encoding: None,
                decompressed_limit: Some(super::response::DEFAULT_DECOMPRESSED_LIMIT),
                proxies: Vec::new(),
                limits: Limits::default(),
                nodelay: true,
                resolve: HashMap::new(),
                local_address: None,
                #[cfg(feature = "cookies")]
                jar: None,
            },
            max_idle_per_host: 32,
            idle_timeout: Some(Duration::from_secs(90)),
            use_env_proxies: true,
            tls: None,
            tls_options: TlsOptions::default(),
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
    /// Short for `redirect(Policy::limited(max))`.
    pub fn max_redirects(mut self, max: usize) -> ClientBuilder {
        self.config.redirect = Policy::limited(max);
        self
    }

    /// Retries idempotent requests on the policy's statuses and errors (off by default; a
    /// request's own [`RequestBuilder::retry`] wins).
    pub fn retry(mut self, retry: Retry) -> ClientBuilder {
        self.config.retry = Some(retry);
        self
    }

    /// The redirect policy: a limit, none, or a callback deciding each hop (a request's own
    /// [`RequestBuilder::redirect`] wins).
    pub fn redirect(mut self, policy: Policy) -> ClientBuilder {
        self.config.redirect = policy;
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

    /// Whether to ask for and decode brotli (`br`) bodies (default yes; cargo feature `brotli`).
    #[cfg(feature = "brotli")]
    pub fn brotli(mut self, enable: bool) -> ClientBuilder {
        self.config.brotli = enable;
        self
    }

    /// Whether to ask for and decode zstd bodies (default yes; cargo feature `zstd`). Frames
    /// whose window is larger than 8 MiB (RFC 9659's limit for HTTP) are a decode error.
    #[cfg(feature = "zstd")]
    pub fn zstd(mut self, enable: bool) -> ClientBuilder {
        self.config.zstd = enable;
        self
    }

    /// The most bytes a compressed body may decode to (default 256 MiB; `None` for no limit),
    /// whichever way it is read (`text`, `bytes`, `json`, `copy_to`, `into_reader`, `lines`):
    /// beyond it reading fails with [`Error::DecodedTooLarge`], so a decompression bomb (a few
    /// kilobytes that expand to gigabytes) is an error rather than an out-of-memory abort. The
    /// [`body_limit`](Self::body_limit) still applies to `text`, `bytes` and `json`.
    pub fn decompressed_limit(mut self, limit: impl Into<Option<u64>>) -> ClientBuilder {
        self.config.decompressed_limit = limit.into();
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

    /// Connects to `addr` for every URL whose host is `host` instead of resolving it, as curl's
    /// `--resolve` and reqwest's `resolve` do: the URL, the `Host` header and the TLS name stay
    /// `host`'s. A port of 0 in `addr` means the URL's port.
    pub fn resolve(self, host: &str, addr: SocketAddr) -> ClientBuilder {
        self.resolve_to_addrs(host, &[addr])
    }

    /// [`resolve`](Self::resolve) with several addresses, tried as resolved ones are (Happy
    /// Eyeballs).
    pub fn resolve_to_addrs(mut self, host: &str, addrs: &[SocketAddr]) -> ClientBuilder {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.config
            .resolve
            .insert(host.to_ascii_lowercase(), addrs.to_vec());
        self
    }

    /// Connects from this local address (its port chosen by the kernel): only servers of its
    /// family (IPv4 or IPv6) are reachable.
    pub fn local_address(mut self, addr: impl Into<Option<IpAddr>>) -> ClientBuilder {
        self.config.local_address = addr.into();
        self
    }

    /// The TLS connector for `https` (default: `TlsConnector::new()`, the system roots). A
    /// connector given here is used as it is: the other TLS options of this builder
    /// ([`add_root_certificate`](Self::add_root_certificate), [`identity`](Self::identity), the
    /// `danger_` ones) then do not apply.
    pub fn tls_connector(mut self, connector: TlsConnector) -> ClientBuilder {
        self.tls = Some(connector);
        self
    }

    /// Trusts this certificate (PEM, every block, or DER) in addition to the system roots. A
    /// self-signed one is trusted as the server's own certificate too, even when it says
    /// `CA:TRUE` as `openssl req -x509` makes it (its names and dates are still checked).
    pub fn add_root_certificate(mut self, cert: impl AsRef<[u8]>) -> ClientBuilder {
        self.tls_options.root_certs.push(cert.as_ref().to_vec());
        self
    }

    /// Trusts the certificates of this PEM (or DER) file in addition to the system roots (read
    /// by [`build`](Self::build)).
    pub fn add_root_certificate_file(mut self, path: impl AsRef<std::path::Path>) -> ClientBuilder {
        self.tls_options
            .root_files
            .push(path.as_ref().to_path_buf());
        self
    }

    /// A client certificate chain (PEM, the leaf first) and its private key (PEM or DER
    /// PKCS#8), presented when a server asks for one (mutual TLS).
    pub fn identity(
        mut self,
        cert_chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> ClientBuilder {
        self.tls_options.identity = Some((cert_chain.as_ref().to_vec(), key.as_ref().to_vec()));
        self
    }

    /// **Dangerous**: accepts any server certificate (expired, self-signed, for another host),
    /// as reqwest's option of this name and requests' `verify=False`. For tests against throwaway
    /// certificates only: a man in the middle goes unnoticed.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> ClientBuilder {
        self.tls_options.accept_invalid_certs = accept;
        self
    }

    /// **Dangerous**: accepts a server certificate that chains to a trusted root but names
    /// another host.
    pub fn danger_accept_invalid_hostnames(mut self, accept: bool) -> ClientBuilder {
        self.tls_options.accept_invalid_hostnames = accept;
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
        self.config.accept_encoding = self.config.accept_encoding_value();
        let tls = OnceLock::new();
        if let Some(connector) = self.tls {
            let _ = tls.set(connector);
        } else if !self.tls_options.is_default() {
            let options = self.tls_options;
            let mut builder = TlsConnector::builder()
                .danger_accept_invalid_certs(options.accept_invalid_certs)
                .danger_accept_invalid_hostnames(options.accept_invalid_hostnames);
            for cert in &options.root_certs {
                builder = builder.add_root_certificate(cert);
            }
            for path in &options.root_files {
                builder = builder.add_root_certificate_file(path);
            }
            if let Some((chain, key)) = &options.identity {
                builder = builder.identity(chain, key);
            }
            let connector = builder.build().map_err(|err| Error::Builder {
                url: None,
                message: format!("TLS configuration: {err}"),
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

/// Why sending a request stopped.
enum SendError {
    /// Not the connection's fault (a bad header, the body's reader failed): final.
    Failed(Failure),
    /// A write failed, during this step: the server may have answered already.
    Io(io::Error, &'static str),
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

    /// Sends a request built with the `http` crate (`http::Request::builder()`, or one handed
    /// over by code written against it) and returns the response once its head has arrived, as
    /// [`RequestBuilder::send`] does: the client's timeouts, redirects, retries, cookies and
    /// decoding apply. [`ClientResponse`] converts into an `http::Response` in turn.
    ///
    /// The method, the URI (absolute, `http` or `https`), the header fields and the body are
    /// sent; the request's version and extensions are ignored (green speaks HTTP/1.1).
    ///
    /// ```
    /// use green_http::client::Client;
    /// use green_http::server::{Body, Server};
    /// use green_http::{Request, Response};
    ///
    /// let server = Server::bind("127.0.0.1:0")
    ///     .unwrap()
    ///     .start(|req: Request<Body>| -> std::io::Result<Response<Body>> {
    ///         Ok(Response::new(Body::from(req.into_body().into_string()?)))
    ///     })
    ///     .unwrap();
    /// let request = Request::post(format!("http://{}/echo", server.local_addr()))
    ///     .header("content-type", "text/plain")
    ///     .body("ping")
    ///     .unwrap();
    /// let response: Response<_> = Client::new().execute(request)?.into();
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(std::io::read_to_string(response.into_body()).unwrap(), "ping");
    /// # server.stop(std::time::Duration::from_secs(1));
    /// # Ok::<(), green_http::client::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RequestBuilder::send`]; a URI that is not absolute `http(s)` is an [`Error::Url`].
    pub fn execute<B: Into<Body>>(&self, request: http::Request<B>) -> Result<ClientResponse> {
        let (parts, body) = request.into_parts();
        self.request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
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

    /// Sends `req`, following redirects, retrying as its retry policy says.
    /// `req` is lent, not moved: the request (~0.3 KB) stays where the builder has it instead of
    /// being copied into each frame on the greenlet's stack.
    pub(crate) fn execute_built(&self, req: &mut Request) -> Result<ClientResponse> {
        let started = Instant::now();
        let config = self.config();
        let timeout = req.timeout.or(config.timeout);
        let deadlines = Deadlines {
            read: req.read_timeout.unwrap_or(config.read_timeout),
            total: timeout.and_then(|t| Instant::now().checked_add(t)),
        };
        match req.retry.take().or_else(|| config.retry.clone()) {
            Some(retry) if is_idempotent(&req.method) && req.body.is_replayable() => {
                self.execute_retrying(req, retry, deadlines, started)
            }
            _ => self.execute_once(req, deadlines, started),
        }
    }

    /// [`execute_built`](Self::execute_built) with a retry policy: out of line, so that the
    /// common request's frames on the greenlet's stack stay small (fewer cache lines touched).
    #[inline(never)]
    fn execute_retrying(
        &self,
        req: &mut Request,
        retry: Retry,
        deadlines: Deadlines,
        started: Instant,
    ) -> Result<ClientResponse> {
        let mut tried = 0;
        loop {
            let again = (tried < retry.retries).then(|| req.replay());
            let result = self.execute_once(req, deadlines, started);
            let retry_after = match &result {
                Ok(response) if retry.retries_status(response.status()) => {
                    Some(response.retry_after())
                }
                Err(err) if retry.retries_error(err) => Some(None),
                _ => None,
            };
            let (Some(retry_after), Some(Some(next))) = (retry_after, again) else {
                return result;
            };
            let wait = retry.wait(tried, retry_after);
            let past_deadline = deadlines.total.is_some_and(|deadline| {
                Instant::now()
                    .checked_add(wait)
                    .is_none_or(|end| end >= deadline)
            });
            if past_deadline {
                return result;
            }
            drop(result);
            green_runtime::sleep(wait);
            tried += 1;
            *req = next;
        }
    }

    /// Sends `req` once, following redirects.
    fn execute_once(
        &self,
        req: &mut Request,
        deadlines: Deadlines,
        started: Instant,
    ) -> Result<ClientResponse> {
        let config = self.config();
        let mut redirects = Vec::new();
        let mut history = Vec::new();
        // The clock as the pool's idle timeout sees it: the request's start, read again after a
        // redirect (one clock reading fewer per request).
        let mut now = started;
        loop {
            let (exchange, remote_addr) = self.send(req, deadlines, now)?;
            let Exchange {
                head,
                conn,
                body_unsent,
            } = exchange;
            // The head's fields are read in place; its HeaderMap is built only if the caller
            // asks for the headers (`ClientResponse::headers`).
            #[cfg(feature = "cookies")]
            if let Some(jar) = &config.jar {
                store_cookies(jar, &head, &req.url);
            }
            let framing = proto::response_framing_in(&req.method, head.status, head.version, &head)
                .map_err(|err| Error::Request {
                    url: Url::clone(&req.url),
                    source: err.into(),
                })?;
            let reusable = !body_unsent
                && (req.headers.is_empty() || !proto::connection_has(&req.headers, "close"))
                && proto::reusable_in(head.version, &head, framing);
            let coding = self.coding(req, &head);
            let decoded = coding.decodes();
            let known_length = match (framing, decoded) {
                (proto::Framing::Length(n), false) => Some(n),
                _ => None,
            };
            // The body reader is made where it ends up (in the response, or for the redirect),
            // not made first and then moved: ~0.5 KB fewer bytes copied on the greenlet's stack.
            if is_redirect(head.status) {
                if let Some(next) = self.redirect_target(req, &head, &history)? {
                    let raw = RawBody::new(
                        conn,
                        BodyDecoder::new(framing),
                        reusable,
                        self.inner.pool.clone(),
                        req.url.clone(),
                    );
                    let body = BodyReader::new(raw, coding, config.decompressed_limit);
                    self.follow_redirect(req, next, &head, framing, body, &mut history)?;
                    redirects.push(history.last().expect("a hop was just kept").url.clone());
                    now = Instant::now();
                    continue;
                }
            }
            return Ok(ClientResponse {
                status: head.status,
                version: head.version,
                body: BodyReader::new(
                    RawBody::new(
                        conn,
                        BodyDecoder::new(framing),
                        reusable,
                        self.inner.pool.clone(),
                        req.url.clone(),
                    ),
                    coding,
                    config.decompressed_limit,
                ),
                headers: Headers::new(head, decoded),
                redirects: (!history.is_empty()).then(|| {
                    Box::new(super::response::Redirects {
                        urls: redirects,
                        hops: history,
                    })
                }),
                elapsed: started.elapsed(),
                remote_addr,
                limit: config.body_limit,
                known_length,
            });
        }
    }

    /// Leaves the redirect response `head` (its body drained when short, see below) for `next`,
    /// keeping the hop in `history`. Out of line: most requests are not redirected, and their
    /// frames on the greenlet's stack stay smaller without this.
    #[inline(never)]
    fn follow_redirect(
        &self,
        req: &mut Request,
        next: Url,
        head: &RawResponse,
        framing: proto::Framing,
        mut body: BodyReader,
        history: &mut Vec<Hop>,
    ) -> Result<()> {
        // Only a body known to end soon is read to keep the connection: one without a length
        // (chunked, or up to a close the server may never make) is dropped with its connection,
        // so a server holding it open cannot stall the redirect.
        if matches!(framing, proto::Framing::Length(n) if n <= DRAIN_LIMIT) {
            body.drain(DRAIN_LIMIT);
        }
        drop(body);
        let from = Url::clone(&req.url);
        self.prepare_redirect(req, head.status, next)?;
        history.push(Hop {
            url: from,
            status: head.status,
            headers: head.header_map(),
        });
        Ok(())
    }

    /// The content codings to undo (the response then leaves out the Content-Encoding and
    /// Content-Length fields, which describe the encoded bytes): every one listed, across
    /// header lines. A coding the client cannot undo wins over one it was told not to decode
    /// (`gzip(false)`), which returns the bytes as sent.
    fn coding(&self, req: &Request, head: &RawResponse) -> Coding {
        if req.headers.contains_key(ACCEPT_ENCODING) {
            return Coding::Identity;
        }
        let config = self.config();
        let mut layers = Layers::new();
        let mut disabled = false;
        for value in head.values(Known::ContentEncoding) {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.is_empty() || token.eq_ignore_ascii_case(b"identity") {
                    continue;
                }
                let Some((layer, enabled)) = config.layer(token) else {
                    return Coding::Unsupported(
                        format!(
                            "unsupported Content-Encoding \"{}\"",
                            String::from_utf8_lossy(token)
                        )
                        .into(),
                    );
                };
                disabled |= !enabled;
                if !layers.push(layer) {
                    return Coding::Unsupported(
                        format!("more than {MAX_LAYERS} stacked Content-Encodings").into(),
                    );
                }
            }
        }
        if disabled || layers.is_empty() {
            Coding::Identity
        } else {
            Coding::Decode(layers)
        }
    }

    /// Where a redirect response sends the request next, if the policy follows it.
    #[inline(never)]
    fn redirect_target(
        &self,
        req: &Request,
        head: &RawResponse,
        history: &[Hop],
    ) -> Result<Option<Url>> {
        let status = head.status;
        let policy = req.redirect.as_ref().unwrap_or(&self.config().redirect);
        if !is_redirect(status) || policy.follows_none() {
            return Ok(None);
        }
        let Some(location) = head.values(Known::Location).next() else {
            return Ok(None);
        };
        let redirect_error = |message: String| Error::Redirect {
            url: Url::clone(&req.url),
            message,
        };
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
        let attempt = Attempt {
            status,
            next: &next,
            previous: history,
            current: &req.url,
        };
        match policy.decide(attempt) {
            Action::Follow => Ok(Some(next)),
            Action::Stop => Ok(None),
            Action::Error(message) => Err(redirect_error(message)),
        }
    }

    /// Points `req` at `next`: method and body by status, credentials dropped across origins.
    fn prepare_redirect(&self, req: &mut Request, status: StatusCode, next: Url) -> Result<()> {
        // RFC 9110 §15.4: 301 and 302 may turn only POST into GET (browsers and requests do);
        // 303 means "GET the answer elsewhere" for every method but HEAD.
        let to_get = match status {
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => req.method == Method::POST,
            StatusCode::SEE_OTHER => req.method != Method::HEAD,
            _ => false,
        };
        if to_get {
            req.method = Method::GET;
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
    /// `now` is a recent reading of the clock (the request's start), for the pool's idle timeout.
    fn send(
        &self,
        req: &mut Request,
        deadlines: Deadlines,
        now: Instant,
    ) -> Result<(Exchange, Option<std::net::SocketAddr>)> {
        let route = proxy::route_for(&self.config().proxies, &req.url);
        let mut retried = false;
        let retryable = is_idempotent(&req.method) && req.body.is_replayable();
        loop {
            // Borrowed from the URL until `req` is lent to `exchange` (made again for a retry,
            // rather than holding a clone of the URL's `Arc`: a locked instruction per request,
            // which waits for every store still pending, cold stack lines included).
            let key = pool_key(&req.url, route.as_ref());
            let pooled = if retried {
                None
            } else {
                self.inner.pool.checkout(key, retryable, now)
            };
            let mut conn = match pooled {
                Some(conn) => conn,
                None => self.connect(
                    &req.url,
                    route.as_ref(),
                    key.to_owned(),
                    deadlines,
                    req.connect_timeout.unwrap_or(self.config().connect_timeout),
                )?,
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
    /// through a proxy, then TLS. Out of line (as the other steps most requests skip): a
    /// keep-alive request's frames on the greenlet's stack stay smaller without it.
    #[inline(never)]
    fn connect(
        &self,
        url: &Url,
        route: Option<&Route>,
        key: PoolKey,
        deadlines: Deadlines,
        step: Option<Duration>,
    ) -> Result<Box<Conn>> {
        let config = self.config();
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
        let (timeout, kind) = match deadlines.next(step, TimeoutKind::Connect) {
            Err(kind) => return Err(timeout_error(kind)),
            Ok(None) => (None, TimeoutKind::Connect),
            Ok(Some((timeout, kind))) => (Some(timeout), kind),
        };
        let overridden = config.resolve.get(host).map(|addrs| {
            addrs
                .iter()
                .map(|a| SocketAddr::new(a.ip(), if a.port() == 0 { port } else { a.port() }))
                .collect::<Vec<_>>()
        });
        let local = config.local_address;
        let tcp = match overridden {
            Some(addrs) => tcp_connect(addrs, timeout, local),
            None => tcp_connect((host, port), timeout, local),
        }
        .map_err(|err| {
            if err.kind() == io::ErrorKind::TimedOut {
                timeout_error(kind)
            } else {
                connect_error(err)
            }
        })?;
        self.inner.pool.count_connect();
        if config.nodelay {
            let _ = tcp.set_nodelay(true);
        }
        // Boxed: a connection moves between the pool, the request and the body reader, as one
        // pointer rather than its ~250 bytes.
        let mut conn = Conn::new(Stream::Plain(tcp), key);
        // The proxy handshakes' reads are bounded by the connect deadline (and the total one).
        let total_or_connect = match (deadlines.total, connect_deadline) {
            (Some(total), Some(connect)) => Some(total.min(connect)),
            (total, connect) => total.or(connect),
        };
        conn.set_deadlines(Deadlines {
            read: step,
            total: total_or_connect,
        });
        if let Some(socks) = route.and_then(|r| r.socks.as_ref()) {
            let opened =
                super::socks::handshake(&mut conn, socks, into_url::host(url), into_url::port(url));
            if let Err(err) = opened {
                return Err(if err.kind() == io::ErrorKind::TimedOut {
                    timeout_error(if deadlines.total.is_some_and(|t| Instant::now() >= t) {
                        TimeoutKind::Total
                    } else {
                        TimeoutKind::Connect
                    })
                } else {
                    connect_error(io::Error::new(
                        err.kind(),
                        format!(
                            "SOCKS5 proxy {}: {err}",
                            route.map_or("", |r| r.url.as_str())
                        ),
                    ))
                });
            }
        }
        if url.scheme() != "https" {
            conn.set_deadlines(deadlines);
            return Ok(Box::new(conn));
        }
        if let Some(route) = route.filter(|r| r.forwards_http()) {
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
    #[inline(never)]
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
            (ACCEPT_ENCODING, config.accept_encoding.clone()),
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
        if let (Some(route), "http") = (route.filter(|r| r.forwards_http()), req.url.scheme()) {
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
        let plain = route.is_none_or(|r| !r.forwards_http())
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
        if let Some(codings) = &config.accept_encoding {
            out.extend_from_slice(b"accept-encoding: ");
            out.extend_from_slice(codings.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
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
        match self.send_request(&mut conn, req, route) {
            Ok(awaiting_continue) => self.read_head(conn, req, awaiting_continue, false),
            Err(SendError::Failed(failure)) => Err(failure),
            Err(SendError::Io(err, during)) => self.answer_after_send_error(conn, req, err, during),
        }
    }

    /// Writes the request head and, unless it waits for `100 Continue` (the `Ok(true)`), the
    /// body.
    fn send_request(
        &self,
        conn: &mut Conn,
        req: &mut Request,
        route: Option<&Route>,
    ) -> std::result::Result<bool, SendError> {
        let fatal = |error| {
            SendError::Failed(Failure {
                error: Box::new(error),
                before_response: false,
            })
        };
        let mut out = conn.take_write_buf();
        let has_body = !req.body.is_empty();
        let expect_continue = if self.write_plain_head(&mut out, req, route) {
            false
        } else {
            let headers = self.request_headers(req, route).map_err(fatal)?;
            let target = match (route.filter(|r| r.forwards_http()), req.url.scheme()) {
                (Some(_), "http") => into_url::absolute_form(&req.url),
                _ => into_url::origin_form(&req.url),
            };
            proto::write_request_head(&mut out, &req.method, target, Version::HTTP_11, &headers);
            has_body && proto::expects_continue(Version::HTTP_11, &headers)
        };
        let sending = |err| SendError::Io(err, "sending the request");

        if let (BodyKind::Bytes(bytes), false) = (&req.body.kind, expect_continue) {
            if bytes.len() <= COALESCE_BODY {
                out.extend_from_slice(bytes);
                conn.write_all(&out).map_err(sending)?;
                conn.keep_write_buf(out);
                conn.flush().map_err(sending)?;
                return Ok(false);
            }
        }
        conn.write_all(&out).map_err(sending)?;
        conn.keep_write_buf(out);
        if !has_body || expect_continue {
            conn.flush().map_err(sending)?;
            return Ok(expect_continue);
        }
        self.send_body(conn, req)?;
        Ok(false)
    }

    /// A write failed: the server may have answered before it stopped reading (a `413` to an
    /// upload, RFC 9112 §9.5), and that answer is the response, on a connection not reused.
    /// Without one, the error says the send failed and that no response came.
    #[inline(never)]
    fn answer_after_send_error(
        &self,
        mut conn: Box<Conn>,
        req: &mut Request,
        err: io::Error,
        during: &'static str,
    ) -> std::result::Result<Exchange, Failure> {
        if err.kind() == io::ErrorKind::TimedOut {
            return Err(self.io_failure(&req.url, &conn, err, false, during));
        }
        let failure = self.io_failure(
            &req.url,
            &conn,
            io::Error::new(
                err.kind(),
                format!("{during} failed ({err}) and the server sent no response"),
            ),
            true,
            during,
        );
        // A write fails once the peer reset the connection, so what it sent before is already
        // here (or the read fails at once); the short bound covers a TLS layer still waiting.
        let deadlines = conn.deadlines();
        conn.set_deadlines(shorter_read(deadlines, CONTINUE_WAIT));
        match self.read_head(conn, req, false, false) {
            Ok(mut exchange) => {
                exchange.conn.set_deadlines(deadlines);
                exchange.body_unsent = true;
                Ok(exchange)
            }
            Err(_) => Err(failure),
        }
    }

    #[inline(never)]
    fn send_body(&self, conn: &mut Conn, req: &mut Request) -> std::result::Result<(), SendError> {
        let sending = |err| SendError::Io(err, "sending the body");
        match &mut req.body.kind {
            BodyKind::Empty => {}
            BodyKind::Bytes(bytes) => conn.write_all(bytes).map_err(sending)?,
            BodyKind::Reader(_) => {
                // Spent from its first byte: a redirect or retry cannot send it again.
                let BodyKind::Reader(mut reader) =
                    std::mem::replace(&mut req.body.kind, BodyKind::Spent)
                else {
                    unreachable!("matched above")
                };
                let mut encoder = ChunkedEncoder::new();
                let mut buf = vec![0u8; STREAM_CHUNK];
                let mut out = Vec::with_capacity(STREAM_CHUNK + 32);
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        Err(err) => {
                            return Err(SendError::Failed(Failure {
                                error: Box::new(Error::Request {
                                    url: Url::clone(&req.url),
                                    source: io::Error::new(
                                        err.kind(),
                                        format!("reading the request body: {err}"),
                                    ),
                                }),
                                before_response: false,
                            }))
                        }
                    };
                    out.clear();
                    if n == 0 {
                        encoder.finish(None, &mut out);
                        conn.write_all(&out).map_err(sending)?;
                        break;
                    }
                    encoder.encode(&buf[..n], &mut out);
                    conn.write_all(&out).map_err(sending)?;
                }
            }
            BodyKind::Spent => unreachable!("a spent body is not sent"),
        }
        conn.flush().map_err(sending)
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
                            match self.send_body(&mut conn, req) {
                                Ok(()) => {}
                                Err(SendError::Failed(failure)) => return Err(failure),
                                Err(SendError::Io(err, during)) => {
                                    return self.answer_after_send_error(conn, req, err, during)
                                }
                            }
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
                    match self.send_body(&mut conn, req) {
                        Ok(()) => {}
                        Err(SendError::Failed(failure)) => return Err(failure),
                        Err(SendError::Io(err, during)) => {
                            return self.answer_after_send_error(conn, req, err, during)
                        }
                    }
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
    #[cold]
    #[inline(never)]
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

/// Whether `status` is one a redirect policy may follow.
fn is_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

/// Keeps the `Set-Cookie` fields of `head` in `jar`.
#[cfg(feature = "cookies")]
#[inline(never)]
fn store_cookies(jar: &super::cookies::Jar, head: &RawResponse, url: &Url) {
    for value in head.values(Known::SetCookie) {
        if let Some(text) = super::response::visible_ascii(value) {
            jar.add_cookie_str(text, url);
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
    let forwarded = route.is_some_and(Route::forwards_http);
    match (url.scheme(), via) {
        ("http", Some((host, port))) if forwarded => KeyRef {
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

/// A TCP connection to `target` (from `local`, if set), bounded by `timeout`.
fn tcp_connect(
    target: impl green_net::ToSocketAddrs,
    timeout: Option<Duration>,
    local: Option<IpAddr>,
) -> io::Result<TcpStream> {
    match (local, timeout) {
        (Some(local), timeout) => TcpStream::connect_from(local, target, timeout),
        (None, Some(timeout)) => TcpStream::connect_with_timeout(target, timeout),
        (None, None) => TcpStream::connect(target),
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
