//! Message heads: incremental parsing with httparse into `http` types, and serialisation.
//!
//! Parsing is stateless: the caller keeps the bytes it has read and calls again with more until
//! the head is [`Parsed::Complete`]. httparse re-scans from the start each time, which costs
//! little next to a read and keeps the caller's buffer the only state. The limits are checked on
//! partial input too, so a peer that never ends its head is stopped at the limit, not at memory
//! exhaustion.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

use super::{Limits, ProtoError};

/// Header slots kept on the stack (uninitialised, so their number costs nothing: the default
/// limit of 100 fits); more than this (when the limit allows it) go to the heap.
const STACK_HEADERS: usize = 128;

/// Room for the method, spaces and version around the target on a request line.
const REQUEST_LINE_OVERHEAD: usize = 64;

/// The outcome of feeding bytes to a head parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The head is not complete yet: read more and call again with all the bytes.
    Partial,
    /// The head, and how many bytes of the input it took (the body or the next message follows).
    Complete(T, usize),
}

impl<T> Parsed<T> {
    /// The parsed value and its length, if complete.
    pub fn complete(self) -> Option<(T, usize)> {
        match self {
            Parsed::Partial => None,
            Parsed::Complete(value, len) => Some((value, len)),
        }
    }

    /// Whether the head is complete.
    pub fn is_complete(&self) -> bool {
        matches!(self, Parsed::Complete(..))
    }
}

fn head_error(err: httparse::Error, buf: &[u8]) -> ProtoError {
    match err {
        httparse::Error::TooManyHeaders => ProtoError::TooManyHeaders,
        // `HTTP/2.0` is a version we do not speak; `FTP/1.1` is no HTTP at all.
        httparse::Error::Version => {
            let line = buf
                .split(|&b| b == b'\n')
                .find(|l| !l.is_empty() && l != b"\r");
            if line.is_some_and(|l| l.windows(5).any(|w| w == b"HTTP/")) {
                ProtoError::UnsupportedVersion
            } else {
                ProtoError::InvalidHead("invalid HTTP version")
            }
        }
        httparse::Error::HeaderName => ProtoError::InvalidHead("invalid header name"),
        httparse::Error::HeaderValue => ProtoError::InvalidHead("invalid header value"),
        httparse::Error::NewLine => ProtoError::InvalidHead("invalid line ending"),
        httparse::Error::Status => ProtoError::InvalidHead("invalid status line"),
        httparse::Error::Token => ProtoError::InvalidHead("invalid token"),
    }
}

fn version(v: Option<u8>) -> Result<Version, ProtoError> {
    match v {
        Some(0) => Ok(Version::HTTP_10),
        Some(1) => Ok(Version::HTTP_11),
        _ => Err(ProtoError::UnsupportedVersion),
    }
}

/// Appends the parsed `headers` to `map`. `head` is the input they were parsed from: one copy of
/// it backs every value (one allocation per head rather than one per field, as in hyper).
pub(crate) fn header_map(
    headers: &[httparse::Header<'_>],
    head: &[u8],
    map: &mut HeaderMap,
) -> Result<(), ProtoError> {
    map.reserve(headers.len());
    let shared = Bytes::copy_from_slice(head);
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| ProtoError::InvalidHead("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(share(&shared, head, h.value))
            .map_err(|_| ProtoError::InvalidHead("invalid header value"))?;
        map.append(name, value);
    }
    Ok(())
}

/// `part` (a slice of `head`) as a slice of `shared` (a copy of `head`), without copying.
fn share(shared: &Bytes, head: &[u8], part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if !part.is_empty() && end <= head.len() => shared.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

/// Whether the bytes so far already break the head limits although the head is incomplete.
fn check_partial(buf: &[u8], limits: &Limits, request: bool) -> Result<(), ProtoError> {
    if request {
        let start = buf.iter().position(|&b| b != b'\r' && b != b'\n');
        let line = start.map(|s| &buf[s..]).unwrap_or(&[]);
        let line_len = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
        if line_len > limits.max_uri_len.saturating_add(REQUEST_LINE_OVERHEAD) {
            return Err(ProtoError::UriTooLong);
        }
    }
    if buf.len() > limits.max_header_bytes {
        return Err(ProtoError::HeadersTooLarge);
    }
    Ok(())
}

/// Parses a request head from the start of `buf` (empty lines before it are skipped, as RFC 9112
/// allows). The request's body is `()`; frame it with
/// [`request_framing`](super::request_framing).
///
/// Errors: [`ProtoError::HeadersTooLarge`], [`ProtoError::TooManyHeaders`],
/// [`ProtoError::UriTooLong`] (also before the request line is complete),
/// [`ProtoError::UnsupportedVersion`], [`ProtoError::InvalidUri`], [`ProtoError::InvalidHead`].
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed<Request<()>>, ProtoError> {
    with_header_slots(limits, |headers| parse_request_into(buf, limits, headers))
}

fn parse_request_into<'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Parsed<Request<()>>, ProtoError> {
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, headers)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            check_partial(buf, limits, true)?;
            return Ok(Parsed::Partial);
        }
        Err(err) => {
            // An over-long target may also be an invalid one; the limit is the better answer.
            check_partial(buf, limits, true)?;
            return Err(head_error(err, buf));
        }
    };
    let path = req.path.unwrap_or("");
    if path.len() > limits.max_uri_len {
        return Err(ProtoError::UriTooLong);
    }
    if len > limits.max_header_bytes {
        return Err(ProtoError::HeadersTooLarge);
    }
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| ProtoError::InvalidHead("invalid method"))?;
    let uri = Uri::try_from(path).map_err(|_| ProtoError::InvalidUri)?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version(req.version)?;
    header_map(req.headers, &buf[..len], request.headers_mut())?;
    Ok(Parsed::Complete(request, len))
}

/// Parses a response head from the start of `buf`. Interim (1xx) responses are returned like any
/// other; a client skips them with [`is_interim`](super::is_interim) and parses again after
/// them. The reason phrase is not kept (`StatusCode::canonical_reason` has the standard one).
///
/// Tolerates what real servers send: extra spaces after header names and in the status line,
/// and header lines httparse cannot parse (they are dropped).
pub fn parse_response(buf: &[u8], limits: &Limits) -> Result<Parsed<Response<()>>, ProtoError> {
    with_header_slots(limits, |headers| parse_response_into(buf, limits, headers))
}

/// Runs `parse` with `limits.max_headers` header slots: on the stack up to [`STACK_HEADERS`],
/// on the heap beyond.
fn with_header_slots<'b, R>(
    limits: &Limits,
    parse: impl FnOnce(&mut [MaybeUninit<httparse::Header<'b>>]) -> R,
) -> R {
    let slots = limits.max_headers.max(1);
    if slots <= STACK_HEADERS {
        let mut stack = [MaybeUninit::<httparse::Header<'b>>::uninit(); STACK_HEADERS];
        parse(&mut stack[..slots])
    } else {
        parse(&mut vec![MaybeUninit::uninit(); slots])
    }
}

fn parse_response_into<'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Parsed<Response<()>>, ProtoError> {
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .allow_spaces_after_header_name_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_responses(true)
        .parse_response_with_uninit_headers(&mut res, buf, headers);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            check_partial(buf, limits, false)?;
            return Ok(Parsed::Partial);
        }
        Err(err) => return Err(head_error(err, buf)),
    };
    if len > limits.max_header_bytes {
        return Err(ProtoError::HeadersTooLarge);
    }
    let status = StatusCode::from_u16(res.code.unwrap_or(0))
        .map_err(|_| ProtoError::InvalidHead("invalid status code"))?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version(res.version)?;
    header_map(res.headers, &buf[..len], response.headers_mut())?;
    Ok(Parsed::Complete(response, len))
}

fn version_str(version: Version) -> &'static [u8] {
    if version == Version::HTTP_10 {
        b"HTTP/1.0"
    } else {
        b"HTTP/1.1"
    }
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The origin-form request target of `uri`: its path and query, `/` when it has none.
pub fn request_target(uri: &Uri) -> &str {
    match uri.path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => pq.as_str(),
        _ => "/",
    }
}

/// Appends a request head to `out`: `METHOD target VERSION`, the headers, the empty line.
/// `target` is origin-form (`/path?q`, see [`request_target`]), absolute-form for a proxy, or
/// authority-form for CONNECT. Versions other than HTTP/1.0 are written as HTTP/1.1. The caller
/// writes the framing headers (Host, Content-Length or Transfer-Encoding) it wants.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    version: Version,
    headers: &HeaderMap,
) {
    out.reserve(64 + target.len() + 32 * headers.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.push(b' ');
    out.extend_from_slice(version_str(version));
    out.extend_from_slice(b"\r\n");
    write_headers(out, headers);
    out.extend_from_slice(b"\r\n");
}

/// Appends a response head to `out`: the status line with the canonical reason phrase, the
/// headers, the empty line.
pub fn write_response_head(
    out: &mut Vec<u8>,
    version: Version,
    status: StatusCode,
    headers: &HeaderMap,
) {
    out.reserve(64 + 32 * headers.len());
    out.extend_from_slice(version_str(version));
    out.push(b' ');
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(out, headers);
    out.extend_from_slice(b"\r\n");
}
