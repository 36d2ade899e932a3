//! `getaddrinfo` on the thread pool (gevent's default resolver): slower and bounded by the pool's
//! size, but it honours nsswitch (mDNS, LDAP, `myhostname`) and `/etc/gai.conf`.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};

use green_runtime::{spawn_blocking, JoinError};

use super::{DnsError, DnsErrorKind, Resolver};

/// Resolves through the C library's `getaddrinfo`, run by [`green_runtime::spawn_blocking`] so
/// that only the calling greenlet waits. Selected by `GREEN_RESOLVER=thread`.
///
/// Lookups run at most [`green_runtime::threadpool::max_threads`] at a time
/// (`GREEN_THREADPOOL_SIZE`). The order is getaddrinfo's (already RFC 6724). Errors carry a
/// [`DnsError`] whose kind is read from the `gai_strerror` text std reports (`EAI_NONAME`,
/// `EAI_NODATA`, `EAI_AGAIN`, `EAI_FAIL`), which assumes the C library's messages are in English
/// (the "C" locale Rust programs run in unless they call `setlocale`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadResolver {
    _private: (),
}

impl ThreadResolver {
    /// The `getaddrinfo` resolver.
    pub fn new() -> ThreadResolver {
        ThreadResolver::default()
    }
}

impl Resolver for ThreadResolver {
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        Ok(self.lookup(host, 0)?.into_iter().map(|a| a.ip()).collect())
    }

    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let name = host.to_string();
        let job = spawn_blocking(move || {
            (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>)
        });
        let addrs = match job.join() {
            Ok(result) => result.map_err(|err| classify(host, err))?,
            Err(JoinError::Panicked(_)) => {
                return Err(io::Error::other(format!("getaddrinfo({host:?}) panicked")))
            }
            Err(err) => return Err(io::Error::other(format!("getaddrinfo({host:?}): {err}"))),
        };
        let mut seen = HashSet::new();
        Ok(addrs.into_iter().filter(|a| seen.insert(*a)).collect())
    }
}

/// Wraps a getaddrinfo error in a [`DnsError`] of the kind its message names.
fn classify(host: &str, err: io::Error) -> io::Error {
    let text = err.to_string();
    let kind =
        if text.contains("Name or service not known") || text.contains("nodename nor servname") {
            DnsErrorKind::NoSuchName
        } else if text.contains("No address associated with hostname") {
            DnsErrorKind::NoData
        } else if text.contains("Temporary failure in name resolution")
            || text.contains("Non-recoverable failure")
        {
            DnsErrorKind::Temporary
        } else {
            return err;
        };
    DnsError::new(kind, host, format!("getaddrinfo: {text}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gai_messages_map_to_kinds() {
        let err = |m: &str| io::Error::other(format!("failed to lookup address information: {m}"));
        let kind = |m: &str| super::super::error_kind(&classify("h", err(m)));
        assert_eq!(
            kind("Name or service not known"),
            Some(DnsErrorKind::NoSuchName)
        );
        assert_eq!(
            kind("No address associated with hostname"),
            Some(DnsErrorKind::NoData)
        );
        assert_eq!(
            kind("Temporary failure in name resolution"),
            Some(DnsErrorKind::Temporary)
        );
        assert_eq!(kind("something else"), None);
    }
}
