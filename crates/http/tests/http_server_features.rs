//! What a server needs beyond one request at a time: several threads, handlers returning
//! `Result`, file bodies, protocol upgrades, and making room when descriptors run out.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use green::http::server::{Body, Server, ServerHandle};
use green::http::{header, Request, Response, StatusCode};
use green::net::TcpStream;

fn local() -> Server {
    Server::bind("127.0.0.1:0").expect("bind")
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "reading to close: {e}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until `end` has appeared `count` times.
fn read_until(stream: &mut TcpStream, end: &str, count: usize) -> String {
    let mut out = String::new();
    let mut buf = [0; 8192];
    while out.matches(end).count() < count {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "closed early: {out:?}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    out
}

/// Log records of this test binary, for the tests that check what the server logs.
fn logged() -> &'static Mutex<Vec<String>> {
    struct Capture;
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            let line = format!("{} {}", record.level(), record.args());
            LINES.get_or_init(Mutex::default).lock().unwrap().push(line);
        }
        fn flush(&self) {}
    }
    static LOGGER: Capture = Capture;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    LINES.get_or_init(Mutex::default)
}

#[test]
fn workers_serve_on_several_threads_and_stop_joins_them() {
    let threads: Arc<Mutex<HashSet<String>>> = Arc::default();
    let seen = threads.clone();
    let workers = local()
        .workers(2, move |_req: Request<Body>| {
            let name = std::thread::current().name().unwrap_or("?").to_string();
            seen.lock().unwrap().insert(name.clone());
            Response::new(Body::from(name))
        })
        .unwrap();
    let addr = workers.local_addr();
    let started = Instant::now();
    while threads.lock().unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "connections all went to one worker: {threads:?}"
        );
        let mut stream = connect(addr);
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let reply = read_to_close(&mut stream);
        assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
        assert!(reply.contains("green-http-worker-"), "{reply}");
    }
    assert!(workers.stop(Duration::from_secs(1)));
    assert!(
        TcpStream::connect(addr).is_err(),
        "stopped workers closed their listeners"
    );
}

#[test]
fn handler_error_is_500_logged_and_the_connection_stays_open() {
    let log = logged();
    let server = local()
        .start(|req: Request<Body>| -> Result<Response<Body>, String> {
            match req.uri().path() {
                "/fail" => Err("the database is on fire (handler_error test)".into()),
                _ => Ok(Response::new(Body::from("fine"))),
            }
        })
        .unwrap();
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let replies = read_to_close(&mut stream);
    assert!(replies.starts_with("HTTP/1.1 500 "), "{replies}");
    assert!(
        !replies.contains("database"),
        "the error stays in the log: {replies}"
    );
    assert!(
        replies.contains("HTTP/1.1 200 OK") && replies.ends_with("fine"),
        "{replies}"
    );
    let lines = log.lock().unwrap();
    assert!(
        lines.iter().any(|l| l.starts_with("ERROR")
            && l.contains("the database is on fire (handler_error test)")
            && l.contains("127.0.0.1")),
        "logged: {lines:?}"
    );
    drop(lines);
    server.stop(Duration::from_secs(1));
}

#[test]
fn file_body_is_sent_with_content_length() {
    let path = std::env::temp_dir().join(format!("green-http-file-body-{}", std::process::id()));
    let contents: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &contents).unwrap();
    let served = path.clone();
    let server = local()
        .start(move |_req: Request<Body>| {
            Body::from_file(std::fs::File::open(&served)?).map(Response::new)
        })
        .unwrap();
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let head_end = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&reply[..head_end]).to_ascii_lowercase();
    assert!(head.contains("content-length: 100000\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(reply[head_end..] == contents[..], "the file's bytes");
    std::fs::remove_file(&path).unwrap();
    server.stop(Duration::from_secs(1));
}

/// A 101 answer whose upgrade echoes in upper case.
fn upper_echo(req: Request<Body>) -> Response<Body> {
    let protocol = req.headers().get(header::UPGRADE).cloned();
    let mut response = Response::new(Body::upgrade(|mut conn| {
        let mut buf = [0; 64];
        while let Ok(n @ 1..) = conn.read(&mut buf) {
            if conn.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                break;
            }
        }
    }));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, "upgrade".parse().unwrap());
    if let Some(protocol) = protocol {
        headers.insert(header::UPGRADE, protocol);
    }
    response
}

fn start(server: Server, handler: fn(Request<Body>) -> Response<Body>) -> ServerHandle {
    server.start(handler).unwrap()
}

#[test]
fn switching_protocols_hands_the_connection_over_with_early_bytes() {
    let server = start(local(), upper_echo);
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: shout\r\n\r\nsent early ")
        .unwrap();
    let head = read_until(&mut stream, "SENT EARLY ", 1);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: shout\r\n"), "{head}");
    assert!(
        !lower.contains("content-length") && !lower.contains("transfer-encoding"),
        "{head}"
    );
    stream.write_all(b"and later").unwrap();
    assert_eq!(read_until(&mut stream, "AND LATER", 1), "AND LATER");
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        read_to_close(&mut stream),
        "",
        "closed when the upgrade returns"
    );
    server.stop(Duration::from_secs(1));
}

#[test]
fn switching_protocols_without_an_upgrade_request_is_500() {
    let server = start(local(), upper_echo);
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = read_to_close(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 500 "), "{reply}");
    server.stop(Duration::from_secs(1));
}

#[test]
fn websocket_shares_the_http_port() {
    use tungstenite::handshake::derive_accept_key;
    use tungstenite::protocol::{Role, WebSocket};
    let server = local()
        .start(|req: Request<Body>| {
            if req.uri().path() != "/ws" {
                return Response::new(Body::from("a page"));
            }
            let key = req.headers()[header::SEC_WEBSOCKET_KEY].as_bytes();
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "websocket")
                .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key))
                .body(Body::upgrade(|conn| {
                    let mut ws = WebSocket::from_raw_socket(conn, Role::Server, None);
                    while let Ok(message) = ws.read() {
                        if message.is_text() && ws.send(message).is_err() {
                            break;
                        }
                    }
                }))
                .unwrap()
        })
        .unwrap();
    let addr = server.local_addr();
    let (mut ws, response) =
        tungstenite::client(format!("ws://{addr}/ws"), connect(addr)).expect("handshake");
    assert_eq!(response.status(), 101);
    ws.send(tungstenite::Message::text("ping over http"))
        .unwrap();
    assert_eq!(
        ws.read().unwrap().into_text().unwrap().as_str(),
        "ping over http"
    );
    ws.close(None).unwrap();
    let page = green::http::get(format!("http://{addr}/"))
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(page, "a page");
    server.stop(Duration::from_secs(1));
}

const EMFILE_CHILD: &str = "GREEN_HTTP_TEST_EMFILE_CHILD";

/// Lowers the soft limit on open descriptors.
fn limit_open_files(limit: u64) {
    let mut rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rlimit` is a valid, writable rlimit for the call to fill in.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlimit) },
        0
    );
    rlimit.rlim_cur = limit.min(rlimit.rlim_max);
    // SAFETY: `rlimit` is a valid rlimit read by the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) }, 0);
}

/// The child's half of the descriptor-exhaustion test: a process of its own, since it uses up
/// the process's descriptors.
fn idle_connections_make_room_child() {
    const IDLE: usize = 6;
    let server = local()
        .start(|req: Request<Body>| Response::new(Body::from(req.uri().path().to_string())))
        .unwrap();
    let addr = server.local_addr();
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| {
            let mut stream = connect(addr);
            let request = format!("GET /idle{i} HTTP/1.1\r\nHost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).unwrap();
            read_until(&mut stream, &format!("/idle{i}"), 1);
            green::sleep(Duration::from_millis(5));
            stream
        })
        .collect();
    limit_open_files(512);
    let mut hoard = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hoard.push(file),
            Err(err) if err.raw_os_error() == Some(libc::EMFILE) => break,
            Err(err) => panic!("unexpected open error: {err}"),
        }
    }
    // One descriptor for the new client's socket; the server's accept then has none.
    hoard.pop();
    let started = Instant::now();
    let mut newcomer = connect(addr);
    newcomer
        .write_all(b"GET /new HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = read_to_close(&mut newcomer);
    assert!(
        reply.starts_with("HTTP/1.1 200 ") && reply.ends_with("/new"),
        "{reply}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "served by making room, not by a timeout: {:?}",
        started.elapsed()
    );
    // The connection idle longest made room; the most recent one still works.
    assert_eq!(
        read_to_close(&mut idle[0]),
        "",
        "the oldest idle connection was closed"
    );
    let last = idle.last_mut().unwrap();
    last.write_all(b"GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_to_close(last).ends_with("/again"));
    drop(hoard);
    server.stop(Duration::from_secs(1));
}

#[test]
fn out_of_descriptors_closes_the_oldest_idle_connections_to_make_room() {
    if std::env::var_os(EMFILE_CHILD).is_some() {
        idle_connections_make_room_child();
        return;
    }
    let test = "out_of_descriptors_closes_the_oldest_idle_connections_to_make_room";
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(EMFILE_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test:\n{stdout}"
    );
}
