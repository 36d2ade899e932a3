//! The HTTP/1.1 client: requests-style calls that block only the calling greenlet.
//!
//! A [`Client`] sends requests built with its [`RequestBuilder`] or with the `http` crate
//! ([`Client::execute`]); the answer is a [`ClientResponse`], which converts into an
//! `http::Response<`[`BodyReader`]`>`. [`Body`] is what a request sends; it is not the server's
//! [`server::Body`](crate::server::Body).
//!
//! ```no_run
//! use green_http::client;
//!
//! let page = green_http::get("http://example.com/")?;
//! println!("{} {}", page.status(), page.url());
//! let text = page.text()?;
//!
//! let client = client::Client::builder()
//!     .timeout(std::time::Duration::from_secs(10))
//!     .build()?;
//! let created = client
//!     .post("http://example.com/items")
//!     .bearer_auth("token")
//!     .form(&[("name", "green")])
//!     .send()?
//!     .error_for_status()?;
//! # Ok::<(), client::Error>(())
//! ```
//!
//! # Implementation
//!
//! A request is a short loop over [`crate::proto`]: take a pooled connection (probed) or connect
//! (green DNS or a `resolve` override, Happy Eyeballs, a `CONNECT` tunnel through an HTTP proxy
//! or a SOCKS5 handshake, TLS through green-tls), write the head and body, parse the response
//! head, skip interim responses, and return. A write that fails reads what the server already
//! answered (an early `413` to an upload, RFC 9112 §9.5) before giving up. The body is
//! read lazily through proto's `BodyDecoder` and flate2; the connection returns to the pool when
//! the body ends. Timeouts are deadlines threaded through every socket operation (see `conn.rs`),
//! because the body outlives `send()`. Nothing here starts a greenlet: concurrency is the
//! caller's `spawn`.
//!
//! # Caveats
//!
//! * HTTP/1.1 only (no HTTP/2, no pipelining); `https` proxies (TLS to the proxy) are not
//!   supported, `http` proxies tunnel `https` with `CONNECT`.
//! * A response dropped before its body ends closes its connection.
//! * The free functions ([`get`](crate::get), [`post`](crate::post), …) use one default client
//!   per thread, with proxies from the environment.
//! * `text()` decodes UTF-8, Latin-1, windows-1252 and UTF-16 only (other charsets are read as
//!   UTF-8, lossily); no `encoding_rs`.
//! * Content codings: gzip and deflate, stacked up to four deep; `br` and `zstd` are not decoded
//!   (reading such a body is an error naming the coding, unless the request set its own
//!   `Accept-Encoding`).
//! * A redirect's body is drained to reuse its connection only when it has a Content-Length of at
//!   most 64 KiB; otherwise the connection is closed and the redirect followed at once.
//! * An early response to an upload is seen when a write fails (the server stopped reading and
//!   closed); one sent by a server that keeps reading is read after the body, and one from a
//!   server that neither reads nor closes waits for the read timeout or the deadline.

#[allow(clippy::module_inception)]
mod client;
mod conn;
#[cfg(feature = "cookies")]
mod cookies;
mod error;
mod into_url;
pub mod multipart;
mod pool;
mod proxy;
pub mod redirect;
mod request;
mod response;
mod retry;
mod socks;

pub use client::{Client, ClientBuilder};
#[cfg(feature = "cookies")]
pub use cookies::Jar;
pub use error::{Error, Result, TimeoutKind};
pub use into_url::IntoUrl;
pub use pool::ClientStats;
pub use proxy::{NoProxy, Proxy};
pub use redirect::Policy;
pub use request::{Body, RequestBuilder};
pub use response::{BodyReader, ClientResponse, Lines};
pub use retry::Retry;
pub use url::Url;

thread_local! {
    static DEFAULT: Client = Client::new();
}

/// This thread's default client (what [`get`](crate::get) and the other free functions use).
pub fn default_client() -> Client {
    DEFAULT.with(Client::clone)
}

/// A request with this thread's default client, as [`get`](crate::get) and the other free
/// functions make it: the builder's clone is the only new count of the client's `Arc` (going
/// through [`default_client`] would add and drop one more, two locked instructions).
pub(crate) fn default_request(method: http::Method, url: impl IntoUrl) -> RequestBuilder {
    DEFAULT.with(|client| client.request(method, url))
}
