//! gevent's green threads for Rust: greenlets on a per-thread hub, and sockets, DNS, TLS and HTTP
//! that switch to the hub instead of blocking. This crate only re-exports the layers below; the
//! README follows (its example is compiled as a doctest).
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// The README's example is a whole program, to be pasted as is.
#![allow(clippy::needless_doctest_main)]

pub use green_runtime::*;

/// Green sockets: `TcpStream`, `TcpListener`, `UdpSocket`, Unix sockets (crate `green-net`).
pub mod net {
    pub use green_net::*;
}

pub use green_net::dns;

/// TLS client and server streams over green sockets, through rustls (crate `green-tls`).
pub use green_tls as tls;

/// HTTP/1.1: the sans-IO protocol core, the client and the server (crate `green-http`).
pub use green_http as http;

/// gevent's `monkey.patch_all()`: std::net, std sleeps and getaddrinfo made green (crate
/// `green-patch`, cargo feature `patch`).
#[cfg(feature = "patch")]
pub use green_patch as patch;

/// Futures that need tokio, awaited from greenlets: `block_on`, `spawn` on a helper runtime (crate
/// `green-tokio`, cargo feature `tokio`).
#[cfg(feature = "tokio")]
pub use green_tokio as tokio;
