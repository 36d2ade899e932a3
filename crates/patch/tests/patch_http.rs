//! green::patch with HTTP and WebSocket clients that use std's `TcpStream` themselves, unchanged:
//! `ureq`'s default agent (its std transport) and `tungstenite::connect`. Their peers are std
//! servers on plain threads (which the patch leaves alone) that hold every reply 200 ms, so
//! overlap shows in the wall time.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tungstenite::Message;

mod common;
use common::ms;
use common::services::Budget;

const HOLD: Duration = Duration::from_millis(200);

/// Counts requests in flight and the most seen at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A thread-per-connection std HTTP/1.1 server that answers every request with its path after
/// holding it [`HOLD`], then closes the connection.
fn start_slow_http_server() -> (SocketAddr, Arc<InFlight>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let in_flight = Arc::new(InFlight::default());
    let counter = in_flight.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let counter = counter.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if header == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                counter.enter();
                thread::sleep(HOLD);
                counter.leave();
                let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{path}",
                    path.len()
                );
            });
        }
    });
    (addr, in_flight)
}

#[test]
fn ureq_default_agent_100_gets_held_200ms_each_overlap_on_one_thread() {
    assert!(
        green::patch::all(),
        "green::patch::all() must turn the hooks on"
    );
    let (addr, in_flight) = start_slow_http_server();
    let agent = ureq::Agent::new_with_defaults();
    let budget = Budget::new(ms(6_000));
    let getters: Vec<_> = (0..100)
        .map(|i| {
            let agent = agent.clone();
            green::spawn(move || -> Result<String, String> {
                if budget.spent() {
                    return Err("budget spent before the GET ran".into());
                }
                let mut response = agent
                    .get(format!("http://{addr}/page/{i}"))
                    .call()
                    .map_err(|e| e.to_string())?;
                response
                    .body_mut()
                    .read_to_string()
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let bodies = green::joinall(getters);
    let elapsed = budget.elapsed();
    for (i, body) in bodies.into_iter().enumerate() {
        assert_eq!(body.unwrap(), Ok(format!("/page/{i}")));
    }
    let max_in_flight = in_flight.max.load(Ordering::SeqCst);
    assert!(elapsed >= HOLD, "{elapsed:?}");
    // One after another they take 20 s. A loaded machine running a debug build may need a few
    // milliseconds of CPU to issue each GET, which caps how many are in flight at once.
    assert!(
        elapsed < ms(4_000),
        "100 GETs held 200 ms each took {elapsed:?} ({max_in_flight} at most in flight)"
    );
    assert!(
        max_in_flight >= 10,
        "only {max_in_flight} GETs were in flight at once ({elapsed:?})"
    );
}

/// A thread-per-connection std WebSocket server that echoes every text message after holding
/// it [`HOLD`].
fn start_slow_websocket_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(stream) else {
                    return;
                };
                while let Ok(message) = ws.read() {
                    if let Message::Text(text) = message {
                        thread::sleep(HOLD);
                        if ws.send(Message::Text(text)).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn tungstenite_connect_over_std_tcp_in_20_greenlets_overlaps_on_one_thread() {
    assert!(
        green::patch::all(),
        "green::patch::all() must turn the hooks on"
    );
    let addr = start_slow_websocket_echo_server();
    let budget = Budget::new(ms(4_000));
    let clients: Vec<_> = (0..20)
        .map(|i| {
            green::spawn(move || -> Result<String, String> {
                if budget.spent() {
                    return Err("budget spent before the client ran".into());
                }
                let (mut ws, response) =
                    tungstenite::connect(format!("ws://{addr}/echo")).map_err(|e| e.to_string())?;
                assert_eq!(response.status(), 101);
                ws.send(Message::text(format!("hello {i}")))
                    .map_err(|e| e.to_string())?;
                let reply = ws.read().map_err(|e| e.to_string())?;
                let _ = ws.close(None);
                Ok(reply.into_text().map_err(|e| e.to_string())?.to_string())
            })
        })
        .collect();
    let replies = green::joinall(clients);
    let elapsed = budget.elapsed();
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap(), Ok(format!("hello {i}")));
    }
    assert!(elapsed >= HOLD, "{elapsed:?}");
    assert!(
        elapsed < ms(2_000),
        "20 echoes held 200 ms each took {elapsed:?} (4 s in a row)"
    );
}
