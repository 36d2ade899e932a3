//! The HTTP client against scripted servers on loopback: each test's server is a std
//! `TcpListener` on its own thread that answers exactly as the behaviour under test needs: the
//! defects a hostile-server run found (an early 413 while the body is still going up, stacked or
//! unknown content codings, redirects whose body never ends, a self-signed CA certificate), then
//! the features requests/reqwest users reach for (redirect policies and history, per-request
//! timeouts, …).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use green::http::client::multipart::{Form, Part};
use green::http::client::redirect::{Attempt, Policy};
use green::http::client::{Client, Error, Proxy, Retry, TimeoutKind};
use green::http::{Method, StatusCode};

// -- a scripted server ------------------------------------------------------------------------

/// A request as the scripted server read it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Serves every connection on its own thread with `script`, for as long as the test runs.
fn serve(script: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || script(stream));
        }
    });
    addr
}

/// Reads a request head (and a Content-Length body when `with_body`); `None` at the end of the
/// stream.
fn read_request(stream: &mut TcpStream, with_body: bool) -> Option<Seen> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.split_whitespace();
    let method = words.next()?.to_string();
    let path = words.next()?.to_string();
    let length = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let chunked = text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut body = vec![0u8; if with_body && !chunked { length } else { 0 }];
    stream.read_exact(&mut body).ok()?;
    if with_body && chunked {
        body = read_chunked(stream)?;
    }
    Some(Seen { method, path, body })
}

/// A chunked body (no extensions, no trailers).
fn read_chunked(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).ok()?;
            line.push(byte[0]);
        }
        let size =
            usize::from_str_radix(std::str::from_utf8(&line[..line.len() - 2]).ok()?, 16).ok()?;
        let mut chunk = vec![0u8; size + 2];
        stream.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

// -- huge timeouts ----------------------------------------------------------------------------

fn answer_ok(mut stream: TcpStream) {
    while read_request(&mut stream, true).is_some() {
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if stream.write_all(reply).is_err() {
            return;
        }
    }
}

#[test]
fn duration_max_timeouts_mean_no_deadline() {
    let addr = serve(answer_ok);
    let client = Client::builder()
        .no_proxy()
        .timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .read_timeout(Duration::MAX)
        .build()
        .unwrap();
    let url = format!("http://{addr}/");
    assert_eq!(client.get(&url).send().unwrap().text().unwrap(), "ok");
    let response = client.get(&url).timeout(Duration::MAX).send().unwrap();
    assert_eq!(response.text().unwrap(), "ok");
    // 2^64 + 10 ns: a nanosecond count cast to u64 wraps to 10 ns.
    let huge = Duration::new(18_446_744_073, 709_551_626);
    let response = client.get(&url).timeout(huge).send().unwrap();
    assert_eq!(response.text().unwrap(), "ok");
    let slept = Instant::now();
    let sleeper = green::spawn(move || green::sleep(huge));
    green::sleep(Duration::from_millis(50));
    assert!(!sleeper.is_ready(), "a huge sleep must not end at once");
    let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = fired.clone();
    let _timer = green::call_later(huge, move || flag.set(true));
    green::sleep(Duration::from_millis(50));
    assert!(!fired.get(), "a huge call_later must not fire at once");
    sleeper.kill();
    assert!(slept.elapsed() < Duration::from_secs(5));
}

// -- an early response while uploading --------------------------------------------------------

/// Answers 413 after the head and a little of the body, then closes with the rest unread (the
/// kernel resets the connection, and the client's next write fails).
fn reject_upload(mut stream: TcpStream) {
    if read_request(&mut stream, false).is_none() {
        return;
    }
    let mut some = [0u8; 4096];
    let _ = stream.read(&mut some);
    let reply =
        b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 8\r\n\r\ntoo big!";
    let _ = stream.write_all(reply);
    std::thread::sleep(Duration::from_millis(50));
}

#[test]
fn early_413_while_uploading_is_returned_not_a_broken_pipe() {
    let addr = serve(reject_upload);
    let body = vec![b'x'; 30 * 1024 * 1024];
    let response = client()
        .post(format!("http://{addr}/upload"))
        .timeout(Duration::from_secs(20))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.text().unwrap(), "too big!");
}

#[test]
fn early_413_while_streaming_an_upload_is_returned() {
    let addr = serve(reject_upload);
    let body = std::io::repeat(b'y').take(30 * 1024 * 1024);
    let response = client()
        .post(format!("http://{addr}/upload"))
        .timeout(Duration::from_secs(20))
        .body(green::http::client::Body::from_reader(body))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// Closes after a little of the body without a word.
fn drop_upload(mut stream: TcpStream) {
    if read_request(&mut stream, false).is_none() {
        return;
    }
    let mut some = [0u8; 4096];
    let _ = stream.read(&mut some);
}

#[test]
fn upload_cut_off_without_a_response_says_the_send_failed() {
    let addr = serve(drop_upload);
    let err = client()
        .post(format!("http://{addr}/upload"))
        .timeout(Duration::from_secs(20))
        .body(vec![b'x'; 30 * 1024 * 1024])
        .send()
        .unwrap_err();
    assert!(matches!(err, Error::Request { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("sending the"), "{text}");
    assert!(text.contains("no response"), "{text}");
}

// -- content codings --------------------------------------------------------------------------

fn double_gzip(mut stream: TcpStream) {
    if read_request(&mut stream, true).is_none() {
        return;
    }
    let body = gzip(&gzip(b"two layers of gzip"));
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip, gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

#[test]
fn stacked_gzip_codings_are_all_decoded() {
    let addr = serve(double_gzip);
    let response = client().get(format!("http://{addr}/")).send().unwrap();
    assert!(response.headers().get("content-encoding").is_none());
    assert_eq!(response.text().unwrap(), "two layers of gzip");
}

/// gzip applied first, then a second coding listed on its own header line.
fn gzip_then_deflate(mut stream: TcpStream) {
    if read_request(&mut stream, true).is_none() {
        return;
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(&gzip(b"gzip then deflate")).unwrap();
    let body = encoder.finish().unwrap();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: deflate\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

#[test]
fn codings_on_separate_header_lines_are_decoded_in_reverse_order() {
    let addr = serve(gzip_then_deflate);
    let response = client().get(format!("http://{addr}/")).send().unwrap();
    assert_eq!(response.text().unwrap(), "gzip then deflate");
}

fn brotli(mut stream: TcpStream) {
    if read_request(&mut stream, true).is_none() {
        return;
    }
    let reply =
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\n\x0b\x01\x80\x03";
    let _ = stream.write_all(reply);
}

/// A coding no build of the client undoes (brotli and zstd are cargo features, so `br` is not
/// unsupported everywhere).
fn squashed(mut stream: TcpStream) {
    if read_request(&mut stream, true).is_none() {
        return;
    }
    let reply = b"HTTP/1.1 200 OK\r\nContent-Encoding: x-squash\r\nContent-Length: 4\r\n\r\nabcd";
    let _ = stream.write_all(reply);
}

fn gzip_under_squash(mut stream: TcpStream) {
    if read_request(&mut stream, true).is_none() {
        return;
    }
    let body = gzip(b"hidden");
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: x-squash, gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

#[test]
fn unsupported_coding_is_an_error_naming_it_not_raw_bytes() {
    for script in [squashed as fn(TcpStream), gzip_under_squash] {
        let addr = serve(script);
        let response = client().get(format!("http://{addr}/")).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // The headers still say what the body is.
        assert!(response.headers().get("content-encoding").is_some());
        let err = response.bytes().unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("\"x-squash\""), "{err}");
    }
}

#[test]
fn own_accept_encoding_returns_any_coding_as_sent() {
    let addr = serve(brotli);
    let response = client()
        .get(format!("http://{addr}/"))
        .header("Accept-Encoding", "br")
        .send()
        .unwrap();
    assert_eq!(response.header("content-encoding"), Some("br"));
    assert_eq!(response.bytes().unwrap(), b"\x0b\x01\x80\x03");
}

// -- redirects --------------------------------------------------------------------------------

/// `/301` and `/302` redirect to `/echo`, which answers `METHOD body`.
fn redirect_then_echo(mut stream: TcpStream) {
    while let Some(seen) = read_request(&mut stream, true) {
        let reply = match seen.path.as_str() {
            "/echo" => {
                let text = format!("{} {}", seen.method, String::from_utf8_lossy(&seen.body));
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                )
            }
            status => format!(
                "HTTP/1.1 {} Moved\r\nLocation: /echo\r\nContent-Length: 5\r\n\r\nmoved",
                &status[1..]
            ),
        };
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn redirect_301_and_302_keep_put_and_delete_and_turn_only_post_into_get() {
    let addr = serve(redirect_then_echo);
    let client = client();
    for status in [301, 302] {
        let url = format!("http://{addr}/{status}");
        let put = client.put(&url).body("data").send().unwrap();
        assert_eq!(put.text().unwrap(), "PUT data", "PUT after {status}");
        let delete = client.delete(&url).send().unwrap();
        assert_eq!(delete.text().unwrap(), "DELETE ", "DELETE after {status}");
        let post = client.post(&url).body("data").send().unwrap();
        assert_eq!(post.text().unwrap(), "GET ", "POST after {status}");
    }
    let url = format!("http://{addr}/303");
    let put = client.put(&url).body("data").send().unwrap();
    assert_eq!(put.text().unwrap(), "GET ", "PUT after 303");
    let head = client.head(&url).send().unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let options = client.request(Method::OPTIONS, &url).send().unwrap();
    assert_eq!(options.text().unwrap(), "GET ");
}

/// A 302 with no Content-Length on a connection the server keeps open, then `/done` on a new
/// connection.
fn endless_redirect(mut stream: TcpStream) {
    let Some(seen) = read_request(&mut stream, true) else {
        return;
    };
    if seen.path == "/done" {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
        return;
    }
    let _ = stream.write_all(b"HTTP/1.1 302 Found\r\nLocation: /done\r\n\r\nthe body goes on");
    std::thread::sleep(Duration::from_secs(10));
}

/// A chunked 302 whose last chunk never comes.
fn endless_chunked_redirect(mut stream: TcpStream) {
    let Some(seen) = read_request(&mut stream, true) else {
        return;
    };
    if seen.path == "/done" {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
        return;
    }
    let _ = stream.write_all(
        b"HTTP/1.1 302 Found\r\nLocation: /done\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nmoved\r\n",
    );
    std::thread::sleep(Duration::from_secs(10));
}

#[test]
fn redirect_whose_body_cannot_end_is_followed_at_once() {
    for script in [endless_redirect as fn(TcpStream), endless_chunked_redirect] {
        let addr = serve(script);
        let started = Instant::now();
        let response = client()
            .get(format!("http://{addr}/start"))
            .timeout(Duration::from_secs(5))
            .send()
            .unwrap();
        assert_eq!(response.text().unwrap(), "done");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

// -- a self-signed CA certificate -------------------------------------------------------------

/// A certificate as `openssl req -x509` makes it: self-signed, `CA:TRUE`, for 127.0.0.1.
fn self_signed_ca_certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An HTTPS origin in this thread answering `ok` to each request.
fn https_origin(cert_pem: &str, key_pem: &str) -> SocketAddr {
    https_origin_with(green::tls::TlsAcceptor::new(cert_pem, key_pem).unwrap())
}

fn https_origin_with(acceptor: green::tls::TlsAcceptor) -> SocketAddr {
    let listener = green::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    green::spawn(move || loop {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        let acceptor = acceptor.clone();
        green::spawn(move || {
            let Ok(mut tls) = acceptor.accept(tcp) else {
                return;
            };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => return,
                }
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = tls.flush();
        });
    });
    addr
}

#[test]
fn trusted_self_signed_ca_certificate_is_accepted() {
    let (cert_pem, key_pem) = self_signed_ca_certificate();
    let addr = https_origin(&cert_pem, &key_pem);
    let client = Client::builder()
        .no_proxy()
        .add_root_certificate(&cert_pem)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = client.get(format!("https://{addr}/")).send().unwrap();
    assert_eq!(response.text().unwrap(), "ok");
    // Trusted, but not for this name: still rejected.
    let err = client
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .unwrap_err();
    assert!(err.to_string().contains("NotValidForName"), "{err}");
}

#[test]
fn untrusted_self_signed_ca_certificate_is_worded_for_people() {
    let (cert_pem, key_pem) = self_signed_ca_certificate();
    let addr = https_origin(&cert_pem, &key_pem);
    let err = client()
        .get(format!("https://{addr}/"))
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("self-signed certificate (CA used as end entity)"),
        "{text}"
    );
}

// -- redirect policies, history, per-request timeouts -----------------------------------------

/// `/hop/N` redirects to `/hop/N-1` (with a `X-Hop: N` header); `/hop/0` answers `end`.
fn hops(mut stream: TcpStream) {
    while let Some(seen) = read_request(&mut stream, true) {
        let n: u32 = seen.path.trim_start_matches("/hop/").parse().unwrap_or(0);
        let reply = if n == 0 {
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nend".to_string()
        } else {
            format!(
                "HTTP/1.1 {} Moved\r\nLocation: /hop/{}\r\nX-Hop: {n}\r\nContent-Length: 0\r\n\r\n",
                if n.is_multiple_of(2) { 302 } else { 307 },
                n - 1
            )
        };
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn history_keeps_each_hop_status_and_headers() {
    let addr = serve(hops);
    let response = client().get(format!("http://{addr}/hop/2")).send().unwrap();
    let hops: Vec<_> = response
        .history()
        .iter()
        .map(|hop| {
            (
                hop.url().path().to_string(),
                hop.status().as_u16(),
                hop.headers()["x-hop"].to_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            ("/hop/2".to_string(), 302, "2".to_string()),
            ("/hop/1".to_string(), 307, "1".to_string())
        ]
    );
    assert_eq!(response.redirect_chain().len(), 2);
    assert_eq!(response.text().unwrap(), "end");
}

#[test]
fn per_request_redirects_override_the_client() {
    let addr = serve(hops);
    let client = client();
    let response = client
        .get(format!("http://{addr}/hop/3"))
        .redirects(0)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 307);
    assert!(response.history().is_empty());
    let err = client
        .get(format!("http://{addr}/hop/3"))
        .redirects(2)
        .send()
        .unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    assert!(err.to_string().contains("too many redirects"), "{err}");
    let none = Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let followed = none
        .get(format!("http://{addr}/hop/3"))
        .redirects(5)
        .send()
        .unwrap();
    assert_eq!(followed.text().unwrap(), "end");
}

#[test]
fn custom_policy_sees_each_hop_and_decides() {
    let addr = serve(hops);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let policy = Policy::custom({
        let seen = seen.clone();
        move |attempt: Attempt<'_>| {
            seen.lock().unwrap().push((
                attempt.status().as_u16(),
                attempt.from().path().to_string(),
                attempt.url().path().to_string(),
                attempt.previous().len(),
            ));
            if attempt.url().path() == "/hop/1" {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }
    });
    let response = client()
        .get(format!("http://{addr}/hop/3"))
        .redirect(policy)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    assert_eq!(response.url().path(), "/hop/2");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (307, "/hop/3".to_string(), "/hop/2".to_string(), 0),
            (302, "/hop/2".to_string(), "/hop/1".to_string(), 1)
        ]
    );
    let refuse = Policy::custom(|attempt| attempt.error("no thanks"));
    let err = client()
        .get(format!("http://{addr}/hop/1"))
        .redirect(refuse)
        .send()
        .unwrap_err();
    assert!(
        err.is_redirect() && err.to_string().contains("no thanks"),
        "{err}"
    );
}

/// Reads the request, then says nothing for a second.
fn stall(mut stream: TcpStream) {
    if read_request(&mut stream, true).is_some() {
        std::thread::sleep(Duration::from_secs(1));
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate");
    }
}

#[test]
fn per_request_read_timeout_overrides_the_client() {
    let addr = serve(stall);
    let patient = Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = patient
        .get(format!("http://{addr}/"))
        .read_timeout(Duration::from_millis(100))
        .send()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: TimeoutKind::Read,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let hasty = Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let response = hasty
        .get(format!("http://{addr}/"))
        .read_timeout(None)
        .send()
        .unwrap();
    assert_eq!(response.text().unwrap(), "late");
}

#[test]
fn per_request_connect_timeout_overrides_the_client() {
    // A listener whose backlog is full: further connects hang in SYN_SENT.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
            fillers.push(s);
        }
    }
    let client = Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .get(format!("http://{addr}/"))
        .connect_timeout(Duration::from_millis(100))
        .send()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: TimeoutKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

// -- multipart --------------------------------------------------------------------------------

/// Answers with the request's Content-Type line, a blank line, then its body.
fn echo_form(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read_exact(&mut byte).is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let content_type = text
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_string();
    let framing = if text.contains("transfer-encoding: chunked") {
        "chunked"
    } else {
        "length"
    };
    let body = if framing == "chunked" {
        read_chunked(&mut stream).unwrap()
    } else {
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        body
    };
    let mut reply = format!("{framing}\n{content_type}\n\n").into_bytes();
    reply.extend_from_slice(&body);
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", reply.len());
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&reply);
}

fn expected_form(boundary: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nholiday\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a%22b.png\"\r\n\
         Content-Type: image/png\r\n\r\n\x01PNG\r\n--{boundary}--\r\n"
    )
}

#[test]
fn multipart_form_of_bytes_is_sent_with_a_length() {
    let addr = serve(echo_form);
    let form = Form::new().text("title", "holiday").part(
        "photo",
        Part::bytes(b"\x01PNG".to_vec())
            .file_name("a\"b.png")
            .mime_str("image/png"),
    );
    let boundary = form.boundary().to_string();
    let text = client()
        .post(format!("http://{addr}/upload"))
        .multipart(form)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    assert_eq!(
        text,
        format!(
            "length\nmultipart/form-data; boundary={}\n\n{}",
            boundary.to_ascii_lowercase(),
            expected_form(&boundary)
        )
    );
}

#[test]
fn multipart_form_streams_a_reader_part_chunked() {
    let addr = serve(echo_form);
    let form = Form::new().text("title", "holiday").part(
        "photo",
        Part::reader(std::io::Cursor::new(b"\x01PNG".to_vec()))
            .file_name("a\"b.png")
            .mime_str("image/png"),
    );
    let boundary = form.boundary().to_string();
    let text = client()
        .post(format!("http://{addr}/upload"))
        .multipart(form)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with("chunked\n"), "{text}");
    assert!(text.ends_with(&expected_form(&boundary)), "{text}");
    assert_ne!(Form::new().boundary(), Form::new().boundary());
}

// -- TLS options ------------------------------------------------------------------------------

/// A CA and a certificate it signed for `name`: (CA PEM, leaf PEM, leaf key PEM).
fn ca_and_leaf(name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "green test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

#[test]
fn danger_accept_invalid_certs_accepts_an_untrusted_certificate() {
    let (cert_pem, key_pem) = self_signed_ca_certificate();
    let addr = https_origin(&cert_pem, &key_pem);
    let client = Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .unwrap();
    assert_eq!(response.text().unwrap(), "ok");
}

#[test]
fn danger_accept_invalid_hostnames_still_needs_a_trusted_chain() {
    let (ca_pem, leaf_pem, key_pem) = ca_and_leaf("127.0.0.1");
    let addr = https_origin(&leaf_pem, &key_pem);
    let by_name = format!("https://localhost:{}/", addr.port());
    let trusting = |accept: bool| {
        Client::builder()
            .no_proxy()
            .add_root_certificate(&ca_pem)
            .danger_accept_invalid_hostnames(accept)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let err = trusting(false).get(&by_name).send().unwrap_err();
    assert!(err.to_string().contains("NotValidForName"), "{err}");
    assert_eq!(
        trusting(true).get(&by_name).send().unwrap().text().unwrap(),
        "ok"
    );
    let untrusted = Client::builder()
        .no_proxy()
        .danger_accept_invalid_hostnames(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = untrusted.get(&by_name).send().unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[test]
fn root_certificates_from_a_pem_file_are_trusted() {
    let (ca_pem, leaf_pem, key_pem) = ca_and_leaf("127.0.0.1");
    let addr = https_origin(&leaf_pem, &key_pem);
    let path = std::env::temp_dir().join(format!("green-roots-{}.pem", std::process::id()));
    std::fs::write(&path, &ca_pem).unwrap();
    let client = Client::builder()
        .no_proxy()
        .add_root_certificate_file(&path)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = client.get(format!("https://{addr}/")).send();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(response.unwrap().text().unwrap(), "ok");
    let missing = Client::builder()
        .add_root_certificate_file("/nonexistent/roots.pem")
        .build()
        .unwrap_err();
    assert!(missing.is_builder(), "{missing:?}");
}

#[test]
fn client_certificate_is_presented_for_mutual_tls() {
    let (server_ca, leaf_pem, key_pem) = ca_and_leaf("127.0.0.1");
    let (client_ca, client_pem, client_key) = ca_and_leaf("client.test");
    let acceptor = green::tls::TlsAcceptor::builder(&leaf_pem, &key_pem)
        .require_client_certificate(&client_ca)
        .build()
        .unwrap();
    let addr = https_origin_with(acceptor);
    let url = format!("https://{addr}/");
    let with_identity = Client::builder()
        .no_proxy()
        .add_root_certificate(&server_ca)
        .identity(&client_pem, &client_key)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(
        with_identity.get(&url).send().unwrap().text().unwrap(),
        "ok"
    );
    let without = Client::builder()
        .no_proxy()
        .add_root_certificate(&server_ca)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(without.get(&url).send().and_then(|r| r.text()).is_err());
}

// -- SOCKS5 -----------------------------------------------------------------------------------

/// A SOCKS5 proxy that, once asked to connect, answers the HTTP request itself with the target
/// it was given (`domain origin.test:80`, `ipv4 127.0.0.1:80`) and the user it logged in.
fn socks5_proxy(mut stream: TcpStream) {
    let mut read = |n: usize| {
        let mut buf = vec![0u8; n];
        stream.read_exact(&mut buf).map(|()| buf)
    };
    let Ok(greeting) = read(2) else { return };
    let Ok(methods) = read(usize::from(greeting[1])) else {
        return;
    };
    let mut user = String::from("-");
    if methods.contains(&2) {
        let _ = stream.write_all(&[5, 2]);
        let mut byte = [0u8; 1];
        let mut field = |stream: &mut TcpStream| {
            stream.read_exact(&mut byte).ok()?;
            let mut text = vec![0u8; usize::from(byte[0])];
            stream.read_exact(&mut text).ok()?;
            Some(String::from_utf8_lossy(&text).into_owned())
        };
        let mut version = [0u8; 1];
        let _ = stream.read_exact(&mut version);
        let (Some(name), Some(password)) = (field(&mut stream), field(&mut stream)) else {
            return;
        };
        let ok = password == "secret";
        let _ = stream.write_all(&[1, if ok { 0 } else { 1 }]);
        if !ok {
            return;
        }
        user = name;
    } else {
        let _ = stream.write_all(&[5, 0]);
    }
    let mut head = [0u8; 4];
    if stream.read_exact(&mut head).is_err() {
        return;
    }
    let target = match head[3] {
        1 => {
            let mut ip = [0u8; 4];
            let _ = stream.read_exact(&mut ip);
            format!("ipv4 {}", std::net::Ipv4Addr::from(ip))
        }
        4 => {
            let mut ip = [0u8; 16];
            let _ = stream.read_exact(&mut ip);
            format!("ipv6 {}", std::net::Ipv6Addr::from(ip))
        }
        _ => {
            let mut len = [0u8; 1];
            let _ = stream.read_exact(&mut len);
            let mut name = vec![0u8; usize::from(len[0])];
            let _ = stream.read_exact(&mut name);
            format!("domain {}", String::from_utf8_lossy(&name))
        }
    };
    let mut port = [0u8; 2];
    let _ = stream.read_exact(&mut port);
    let _ = stream.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]);
    let Some(seen) = read_request(&mut stream, true) else {
        return;
    };
    let text = format!(
        "{target}:{} {user} {} {}",
        u16::from_be_bytes(port),
        seen.method,
        seen.path
    );
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

fn through(proxy: &str) -> Client {
    Client::builder()
        .no_proxy()
        .proxy(Proxy::all(proxy).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn socks5h_proxy_resolves_the_name_itself() {
    let addr = serve(socks5_proxy);
    let text = through(&format!("socks5h://{addr}"))
        .get("http://origin.test/page?q=1")
        .send()
        .unwrap()
        .text()
        .unwrap();
    // Origin-form target, as if direct: a SOCKS5 proxy is not an HTTP proxy.
    assert_eq!(text, "domain origin.test:80 - GET /page?q=1");
}

#[test]
fn socks5_proxy_gets_an_address_resolved_here_and_credentials() {
    let addr = serve(socks5_proxy);
    let text = through(&format!("socks5://me:secret@{addr}"))
        .get("http://localhost:8080/")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        text == "ipv4 127.0.0.1:8080 me GET /" || text == "ipv6 ::1:8080 me GET /",
        "{text}"
    );
    let err = through(&format!("socks5://me:wrong@{addr}"))
        .get("http://localhost:8080/")
        .send()
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains("refused the user and password"),
        "{err}"
    );
}

// -- resolve overrides and the local address --------------------------------------------------

/// Answers with the Host header it got and the client's address.
fn echo_host_and_peer(mut stream: TcpStream) {
    let peer = stream.peer_addr().unwrap().ip();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read_exact(&mut byte).is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let host = text
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("");
    let body = format!("{host} {peer}");
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

#[test]
fn resolve_override_connects_to_the_given_address_under_the_url_host() {
    let addr = serve(echo_host_and_peer);
    let pinned = Client::builder()
        .no_proxy()
        .resolve("Origin.TEST", addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let text = pinned
        .get("http://origin.test/")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(text, "origin.test 127.0.0.1");
    let url_port = Client::builder()
        .no_proxy()
        .resolve("origin.test", SocketAddr::new(addr.ip(), 0))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let text = url_port
        .get(format!("http://origin.test:{}/", addr.port()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(text, format!("origin.test:{} 127.0.0.1", addr.port()));
}

#[test]
fn local_address_is_the_connection_source() {
    let addr = serve(echo_host_and_peer);
    let from = |ip: &str| {
        Client::builder()
            .no_proxy()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(format!("http://{addr}/"))
            .send()
    };
    let text = from("127.0.0.2").unwrap().text().unwrap();
    assert_eq!(text, format!("{addr} 127.0.0.2"));
    let err = from("::1").unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

// -- retries ----------------------------------------------------------------------------------

/// Answers 503 to every request whose count (per path) is below the number in its path
/// (`/flaky/2/name` fails twice, with `Retry-After: 0`), then `ok N` with the number of tries;
/// `/slow/…` fails without `Retry-After`; `/drop/…` closes the connection without a word.
fn flaky(mut stream: TcpStream) {
    static TRIES: std::sync::Mutex<Vec<(String, u32)>> = std::sync::Mutex::new(Vec::new());
    while let Some(seen) = read_request(&mut stream, true) {
        let tries = {
            let mut all = TRIES.lock().unwrap();
            match all.iter_mut().find(|(path, _)| *path == seen.path) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    all.push((seen.path.clone(), 1));
                    1
                }
            }
        };
        let mut words = seen.path.split('/').skip(1);
        let mode = words.next().unwrap_or("");
        let fails: u32 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if tries <= fails {
            if mode == "drop" {
                return;
            }
            let retry_after = if mode == "flaky" {
                "Retry-After: 0\r\n"
            } else {
                ""
            };
            let reply = format!("HTTP/1.1 503 Busy\r\n{retry_after}Content-Length: 4\r\n\r\nbusy");
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let body = format!("ok {tries}");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn retrying(retries: u32) -> Client {
    Client::builder()
        .no_proxy()
        .retry(Retry::new(retries).backoff(Duration::from_millis(10)))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn retry_policy_retries_idempotent_requests_on_statuses_and_errors() {
    let addr = serve(flaky);
    let text = retrying(3)
        .get(format!("http://{addr}/flaky/2/a"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(text, "ok 3");
    let text = retrying(3)
        .put(format!("http://{addr}/drop/1/b"))
        .body("again")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(text, "ok 2");
    // Out of retries: the last answer is returned.
    let response = retrying(1)
        .get(format!("http://{addr}/flaky/5/c"))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn retry_is_off_by_default_and_never_for_post() {
    let addr = serve(flaky);
    let response = client()
        .get(format!("http://{addr}/flaky/1/d"))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = retrying(3)
        .post(format!("http://{addr}/flaky/1/e"))
        .body("once")
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = client()
        .get(format!("http://{addr}/flaky/1/f"))
        .retry(Retry::new(1).statuses([StatusCode::SERVICE_UNAVAILABLE]))
        .send()
        .unwrap();
    assert_eq!(response.text().unwrap(), "ok 2");
}

#[test]
fn retry_waits_never_pass_the_total_deadline() {
    let addr = serve(flaky);
    let started = Instant::now();
    let response = client()
        .get(format!("http://{addr}/slow/9/g"))
        .retry(Retry::new(5).backoff(Duration::from_secs(5)))
        .timeout(Duration::from_millis(500))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

// -- response details -------------------------------------------------------------------------

/// `/reason` answers with its own reason phrase, `/bare` with none, `/lines` streams lines in
/// chunks, `/cp1252` and `/utf16` send text in those charsets; each after 100 ms.
fn details(mut stream: TcpStream) {
    while let Some(seen) = read_request(&mut stream, true) {
        std::thread::sleep(Duration::from_millis(100));
        let reply: Vec<u8> = match seen.path.as_str() {
            "/reason" => b"HTTP/1.1 200 Fine  Thanks\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "/bare" => b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "/lines" => {
                let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head).is_err() {
                    return;
                }
                for chunk in ["first\r\nsec", "ond\n", "\n", "caf\u{e9} last"] {
                    let data = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                    if stream.write_all(data.as_bytes()).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                b"0\r\n\r\n".to_vec()
            }
            "/cp1252" => {
                let mut reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=windows-1252\r\nContent-Length: 6\r\n\r\n".to_vec();
                reply.extend_from_slice(b"\x80 caf\xe9");
                reply
            }
            _ => {
                let mut reply =
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\n"
                        .to_vec();
                reply.extend_from_slice(&[0xff, 0xfe, b'h', 0, b'i', 0, 0xac, 0x20]);
                reply
            }
        };
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

#[test]
fn reason_elapsed_and_remote_addr_describe_the_response() {
    let addr = serve(details);
    let response = client()
        .get(format!("http://{addr}/reason"))
        .send()
        .unwrap();
    assert_eq!(response.reason(), "Fine  Thanks");
    assert!(
        response.elapsed() >= Duration::from_millis(100),
        "{:?}",
        response.elapsed()
    );
    assert!(
        response.elapsed() < Duration::from_secs(5),
        "{:?}",
        response.elapsed()
    );
    assert_eq!(response.remote_addr(), Some(addr));
    let bare = client().get(format!("http://{addr}/bare")).send().unwrap();
    assert_eq!(bare.reason(), "Not Found");
}

#[test]
fn lines_stream_the_body_line_by_line() {
    let addr = serve(details);
    let lines: Vec<String> = client()
        .get(format!("http://{addr}/lines"))
        .send()
        .unwrap()
        .lines()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lines, ["first", "second", "", "caf\u{e9} last"]);
}

#[test]
fn text_decodes_the_charset_and_text_with_charset_overrides_it() {
    let addr = serve(details);
    let client = client();
    let text = client
        .get(format!("http://{addr}/cp1252"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(text, "\u{20ac} caf\u{e9}");
    let as_latin1 = client
        .get(format!("http://{addr}/cp1252"))
        .send()
        .unwrap()
        .text_with_charset("ISO-8859-1")
        .unwrap();
    // WHATWG's encoding rules, as browsers and reqwest: the ISO-8859-1 label means windows-1252.
    assert_eq!(as_latin1, "\u{20ac} caf\u{e9}");
    let utf16 = client
        .get(format!("http://{addr}/utf16"))
        .send()
        .unwrap()
        .text_with_charset("utf-16")
        .unwrap();
    assert_eq!(utf16, "hi\u{20ac}");
    let err = client
        .get(format!("http://{addr}/utf16"))
        .send()
        .unwrap()
        .text_with_charset("klingon")
        .unwrap_err();
    assert!(
        matches!(err, Error::Decode { .. }) && err.to_string().contains("klingon"),
        "{err}"
    );
}

#[test]
fn green_client_posting_past_green_servers_body_limit_gets_its_413() {
    use green::http::server::Body;
    use green::http::{Request, Response};
    let server = green::http::server::Server::bind("127.0.0.1:0")
        .unwrap()
        .max_body(Some(1024 * 1024))
        .start(|mut req: Request<Body>| {
            let mut body = Vec::new();
            match req.body_mut().read_to_end(&mut body) {
                Ok(_) => Response::new(Body::from("read it all")),
                Err(_) => Response::new(Body::from("too big")),
            }
        })
        .unwrap();
    let response = client()
        .post(format!("http://{}/upload", server.local_addr()))
        .timeout(Duration::from_secs(20))
        .body(vec![b'x'; 3 * 1024 * 1024])
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// A chunked gzip body whose gzip stream is complete but whose last chunk never comes.
fn gzip_without_last_chunk(mut stream: TcpStream) {
    if read_request(&mut stream, true).is_none() {
        return;
    }
    let body = gzip(b"all there");
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.write_all(b"\r\n");
    std::thread::sleep(Duration::from_secs(10));
}

#[test]
fn decoded_body_that_ended_does_not_wait_long_for_the_framing_end() {
    let addr = serve(gzip_without_last_chunk);
    let started = Instant::now();
    let text = client()
        .get(format!("http://{addr}/"))
        .timeout(Duration::from_secs(8))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(text, "all there");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
