//! The server's connection loop over bytes in memory, for the `serve_connection` fuzz target
//! (feature `fuzzing`; not a public API): arbitrary client bytes, delivered in pieces, go through
//! the same `conn::serve` a socket does, to handlers that read, stream, fail and upgrade.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::header::{HOST, UPGRADE};
use http::{Request, Response, StatusCode};

use super::conn::{self, Config, Conn, Shared, Transport};
use super::upgrade::UpgradedIo;
use super::Body;
use crate::proto::{self, Limits};

/// A client that sends `input` in pieces of `piece` bytes, then closes; what the server writes
/// is collected.
struct Scripted {
    input: Vec<u8>,
    pos: usize,
    piece: usize,
    output: Rc<RefCell<Vec<u8>>>,
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.input.len() - self.pos).min(buf.len()).min(self.piece);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Scripted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Scripted {
    const MULTI_READ: bool = false;

    fn set_read_timeout(&self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn set_write_timeout(&self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn set_deadline(&mut self, _deadline: Option<Instant>) {}

    fn shutdown_write(&mut self) {}

    fn wait_readable(&self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn upgraded(conn: &Rc<RefCell<Conn<Self>>>) -> io::Result<Box<dyn UpgradedIo>> {
        conn::shared_transport(conn)
    }
}

/// What the fuzzed handlers do, by path: read the body and answer its length, stream it back,
/// stream it back chunked, fail, upgrade to an echo, or ignore the body.
fn handle(req: Request<Body>) -> Result<Response<Body>, String> {
    // Whatever reaches a handler passed the request checks.
    if let Some(host) = req.headers().get(HOST) {
        assert!(
            proto::valid_host(host.as_bytes()),
            "{host:?} reached the handler"
        );
    }
    assert!(proto::check_request_target(req.method(), req.uri()).is_ok());
    let wants_upgrade = req.headers().contains_key(UPGRADE);
    Ok(match req.uri().path() {
        "/read" => {
            let len = req.into_body().into_bytes().map_or(0, |b| b.len());
            Response::new(Body::from(len.to_string()))
        }
        "/echo" => Response::new(req.into_body()),
        "/chunked" => Response::new(Body::from_reader(req.into_body())),
        "/fail" => return Err("failed".into()),
        "/up" if wants_upgrade => {
            let mut response = Response::new(Body::upgrade(|mut conn| {
                let mut buf = [0; 64];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            response
        }
        _ => Response::new(Body::from("ok")),
    })
}

/// Serves one connection whose client sends `input`; the first byte picks the piece size and
/// the settings. Returns what the server wrote.
pub fn serve_bytes(input: &[u8]) -> Vec<u8> {
    let Some((&control, input)) = input.split_first() else {
        return Vec::new();
    };
    let config = Config {
        limits: Limits {
            max_header_bytes: 4096,
            max_headers: 32,
            max_uri_len: 1024,
            max_body: Some(64 * 1024),
        },
        header_timeout: Duration::from_secs(10),
        keep_alive_timeout: Duration::from_secs(10),
        read_timeout: None,
        write_timeout: None,
        keep_alive: control & 1 == 0,
        allow_connect: control & 2 != 0,
        peer_addr_extension: true,
    };
    let output = Rc::new(RefCell::new(Vec::new()));
    let client = Scripted {
        input: input.to_vec(),
        pos: 0,
        piece: 1 + usize::from(control >> 2) * 64,
        output: output.clone(),
    };
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    conn::serve(client, peer, &handle, &config, &Shared::default(), None);
    let written = output.borrow().clone();
    written
}
