//! `Body`: what a server handler reads a request from and answers with — bytes in memory, or a
//! reader (the request's own body, a file, a generator) streamed with or without a known length.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read};

enum Kind {
    Bytes {
        data: Cow<'static, [u8]>,
        pos: usize,
    },
    Reader {
        reader: Box<dyn Read>,
        len: Option<u64>,
    },
}

/// A message body: bytes in memory or a streaming [`Read`]er.
///
/// A request handed to a server handler carries the request body as a reader with the framing
/// enforced: it ends exactly where the body ends, and a truncated, malformed or oversized body is
/// an `io::Error` (`UnexpectedEof`, `InvalidData`) whose inner error is the
/// [`ProtoError`](crate::proto::ProtoError) (`BodyTooLarge`, `InvalidChunkSize`, …). A response
/// body with a known length
/// ([`len`](Self::len)) is sent with Content-Length; one without is sent chunked (or, to an
/// HTTP/1.0 client, delimited by closing the connection).
///
/// Not `Send`: it may read from a green socket, which belongs to its hub's thread.
pub struct Body {
    kind: Kind,
}

impl Body {
    /// An empty body.
    pub fn empty() -> Body {
        Body::from(Cow::Borrowed(&[][..]))
    }

    /// A body streamed from `reader`, length unknown (sent chunked).
    pub fn from_reader(reader: impl Read + 'static) -> Body {
        Body {
            kind: Kind::Reader {
                reader: Box::new(reader),
                len: None,
            },
        }
    }

    /// A body of exactly `len` bytes streamed from `reader` (sent with Content-Length). A reader
    /// that ends early makes the server close the connection after the short body; bytes past
    /// `len` are not read.
    pub fn sized(reader: impl Read + 'static, len: u64) -> Body {
        Body {
            kind: Kind::Reader {
                reader: Box::new(reader.take(len)),
                len: Some(len),
            },
        }
    }

    /// The number of bytes left to read, when known.
    pub fn len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Bytes { data, pos } => Some((data.len() - pos) as u64),
            Kind::Reader { len, .. } => *len,
        }
    }

    /// Whether the body is known to have no bytes left.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The unread bytes of an in-memory body (`None` for a streaming one).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Bytes { data, pos } => Some(&data[*pos..]),
            Kind::Reader { .. } => None,
        }
    }

    /// Reads the whole (rest of the) body into memory.
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self.kind {
            Kind::Bytes { data, pos } => Ok(match data {
                Cow::Owned(mut v) if pos == 0 => {
                    v.shrink_to_fit();
                    v
                }
                data => data[pos..].to_vec(),
            }),
            Kind::Reader { mut reader, len } => {
                let mut out = Vec::with_capacity(len.unwrap_or(0).min(1 << 20) as usize);
                reader.read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }

    /// Reads the whole (rest of the) body as UTF-8 text (`InvalidData` if it is not).
    pub fn into_string(self) -> io::Result<String> {
        String::from_utf8(self.into_bytes()?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Bytes { data, pos } => {
                let n = (data.len() - *pos).min(buf.len());
                buf[..n].copy_from_slice(&data[*pos..*pos + n]);
                *pos += n;
                Ok(n)
            }
            Kind::Reader { reader, len } => {
                let n = reader.read(buf)?;
                if let Some(len) = len {
                    *len = len.saturating_sub(n as u64);
                }
                Ok(n)
            }
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Bytes { .. } => f.debug_struct("Body").field("len", &self.len()).finish(),
            Kind::Reader { len, .. } => f
                .debug_struct("Body")
                .field("streaming", &true)
                .field("len", len)
                .finish(),
        }
    }
}

impl From<Cow<'static, [u8]>> for Body {
    fn from(data: Cow<'static, [u8]>) -> Body {
        Body {
            kind: Kind::Bytes { data, pos: 0 },
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(data: Vec<u8>) -> Body {
        Body::from(Cow::Owned(data))
    }
}

impl From<&'static [u8]> for Body {
    fn from(data: &'static [u8]) -> Body {
        Body::from(Cow::Borrowed(data))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Body::from(text.into_bytes())
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Body {
        Body::from(text.as_bytes())
    }
}

impl From<()> for Body {
    fn from((): ()) -> Body {
        Body::empty()
    }
}
