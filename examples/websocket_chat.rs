//! A WebSocket chat room on green's HTTP server: the page at `/` and its socket at `/ws` share
//! one port. Every text a client sends is broadcast to every connected client; each connection
//! is a greenlet reading and a greenlet writing, all on one OS thread. The handler answers the
//! WebSocket handshake with `101 Switching Protocols` and takes the connection over with
//! `Body::upgrade`; tungstenite, unchanged, speaks the protocol on it.
//!
//! Run: `cargo run --example websocket_chat [-- 127.0.0.1:16001]`
//! Then open http://127.0.0.1:16001/ in a few browser tabs, or connect clients with e.g.
//! `websocat ws://127.0.0.1:16001/ws` in several terminals.
//!
//! Or run a self-contained demo that starts the server and N clients in this process, lets every
//! client say hello, checks that everyone heard everyone and exits:
//! `cargo run --example websocket_chat -- --demo 50`

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use green::http::server::{Body, Server, ServerHandle, Upgraded};
use green::http::{header, Request, Response, StatusCode};
use green::net::TcpStream;
use green::sync::{Event, Queue};
use green::Greenlet;
use tungstenite::handshake::server::create_response_with_body;
use tungstenite::handshake::HandshakeRole;
use tungstenite::protocol::Role;
use tungstenite::{Error as WsError, HandshakeError, Message, WebSocket};

/// The address served when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:16001";

/// The chat page: connects to `/ws` on the host it came from.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>green chat</title>
<pre id="log"></pre>
<form id="form"><input id="text" autofocus autocomplete="off"><button>send</button></form>
<script>
const log = document.getElementById("log");
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onmessage = (event) => { log.textContent += event.data + "\n"; };
ws.onclose = () => { log.textContent += "(disconnected)\n"; };
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const text = document.getElementById("text");
  ws.send(text.value);
  text.value = "";
};
</script>
"#;

/// tungstenite's error is large; boxed, results stay small.
type WsResult<T> = Result<T, Box<WsError>>;

/// What a member's writer greenlet is asked to do.
enum Outgoing {
    Send(Message),
    Stop,
}

/// The connected clients: one outbox per member, filled by broadcasts, emptied by its writer.
#[derive(Default)]
struct Room {
    next_id: Cell<u64>,
    members: RefCell<Vec<(u64, Queue<Outgoing>)>>,
}

impl Room {
    fn join(self: &Rc<Room>, outbox: Queue<Outgoing>) -> Membership {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.members.borrow_mut().push((id, outbox));
        Membership {
            room: self.clone(),
            id,
        }
    }

    fn broadcast(&self, message: &Message) {
        for (_, outbox) in self.members.borrow().iter() {
            outbox.put(Outgoing::Send(message.clone()));
        }
    }
}

/// A place in the room, given up when dropped (also when the session is killed).
struct Membership {
    room: Rc<Room>,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room
            .members
            .borrow_mut()
            .retain(|(id, _)| *id != self.id);
    }
}

/// Stops a member's writer greenlet if the session ends early.
struct Writer(Greenlet<WsResult<()>>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.kill_nowait();
    }
}

/// Starts the chat server (page and socket) on `addr`; returns at once.
pub fn start(addr: &str) -> io::Result<ServerHandle> {
    let room = Rc::new(Room::default());
    Server::bind(addr)?.start(move |req: Request<Body>| route(&room, req))
}

/// `/`: the page; `/ws`: the WebSocket handshake, answered 101 with the session taking over.
fn route(room: &Rc<Room>, req: Request<Body>) -> Response<Body> {
    match req.uri().path() {
        "/" => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Body::from(PAGE))
            .expect("a valid response"),
        "/ws" => {
            let peer = *req
                .extensions()
                .get::<SocketAddr>()
                .expect("the peer address");
            // Join now, before the 101 goes out, so a client that has seen its handshake answer
            // is sure to hear every later message.
            let outbox = Queue::new();
            let membership = room.join(outbox.clone());
            let room = room.clone();
            let response = create_response_with_body(&req, move || {
                Body::upgrade(move |conn| {
                    if let Err(err) = session(&room, conn, outbox, membership) {
                        eprintln!("{peer}: {err}");
                    }
                })
            });
            response.unwrap_or_else(|err| {
                let mut response = Response::new(Body::from(format!("{err}\n")));
                *response.status_mut() = StatusCode::BAD_REQUEST;
                response
            })
        }
        _ => {
            let mut response = Response::new(Body::from("not found\n"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    }
}

/// One client, after the handshake: read and broadcast until it closes.
fn session(
    room: &Rc<Room>,
    conn: Upgraded,
    outbox: Queue<Outgoing>,
    membership: Membership,
) -> WsResult<()> {
    let peer = conn.peer_addr();
    let mut membership = Some(membership);
    let write_half = conn.try_clone().map_err(WsError::Io)?;
    let mut reader = WebSocket::from_raw_socket(conn, Role::Server, None);
    // The writer owns every data frame this session sends; the reader only answers pings and
    // the final close, after the writer has stopped.
    let writer = Writer(green::spawn({
        let outbox = outbox.clone();
        move || {
            let mut ws = WebSocket::from_raw_socket(write_half, Role::Server, None);
            while let Outgoing::Send(message) = outbox.get() {
                ws.send(message)?;
            }
            Ok(())
        }
    }));
    loop {
        match reader.read() {
            Ok(Message::Text(text)) => room.broadcast(&Message::text(format!("{peer}: {text}"))),
            Ok(Message::Close(_)) => {
                // Leave, let the writer flush what was queued, then the next read sends the
                // close reply and reports the end.
                if membership.take().is_some() {
                    outbox.put(Outgoing::Stop);
                    let _ = writer.0.wait(None);
                }
            }
            Ok(_) => {}
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return Ok(()),
            Err(err) => return Err(err.into()),
        }
    }
}

/// A handshake error as a WebSocket error. `Interrupted` only happens on non-blocking streams:
/// green streams block the greenlet instead.
fn handshake_error<R: HandshakeRole>(err: HandshakeError<R>) -> WsError {
    match err {
        HandshakeError::Failure(err) => err,
        HandshakeError::Interrupted(_) => WsError::Io(io::ErrorKind::WouldBlock.into()),
    }
}

/// What [`demo`] saw.
#[derive(Debug)]
pub struct DemoReport {
    /// Clients that took part.
    pub clients: usize,
    /// Chat messages received, over all clients.
    pub messages_received: usize,
    /// Clients that heard every client's hello exactly once.
    pub clients_that_heard_everyone: usize,
}

/// Starts a server on a free loopback port and `clients` clients (greenlets) in this thread;
/// once all are connected each says hello, reads until it has heard everyone, and closes.
pub fn demo(clients: usize) -> io::Result<DemoReport> {
    let server = start("127.0.0.1:0")?;
    let addr = server.local_addr();
    let connected = Rc::new(Cell::new(0));
    let all_connected = Event::new();
    let greenlets: Vec<Greenlet<WsResult<Vec<String>>>> = (0..clients)
        .map(|index| {
            let (connected, all_connected) = (connected.clone(), all_connected.clone());
            green::spawn(move || {
                let stream = TcpStream::connect(addr).map_err(WsError::Io)?;
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .map_err(WsError::Io)?;
                let (mut ws, _response) = tungstenite::client(format!("ws://{addr}/ws"), stream)
                    .map_err(handshake_error)?;
                connected.set(connected.get() + 1);
                if connected.get() == clients {
                    all_connected.set();
                }
                all_connected.wait();
                ws.send(Message::text(format!("hello from client {index}")))?;
                let mut heard = Vec::with_capacity(clients);
                while heard.len() < clients {
                    if let Message::Text(text) = ws.read()? {
                        heard.push(text.as_str().to_string());
                    }
                }
                ws.close(None)?;
                loop {
                    match ws.read() {
                        Ok(_) => {}
                        Err(WsError::ConnectionClosed) => return Ok(heard),
                        Err(err) => return Err(err.into()),
                    }
                }
            })
        })
        .collect();
    let mut report = DemoReport {
        clients,
        messages_received: 0,
        clients_that_heard_everyone: 0,
    };
    for result in green::joinall(greenlets) {
        let heard = result
            .map_err(|err| io::Error::other(err.to_string()))?
            .map_err(|err| io::Error::other(err.to_string()))?;
        report.messages_received += heard.len();
        let senders: BTreeSet<&str> = heard
            .iter()
            .filter_map(|line| line.split_once(": hello from client ").map(|(_, i)| i))
            .collect();
        if senders.len() == clients && heard.len() == clients {
            report.clients_that_heard_everyone += 1;
        }
    }
    server.stop(Duration::from_secs(5));
    Ok(report)
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--demo") {
        let clients = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(50);
        let report = demo(clients)?;
        println!(
            "{} clients, {} messages received, {} heard everyone",
            report.clients, report.messages_received, report.clients_that_heard_everyone
        );
        if report.clients_that_heard_everyone != clients {
            std::process::exit(1);
        }
        return Ok(());
    }
    let addr = args.first().map_or(DEFAULT_ADDR, String::as_str);
    let server = start(addr)?;
    println!(
        "chat on http://{0}/ (socket: ws://{0}/ws)",
        server.local_addr()
    );
    server.wait();
    Ok(())
}
