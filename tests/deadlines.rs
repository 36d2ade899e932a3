//! Deadlines that hold against trickling peers, and server stops that return (issue 10).
//!
//! A "dripping" peer sends one byte every 100 ms: each byte renews a socket timeout, so only an
//! absolute deadline bounds a TLS handshake, a TLS record or an HTTP head it trickles. Every peer
//! here is real (green sockets, rustls on both sides) on loopback; the dripping is a `Drip`
//! wrapper under the TLS stream, so the bytes on the wire are a genuine handshake or record, only
//! slow. The stop tests reproduce a handler whose unwinding blocks after the grace period.

mod common;

use std::cell::Cell;
use std::io::{self, BufWriter, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::ms;
use green::http::client::Client;
use green::http::server::{Body, Server};
use green::http::Response;
use green::net::{TcpListener, TcpStream};
use green::tls::{TlsAcceptor, TlsConnector};

/// The deadline every test sets; it must hold within `3 * TIMEOUT` on a loaded machine.
const TIMEOUT: Duration = Duration::from_millis(400);
/// How often a dripping peer sends its next byte.
const DRIP_EVERY: Duration = Duration::from_millis(100);

/// Asserts that `took` is at least `TIMEOUT` (the deadline did not fire early) and well under
/// three times it (it fired, whatever the peer did).
fn assert_about_timeout(took: Duration, what: &str) {
    assert!(took >= TIMEOUT, "{what} ended early, after {took:?}");
    assert!(
        took < TIMEOUT * 3,
        "{what} took {took:?} against a {TIMEOUT:?} deadline"
    );
}

/// A stream whose writes, while `dripping` is set, send one byte every `every`.
struct Drip {
    tcp: TcpStream,
    dripping: Rc<Cell<bool>>,
    every: Duration,
}

impl Drip {
    fn new(tcp: TcpStream, dripping: bool) -> (Drip, Rc<Cell<bool>>) {
        let flag = Rc::new(Cell::new(dripping));
        let drip = Drip {
            tcp,
            dripping: flag.clone(),
            every: DRIP_EVERY,
        };
        (drip, flag)
    }
}

impl Read for Drip {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Drip {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() || !self.dripping.get() {
            return self.tcp.write(buf);
        }
        green::sleep(self.every);
        self.tcp.write(&buf[..1])
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A self-signed certificate for `localhost` and its key, as PEM.
fn certificate() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (cert.cert.pem(), cert.key_pair.serialize_pem())
}

fn connector(cert_pem: &str) -> TlsConnector {
    TlsConnector::builder()
        .add_root_certificate(cert_pem)
        .system_roots(false)
        .build()
        .unwrap()
}

/// A listener on loopback and its address.
fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A TLS server whose handshake bytes all drip.
fn server_dripping_its_handshake(acceptor: TlsAcceptor) -> (SocketAddr, green::Greenlet<()>) {
    let (listener, addr) = listen();
    let server = green::spawn(move || loop {
        let (tcp, _) = listener.accept().unwrap();
        green::spawn({
            let acceptor = acceptor.clone();
            move || drop(acceptor.accept(Drip::new(tcp, true).0))
        });
    });
    (addr, server)
}

/// Waits until `tcp` has something to read (bytes, its end, or an error) and returns when.
fn answered_at(tcp: &TcpStream) -> Instant {
    let _ = tcp.peek(&mut [0u8; 1]);
    Instant::now()
}

// ---------------------------------------------------------------------------------------------
// TlsStream

#[test]
fn tls_connect_until_holds_against_a_server_dripping_its_handshake() {
    let (cert, key) = certificate();
    let (addr, server) = server_dripping_its_handshake(TlsAcceptor::new(&cert, &key).unwrap());
    let tcp = TcpStream::connect(addr).unwrap();
    // Renewed by every byte: on its own it never fires.
    tcp.set_read_timeout(Some(ms(300))).unwrap();
    let started = Instant::now();
    let deadline = started + TIMEOUT;
    let err = connector(&cert)
        .connect_until("localhost", tcp, Some(deadline))
        .unwrap_err();
    assert_about_timeout(started.elapsed(), "the handshake");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("TLS handshake with server 'localhost' did not finish by its deadline"),
        "{message}"
    );
    server.kill();
}

#[test]
fn tls_accept_until_holds_against_a_client_dripping_its_hello() {
    let (cert, key) = certificate();
    let acceptor = TlsAcceptor::new(&cert, &key).unwrap();
    let (listener, addr) = listen();
    let client = green::spawn(move || {
        let tcp = TcpStream::connect(addr).unwrap();
        drop(connector(&cert).connect("localhost", Drip::new(tcp, true).0));
    });
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(ms(300))).unwrap();
    let started = Instant::now();
    let err = acceptor
        .accept_until(tcp, Some(started + TIMEOUT))
        .unwrap_err();
    assert_about_timeout(started.elapsed(), "the handshake");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("TLS handshake with a client did not finish by its deadline"),
        "{message}"
    );
    client.kill();
}

/// A TLS connection whose server side drips what it writes once the returned flag is set, and
/// the server greenlet, which runs `serve` on its stream.
fn tls_pair(
    serve: impl FnOnce(green::tls::TlsStream<Drip>, Rc<Cell<bool>>) + 'static,
) -> (green::tls::TlsStream<TcpStream>, green::Greenlet<()>) {
    let (cert, key) = certificate();
    let acceptor = TlsAcceptor::new(&cert, &key).unwrap();
    let (listener, addr) = listen();
    let server = green::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let (drip, dripping) = Drip::new(tcp, false);
        serve(acceptor.accept(drip).unwrap(), dripping);
    });
    let tcp = TcpStream::connect(addr).unwrap();
    let tls = connector(&cert).connect("localhost", tcp).unwrap();
    (tls, server)
}

#[test]
fn tls_read_deadline_holds_against_a_peer_dripping_a_record() {
    let (mut tls, server) = tls_pair(|mut tls, dripping| {
        dripping.set(true);
        let _ = tls.write_all(b"a record that trickles in one byte at a time");
        let _ = tls.flush();
    });
    tls.get_ref().set_read_timeout(Some(ms(300))).unwrap();
    let started = Instant::now();
    tls.set_deadline(Some(started + TIMEOUT));
    let mut buf = [0u8; 64];
    let err = tls.read(&mut buf).unwrap_err();
    assert_about_timeout(started.elapsed(), "the read");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    server.kill();
}

#[test]
fn a_tls_read_that_passed_its_deadline_can_be_retried_and_gets_the_whole_record() {
    let (mut tls, server) = tls_pair(|mut tls, dripping| {
        tls.get_mut().every = ms(10);
        dripping.set(true);
        tls.write_all(b"hello").unwrap();
        tls.flush().unwrap();
        tls.shutdown().unwrap();
    });
    // A 5-byte record is ~27 bytes on the wire: ~270 ms of dripping.
    tls.set_timeout(Some(ms(50)));
    let mut buf = [0u8; 16];
    let err = tls.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    tls.set_deadline(None);
    let mut got = Vec::new();
    tls.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello");
    server.join().unwrap();
}

#[test]
fn tls_without_a_deadline_reports_a_socket_timeout_naming_tls_and_the_server() {
    let (listener, addr) = listen();
    let silent = green::spawn(move || {
        let (_conn, _) = listener.accept().unwrap();
        green::sleep(Duration::from_secs(3600));
    });
    let (cert, _) = certificate();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(ms(100))).unwrap();
    let err = connector(&cert).connect("localhost", tcp).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("TLS handshake with server 'localhost' timed out"),
        "{message}"
    );
    assert!(!message.contains("fd "), "{message}");
    silent.kill();
}

// ---------------------------------------------------------------------------------------------
// HTTP client

fn https_client(cert: &str) -> green::http::client::ClientBuilder {
    Client::builder().tls_connector(connector(cert))
}

#[test]
fn https_client_timeout_holds_against_a_server_dripping_its_handshake() {
    let (cert, key) = certificate();
    let (addr, server) = server_dripping_its_handshake(TlsAcceptor::new(&cert, &key).unwrap());
    let client = https_client(&cert)
        .timeout(TIMEOUT)
        .read_timeout(ms(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .unwrap_err();
    assert_about_timeout(started.elapsed(), "the request");
    assert!(err.is_timeout(), "{err}");
    server.kill();
}

#[test]
fn https_client_connect_timeout_bounds_connect_and_a_dripping_handshake() {
    let (cert, key) = certificate();
    let (addr, server) = server_dripping_its_handshake(TlsAcceptor::new(&cert, &key).unwrap());
    let client = https_client(&cert)
        .connect_timeout(TIMEOUT)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .unwrap_err();
    assert_about_timeout(started.elapsed(), "the request");
    assert!(err.is_timeout() && err.is_connect(), "{err}");
    assert!(err.to_string().contains("connect timeout"), "{err}");
    server.kill();
}

/// An HTTP server (TLS with `acceptor`) that reads a request head, sends a response head at once
/// and then drips its body.
fn server_dripping_its_body(acceptor: Option<TlsAcceptor>) -> (SocketAddr, green::Greenlet<()>) {
    fn respond(mut stream: impl Read + Write, dripping: &Cell<bool>) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let body = vec![b'x'; 1000];
        let sent = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            .and_then(|()| stream.flush());
        if sent.is_ok() {
            dripping.set(true);
            let _ = stream.write_all(&body).and_then(|()| stream.flush());
        }
    }
    let (listener, addr) = listen();
    let server = green::spawn(move || loop {
        let (tcp, _) = listener.accept().unwrap();
        let acceptor = acceptor.clone();
        green::spawn(move || {
            let (drip, dripping) = Drip::new(tcp, false);
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(drip) {
                        respond(tls, &dripping);
                    }
                }
                None => respond(drip, &dripping),
            }
        });
    });
    (addr, server)
}

#[test]
fn https_client_timeout_holds_against_a_response_body_trickling() {
    let (cert, key) = certificate();
    let (addr, server) = server_dripping_its_body(Some(TlsAcceptor::new(&cert, &key).unwrap()));
    let client = https_client(&cert)
        .timeout(TIMEOUT)
        .read_timeout(ms(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .unwrap();
    let err = response.bytes().unwrap_err();
    assert_about_timeout(started.elapsed(), "the request");
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("request deadline"), "{err}");
    server.kill();
}

#[test]
fn http_client_timeout_holds_against_a_response_body_trickling() {
    let (addr, server) = server_dripping_its_body(None);
    let client = Client::builder()
        .timeout(TIMEOUT)
        .read_timeout(ms(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client
        .get(format!("http://127.0.0.1:{}/", addr.port()))
        .send()
        .unwrap();
    let err = response.bytes().unwrap_err();
    assert_about_timeout(started.elapsed(), "the request");
    assert!(err.is_timeout(), "{err}");
    server.kill();
}

// ---------------------------------------------------------------------------------------------
// HTTP server

fn ok(_: green::http::Request<Body>) -> Response<Body> {
    Response::new(Body::from("ok"))
}

#[test]
fn https_server_header_timeout_drops_a_client_dripping_its_hello() {
    let (cert, key) = certificate();
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .header_timeout(TIMEOUT)
        .tls(TlsAcceptor::new(&cert, &key).unwrap())
        .start(ok)
        .unwrap();
    let logged = logged();
    let tcp = TcpStream::connect(server.local_addr()).unwrap();
    let watch = tcp.try_clone().unwrap();
    let started = Instant::now();
    let client = green::spawn(move || {
        drop(connector(&cert).connect("localhost", Drip::new(tcp, true).0));
    });
    let took = answered_at(&watch) - started;
    assert_about_timeout(took, "the server");
    assert_eq!(
        watch.peek(&mut [0u8; 1]).unwrap_or(0),
        0,
        "closed, not answered"
    );
    // The server says which client it dropped, and why.
    let line = format!(
        "DEBUG TLS handshake error from {}: TLS handshake with a client did not finish by its \
         deadline",
        watch.local_addr().unwrap()
    );
    let lines = logged.lock().unwrap().clone();
    assert!(lines.contains(&line), "{line:?} not in {lines:?}");
    client.kill();
    server.stop(ms(100));
}

#[test]
fn https_server_header_timeout_answers_a_client_dripping_its_head() {
    let (cert, key) = certificate();
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .header_timeout(TIMEOUT)
        .tls(TlsAcceptor::new(&cert, &key).unwrap())
        .start(ok)
        .unwrap();
    let tcp = TcpStream::connect(server.local_addr()).unwrap();
    let watch = tcp.try_clone().unwrap();
    let started = Instant::now();
    let (drip, dripping) = Drip::new(tcp, false);
    let mut tls = connector(&cert).connect("localhost", drip).unwrap();
    // A TLS 1.3 server sends its session tickets after the handshake: take them first (the
    // server's header deadline runs meanwhile).
    tls.set_deadline(Some(started + TIMEOUT / 2));
    let _ = tls.read(&mut [0u8; 1]);
    tls.set_deadline(None);
    let client = green::spawn(move || {
        dripping.set(true);
        let _ = tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let _ = tls.flush();
    });
    let took = answered_at(&watch) - started;
    assert_about_timeout(took, "the server");
    assert!(watch.peek(&mut [0u8; 1]).unwrap_or(0) > 0, "answered (408)");
    client.kill();
    server.stop(ms(100));
}

#[test]
fn http_server_answers_a_client_dripping_its_head_at_the_header_timeout() {
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .header_timeout(TIMEOUT)
        .start(ok)
        .unwrap();
    let tcp = TcpStream::connect(server.local_addr()).unwrap();
    let mut watch = tcp.try_clone().unwrap();
    let started = Instant::now();
    let client = green::spawn(move || {
        let (mut drip, _) = Drip::new(tcp, true);
        let _ = drip.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    });
    let took = answered_at(&watch) - started;
    assert_about_timeout(took, "the server");
    let mut reply = [0u8; 12];
    watch.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"HTTP/1.1 408");
    client.kill();
    server.stop(ms(100));
}

#[test]
fn http_server_header_timeout_counts_from_the_connection_not_the_first_byte() {
    let timeout = Duration::from_secs(1);
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .header_timeout(timeout)
        .start(ok)
        .unwrap();
    let mut tcp = TcpStream::connect(server.local_addr()).unwrap();
    let mut watch = tcp.try_clone().unwrap();
    let started = Instant::now();
    let client = green::spawn(move || {
        // The first byte halfway through the timeout, the rest never.
        green::sleep(timeout / 2);
        let _ = tcp.write_all(b"G");
        green::sleep(Duration::from_secs(3600));
    });
    let took = answered_at(&watch) - started;
    assert!(took >= timeout, "answered after {took:?}");
    // Counted from the first byte, it would be 1.5 s or more.
    assert!(took < timeout * 7 / 5, "answered after {took:?}");
    let mut reply = [0u8; 12];
    watch.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"HTTP/1.1 408");
    client.kill();
    server.stop(ms(100));
}

// ---------------------------------------------------------------------------------------------
// Stopping servers whose handlers block while unwinding

use green::net::STOP_KILL_WAIT;
use green::net::{DatagramServer, StreamServer, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};

/// The grace period of every stop below.
const GRACE: Duration = Duration::from_millis(100);

/// Fills `stream`'s send buffers (its peer never reads), leaves more in a `BufWriter`, then
/// sleeps: a kill unwinds the sleep, and the `BufWriter`'s drop blocks flushing. Calls `stuck`
/// once the buffers are full.
fn block_in_drop_on(stream: &TcpStream, stuck: impl FnOnce()) {
    stream.set_write_timeout(Some(ms(50))).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut writer = stream;
    loop {
        match writer.write(&chunk) {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::TimedOut => break,
            Err(err) => panic!("filling the socket: {err}"),
        }
    }
    stream.set_write_timeout(None).unwrap();
    // More than the kernel can take even as the receive window grows.
    let mut out = BufWriter::with_capacity(32 << 20, stream);
    out.write_all(&vec![b'x'; 16 << 20]).unwrap();
    stuck();
    green::sleep(Duration::from_secs(3600));
}

/// Waits (green) until `done` says so.
fn wait_for(done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never happened"
        );
        green::sleep(ms(10));
    }
}

/// Runs `stop` and checks that it returned `false` (the grace period was not enough), after the
/// grace period and the kill wait, not forever.
fn assert_stop_returns(stop: impl FnOnce() -> bool) {
    let started = Instant::now();
    let finished = stop();
    let took = started.elapsed();
    assert!(!finished, "the blocked handler cannot have finished");
    assert!(
        took >= GRACE + STOP_KILL_WAIT,
        "gave up early, after {took:?}"
    );
    assert!(
        took < GRACE + STOP_KILL_WAIT + Duration::from_secs(2),
        "stop took {took:?}"
    );
}

/// A listener whose connections are accepted and held, never read.
fn sink() -> (SocketAddr, green::Greenlet<()>) {
    let (listener, addr) = listen();
    let holder = green::spawn(move || {
        let mut held = Vec::new();
        loop {
            held.push(listener.accept().unwrap().0);
        }
    });
    (addr, holder)
}

/// Every `log` record of this process, for the tests that check what a stop reported.
fn logged() -> &'static std::sync::Mutex<Vec<String>> {
    struct Capture;
    static LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            let line = format!("{} {}", record.level(), record.args());
            LOGGED.lock().unwrap().push(line);
        }
        fn flush(&self) {}
    }
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
    &LOGGED
}

#[test]
fn stream_server_stop_returns_when_a_handler_blocks_while_unwinding() {
    let logged = logged();
    let stuck = Rc::new(Cell::new(false));
    let server = StreamServer::new("127.0.0.1:0", {
        let stuck = stuck.clone();
        move |stream: TcpStream, _| block_in_drop_on(&stream, || stuck.set(true))
    })
    .start()
    .unwrap();
    let client = TcpStream::connect(server.local_addr()).unwrap();
    wait_for(|| stuck.get());
    assert_stop_returns(|| server.stop(GRACE));
    let name = format!(
        "StreamServer {}: stop abandoned 1 handler(s)",
        server.local_addr()
    );
    let lines = logged.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains(&name)),
        "{lines:?}"
    );
    // The abandoned handler ends once its flush fails.
    drop(client);
    wait_for(|| server.connections() == 0);
}

#[test]
fn datagram_server_stop_returns_when_a_handler_blocks_while_unwinding() {
    let (sink_addr, holder) = sink();
    let stuck = Rc::new(Cell::new(false));
    let server = DatagramServer::new("127.0.0.1:0", {
        let stuck = stuck.clone();
        move |_datagram| {
            let stream = TcpStream::connect(sink_addr).unwrap();
            block_in_drop_on(&stream, || stuck.set(true));
        }
    })
    .start()
    .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"go", server.local_addr()).unwrap();
    wait_for(|| stuck.get());
    assert_stop_returns(|| server.stop(GRACE));
    holder.kill();
}

#[test]
fn workers_stop_returns_when_a_handler_blocks_while_unwinding() {
    static STUCK: AtomicBool = AtomicBool::new(false);
    fn handler(stream: TcpStream, _: SocketAddr) {
        block_in_drop_on(&stream, || STUCK.store(true, Ordering::SeqCst));
    }
    let workers = StreamServer::new("127.0.0.1:0", handler)
        .workers(1)
        .unwrap();
    let client = TcpStream::connect(workers.local_addr()).unwrap();
    wait_for(|| STUCK.load(Ordering::SeqCst));
    assert_stop_returns(|| workers.stop(GRACE));
    drop(client);
}

#[test]
fn http_server_stop_returns_when_a_handler_blocks_while_unwinding() {
    let (sink_addr, holder) = sink();
    thread_local! {
        static SINK: Cell<Option<SocketAddr>> = const { Cell::new(None) };
        static STUCK: Cell<bool> = const { Cell::new(false) };
    }
    SINK.set(Some(sink_addr));
    fn handler(_: green::http::Request<Body>) -> Response<Body> {
        let stream = TcpStream::connect(SINK.get().unwrap()).unwrap();
        block_in_drop_on(&stream, || STUCK.set(true));
        Response::new(Body::from("never"))
    }
    let server = Server::bind("127.0.0.1:0").unwrap().start(handler).unwrap();
    let mut client = TcpStream::connect(server.local_addr()).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    wait_for(|| STUCK.get());
    assert_stop_returns(|| server.stop(GRACE));
    holder.kill();
}
