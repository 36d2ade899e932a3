//! The client's one error type.
//!
//! Every failure of a request, from a bad URL to a gzip stream that does not decode, is one
//! [`Error`] whose variant says which step failed and whose message names the URL: a crawler
//! logging thousands of failures needs to know *which* request failed and *why* from one line, and
//! code that retries needs `is_timeout()` / `is_connect()` without parsing messages.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use http::StatusCode;
use url::Url;

/// Which deadline a [`Error::Timeout`] hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// The connect timeout: DNS, TCP connect, the proxy tunnel and the TLS handshake.
    Connect,
    /// The read timeout: no byte arrived (or could be sent) for that long.
    Read,
    /// The total per-request deadline (`ClientBuilder::timeout`, `RequestBuilder::timeout`).
    Total,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Connect => "connect timeout",
            TimeoutKind::Read => "read timeout",
            TimeoutKind::Total => "request deadline",
        })
    }
}

/// A failed HTTP request: which step failed, the URL, and the cause.
///
/// The `Display` message always names the URL (without any password it held). Errors met while
/// streaming a body through [`ClientResponse::into_reader`](crate::client::ClientResponse::into_reader) are
/// `io::Error`s wrapping this type (`err.get_ref()` downcasts to it).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL did not parse, or is not `http`/`https` with a host.
    Url {
        /// The text that was given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The request could not be built: an invalid header name or value, method, …
    Builder {
        /// The request's URL, when it had parsed.
        url: Option<Url>,
        /// What was wrong.
        message: String,
    },
    /// DNS resolution, the TCP connection, a proxy tunnel or the TLS handshake failed.
    Connect {
        /// The request's URL.
        url: Url,
        /// The cause (a TLS failure holds a `green_tls::TlsError`).
        source: io::Error,
    },
    /// A timeout fired.
    Timeout {
        /// The request's URL.
        url: Url,
        /// Which one.
        kind: TimeoutKind,
        /// The step it interrupted ("connecting", "reading the response head", …).
        during: &'static str,
    },
    /// Sending the request or reading the response head failed, or the peer sent something
    /// that is not HTTP/1.x.
    Request {
        /// The request's URL.
        url: Url,
        /// The cause.
        source: io::Error,
    },
    /// [`ClientResponse::error_for_status`](crate::client::ClientResponse::error_for_status) found a 4xx
    /// or 5xx status.
    Status {
        /// The response's URL.
        url: Url,
        /// The status.
        status: StatusCode,
    },
    /// A redirect could not be followed: too many, no usable `Location`, or a streaming body
    /// that a 307/308 would have to send again.
    Redirect {
        /// The URL whose response redirected.
        url: Url,
        /// What went wrong.
        message: String,
    },
    /// Reading the response body failed: the connection closed early (a truncated body), the
    /// body is larger than the limit, or an I/O error.
    Body {
        /// The response's URL.
        url: Url,
        /// The cause.
        source: io::Error,
    },
    /// The body did not decode: gzip/deflate data, JSON.
    Decode {
        /// The response's URL.
        url: Url,
        /// The cause.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A compressed body decoded to more bytes than the client's
    /// [`decompressed_limit`](crate::client::ClientBuilder::decompressed_limit): a decompression
    /// bomb, stopped before it filled memory.
    DecodedTooLarge {
        /// The response's URL.
        url: Url,
        /// The limit, in decoded bytes.
        limit: u64,
    },
}

impl Error {
    /// Whether a timeout fired (connect, read or the total deadline).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Whether connecting failed, a connect timeout included.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Timeout {
                    kind: TimeoutKind::Connect,
                    ..
                }
        )
    }

    /// Whether this came from [`error_for_status`](crate::client::ClientResponse::error_for_status).
    pub fn is_status(&self) -> bool {
        matches!(self, Error::Status { .. })
    }

    /// Whether a redirect could not be followed.
    pub fn is_redirect(&self) -> bool {
        matches!(self, Error::Redirect { .. })
    }

    /// Whether reading the body failed (truncated, over the limit, I/O).
    pub fn is_body(&self) -> bool {
        matches!(self, Error::Body { .. })
    }

    /// Whether the body did not decode (gzip, deflate, brotli, zstd, JSON), its decoded size
    /// over the limit included.
    pub fn is_decode(&self) -> bool {
        matches!(self, Error::Decode { .. } | Error::DecodedTooLarge { .. })
    }

    /// Whether the URL was rejected or the request could not be built.
    pub fn is_builder(&self) -> bool {
        matches!(self, Error::Url { .. } | Error::Builder { .. })
    }

    /// Whether sending the request or reading the response head failed.
    pub fn is_request(&self) -> bool {
        matches!(self, Error::Request { .. })
    }

    /// The URL concerned, when there is one.
    pub fn url(&self) -> Option<&Url> {
        match self {
            Error::Url { .. } => None,
            Error::Builder { url, .. } => url.as_ref(),
            Error::Connect { url, .. }
            | Error::Timeout { url, .. }
            | Error::Request { url, .. }
            | Error::Status { url, .. }
            | Error::Redirect { url, .. }
            | Error::Body { url, .. }
            | Error::Decode { url, .. }
            | Error::DecodedTooLarge { url, .. } => Some(url),
        }
    }

    /// The status, for [`Error::Status`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Wraps this error in an `io::Error` (for `Read` impls), with a fitting kind.
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            Error::Timeout { .. } => io::ErrorKind::TimedOut,
            Error::Body { source, .. } | Error::Request { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }

    /// The client error inside an `io::Error` made by [`into_io`](Self::into_io), or `None`.
    pub(crate) fn from_io(err: io::Error) -> Result<Error, io::Error> {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let inner = err.into_inner().expect("checked above");
            return Ok(*inner.downcast::<Error>().expect("checked above"));
        }
        Err(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url { url, reason } => write!(f, "invalid URL {url:?}: {reason}"),
            Error::Builder {
                url: Some(url),
                message,
            } => {
                write!(f, "invalid request for {url}: {message}")
            }
            Error::Builder { url: None, message } => write!(f, "invalid request: {message}"),
            Error::Connect { url, source } => write!(f, "error connecting for {url}: {source}"),
            Error::Timeout { url, kind, during } => {
                write!(f, "{kind} for {url} while {during}")
            }
            Error::Request { url, source } => write!(f, "error requesting {url}: {source}"),
            Error::Status { url, status } => {
                let class = if status.is_client_error() {
                    "client error"
                } else {
                    "server error"
                };
                write!(f, "HTTP status {class} ({status}) for {url}")
            }
            Error::Redirect { url, message } => write!(f, "redirect error for {url}: {message}"),
            Error::Body { url, source } => write!(f, "error reading the body of {url}: {source}"),
            Error::Decode { url, source } => {
                write!(f, "error decoding the body of {url}: {source}")
            }
            Error::DecodedTooLarge { url, limit } => write!(
                f,
                "the body of {url} decodes to more than the limit of {limit} bytes"
            ),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Connect { source, .. }
            | Error::Request { source, .. }
            | Error::Body { source, .. } => Some(source),
            Error::Decode { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        err.into_io()
    }
}

/// The client's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
