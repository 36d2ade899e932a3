//! `Body`: what a server handler reads a request from and answers with — bytes in memory, or a
//! reader (the request's own body, a file, a generator) streamed with or without a known length,
//! or, for a `101 Switching Protocols` (or a 2xx to CONNECT), what takes over the connection.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};

use super::upgrade::Upgraded;

enum Kind {
    Bytes {
        data: Cow<'static, [u8]>,
        pos: usize,
    },
    Reader {
        reader: Box<dyn Read>,
        len: Option<u64>,
    },
    /// No bytes; the connection goes to this function after the response head.
    Upgrade(Box<dyn FnOnce(Upgraded)>),
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

    /// A file's contents from its current position to its end, sent with Content-Length (the
    /// file's length when this is called). The file is read on the connection's greenlet with
    /// plain blocking reads, as gevent reads files.
    pub fn from_file(mut file: File) -> io::Result<Body> {
        use std::io::Seek;
        let len = file.metadata()?.len();
        let pos = file.stream_position()?;
        Ok(Body::sized(file, len.saturating_sub(pos)))
    }

    /// An empty body that hands the connection to `take_over` once the response head is sent,
    /// when the response is `101 Switching Protocols` to a request with an `Upgrade` header, or
    /// a 2xx to a CONNECT the server allows ([`Server::allow_connect`](super::Server::allow_connect)).
    /// `take_over` runs on the connection's greenlet; the connection closes when it returns and
    /// no clone of the [`Upgraded`] stream is left. With any other status it is dropped unused.
    ///
    /// ```no_run
    /// use green_http::server::{Body, Server};
    /// use green_http::Response;
    /// use green_http::{header, StatusCode};
    /// use std::io::{Read, Write};
    ///
    /// Server::bind("127.0.0.1:8080").unwrap().serve(|_req| {
    ///     Response::builder()
    ///         .status(StatusCode::SWITCHING_PROTOCOLS)
    ///         .header(header::CONNECTION, "upgrade")
    ///         .header(header::UPGRADE, "echo")
    ///         .body(Body::upgrade(|mut conn| {
    ///             let mut buf = [0; 1024];
    ///             while let Ok(n @ 1..) = conn.read(&mut buf) {
    ///                 if conn.write_all(&buf[..n]).is_err() {
    ///                     break;
    ///                 }
    ///             }
    ///         }))
    ///         .unwrap()
    /// }).unwrap();
    /// ```
    pub fn upgrade(take_over: impl FnOnce(Upgraded) + 'static) -> Body {
        Body {
            kind: Kind::Upgrade(Box::new(take_over)),
        }
    }

    /// The connection's new owner, if this body is [`upgrade`](Self::upgrade)'s.
    pub(crate) fn take_upgrade(&mut self) -> Option<Box<dyn FnOnce(Upgraded)>> {
        match std::mem::replace(
            &mut self.kind,
            Kind::Bytes {
                data: Cow::Borrowed(&[]),
                pos: 0,
            },
        ) {
            Kind::Upgrade(take_over) => Some(take_over),
            kind => {
                self.kind = kind;
                None
            }
        }
    }

    /// The number of bytes left to read, when known.
    pub fn len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Bytes { data, pos } => Some((data.len() - pos) as u64),
            Kind::Reader { len, .. } => *len,
            Kind::Upgrade(_) => Some(0),
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
            Kind::Upgrade(_) => Some(&[]),
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
            Kind::Upgrade(_) => Ok(Vec::new()),
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
            Kind::Upgrade(_) => Ok(0),
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
            Kind::Upgrade(_) => f.debug_struct("Body").field("upgrade", &true).finish(),
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
