//! `green::http::server::Server` against curl and against raw green sockets: keep-alive, bodies in both
//! framings, 100-continue, HEAD, limits, timeouts, panics, graceful stop and concurrency.

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use green::http::proto::ProtoError;
use green::http::server::{Body, Server, ServerHandle};
use green::http::{header, Request, Response, StatusCode};
use green::net::TcpStream;

// ---- helpers ----

/// Runs curl on the thread pool (the hub keeps serving meanwhile); returns (exit ok, stdout,
/// stderr).
fn curl(args: &[&str]) -> (bool, Vec<u8>, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let output = green::spawn_blocking(move || {
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(&args)
            .output()
    })
    .join()
    .expect("curl job")
    .expect("curl is installed (scripts/test installs it)");
    (
        output.status.success(),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn url(server: &ServerHandle, path: &str) -> String {
    format!("http://{}{}", server.local_addr(), path)
}

/// A handler echoing method, path and body.
fn echo(req: Request<Body>) -> Response<Body> {
    let line = format!("{} {} ", req.method(), req.uri().path());
    let body = req.into_body().into_bytes().expect("request body");
    let mut out = line.into_bytes();
    out.extend_from_slice(&body);
    Response::new(Body::from(out))
}

fn start(server: Server, handler: fn(Request<Body>) -> Response<Body>) -> ServerHandle {
    server.start(handler).expect("server starts")
}

fn local() -> Server {
    Server::bind("127.0.0.1:0").expect("bind")
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
                "reading to close: {e}; got so far {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One response read off a keep-alive connection, parsed with httparse (not our own parser).
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response; `head_only` for replies to HEAD. Leftover bytes stay in `pending`.
fn read_reply(stream: &mut TcpStream, pending: &mut Vec<u8>, head_only: bool) -> Reply {
    let mut buf = [0; 8192];
    let fill = |stream: &mut TcpStream, pending: &mut Vec<u8>, buf: &mut [u8]| {
        let n = stream.read(buf).expect("read reply");
        assert!(
            n > 0,
            "connection closed mid-reply: {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&buf[..n]);
    };
    let (status, headers, used) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut slots);
        if let httparse::Status::Complete(used) = res.parse(pending).expect("valid reply") {
            let headers = res
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect::<Vec<_>>();
            break (res.code.unwrap(), headers, used);
        }
        fill(stream, pending, &mut buf);
    };
    pending.drain(..used);
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 || status < 200 {
        return reply;
    }
    if reply.header("transfer-encoding").is_some() {
        loop {
            let line_end = loop {
                if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(stream, pending, &mut buf);
            };
            let size_text = String::from_utf8_lossy(&pending[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .expect("chunk size");
            while pending.len() < line_end + 2 + size + 2 {
                fill(stream, pending, &mut buf);
            }
            reply
                .body
                .extend_from_slice(&pending[line_end + 2..line_end + 2 + size]);
            pending.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return reply;
            }
        }
    }
    let len: usize = reply
        .header("content-length")
        .expect("a framed reply")
        .parse()
        .unwrap();
    while pending.len() < len {
        fill(stream, pending, &mut buf);
    }
    reply.body = pending.drain(..len).collect();
    reply
}

fn assert_closed(stream: &mut TcpStream, pending: &[u8]) {
    assert!(
        pending.is_empty(),
        "unexpected bytes {:?}",
        String::from_utf8_lossy(pending)
    );
    let mut buf = [0; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("connection still open: {other:?}"),
    }
}

// ---- curl ----

#[test]
fn curl_get_receives_status_headers_and_body() {
    let server = local()
        .start(|req| {
            Response::builder()
                .status(StatusCode::CREATED)
                .header("x-path", req.uri().path())
                .body(Body::from("hello from green"))
                .unwrap()
        })
        .unwrap();
    let (ok, stdout, stderr) = curl(&["-i", &url(&server, "/greeting?x=1")]);
    assert!(ok, "{stderr}");
    let text = String::from_utf8(stdout).unwrap();
    assert!(text.starts_with("HTTP/1.1 201 Created\r\n"), "{text}");
    assert!(text.contains("x-path: /greeting\r\n"), "{text}");
    assert!(text.contains("content-length: 16\r\n"), "{text}");
    assert!(text.to_lowercase().contains("\r\ndate: "), "{text}");
    assert!(text.ends_with("\r\n\r\nhello from green"), "{text}");
    assert!(server.stop(Duration::from_secs(1)));
}

#[test]
fn curl_post_body_reaches_the_handler() {
    let server = start(local(), echo);
    let (ok, stdout, stderr) = curl(&["--data-binary", "name=green&x=1", &url(&server, "/form")]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, b"POST /form name=green&x=1");
    server.stop(Duration::from_secs(1));
}

#[test]
fn curl_chunked_upload_is_decoded() {
    let dir = std::env::temp_dir().join(format!("green-http-upload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("upload.bin");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &payload).unwrap();
    let server = local()
        .start(|req| {
            assert!(req.headers().contains_key(header::TRANSFER_ENCODING));
            assert_eq!(req.body().len(), None);
            let body = req.into_body().into_bytes().unwrap();
            let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
            Response::new(Body::from(format!("{} {}", body.len(), sum)))
        })
        .unwrap();
    let data = format!("@{}", file.display());
    let (ok, stdout, stderr) = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        &url(&server, "/upload"),
    ]);
    let sum: u64 = payload.iter().map(|&b| u64::from(b)).sum();
    assert!(ok, "{stderr}");
    assert_eq!(String::from_utf8(stdout).unwrap(), format!("200000 {sum}"));
    std::fs::remove_dir_all(&dir).unwrap();
    server.stop(Duration::from_secs(1));
}

#[test]
fn curl_reuses_the_keep_alive_connection() {
    let server = start(local(), echo);
    let (ok, stdout, stderr) = curl(&["-v", &url(&server, "/a"), &url(&server, "/b")]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, b"GET /a GET /b ");
    assert!(
        stderr.contains("Re-using existing connection")
            || stderr.contains("Reusing existing connection"),
        "{stderr}"
    );
    assert_eq!(server.accepted(), 1);
    server.stop(Duration::from_secs(1));
}

#[test]
fn date_header_follows_the_clock_on_a_keep_alive_connection() {
    let server = start(local(), echo);
    let mut stream = connect(&server);
    let mut pending = Vec::new();
    let mut date = || {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let reply = read_reply(&mut stream, &mut pending, false);
        assert_eq!(reply.status, 200);
        let date = reply.header("date").expect("a Date field").to_string();
        assert!(date.len() == 29 && date.ends_with(" GMT"), "{date:?}");
        date
    };
    let first = date();
    // The server caches the formatted date for a second: a later response has a later one.
    green::sleep(Duration::from_millis(1100));
    let second = date();
    assert_ne!(first, second);
    server.stop(Duration::from_secs(1));
}

#[test]
fn curl_expect_100_continue_gets_continue_then_the_response() {
    let server = start(local(), echo);
    let big = "x".repeat(2000);
    let (ok, stdout, stderr) = curl(&[
        "-v",
        "-H",
        "Expect: 100-continue",
        "--expect100-timeout",
        "5",
        "--data-binary",
        &big,
        &url(&server, "/big"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("HTTP/1.1 100 Continue"), "{stderr}");
    assert_eq!(stdout.len(), "POST /big ".len() + 2000);
    server.stop(Duration::from_secs(1));
}

#[test]
fn curl_head_gets_headers_without_body() {
    let server = local()
        .start(|_| Response::new(Body::from(vec![b'z'; 1234])))
        .unwrap();
    let (ok, stdout, stderr) = curl(&["-I", &url(&server, "/file")]);
    assert!(ok, "{stderr}");
    let text = String::from_utf8(stdout).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("content-length: 1234\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text}");
    server.stop(Duration::from_secs(1));
}

#[test]
fn curl_receives_a_streamed_body_chunked() {
    let server = local()
        .start(|_| {
            let data: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
            Response::new(Body::from_reader(std::io::Cursor::new(data)))
        })
        .unwrap();
    let (ok, stdout, stderr) = curl(&["-v", &url(&server, "/stream")]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("transfer-encoding: chunked"), "{stderr}");
    assert_eq!(stdout.len(), 100_000);
    assert_eq!(&stdout[..3], b"abc");
    server.stop(Duration::from_secs(1));
}

#[test]
fn curl_https_through_tls_acceptor() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    let acceptor = green::tls::TlsAcceptor::new(&cert_pem, &key_pem).unwrap();
    let dir = std::env::temp_dir().join(format!("green-http-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("cert.pem");
    std::fs::write(&ca, &cert_pem).unwrap();
    let server = start(local().tls(acceptor), echo);
    let port = server.local_addr().port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca_arg = ca.display().to_string();
    let target = format!("https://localhost:{port}/secure");
    let (ok, stdout, stderr) = curl(&[
        "--cacert",
        &ca_arg,
        "--resolve",
        &resolve,
        "--data-binary",
        "tls body",
        &target,
        &target,
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, b"POST /secure tls bodyPOST /secure tls body");
    std::fs::remove_dir_all(&dir).unwrap();
    server.stop(Duration::from_secs(1));
}

// ---- raw sockets: framing and keep-alive ----

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = start(local(), echo);
    let mut stream = connect(&server);
    stream
        .write_all(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody\
              POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
              GET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut pending = Vec::new();
    let bodies: Vec<Vec<u8>> = (0..4)
        .map(|_| read_reply(&mut stream, &mut pending, false).body)
        .collect();
    assert_eq!(
        bodies,
        [&b"GET /1 "[..], b"POST /2 body", b"POST /3 abc", b"GET /4 "]
    );
    assert_closed(&mut stream, &pending);
    assert_eq!(server.accepted(), 1);
    server.stop(Duration::from_secs(1));
}

#[test]
fn unread_request_body_is_skipped_and_the_connection_reused() {
    let server = local()
        .start(|req| Response::new(Body::from(req.uri().path().to_string())))
        .unwrap();
    let mut stream = connect(&server);
    let mut pending = Vec::new();
    stream
        .write_all(b"POST /ignored HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
        .unwrap();
    assert_eq!(
        read_reply(&mut stream, &mut pending, false).body,
        b"/ignored"
    );
    stream
        .write_all(b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_reply(&mut stream, &mut pending, false).body,
        b"/chunks"
    );
    stream
        .write_all(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut stream, &mut pending, false).body, b"/after");
    assert_eq!(server.accepted(), 1);
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_10_closes_by_default_and_keeps_alive_when_asked() {
    let server = start(local(), echo);
    let reply = raw(&server, b"GET /old HTTP/1.0\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
    assert!(reply.contains("connection: close\r\n"), "{reply}");
    assert!(reply.ends_with("GET /old "), "{reply}");

    let mut stream = connect(&server);
    let mut pending = Vec::new();
    for path in ["/ka1", "/ka2"] {
        let req = format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        stream.write_all(req.as_bytes()).unwrap();
        let reply = read_reply(&mut stream, &mut pending, false);
        assert_eq!(reply.header("connection"), Some("keep-alive"));
        assert_eq!(reply.body, format!("GET {path} ").as_bytes());
    }
    server.stop(Duration::from_secs(1));
}

#[test]
fn streamed_body_is_close_delimited_for_http_10() {
    let server = local()
        .start(|_| Response::new(Body::from_reader(&b"streamed"[..])))
        .unwrap();
    let reply = raw(&server, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(
        !reply.to_lowercase().contains("transfer-encoding"),
        "{reply}"
    );
    assert!(reply.contains("connection: close\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nstreamed"), "{reply}");
    server.stop(Duration::from_secs(1));
}

#[test]
fn request_body_streams_back_as_the_response_body() {
    let server = local().start(|req| Response::new(req.into_body())).unwrap();
    let mut stream = connect(&server);
    let mut pending = Vec::new();
    stream
        .write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nstream\r\n4\r\ning!\r\n0\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut stream, &mut pending, false);
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert_eq!(reply.body, b"streaming!");
    stream
        .write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfixed")
        .unwrap();
    let reply = read_reply(&mut stream, &mut pending, false);
    assert_eq!(reply.header("content-length"), Some("5"));
    assert_eq!(reply.body, b"fixed");
    server.stop(Duration::from_secs(1));
}

#[test]
fn head_204_and_304_responses_carry_no_body() {
    let server = local()
        .start(|req| {
            let status = match req.uri().path() {
                "/204" => StatusCode::NO_CONTENT,
                "/304" => StatusCode::NOT_MODIFIED,
                _ => StatusCode::OK,
            };
            Response::builder()
                .status(status)
                .body(Body::from("should not be sent"))
                .unwrap()
        })
        .unwrap();
    let mut stream = connect(&server);
    let mut pending = Vec::new();
    stream
        .write_all(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET /200 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_reply(&mut stream, &mut pending, true);
    assert_eq!(head.header("content-length"), Some("18"));
    let no_content = read_reply(&mut stream, &mut pending, false);
    assert_eq!(no_content.status, 204);
    assert_eq!(no_content.header("content-length"), None);
    let not_modified = read_reply(&mut stream, &mut pending, false);
    assert_eq!(not_modified.status, 304);
    let ok = read_reply(&mut stream, &mut pending, false);
    assert_eq!(ok.body, b"should not be sent");
    server.stop(Duration::from_secs(1));
}

#[test]
fn peer_address_is_in_the_request_extensions() {
    let server = local()
        .start(|req| {
            let peer = req.extensions().get::<SocketAddr>().copied();
            Response::new(Body::from(format!("{peer:?}")))
        })
        .unwrap();
    let mut stream = connect(&server);
    let me = stream.local_addr().unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut stream, &mut Vec::new(), false);
    assert_eq!(reply.body, format!("{:?}", Some(me)).as_bytes());
    server.stop(Duration::from_secs(1));
}

#[test]
fn peer_address_extension_can_be_turned_off() {
    let server = local()
        .peer_addr_extension(false)
        .start(|req| {
            let peer = req.extensions().get::<SocketAddr>().copied();
            Response::new(Body::from(format!("{peer:?}")))
        })
        .unwrap();
    let mut stream = connect(&server);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut stream, &mut Vec::new(), false);
    assert_eq!(reply.body, b"None");
    server.stop(Duration::from_secs(1));
}

/// The server parses each request head into the previous response's (emptied) header map and
/// shares one per-thread arena between heads: nothing of one exchange may show in the next.
#[test]
fn request_headers_hold_only_their_own_fields_on_a_reused_connection() {
    let server = local()
        .start(|req| {
            let seen: Vec<String> = req
                .headers()
                .iter()
                .map(|(name, value)| format!("{name}={}", value.to_str().unwrap()))
                .collect();
            Response::builder()
                .header("x-response-only", "1")
                .header("x-target", req.uri().to_string())
                .body(Body::from(seen.join(";")))
                .unwrap()
        })
        .unwrap();
    let mut stream = connect(&server);
    let mut pending = Vec::new();
    stream
        .write_all(b"GET /first HTTP/1.1\r\nHost: x\r\nX-One: a\r\nX-Two: b\r\n\r\n")
        .unwrap();
    let first = read_reply(&mut stream, &mut pending, false);
    assert_eq!(first.body, b"host=x;x-one=a;x-two=b");
    assert_eq!(first.header("x-target"), Some("/first"));
    // Pipelined: both heads parsed from one read, each into the map the last response left.
    stream
        .write_all(b"GET /second?q=1 HTTP/1.1\r\nHost: y\r\n\r\nGET /third HTTP/1.1\r\nHost: z\r\nX-Three: c\r\n\r\n")
        .unwrap();
    let second = read_reply(&mut stream, &mut pending, false);
    assert_eq!(second.body, b"host=y");
    assert_eq!(second.header("x-target"), Some("/second?q=1"));
    let third = read_reply(&mut stream, &mut pending, false);
    assert_eq!(third.body, b"host=z;x-three=c");
    assert_eq!(third.header("x-target"), Some("/third"));
    server.stop(Duration::from_secs(1));
}

// ---- 100-continue ----

#[test]
fn continue_is_not_sent_when_the_handler_ignores_the_body() {
    let server = local()
        .start(|_| {
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .body(Body::empty())
                .unwrap()
        })
        .unwrap();
    let mut stream = connect(&server);
    stream
        .write_all(
            b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
    let reply = read_to_close(&mut stream);
    assert!(
        reply.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{reply}"
    );
    assert!(!reply.contains("100 Continue"), "{reply}");
    assert!(reply.contains("connection: close\r\n"), "{reply}");
    server.stop(Duration::from_secs(1));
}

#[test]
fn continue_is_sent_when_the_handler_reads_the_body() {
    let server = start(local(), echo);
    let mut stream = connect(&server);
    stream
        .write_all(
            b"POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
    let mut pending = Vec::new();
    let interim = read_reply(&mut stream, &mut pending, false);
    assert_eq!(interim.status, 100);
    stream.write_all(b"hello").unwrap();
    let reply = read_reply(&mut stream, &mut pending, false);
    assert_eq!(reply.body, b"POST /c hello");
    server.stop(Duration::from_secs(1));
}

// ---- limits and malformed input ----

#[test]
fn huge_header_gets_431() {
    let server = start(local().max_header_bytes(4096), echo);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n",
        "h".repeat(10_000)
    );
    let reply = raw(&server, request.as_bytes());
    assert!(
        reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{reply}"
    );
    server.stop(Duration::from_secs(1));
}

#[test]
fn too_many_headers_get_431() {
    let server = start(local().max_headers(10), echo);
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..20 {
        request.push_str(&format!("X-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let reply = raw(&server, request.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    server.stop(Duration::from_secs(1));
}

#[test]
fn too_long_uri_gets_414() {
    let server = start(local().max_uri_len(1024), echo);
    let request = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(5000));
    let reply = raw(&server, request.as_bytes());
    assert!(
        reply.starts_with("HTTP/1.1 414 URI Too Long\r\n"),
        "{reply}"
    );
    server.stop(Duration::from_secs(1));
}

#[test]
fn body_over_the_limit_gets_413_before_it_is_sent() {
    let server = start(local().max_body(Some(1000)), echo);
    let mut stream = connect(&server);
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let reply = read_to_close(&mut stream);
    assert!(
        reply.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{reply}"
    );
    server.stop(Duration::from_secs(1));
}

#[test]
fn chunked_body_over_the_limit_fails_the_handlers_read() {
    let seen = Rc::new(Cell::new(0usize));
    let server = {
        let seen = seen.clone();
        local()
            .max_body(Some(100))
            .start(move |req| {
                let err = req.into_body().into_bytes().unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidData);
                let inner = err.get_ref().and_then(|e| e.downcast_ref::<ProtoError>());
                assert_eq!(inner, Some(&ProtoError::BodyTooLarge));
                seen.set(seen.get() + 1);
                Response::builder()
                    .status(StatusCode::PAYLOAD_TOO_LARGE)
                    .body(Body::empty())
                    .unwrap()
            })
            .unwrap()
    };
    let mut stream = connect(&server);
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n")
        .unwrap();
    stream.write_all(&[b'a'; 80]).unwrap();
    stream.write_all(b"\r\n50\r\n").unwrap();
    let reply = read_to_close(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 413 "), "{reply}");
    assert_eq!(seen.get(), 1);
    server.stop(Duration::from_secs(1));
}

#[test]
fn malformed_requests_get_400() {
    let server = start(local(), echo);
    for request in [
        &b"GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    ] {
        let reply = raw(&server, request);
        assert!(
            reply.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{:?} -> {reply}",
            String::from_utf8_lossy(request)
        );
    }
    assert_eq!(server.accepted(), 6);
    server.stop(Duration::from_secs(1));
}

#[test]
fn invalid_chunk_size_fails_the_handlers_read_and_closes() {
    let server = local()
        .start(|req| {
            let err = req.into_body().into_bytes().unwrap_err();
            Response::new(Body::from(err.to_string()))
        })
        .unwrap();
    let reply = raw(
        &server,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(reply.contains("invalid chunk size line"), "{reply}");
    assert!(
        reply.contains("connection: close\r\n") || reply.ends_with("line"),
        "{reply}"
    );
    server.stop(Duration::from_secs(1));
}

#[test]
fn truncated_request_body_is_unexpected_eof_for_the_handler() {
    let kinds = Rc::new(Cell::new(None));
    let server = {
        let kinds = kinds.clone();
        local()
            .start(move |req| {
                kinds.set(Some(req.into_body().into_bytes().unwrap_err().kind()));
                Response::new(Body::empty())
            })
            .unwrap()
    };
    let mut stream = connect(&server);
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nshort")
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = read_to_close(&mut stream);
    assert_eq!(kinds.get(), Some(ErrorKind::UnexpectedEof));
    server.stop(Duration::from_secs(1));
}

// ---- timeouts, panics, stop ----

#[test]
fn slowloris_is_closed_after_the_header_timeout() {
    let server = start(local().header_timeout(Duration::from_millis(300)), echo);
    let mut stream = connect(&server);
    let started = Instant::now();
    stream.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        green::spawn(move || {
            for i in 0..100 {
                green::sleep(Duration::from_millis(50));
                if stream
                    .write_all(format!("X-{i}: y\r\n").as_bytes())
                    .is_err()
                {
                    return i;
                }
            }
            100
        })
    };
    let reply = read_to_close(&mut stream);
    let elapsed = started.elapsed();
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    writer.kill();
    server.stop(Duration::from_secs(1));
}

#[test]
fn silent_and_idle_connections_are_closed_after_their_timeouts() {
    let server = start(
        local()
            .header_timeout(Duration::from_millis(200))
            .keep_alive_timeout(Duration::from_millis(300)),
        echo,
    );
    let mut silent = connect(&server);
    let started = Instant::now();
    assert_eq!(read_to_close(&mut silent), "");
    assert!(started.elapsed() < Duration::from_secs(3));

    let mut idle = connect(&server);
    idle.write_all(b"GET /once HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut pending = Vec::new();
    assert_eq!(
        read_reply(&mut idle, &mut pending, false).body,
        b"GET /once "
    );
    let idle_since = Instant::now();
    assert_closed(&mut idle, &pending);
    let waited = idle_since.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    server.stop(Duration::from_secs(1));
}

#[test]
fn handler_panic_gives_500_and_closes_the_connection() {
    let server = local()
        .start(|req| {
            if req.uri().path() == "/boom" {
                panic!("handler exploded");
            }
            Response::new(Body::from("fine"))
        })
        .unwrap();
    let mut stream = connect(&server);
    stream
        .write_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_to_close(&mut stream);
    assert!(
        reply.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{reply}"
    );
    assert!(reply.contains("connection: close\r\n"), "{reply}");
    assert!(!reply.contains("fine"), "{reply}");
    // The server itself is unharmed.
    let again = raw(
        &server,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(again.ends_with("fine"), "{again}");
    server.stop(Duration::from_secs(1));
}

#[test]
fn graceful_stop_closes_idle_connections_and_finishes_running_requests() {
    let finished = Rc::new(Cell::new(0));
    let server = {
        let finished = finished.clone();
        local()
            .start(move |req| {
                if req.uri().path() == "/slow" {
                    green::sleep(Duration::from_millis(300));
                }
                finished.set(finished.get() + 1);
                Response::new(Body::from("done"))
            })
            .unwrap()
    };
    let mut idle = connect(&server);
    idle.write_all(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut idle_pending = Vec::new();
    assert_eq!(
        read_reply(&mut idle, &mut idle_pending, false).body,
        b"done"
    );

    let mut busy = connect(&server);
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    green::sleep(Duration::from_millis(50));
    let started = Instant::now();
    assert!(server.stop(Duration::from_secs(5)));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_closed(&mut idle, &idle_pending);
    let reply = read_to_close(&mut busy);
    assert!(reply.contains("connection: close\r\n"), "{reply}");
    assert!(reply.ends_with("done"), "{reply}");
    assert_eq!(finished.get(), 2);
    assert!(TcpStream::connect(server.local_addr()).is_err());
}

#[test]
fn max_connections_caps_concurrent_connections() {
    let in_flight = Rc::new(Cell::new(0usize));
    let peak = Rc::new(Cell::new(0usize));
    let server = {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        local()
            .max_connections(3)
            .start(move |_| {
                in_flight.set(in_flight.get() + 1);
                peak.set(peak.get().max(in_flight.get()));
                green::sleep(Duration::from_millis(50));
                in_flight.set(in_flight.get() - 1);
                Response::new(Body::from("ok"))
            })
            .unwrap()
    };
    let addr = server.local_addr();
    let clients: Vec<_> = (0..10)
        .map(|_| {
            green::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .unwrap();
                read_to_close(&mut stream)
            })
        })
        .collect();
    for reply in green::joinall(clients) {
        assert!(reply.unwrap().ends_with("ok"));
    }
    assert_eq!(peak.get(), 3);
    server.stop(Duration::from_secs(1));
}

// ---- concurrency ----

#[test]
fn thousand_requests_from_one_thread_overlap() {
    const CLIENTS: usize = 1000;
    let in_flight = Rc::new(Cell::new(0usize));
    let peak = Rc::new(Cell::new(0usize));
    let served = Rc::new(Cell::new(0usize));
    let server = {
        let (in_flight, peak, served) = (in_flight.clone(), peak.clone(), served.clone());
        local()
            .start(move |_| {
                in_flight.set(in_flight.get() + 1);
                peak.set(peak.get().max(in_flight.get()));
                green::sleep(Duration::from_millis(200));
                in_flight.set(in_flight.get() - 1);
                served.set(served.get() + 1);
                Response::new(Body::from("held"))
            })
            .unwrap()
    };
    let addr = server.local_addr();
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            green::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .unwrap();
                read_to_close(&mut stream).ends_with("held")
            })
        })
        .collect();
    let ok = green::joinall(clients)
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    let elapsed = started.elapsed();
    assert_eq!(ok, CLIENTS);
    assert_eq!(served.get(), CLIENTS);
    assert!(peak.get() >= 500, "peak in flight {}", peak.get());
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    server.stop(Duration::from_secs(1));
}

// ---- serve and Body ----

#[test]
fn serve_runs_until_its_greenlet_is_killed() {
    let server = local();
    let addr = server.local_addr().unwrap();
    let serving = green::spawn(move || server.serve(echo));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /served HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(read_to_close(&mut stream).ends_with("GET /served "));
    serving.kill();
    assert!(serving.join().unwrap_err().is_killed());
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn body_knows_its_length_and_reads_in_memory_and_streamed() {
    let mut bytes = Body::from("hello");
    assert_eq!(bytes.len(), Some(5));
    let mut first = [0; 2];
    bytes.read_exact(&mut first).unwrap();
    assert_eq!(bytes.len(), Some(3));
    assert_eq!(bytes.as_bytes(), Some(&b"llo"[..]));
    assert_eq!(bytes.into_string().unwrap(), "llo");

    let streamed = Body::from_reader(&b"unknown"[..]);
    assert_eq!(streamed.len(), None);
    assert!(streamed.as_bytes().is_none());
    assert_eq!(streamed.into_bytes().unwrap(), b"unknown");

    let sized = Body::sized(&b"0123456789"[..], 4);
    assert_eq!(sized.len(), Some(4));
    assert_eq!(sized.into_bytes().unwrap(), b"0123");

    assert!(Body::empty().is_empty());
    assert!(Body::from(vec![0xff, 0xfe]).into_string().is_err());
}

#[test]
fn short_sized_response_body_closes_the_connection() {
    let server = local()
        .start(|req| {
            if req.uri().path() == "/short" {
                Response::new(Body::sized(&b"abc"[..], 10))
            } else {
                Response::new(Body::from("full"))
            }
        })
        .unwrap();
    let mut stream = connect(&server);
    stream
        .write_all(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_to_close(&mut stream);
    assert!(reply.contains("content-length: 10\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nabc"), "{reply}");
    server.stop(Duration::from_secs(1));
}
