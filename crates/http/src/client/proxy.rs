//! HTTP and SOCKS5 proxies: explicit ones and those of `HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY` /
//! `NO_PROXY`.
//!
//! An `http://` URL goes through a proxy as a plain request in absolute form (`GET http://host/
//! HTTP/1.1`); an `https://` URL goes through a `CONNECT host:443` tunnel, inside which the TLS
//! handshake is made with the origin, so the proxy never sees the plaintext. Through a
//! `socks5://` or `socks5h://` proxy every URL goes as if direct, over the connection the SOCKS5
//! handshake opened (see `socks.rs`). The environment
//! follows curl's conventions, which most tools share: lowercase names first; `HTTP_PROXY` in
//! upper case is ignored when `REQUEST_METHOD` is set (a CGI environment, where a request header
//! `Proxy:` would become `HTTP_PROXY`: "httpoxy"); `NO_PROXY` lists hosts, domain suffixes, IPs and
//! CIDR ranges, or `*`.

use std::fmt;
use std::net::IpAddr;

use http::HeaderValue;
use url::Url;

use super::error::Result;
use super::into_url::{self, IntoUrl};
use super::socks::Socks;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Http,
    Https,
    All,
}

/// A proxy for `http` URLs, `https` URLs, or both.
///
/// An HTTP proxy is reached over plain HTTP (`http://host:port`; a URL without a scheme gets
/// `http://`); user info in its URL, or [`basic_auth`](Self::basic_auth), becomes the
/// `Proxy-Authorization` header. A SOCKS5 proxy is `socks5://host:port` (host names resolved
/// here) or `socks5h://host:port` (resolved by the proxy); user info in its URL is its RFC 1929
/// user and password.
#[derive(Clone)]
pub struct Proxy {
    scope: Scope,
    url: Url,
    auth: Option<HeaderValue>,
    socks: Option<Socks>,
    no_proxy: Option<NoProxy>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("scope", &self.scope)
            .field("url", &self.url.as_str())
            .field("auth", &self.auth.is_some())
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl Proxy {
    /// A proxy for `http://` URLs.
    pub fn http(url: impl IntoUrl) -> Result<Proxy> {
        Proxy::new(Scope::Http, url)
    }

    /// A proxy for `https://` URLs (through `CONNECT` tunnels).
    pub fn https(url: impl IntoUrl) -> Result<Proxy> {
        Proxy::new(Scope::Https, url)
    }

    /// A proxy for every URL.
    pub fn all(url: impl IntoUrl) -> Result<Proxy> {
        Proxy::new(Scope::All, url)
    }

    fn new(scope: Scope, url: impl IntoUrl) -> Result<Proxy> {
        let mut url = into_url::parse_proxy_url(url)?;
        let remote_dns = match url.scheme() {
            "socks5" => Some(false),
            "socks5h" => Some(true),
            _ => None,
        };
        let credentials = into_url::take_credentials(&mut url);
        let (auth, socks) = match remote_dns {
            None => (
                credentials
                    .map(|(user, pass)| super::request::basic_auth_value(&user, pass.as_deref())),
                None,
            ),
            Some(remote_dns) => (
                None,
                Some(Socks {
                    remote_dns,
                    credentials: credentials.map(|(user, pass)| (user, pass.unwrap_or_default())),
                }),
            ),
        };
        Ok(Proxy {
            scope,
            url,
            auth,
            socks,
            no_proxy: None,
        })
    }

    /// Sends `Proxy-Authorization: Basic …` with these credentials (a SOCKS5 proxy gets them as
    /// its user and password).
    pub fn basic_auth(mut self, user: &str, password: &str) -> Proxy {
        match &mut self.socks {
            Some(socks) => socks.credentials = Some((user.to_owned(), password.to_owned())),
            None => self.auth = Some(super::request::basic_auth_value(user, Some(password))),
        }
        self
    }

    /// Hosts that bypass this proxy.
    pub fn no_proxy(mut self, no_proxy: NoProxy) -> Proxy {
        self.no_proxy = Some(no_proxy);
        self
    }

    /// The proxy's URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    fn applies_to(&self, url: &Url) -> bool {
        let scope_ok = match self.scope {
            Scope::All => true,
            Scope::Http => url.scheme() == "http",
            Scope::Https => url.scheme() == "https",
        };
        scope_ok
            && !self
                .no_proxy
                .as_ref()
                .is_some_and(|np| np.matches(into_url::host(url)))
    }

    fn route(&self) -> Route {
        Route {
            url: self.url.clone(),
            auth: self.auth.clone(),
            socks: self.socks.clone(),
        }
    }
}

/// Where a request goes when it goes through a proxy.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) url: Url,
    pub(crate) auth: Option<HeaderValue>,
    /// Through a SOCKS5 proxy: requests go as if direct once connected.
    pub(crate) socks: Option<Socks>,
}

impl Route {
    /// Whether plain `http` requests go to the proxy in absolute form (an HTTP proxy).
    pub(crate) fn forwards_http(&self) -> bool {
        self.socks.is_none()
    }
}

/// The proxies of the environment: `http_proxy`, `https_proxy`, `all_proxy` (lowercase first,
/// then uppercase) and `no_proxy`. Empty values count as unset.
pub(crate) fn from_env() -> Vec<Proxy> {
    from_vars(|name| std::env::var(name).ok())
}

fn from_vars(var: impl Fn(&str) -> Option<String>) -> Vec<Proxy> {
    let get = |lower: &str, upper: &str| {
        var(lower)
            .or_else(|| {
                // httpoxy: in CGI, HTTP_PROXY is the client's `Proxy:` request header.
                if upper == "HTTP_PROXY" && var("REQUEST_METHOD").is_some() {
                    return None;
                }
                var(upper)
            })
            .filter(|v| !v.trim().is_empty())
    };
    let no_proxy = get("no_proxy", "NO_PROXY").map(|v| NoProxy::from_string(&v));
    let mut proxies = Vec::new();
    let specs = [
        (Scope::Http, get("http_proxy", "HTTP_PROXY")),
        (Scope::Https, get("https_proxy", "HTTPS_PROXY")),
        (Scope::All, get("all_proxy", "ALL_PROXY")),
    ];
    for (scope, value) in specs {
        let Some(value) = value else { continue };
        let value = value.trim();
        let text = if value.contains("://") {
            value.to_owned()
        } else {
            format!("http://{value}")
        };
        match Proxy::new(scope, text.as_str()) {
            Ok(mut proxy) => {
                proxy.no_proxy = no_proxy.clone();
                proxies.push(proxy);
            }
            Err(err) => log::warn!("ignoring the proxy from the environment: {err}"),
        }
    }
    proxies
}

/// The proxy route for `url`: the first proxy that applies.
pub(crate) fn route_for(proxies: &[Proxy], url: &Url) -> Option<Route> {
    proxies.iter().find(|p| p.applies_to(url)).map(Proxy::route)
}

/// Hosts that bypass proxies: `NO_PROXY`'s syntax.
///
/// Comma- or space-separated entries: `*` (everything), a host name (`example.com` also matches
/// `www.example.com`; a leading `.` or `*.` is allowed), an IP address, or a CIDR range
/// (`10.0.0.0/8`, `::1/128`). A `:port` suffix on an entry is ignored.
#[derive(Debug, Clone, Default)]
pub struct NoProxy {
    all: bool,
    domains: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
}

impl NoProxy {
    /// Parses a `NO_PROXY` value.
    pub fn from_string(list: &str) -> NoProxy {
        let mut no_proxy = NoProxy::default();
        for entry in list.split([',', ' ']).map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                no_proxy.all = true;
                continue;
            }
            if let Some((addr, bits)) = entry.split_once('/') {
                if let (Ok(ip), Ok(bits)) = (addr.parse::<IpAddr>(), bits.parse::<u8>()) {
                    no_proxy.nets.push((ip, bits));
                }
                continue;
            }
            let bare = entry.trim_start_matches('[');
            if let Some((ip, _)) = bare.split_once(']') {
                if let Ok(ip) = ip.parse::<IpAddr>() {
                    no_proxy.nets.push((ip, 128));
                }
                continue;
            }
            if let Ok(ip) = entry.parse::<IpAddr>() {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                no_proxy.nets.push((ip, bits));
                continue;
            }
            let host = entry.rsplit_once(':').map_or(entry, |(h, _)| h);
            let host = host.trim_start_matches("*.").trim_start_matches('.');
            no_proxy.domains.push(host.to_ascii_lowercase());
        }
        no_proxy
    }

    /// Whether `host` (a name or an IP literal, without brackets) bypasses the proxy.
    pub fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.nets.iter().any(|&(net, bits)| in_net(ip, net, bits));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().any(|d| {
            host == *d
                || (host.len() > d.len()
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.')
        })
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let bits = u32::from(bits.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let bits = u32::from(bits.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matches_domains_ips_and_ranges() {
        let np = NoProxy::from_string("localhost, .example.com,10.0.0.0/8 ::1,192.168.1.5:8080");
        assert!(np.matches("localhost"));
        assert!(np.matches("example.com"));
        assert!(np.matches("www.example.com"));
        assert!(!np.matches("badexample.com"));
        assert!(np.matches("10.1.2.3"));
        assert!(!np.matches("11.1.2.3"));
        assert!(np.matches("::1"));
        assert!(!np.matches("192.168.1.5"));
        assert!(NoProxy::from_string("*").matches("anything"));
    }

    #[test]
    fn env_lowercase_wins_and_httpoxy_is_ignored() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let proxies = from_vars(vars(&[
            ("http_proxy", "lower:1"),
            ("HTTP_PROXY", "http://upper:2"),
            ("NO_PROXY", "internal"),
        ]));
        assert_eq!(proxies.len(), 1);
        assert_eq!(proxies[0].url.as_str(), "http://lower:1/");
        let plain = Url::parse("http://example.org/").unwrap();
        let internal = Url::parse("http://internal/").unwrap();
        let tls = Url::parse("https://example.org/").unwrap();
        assert!(route_for(&proxies, &plain).is_some());
        assert!(route_for(&proxies, &internal).is_none());
        assert!(route_for(&proxies, &tls).is_none());

        let cgi = from_vars(vars(&[
            ("HTTP_PROXY", "http://evil:2"),
            ("REQUEST_METHOD", "GET"),
        ]));
        assert!(cgi.is_empty());
    }
}
