//! `ClientResponse` and its body: the framing decoder over the connection, then gzip/deflate.
//!
//! The body is never read ahead: `send()` returns after the head, and the body flows through
//! [`BodyReader`] as the caller reads. When the framing says the body is complete and both sides
//! keep the connection alive, the connection goes back to the pool at that moment; a response
//! dropped before its end closes its connection instead (reading an unknown rest to reuse it could
//! cost more than a new connection).

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use encoding_rs::Encoding;
use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::{HeaderMap, StatusCode, Version};
use url::Url;

use super::conn::{Conn, Deadlines};
use super::error::{Error, Result};
use super::pool::Pool;
use super::redirect::Hop;
use crate::proto::{BodyDecoder, Decoded, Fields, Known, ProtoError, RawResponse};

/// Bytes of a redirect's or an unread error's body drained to keep its connection.
pub(crate) const DRAIN_LIMIT: u64 = 64 * 1024;

/// The longest a drain waits for each read.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Reads at least this large skip the connection's buffer when a Content-Length body has nothing
/// buffered.
const DIRECT_READ: usize = 8 * 1024;

/// The body as it arrives on the connection, framing removed.
pub(crate) struct RawBody {
    conn: Option<Box<Conn>>,
    decoder: BodyDecoder,
    reusable: bool,
    pool: Option<Arc<Pool>>,
    url: Arc<Url>,
    /// Boxed: a body rarely fails, and the response's struct stays smaller to move.
    failed: Option<Box<(io::ErrorKind, String)>>,
    trailers: Option<Box<HeaderMap>>,
}

impl RawBody {
    pub(crate) fn new(
        conn: Box<Conn>,
        decoder: BodyDecoder,
        reusable: bool,
        pool: Arc<Pool>,
        url: Arc<Url>,
    ) -> RawBody {
        let mut body = RawBody {
            conn: Some(conn),
            decoder,
            reusable,
            pool: Some(pool),
            url,
            failed: None,
            trailers: None,
        };
        if body.decoder.is_done() {
            body.finish();
        }
        body
    }

    /// The body is complete: the connection goes back to the pool if it can.
    fn finish(&mut self) {
        self.trailers = self.decoder.take_trailers().map(Box::new);
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.take()) {
            if self.reusable && self.decoder.is_done() {
                pool.checkin(conn);
            }
        }
    }

    fn fail(&mut self, err: Error) -> io::Error {
        self.conn = None;
        let io = err.into_io();
        self.failed = Some(Box::new((io.kind(), io.to_string())));
        io
    }

    fn io_error(&mut self, err: io::Error) -> io::Error {
        let url = Url::clone(&self.url);
        let err = if err.kind() == io::ErrorKind::TimedOut {
            let kind = self
                .conn
                .as_ref()
                .map_or(super::TimeoutKind::Read, |conn| conn.timeout_kind());
            Error::Timeout {
                url,
                kind,
                during: "reading the body",
            }
        } else {
            Error::Body { url, source: err }
        };
        self.fail(err)
    }

    /// The connection ended: completes a close-delimited body, fails any other unfinished one.
    fn eof(&mut self) -> io::Result<usize> {
        let missing = self.decoder.remaining();
        match self.decoder.eof() {
            Ok(()) => {
                self.reusable = false;
                self.finish();
                Ok(0)
            }
            Err(ProtoError::UnexpectedEof) => {
                let message = format!(
                    "the connection closed before the body was complete ({} bytes received{})",
                    self.decoder.received(),
                    match missing {
                        Some(left) => format!(", {left} missing"),
                        None => String::new(),
                    }
                );
                let err = Error::Body {
                    url: Url::clone(&self.url),
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, message),
                };
                Err(self.fail(err))
            }
            Err(err) => Err(self.proto_error(err)),
        }
    }

    fn proto_error(&mut self, err: ProtoError) -> io::Error {
        let source = io::Error::from(err);
        let err = Error::Body {
            url: Url::clone(&self.url),
            source,
        };
        self.fail(err)
    }

    /// The whole body at once when it is a Content-Length body of `len` bytes, none of it read
    /// yet, and all of it already in the connection's buffer (a small page arrives with its
    /// head): one copy, and the connection goes back to the pool. `None` (nothing consumed)
    /// otherwise.
    fn take_buffered(&mut self, len: u64) -> Option<Vec<u8>> {
        if self.failed.is_some() || self.decoder.remaining() != Some(len) {
            return None;
        }
        let conn = self.conn.as_mut()?;
        let len = usize::try_from(len).ok()?;
        let input = conn.buffered().get(..len)?;
        let Ok((Decoded::Data(data), used)) = self.decoder.decode(input) else {
            return None;
        };
        debug_assert_eq!(
            (data.len(), used),
            (len, len),
            "a Length body passes through"
        );
        let body = data.to_vec();
        conn.consume(used);
        self.finish();
        Some(body)
    }

    /// Reads and discards the rest, up to `limit` bytes, each read waiting at most
    /// [`DRAIN_WAIT`]; whether the end was reached (and the connection kept). Draining only
    /// saves a new connection, so a server slow to send the rest (or never sending it) costs
    /// the connection, not the caller's time.
    pub(crate) fn drain(&mut self, limit: u64) -> bool {
        if self.conn.is_none() {
            // Already ended (or failed): what `read` would say, without zeroing a buffer. This
            // is the common case, a body read to its end.
            return self.failed.is_none();
        }
        self.drain_rest(limit)
    }

    /// [`drain`](Self::drain) of a body still on its connection. Out of line: its 8 KiB buffer
    /// would otherwise make every `drain` (most find the body ended) probe and touch two pages of
    /// the greenlet's stack.
    #[inline(never)]
    fn drain_rest(&mut self, limit: u64) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return self.failed.is_none();
        };
        let deadlines = conn.deadlines();
        conn.set_deadlines(Deadlines {
            read: Some(deadlines.read.map_or(DRAIN_WAIT, |r| r.min(DRAIN_WAIT))),
            total: deadlines.total,
        });
        let mut buf = [0u8; 8192];
        let mut total = 0u64;
        while total <= limit {
            match self.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => total += n as u64,
                Err(_) => return false,
            }
        }
        self.conn = None;
        false
    }
}

impl Read for RawBody {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(failed) = &self.failed {
            let (kind, message) = &**failed;
            return Err(io::Error::new(*kind, message.clone()));
        }
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Ok(0);
            };
            let buffered = conn.buffered();
            if !buffered.is_empty() {
                let input = &buffered[..buffered.len().min(out.len())];
                match self.decoder.decode(input) {
                    Ok((Decoded::Data(data), used)) => {
                        let n = data.len();
                        out[..n].copy_from_slice(data);
                        conn.consume(used);
                        if self.decoder.is_done() {
                            self.finish();
                        }
                        if n > 0 {
                            return Ok(n);
                        }
                    }
                    Ok((Decoded::NeedMore, used)) => conn.consume(used),
                    Ok((Decoded::End, used)) => {
                        conn.consume(used);
                        self.finish();
                        return Ok(0);
                    }
                    Err(err) => return Err(self.proto_error(err)),
                }
                continue;
            }
            if let Some(remaining) = self
                .decoder
                .remaining()
                .filter(|_| out.len() >= DIRECT_READ)
            {
                // A Content-Length body read straight into the caller's buffer, no copy.
                let want = out
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                match conn.read_direct(&mut out[..want]) {
                    Ok(0) => {}
                    Ok(n) => {
                        if let Err(err) = self.decoder.decode(&out[..n]) {
                            return Err(self.proto_error(err));
                        }
                        if self.decoder.is_done() {
                            self.finish();
                        }
                        return Ok(n);
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(self.io_error(err)),
                }
                return self.eof();
            }
            match conn.fill() {
                Ok(0) => return self.eof(),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(self.io_error(err)),
            }
        }
    }
}

/// One content coding the client undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    Gzip,
    Deflate,
    #[cfg(feature = "brotli")]
    Brotli,
    #[cfg(feature = "zstd")]
    Zstd,
}

/// The most content codings undone on one body; more is an unsupported coding.
pub(crate) const MAX_LAYERS: usize = 4;

/// Content codings in the order the server applied them (undone last to first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layers {
    list: [Layer; MAX_LAYERS],
    len: u8,
}

impl Layers {
    pub(crate) fn new() -> Layers {
        Layers {
            list: [Layer::Gzip; MAX_LAYERS],
            len: 0,
        }
    }

    /// Adds the next coding applied; `false` when there are already [`MAX_LAYERS`].
    pub(crate) fn push(&mut self, layer: Layer) -> bool {
        let len = usize::from(self.len);
        if len == MAX_LAYERS {
            return false;
        }
        self.list[len] = layer;
        self.len += 1;
        true
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn as_slice(&self) -> &[Layer] {
        &self.list[..usize::from(self.len)]
    }
}

/// What to do with the body's content codings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Coding {
    /// Return the bytes as they came (no coding, or the caller asked for its own).
    Identity,
    /// Undo these.
    Decode(Layers),
    /// A coding the client cannot undo (the message names it): reading the body fails, rather
    /// than return encoded bytes as if they were the content.
    Unsupported(Box<str>),
}

impl Coding {
    /// Whether the body is decoded (its Content-Encoding and Content-Length no longer apply).
    pub(crate) fn decodes(&self) -> bool {
        matches!(self, Coding::Decode(_))
    }
}

/// The brotli decoder's input buffer.
#[cfg(feature = "brotli")]
const BROTLI_BUFFER: usize = 8 * 1024;

/// The largest zstd window accepted: 8 MiB, RFC 9659's limit for the `zstd` content coding (a
/// frame asking for more is a decode error, not a large allocation).
#[cfg(feature = "zstd")]
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// The default [`decompressed_limit`](super::ClientBuilder::decompressed_limit): 256 MiB.
pub(crate) const DEFAULT_DECOMPRESSED_LIMIT: u64 = 256 * 1024 * 1024;

/// Bytes read ahead to sniff a format, then the rest of the reader.
struct Prefixed<R> {
    prefix: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(out.len());
            out[..n].copy_from_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(out)
    }
}

/// The decoders stacked over the raw body, outermost (the last coding applied) innermost here.
enum Stage {
    Raw(RawBody),
    Gzip(Box<GzDecoder<Prefixed<Stage>>>),
    Zlib(Box<ZlibDecoder<Prefixed<Stage>>>),
    Deflate(Box<DeflateDecoder<Prefixed<Stage>>>),
    #[cfg(feature = "brotli")]
    Brotli(Box<brotli_decompressor::Decompressor<Prefixed<Stage>>>),
    #[cfg(feature = "zstd")]
    Zstd(Box<zstd::stream::read::Decoder<'static, io::BufReader<Prefixed<Stage>>>>),
}

impl Stage {
    fn raw_mut(&mut self) -> &mut RawBody {
        match self {
            Stage::Raw(raw) => raw,
            Stage::Gzip(d) => d.get_mut().inner.raw_mut(),
            Stage::Zlib(d) => d.get_mut().inner.raw_mut(),
            Stage::Deflate(d) => d.get_mut().inner.raw_mut(),
            #[cfg(feature = "brotli")]
            Stage::Brotli(d) => d.get_mut().inner.raw_mut(),
            #[cfg(feature = "zstd")]
            Stage::Zstd(d) => d.get_mut().get_mut().inner.raw_mut(),
        }
    }

    /// Up to the first two bytes (fewer only at the end of the stream).
    fn read_prefix(&mut self) -> io::Result<Vec<u8>> {
        let mut prefix = vec![0u8; 2];
        let mut got = 0;
        while got < 2 {
            match self.read(&mut prefix[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        prefix.truncate(got);
        Ok(prefix)
    }

    /// This stage with `layer` undone over it; `prefix` is its first bytes, already read.
    fn wrap(self, layer: Layer, prefix: Vec<u8>) -> io::Result<Stage> {
        let zlib = prefix.len() == 2
            && prefix[0] & 0x0f == 8
            && (u16::from(prefix[0]) << 8 | u16::from(prefix[1])) % 31 == 0;
        let input = Prefixed {
            prefix,
            pos: 0,
            inner: self,
        };
        Ok(match layer {
            Layer::Gzip => Stage::Gzip(Box::new(GzDecoder::new(input))),
            // "deflate" is zlib by RFC 9110; some servers send a raw deflate stream: sniff.
            Layer::Deflate if zlib => Stage::Zlib(Box::new(ZlibDecoder::new(input))),
            Layer::Deflate => Stage::Deflate(Box::new(DeflateDecoder::new(input))),
            #[cfg(feature = "brotli")]
            Layer::Brotli => Stage::Brotli(Box::new(brotli_decompressor::Decompressor::new(
                input,
                BROTLI_BUFFER,
            ))),
            #[cfg(feature = "zstd")]
            Layer::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::new(input)?;
                decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Stage::Zstd(Box::new(decoder))
            }
        })
    }
}

impl Read for Stage {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Stage::Raw(raw) => raw.read(out),
            Stage::Gzip(d) => d.read(out),
            Stage::Zlib(d) => d.read(out),
            Stage::Deflate(d) => d.read(out),
            #[cfg(feature = "brotli")]
            Stage::Brotli(d) => d.read(out),
            #[cfg(feature = "zstd")]
            Stage::Zstd(d) => d.read(out),
        }
    }
}

enum Decoding {
    /// Waiting for the first bytes to choose the decoders (an empty body needs none).
    Pending(Layers, RawBody),
    Identity(RawBody),
    Decoders(Stage),
    Unsupported(Box<str>, RawBody),
    Done,
}

/// The response body as a streaming `Read`: framing removed and gzip/deflate decoded (every
/// layer of a stacked `Content-Encoding`). Returned by [`ClientResponse::into_reader`]; the body
/// limit does not apply, the decompressed-size limit does
/// ([`ClientBuilder::decompressed_limit`](super::ClientBuilder::decompressed_limit)).
///
/// Errors are `io::Error`s wrapping the client's [`Error`] (`err.get_ref()` downcasts to it):
/// a truncated body, a timeout, a corrupt gzip stream, a coding the client cannot undo.
pub struct BodyReader {
    decoding: Decoding,
    url: Arc<Url>,
    trailers: Option<Box<HeaderMap>>,
    /// Bytes produced by the decoders so far.
    decoded: u64,
    /// The most bytes the decoders may produce (`ClientBuilder::decompressed_limit`).
    decoded_limit: Option<u64>,
}

impl fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.decoding {
            Decoding::Pending(..) => "pending",
            Decoding::Identity(_) => "identity",
            Decoding::Decoders(_) => "decoding",
            Decoding::Unsupported(..) => "unsupported",
            Decoding::Done => "done",
        };
        f.debug_struct("BodyReader")
            .field("url", &self.url.as_str())
            .field("decoding", &state)
            .finish()
    }
}

impl BodyReader {
    pub(crate) fn new(raw: RawBody, coding: Coding, decoded_limit: Option<u64>) -> BodyReader {
        let url = raw.url.clone();
        let decoding = match coding {
            Coding::Identity => Decoding::Identity(raw),
            Coding::Decode(layers) => Decoding::Pending(layers, raw),
            Coding::Unsupported(name) => Decoding::Unsupported(name, raw),
        };
        BodyReader {
            decoding,
            url,
            trailers: None,
            decoded: 0,
            decoded_limit,
        }
    }

    /// The trailer fields of a chunked body, once the body has been read to its end.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_deref()
    }

    fn raw_mut(&mut self) -> Option<&mut RawBody> {
        match &mut self.decoding {
            Decoding::Pending(_, raw) | Decoding::Identity(raw) | Decoding::Unsupported(_, raw) => {
                Some(raw)
            }
            Decoding::Decoders(stage) => Some(stage.raw_mut()),
            Decoding::Done => None,
        }
    }

    /// Reads the rest of the body into nothing, up to `limit` bytes, so the connection can be
    /// reused; whether the end was reached.
    pub(crate) fn drain(&mut self, limit: u64) -> bool {
        let done = self.raw_mut().is_some_and(|raw| raw.drain(limit));
        self.end();
        done
    }

    /// The whole undecoded body of `len` bytes when it is already buffered (see
    /// [`RawBody::take_buffered`]); the reader has then ended.
    fn take_buffered(&mut self, len: u64) -> Option<Vec<u8>> {
        let Decoding::Identity(raw) = &mut self.decoding else {
            return None;
        };
        let body = raw.take_buffered(len)?;
        self.end();
        Some(body)
    }

    /// The decoded body ended: read the raw body to its framing end (a gzip stream can stop
    /// before the last chunk) so the connection returns to the pool, then keep the trailers.
    fn end(&mut self) {
        if let Some(raw) = self.raw_mut() {
            raw.drain(DRAIN_LIMIT);
            self.trailers = raw.trailers.take();
        }
        self.decoding = Decoding::Done;
    }

    /// Stacks the decoders, sniffing each layer's first bytes; a layer with no bytes at all is
    /// an empty body (a HEAD, 204, 304, or an empty 200 has no gzip header to read).
    fn start(&mut self, layers: Layers, raw: RawBody) -> io::Result<()> {
        let mut stage = Stage::Raw(raw);
        for &layer in layers.as_slice().iter().rev() {
            let prefix = match stage.read_prefix() {
                Ok(prefix) => prefix,
                Err(err) => {
                    self.decoding = Decoding::Decoders(stage);
                    return Err(err);
                }
            };
            if prefix.is_empty() {
                self.decoding = Decoding::Decoders(stage);
                self.end();
                return Ok(());
            }
            // A decoder that cannot start drops the body (its connection is not reused).
            stage = stage.wrap(layer, prefix)?;
        }
        self.decoding = Decoding::Decoders(stage);
        Ok(())
    }

    fn decode_error(&mut self, err: io::Error) -> io::Error {
        // Errors of the connection come wrapped in the client's Error: pass them on as they are.
        if err.get_ref().is_some_and(|e| e.is::<Error>()) {
            return err;
        }
        self.decoding = Decoding::Done;
        Error::Decode {
            url: Url::clone(&self.url),
            source: Box::new(err),
        }
        .into_io()
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if matches!(self.decoding, Decoding::Pending(..)) {
            let Decoding::Pending(layers, raw) =
                std::mem::replace(&mut self.decoding, Decoding::Done)
            else {
                unreachable!()
            };
            if let Err(err) = self.start(layers, raw) {
                return Err(self.decode_error(err));
            }
        }
        let result = match &mut self.decoding {
            Decoding::Pending(..) => unreachable!("started above"),
            Decoding::Identity(raw) => raw.read(out),
            Decoding::Decoders(stage) => {
                // Never produce more than one byte past the limit, however large `out` is.
                let room = self.decoded_limit.map_or(u64::MAX, |limit| {
                    limit.saturating_sub(self.decoded).saturating_add(1)
                });
                let len = out.len().min(usize::try_from(room).unwrap_or(usize::MAX));
                stage.read(&mut out[..len])
            }
            Decoding::Unsupported(message, _) => {
                return Err(Error::Decode {
                    url: Url::clone(&self.url),
                    source: message.to_string().into(),
                }
                .into_io())
            }
            Decoding::Done => return Ok(0),
        };
        match result {
            Ok(0) => {
                self.end();
                Ok(0)
            }
            Ok(n) if matches!(self.decoding, Decoding::Identity(_)) => Ok(n),
            Ok(n) => {
                self.decoded += n as u64;
                match self.decoded_limit {
                    Some(limit) if self.decoded > limit => {
                        // The rest is not read: the connection is closed, not drained.
                        self.decoding = Decoding::Done;
                        Err(Error::DecodedTooLarge {
                            url: Url::clone(&self.url),
                            limit,
                        }
                        .into_io())
                    }
                    _ => Ok(n),
                }
            }
            Err(err) if matches!(self.decoding, Decoding::Identity(_)) => Err(err),
            Err(err) => Err(self.decode_error(err)),
        }
    }
}

/// A response's header fields, kept as the received head until a `HeaderMap` is asked for
/// (most callers read only the status and the body; building the map costs about as much as
/// parsing the head).
pub(crate) struct Headers {
    raw: RawResponse,
    /// The body is decoded: the map leaves out Content-Encoding and Content-Length, which
    /// describe the encoded bytes.
    decoded: bool,
    /// Boxed: most responses never build it.
    map: OnceLock<Box<HeaderMap>>,
}

impl Headers {
    pub(crate) fn new(raw: RawResponse, decoded: bool) -> Headers {
        Headers {
            raw,
            decoded,
            map: OnceLock::new(),
        }
    }

    /// The `HeaderMap`, built on first use.
    pub(crate) fn map(&self) -> &HeaderMap {
        self.map.get_or_init(|| {
            let mut map = self.raw.header_map();
            if self.decoded {
                map.remove(CONTENT_ENCODING);
                map.remove(CONTENT_LENGTH);
            }
            Box::new(map)
        })
    }

    /// The `HeaderMap`, built unless it was.
    pub(crate) fn into_map(self) -> HeaderMap {
        self.map();
        self.map.into_inner().map(|map| *map).unwrap_or_default()
    }

    /// Whether the map leaves `name` out.
    fn hidden(&self, name: Known) -> bool {
        self.decoded && matches!(name, Known::ContentEncoding | Known::ContentLength)
    }

    /// The first value of `name` as text when it is visible ASCII (`HeaderValue::to_str`), read
    /// from the map if it was built, from the head otherwise.
    pub(crate) fn first_str(&self, name: Known) -> Option<&str> {
        if let Some(map) = self.map.get() {
            return map.get(name.name()).and_then(|v| v.to_str().ok());
        }
        if self.hidden(name) {
            return None;
        }
        self.raw.values(name).next().and_then(visible_ascii)
    }

    /// The Content-Length, as `crate::proto::content_length` reads it from the map.
    pub(crate) fn content_length(&self) -> Option<u64> {
        if let Some(map) = self.map.get() {
            return crate::proto::content_length(map).ok().flatten();
        }
        if self.decoded {
            return None;
        }
        crate::proto::content_length_in(&self.raw).ok().flatten()
    }
}

/// `bytes` as text when every byte is visible ASCII or a tab, as `HeaderValue::to_str` accepts.
pub(crate) fn visible_ascii(bytes: &[u8]) -> Option<&str> {
    if bytes.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// The redirects a response followed: [`ClientResponse::redirect_chain`] and
/// [`ClientResponse::history`].
#[derive(Debug)]
pub(crate) struct Redirects {
    pub(crate) urls: Vec<Url>,
    pub(crate) hops: Vec<Hop>,
}

/// An HTTP response whose head has arrived; the body is read by [`text`](Self::text),
/// [`bytes`](Self::bytes), [`json`](Self::json), [`copy_to`](Self::copy_to), or streamed through
/// [`into_reader`](Self::into_reader) or `Read`.
///
/// `Content-Encoding: gzip` and `deflate` bodies are decoded, every layer of a stacked coding
/// (`gzip, gzip`) in reverse order (unless the request set its own `Accept-Encoding`); the
/// `Content-Encoding` and `Content-Length` headers of a decoded body are removed, since they
/// describe the bytes on the wire. A coding the client cannot undo (`br`, `zstd`, more than four
/// layers) keeps its headers, and reading the body fails with an [`Error::Decode`] naming it
/// rather than return encoded bytes; a request that sets its own `Accept-Encoding` gets every
/// body as sent. `text`, `bytes` and `json` stop with an
/// error at the client's body limit (10 MB by default) rather than truncate.
///
/// ```
/// use std::io::Read;
/// # use green_http::server::{Body, Server};
/// # let server = Server::bind("127.0.0.1:0").unwrap()
/// #     .start(|_req| green_http::Response::builder()
/// #         .header("content-type", "application/json")
/// #         .body(Body::from(r#"{"id": 7}"#)).unwrap())
/// #     .unwrap();
/// # let url = format!("http://{}/item", server.local_addr());
/// let response = green_http::get(&url)?.error_for_status()?; // 4xx/5xx become errors
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.header("content-type"), Some("application/json"));
/// assert_eq!(response.url().path(), "/item"); // after redirects, if any
/// assert_eq!(response.text()?, r#"{"id": 7}"#);
///
/// // Or as the `http` crate's type, with the body as a `Read`:
/// let response: green_http::Response<_> = green_http::get(&url)?.into();
/// let mut body = String::new();
/// response.into_body().read_to_string(&mut body).unwrap();
/// assert_eq!(body, r#"{"id": 7}"#);
/// # Ok::<(), green_http::client::Error>(())
/// ```
pub struct ClientResponse {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: Headers,
    /// The redirects followed, boxed: most responses have none.
    pub(crate) redirects: Option<Box<Redirects>>,
    pub(crate) elapsed: std::time::Duration,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) body: BodyReader,
    pub(crate) limit: Option<u64>,
    /// The body's length when its framing is a Content-Length and it is not decoded: what
    /// [`content_length`](Self::content_length) would parse from the headers again.
    pub(crate) known_length: Option<u64>,
}

impl fmt::Debug for ClientResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientResponse")
            .field("url", &self.body.url.as_str())
            .field("status", &self.status)
            .field("version", &self.version)
            .field("headers", self.headers())
            .finish()
    }
}

impl ClientResponse {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The reason phrase the server sent (`"Not Found"`), or the standard one for the status
    /// when it sent none or one that is not visible ASCII; `""` for a status without one.
    pub fn reason(&self) -> &str {
        match visible_ascii(self.headers.raw.reason()) {
            Some(reason) if !reason.is_empty() => reason,
            _ => self.status.canonical_reason().unwrap_or(""),
        }
    }

    /// The time from sending the request (its first try) until the final response's head
    /// arrived, redirects and retries included, as requests' `elapsed`.
    pub fn elapsed(&self) -> std::time::Duration {
        self.elapsed
    }

    /// The HTTP version the server answered with.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The header fields.
    pub fn headers(&self) -> &HeaderMap {
        self.headers.map()
    }

    /// The first value of header `name` as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The final URL, after redirects.
    pub fn url(&self) -> &Url {
        &self.body.url
    }

    /// The URLs that answered with a redirect, in order (the first is the URL requested); empty
    /// when no redirect was followed.
    pub fn redirect_chain(&self) -> &[Url] {
        self.redirects.as_ref().map_or(&[], |r| &r.urls)
    }

    /// Each redirect followed, in order: its URL, status and headers (empty when none was).
    pub fn history(&self) -> &[Hop] {
        self.redirects.as_ref().map_or(&[], |r| &r.hops)
    }

    /// The server's address, when connected directly (not through a proxy).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The `Content-Length` the server sent, when the body is not decoded from gzip/deflate.
    pub fn content_length(&self) -> Option<u64> {
        if self.known_length.is_some() {
            return self.known_length;
        }
        self.headers.content_length()
    }

    /// The `Retry-After` header as a delay, when it is a number of seconds.
    pub(crate) fn retry_after(&self) -> Option<std::time::Duration> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs)
    }

    /// An [`Error::Status`] for a 4xx or 5xx status, the response otherwise.
    #[inline]
    pub fn error_for_status(self) -> Result<ClientResponse> {
        // Inlined: a successful response stays where the caller has it (no copy in and out).
        if !self.status.is_client_error() && !self.status.is_server_error() {
            return Ok(self);
        }
        match self.status_error() {
            Some(err) => Err(err),
            None => Ok(self),
        }
    }

    /// Like [`error_for_status`](Self::error_for_status), by reference.
    pub fn error_for_status_ref(&self) -> Result<&ClientResponse> {
        match self.status_error() {
            Some(err) => Err(err),
            None => Ok(self),
        }
    }

    #[cold]
    #[inline(never)]
    fn status_error(&self) -> Option<Error> {
        (self.status.is_client_error() || self.status.is_server_error()).then(|| Error::Status {
            url: Url::clone(&self.body.url),
            status: self.status,
        })
    }

    /// The body as text, decoded as a browser decodes it (WHATWG Encoding, through
    /// `encoding_rs`, as reqwest does): a byte-order mark (UTF-8, UTF-16LE/BE) wins, then the
    /// `Content-Type` charset (any WHATWG label: `windows-1252`, `shift_jis`, `gbk`, `koi8-r`,
    /// …), otherwise UTF-8; malformed sequences become U+FFFD.
    ///
    /// # Caveats
    ///
    /// As in browsers, the labels `iso-8859-1`, `latin1` and `us-ascii` mean windows-1252 (the
    /// bytes 0x80–0x9F are `€`, `‘`, `’`, `“`, `”`, … rather than control characters), and
    /// `utf-16` without a byte-order mark means little-endian.
    #[inline]
    pub fn text(mut self) -> Result<String> {
        self.read_text()
    }

    #[inline(never)]
    fn read_text(&mut self) -> Result<String> {
        let encoding = self
            .headers
            .first_str(Known::ContentType)
            .and_then(charset)
            .and_then(|label| Encoding::for_label(label.as_bytes()))
            .unwrap_or(encoding_rs::UTF_8);
        Ok(decode_text(encoding, self.read_bytes()?))
    }

    /// The body as text in `charset`, whatever the `Content-Type` says (requests'
    /// `response.encoding = …`): any WHATWG encoding label, decoded as [`text`](Self::text)
    /// decodes (a byte-order mark still wins). An unknown label is an [`Error::Decode`] (before
    /// the body is read).
    pub fn text_with_charset(self, charset: &str) -> Result<String> {
        let Some(encoding) = Encoding::for_label(charset.trim().trim_matches('"').as_bytes())
        else {
            return Err(Error::Decode {
                url: Url::clone(&self.body.url),
                source: format!("unsupported charset {charset:?}").into(),
            });
        };
        Ok(decode_text(encoding, self.bytes()?))
    }

    /// The body's lines as they arrive (without their `\n` or `\r\n`; invalid UTF-8 becomes
    /// U+FFFD), for streamed responses (server logs, JSON lines). No body limit applies; a line
    /// is read whole, however long.
    pub fn lines(self) -> Lines {
        let url = Arc::clone(&self.body.url);
        Lines {
            reader: io::BufReader::new(self.body),
            url,
        }
    }

    /// The body's bytes, up to the client's body limit (an error beyond it).
    #[inline]
    pub fn bytes(mut self) -> Result<Vec<u8>> {
        // Inlined into the caller, so that the response (~0.5 KB) is read where the caller has
        // it rather than copied to a new place on the stack for the call.
        self.read_bytes()
    }

    #[inline(never)]
    fn read_bytes(&mut self) -> Result<Vec<u8>> {
        let limit = self.limit;
        let length = self.content_length();
        if let (Some(limit), Some(len)) = (limit, length) {
            if len > limit {
                return Err(self.too_large(limit));
            }
        }
        if let Some(body) = self
            .known_length
            .and_then(|len| self.body.take_buffered(len))
        {
            return Ok(body);
        }
        let capacity = length.unwrap_or(0).min(1 << 20) as usize;
        let mut out = Vec::with_capacity(capacity);
        let read = match limit {
            Some(limit) => (&mut self.body).take(limit + 1).read_to_end(&mut out),
            None => self.body.read_to_end(&mut out),
        };
        if let Err(err) = read {
            return Err(self.body_error(err));
        }
        if let Some(limit) = limit {
            if out.len() as u64 > limit {
                return Err(self.too_large(limit));
            }
        }
        Ok(out)
    }

    /// The body parsed as JSON (up to the body limit).
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let url = Url::clone(&self.body.url);
        let bytes = self.bytes()?;
        serde_json::from_slice(&bytes).map_err(|err| Error::Decode {
            url,
            source: Box::new(err),
        })
    }

    /// Streams the whole body into `writer` (no size limit); the number of bytes.
    pub fn copy_to<W: io::Write + ?Sized>(&mut self, writer: &mut W) -> Result<u64> {
        io::copy(&mut self.body, writer).map_err(|err| self.body_error(err))
    }

    /// The body as a streaming `Read` (no size limit).
    pub fn into_reader(self) -> BodyReader {
        self.body
    }

    fn too_large(&self, limit: u64) -> Error {
        Error::Body {
            url: Url::clone(&self.body.url),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the body is larger than the limit of {limit} bytes"),
            ),
        }
    }

    fn body_error(&self, err: io::Error) -> Error {
        Error::from_io(err).unwrap_or_else(|err| Error::Body {
            url: Url::clone(&self.body.url),
            source: err,
        })
    }
}

/// The response as the `http` crate's type, for code written against it: the status, version
/// and header fields (those of [`ClientResponse::headers`]), the final [`Url`] in the extensions,
/// and the body as a [`BodyReader`].
impl From<ClientResponse> for http::Response<BodyReader> {
    fn from(response: ClientResponse) -> http::Response<BodyReader> {
        let url = Url::clone(&response.body.url);
        let mut converted = http::Response::new(response.body);
        *converted.status_mut() = response.status;
        *converted.version_mut() = response.version;
        *converted.headers_mut() = response.headers.into_map();
        converted.extensions_mut().insert(url);
        converted
    }
}

impl Read for ClientResponse {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

/// The lines of a response body: [`ClientResponse::lines`].
pub struct Lines {
    reader: io::BufReader<BodyReader>,
    url: Arc<Url>,
}

impl fmt::Debug for Lines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lines")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl Iterator for Lines {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        use io::BufRead;
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                if line.ends_with(b"\n") {
                    line.pop();
                    if line.ends_with(b"\r") {
                        line.pop();
                    }
                }
                Some(Ok(utf8_lossy(line)))
            }
            Err(err) => Some(Err(Error::from_io(err).unwrap_or_else(|err| Error::Body {
                url: Url::clone(&self.url),
                source: err,
            }))),
        }
    }
}

/// `bytes` as text in `encoding` (WHATWG's decode: a byte-order mark overrides the label;
/// malformed sequences become U+FFFD). UTF-8 without a BOM, the common case, keeps the buffer.
fn decode_text(encoding: &'static Encoding, bytes: Vec<u8>) -> String {
    if encoding == encoding_rs::UTF_8 && !bytes.starts_with(b"\xEF\xBB\xBF") {
        return utf8_lossy(bytes);
    }
    encoding.decode(&bytes).0.into_owned()
}

/// `bytes` as UTF-8, malformed sequences replaced by U+FFFD (no copy when they are valid).
fn utf8_lossy(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}

/// The `charset` parameter of a Content-Type value.
fn charset(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}
