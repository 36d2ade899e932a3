//! HTTP/1.1 for green threads: a sans-IO protocol core ([`proto`]), a client and a server.
//!
//! ```
//! use green_http::server::{Body, Server};
//! use green_http::{Request, Response};
//!
//! let server = Server::bind("127.0.0.1:0")
//!     .unwrap()
//!     .start(|req: Request<Body>| Response::new(Body::from(format!("hello {}", req.uri().path()))))
//!     .unwrap();
//! let url = format!("http://{}/world", server.local_addr());
//! let pages: Vec<_> = (0..10)
//!     .map(|_| {
//!         let url = url.clone();
//!         green_runtime::spawn(move || green_http::get(&url)?.text())
//!     })
//!     .collect();
//! for page in green_runtime::joinall(pages) {
//!     assert_eq!(page.unwrap().unwrap(), "hello /world");
//! }
//! server.stop(std::time::Duration::from_secs(1));
//! ```
//!
//! # Names
//!
//! One name per thing, and the `http` crate's types wherever they fit:
//!
//! * [`Request`], [`Response`], [`StatusCode`], [`Method`], [`HeaderMap`], … at the top are the
//!   `http` crate's, re-exported: a server handler takes a `Request<server::Body>` and returns a
//!   `Response<server::Body>`, and [`Client::execute`](client::Client::execute) sends any
//!   `Request<B>` whose body converts into a [`client::Body`].
//! * The client's answer is a [`client::ClientResponse`]: status, headers, the final URL and
//!   redirect history, and `text()` / `json()` / `bytes()` / `Read` for its body. It converts into
//!   an `http::Response<`[`client::BodyReader`]`>` for code written against the `http` crate.
//! * Two body types, because the two sides need different things: [`client::Body`] is what a
//!   request sends (bytes that a redirect or retry can send again, or a reader), and
//!   [`server::Body`] is both what a handler reads and what it answers with (also a file, a
//!   sized reader, or a protocol upgrade).
//! * [`get`], [`post`], … are one-call shortcuts on this thread's default client.
//!
//! # Implementation
//!
//! [`proto`] holds every HTTP/1.1 rule (head parsing with httparse, body framing, chunked coding,
//! limits) with no I/O in it, so it is tested and fuzzed on byte slices; client and server are
//! small read/write loops around it over green sockets. Types come from the `http` crate.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod client;
pub mod proto;
pub mod server;

use client::{ClientResponse, IntoUrl, RequestBuilder, Result};

pub use http::{
    header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};

/// `GET url` with this thread's default client: the response once its head arrived.
///
/// ```
/// # let server = green_http::server::Server::bind("127.0.0.1:0").unwrap()
/// #     .start(|_| green_http::Response::new(green_http::server::Body::from("hello"))).unwrap();
/// # let url = format!("http://{}/", server.local_addr());
/// let page = green_http::get(&url)?;
/// assert_eq!(page.status(), 200);
/// assert_eq!(page.text()?, "hello");
/// # Ok::<(), green_http::client::Error>(())
/// ```
///
/// # Errors
///
/// A URL that is not absolute `http(s)`, a connection, TLS or protocol failure, a timeout; see
/// [`client::Error`]. An error status (4xx, 5xx) is a response, not an error
/// ([`ClientResponse::error_for_status`] makes it one).
pub fn get(url: impl IntoUrl) -> Result<ClientResponse> {
    client::default_request(Method::GET, url).send()
}

/// A `POST` request with this thread's default client.
pub fn post(url: impl IntoUrl) -> RequestBuilder {
    client::default_request(Method::POST, url)
}

/// A `PUT` request with this thread's default client.
pub fn put(url: impl IntoUrl) -> RequestBuilder {
    client::default_request(Method::PUT, url)
}

/// A `DELETE` request with this thread's default client.
pub fn delete(url: impl IntoUrl) -> RequestBuilder {
    client::default_request(Method::DELETE, url)
}

/// A `HEAD` request with this thread's default client.
pub fn head(url: impl IntoUrl) -> RequestBuilder {
    client::default_request(Method::HEAD, url)
}

/// A request with any method and this thread's default client.
pub fn request(method: Method, url: impl IntoUrl) -> RequestBuilder {
    client::default_request(method, url)
}
