//! gevent's `monkey.patch_all()` for Rust: after `green::patch::all()`, crates that know nothing
//! of green — the `redis` crate's sync API, ureq's default agent (std's `TcpStream`) and
//! `std::thread::sleep` itself — run concurrently in greenlets on one OS thread.
//!
//! Run: `cargo run --features patch --example patch_all -- redis://127.0.0.1:6379/`
//! (or set `GREEN_TEST_REDIS`, as scripts/services does: `scripts/services cargo run --features
//! patch --example patch_all`). Without a redis URL the redis part is skipped with a message.
//! The example starts only a small HTTP server of its own, on a plain thread, that holds each
//! reply 500 ms. Everything waits about 500 ms–1 s: together, it all takes about 1 s, not the
//! 10 s that the same calls take one after another. `GREEN_PATCH=0` shows the difference.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

const HOLD: Duration = Duration::from_millis(500);

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let patched = green::patch::all();
    println!(
        "green::patch::all(): hooks {}",
        if patched { "on" } else { "off (GREEN_PATCH=0)" }
    );
    let redis_url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("GREEN_TEST_REDIS").ok());
    let http = start_slow_http_server();
    let start = Instant::now();
    let mut greenlets = Vec::new();

    // std::thread::sleep: 5 sleeps of 500 ms.
    for i in 0..5 {
        greenlets.push(green::spawn(move || {
            thread::sleep(HOLD);
            format!("sleep {i}: slept {HOLD:?}")
        }));
    }

    // ureq's default agent over std's TcpStream: 5 GETs, each held 500 ms by the server.
    let agent = ureq::Agent::new_with_defaults();
    for i in 0..5 {
        let agent = agent.clone();
        greenlets.push(green::spawn(move || {
            match agent.get(format!("http://{http}/{i}")).call() {
                Ok(mut response) => format!(
                    "ureq {i}: {} {:?}",
                    response.status(),
                    response.body_mut().read_to_string().unwrap_or_default()
                ),
                Err(e) => format!("ureq {i}: {e}"),
            }
        }));
    }

    // The redis crate's sync API: 5 BLPOPs that wait 1 s on an empty list.
    match redis_url {
        Some(url) => {
            let client = redis::Client::open(url.as_str()).expect("a redis URL");
            for i in 0..5 {
                let client = client.clone();
                greenlets.push(green::spawn(move || {
                    let popped = client.get_connection().and_then(|mut connection| {
                        redis::cmd("BLPOP")
                            .arg("green-patch-all-example-empty")
                            .arg(1)
                            .query::<Option<(String, String)>>(&mut connection)
                    });
                    format!("redis {i}: BLPOP for 1 s gave {popped:?}")
                }));
            }
        }
        None => println!("no redis URL (argument or GREEN_TEST_REDIS): skipping the redis part"),
    }

    for line in green::joinall(greenlets) {
        println!("{}", line.expect("no greenlet panics"));
    }
    println!("all of it took {:?} on one thread", start.elapsed());
}

/// A std HTTP server on plain threads (untouched by the patch) that answers each request with its
/// path after holding it [`HOLD`].
fn start_slow_http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                thread::sleep(HOLD);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{path}",
                    path.len()
                );
            });
        }
    });
    addr
}
