//! `ProtoError`: every way a peer's bytes can break HTTP/1.1, typed so that a server can pick the
//! status to answer with and a client can tell a limit from a malformed message.

use std::fmt;

use http::StatusCode;

/// A protocol violation or an exceeded limit, found while parsing or framing a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtoError {
    /// The head (start line and header fields) is longer than
    /// [`Limits::max_header_bytes`](super::Limits::max_header_bytes).
    HeadersTooLarge,
    /// More header fields than [`Limits::max_headers`](super::Limits::max_headers).
    TooManyHeaders,
    /// The request target is longer than [`Limits::max_uri_len`](super::Limits::max_uri_len).
    UriTooLong,
    /// The body is longer than the body limit (declared by Content-Length or received).
    BodyTooLarge,
    /// The start line or a header field is malformed (httparse's diagnosis).
    InvalidHead(&'static str),
    /// The request target is not a valid URI.
    InvalidUri,
    /// The HTTP version is neither 1.0 nor 1.1.
    UnsupportedVersion,
    /// A Content-Length value is not a plain decimal number (or overflows a `u64`).
    InvalidContentLength,
    /// Several Content-Length values disagree.
    ConflictingContentLength,
    /// Transfer-Encoding in a request whose final coding is not `chunked`, in an HTTP/1.0
    /// request, or together with Content-Length in a request (a request-smuggling vector).
    InvalidTransferEncoding,
    /// A chunk-size line is malformed: not hex, empty, a bad extension, or no CRLF.
    InvalidChunkSize,
    /// A chunk size does not fit in a `u64`.
    ChunkSizeOverflow,
    /// The CRLF after a chunk's data is missing.
    InvalidChunkEnd,
    /// The trailer section is malformed.
    InvalidTrailers,
    /// The trailer section is longer than
    /// [`Limits::max_header_bytes`](super::Limits::max_header_bytes).
    TrailersTooLarge,
    /// The connection ended before the body's framing said it was complete.
    UnexpectedEof,
    /// More body bytes were written than the declared Content-Length.
    BodyLengthExceeded,
    /// Fewer body bytes were written than the declared Content-Length.
    BodyLengthShort,
}

impl ProtoError {
    /// The status a server answers this error in a request with: 431 for oversized heads, 414 for
    /// long targets, 413 for long bodies, 505 for other versions, 400 for the rest.
    pub fn status(&self) -> StatusCode {
        match self {
            ProtoError::HeadersTooLarge | ProtoError::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ProtoError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProtoError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProtoError::UnsupportedVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Whether a limit (not the peer's syntax) caused the error.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            ProtoError::HeadersTooLarge
                | ProtoError::TooManyHeaders
                | ProtoError::UriTooLong
                | ProtoError::BodyTooLarge
                | ProtoError::TrailersTooLarge
        )
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::HeadersTooLarge => f.write_str("message head too large"),
            ProtoError::TooManyHeaders => f.write_str("too many header fields"),
            ProtoError::UriTooLong => f.write_str("request target too long"),
            ProtoError::BodyTooLarge => f.write_str("body exceeds the size limit"),
            ProtoError::InvalidHead(why) => write!(f, "malformed message head: {why}"),
            ProtoError::InvalidUri => f.write_str("invalid request target"),
            ProtoError::UnsupportedVersion => f.write_str("unsupported HTTP version"),
            ProtoError::InvalidContentLength => f.write_str("invalid Content-Length"),
            ProtoError::ConflictingContentLength => {
                f.write_str("conflicting Content-Length values")
            }
            ProtoError::InvalidTransferEncoding => f.write_str("invalid Transfer-Encoding"),
            ProtoError::InvalidChunkSize => f.write_str("invalid chunk size line"),
            ProtoError::ChunkSizeOverflow => f.write_str("chunk size overflows"),
            ProtoError::InvalidChunkEnd => f.write_str("missing CRLF after chunk data"),
            ProtoError::InvalidTrailers => f.write_str("malformed trailer section"),
            ProtoError::TrailersTooLarge => f.write_str("trailer section too large"),
            ProtoError::UnexpectedEof => f.write_str("connection closed before the body ended"),
            ProtoError::BodyLengthExceeded => f.write_str("body longer than its Content-Length"),
            ProtoError::BodyLengthShort => f.write_str("body shorter than its Content-Length"),
        }
    }
}

impl std::error::Error for ProtoError {}

impl From<ProtoError> for std::io::Error {
    fn from(err: ProtoError) -> std::io::Error {
        let kind = match err {
            ProtoError::UnexpectedEof => std::io::ErrorKind::UnexpectedEof,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, err)
    }
}
