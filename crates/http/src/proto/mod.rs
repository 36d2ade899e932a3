//! The HTTP/1.1 protocol without I/O: message heads, body framing, chunked coding, limits.
//!
//! Client and server drive these pieces from their own read and write loops, so every rule
//! here is tested (and fuzzed) without a socket:
//!
//! * [`parse_request`] / [`parse_response`]: incremental head parsing with httparse into `http`
//!   types; [`write_request_head`] / [`write_response_head`] serialise them.
//! * [`request_framing`] / [`response_framing`]: which body follows a head (RFC 9112 §6.3),
//!   including the no-body rules for HEAD, 1xx, 204, 304 and CONNECT.
//! * [`BodyDecoder`]: Content-Length, chunked (with trailers) and close-delimited bodies, fed
//!   bytes, producing data slices; [`BodyEncoder`] and [`ChunkedEncoder`] for sending.
//! * [`keep_alive`], [`reusable`], [`expects_continue`], [`is_interim`]: connection management.
//! * [`valid_host`], [`check_request_target`]: which Host values and target forms a request may
//!   carry.
//! * [`Limits`] and [`ProtoError`]: every limit gives a typed error that maps to a status.
//!
//! ```
//! use green_http::proto::{self, Framing, Limits, Parsed};
//!
//! let wire = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
//! let Parsed::Complete(head, used) = proto::parse_request(wire, &Limits::default()).unwrap()
//! else { unreachable!() };
//! assert_eq!(head.uri().path(), "/upload");
//! let framing = proto::request_framing(head.version(), head.headers()).unwrap();
//! assert_eq!(framing, Framing::Length(5));
//! assert_eq!(&wire[used..], b"hello");
//! ```

mod decode;
mod encode;
mod error;
mod framing;
mod head;
mod target;
#[cfg(test)]
mod tests;

pub use decode::{BodyDecoder, Decoded};
pub use encode::{BodyEncoder, ChunkHeader, ChunkedEncoder};
pub use error::ProtoError;
pub use framing::{
    connection_has, content_length, expects_continue, is_chunked, is_interim, keep_alive,
    request_framing, response_framing, reusable, Framing,
};
pub(crate) use framing::{
    content_length_in, keep_alive_in, request_framing_in, response_framing_in, reusable_in, Fields,
    Known,
};
pub use head::{
    parse_request, parse_response, request_target, write_request_head, write_response_head, Parsed,
};
pub(crate) use head::{
    parse_request_head, parse_response_raw, HeadCache, RawResponse, RequestHead,
};
pub use target::{check_request_target, valid_host};

/// Size limits applied while parsing; exceeding one is a typed [`ProtoError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The longest message head (start line and header fields, with line ends), and the longest
    /// trailer section. Default 64 KiB.
    pub max_header_bytes: usize,
    /// The most header fields in one head. Default 100.
    pub max_headers: usize,
    /// The longest request target. Default 8 KiB.
    pub max_uri_len: usize,
    /// The longest body, or `None` for no limit (the default: clients and servers set their own).
    pub max_body: Option<u64>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_len: 8 * 1024,
            max_body: None,
        }
    }
}
