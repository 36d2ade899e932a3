//! A small cookie jar (RFC 6265's storage model, without a public-suffix list).
//!
//! Enough for sessions and redirects that set cookies: domain and host-only cookies, paths,
//! `Secure`, `Max-Age` and `Expires`. Without a public-suffix list a site could set a cookie for
//! a whole registry domain (`Domain=co.uk`); a crawler or API client talking to known hosts does
//! not need that protection, a browser would.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use url::Url;

#[derive(Debug, Clone)]
struct Cookie {
    name: String,
    value: String,
    domain: String,
    host_only: bool,
    path: String,
    secure: bool,
    expires: Option<SystemTime>,
}

impl Cookie {
    fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }

    fn matches(&self, url: &Url, host: &str) -> bool {
        let domain_ok = if self.host_only {
            host == self.domain
        } else {
            domain_match(host, &self.domain)
        };
        domain_ok && path_match(url.path(), &self.path) && (!self.secure || url.scheme() == "https")
    }
}

fn domain_match(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host.parse::<std::net::IpAddr>().is_err())
}

fn path_match(path: &str, cookie_path: &str) -> bool {
    path == cookie_path
        || (path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// RFC 6265 §5.1.4: the directory of the request path.
fn default_path(url: &Url) -> String {
    let path = url.path();
    match path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => path[..i].to_owned(),
    }
}

fn lower_host(url: &Url) -> String {
    super::into_url::host(url).to_ascii_lowercase()
}

/// A cookie store shared by a [`Client`](super::Client) (`ClientBuilder::cookie_store(true)`
/// or [`ClientBuilder::cookie_jar`](super::ClientBuilder::cookie_jar)): `Set-Cookie` from every
/// response (redirects included) is stored, and matching cookies are sent with every request.
#[derive(Default)]
pub struct Jar {
    cookies: Mutex<Vec<Cookie>>,
}

impl fmt::Debug for Jar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jar").field("cookies", &self.len()).finish()
    }
}

impl Jar {
    /// An empty jar.
    pub fn new() -> Jar {
        Jar::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Cookie>> {
        self.cookies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a cookie as if `url` had answered with `Set-Cookie: <set_cookie>`. Invalid ones,
    /// and those for another domain, are ignored.
    pub fn add_cookie_str(&self, set_cookie: &str, url: &Url) {
        let Some(cookie) = parse(set_cookie, url) else {
            return;
        };
        let now = SystemTime::now();
        let mut cookies = self.lock();
        cookies.retain(|c| {
            let same = c.name == cookie.name && c.domain == cookie.domain && c.path == cookie.path;
            !same && !c.expired(now)
        });
        if !cookie.expired(now) {
            cookies.push(cookie);
        }
    }

    /// The `Cookie` header value for a request to `url`, if any cookie matches: longer paths
    /// first, as RFC 6265 recommends.
    pub fn cookies(&self, url: &Url) -> Option<HeaderValue> {
        let host = lower_host(url);
        let now = SystemTime::now();
        let mut matching: Vec<(usize, String)> = self
            .lock()
            .iter()
            .filter(|c| !c.expired(now) && c.matches(url, &host))
            .map(|c| (c.path.len(), format!("{}={}", c.name, c.value)))
            .collect();
        if matching.is_empty() {
            return None;
        }
        matching.sort_by_key(|m| std::cmp::Reverse(m.0));
        let header = matching
            .into_iter()
            .map(|(_, pair)| pair)
            .collect::<Vec<_>>()
            .join("; ");
        HeaderValue::try_from(header).ok()
    }

    /// How many cookies are stored (expired ones included until the next store).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the jar is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every cookie.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

fn parse(set_cookie: &str, url: &Url) -> Option<Cookie> {
    let mut parts = set_cookie.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let (name, value) = (name.trim(), value.trim().trim_matches('"'));
    if name.is_empty() {
        return None;
    }
    let host = lower_host(url);
    let mut cookie = Cookie {
        name: name.to_owned(),
        value: value.to_owned(),
        domain: host.clone(),
        host_only: true,
        path: default_path(url),
        secure: false,
        expires: None,
    };
    let mut max_age = None;
    for attr in parts {
        let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
        let (key, val) = (key.trim(), val.trim());
        if key.eq_ignore_ascii_case("domain") {
            let domain = val.trim_start_matches('.').to_ascii_lowercase();
            if domain.is_empty() {
                continue;
            }
            if !domain_match(&host, &domain) {
                return None;
            }
            cookie.domain = domain;
            cookie.host_only = false;
        } else if key.eq_ignore_ascii_case("path") {
            if val.starts_with('/') {
                cookie.path = val.to_owned();
            }
        } else if key.eq_ignore_ascii_case("secure") {
            cookie.secure = true;
        } else if key.eq_ignore_ascii_case("max-age") {
            max_age = val.parse::<i64>().ok();
        } else if key.eq_ignore_ascii_case("expires") {
            if let Ok(at) = httpdate::parse_http_date(val) {
                cookie.expires = Some(at);
            }
        }
    }
    if let Some(secs) = max_age {
        // Max-Age wins over Expires; zero or negative deletes.
        cookie.expires = Some(if secs <= 0 {
            SystemTime::UNIX_EPOCH
        } else {
            SystemTime::now() + Duration::from_secs(secs as u64)
        });
    }
    Some(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn jar_matches_domain_path_and_secure() {
        let jar = Jar::new();
        let site = url("http://www.example.com/app/login");
        jar.add_cookie_str("session=abc; Path=/app", &site);
        jar.add_cookie_str("wide=1; Domain=example.com; Path=/", &site);
        jar.add_cookie_str("tls=1; Secure", &site);
        jar.add_cookie_str("other=1; Domain=other.org", &site);
        assert_eq!(jar.len(), 3);
        let sent = jar.cookies(&url("http://www.example.com/app/x")).unwrap();
        assert_eq!(sent, "session=abc; wide=1");
        let sub = jar.cookies(&url("http://api.example.com/")).unwrap();
        assert_eq!(sub, "wide=1");
        let secure = jar.cookies(&url("https://www.example.com/app/z")).unwrap();
        assert_eq!(secure, "session=abc; tls=1; wide=1");
        assert!(jar.cookies(&url("http://example.org/")).is_none());
    }

    #[test]
    fn jar_max_age_zero_deletes_and_replaces() {
        let jar = Jar::new();
        let site = url("http://h/");
        jar.add_cookie_str("a=1", &site);
        jar.add_cookie_str("a=2", &site);
        assert_eq!(jar.cookies(&site).unwrap(), "a=2");
        jar.add_cookie_str("a=x; Max-Age=0", &site);
        assert!(jar.cookies(&site).is_none());
        jar.add_cookie_str("b=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT", &site);
        assert!(jar.is_empty());
    }
}
