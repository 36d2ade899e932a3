//! A TCP echo server: one greenlet per connection, all on one OS thread (gevent's
//! `examples/echoserver.py`).
//!
//! Run: `cargo run --example echoserver [-- 127.0.0.1:16000]`
//! Then, in other terminals: `nc 127.0.0.1 16000` (type lines; `quit` closes the connection).

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;

use green::net::{ServerHandle, StreamServer, TcpStream};

/// The address served when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:16000";

/// Starts the echo server on `addr` and returns at once; the accept loop is a greenlet.
pub fn start(addr: &str) -> io::Result<ServerHandle> {
    StreamServer::new(addr, |stream: TcpStream, peer: SocketAddr| {
        if let Err(err) = echo(&stream) {
            eprintln!("{peer}: {err}");
        }
    })
    .start()
}

/// Greets the client, then echoes each line back until `quit` or end of input.
fn echo(stream: &TcpStream) -> io::Result<()> {
    let mut writer = stream;
    writer.write_all(b"Welcome to the echo server! Type quit to exit.\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim() == "quit" {
            return Ok(());
        }
        writer.write_all(line.as_bytes())?;
    }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let server = start(&addr)?;
    println!("echo server listening on {}", server.local_addr());
    server.wait();
    Ok(())
}
