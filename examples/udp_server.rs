//! A UDP server answering every datagram from its own greenlet (gevent's
//! `examples/udp_server.py`). Pair it with `examples/udp_client.rs`.
//!
//! Run: `cargo run --example udp_server [-- 127.0.0.1:9000]`
//! Then: `cargo run --example udp_client -- 127.0.0.1:9000 hello`
//! (or `echo -n hello | nc -u -w1 127.0.0.1 9000`).

use std::io;

use green::net::{Datagram, DatagramServer};

/// The address served when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9000";

/// The reply to a datagram: how many bytes arrived, then the bytes.
pub fn reply_to(data: &[u8]) -> Vec<u8> {
    let mut reply = format!("Received {} bytes: ", data.len()).into_bytes();
    reply.extend_from_slice(data);
    reply
}

/// The server for `addr` (call `start` or `serve_forever` on it).
pub fn server(addr: &str) -> DatagramServer<impl Fn(Datagram)> {
    DatagramServer::new(addr, |datagram: Datagram| {
        println!(
            "{}: got {:?}",
            datagram.peer,
            String::from_utf8_lossy(&datagram.data)
        );
        if let Err(err) = datagram.reply(&reply_to(&datagram.data)) {
            eprintln!("{}: {err}", datagram.peer);
        }
    })
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    println!("UDP server on {addr}");
    server(&addr).serve_forever()
}
