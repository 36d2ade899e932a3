//! `BodyDecoder`: the state machine that turns a body's wire bytes into its data.
//!
//! It works on whatever slice the caller has, returns data as sub-slices of it (no copy), and
//! keeps its place between calls, so a body can arrive a byte at a time. Chunk-size lines are
//! parsed byte by byte and strictly: hex digits only, at least one, no overflow, optional
//! whitespace and extensions (skipped, bounded in length, no control characters), then CRLF. Bare
//! LF is rejected wherever the framing expects CRLF: lenient chunk parsing is a smuggling vector.

use std::cmp;

use http::HeaderMap;

use super::head::header_map;
use super::{Framing, Limits, ProtoError};

/// The longest chunk extension accepted on one chunk-size line.
const MAX_CHUNK_EXT: usize = 4096;

/// Trailer field slots httparse is given.
const MAX_TRAILERS: usize = 64;

/// What one call to [`BodyDecoder::decode`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Body data: a sub-slice of the input, ending where the consumed count ends.
    Data(&'a [u8]),
    /// All the input was consumed without producing data; feed more (or call
    /// [`BodyDecoder::eof`] if the connection ended).
    NeedMore,
    /// The body is complete; bytes after the consumed count belong to the next message.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size.
    Size { size: u64, digits: u32 },
    /// Whitespace after the size.
    SizeWs { size: u64 },
    /// Skipping a chunk extension.
    Ext { size: u64, len: usize },
    /// CR seen, LF expected.
    SizeLf { size: u64 },
    /// Inside a chunk's data.
    Data { remaining: u64 },
    /// The CR after the data.
    DataCr,
    /// The LF after the data.
    DataLf,
    /// After the last chunk: the trailer section up to its empty line.
    Trailers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Length { remaining: u64 },
    Chunked(Chunk),
    Close,
    Done,
    Failed(ProtoError),
}

/// Decodes a body framed by a [`Framing`], enforcing the body limit.
///
/// ```
/// use green_http::proto::{BodyDecoder, Decoded, Framing};
///
/// let wire = b"5\r\nhello\r\n0\r\n\r\nGET /next";
/// let mut decoder = BodyDecoder::new(Framing::Chunked);
/// let mut body = Vec::new();
/// let mut pos = 0;
/// loop {
///     let (event, used) = decoder.decode(&wire[pos..]).unwrap();
///     pos += used;
///     match event {
///         Decoded::Data(data) => body.extend_from_slice(data),
///         Decoded::NeedMore => unreachable!("the test input is complete"),
///         Decoded::End => break,
///     }
/// }
/// assert_eq!(body, b"hello");
/// assert_eq!(&wire[pos..], b"GET /next");
/// ```
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    max_body: Option<u64>,
    max_trailer_bytes: usize,
    received: u64,
    trailer_buf: Vec<u8>,
    /// Boxed: rare, and a decoder travels inside every response.
    trailers: Option<Box<HeaderMap>>,
}

impl BodyDecoder {
    /// A decoder for a body framed by `framing`, with no body limit and trailers limited to
    /// [`Limits::default`]'s header bytes.
    pub fn new(framing: Framing) -> BodyDecoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length { remaining: n },
            Framing::Chunked => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
            Framing::CloseDelimited => State::Close,
        };
        BodyDecoder {
            state,
            max_body: None,
            max_trailer_bytes: Limits::default().max_header_bytes,
            received: 0,
            trailer_buf: Vec::new(),
            trailers: None,
        }
    }

    /// A decoder taking its body limit and trailer limit from `limits`.
    pub fn with_limits(framing: Framing, limits: &Limits) -> BodyDecoder {
        BodyDecoder::new(framing)
            .max_body(limits.max_body)
            .max_trailer_bytes(limits.max_header_bytes)
    }

    /// Fails the body with [`ProtoError::BodyTooLarge`] once it exceeds `limit` bytes (at once
    /// for a Content-Length or chunk size above the limit).
    pub fn max_body(mut self, limit: Option<u64>) -> BodyDecoder {
        self.max_body = limit;
        if let (State::Length { remaining }, Some(limit)) = (&self.state, limit) {
            if *remaining > limit {
                self.state = State::Failed(ProtoError::BodyTooLarge);
            }
        }
        self
    }

    /// Limits the trailer section of a chunked body.
    pub fn max_trailer_bytes(mut self, limit: usize) -> BodyDecoder {
        self.max_trailer_bytes = limit;
        self
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the decoder stopped at an error.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Body bytes produced so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// How many more body bytes a Content-Length body has (`None` for other framings): a hint for
    /// sizing reads.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length { remaining } => Some(remaining),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The trailer fields of a chunked body, once it is complete (`None` when it had none).
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_deref()
    }

    /// Takes the trailer fields out of the decoder.
    pub fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take().map(|map| *map)
    }

    fn fail<T>(&mut self, err: ProtoError) -> Result<T, ProtoError> {
        self.state = State::Failed(err.clone());
        Err(err)
    }

    fn count(&mut self, n: u64) -> Result<(), ProtoError> {
        self.received += n;
        match self.max_body {
            Some(limit) if self.received > limit => self.fail(ProtoError::BodyTooLarge),
            _ => Ok(()),
        }
    }

    /// Feeds `input`; returns what it produced and how many input bytes it consumed. `Data` and
    /// `End` may leave input unconsumed: call again with the rest (after `End` the rest is the
    /// next message). `NeedMore` always consumes all the input. After an error every call
    /// returns the same error.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(Decoded<'a>, usize), ProtoError> {
        match self.state.clone() {
            State::Done => Ok((Decoded::End, 0)),
            State::Failed(err) => Err(err),
            State::Close => {
                if input.is_empty() {
                    return Ok((Decoded::NeedMore, 0));
                }
                self.count(input.len() as u64)?;
                Ok((Decoded::Data(input), input.len()))
            }
            State::Length { remaining } => {
                if input.is_empty() {
                    return Ok((Decoded::NeedMore, 0));
                }
                let n = cmp::min(remaining, input.len() as u64) as usize;
                self.count(n as u64)?;
                self.state = if remaining == n as u64 {
                    State::Done
                } else {
                    State::Length {
                        remaining: remaining - n as u64,
                    }
                };
                Ok((Decoded::Data(&input[..n]), n))
            }
            State::Chunked(chunk) => self.decode_chunked(chunk, input),
        }
    }

    fn decode_chunked<'a>(
        &mut self,
        mut chunk: Chunk,
        input: &'a [u8],
    ) -> Result<(Decoded<'a>, usize), ProtoError> {
        let mut pos = 0;
        loop {
            if let Chunk::Data { remaining } = chunk {
                if pos == input.len() {
                    self.state = State::Chunked(chunk);
                    return Ok((Decoded::NeedMore, pos));
                }
                let n = cmp::min(remaining, (input.len() - pos) as u64) as usize;
                let left = remaining - n as u64;
                self.state = State::Chunked(if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data { remaining: left }
                });
                // The limit was checked against the chunk's declared size.
                self.received += n as u64;
                return Ok((Decoded::Data(&input[pos..pos + n]), pos + n));
            }
            if chunk == Chunk::Trailers {
                return self.decode_trailers(input, pos);
            }
            let Some(&byte) = input.get(pos) else {
                self.state = State::Chunked(chunk);
                return Ok((Decoded::NeedMore, pos));
            };
            pos += 1;
            chunk = match self.chunk_byte(chunk, byte) {
                Ok(next) => next,
                Err(err) => return self.fail(err),
            };
        }
    }

    /// One byte of a chunk-size line or of the CRLF after a chunk's data.
    fn chunk_byte(&self, chunk: Chunk, byte: u8) -> Result<Chunk, ProtoError> {
        Ok(match chunk {
            Chunk::Size { size, digits } => match byte {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(digit))
                        .ok_or(ProtoError::ChunkSizeOverflow)?;
                    Chunk::Size {
                        size,
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return Err(ProtoError::InvalidChunkSize),
                b' ' | b'\t' => Chunk::SizeWs { size },
                b';' => Chunk::Ext { size, len: 0 },
                b'\r' => Chunk::SizeLf { size },
                _ => return Err(ProtoError::InvalidChunkSize),
            },
            Chunk::SizeWs { size } => match byte {
                b' ' | b'\t' => Chunk::SizeWs { size },
                b';' => Chunk::Ext { size, len: 0 },
                b'\r' => Chunk::SizeLf { size },
                _ => return Err(ProtoError::InvalidChunkSize),
            },
            Chunk::Ext { size, len } => match byte {
                b'\r' => Chunk::SizeLf { size },
                b'\t' => Chunk::Ext { size, len: len + 1 },
                0..=0x1f | 0x7f => return Err(ProtoError::InvalidChunkSize),
                _ if len >= MAX_CHUNK_EXT => return Err(ProtoError::InvalidChunkSize),
                _ => Chunk::Ext { size, len: len + 1 },
            },
            Chunk::SizeLf { size } => match byte {
                b'\n' if size == 0 => Chunk::Trailers,
                b'\n' => {
                    if let Some(limit) = self.max_body {
                        if self.received.saturating_add(size) > limit {
                            return Err(ProtoError::BodyTooLarge);
                        }
                    }
                    Chunk::Data { remaining: size }
                }
                _ => return Err(ProtoError::InvalidChunkSize),
            },
            Chunk::DataCr => match byte {
                b'\r' => Chunk::DataLf,
                _ => return Err(ProtoError::InvalidChunkEnd),
            },
            Chunk::DataLf => match byte {
                b'\n' => Chunk::Size { size: 0, digits: 0 },
                _ => return Err(ProtoError::InvalidChunkEnd),
            },
            Chunk::Data { .. } | Chunk::Trailers => unreachable!("handled by decode_chunked"),
        })
    }

    /// Collects the trailer section up to its empty line, then parses it.
    fn decode_trailers<'a>(
        &mut self,
        input: &'a [u8],
        mut pos: usize,
    ) -> Result<(Decoded<'a>, usize), ProtoError> {
        while let Some(&byte) = input.get(pos) {
            pos += 1;
            self.trailer_buf.push(byte);
            let buf = &self.trailer_buf;
            if buf.len() > self.max_trailer_bytes {
                return self.fail(ProtoError::TrailersTooLarge);
            }
            if buf.len() <= 2 {
                // The trailer section is empty: just CRLF.
                match (buf.as_slice(), byte) {
                    (b"\r", _) => continue,
                    (b"\r\n", _) => {
                        self.finish_body();
                        return Ok((Decoded::End, pos));
                    }
                    (_, b'\n') => return self.fail(ProtoError::InvalidChunkEnd),
                    _ => continue,
                }
            }
            if buf.ends_with(b"\r\n\r\n") {
                let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
                let parsed = match httparse::parse_headers(buf, &mut slots) {
                    Ok(httparse::Status::Complete((_, fields))) => {
                        let mut map = HeaderMap::new();
                        header_map(fields, buf, &mut map).map(|()| map)
                    }
                    _ => Err(ProtoError::InvalidTrailers),
                };
                match parsed {
                    Ok(map) => {
                        self.trailers = Some(Box::new(map));
                        self.finish_body();
                        return Ok((Decoded::End, pos));
                    }
                    Err(err) => return self.fail(err),
                }
            }
        }
        self.state = State::Chunked(Chunk::Trailers);
        Ok((Decoded::NeedMore, pos))
    }

    fn finish_body(&mut self) {
        self.state = State::Done;
        self.trailer_buf = Vec::new();
    }

    /// Tells the decoder the connection ended. Completes a close-delimited body; for any other
    /// body still in progress it is [`ProtoError::UnexpectedEof`] (a truncated body).
    pub fn eof(&mut self) -> Result<(), ProtoError> {
        match &self.state {
            State::Done => Ok(()),
            State::Close => {
                self.state = State::Done;
                Ok(())
            }
            State::Failed(err) => Err(err.clone()),
            _ => self.fail(ProtoError::UnexpectedEof),
        }
    }
}
