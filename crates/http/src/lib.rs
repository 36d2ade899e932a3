//! HTTP/1.1 for green threads: a sans-IO protocol core ([`proto`]), a client and a server.
//!
//! ```
//! use green_http::server::{Body, Request};
//! use green_http::{Response, Server};
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

pub use client::{delete, get, head, post, put, request, Client, ClientBuilder, RequestBuilder};
pub use server::{Server, ServerHandle, WorkersHandle};

pub use http::{
    header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
