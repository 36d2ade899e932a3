//! A UDP client: sends one datagram and prints the reply (gevent's `examples/udp_client.py`).
//! Pair it with `examples/udp_server.rs`.
//!
//! Run: `cargo run --example udp_server` in one terminal, then
//! `cargo run --example udp_client -- 127.0.0.1:9000 'hello world'` in another.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use green::net::{ToSocketAddrs, UdpSocket};

/// Sends `message` to `server` and waits up to `timeout` for the reply (`ErrorKind::TimedOut`
/// when none comes: UDP gives no other sign of a missing server).
pub fn request(server: SocketAddr, message: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid address")
    } else {
        "[::]:0".parse().expect("valid address")
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(message)?;
    let mut buf = vec![0u8; 65_536];
    let n = socket.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let (Some(server), Some(message)) = (args.next(), args.next()) else {
        eprintln!("usage: udp_client SERVER_ADDR MESSAGE  (e.g. 127.0.0.1:9000 hello)");
        std::process::exit(2);
    };
    let server = server
        .as_str()
        .to_socket_addrs()?
        .into_iter()
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{server}: no address")))?;
    println!("Sending {} bytes to {server}", message.len());
    let reply = request(server, message.as_bytes(), Duration::from_secs(5))?;
    println!("{server}: {}", String::from_utf8_lossy(&reply));
    Ok(())
}
