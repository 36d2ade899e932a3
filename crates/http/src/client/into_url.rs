//! `IntoUrl` and the URL facts the client needs: origin, `Host` header, request target.
//!
//! The client only speaks `http` and `https`, and a URL's user info becomes an `Authorization`
//! header and is then removed, so that no password is ever written into an error message, a log
//! line or a redirect chain.

use std::cell::RefCell;

use url::{Position, Url};

use super::error::{Error, Result};

/// Something that converts to a URL the client can request: `&str`, `String`, [`Url`].
pub trait IntoUrl: sealed::Sealed {
    /// Parses and checks the URL (scheme `http` or `https`, a host).
    fn into_url(self) -> Result<Url>;

    /// Parses the URL, any scheme (a proxy's).
    #[doc(hidden)]
    fn into_any_url(self) -> Result<Url>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for &str {}
    impl Sealed for String {}
    impl Sealed for &String {}
    impl Sealed for url::Url {}
    impl Sealed for &url::Url {}
}

impl IntoUrl for &str {
    fn into_url(self) -> Result<Url> {
        check(self.into_any_url()?)
    }

    fn into_any_url(self) -> Result<Url> {
        parse(self).map_err(|err| Error::Url {
            url: self.to_owned(),
            reason: err.to_string(),
        })
    }
}

impl IntoUrl for String {
    fn into_url(self) -> Result<Url> {
        self.as_str().into_url()
    }

    fn into_any_url(self) -> Result<Url> {
        self.as_str().into_any_url()
    }
}

impl IntoUrl for &String {
    fn into_url(self) -> Result<Url> {
        self.as_str().into_url()
    }

    fn into_any_url(self) -> Result<Url> {
        self.as_str().into_any_url()
    }
}

impl IntoUrl for Url {
    fn into_url(self) -> Result<Url> {
        check(self)
    }

    fn into_any_url(self) -> Result<Url> {
        Ok(self)
    }
}

impl IntoUrl for &Url {
    fn into_url(self) -> Result<Url> {
        check(self.clone())
    }

    fn into_any_url(self) -> Result<Url> {
        Ok(self.clone())
    }
}

/// A proxy's URL: `http`, `socks5` or `socks5h` with a host (a SOCKS5 port defaults to 1080).
pub(crate) fn parse_proxy_url(url: impl IntoUrl) -> Result<Url> {
    let mut url = url.into_any_url()?;
    let reason = if !matches!(url.scheme(), "http" | "socks5" | "socks5h") {
        "only http://, socks5:// and socks5h:// proxies are supported"
    } else if !matches!(url.host_str(), Some(host) if !host.is_empty()) {
        "the URL has no host"
    } else {
        if url.port().is_none() && url.scheme() != "http" {
            let _ = url.set_port(Some(1080));
        }
        return Ok(url);
    };
    Err(Error::Url {
        url: without_credentials(&url).to_string(),
        reason: reason.into(),
    })
}

/// Origins (`scheme://authority`) parsed last on this thread, most recent first, each with its
/// URL truncated to `/`.
const ORIGINS: usize = 4;

const SPACES: &str = "                                                                ";

struct OriginCache {
    /// `(origin as written, its URL with path "/")`, most recent first.
    entries: Vec<(Box<str>, Url)>,
    /// The reference handed to `join`, padded (see [`parse`]).
    scratch: String,
}

thread_local! {
    static ORIGIN_CACHE: RefCell<OriginCache> = const {
        RefCell::new(OriginCache {
            entries: Vec::new(),
            scratch: String::new(),
        })
    };
}

/// `Url::parse(input)`, with the origin's parse reused from an earlier URL of the same origin.
///
/// Most of `Url::parse`'s work is the authority (host parsing and IDNA processing, IPv4
/// re-serialisation); a client fetching many URLs of one site parses the same authority each
/// time. When `input` is `http(s)://authority/path…` and the same `http(s)://authority` was
/// parsed before on this thread, the path (with query and fragment) is joined to that origin
/// instead: the same result as a full parse (`tests::cached_origins_parse_like_url`), because
/// the authority holds only characters that end nowhere but at the `/`, and the rest is a
/// path-absolute reference that `join` parses with the same path, query and fragment rules.
pub(crate) fn parse(input: &str) -> std::result::Result<Url, url::ParseError> {
    let Some(at) = origin_end(input) else {
        return Url::parse(input);
    };
    let (origin, rest) = input.split_at(at);
    let joined = ORIGIN_CACHE.try_with(|cache| {
        let cache = &mut *cache.borrow_mut();
        let entries = &mut cache.entries;
        let hit = entries.iter().position(|(o, _)| **o == *origin)?;
        if hit > 0 {
            let entry = entries.remove(hit);
            entries.insert(0, entry);
        }
        let base = &entries[0].1;
        // The parser sizes the new URL's string by the length of the text it is given, then
        // appends the base's `scheme://authority` and the path: trailing spaces (which it trims,
        // as a full parse trims them) make that room up front instead of two reallocations.
        let scratch = &mut cache.scratch;
        scratch.clear();
        scratch.push_str(rest);
        let mut room = base[..Position::BeforePath].len();
        while room > 0 {
            let n = room.min(SPACES.len());
            scratch.push_str(&SPACES[..n]);
            room -= n;
        }
        let joined = base.join(scratch);
        if scratch.capacity() > 4096 {
            *scratch = String::new();
        }
        Some(joined)
    });
    if let Ok(Some(joined)) = joined {
        return joined;
    }
    let url = Url::parse(input)?;
    let mut base = url.clone();
    base.set_path("/");
    base.set_query(None);
    base.set_fragment(None);
    let _ = ORIGIN_CACHE.try_with(|cache| {
        let entries = &mut cache.borrow_mut().entries;
        entries.truncate(ORIGINS - 1);
        entries.insert(0, (origin.into(), base));
    });
    Ok(url)
}

/// Where the origin of `input` ends when it is `http://` or `https://`, an authority of plain
/// characters (letters, digits, `.-_:[]`: a host name, an IP literal, a port; no user info,
/// no percent-encoding), then a `/` that does not start `//` or `/\`, and no tab or newline in
/// the rest (the parser removes those, which could make a `//` that a full parse would read as
/// part of the path but a join as a new authority).
fn origin_end(input: &str) -> Option<usize> {
    let bytes = input.as_bytes();
    let after_scheme = if bytes.starts_with(b"http://") {
        7
    } else if bytes.starts_with(b"https://") {
        8
    } else {
        return None;
    };
    let authority = bytes[after_scheme..]
        .iter()
        .position(|&b| !PLAIN_AUTHORITY[usize::from(b)])?;
    let end = after_scheme + authority;
    let rest = &bytes[end..];
    // Without an early exit, so that it vectorises (URLs are short, and rarely have these).
    let removed = rest
        .iter()
        .fold(false, |seen, &b| seen | matches!(b, b'\t' | b'\n' | b'\r'));
    let plain =
        authority > 0 && rest[0] == b'/' && !matches!(rest.get(1), Some(b'/' | b'\\')) && !removed;
    plain.then_some(end)
}

/// The bytes of a plain authority for [`origin_end`]: ASCII letters and digits, `.-_:[]`.
const PLAIN_AUTHORITY: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':' | b'[' | b']');
        b += 1;
    }
    table
};

fn check(url: Url) -> Result<Url> {
    let reason = if !matches!(url.scheme(), "http" | "https") {
        "the scheme is not http or https"
    } else if !matches!(url.host_str(), Some(host) if !host.is_empty()) {
        "the URL has no host"
    } else {
        return Ok(url);
    };
    Err(Error::Url {
        url: without_credentials(&url).to_string(),
        reason: reason.into(),
    })
}

/// A copy without user name and password.
pub(crate) fn without_credentials(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

/// Takes the user info out of `url`: `(user, password)`, percent-decoded.
pub(crate) fn take_credentials(url: &mut Url) -> Option<(String, Option<String>)> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(url.username());
    let pass = url.password().map(decode);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some((user, pass))
}

/// The port, the scheme's default when the URL names none.
pub(crate) fn port(url: &Url) -> u16 {
    url.port_or_known_default().unwrap_or(80)
}

/// The host as a name to connect to and verify: brackets removed from IPv6 literals.
pub(crate) fn host(url: &Url) -> &str {
    let host = url.host_str().unwrap_or("");
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The value of the `Host` header: the host, and the port when it is not the default.
pub(crate) fn host_header(url: &Url) -> &str {
    // The serialization holds exactly `host[:port]` there (a default port is never stored).
    &url[Position::BeforeHost..Position::AfterPort]
}

/// The origin-form request target: path and query.
pub(crate) fn origin_form(url: &Url) -> &str {
    &url[Position::BeforePath..Position::AfterQuery]
}

/// The absolute-form request target sent to a plain proxy: the URL without its fragment.
pub(crate) fn absolute_form(url: &Url) -> &str {
    &url[..Position::AfterQuery]
}

/// Whether two URLs share scheme, host and port (RFC 6454 origin).
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && port(a) == port(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_origins_parse_like_url() {
        let origins = [
            "http://127.0.0.1:8080",
            "http://example.com",
            "https://Example.COM:443",
            "http://example.com:80",
            "http://[::1]:9000",
            "http://[0:0::1]",
            "http://0x7f.1",
            "http://b\u{fc}cher.example",
            "http://xn--bcher-kva.example",
            "http://host_name.example:",
            "http://a..b",
            "https://h:65535",
            "http://h:65536",
            "http://[::1",
            "http://%41.example",
            "http://user:pw@host",
        ];
        let rests = [
            "/",
            "/page/1.html",
            "/a/../b/./c",
            "/%2e%2e/x",
            "/a b?c d#e f",
            "/\\x",
            "//evil/x",
            "/\\evil/x",
            "/\t/evil",
            "/x\n/y",
            "/\u{e9}t\u{e9}?q=\u{e9}#\u{e9}",
            "/x?a=1&b=%zz",
            "/x#frag#more",
            "/x ",
            "/x\u{1}",
            "/:@!$&'()*+,;=",
            "/a\\b/../c",
            "?q",
            "#f",
            "",
        ];
        for origin in origins {
            for rest in rests {
                let input = format!("{origin}{rest}");
                let want = Url::parse(&input);
                // The first parse may fill the cache, the second may use it.
                for round in 0..2 {
                    let got = parse(&input);
                    assert_eq!(got, want, "{input:?} (round {round})");
                    if let (Ok(got), Ok(want)) = (&got, &want) {
                        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{input:?}");
                        assert_eq!(host_header(got), host_header(want), "{input:?}");
                        assert_eq!(origin_form(got), origin_form(want), "{input:?}");
                        assert_eq!(got.port(), want.port(), "{input:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn origin_cache_is_used_and_bounded() {
        let _ = parse("http://cache-test.example/a");
        ORIGIN_CACHE.with(|c| assert_eq!(&*c.borrow().entries[0].0, "http://cache-test.example"));
        for i in 0..10 {
            let _ = parse(&format!("http://other{i}.example/"));
        }
        ORIGIN_CACHE.with(|c| assert_eq!(c.borrow().entries.len(), ORIGINS));
        assert_eq!(origin_end("http://h/x"), Some(8));
        assert_eq!(origin_end("https://h:1/"), Some(11));
        assert_eq!(origin_end("http://h//x"), None);
        assert_eq!(origin_end("http://h?x"), None);
        assert_eq!(origin_end("http://h"), None);
        assert_eq!(origin_end("ftp://h/x"), None);
        assert_eq!(origin_end("http:///x"), None);
        assert_eq!(origin_end("http://u@h/x"), None);
    }
}
