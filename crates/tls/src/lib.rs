//! TLS client and server streams over any green `Read + Write`, through rustls.
//!
//! ```
//! use std::io::{Read, Write};
//! use green_net::{TcpListener, TcpStream};
//! use green_tls::{TlsAcceptor, TlsConnector};
//!
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
//! let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
//!
//! let acceptor = TlsAcceptor::new(&cert_pem, &key_pem).unwrap();
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! let server = green_runtime::spawn(move || {
//!     let (tcp, _) = listener.accept().unwrap();
//!     let mut tls = acceptor.accept(tcp).unwrap();
//!     let mut buf = [0; 5];
//!     tls.read_exact(&mut buf).unwrap();
//!     tls.write_all(&buf).unwrap();
//!     tls.shutdown().unwrap();
//! });
//!
//! let connector = TlsConnector::builder()
//!     .add_root_certificate(&cert_pem)
//!     .system_roots(false)
//!     .build()
//!     .unwrap();
//! let mut tls = connector.connect("localhost", TcpStream::connect(addr).unwrap()).unwrap();
//! tls.write_all(b"hello").unwrap();
//! let mut echo = Vec::new();
//! tls.read_to_end(&mut echo).unwrap(); // ends at the server's close_notify
//! assert_eq!(echo, b"hello");
//! server.join().unwrap();
//! ```
//!
//! # Implementation
//!
//! rustls is sans-IO; [`TlsStream`] is the loop that feeds it from the stream and writes what it
//! produces, so over a green socket the handshake and every read and write park only the calling
//! greenlet, and the socket's timeouts (`set_read_timeout`, `set_write_timeout`) bound each step of
//! the handshake as they bound any read. Each byte renews a socket timeout, so a peer trickling a
//! byte at a time defeats it; an absolute deadline ([`TlsStream::set_deadline`],
//! [`TlsConnector::connect_until`], [`TlsAcceptor::accept_until`]) bounds every socket call the
//! stream makes however the peer trickles. Every config is built with
//! `builder_with_provider(ring)` ([`provider`]): no process-wide default provider is needed and
//! nothing pulls in aws-lc. Client configs verify with rustls's WebPKI verifier, wrapped to tell a
//! self-signed certificate from one signed by an unknown CA (both are `UnknownIssuer` to WebPKI).
//! A connector or acceptor shares one config, and with it rustls's session cache, across its
//! connections: that is what makes session resumption work.
//!
//! # Caveats
//!
//! * Failures are `io::Error`s of kind `InvalidData` carrying a [`TlsError`] ("certificate
//!   verification failed for 'example.com': certificate expired …"); match on
//!   [`TlsError::certificate_error`] rather than on the message.
//! * `read` gives `Ok(0)` only after the peer's `close_notify`; a peer that closes the connection
//!   without one gives `ErrorKind::UnexpectedEof`, rustls's guard against truncation. Many HTTP
//!   servers do that after a complete response; treat it as the end when the protocol's own
//!   framing says the message was complete.
//! * Dropping a [`TlsStream`] sends no `close_notify`; call [`TlsStream::shutdown`].
//! * A `write` whose bytes rustls accepted returns `Ok` even if sending them then fails; the error
//!   comes from the next `write`, `flush`, `read` or `shutdown`. Call `flush` after the last write.
//! * The system roots are read once per process, on the thread pool, the first time a default
//!   connector is made; an empty or unreadable store falls back to the compiled-in Mozilla roots.
//! * A server name that is an IP address is verified against the certificate's IP addresses and
//!   sent without SNI (RFC 6066 forbids IP literals there).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

mod client;
mod error;
mod server;
mod stream;
mod verify;

pub use client::{connect, default_roots, provider, ConnectorBuilder, TlsConnector};
pub use error::TlsError;
pub use rustls;
pub use server::{AcceptorBuilder, TlsAcceptor};
pub use stream::TlsStream;
