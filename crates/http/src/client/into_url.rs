//! `IntoUrl` and the URL facts the client needs: origin, `Host` header, request target.
//!
//! The client only speaks `http` and `https`, and a URL's user info becomes an `Authorization`
//! header and is then removed, so that no password is ever written into an error message, a log
//! line or a redirect chain.

use url::{Position, Url};

use super::error::{Error, Result};

/// Something that converts to a URL the client can request: `&str`, `String`, [`Url`].
pub trait IntoUrl: sealed::Sealed {
    /// Parses and checks the URL (scheme `http` or `https`, a host).
    fn into_url(self) -> Result<Url>;
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
        match Url::parse(self) {
            Ok(url) => check(url),
            Err(err) => Err(Error::Url {
                url: self.to_owned(),
                reason: err.to_string(),
            }),
        }
    }
}

impl IntoUrl for String {
    fn into_url(self) -> Result<Url> {
        self.as_str().into_url()
    }
}

impl IntoUrl for &String {
    fn into_url(self) -> Result<Url> {
        self.as_str().into_url()
    }
}

impl IntoUrl for Url {
    fn into_url(self) -> Result<Url> {
        check(self)
    }
}

impl IntoUrl for &Url {
    fn into_url(self) -> Result<Url> {
        check(self.clone())
    }
}

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
