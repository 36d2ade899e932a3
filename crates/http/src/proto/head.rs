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

use super::framing::{Fields, Known};
use super::{Limits, ProtoError};

/// Header slots tried on the stack (most heads have fewer fields); a head with more is parsed
/// again with `Limits::max_headers` slots on the heap.
const STACK_HEADERS: usize = 24;

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

/// `buf` with its request line's version rewritten to `HTTP/1.1` when it is a later HTTP/1.x
/// (httparse knows only 1.0 and 1.1): RFC 9112 §2.3 has a server answer a higher minor version
/// as the highest it supports, so `HTTP/1.2` is read as 1.1, not refused with 505.
fn later_minor_version_as_11(buf: &[u8]) -> Option<Vec<u8>> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let line_end = buf[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |n| start + n);
    let line_end = if line_end > start && buf[line_end - 1] == b'\r' {
        line_end - 1
    } else {
        line_end
    };
    let line = &buf[start..line_end];
    let tail = line.len().checked_sub(b" HTTP/1.x".len())?;
    match &line[tail..] {
        [b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor]
            if (b'2'..=b'9').contains(minor) =>
        {
            let mut rewritten = buf.to_vec();
            rewritten[start + line.len() - 1] = b'1';
            Some(rewritten)
        }
        _ => None,
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
    let shared = Bytes::copy_from_slice(head);
    fill_map(
        map,
        headers.len(),
        headers
            .iter()
            .map(|h| (h.name.as_bytes(), share(&shared, head, h.value))),
    )
}

/// Appends `count` fields (name, value) to `map`: the one way parsed fields become a
/// `HeaderMap`, whether at once ([`header_map`]) or on demand ([`RawResponse::header_map`]).
fn fill_map<'n>(
    map: &mut HeaderMap,
    count: usize,
    fields: impl Iterator<Item = (&'n [u8], Bytes)>,
) -> Result<(), ProtoError> {
    map.reserve(count);
    for (name, value) in fields {
        let name = HeaderName::from_bytes(name).map_err(|_| invalid_name())?;
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| ProtoError::InvalidHead("invalid header value"))?;
        map.append(name, value);
    }
    Ok(())
}

fn invalid_name() -> ProtoError {
    ProtoError::InvalidHead("invalid header name")
}

/// `part` (a slice of `head`) as a slice of `shared` (a copy of `head`), without copying.
fn share(shared: &Bytes, head: &[u8], part: &[u8]) -> Bytes {
    match range_in(head, part) {
        Some([start, end]) if !part.is_empty() => shared.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

/// Where `part` lies in `head`, as `[start, end]` offsets, if it is a slice of it.
fn range_in(head: &[u8], part: &[u8]) -> Option<[usize; 2]> {
    let start = (part.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
    let end = start.checked_add(part.len())?;
    (end <= head.len()).then_some([start, end])
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
    let parsed = parse_request_head(
        buf,
        limits,
        &mut HeaderMap::new(),
        &mut HeadCache::default(),
    )?;
    Ok(match parsed {
        Parsed::Complete(head, len) => Parsed::Complete(head.request, len),
        Parsed::Partial => Parsed::Partial,
    })
}

/// A parsed request head, with which of the fields a server checks and frames a request by it
/// carries: found while its map is built, so that the checks look up only the fields that are
/// there (most requests carry only Host of them) and read Host without a lookup.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) request: Request<()>,
    /// Bit `1 << k` for each [`Known`] name `k` present, and the `*_BIT`s below.
    present: u16,
    /// Host fields, counted up to 2.
    hosts: u8,
    /// Whether the first Host value is `host[:port]` ([`valid_host`](super::valid_host)).
    host_valid: bool,
}

const HOST_BIT: u16 = 1 << 8;
const EXPECT_BIT: u16 = 1 << 9;
const UPGRADE_BIT: u16 = 1 << 10;
/// The target is in origin-form (`/path?query`).
const ORIGIN_FORM_BIT: u16 = 1 << 11;

impl RequestHead {
    /// How many Host fields the request has (2 meaning "more than one").
    pub(crate) fn hosts(&self) -> u8 {
        self.hosts
    }

    /// Whether the (first) Host value is valid.
    pub(crate) fn host_valid(&self) -> bool {
        self.host_valid
    }

    /// Whether the target is in origin-form (`/path?query`): no scheme, no authority, a path
    /// starting with `/`.
    pub(crate) fn origin_form(&self) -> bool {
        self.present & ORIGIN_FORM_BIT != 0
    }

    /// Whether the request has an `Upgrade` field.
    pub(crate) fn has_upgrade(&self) -> bool {
        self.present & UPGRADE_BIT != 0
    }

    /// Whether the request has a Content-Length or Transfer-Encoding field: without either it
    /// has no body, and its framing needs no look at its fields.
    pub(crate) fn has_framing_fields(&self) -> bool {
        const FRAMING: u16 =
            (1 << Known::ContentLength as u8) | (1 << Known::TransferEncoding as u8);
        self.present & FRAMING != 0
    }

    /// The `Expect` field's value, if any.
    pub(crate) fn expect(&self) -> Option<&[u8]> {
        if self.present & EXPECT_BIT == 0 {
            return None;
        }
        self.request
            .headers()
            .get(http::header::EXPECT)
            .map(HeaderValue::as_bytes)
    }
}

impl Fields for RequestHead {
    fn values(&self, name: Known) -> impl Iterator<Item = &[u8]> {
        let present = self.present & (1 << name as u8) != 0;
        present
            .then(|| self.request.headers().get_all(name.name()))
            .into_iter()
            .flatten()
            .map(HeaderValue::as_bytes)
    }

    fn contains(&self, name: Known) -> bool {
        self.present & (1 << name as u8) != 0
    }
}

/// [`parse_request`] into `map` (empty; its allocation is reused, and it stays empty unless the
/// head is complete), noting the fields [`RequestHead`] reports.
pub(crate) fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
    map: &mut HeaderMap,
    cache: &mut HeadCache,
) -> Result<Parsed<RequestHead>, ProtoError> {
    debug_assert!(map.is_empty());
    with_header_slots(limits, |headers| {
        parse_request_into(buf, limits, headers, map, cache)
    })
}

/// What a connection's request heads repeat: the target and the Host value, which a request
/// with the same bytes as the one before it (nearly every request on a keep-alive connection)
/// shares instead of parsing and checking them again; when no other field needs a value, the
/// head is not copied at all (~500 instructions in all).
#[derive(Debug, Default)]
pub(crate) struct HeadCache {
    target: Repeated<Uri>,
    /// The Host value and whether it is valid.
    host: Repeated<(HeaderValue, bool)>,
}

/// The longest target or Host value a [`HeadCache`] follows.
const REPEAT_MAX: usize = 64;

/// A part of a request head that may repeat from one request to the next: the last bytes seen
/// (inline: following a part that changes costs no allocation) and, once the same bytes came
/// twice in a row, the value made from them. The value is an owned copy, not a slice of the head
/// arena, whose 4 KiB chunk it would keep allocated for the connection's lifetime.
#[derive(Debug)]
struct Repeated<T> {
    last: [u8; REPEAT_MAX],
    /// How many bytes of `last` are the last part seen; `None`: none, or one too long.
    len: Option<u8>,
    value: Option<T>,
}

impl<T> Default for Repeated<T> {
    fn default() -> Self {
        Repeated {
            last: [0; REPEAT_MAX],
            len: None,
            value: None,
        }
    }
}

impl<T: Clone> Repeated<T> {
    fn is_last(&self, bytes: &[u8]) -> bool {
        self.len
            .is_some_and(|len| self.last[..usize::from(len)] == *bytes)
    }

    /// The value kept for `bytes`, if they are the last part seen and came twice.
    fn get(&self, bytes: &[u8]) -> Option<T> {
        self.value.as_ref().filter(|_| self.is_last(bytes)).cloned()
    }

    /// Records `bytes` as the last part seen; whether they repeat the one before (a value made
    /// from them is then worth keeping with [`keep`](Self::keep)).
    fn seen(&mut self, bytes: &[u8]) -> bool {
        if self.is_last(bytes) {
            return true;
        }
        self.value = None;
        self.len = None;
        if let Ok(len) = u8::try_from(bytes.len()) {
            if bytes.len() <= REPEAT_MAX {
                self.last[..bytes.len()].copy_from_slice(bytes);
                self.len = Some(len);
            }
        }
        false
    }

    fn keep(&mut self, value: T) {
        self.value = Some(value);
    }
}

fn parse_request_into<'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
    map: &mut HeaderMap,
    cache: &mut HeadCache,
) -> Result<Parsed<RequestHead>, ProtoError> {
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
            if err == httparse::Error::Version {
                if let Some(as_11) = later_minor_version_as_11(buf) {
                    return parse_request_head(&as_11, limits, map, cache);
                }
            }
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
    let method = match req.method.unwrap_or("").as_bytes() {
        b"GET" => Method::GET,
        other => {
            Method::from_bytes(other).map_err(|_| ProtoError::InvalidHead("invalid method"))?
        }
    };
    let head = &buf[..len];
    // The copy of the head that field values and the target share, made when one needs it.
    let mut shared: Option<Bytes> = None;
    let uri = match cache.target.get(path.as_bytes()) {
        Some(uri) => uri,
        None => {
            let shared = shared.get_or_insert_with(|| head_bytes(head));
            let uri = Uri::from_maybe_shared(share(shared, head, path.as_bytes()))
                .map_err(|_| ProtoError::InvalidUri)?;
            if cache.target.seen(path.as_bytes()) {
                if let Ok(owned) = Uri::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes())) {
                    cache.target.keep(owned);
                }
            }
            uri
        }
    };
    let version = version(req.version)?;
    // `Uri` reads a target starting with `/` as a path (and query) alone.
    let mut present = if path.starts_with('/') {
        ORIGIN_FORM_BIT
    } else {
        0
    };
    let mut hosts = 0u8;
    let mut host_valid = false;
    // A reused map has room for a few fields already.
    if req.headers.len() > map.capacity() - map.len() {
        map.reserve(req.headers.len());
    }
    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        // Host, in nearly every request, by its constant: `HeaderName::from_bytes` matches the
        // bytes against every standard name (~200 instructions).
        let mut first_host = false;
        let header_name = match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                first_host = hosts == 0;
                hosts = hosts.saturating_add(1).min(2);
                present |= HOST_BIT;
                if first_host {
                    if let Some((value, valid)) = cache.host.get(field.value) {
                        host_valid = valid;
                        map.append(http::header::HOST, value);
                        continue;
                    }
                    host_valid = super::valid_host(field.value);
                }
                Some(http::header::HOST)
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                present |= EXPECT_BIT;
                None
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => {
                present |= UPGRADE_BIT;
                None
            }
            _ => {
                present |= 1 << known_of(name);
                None
            }
        };
        let appended = header_name
            .map_or_else(
                || HeaderName::from_bytes(name).map_err(|_| invalid_name()),
                Ok,
            )
            .and_then(|header_name| {
                let shared = shared.get_or_insert_with(|| head_bytes(head));
                let value = HeaderValue::from_maybe_shared(share(shared, head, field.value))
                    .map_err(|_| ProtoError::InvalidHead("invalid header value"))?;
                map.append(header_name, value);
                Ok(())
            });
        if first_host && appended.is_ok() && cache.host.seen(field.value) {
            if let Ok(owned) = HeaderValue::from_bytes(field.value) {
                cache.host.keep((owned, host_valid));
            }
        }
        if let Err(err) = appended {
            map.clear();
            return Err(err);
        }
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    // A swap, not an assignment: the request's empty map goes back to the caller (no drop).
    std::mem::swap(request.headers_mut(), map);
    Ok(Parsed::Complete(
        RequestHead {
            request,
            present,
            hosts,
            host_valid,
        },
        len,
    ))
}

/// A copy of a request head that its field values and target share: carved from a per-thread
/// arena (as hyper slices its read buffer), so that a head costs no allocation once the heads
/// before it are dropped.
///
/// # Caveats
///
/// A request (or a field value) kept long after its exchange keeps its arena chunk (4 KiB)
/// allocated, not only its own bytes.
fn head_bytes(head: &[u8]) -> Bytes {
    const ARENA: usize = 4096;
    if head.len() > ARENA / 4 {
        return Bytes::copy_from_slice(head);
    }
    thread_local! {
        static ARENA_BUF: std::cell::RefCell<bytes::BytesMut> =
            std::cell::RefCell::new(bytes::BytesMut::new());
    }
    ARENA_BUF.with(|arena| {
        let mut arena = arena.borrow_mut();
        if arena.capacity() < head.len() {
            // Reclaims the chunk in place when every head carved from it is gone.
            arena.reserve(ARENA);
        }
        arena.extend_from_slice(head);
        arena.split().freeze()
    })
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

/// Runs `parse` with `limits.max_headers` header slots: first [`STACK_HEADERS`] on the stack,
/// and only when a head has more fields than that, again with all of them on the heap. A
/// connection's greenlet stack keeps the pages its deepest call touched, so a few hundred bytes
/// of slots instead of 4 KiB keep every idle connection a page smaller.
fn with_header_slots<'b, T>(
    limits: &Limits,
    mut parse: impl FnMut(&mut [MaybeUninit<httparse::Header<'b>>]) -> Result<T, ProtoError>,
) -> Result<T, ProtoError> {
    let slots = limits.max_headers.max(1);
    let mut stack = [MaybeUninit::<httparse::Header<'b>>::uninit(); STACK_HEADERS];
    match parse(&mut stack[..slots.min(STACK_HEADERS)]) {
        Err(ProtoError::TooManyHeaders) if slots > STACK_HEADERS => {
            parse(&mut vec![MaybeUninit::uninit(); slots])
        }
        result => result,
    }
}

fn parse_response_into<'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Parsed<Response<()>>, ProtoError> {
    parse_response_head(buf, limits, headers, |status, version, fields, head| {
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        header_map(fields, head, response.headers_mut())?;
        Ok(response)
    })
}

/// The response head parser both [`parse_response`] and [`parse_response_raw`] use: httparse
/// with the tolerant response settings and the limits, then `finish(status, version, fields,
/// head bytes)` makes the result.
fn parse_response_head<'b, R>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
    finish: impl FnOnce(StatusCode, Version, &[httparse::Header<'b>], &'b [u8]) -> Result<R, ProtoError>,
) -> Result<Parsed<R>, ProtoError> {
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
    let version = version(res.version)?;
    let response = finish(status, version, res.headers, &buf[..len])?;
    Ok(Parsed::Complete(response, len))
}

/// A response head whose fields stay as the received bytes until a `HeaderMap` is asked for:
/// the client reads its framing fields straight from them, and builds the map (about 600
/// instructions per field with the `http` crate's name and value types) only for a caller that
/// looks at the headers.
///
/// Only the fields of a [`Known`] name are remembered (where their values lie in the head, the
/// first few of them without an allocation); [`header_map`](Self::header_map) parses the kept
/// head again for the rest, so the common response (status and body read, headers never looked
/// at) costs no allocation beyond the copy of the head.
///
/// [`header_map`](Self::header_map) gives exactly the map [`parse_response`] would have, and the
/// parse fails where [`parse_response`] fails (`tests::raw_response_heads_match_parse_response`):
/// httparse admits only token characters in names and only the bytes `HeaderValue` allows in
/// values, so of the map's checks only the name length can fail, and it is checked here.
#[derive(Debug, Clone)]
pub(crate) struct RawResponse {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    /// The head as received (status line, fields, empty line).
    head: Bytes,
    /// How many fields the head has (the header slots to parse it again with).
    field_count: usize,
    /// The fields of a [`Known`] name in order: here while they fit (`known_len` of them)…
    known: [KnownField; INLINE_KNOWN],
    known_len: u8,
    /// … or all of them here when they do not.
    spilled: Vec<KnownField>,
    /// Bit `k` set: a field of the [`Known`] name `k` is present.
    present: u8,
}

/// Known-name fields a [`RawResponse`] keeps without allocating: a typical response has two to
/// four (Content-Type, Content-Length, Connection, Content-Encoding).
const INLINE_KNOWN: usize = 4;

/// A field of a [`RawResponse`] with a [`Known`] name: which one (`Known as u8`, so that a
/// lookup compares one byte) and its value as a range of the head (`u32`: a small struct is
/// cheaper to move between a greenlet's stack frames; a head is far below 4 GiB).
#[derive(Debug, Clone, Copy, Default)]
struct KnownField {
    known: u8,
    value: [u32; 2],
}

fn known_of(name: &[u8]) -> u8 {
    // By length first: most fields (Date, Server, ETag, …) have no candidate at all.
    let candidates: &[Known] = match name.len() {
        8 => &[Known::Location],
        10 => &[Known::Connection, Known::SetCookie],
        12 => &[Known::ContentType],
        14 => &[Known::ContentLength],
        16 => &[Known::ContentEncoding],
        17 => &[Known::TransferEncoding],
        _ => &[],
    };
    // The known names are lowercase letters and `-`; a name's token characters equal one of
    // them ignoring ASCII case exactly when each byte with bit 5 set does (only a CR would turn
    // into `-`, and no token has one). Branch-free, so it vectorises.
    candidates
        .iter()
        .find(|k| {
            let known = k.lowercase().as_bytes();
            known.len() == name.len()
                && known
                    .iter()
                    .zip(name)
                    .fold(0u8, |diff, (&k, &n)| diff | (k ^ (n | 0x20)))
                    == 0
        })
        .map_or(0, |&k| k as u8)
}

/// The longest header name `HeaderName` takes.
const MAX_NAME_LEN: usize = (1 << 16) - 1;

/// [`parse_response`] keeping the fields as bytes: see [`RawResponse`].
pub(crate) fn parse_response_raw(
    buf: &[u8],
    limits: &Limits,
) -> Result<Parsed<RawResponse>, ProtoError> {
    with_header_slots(limits, |headers| {
        parse_response_head(buf, limits, headers, |status, version, parsed, head| {
            let mut raw = RawResponse {
                status,
                version,
                head: Bytes::new(),
                field_count: parsed.len(),
                known: [KnownField::default(); INLINE_KNOWN],
                known_len: 0,
                spilled: Vec::new(),
                present: 0,
            };
            for h in parsed {
                let name = h.name.as_bytes();
                if name.is_empty() || name.len() > MAX_NAME_LEN {
                    return Err(ProtoError::InvalidHead("invalid header name"));
                }
                let known = known_of(name);
                if known == 0 {
                    continue;
                }
                raw.present |= 1 << known;
                let [start, end] =
                    range_in(head, h.value).expect("httparse's value slices lie inside the head");
                let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(end)) else {
                    return Err(ProtoError::HeadersTooLarge);
                };
                let field = KnownField {
                    known,
                    value: [start, end],
                };
                match raw.known.get_mut(usize::from(raw.known_len)) {
                    Some(slot) if raw.spilled.is_empty() => {
                        *slot = field;
                        raw.known_len += 1;
                    }
                    _ => {
                        if raw.spilled.is_empty() {
                            raw.spilled.extend_from_slice(&raw.known);
                        }
                        raw.spilled.push(field);
                    }
                }
            }
            raw.head = Bytes::copy_from_slice(head);
            Ok(raw)
        })
    })
}

impl RawResponse {
    /// The reason phrase of the status line as the server sent it (empty when none).
    pub(crate) fn reason(&self) -> &[u8] {
        let line = self.head.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // `HTTP/1.1 SP+ status SP+ reason`: skip two words and the spaces after each.
        let mut rest = line;
        for _ in 0..2 {
            let word = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            rest = &rest[word..];
            let spaces = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
            rest = &rest[spaces..];
        }
        rest
    }

    fn known_fields(&self) -> &[KnownField] {
        if self.spilled.is_empty() {
            &self.known[..usize::from(self.known_len)]
        } else {
            &self.spilled
        }
    }

    /// The fields as the `HeaderMap` [`parse_response`] makes: the kept head parsed again (it
    /// parsed before, with as many fields), the values sharing its bytes.
    pub(crate) fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        let mut slots = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); self.field_count];
        let limits = Limits {
            max_header_bytes: usize::MAX,
            max_headers: self.field_count,
            ..Limits::default()
        };
        let head = &self.head;
        let parsed = parse_response_head(head, &limits, &mut slots, |_, _, fields, _| {
            fill_map(
                &mut map,
                fields.len(),
                fields
                    .iter()
                    .map(|h| (h.name.as_bytes(), share(head, head, h.value))),
            )
        });
        debug_assert!(
            matches!(parsed, Ok(Parsed::Complete(..))),
            "parsed before: {parsed:?}"
        );
        map
    }
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

impl Fields for RawResponse {
    fn values(&self, name: Known) -> impl Iterator<Item = &[u8]> {
        let known = name as u8;
        let fields = if self.present & (1 << known) != 0 {
            self.known_fields()
        } else {
            &[]
        };
        fields
            .iter()
            .filter(move |f| f.known == known)
            .map(|f| &self.head[f.value[0] as usize..f.value[1] as usize])
    }

    fn contains(&self, name: Known) -> bool {
        self.present & (1 << name as u8) != 0
    }
}
