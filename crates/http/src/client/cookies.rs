//! The client's cookie jar: `cookie_store` (RFC 6265's storage model and matching) with Mozilla's
//! public-suffix list, behind a size limit.
//!
//! Parsing, domain and path matching, `Secure`/`HttpOnly`, `Max-Age`/`Expires` (clamped, so no
//! value overflows the clock) are cookie_store's. What is added here is what a client talking to
//! hostile servers needs and cookie_store leaves to its user: the public-suffix list itself
//! (feature `public-suffix`, on by default: a copy of the list is compiled in and parsed once per
//! process) and limits on how much a server can make the jar hold.

use std::fmt;
use std::sync::Mutex;

use cookie_store::{Cookie, CookieDomain, CookieStore};
use http::HeaderValue;
use url::Url;

/// The public-suffix list compiled into the crate: Mozilla's `public_suffix_list.dat` as Debian's
/// `publicsuffix` package ships it (version 20230209.2326). MPL-2.0, see its header.
#[cfg(feature = "public-suffix")]
const PUBLIC_SUFFIX_LIST: &str = include_str!("public_suffix_list.dat");

#[cfg(feature = "public-suffix")]
fn public_suffix_list() -> publicsuffix::List {
    static LIST: std::sync::OnceLock<publicsuffix::List> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        PUBLIC_SUFFIX_LIST
            .parse()
            .expect("the compiled-in public-suffix list parses")
    })
    .clone()
}

/// A cookie store shared by a [`Client`](super::Client) (`ClientBuilder::cookie_store(true)`
/// or [`ClientBuilder::cookie_jar`](super::ClientBuilder::cookie_jar)): `Set-Cookie` from every
/// response (redirects included) is stored, and matching cookies are sent with every request.
///
/// # Caveats
///
/// * A `Domain` attribute that is a public suffix (`com`, `co.uk`, `github.io`) is rejected,
///   unless it names the request's host itself (the cookie is then host-only), as browsers do.
///   Without the `public-suffix` feature only single-label domains (`Domain=com`) are rejected.
/// * The jar is bounded: [`Jar::MAX_PER_DOMAIN`] (50), [`Jar::MAX_COOKIES`] (3000),
///   [`Jar::MAX_COOKIE_SIZE`] (4096 bytes).
///   Eviction takes the oldest first, in the order each cookie's domain and path were first
///   stored.
/// * As in browsers, `http://localhost` and loopback addresses count as secure origins: cookies
///   marked `Secure` are sent to them over plain HTTP.
/// * Cookies live as long as the jar; none is saved to disk.
pub struct Jar {
    store: Mutex<CookieStore>,
}

impl Default for Jar {
    fn default() -> Jar {
        Jar::new()
    }
}

impl fmt::Debug for Jar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jar").field("cookies", &self.len()).finish()
    }
}

impl Jar {
    /// The most cookies kept for one domain (RFC 6265 §6.1's minimum; browsers keep 50 to 180).
    /// Storing one more evicts the domain's oldest.
    pub const MAX_PER_DOMAIN: usize = 50;

    /// The most cookies kept in one jar (RFC 6265 §6.1's minimum). Storing one more drops the
    /// expired cookies, then the oldest.
    pub const MAX_COOKIES: usize = 3000;

    /// The longest cookie stored, name and value together (browsers' 4096 bytes); a longer one
    /// is ignored.
    pub const MAX_COOKIE_SIZE: usize = 4096;

    /// An empty jar.
    pub fn new() -> Jar {
        #[cfg(feature = "public-suffix")]
        let store = CookieStore::new_with_public_suffix(Some(public_suffix_list()));
        #[cfg(not(feature = "public-suffix"))]
        let store = CookieStore::new();
        Jar {
            store: Mutex::new(store),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CookieStore> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a cookie as if `url` had answered with `Set-Cookie: <set_cookie>`. Invalid ones,
    /// those for another domain or a public suffix, and those over [`Jar::MAX_COOKIE_SIZE`] are
    /// ignored.
    pub fn add_cookie_str(&self, set_cookie: &str, url: &Url) {
        let Ok(cookie) = Cookie::parse(set_cookie, url) else {
            return;
        };
        if cookie.name().len() + cookie.value().len() > Jar::MAX_COOKIE_SIZE {
            return;
        }
        if let CookieDomain::Suffix(domain) = &cookie.domain {
            let host = super::into_url::host(url);
            if !domain.contains('.') && !domain.eq_ignore_ascii_case(host) {
                return;
            }
        }
        let domain = String::from(&cookie.domain);
        let mut store = self.lock();
        if store.insert(cookie.into_owned(), url).is_ok() {
            enforce_limits(&mut store, &domain);
        }
    }

    /// The `Cookie` header value for a request to `url`, if any cookie matches: longer paths
    /// first, as RFC 6265 recommends, then in the order they were stored.
    pub fn cookies(&self, url: &Url) -> Option<HeaderValue> {
        let store = self.lock();
        let mut matching = store.matches(url);
        if matching.is_empty() {
            return None;
        }
        matching.sort_by_key(|c| std::cmp::Reverse(String::from(&c.path).len()));
        let mut header = String::new();
        for cookie in matching {
            if !header.is_empty() {
                header.push_str("; ");
            }
            header.push_str(cookie.name());
            header.push('=');
            header.push_str(cookie.value());
        }
        HeaderValue::try_from(header).ok()
    }

    /// How many unexpired cookies are stored.
    pub fn len(&self) -> usize {
        self.lock().iter_unexpired().count()
    }

    /// Whether no unexpired cookie is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every cookie.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// Where a cookie is in the store: domain, path, name.
type CookieKey = (String, String, String);

fn key(cookie: &Cookie<'_>) -> CookieKey {
    (
        String::from(&cookie.domain),
        String::from(&cookie.path),
        cookie.name().to_owned(),
    )
}

/// After a cookie for `domain` was stored: evicts the domain's oldest cookies beyond
/// [`Jar::MAX_PER_DOMAIN`], then, beyond [`Jar::MAX_COOKIES`], the expired ones and the oldest.
fn enforce_limits(store: &mut CookieStore, domain: &str) {
    let in_domain: Vec<CookieKey> = store
        .iter_any()
        .filter(|c| c.domain.as_cow().as_deref() == Some(domain))
        .map(key)
        .collect();
    for (domain, path, name) in in_domain
        .iter()
        .take(in_domain.len().saturating_sub(Jar::MAX_PER_DOMAIN))
    {
        store.remove(domain, path, name);
    }
    if store.iter_any().count() <= Jar::MAX_COOKIES {
        return;
    }
    let expired: Vec<CookieKey> = store
        .iter_any()
        .filter(|c| c.is_expired())
        .map(key)
        .collect();
    for (domain, path, name) in &expired {
        store.remove(domain, path, name);
    }
    let all: Vec<CookieKey> = store.iter_any().map(key).collect();
    for (domain, path, name) in all.iter().take(all.len().saturating_sub(Jar::MAX_COOKIES)) {
        store.remove(domain, path, name);
    }
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

    #[test]
    fn huge_max_age_is_clamped_not_a_panic() {
        let jar = Jar::new();
        let site = url("http://h/");
        jar.add_cookie_str("a=b; Max-Age=9223372036854775807", &site);
        jar.add_cookie_str("c=d; Max-Age=18446744073709551616", &site);
        jar.add_cookie_str("e=f; Expires=Fri, 31 Dec 99999 23:59:59 GMT", &site);
        assert_eq!(jar.cookies(&site).unwrap(), "a=b; c=d; e=f");
    }

    #[test]
    fn public_suffix_domains_are_rejected() {
        let jar = Jar::new();
        jar.add_cookie_str("a=1; Domain=com", &url("http://www.example.com/"));
        jar.add_cookie_str("b=1; Domain=.com", &url("http://www.example.com/"));
        #[cfg(feature = "public-suffix")]
        jar.add_cookie_str("c=1; Domain=co.uk", &url("http://www.example.co.uk/"));
        assert!(jar.is_empty(), "{jar:?}");
        assert!(jar.cookies(&url("http://other.com/")).is_none());
        jar.add_cookie_str(
            "d=1; Domain=example.co.uk",
            &url("http://www.example.co.uk/"),
        );
        assert_eq!(jar.cookies(&url("http://x.example.co.uk/")).unwrap(), "d=1");
    }

    #[test]
    fn jar_is_bounded_per_domain_and_in_total() {
        let jar = Jar::new();
        let site = url("http://a.test/");
        for i in 0..Jar::MAX_PER_DOMAIN + 10 {
            jar.add_cookie_str(&format!("c{i}=v"), &site);
        }
        assert_eq!(jar.len(), Jar::MAX_PER_DOMAIN);
        let sent = jar.cookies(&site).unwrap();
        let sent = sent.to_str().unwrap();
        assert!(
            !sent.contains("c0=") && sent.contains("c59=v"),
            "oldest evicted: {sent}"
        );

        for host in 0..Jar::MAX_COOKIES / 10 + 5 {
            let site = url(&format!("http://h{host}.test/"));
            for i in 0..10 {
                jar.add_cookie_str(&format!("c{i}=v"), &site);
            }
        }
        assert_eq!(jar.len(), Jar::MAX_COOKIES);
        assert!(
            jar.cookies(&url("http://a.test/")).is_none(),
            "oldest domain evicted"
        );

        let big = "x".repeat(Jar::MAX_COOKIE_SIZE);
        jar.add_cookie_str(&format!("big={big}"), &url("http://big.test/"));
        assert!(jar.cookies(&url("http://big.test/")).is_none());
    }
}
