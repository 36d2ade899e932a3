//! HTTP/1.1 for green threads: a sans-IO protocol core ([`proto`]), a client and a server.
//!
//! # Implementation
//!
//! [`proto`] holds every HTTP/1.1 rule (head parsing with httparse, body framing, chunked coding,
//! limits) with no I/O in it, so it is tested and fuzzed on byte slices; client and server are
//! small read/write loops around it over green sockets. Types come from the `http` crate.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod client;
pub mod proto;
pub mod server;

pub use client::{delete, get, head, post, put, request, Client, ClientBuilder, RequestBuilder};
pub use server::{Server, ServerHandle};

pub use http::{
    header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
