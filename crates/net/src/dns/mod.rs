//! Name resolution for green sockets: a stub resolver over green UDP/TCP, or `getaddrinfo` on the
//! thread pool.
//!
//! ```no_run
//! let addrs = green_net::dns::lookup("example.com", 443).unwrap();
//! println!("{addrs:?}"); // RFC 6724 order: what `TcpStream::connect` races
//! ```
//!
//! A blocking `getaddrinfo` would stall every greenlet of the hub, so the default resolver,
//! [`NativeResolver`], speaks DNS itself over green sockets: `/etc/hosts` first, then the servers,
//! search list and options of `/etc/resolv.conf` (with glibc's `LOCALDOMAIN` and `RES_OPTIONS`),
//! A and AAAA queries in parallel, CNAME chains, EDNS0, TCP when a reply is truncated, and a TTL
//! cache with negative caching. `GREEN_RESOLVER=thread` selects [`ThreadResolver`] instead:
//! `getaddrinfo` on [`green_runtime::spawn_blocking`]'s pool, for hosts whose names come from
//! nsswitch (mDNS, LDAP, …). Any [`Resolver`] can be installed with [`set_resolver`].
//!
//! # Errors
//!
//! Failures are `io::Error`s carrying a [`DnsError`]: [`error_kind`] tells *no such name* and
//! *no address* (`ErrorKind::NotFound`) from a temporary failure such as SERVFAIL
//! (`ErrorKind::Other`) and from no answer in time (`ErrorKind::TimedOut`).
//!
//! # Environment
//!
//! | variable | effect |
//! |---|---|
//! | `GREEN_RESOLVER` | `native` (default) or `thread` |
//! | `GREEN_RESOLV_CONF` | path read instead of `/etc/resolv.conf` |
//! | `GREEN_HOSTS` | path read instead of `/etc/hosts` |
//! | `GREEN_NAMESERVERS` | comma-separated servers, ports allowed (`127.0.0.1:5353,[::1]:53`) |
//! | `LOCALDOMAIN`, `RES_OPTIONS` | as with glibc: the search list; `ndots:n timeout:n attempts:n rotate` |
//!
//! They are read when the default resolver is first needed (and by
//! [`NativeResolver::builder`]); [`set_resolver`] replaces it.

mod cache;
mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod hosts;
mod limit;
mod message;
mod native;
mod sort;
mod thread;

use std::error::Error;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

pub use config::ResolvConf;
pub use hosts::Hosts;
pub use native::{
    NativeResolver, NativeResolverBuilder, DEFAULT_CACHE_SIZE, DEFAULT_MAX_IN_FLIGHT,
};
pub use sort::sort_addresses;
pub use thread::ThreadResolver;

/// A name resolver: turns a host name into addresses, blocking only the calling greenlet.
///
/// Implement it to plug your own resolution (a fixed table, DNS over HTTPS, …) into
/// [`resolve`], [`lookup`] and every `connect("host:port")`, through [`set_resolver`].
/// Failures should carry a [`DnsError`] (`DnsError::new(..).into()`) so callers can tell
/// "does not exist" from "try again later".
pub trait Resolver: Send + Sync + fmt::Debug {
    /// The addresses of `host`, in any order.
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>>;

    /// The socket addresses of `host` with `port`, in the order connections should be tried:
    /// by default [`resolve`](Resolver::resolve)'s addresses sorted by [`sort_addresses`]
    /// (RFC 6724).
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let mut addrs = self.resolve(host)?;
        sort_addresses(&mut addrs);
        Ok(addrs
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }
}

impl<R: Resolver + ?Sized> Resolver for Arc<R> {
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        (**self).resolve(host)
    }

    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        (**self).lookup(host, port)
    }
}

impl<R: Resolver + ?Sized> Resolver for Box<R> {
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        (**self).resolve(host)
    }

    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        (**self).lookup(host, port)
    }
}

static RESOLVER: RwLock<Option<Arc<dyn Resolver>>> = RwLock::new(None);

/// Installs `resolver` for the whole process: [`resolve`], [`lookup`] and name-based
/// `connect`/`bind`/`send_to` use it from now on, on every thread.
pub fn set_resolver(resolver: impl Resolver + 'static) {
    let resolver: Arc<dyn Resolver> = Arc::new(resolver);
    *RESOLVER.write().unwrap_or_else(|e| e.into_inner()) = Some(resolver);
}

/// The process's resolver: the one given to [`set_resolver`], else [`from_env`]'s (built once).
pub fn resolver() -> Arc<dyn Resolver> {
    if let Some(resolver) = RESOLVER.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return resolver.clone();
    }
    let mut slot = RESOLVER.write().unwrap_or_else(|e| e.into_inner());
    slot.get_or_insert_with(from_env).clone()
}

/// The resolver the environment asks for: [`ThreadResolver`] if `GREEN_RESOLVER=thread`,
/// otherwise [`NativeResolver::from_system`].
pub fn from_env() -> Arc<dyn Resolver> {
    match std::env::var("GREEN_RESOLVER") {
        Ok(kind) if kind.trim() == "thread" => Arc::new(ThreadResolver::new()),
        Ok(kind) if !matches!(kind.trim(), "native" | "") => {
            log::warn!(
                "ignoring GREEN_RESOLVER={kind:?} (expected \"native\" or \"thread\"); \
                 using native"
            );
            Arc::new(NativeResolver::from_system())
        }
        _ => Arc::new(NativeResolver::from_system()),
    }
}

/// Resolves `host` to its addresses, in RFC 6724 order. An IP literal is returned as is.
pub fn resolve(host: &str) -> io::Result<Vec<IpAddr>> {
    Ok(lookup(host, 0)?.into_iter().map(|a| a.ip()).collect())
}

/// Resolves `host` and pairs each address with `port`, in the order connections should be tried.
pub fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    resolver().lookup(host, port)
}

/// What went wrong in a lookup, as [`DnsError::kind`] says.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsErrorKind {
    /// The name does not exist (NXDOMAIN): retrying will not help.
    NoSuchName,
    /// The name exists but has no address of the types asked for (NOERROR with no data).
    NoData,
    /// The servers failed (SERVFAIL, REFUSED, unreachable): the name may resolve later.
    Temporary,
    /// No server answered in time.
    TimedOut,
    /// The name is not a valid host name.
    InvalidName,
}

impl DnsErrorKind {
    /// The `io::ErrorKind` an `io::Error` of this kind has.
    pub fn io_kind(self) -> io::ErrorKind {
        match self {
            DnsErrorKind::NoSuchName | DnsErrorKind::NoData => io::ErrorKind::NotFound,
            DnsErrorKind::Temporary => io::ErrorKind::Other,
            DnsErrorKind::TimedOut => io::ErrorKind::TimedOut,
            DnsErrorKind::InvalidName => io::ErrorKind::InvalidInput,
        }
    }

    /// Whether the name is known not to resolve ([`NoSuchName`](Self::NoSuchName) or
    /// [`NoData`](Self::NoData)).
    pub fn is_not_found(self) -> bool {
        matches!(self, DnsErrorKind::NoSuchName | DnsErrorKind::NoData)
    }

    /// Whether a later retry may succeed ([`Temporary`](Self::Temporary) or
    /// [`TimedOut`](Self::TimedOut)).
    pub fn is_transient(self) -> bool {
        matches!(self, DnsErrorKind::Temporary | DnsErrorKind::TimedOut)
    }
}

/// A failed lookup: its kind, the name asked for and a human-readable detail. Travels inside an
/// `io::Error` (see [`error_kind`] and [`DnsError::from_io`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsError {
    kind: DnsErrorKind,
    name: String,
    detail: String,
}

impl DnsError {
    /// An error of `kind` for the name `name`, with `detail` saying what happened.
    pub fn new(kind: DnsErrorKind, name: impl Into<String>, detail: impl Into<String>) -> DnsError {
        DnsError {
            kind,
            name: name.into(),
            detail: detail.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> DnsErrorKind {
        self.kind
    }

    /// The name that was looked up.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The detail (servers, response codes).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The `DnsError` inside `err`, if it carries one.
    pub fn from_io(err: &io::Error) -> Option<&DnsError> {
        err.get_ref()?.downcast_ref::<DnsError>()
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            DnsErrorKind::NoSuchName => "no such name",
            DnsErrorKind::NoData => "no address for name",
            DnsErrorKind::Temporary => "temporary failure resolving",
            DnsErrorKind::TimedOut => "timed out resolving",
            DnsErrorKind::InvalidName => "invalid host name",
        };
        write!(f, "{what} {:?}", self.name)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

impl Error for DnsError {}

impl From<DnsError> for io::Error {
    fn from(err: DnsError) -> io::Error {
        io::Error::new(err.kind.io_kind(), err)
    }
}

/// The [`DnsErrorKind`] of a failed lookup, or `None` if `err` is not a DNS error.
pub fn error_kind(err: &io::Error) -> Option<DnsErrorKind> {
    DnsError::from_io(err).map(DnsError::kind)
}
