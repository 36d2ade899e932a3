//! An HTTP server on green threads: one greenlet per connection, plain blocking handler code.
//!
//! Run (release: never measure a debug build):
//!   `cargo run --release --example http_server [-- 127.0.0.1:8080] [--workers 2]`
//! Then:
//!   `curl http://127.0.0.1:8080/`                       Hello, World!
//!   `curl http://127.0.0.1:8080/json`                   a small JSON document
//!   `curl --data-binary @Cargo.toml http://127.0.0.1:8080/echo`   the body streamed back
//!   `curl -N http://127.0.0.1:8080/stream`              ten lines, one every 100 ms, chunked
//!   `curl http://127.0.0.1:8080/slow`                   answers after 200 ms
//! Load it with wrk (https://github.com/wg/wrk):
//!   `wrk -t1 -c100 -d10s http://127.0.0.1:8080/`        plaintext, keep-alive
//!   `wrk -t1 -c100 -d10s http://127.0.0.1:8080/json`
//!   `wrk -t2 -c1000 -d10s http://127.0.0.1:8080/slow`   1,000 requests in flight: ~5,000/s
//!                                                        from one thread, as each waits 200 ms
//! On a machine with spare cores, `--workers N` runs N threads, each with its own hub and an
//! `SO_REUSEPORT` listener; pin the server and wrk to different cores (`taskset -c`) to compare.

use std::io::{self, Read};
use std::time::Duration;

use green::http::server::{Body, Server};
use green::http::{header, Request, Response, StatusCode};

/// The address served when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// How long `/slow` waits before answering.
pub const SLOW: Duration = Duration::from_millis(200);

/// Lines `/stream` sends, and the pause before each.
pub const STREAM_LINES: usize = 10;
const STREAM_PAUSE: Duration = Duration::from_millis(100);

/// Every route. An `Err` becomes a 500 (logged; the client sees no detail).
pub fn handle(req: Request<Body>) -> Result<Response<Body>, serde_json::Error> {
    let response = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/") => text(Body::from("Hello, World!")),
        ("GET", "/json") => {
            let document = serde_json::json!({
                "message": "Hello, World!",
                "server": "green",
                "path": req.uri().path(),
            });
            let mut response = Response::new(Body::from(serde_json::to_vec(&document)?));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        // The request body, read as the response is written: any size, constant memory.
        ("POST" | "PUT", "/echo") => Response::new(req.into_body()),
        ("GET", "/stream") => text(Body::from_reader(Ticker { sent: 0 })),
        ("GET", "/slow") => {
            green::sleep(SLOW);
            text(Body::from("slow hello\n"))
        }
        _ => {
            let mut response = text(Body::from("not found\n"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
}

fn text(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// A body of unknown length (sent chunked): a line every [`STREAM_PAUSE`]. Its `read` blocks
/// only its own greenlet.
struct Ticker {
    sent: usize,
}

impl Read for Ticker {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.sent == STREAM_LINES {
            return Ok(0);
        }
        green::sleep(STREAM_PAUSE);
        self.sent += 1;
        let line = format!("line {} of {STREAM_LINES}\n", self.sent);
        let n = line.len().min(buf.len());
        buf[..n].copy_from_slice(&line.as_bytes()[..n]);
        Ok(n)
    }
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut addr = DEFAULT_ADDR.to_string();
    let mut workers = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workers" => {
                workers = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| io::Error::other("--workers takes a number"))?;
            }
            other => addr = other.to_string(),
        }
    }
    let server = Server::bind(addr.as_str())?;
    println!(
        "serving http://{} on {workers} thread(s)",
        server.local_addr()?
    );
    if workers > 1 {
        server.workers(workers, handle)?.wait();
        Ok(())
    } else {
        server.serve(handle)
    }
}
