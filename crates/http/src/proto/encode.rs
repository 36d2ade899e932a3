//! Body encoders: chunked, and one over any [`Framing`] that checks a Content-Length is kept.

use std::fmt;

use http::HeaderMap;

use super::{Framing, ProtoError};

/// The chunk-size line for a chunk of `len` bytes (`"1a2b\r\n"`), on the stack, for callers that
/// write the data themselves (vectored writes, no copy of large chunks).
#[derive(Clone, Copy)]
pub struct ChunkHeader {
    buf: [u8; 18],
    len: u8,
}

impl ChunkHeader {
    /// The chunk-size line for `size` bytes of data.
    pub fn new(size: usize) -> ChunkHeader {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 16];
        let mut n = size as u64;
        let mut count = 0;
        loop {
            digits[count] = HEX[(n & 0xf) as usize];
            count += 1;
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        let mut buf = [0u8; 18];
        for (i, d) in digits[..count].iter().rev().enumerate() {
            buf[i] = *d;
        }
        buf[count] = b'\r';
        buf[count + 1] = b'\n';
        ChunkHeader {
            buf,
            len: (count + 2) as u8,
        }
    }
}

impl AsRef<[u8]> for ChunkHeader {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl fmt::Debug for ChunkHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ChunkHeader")
            .field(&String::from_utf8_lossy(self.as_ref()))
            .finish()
    }
}

/// Writes `Transfer-Encoding: chunked` bodies: a chunk per [`encode`](Self::encode) call, then
/// the last chunk and optional trailers from [`finish`](Self::finish).
#[derive(Debug, Default, Clone)]
pub struct ChunkedEncoder {
    finished: bool,
}

impl ChunkedEncoder {
    /// A new encoder.
    pub fn new() -> ChunkedEncoder {
        ChunkedEncoder::default()
    }

    /// Appends `data` as one chunk; nothing for empty data (an empty chunk would end the body).
    pub fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) {
        debug_assert!(!self.finished, "chunk written after the last chunk");
        if data.is_empty() {
            return;
        }
        out.reserve(data.len() + 20);
        out.extend_from_slice(ChunkHeader::new(data.len()).as_ref());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }

    /// Appends the last chunk, the trailer fields (if any) and the final CRLF.
    pub fn finish(&mut self, trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        out.extend_from_slice(b"0\r\n");
        for (name, value) in trailers.into_iter().flatten() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Whether [`finish`](Self::finish) was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Length { remaining: u64 },
    Chunked(ChunkedEncoder),
    Close,
}

/// Encodes a body for a [`Framing`]: copies Content-Length and close-delimited data through and
/// checks a Content-Length is neither exceeded nor left short; chunks a chunked body.
#[derive(Debug, Clone)]
pub struct BodyEncoder {
    kind: Kind,
}

impl BodyEncoder {
    /// An encoder for a body framed by `framing` (`Empty` is a zero Content-Length).
    pub fn new(framing: Framing) -> BodyEncoder {
        let kind = match framing {
            Framing::Empty => Kind::Length { remaining: 0 },
            Framing::Length(n) => Kind::Length { remaining: n },
            Framing::Chunked => Kind::Chunked(ChunkedEncoder::new()),
            Framing::CloseDelimited => Kind::Close,
        };
        BodyEncoder { kind }
    }

    /// Appends `data`; [`ProtoError::BodyLengthExceeded`] (and nothing written) if it would go
    /// past the Content-Length.
    pub fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), ProtoError> {
        match &mut self.kind {
            Kind::Length { remaining } => {
                if data.len() as u64 > *remaining {
                    return Err(ProtoError::BodyLengthExceeded);
                }
                *remaining -= data.len() as u64;
                out.extend_from_slice(data);
            }
            Kind::Chunked(chunked) => chunked.encode(data, out),
            Kind::Close => out.extend_from_slice(data),
        }
        Ok(())
    }

    /// Ends the body: the last chunk for chunked; [`ProtoError::BodyLengthShort`] if a
    /// Content-Length body is incomplete.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        match &mut self.kind {
            Kind::Length { remaining: 0 } | Kind::Close => Ok(()),
            Kind::Length { .. } => Err(ProtoError::BodyLengthShort),
            Kind::Chunked(chunked) => {
                chunked.finish(None, out);
                Ok(())
            }
        }
    }

    /// Bytes a Content-Length body still needs (`None` for other framings).
    pub fn remaining(&self) -> Option<u64> {
        match self.kind {
            Kind::Length { remaining } => Some(remaining),
            _ => None,
        }
    }
}
