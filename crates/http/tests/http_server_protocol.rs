//! The server's protocol rules, each with the raw bytes a hostile-input run found it answering
//! wrongly: Host values, CONNECT, request-target forms, later HTTP/1.x versions and timeouts too
//! large to add to a clock.

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use green::http::server::{Body, Server, ServerHandle};
use green::http::{Request, Response};
use green::net::TcpStream;

fn local() -> Server {
    Server::bind("127.0.0.1:0").expect("bind")
}

/// A server whose handler answers `path` and counts its calls.
fn counting_server(server: Server) -> (ServerHandle, Rc<Cell<usize>>) {
    let calls = Rc::new(Cell::new(0));
    let counted = calls.clone();
    let handle = server
        .start(move |req: Request<Body>| {
            counted.set(counted.get() + 1);
            Response::new(Body::from(format!("path {}", req.uri())))
        })
        .expect("server starts");
    (handle, calls)
}

fn connect(server: &ServerHandle) -> TcpStream {
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Sends `request` on a fresh connection and reads until the server closes it.
fn raw(server: &ServerHandle, request: &[u8]) -> String {
    let mut stream = connect(server);
    stream.write_all(request).unwrap();
    read_to_close(&mut stream)
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

/// Reads until `n` complete `HTTP/1.1 200` responses with a body ending in `end` have come.
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

fn has_header(reply: &str, name: &str) -> bool {
    let head = reply.split("\r\n\r\n").next().unwrap_or("");
    head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
    })
}

#[test]
fn invalid_host_values_get_400() {
    let (server, calls) = counting_server(local());
    for host in ["a b", "a/b", "[::1", "u@h", "h:8x", "a\\b"] {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let reply = raw(&server, request.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 400 "), "Host: {host}: {reply}");
        assert!(reply.contains("invalid Host"), "{reply}");
    }
    // HTTP/1.0 need not send Host, but one it sends is checked too.
    let reply = raw(&server, b"GET / HTTP/1.0\r\nHost: a/b\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert_eq!(calls.get(), 0);
    server.stop(Duration::from_secs(1));
}

#[test]
fn valid_host_values_reach_the_handler() {
    let (server, calls) = counting_server(local());
    for host in [
        "example.com",
        "example.com:8080",
        "[::1]:80",
        "127.0.0.1",
        "",
    ] {
        let request = format!("GET /ok HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let reply = raw(&server, request.as_bytes());
        assert!(
            reply.starts_with("HTTP/1.1 200 "),
            "Host: {host:?}: {reply}"
        );
    }
    assert_eq!(calls.get(), 5);
    server.stop(Duration::from_secs(1));
}

#[test]
fn connect_gets_405_unless_the_server_allows_it() {
    let (server, calls) = counting_server(local());
    let reply = raw(
        &server,
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 405 "), "{reply}");
    assert!(
        has_header(&reply, "allow"),
        "a 405 says what is allowed: {reply}"
    );
    assert!(reply.contains("connection: close"), "{reply}");
    assert_eq!(calls.get(), 0);
    server.stop(Duration::from_secs(1));
}

#[test]
fn allowed_connect_2xx_has_no_content_length_and_ends_http() {
    let (server, calls) = counting_server(local().allow_connect(true));
    let mut stream = connect(&server);
    stream
        .write_all(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_to_close(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(!has_header(&reply, "content-length"), "{reply}");
    assert!(!has_header(&reply, "transfer-encoding"), "{reply}");
    assert!(
        reply.ends_with("\r\n\r\n"),
        "no body, no second response: {reply}"
    );
    assert_eq!(calls.get(), 1);
    // CONNECT's target must be host:port.
    let reply = raw(&server, b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert_eq!(calls.get(), 1);
    server.stop(Duration::from_secs(1));
}

#[test]
fn allowed_connect_tunnel_gets_the_connection() {
    let server = local()
        .allow_connect(true)
        .start(|req: Request<Body>| {
            assert_eq!(req.uri().authority().unwrap().as_str(), "db.internal:5432");
            Response::new(Body::upgrade(|mut tunnel| {
                let mut buf = [0; 64];
                while let Ok(n @ 1..) = tunnel.read(&mut buf) {
                    let upper = buf[..n].to_ascii_uppercase();
                    if tunnel.write_all(&upper).is_err() {
                        break;
                    }
                }
            }))
        })
        .unwrap();
    let mut stream = connect(&server);
    stream
        .write_all(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\nearly ")
        .unwrap();
    let head = read_until(&mut stream, "EARLY ", 1);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(!has_header(&head, "content-length"), "{head}");
    stream.write_all(b"late").unwrap();
    assert_eq!(read_until(&mut stream, "LATE", 1), "LATE");
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut stream), "");
    server.stop(Duration::from_secs(1));
}

#[test]
fn targets_in_the_wrong_form_for_their_method_get_400() {
    let (server, calls) = counting_server(local());
    for line in [
        "GET echo",
        "GET *",
        "POST *",
        "GET example.com:80",
        "GET http://u:p@host/",
        "GET http://u@host/x",
    ] {
        let request = format!("{line} HTTP/1.1\r\nHost: host\r\n\r\n");
        let reply = raw(&server, request.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 400 "), "{line}: {reply}");
    }
    assert_eq!(calls.get(), 0);
    for line in ["OPTIONS *", "GET http://host/x", "GET /x"] {
        let request = format!("{line} HTTP/1.1\r\nHost: host\r\nConnection: close\r\n\r\n");
        let reply = raw(&server, request.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 200 "), "{line}: {reply}");
    }
    assert_eq!(calls.get(), 3);
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_1_2_is_answered_as_http_1_1() {
    let (server, calls) = counting_server(local());
    let mut stream = connect(&server);
    // Keep-alive by default, as 1.1: two requests on one connection.
    stream
        .write_all(b"GET /a HTTP/1.2\r\nHost: x\r\n\r\nGET /b HTTP/1.2\r\nHost: x\r\n\r\n")
        .unwrap();
    let replies = read_until(&mut stream, "path /", 2);
    assert!(replies.starts_with("HTTP/1.1 200 "), "{replies}");
    assert!(
        replies.contains("path /a") && replies.contains("path /b"),
        "{replies}"
    );
    assert_eq!(calls.get(), 2);
    // Other majors are still not spoken.
    let reply = raw(&server, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 505 "), "{reply}");
    server.stop(Duration::from_secs(1));
}

#[test]
fn huge_timeouts_mean_no_timeout() {
    let server = local()
        .header_timeout(Duration::MAX)
        .keep_alive_timeout(Duration::MAX)
        .read_timeout(Some(Duration::MAX))
        .write_timeout(Some(Duration::MAX));
    let (server, calls) = counting_server(server);
    let mut stream = connect(&server);
    // A head in two parts (the header deadline path), a body, then a second request.
    stream.write_all(b"POST /one HTTP/1.1\r\nHo").unwrap();
    green::sleep(Duration::from_millis(50));
    stream
        .write_all(b"st: x\r\nContent-Length: 3\r\n\r\n")
        .unwrap();
    green::sleep(Duration::from_millis(50));
    stream.write_all(b"abc").unwrap();
    read_until(&mut stream, "path /one", 1);
    green::sleep(Duration::from_millis(50));
    stream
        .write_all(b"GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = read_to_close(&mut stream);
    assert!(reply.contains("path /two"), "{reply}");
    assert_eq!(calls.get(), 2);
    // The first request's deadline covers the connection's start too.
    let mut idle = connect(&server);
    green::sleep(Duration::from_millis(50));
    idle.write_all(b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_to_close(&mut idle).contains("path /three"));
    assert!(server.stop(Duration::from_secs(1)));
}
