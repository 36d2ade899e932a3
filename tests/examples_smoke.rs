//! Smoke tests for the examples. Each example keeps its logic in `pub fn`s and only parses
//! arguments in `main`, so these tests compile the example files as modules (`#[path]`) and call
//! that logic directly: `cargo test --test examples_smoke` does not build example binaries, and
//! `cargo run --example` per test would be slow. The port forwarder's SIGTERM drain needs a
//! process of its own to signal: the test re-runs this test binary filtered to
//! `portforwarder_child_process`, which serves only when the test passes it its settings through
//! an environment variable (run normally, that test returns at once).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use green::net::{StreamServer, TcpStream};

#[allow(dead_code)]
#[path = "../examples/echoserver.rs"]
mod echoserver;
#[allow(dead_code)]
#[path = "../examples/http_server.rs"]
mod http_server;
#[allow(dead_code)]
#[path = "../examples/portforwarder.rs"]
mod portforwarder;
#[allow(dead_code)]
#[path = "../examples/udp_client.rs"]
mod udp_client;
#[allow(dead_code)]
#[path = "../examples/udp_server.rs"]
mod udp_server;
#[allow(dead_code)]
#[path = "../examples/websocket_chat.rs"]
mod websocket_chat;

#[test]
fn echoserver_greets_and_echoes_lines_for_concurrent_clients() {
    const CLIENTS: usize = 20;
    let server = echoserver::start("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            green::spawn(move || {
                let stream = TcpStream::connect(addr).unwrap();
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                assert!(line.starts_with("Welcome"), "{line:?}");
                let mut echoed = 0;
                for n in 0..3 {
                    let sent = format!("client {i} line {n}\n");
                    (&stream).write_all(sent.as_bytes()).unwrap();
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    assert_eq!(line, sent);
                    echoed += 1;
                }
                (&stream).write_all(b"quit\r\n").unwrap();
                line.clear();
                assert_eq!(reader.read_line(&mut line).unwrap(), 0, "closed after quit");
                echoed
            })
        })
        .collect();
    let echoed: usize = green::joinall(clients)
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(echoed, CLIENTS * 3);
    assert!(server.stop(Duration::from_secs(5)));
    assert_eq!(server.accepted(), CLIENTS as u64);
}

#[test]
fn udp_server_answers_every_udp_client_concurrently() {
    const CLIENTS: usize = 50;
    let server = udp_server::server("127.0.0.1:0").start().unwrap();
    let addr = server.local_addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            green::spawn(move || {
                let message = format!("datagram {i}");
                let reply =
                    udp_client::request(addr, message.as_bytes(), Duration::from_secs(5)).unwrap();
                assert_eq!(reply, udp_server::reply_to(message.as_bytes()));
            })
        })
        .collect();
    let answered = green::joinall(clients)
        .into_iter()
        .filter(Result::is_ok)
        .count();
    assert_eq!(answered, CLIENTS);
    assert!(server.stop(Duration::from_secs(5)));
}

#[test]
fn udp_client_times_out_without_a_server() {
    let socket = green::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = socket.local_addr().unwrap();
    let started = Instant::now();
    let err = udp_client::request(silent, b"anyone?", Duration::from_millis(200)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn websocket_chat_demo_every_client_hears_every_client() {
    const CLIENTS: usize = 30;
    let report = websocket_chat::demo(CLIENTS).unwrap();
    assert_eq!(report.clients, CLIENTS);
    assert_eq!(report.messages_received, CLIENTS * CLIENTS);
    assert_eq!(report.clients_that_heard_everyone, CLIENTS);
}

#[test]
fn websocket_chat_serves_its_page_on_the_socket_port() {
    let server = websocket_chat::start("127.0.0.1:0").unwrap();
    let page = green::http::get(format!("http://{}/", server.local_addr()))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains("new WebSocket(`ws://${location.host}/ws`)"),
        "{page}"
    );
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_server_example_answers_every_route() {
    let server = green::http::server::Server::bind("127.0.0.1:0")
        .unwrap()
        .start(http_server::handle)
        .unwrap();
    let url = |path: &str| format!("http://{}{path}", server.local_addr());
    let hello = green::http::get(url("/")).unwrap();
    assert_eq!(hello.headers()["content-type"], "text/plain");
    assert_eq!(hello.text().unwrap(), "Hello, World!");
    let json: serde_json::Value =
        serde_json::from_str(&green::http::get(url("/json")).unwrap().text().unwrap()).unwrap();
    assert_eq!(json["message"], "Hello, World!");
    let echoed = green::http::client::Client::new()
        .post(url("/echo"))
        .body(vec![7u8; 100_000])
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(echoed.len(), 100_000);
    let started = Instant::now();
    let slow = green::spawn({
        let url = url("/slow");
        move || green::http::get(url).unwrap().text().unwrap()
    });
    let lines = green::http::get(url("/stream")).unwrap().text().unwrap();
    assert_eq!(lines.lines().count(), http_server::STREAM_LINES, "{lines}");
    assert_eq!(slow.join().unwrap(), "slow hello\n");
    assert!(started.elapsed() >= http_server::SLOW);
    let missing = green::http::get(url("/nowhere")).unwrap();
    assert_eq!(missing.status(), 404);
    server.stop(Duration::from_secs(1));
}

/// Set by the SIGTERM tests for the child process they start: `TARGET_ADDR,GRACE_MS`.
const CHILD_ENV: &str = "GREEN_TEST_PORTFORWARDER_CHILD";

/// Not a test of its own: the body of the child process the SIGTERM tests start. It runs the
/// port forwarder until SIGTERM and reports the drain on stdout.
#[test]
fn portforwarder_child_process() {
    let Ok(settings) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (target, grace_ms) = settings.split_once(',').expect("TARGET,GRACE_MS");
    let grace = Duration::from_millis(grace_ms.parse().expect("GRACE_MS"));
    let drained = portforwarder::run("127.0.0.1:0", target, grace, |addr| {
        println!("LISTENING {addr}");
        io::stdout().flush().unwrap();
    })
    .unwrap();
    println!(
        "DRAINED signal={} open={} finished={}",
        drained.signal, drained.open_at_signal, drained.finished_in_grace
    );
    io::stdout().flush().unwrap();
}

/// The forwarder child process, killed if a test fails while it runs.
struct Forwarder {
    child: Child,
    lines: green::xchan::Receiver<String>,
    addr: SocketAddr,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Forwarder {
    /// Starts the child forwarding to `target` and waits until it listens.
    fn start(target: SocketAddr, grace: Duration) -> Forwarder {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "portforwarder_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{target},{}", grace.as_millis()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Plain threads read the pipes and hand the lines to this hub.
        let (tx, lines) = green::xchan::channel();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for pipe in [stdout, stderr] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        let mut forwarder = Forwarder {
            child,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let listening = forwarder.wait_for_line("LISTENING ");
        forwarder.addr = listening["LISTENING ".len()..].parse().unwrap();
        forwarder
    }

    /// The rest of the first line containing `prefix`, from `prefix` on, within 10 s (the test
    /// harness may print `test ... ` before it on the same line).
    fn wait_for_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = line.find(prefix) {
                        return line[at..].to_string();
                    }
                }
                Err(err) => panic!("no line with {prefix:?} from the forwarder: {err}"),
            }
        }
    }

    fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions; the pid is
        // our child, not yet reaped (reaping happens in `wait_exit` or `Drop`).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// Waits (greenly) up to 10 s for the child to exit and returns whether it succeeded.
    fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "the forwarder did not exit");
            green::sleep(Duration::from_millis(20));
        }
    }

    /// Once the listener has closed, a new connection is refused.
    fn wait_until_refusing(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(self.addr) {
                Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => return,
                _ => {
                    assert!(Instant::now() < deadline, "the forwarder kept accepting");
                    green::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// A green echo server on this thread's hub: copies until the client half-closes.
fn echo_target() -> green::net::ServerHandle {
    StreamServer::new("127.0.0.1:0", |stream: TcpStream, _peer| {
        let _ = io::copy(&mut &stream, &mut &stream);
    })
    .start()
    .unwrap()
}

fn round_trip(stream: &TcpStream, message: &[u8]) -> Vec<u8> {
    (&*stream).write_all(message).unwrap();
    let mut reply = vec![0; message.len()];
    (&*stream).read_exact(&mut reply).unwrap();
    reply
}

#[test]
fn portforwarder_on_sigterm_stops_accepting_and_lets_open_connections_finish() {
    let echo = echo_target();
    let mut forwarder = Forwarder::start(echo.local_addr(), Duration::from_secs(10));
    let client = TcpStream::connect(forwarder.addr).unwrap();
    assert_eq!(round_trip(&client, b"before"), b"before");

    forwarder.terminate();
    forwarder.wait_for_line("signal 15: draining 1 connection");
    forwarder.wait_until_refusing();
    // Draining: the open connection still forwards both ways, and the process waits for it.
    assert_eq!(round_trip(&client, b"during drain"), b"during drain");
    assert!(forwarder.child.try_wait().unwrap().is_none());

    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    (&client).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let drained = forwarder.wait_for_line("DRAINED ");
    assert_eq!(drained, "DRAINED signal=15 open=1 finished=true");
    assert!(forwarder.wait_exit(), "the forwarder exits successfully");
    assert!(echo.stop(Duration::from_secs(5)));
}

#[test]
fn portforwarder_closes_connections_still_open_when_the_grace_period_ends() {
    let echo = echo_target();
    let mut forwarder = Forwarder::start(echo.local_addr(), Duration::from_millis(300));
    let client = TcpStream::connect(forwarder.addr).unwrap();
    assert_eq!(round_trip(&client, b"hello"), b"hello");

    let signalled = Instant::now();
    forwarder.terminate();
    let drained = forwarder.wait_for_line("DRAINED ");
    assert_eq!(drained, "DRAINED signal=15 open=1 finished=false");
    assert!(signalled.elapsed() >= Duration::from_millis(300));
    // Both greenlets of the connection were killed: the client sees the end of the stream.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    (&client).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(forwarder.wait_exit(), "the forwarder exits successfully");
    assert!(echo.stop(Duration::from_secs(5)));
}
