//! Drop-in proof: third-party blocking crates run green unchanged. tungstenite (client and
//! server), ureq 3 (through its `unversioned` Connector/Transport/Resolver API, implemented in
//! `examples/ureq_green.rs`) and `rustls::StreamOwned` are driven over green sockets, many
//! connections overlapping on one OS thread, where the same code over std sockets would serialise.

use std::cell::Cell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use green::net::{StreamServer, TcpListener, TcpStream};
use tungstenite::{Error as WsError, Message};

#[allow(dead_code)]
#[path = "../examples/ureq_green.rs"]
mod ureq_green;

/// Counts a connection open until dropped, tracking the most open at once.
struct Open {
    now: Rc<Cell<usize>>,
}

impl Open {
    fn enter(now: &Rc<Cell<usize>>, max: &Cell<usize>) -> Open {
        now.set(now.get() + 1);
        max.set(max.get().max(now.get()));
        Open { now: now.clone() }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.now.set(self.now.get() - 1);
    }
}

#[test]
fn tungstenite_200_clients_and_a_green_server_talk_concurrently_on_one_thread() {
    const CLIENTS: usize = 200;
    const MESSAGES: usize = 5;
    let test_thread = thread::current().id();
    let open = Rc::new(Cell::new(0));
    let max_open = Rc::new(Cell::new(0));
    let echoed = Rc::new(Cell::new(0));
    let closed_cleanly = Rc::new(Cell::new(0));
    let server = StreamServer::new("127.0.0.1:0", {
        let (open, max_open) = (open.clone(), max_open.clone());
        let (echoed, closed_cleanly) = (echoed.clone(), closed_cleanly.clone());
        move |stream: TcpStream, _peer| {
            assert_eq!(thread::current().id(), test_thread);
            let _open = Open::enter(&open, &max_open);
            let mut ws = tungstenite::accept(stream).expect("server handshake");
            loop {
                match ws.read() {
                    Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                        ws.send(message).expect("echo");
                        echoed.set(echoed.get() + 1);
                    }
                    Ok(_) => {}
                    Err(WsError::ConnectionClosed) => {
                        closed_cleanly.set(closed_cleanly.get() + 1);
                        return;
                    }
                    Err(err) => panic!("server read: {err}"),
                }
            }
        }
    })
    .start()
    .unwrap();
    let addr = server.local_addr();

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            green::spawn(move || {
                assert_eq!(thread::current().id(), test_thread);
                let stream = TcpStream::connect(addr).unwrap();
                let (mut ws, response) =
                    tungstenite::client(format!("ws://{addr}/echo"), stream).unwrap();
                assert_eq!(response.status(), 101);
                let mut replies = 0;
                for m in 0..MESSAGES {
                    // Keep the connection open a while so that overlap does not depend on luck.
                    green::sleep(Duration::from_millis(20));
                    let text = format!("client {i} message {m}");
                    ws.send(Message::text(text.clone())).unwrap();
                    match ws.read().unwrap() {
                        Message::Text(reply) if reply.as_str() == text => replies += 1,
                        other => panic!("client {i}: unexpected {other:?}"),
                    }
                }
                ws.close(None).unwrap();
                loop {
                    match ws.read() {
                        // The server's close reply, then the end.
                        Ok(Message::Close(_)) => {}
                        Ok(other) => panic!("client {i}: unexpected {other:?} after close"),
                        Err(WsError::ConnectionClosed) => return replies,
                        Err(err) => panic!("client {i}: {err}"),
                    }
                }
            })
        })
        .collect();
    let replies: usize = green::joinall(clients)
        .into_iter()
        .map(Result::unwrap)
        .sum();

    assert!(server.stop(Duration::from_secs(5)), "handlers finished");
    assert_eq!(replies, CLIENTS * MESSAGES);
    assert_eq!(echoed.get(), CLIENTS * MESSAGES);
    assert_eq!(closed_cleanly.get(), CLIENTS);
    assert_eq!(open.get(), 0);
    assert!(
        max_open.get() >= CLIENTS / 2,
        "only {} connections were open at once",
        max_open.get()
    );
}

#[test]
fn ureq_100_calls_from_greenlets_overlap_against_a_slow_server() {
    const CALLS: usize = 100;
    const DELAY: Duration = Duration::from_millis(200);
    let report = ureq_green::demo(CALLS, DELAY).unwrap();
    assert!(report.errors.is_empty(), "errors: {:?}", report.errors);
    assert_eq!(report.correct, CALLS);
    assert_eq!(report.served, CALLS);
    // Sequential calls would take CALLS × 200 ms = 20 s.
    assert!(
        report.elapsed < Duration::from_secs(5),
        "took {:?}",
        report.elapsed
    );
    assert!(
        report.max_in_flight >= CALLS / 2,
        "only {} requests were in flight at once",
        report.max_in_flight
    );
}

#[test]
fn ureq_errors_through_the_green_transport_are_ureqs_own() {
    let agent = ureq_green::agent(
        ureq::config::Config::builder()
            .timeout_global(Some(Duration::from_millis(300)))
            .build(),
    );
    // A green socket deadline (set from ureq's remaining budget) surfaces as ureq's timeout.
    let (slow, stats) =
        ureq_green::start_slow_server("127.0.0.1:0", Duration::from_secs(3)).unwrap();
    let started = Instant::now();
    let timed_out = agent
        .get(format!("http://127.0.0.1:{}/", slow.local_addr().port()))
        .call();
    assert!(
        matches!(timed_out, Err(ureq::Error::Timeout(_))),
        "{timed_out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !slow.stop(Duration::ZERO),
        "the slow handler was still sleeping"
    );
    assert_eq!(stats.served.get(), 0);

    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    match agent.get(format!("http://127.0.0.1:{closed_port}/")).call() {
        Err(ureq::Error::Io(err)) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected connection refused, got {other:?}"),
    }
}

/// A self-signed certificate for `localhost` and client and server configs trusting it.
fn tls_configs() -> (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(client), Arc::new(server))
}

#[test]
fn rustls_stream_owned_runs_over_green_tcp_with_client_and_server_greenlets() {
    const ROUNDS: usize = 16;
    const SIZE: usize = 16 * 1024;
    let test_thread = thread::current().id();
    let (client_config, server_config) = tls_configs();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Both peers are greenlets on this thread: each must park (not block the thread) for the
    // other to make progress through the handshake and the echo rounds.
    let server = green::spawn(move || {
        assert_eq!(thread::current().id(), test_thread);
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(server_config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = vec![0u8; SIZE];
        let mut echoed = 0;
        for _ in 0..ROUNDS {
            tls.read_exact(&mut buf).unwrap();
            buf.iter_mut().for_each(|b| *b = b.wrapping_add(1));
            tls.write_all(&buf).unwrap();
            echoed += buf.len();
        }
        // The client's close_notify arrives as a clean end of stream.
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        echoed
    });
    let client = green::spawn(move || {
        assert_eq!(thread::current().id(), test_thread);
        let tcp = TcpStream::connect(addr).unwrap();
        let conn =
            rustls::ClientConnection::new(client_config, "localhost".try_into().unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut received = 0;
        let mut reply = vec![0u8; SIZE];
        for round in 0..ROUNDS {
            let message: Vec<u8> = (0..SIZE).map(|i| (i + round) as u8).collect();
            tls.write_all(&message).unwrap();
            tls.read_exact(&mut reply).unwrap();
            assert!(reply
                .iter()
                .zip(&message)
                .all(|(r, m)| *r == m.wrapping_add(1)));
            received += reply.len();
        }
        let protocol = tls.conn.protocol_version();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        (received, protocol)
    });

    let (received, protocol) = client.join().unwrap();
    let echoed = server.join().unwrap();
    assert_eq!(received, ROUNDS * SIZE);
    assert_eq!(echoed, ROUNDS * SIZE);
    assert_eq!(protocol, Some(rustls::ProtocolVersion::TLSv1_3));
}
