//! Green sockets (TCP, UDP, Unix), a DNS stub resolver and stream/datagram servers.
//!
//! ```
//! use std::io::{Read, Write};
//! use green_net::{TcpListener, TcpStream};
//!
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! let server = green_runtime::spawn(move || {
//!     let (mut conn, _) = listener.accept().unwrap();
//!     let mut buf = [0; 5];
//!     conn.read_exact(&mut buf).unwrap();
//!     conn.write_all(&buf).unwrap();
//! });
//! let mut client = TcpStream::connect(addr).unwrap();
//! client.write_all(b"hello").unwrap();
//! let mut echo = [0; 5];
//! client.read_exact(&mut echo).unwrap();
//! assert_eq!(&echo, b"hello");
//! server.join().unwrap();
//! ```
//!
//! # Implementation
//!
//! Every socket is a std socket kept non-blocking inside a [`green_runtime::GreenFd`]: a call tries
//! the syscall and, on `WouldBlock`, parks the calling greenlet on the hub until the fd may be
//! ready. The types keep std's names, signatures and `Read`/`Write` impls, so switching from std is
//! an import change. Names in addresses (`"example.com:443"`) resolve through [`dns`], never
//! through a blocking `getaddrinfo` on the hub's thread.
//!
//! # Caveats
//!
//! * `set_nonblocking(true)` makes calls return `WouldBlock` as with std instead of parking.
//! * Sockets are `Send + Sync` like std's; a socket used from several threads registers with each
//!   thread's hub. One greenlet may read while another writes; two greenlets reading the same socket
//!   at once get an error (`ErrorKind::ResourceBusy`) instead of a lost wake-up.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

mod addr;
pub mod dns;
pub mod server;
mod sock;
pub mod tcp;
pub mod udp;
pub mod unix;

pub use addr::ToSocketAddrs;
pub use server::{
    serve_workers, Datagram, DatagramServer, ServerHandle, StreamServer, WorkersHandle,
};
pub use tcp::{ListenerOptions, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};
