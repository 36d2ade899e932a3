//! Which body follows a head, by RFC 9112 §6: the no-body statuses and methods, then
//! Transfer-Encoding, then Content-Length, then (responses only) the connection's end.
//!
//! Requests are held to the strict reading because a server that frames a request differently
//! from a proxy in front of it can be smuggled a second request: Transfer-Encoding together with
//! Content-Length, Transfer-Encoding in HTTP/1.0, and codings other than a lone `chunked` are
//! rejected. Responses get the tolerant reading a client needs for real servers.

use http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, EXPECT,
    LOCATION, SET_COOKIE, TRANSFER_ENCODING,
};
use http::{HeaderMap, Method, StatusCode, Version};

use super::ProtoError;

/// The header names the framing rules, and the client in every response, look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    ContentLength = 1,
    TransferEncoding,
    Connection,
    ContentEncoding,
    Location,
    SetCookie,
    ContentType,
}

impl Known {
    #[cfg(test)]
    pub(crate) const ALL: [Known; 7] = [
        Known::ContentLength,
        Known::TransferEncoding,
        Known::Connection,
        Known::ContentEncoding,
        Known::Location,
        Known::SetCookie,
        Known::ContentType,
    ];

    /// `self.name().as_str()`, without making the `HeaderName`.
    pub(crate) fn lowercase(self) -> &'static str {
        match self {
            Known::ContentLength => "content-length",
            Known::TransferEncoding => "transfer-encoding",
            Known::Connection => "connection",
            Known::ContentEncoding => "content-encoding",
            Known::Location => "location",
            Known::SetCookie => "set-cookie",
            Known::ContentType => "content-type",
        }
    }

    pub(crate) fn name(self) -> HeaderName {
        match self {
            Known::ContentLength => CONTENT_LENGTH,
            Known::TransferEncoding => TRANSFER_ENCODING,
            Known::Connection => CONNECTION,
            Known::ContentEncoding => CONTENT_ENCODING,
            Known::Location => LOCATION,
            Known::SetCookie => SET_COOKIE,
            Known::ContentType => CONTENT_TYPE,
        }
    }
}

/// Header fields as the framing rules read them: a `HeaderMap`, or a client's response head
/// still in its received bytes ([`RawResponse`](super::head::RawResponse)). The rules below are
/// written once over this.
pub(crate) trait Fields {
    /// Every value of the fields named `name`, in order.
    fn values(&self, name: Known) -> impl Iterator<Item = &[u8]>;

    /// Whether a field named `name` is present.
    fn contains(&self, name: Known) -> bool {
        self.values(name).next().is_some()
    }
}

impl Fields for HeaderMap {
    fn values(&self, name: Known) -> impl Iterator<Item = &[u8]> {
        self.get_all(name.name())
            .into_iter()
            .map(HeaderValue::as_bytes)
    }

    fn contains(&self, name: Known) -> bool {
        self.contains_key(name.name())
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes the connection (responses only); the connection cannot
    /// be reused.
    CloseDelimited,
}

impl Framing {
    /// Whether the body is known to have no bytes.
    pub fn is_empty(&self) -> bool {
        matches!(self, Framing::Empty | Framing::Length(0))
    }
}

/// The Content-Length of `headers`: `None` without one; an error when a value is not a plain
/// decimal number (no sign, no spaces inside, no overflow) or when several values (repeated
/// fields or a comma list) disagree. Identical repeats are accepted as RFC 9110 allows.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ProtoError> {
    content_length_in(headers)
}

pub(crate) fn content_length_in(headers: &impl Fields) -> Result<Option<u64>, ProtoError> {
    // The common case: one field of 1 to 19 digits (below u64::MAX, so no overflow check).
    let mut values = headers.values(Known::ContentLength);
    match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(only), None)
            if (1..=19).contains(&only.len()) && only.iter().all(u8::is_ascii_digit) =>
        {
            let n = only.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            return Ok(Some(n));
        }
        _ => {}
    }
    let mut found: Option<u64> = None;
    for value in headers.values(Known::ContentLength) {
        for part in value.split(|&b| b == b',') {
            let part = trim(part);
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(ProtoError::InvalidContentLength);
            }
            let mut n: u64 = 0;
            for &d in part {
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d - b'0')))
                    .ok_or(ProtoError::InvalidContentLength)?;
            }
            match found {
                Some(prev) if prev != n => return Err(ProtoError::ConflictingContentLength),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The transfer codings listed by every Transfer-Encoding field, in order, trimmed.
fn codings(headers: &impl Fields) -> impl Iterator<Item = &[u8]> {
    headers
        .values(Known::TransferEncoding)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim)
        .filter(|c| !c.is_empty())
}

/// Whether `headers` apply `chunked` as the final transfer coding.
pub fn is_chunked(headers: &HeaderMap) -> bool {
    is_chunked_in(headers)
}

fn is_chunked_in(headers: &impl Fields) -> bool {
    codings(headers)
        .last()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
}

/// The body framing of a request (RFC 9112 §6.3, strict): `chunked` as the only transfer coding,
/// else Content-Length, else no body. Errors: [`ProtoError::InvalidTransferEncoding`] for any
/// other coding, Transfer-Encoding in HTTP/1.0, or Transfer-Encoding with Content-Length;
/// [`ProtoError::InvalidContentLength`] and [`ProtoError::ConflictingContentLength`].
pub fn request_framing(version: Version, headers: &HeaderMap) -> Result<Framing, ProtoError> {
    request_framing_in(version, headers)
}

pub(crate) fn request_framing_in(
    version: Version,
    headers: &impl Fields,
) -> Result<Framing, ProtoError> {
    if headers.contains(Known::TransferEncoding) {
        let mut list = codings(headers);
        let only_chunked = matches!(
            (list.next(), list.next()),
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked")
        );
        if !only_chunked || version == Version::HTTP_10 || headers.contains(Known::ContentLength) {
            return Err(ProtoError::InvalidTransferEncoding);
        }
        return Ok(Framing::Chunked);
    }
    Ok(match content_length_in(headers)? {
        Some(n) => Framing::Length(n),
        None => Framing::Empty,
    })
}

/// The body framing of a response to a `request_method` request (RFC 9112 §6.3): none for HEAD,
/// 1xx, 204, 304 and a 2xx to CONNECT (whatever the headers say); then chunked when it is the
/// final coding (Transfer-Encoding wins over Content-Length: such a response must not be followed
/// by another on that connection, see [`reusable`]); other codings, and Transfer-Encoding in
/// HTTP/1.0, mean close-delimited; then Content-Length; then close-delimited.
pub fn response_framing(
    request_method: &Method,
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
) -> Result<Framing, ProtoError> {
    response_framing_in(request_method, status, version, headers)
}

pub(crate) fn response_framing_in(
    request_method: &Method,
    status: StatusCode,
    version: Version,
    headers: &impl Fields,
) -> Result<Framing, ProtoError> {
    if *request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || (*request_method == Method::CONNECT && status.is_success())
    {
        return Ok(Framing::Empty);
    }
    if headers.contains(Known::TransferEncoding) {
        if version != Version::HTTP_10 && is_chunked_in(headers) {
            return Ok(Framing::Chunked);
        }
        return Ok(Framing::CloseDelimited);
    }
    Ok(match content_length_in(headers)? {
        Some(n) => Framing::Length(n),
        None => Framing::CloseDelimited,
    })
}

/// Whether `headers` list `token` in a Connection field (case-insensitively).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_has_in(headers, token)
}

fn connection_has_in(headers: &impl Fields, token: &str) -> bool {
    headers
        .values(Known::Connection)
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether the sender of a message with these `version` and `headers` keeps the connection open
/// after it: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
pub fn keep_alive(version: Version, headers: &HeaderMap) -> bool {
    keep_alive_in(version, headers)
}

pub(crate) fn keep_alive_in(version: Version, headers: &impl Fields) -> bool {
    if !headers.contains(Known::Connection) {
        return version == Version::HTTP_11;
    }
    if version == Version::HTTP_11 {
        // Most servers say `Connection: keep-alive` on each response: one comparison, not a
        // split of the list.
        let mut values = headers.values(Known::Connection);
        if let (Some(only), None) = (values.next(), values.next()) {
            if only.eq_ignore_ascii_case(b"keep-alive") {
                return true;
            }
        }
    }
    if version == Version::HTTP_11 {
        !connection_has_in(headers, "close")
    } else if version == Version::HTTP_10 {
        connection_has_in(headers, "keep-alive")
    } else {
        false
    }
}

/// Whether a connection can carry another message after this response head and its framing:
/// keep-alive by [`keep_alive`], not close-delimited, and not framed by both Transfer-Encoding
/// and Content-Length (RFC 9112 §6.3 says to close after such a message).
pub fn reusable(version: Version, headers: &HeaderMap, framing: Framing) -> bool {
    reusable_in(version, headers, framing)
}

pub(crate) fn reusable_in(version: Version, headers: &impl Fields, framing: Framing) -> bool {
    keep_alive_in(version, headers)
        && framing != Framing::CloseDelimited
        && !(headers.contains(Known::TransferEncoding) && headers.contains(Known::ContentLength))
}

/// Whether a request asks for `100 Continue` before its body (`Expect: 100-continue` in
/// HTTP/1.1; HTTP/1.0 clients cannot understand a 1xx, RFC 9110 §10.1.1).
pub fn expects_continue(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Whether a response is interim: 1xx except `101 Switching Protocols`, which ends HTTP on the
/// connection. A client reads past interim responses to the final one.
pub fn is_interim(status: StatusCode) -> bool {
    status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS
}
