//! The HTTP client against real peers on loopback: Python's `http.server` with an edge-case
//! script (tests/peers/edge_server.py, which also runs a small proxy), nginx (static files,
//! keep-alive, gzip, redirects, HTTPS with a test certificate), in-process green TLS and TCP
//! servers, and 1,000 concurrent requests from one thread.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use green::http::client::{Body, Client, Error, NoProxy, Proxy, TimeoutKind};
use green::http::{Method, StatusCode};
use green::net::{StreamServer, TcpListener, TcpStream};
use serde_json::Value;

// -- peers ------------------------------------------------------------------------------------

/// A child process killed when its guard (held for the whole test binary) closes its stdin.
struct Peer {
    _child: Mutex<Child>,
}

struct Edge {
    main: u16,
    second: u16,
    proxy: u16,
    _peer: Peer,
}

fn python() -> &'static str {
    "python3"
}

/// The Python edge server, started once per test binary; it exits when this process does (its
/// stdin closes).
fn edge() -> &'static Edge {
    static EDGE: OnceLock<Edge> = OnceLock::new();
    EDGE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/edge_server.py");
        let mut child = Command::new(python())
            .arg("-u")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for the HTTP client tests");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Vec<u16> = line
            .split_whitespace()
            .skip(1)
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(ports.len(), 3, "edge server said {line:?}");
        Edge {
            main: ports[0],
            second: ports[1],
            proxy: ports[2],
            _peer: Peer {
                _child: Mutex::new(child),
            },
        }
    })
}

fn url(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", edge().main)
}

fn second_url(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", edge().second)
}

/// A unique token naming one test's connections in the edge server's counters.
fn token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn echo(response: green::http::client::ClientResponse) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().unwrap()
}

/// The edge server's counters for `token`: connections, requests, dropped.
fn counts(token: &str) -> (u64, u64, u64) {
    let doc: Value = client()
        .get(url(&format!("/count?token={token}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let n = |k: &str| doc[k].as_u64().unwrap();
    (n("connections"), n("requests"), n("dropped"))
}

// -- basics -----------------------------------------------------------------------------------

#[test]
fn get_returns_status_headers_final_url_and_text() {
    let response = green::http::get(url("/echo?x=1").as_str()).unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.url().as_str(), url("/echo?x=1"));
    assert!(response.redirect_chain().is_empty());
    assert_eq!(
        response.remote_addr().unwrap().port(),
        edge().main,
        "the peer address is known"
    );
    let text = response.text().unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["path"], "/echo?x=1");
}

#[test]
fn default_headers_name_green_and_accept_gzip_and_deflate() {
    let doc = echo(client().get(url("/echo")).send().unwrap());
    let headers = &doc["headers"];
    assert_eq!(
        headers["user-agent"],
        format!("green/{}", env!("CARGO_PKG_VERSION"))
    );
    let mut codings = vec!["gzip", "deflate"];
    codings.extend(cfg!(feature = "brotli").then_some("br"));
    codings.extend(cfg!(feature = "zstd").then_some("zstd"));
    assert_eq!(headers["accept-encoding"], codings.join(", "));
    assert_eq!(headers["host"], format!("127.0.0.1:{}", edge().main));
    assert!(
        headers.get("content-length").is_none(),
        "a GET without body announces none"
    );
}

#[test]
fn json_body_round_trips_and_json_response_parses() {
    let sent = serde_json::json!({"greeting": "hello", "n": [1, 2, 3]});
    let doc = echo(client().post(url("/echo")).json(&sent).send().unwrap());
    assert_eq!(doc["method"], "POST");
    assert_eq!(doc["headers"]["content-type"], "application/json");
    let body: Value = serde_json::from_str(doc["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, sent);

    let value: Value = client().get(url("/json")).send().unwrap().json().unwrap();
    assert_eq!(value["name"], "green");
    assert_eq!(value["list"][1], 2);

    let err = client()
        .get(url("/latin1"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap_err();
    assert!(err.is_decode(), "{err}");
}

#[test]
fn form_query_and_auth_builders_shape_the_request() {
    let doc = echo(
        client()
            .put(url("/echo"))
            .query(&[("q", "a b"), ("lang", "é")])
            .form(&[("name", "green threads"), ("x", "1&2")])
            .basic_auth("user", Some("pa:ss"))
            .header("X-Custom", "yes")
            .send()
            .unwrap(),
    );
    assert_eq!(doc["method"], "PUT");
    assert_eq!(doc["path"], "/echo?q=a+b&lang=%C3%A9");
    assert_eq!(doc["body"], "name=green+threads&x=1%262");
    let headers = &doc["headers"];
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(headers["authorization"], "Basic dXNlcjpwYTpzcw==");
    assert_eq!(headers["x-custom"], "yes");

    let doc = echo(
        client()
            .delete(url("/echo"))
            .bearer_auth("tok")
            .send()
            .unwrap(),
    );
    assert_eq!(doc["method"], "DELETE");
    assert_eq!(doc["headers"]["authorization"], "Bearer tok");
}

#[test]
fn credentials_in_the_url_become_basic_auth_and_leave_the_url() {
    let with_user = format!("http://me:secret@127.0.0.1:{}/echo", edge().main);
    let response = client().get(&with_user).send().unwrap();
    assert_eq!(response.url().as_str(), url("/echo"), "no password kept");
    let doc = echo(response);
    assert_eq!(doc["headers"]["authorization"], "Basic bWU6c2VjcmV0");
}

#[test]
fn streaming_reader_body_is_sent_chunked() {
    let data: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let response = client()
        .post(url("/echo"))
        .body(Body::from_reader(Cursor::new(data.clone())))
        .send()
        .unwrap();
    let doc = echo(response);
    assert_eq!(doc["headers"]["transfer-encoding"], "chunked");
    assert_eq!(doc["body"].as_str().unwrap().as_bytes(), &data[..]);
}

#[test]
fn invalid_urls_and_headers_are_builder_errors() {
    let err = green::http::get("not a url").unwrap_err();
    assert!(err.is_builder(), "{err}");
    assert!(err.to_string().contains("not a url"), "{err}");
    let err = green::http::get("ftp://example.com/").unwrap_err();
    assert!(
        err.is_builder() && err.to_string().contains("scheme"),
        "{err}"
    );
    let err = client()
        .get(url("/echo"))
        .header("bad header", "x")
        .send()
        .unwrap_err();
    assert!(err.is_builder(), "{err}");
    assert!(err.url().is_some());
}

#[test]
fn head_204_and_304_responses_have_no_body_and_keep_the_connection() {
    let client = client();
    let t = token();
    let head = client
        .head(url(&format!("/echo?token={t}")))
        .send()
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(
        head.content_length().unwrap() > 0,
        "HEAD announces a length"
    );
    assert_eq!(head.bytes().unwrap(), b"");
    let empty = client
        .get(url(&format!("/no-content?token={t}")))
        .send()
        .unwrap();
    assert_eq!(empty.status(), StatusCode::NO_CONTENT);
    assert_eq!(empty.text().unwrap(), "");
    let not_modified = client
        .get(url(&format!("/not-modified?token={t}")))
        .send()
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.bytes().unwrap(), b"");
    let doc = echo(client.get(url(&format!("/echo?token={t}"))).send().unwrap());
    assert_eq!(doc["method"], "GET");
    assert_eq!(counts(&t), (1, 4, 0), "one connection served all four");
    assert_eq!(client.stats().connections, 1);
}

#[test]
fn error_for_status_names_status_and_url() {
    let ok = client().get(url("/status/200")).send().unwrap();
    assert!(ok.error_for_status().is_ok());
    let err = client()
        .get(url("/status/404"))
        .send()
        .unwrap()
        .error_for_status()
        .unwrap_err();
    assert!(err.is_status());
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert!(err.to_string().contains("/status/404"), "{err}");
    let server = client().get(url("/status/503")).send().unwrap();
    assert!(server.error_for_status_ref().unwrap_err().is_status());
}

// -- framing edge cases ------------------------------------------------------------------------

#[test]
fn chunked_body_with_extensions_and_trailers_is_decoded() {
    let response = client().get(url("/chunked-trailers")).send().unwrap();
    let mut reader = response.into_reader();
    let mut body = String::new();
    reader.read_to_string(&mut body).unwrap();
    assert_eq!(body, "hello world");
    let trailers = reader.trailers().expect("trailers after the body");
    assert_eq!(trailers["x-checksum"], "abc123");
}

#[test]
fn close_delimited_body_is_read_to_the_end_and_not_pooled() {
    let client = client();
    let response = client.get(url("/close-delimited")).send().unwrap();
    assert_eq!(
        response.text().unwrap(),
        "part 0;part 1;part 2;part 3;part 4;"
    );
    assert_eq!(
        client.stats().idle,
        0,
        "a close-delimited connection is not reused"
    );
}

#[test]
fn truncated_content_length_body_is_an_error_not_a_short_body() {
    let response = client().get(url("/truncated")).send().unwrap();
    let err = response.bytes().unwrap_err();
    assert!(err.is_body(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("10 bytes received") && message.contains("90 missing"),
        "{message}"
    );
    assert!(message.contains("/truncated"), "{message}");

    let mut reader = client()
        .get(url("/truncated"))
        .send()
        .unwrap()
        .into_reader();
    let mut sink = Vec::new();
    let io = reader.read_to_end(&mut sink).unwrap_err();
    assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
    let inner = io.get_ref().unwrap().downcast_ref::<Error>().unwrap();
    assert!(inner.is_body());
}

#[test]
fn truncated_chunked_body_is_an_error() {
    let err = client()
        .get(url("/truncated-chunked"))
        .send()
        .unwrap()
        .text()
        .unwrap_err();
    assert!(err.is_body(), "{err}");
}

#[test]
fn interim_103_response_is_skipped() {
    let response = client().get(url("/early-hints")).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().unwrap(), "after hints");
}

#[test]
fn expect_continue_sends_the_body_after_100() {
    let response = client()
        .post(url("/continue"))
        .header("Expect", "100-continue")
        .body("payload")
        .send()
        .unwrap();
    assert_eq!(response.text().unwrap(), "got payload");
}

#[test]
fn final_response_before_100_continue_skips_the_body() {
    let started = Instant::now();
    let client = client();
    let response = client
        .post(url("/reject-continue"))
        .header("Expect", "100-continue")
        .body(vec![b'z'; 100_000])
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.text().unwrap(), "no");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the answer came before the 1 s continue wait"
    );
    assert_eq!(
        client.stats().idle,
        0,
        "a connection with an unsent body is not reused"
    );
}

#[test]
fn huge_response_headers_are_a_limit_error() {
    let err = client()
        .get(url("/huge-headers?kb=100"))
        .send()
        .unwrap_err();
    assert!(err.is_request(), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
    let small = Client::builder()
        .no_proxy()
        .max_header_bytes(4 * 1024)
        .build()
        .unwrap();
    let err = small.get(url("/huge-headers?kb=8")).send().unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    let ok = client().get(url("/huge-headers?kb=8")).send().unwrap();
    assert_eq!(ok.text().unwrap(), "ok");
}

// -- timeouts ---------------------------------------------------------------------------------

#[test]
fn read_timeout_fires_on_a_stalled_body() {
    let client = Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let response = client.get(url("/stall")).send().unwrap();
    let err = response.bytes().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(matches!(
        err,
        Error::Timeout {
            kind: TimeoutKind::Read,
            ..
        }
    ));
    assert!(err.to_string().contains("/stall"), "{err}");
}

#[test]
fn read_timeout_and_total_deadline_fire_on_a_stalled_head() {
    let client = Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client.get(url("/stall-head")).send().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: TimeoutKind::Read,
                during: "reading the response head",
                ..
            }
        ),
        "{err}"
    );
    let started = Instant::now();
    let err = self::client()
        .get(url("/stall-head"))
        .timeout(Duration::from_millis(300))
        .send()
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(matches!(
        err,
        Error::Timeout {
            kind: TimeoutKind::Total,
            during: "reading the response head",
            ..
        }
    ));
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn total_deadline_bounds_a_dripping_body_that_never_trips_the_read_timeout() {
    let client = Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_secs(2))
        .timeout(Duration::from_millis(600))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client.get(url("/drip?n=100&ms=50")).send().unwrap();
    let err = response.bytes().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                kind: TimeoutKind::Total,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "well before the 5 s drip ends"
    );
}

#[test]
fn connection_refused_is_a_connect_error_naming_the_url() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let target = format!("http://127.0.0.1:{port}/nothing");
    let err = client().get(&target).send().unwrap_err();
    assert!(err.is_connect(), "{err}");
    assert!(!err.is_timeout());
    assert!(err.to_string().contains(&target), "{err}");
    assert_eq!(err.url().unwrap().as_str(), target);
}

// -- keep-alive -------------------------------------------------------------------------------

#[test]
fn keep_alive_reuses_one_connection_for_sequential_requests() {
    let client = client();
    let t = token();
    for i in 0..10 {
        let doc = echo(
            client
                .get(url(&format!("/echo?token={t}&i={i}")))
                .send()
                .unwrap(),
        );
        assert_eq!(doc["path"], format!("/echo?token={t}&i={i}"));
    }
    let stats = client.stats();
    assert_eq!((stats.connections, stats.reused, stats.retries), (1, 9, 0));
    assert_eq!(stats.idle, 1);
    assert_eq!(counts(&t), (1, 10, 0));
}

#[test]
fn alternating_origins_each_reuse_their_own_connection() {
    // The pool keeps the last-used origin apart from the others: every origin, whichever place
    // it has, finds its own idle connection again.
    let client = client();
    let t = token();
    let main = edge().main;
    let origins = [url(""), second_url(""), format!("http://localhost:{main}")];
    for round in 0..3 {
        for origin in &origins {
            let target = format!("{origin}/echo?token={t}&round={round}");
            let doc = echo(client.get(&target).send().unwrap());
            assert_eq!(doc["method"], "GET");
        }
    }
    let stats = client.stats();
    assert_eq!((stats.connections, stats.reused, stats.idle), (3, 6, 3));
}

#[test]
fn host_name_case_does_not_split_the_pool() {
    let client = client();
    let t = token();
    let port = edge().main;
    for spelling in ["localhost", "LocalHost", "LOCALHOST."] {
        let target = format!("http://{spelling}:{port}/echo?token={t}");
        let doc = echo(client.get(&target).send().unwrap());
        assert_eq!(doc["method"], "GET");
    }
    let stats = client.stats();
    // "LOCALHOST." keeps its trailing dot: another host name, another connection.
    assert_eq!((stats.connections, stats.reused), (2, 1));
}

#[test]
fn reused_connection_closed_by_the_server_is_retried_once() {
    let client = client();
    let t = token();
    let first = client.get(url(&format!("/drop?token={t}"))).send().unwrap();
    assert_eq!(first.text().unwrap(), "first");
    let second = client.get(url(&format!("/drop?token={t}"))).send().unwrap();
    assert_eq!(
        second.text().unwrap(),
        "first",
        "answered on a new connection"
    );
    let stats = client.stats();
    assert_eq!((stats.connections, stats.reused, stats.retries), (2, 1, 1));
    assert_eq!(counts(&t), (2, 3, 1), "the dropped request, then its retry");
}

#[test]
fn non_idempotent_post_on_a_dropped_connection_is_not_retried() {
    let client = client();
    let t = token();
    let first = client
        .post(url(&format!("/drop?token={t}")))
        .body("a")
        .send()
        .unwrap();
    assert_eq!(first.text().unwrap(), "first");
    let err = client
        .post(url(&format!("/drop?token={t}")))
        .body("b")
        .send()
        .unwrap_err();
    assert!(err.is_request(), "{err}");
    assert_eq!(client.stats().retries, 0);
    assert_eq!(counts(&t), (1, 2, 1));
}

/// A client whose pool holds one idle connection that the server closes 50 ms after answering
/// on it, and the token that server counts the requests under.
fn client_with_an_idle_connection_the_server_closes() -> (Client, String) {
    let client = client();
    let t = token();
    let first = client
        .get(url(&format!("/close-later?ms=50&token={t}")))
        .send()
        .unwrap();
    assert_eq!(first.text().unwrap(), "ok");
    (client, t)
}

#[test]
fn idle_connection_closed_by_the_server_is_discarded_by_the_probe() {
    let (client, t) = client_with_an_idle_connection_the_server_closes();
    green::sleep(Duration::from_millis(400));
    let doc = echo(client.get(url(&format!("/echo?token={t}"))).send().unwrap());
    assert_eq!(doc["method"], "GET");
    let stats = client.stats();
    assert_eq!(
        (stats.connections, stats.discarded, stats.retries),
        (2, 1, 0),
        "the probe saw the close: no failed request, no retry"
    );
}

#[test]
fn reuse_count_leaves_out_discarded_connections_and_survives_close_idle() {
    // `reused` is counted as the idle connections taken out minus those discarded: a discarded
    // one is not a reuse, and closing the idle ones does not forget the reuses made.
    let (client, t) = client_with_an_idle_connection_the_server_closes();
    green::sleep(Duration::from_millis(400));
    for _ in 0..2 {
        let doc = echo(client.get(url(&format!("/echo?token={t}"))).send().unwrap());
        assert_eq!(doc["method"], "GET");
    }
    let stats = client.stats();
    assert_eq!(
        (stats.connections, stats.discarded, stats.reused),
        (2, 1, 1)
    );
    client.close_idle();
    let stats = client.stats();
    assert_eq!((stats.idle, stats.discarded, stats.reused), (0, 1, 1));
}

#[test]
fn idle_connection_closed_while_the_thread_never_waited_is_still_detected() {
    // The server closes the idle connection while this thread blocks outside green (no hub poll
    // sees the FIN): the pool must still not hand out the dead connection for a POST, which
    // cannot be retried.
    let (client, t) = client_with_an_idle_connection_the_server_closes();
    std::thread::sleep(Duration::from_millis(400));
    let doc = echo(
        client
            .post(url(&format!("/echo?token={t}")))
            .body("after the close")
            .send()
            .unwrap(),
    );
    assert_eq!(doc["body"], "after the close");
    let stats = client.stats();
    assert_eq!(
        (stats.connections, stats.discarded, stats.retries),
        (2, 1, 0),
        "the probe saw the close: no failed request, no retry"
    );
}

#[test]
fn idempotent_request_skips_the_probe_and_a_stale_idle_connection_is_retried() {
    // Same close as above, but a GET: the pool trusts the hub's "nothing arrived since the last
    // read" without a peek syscall, and the hub has not polled since the FIN. The request fails
    // on the dead connection before any response byte and its one retry answers it.
    let (client, t) = client_with_an_idle_connection_the_server_closes();
    std::thread::sleep(Duration::from_millis(400));
    let doc = echo(client.get(url(&format!("/echo?token={t}"))).send().unwrap());
    assert_eq!(doc["method"], "GET");
    let stats = client.stats();
    assert_eq!(
        (
            stats.connections,
            stats.reused,
            stats.discarded,
            stats.retries
        ),
        (2, 1, 0, 1),
        "no probe syscall: the stale connection was reused, failed, and the GET retried"
    );
    // Back on the new connection, with no close: plain reuse.
    echo(client.get(url(&format!("/echo?token={t}"))).send().unwrap());
    let stats = client.stats();
    assert_eq!((stats.connections, stats.reused, stats.retries), (2, 2, 1));
}

#[test]
fn pool_idle_timeout_and_zero_idle_disable_reuse() {
    let t = token();
    let no_pool = Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..3 {
        echo(
            no_pool
                .get(url(&format!("/echo?token={t}")))
                .send()
                .unwrap(),
        );
    }
    assert_eq!(no_pool.stats().connections, 3);
    let short = Client::builder()
        .no_proxy()
        .pool_idle_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    echo(short.get(url("/echo")).send().unwrap());
    green::sleep(Duration::from_millis(150));
    echo(short.get(url("/echo")).send().unwrap());
    let stats = short.stats();
    assert_eq!((stats.connections, stats.discarded), (2, 1));
}

// -- redirects --------------------------------------------------------------------------------

fn redirect(status: u16, to: &str) -> String {
    let to: String = to
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    url(&format!("/redirect?status={status}&to={to}"))
}

#[test]
fn redirect_303_turns_post_into_get_without_body() {
    let response = client()
        .post(redirect(303, "/echo"))
        .body("secret payload")
        .header("Content-Type", "text/plain")
        .send()
        .unwrap();
    assert_eq!(response.redirect_chain().len(), 1);
    assert_eq!(response.url().path(), "/echo");
    let doc = echo(response);
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["body"], "");
    assert!(doc["headers"].get("content-type").is_none());
    assert!(doc["headers"].get("content-length").is_none());
}

#[test]
fn redirect_301_and_302_become_get_and_head_stays_head() {
    for status in [301, 302] {
        let doc = echo(
            client()
                .post(redirect(status, "/echo"))
                .body("x")
                .send()
                .unwrap(),
        );
        assert_eq!(doc["method"], "GET", "after {status}");
    }
    let head = client().head(redirect(302, "/echo")).send().unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.url().path(), "/echo");
}

#[test]
fn redirect_307_and_308_keep_method_and_body() {
    for status in [307, 308] {
        let doc = echo(
            client()
                .post(redirect(status, "/echo"))
                .body("keep me")
                .send()
                .unwrap(),
        );
        assert_eq!(doc["method"], "POST", "after {status}");
        assert_eq!(doc["body"], "keep me");
    }
}

#[test]
fn redirect_307_of_a_streaming_body_is_a_redirect_error() {
    let err = client()
        .post(redirect(307, "/echo"))
        .body(Body::from_reader(Cursor::new(b"once".to_vec())))
        .send()
        .unwrap_err();
    assert!(err.is_redirect(), "{err}");
    assert!(err.to_string().contains("replayed"), "{err}");
}

#[test]
fn cross_origin_redirect_drops_credentials_and_same_origin_keeps_them() {
    let same = echo(
        client()
            .get(redirect(302, "/echo"))
            .bearer_auth("tok")
            .header("Cookie", "c=1")
            .send()
            .unwrap(),
    );
    assert_eq!(same["headers"]["authorization"], "Bearer tok");
    assert_eq!(same["headers"]["cookie"], "c=1");

    let response = client()
        .get(redirect(302, &second_url("/echo")))
        .bearer_auth("tok")
        .header("Cookie", "c=1")
        .header("Proxy-Authorization", "Basic eDp5")
        .header("X-Kept", "yes")
        .send()
        .unwrap();
    assert_eq!(response.url().port(), Some(edge().second));
    let other = echo(response);
    let headers = &other["headers"];
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get("cookie").is_none(), "{headers}");
    assert!(headers.get("proxy-authorization").is_none(), "{headers}");
    assert_eq!(headers["x-kept"], "yes");
}

#[test]
fn redirect_chain_is_recorded_and_limited() {
    let response = client().get(url("/chain/3")).send().unwrap();
    let chain: Vec<_> = response
        .redirect_chain()
        .iter()
        .map(|u| u.path().to_owned())
        .collect();
    assert_eq!(chain, ["/chain/3", "/chain/2", "/chain/1", "/chain/0"]);
    assert_eq!(response.url().path(), "/echo");

    let err = client().get(url("/chain/12")).send().unwrap_err();
    assert!(err.is_redirect(), "{err}");
    assert!(err.to_string().contains("too many redirects"), "{err}");

    let strict = Client::builder()
        .no_proxy()
        .max_redirects(2)
        .build()
        .unwrap();
    assert!(strict
        .get(url("/chain/2"))
        .send()
        .unwrap_err()
        .is_redirect());
    let manual = Client::builder()
        .no_proxy()
        .max_redirects(0)
        .build()
        .unwrap();
    let raw = manual.get(url("/chain/2")).send().unwrap();
    assert_eq!(raw.status(), StatusCode::FOUND);
    assert_eq!(raw.header("location"), Some("/chain/1"));
}

// -- content coding and limits ----------------------------------------------------------------

#[test]
fn gzip_and_deflate_bodies_are_decoded() {
    let expected = "green threads, gevent style. ".repeat(200);
    for path in ["/gzip", "/deflate", "/deflate-raw", "/gzip-chunked"] {
        let response = client().get(url(path)).send().unwrap();
        assert!(response.header("content-encoding").is_none(), "{path}");
        assert!(response.content_length().is_none(), "{path}");
        assert_eq!(response.text().unwrap(), expected, "{path}");
    }
    let client = client();
    for _ in 0..3 {
        client
            .get(url("/gzip-chunked"))
            .send()
            .unwrap()
            .text()
            .unwrap();
    }
    assert_eq!(
        client.stats().connections,
        1,
        "a decoded body still frees its connection"
    );
}

#[test]
fn headers_read_after_the_body_or_never_are_those_of_the_wire() {
    // The client reads framing, coding and charset from the received head and builds the
    // HeaderMap only when asked: check both orders against each other.
    let client = client();
    let decoded = client.get(url("/gzip")).send().unwrap();
    assert_eq!(decoded.content_length(), None, "decoded: no wire length");
    let debug = format!("{decoded:?}");
    assert!(debug.contains("content-type"), "{debug}");
    let headers = decoded.headers().clone();
    assert!(headers.get("content-encoding").is_none());
    assert!(headers.get("content-length").is_none());
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(decoded.content_length(), None);
    assert!(decoded.text().unwrap().starts_with("green threads"));

    let plain = client.get(url("/echo?x=1")).send().unwrap();
    let length = plain.content_length().expect("a Content-Length body");
    assert_eq!(plain.header("content-type"), Some("application/json"));
    assert_eq!(plain.headers()["content-length"], length.to_string());
    let names: Vec<&str> = plain.headers().keys().map(|n| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"server"), "wire order: {names:?}");
    assert_eq!(plain.bytes().unwrap().len() as u64, length);
}

#[test]
fn corrupt_gzip_is_a_decode_error() {
    let err = client()
        .get(url("/bad-gzip"))
        .send()
        .unwrap()
        .bytes()
        .unwrap_err();
    assert!(err.is_decode(), "{err}");
    assert!(err.to_string().contains("/bad-gzip"), "{err}");
}

#[test]
fn own_accept_encoding_turns_decoding_off() {
    let response = client()
        .get(url("/gzip"))
        .header("Accept-Encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    let raw = response.bytes().unwrap();
    assert_eq!(&raw[..2], &[0x1f, 0x8b], "the gzip bytes as sent");
}

#[test]
fn body_limit_is_an_error_not_a_truncation() {
    let small = Client::builder()
        .no_proxy()
        .body_limit(1000)
        .build()
        .unwrap();
    assert_eq!(
        small
            .get(url("/big?size=1000"))
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .len(),
        1000
    );
    for path in ["/big?size=5000", "/big?size=5000&chunked=1"] {
        let err = small.get(url(path)).send().unwrap().text().unwrap_err();
        assert!(err.is_body(), "{path}: {err}");
        assert!(err.to_string().contains("limit of 1000 bytes"), "{err}");
    }
    // The default limit is 10 MB; streaming has none.
    let over = 10 * 1024 * 1024 + 1;
    let err = client()
        .get(url(&format!("/big?size={over}&chunked=1")))
        .send()
        .unwrap()
        .bytes()
        .unwrap_err();
    assert!(err.is_body(), "{err}");
    let mut reader = client()
        .get(url(&format!("/big?size={over}")))
        .send()
        .unwrap()
        .into_reader();
    let mut total = 0;
    let mut buf = vec![0u8; 100_000];
    loop {
        match reader.read(&mut buf).unwrap() {
            0 => break,
            n => total += n,
        }
    }
    assert_eq!(total, over);
}

#[test]
fn latin1_text_is_decoded_by_its_charset() {
    assert_eq!(
        client().get(url("/latin1")).send().unwrap().text().unwrap(),
        "café"
    );
}

// -- cookies ----------------------------------------------------------------------------------

#[test]
fn cookies_are_stored_and_sent_across_redirects() {
    let client = Client::builder()
        .no_proxy()
        .cookie_store(true)
        .build()
        .unwrap();
    client
        .get(url("/cookies?session=abc&theme=dark"))
        .send()
        .unwrap();
    let doc = echo(client.get(url("/echo")).send().unwrap());
    assert_eq!(doc["headers"]["cookie"], "session=abc; theme=dark");

    let set_on_redirect = format!("{}&cookie=late%3D1", redirect(302, "/echo"));
    let doc = echo(client.get(set_on_redirect).send().unwrap());
    let cookie = doc["headers"]["cookie"].as_str().unwrap();
    assert!(
        cookie.contains("late=1") && cookie.contains("session=abc"),
        "{cookie}"
    );

    let plain = echo(self::client().get(url("/echo")).send().unwrap());
    assert!(
        plain["headers"].get("cookie").is_none(),
        "no jar, no cookies"
    );
    assert_eq!(client.cookie_jar().unwrap().len(), 3);
}

// -- proxies ----------------------------------------------------------------------------------

fn proxy_url() -> String {
    format!("http://127.0.0.1:{}", edge().proxy)
}

#[test]
fn http_proxy_gets_absolute_form_and_proxy_authorization() {
    let proxy = Proxy::http(proxy_url()).unwrap().basic_auth("pu", "pp");
    let client = Client::builder().no_proxy().proxy(proxy).build().unwrap();
    let target = url("/echo?via=proxy");
    let response = client.get(&target).send().unwrap();
    assert!(response.remote_addr().is_none(), "the peer is the proxy");
    let doc = echo(response);
    let headers = &doc["headers"];
    assert_eq!(headers["x-proxy-saw"], format!("GET {target} HTTP/1.1"));
    assert_eq!(headers["x-proxy-auth"], "Basic cHU6cHA=");
}

#[test]
fn no_proxy_list_bypasses_the_proxy() {
    let proxy = Proxy::all(proxy_url())
        .unwrap()
        .no_proxy(NoProxy::from_string("localhost,127.0.0.0/8"));
    let client = Client::builder().no_proxy().proxy(proxy).build().unwrap();
    let doc = echo(client.get(url("/echo")).send().unwrap());
    assert!(doc["headers"].get("x-proxy-saw").is_none());
}

/// A one-shot HTTPS origin in this thread: answers every request on a connection with `body`.
fn tls_origin(body: &'static str) -> (SocketAddr, String, green::Greenlet<()>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    let acceptor = green::tls::TlsAcceptor::new(&cert_pem, &key_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = green::spawn(move || loop {
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
            loop {
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                head.clear();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if tls
                    .write_all(reply.as_bytes())
                    .and_then(|()| tls.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
    });
    (addr, cert_pem, server)
}

#[test]
fn https_goes_through_a_connect_tunnel() {
    let (addr, cert_pem, server) = tls_origin("tunnelled");
    let client = Client::builder()
        .no_proxy()
        .proxy(Proxy::https(proxy_url()).unwrap().basic_auth("tu", "tp"))
        .add_root_certificate(&cert_pem)
        .build()
        .unwrap();
    let target = format!("https://localhost:{}/secret", addr.port());
    let response = client.get(&target).send().unwrap();
    assert_eq!(response.text().unwrap(), "tunnelled");
    let log: Value = self::client()
        .get(url("/proxy-log"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let connect = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["line"] == format!("CONNECT localhost:{} HTTP/1.1", addr.port()))
        .expect("the proxy saw the CONNECT");
    assert_eq!(connect["auth"], "Basic dHU6dHA=");
    assert!(
        !log.to_string().contains("/secret"),
        "the proxy never sees the path inside the tunnel"
    );
    server.kill();
}

#[test]
fn https_with_an_untrusted_certificate_is_a_connect_error() {
    let (addr, _cert, server) = tls_origin("never");
    let err = client()
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    server.kill();
}

#[test]
fn proxy_from_environment_is_used_by_the_default_client() {
    // Environment variables are process-wide: check them in a child process of this binary.
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "env_proxy_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env("HTTP_PROXY", proxy_url())
        .env("NO_PROXY", "localhost")
        .env("EDGE_MAIN_PORT", edge().main.to_string())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the child's assertions failed");
}

#[test]
#[ignore = "run by proxy_from_environment_is_used_by_the_default_client in a child process"]
fn env_proxy_child() {
    let port = std::env::var("EDGE_MAIN_PORT").unwrap();
    let via = green::http::get(format!("http://127.0.0.1:{port}/echo").as_str()).unwrap();
    let doc = via.json::<Value>().unwrap();
    assert!(doc["headers"]["x-proxy-saw"].as_str().is_some(), "{doc}");
    let direct = green::http::get(format!("http://localhost:{port}/echo").as_str());
    if let Ok(direct) = direct {
        // localhost may resolve to ::1 first, where the edge server does not listen.
        let doc = direct.json::<Value>().unwrap();
        assert!(doc["headers"].get("x-proxy-saw").is_none(), "{doc}");
    }
}

// -- threads and concurrency ------------------------------------------------------------------

#[test]
fn client_is_send_and_sync_and_shared_by_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Client>();
    assert_send_sync::<Error>();
    fn assert_send<T: Send>() {}
    assert_send::<green::http::client::ClientResponse>();
    let client = client();
    let t = token();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (client, t) = (client.clone(), t.clone());
            std::thread::spawn(move || {
                for _ in 0..3 {
                    echo(client.get(url(&format!("/echo?token={t}"))).send().unwrap());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(counts(&t).1, 6);
}

fn raise_fd_limit(limit: u64) {
    let mut rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rlimit` is a valid, writable rlimit for the call to fill in.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlimit) },
        0
    );
    if rlimit.rlim_cur >= limit {
        return;
    }
    rlimit.rlim_cur = limit.min(rlimit.rlim_max);
    // SAFETY: `rlimit` is a valid rlimit read by the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) }, 0);
}

#[test]
fn thousand_requests_from_one_thread_overlap() {
    raise_fd_limit(8192);
    const REQUESTS: usize = 1000;
    let in_flight = Rc::new(Cell::new(0usize));
    let peak = Rc::new(Cell::new(0usize));
    let served = Rc::new(Cell::new(0usize));
    let handler = {
        let (in_flight, peak, served) = (in_flight.clone(), peak.clone(), served.clone());
        move |mut stream: TcpStream, _: SocketAddr| {
            let mut head = Vec::new();
            let mut buf = [0u8; 2048];
            loop {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                head.clear();
                in_flight.set(in_flight.get() + 1);
                peak.set(peak.get().max(in_flight.get()));
                green::sleep(Duration::from_millis(200));
                in_flight.set(in_flight.get() - 1);
                served.set(served.get() + 1);
                if stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
                {
                    return;
                }
            }
        }
    };
    let server = StreamServer::new("127.0.0.1:0", handler)
        .backlog(2048)
        .start()
        .unwrap();
    let target = format!("http://{}/slow", server.local_addr());
    let client = client();
    let started = Instant::now();
    let requests: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (client, target) = (client.clone(), target.clone());
            green::spawn(move || client.get(&target).send()?.text())
        })
        .collect();
    let bodies: Vec<String> = green::joinall(requests)
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let elapsed = started.elapsed();
    eprintln!(
        "{REQUESTS} requests: peak {} in flight, {elapsed:?}",
        peak.get()
    );
    assert!(bodies.iter().all(|b| b == "ok"));
    assert_eq!(served.get(), REQUESTS);
    assert!(
        peak.get() >= REQUESTS / 2,
        "only {} requests were in flight at once",
        peak.get()
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "1,000 × 200 ms took {elapsed:?}: not concurrent"
    );
    client.close_idle();
    assert!(server.stop(Duration::from_secs(1)));
}

// -- nginx ------------------------------------------------------------------------------------

struct Nginx {
    port: u16,
    tls_port: u16,
    cert_pem: String,
    root: PathBuf,
    _peer: Peer,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx on two free loopback ports (HTTP and HTTPS) with a generated config, test certificate
/// and document root in a temp dir; started once per test binary, stopped when it exits.
fn nginx() -> &'static Nginx {
    static NGINX: OnceLock<Nginx> = OnceLock::new();
    NGINX.get_or_init(|| {
        let binary = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is needed for these tests: apt-get install nginx-light");
        let dir = std::env::temp_dir().join(format!("green-http-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "<html><body>green index</body></html>\n").unwrap();
        let text = "All work and no play makes Jack a dull boy.\n".repeat(2000);
        std::fs::write(www.join("big.txt"), &text).unwrap();
        let binary_data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(www.join("blob.bin"), &binary_data).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_pem = cert.cert.pem();
        std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
        let (port, tls_port) = (free_port(), free_port());
        let d = dir.display();
        let conf = format!(
            r#"
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    types {{ text/html html; text/plain txt; application/octet-stream bin; }}
    keepalive_requests 10000;
    gzip on;
    gzip_types text/plain;
    gzip_min_length 100;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location = /r1 {{ return 302 /r2; }}
        location = /r2 {{ return 301 /r3; }}
        location = /r3 {{ return 307 /index.html; }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        root {d}/www;
    }}
}}
"#
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        // A watchdog: nginx stops and its temp dir goes when this process's end closes the
        // watchdog's stdin.
        let watchdog = format!(
            "import shutil, subprocess, sys\n\
             p = subprocess.Popen([{binary:?}, '-p', {d:?}, '-e', {err:?}, '-c', {conf:?}, '-g', 'daemon off;'])\n\
             sys.stdin.read()\n\
             p.terminate()\n\
             p.wait()\n\
             shutil.rmtree({d:?}, ignore_errors=True)\n",
            d = d.to_string(),
            err = dir.join("error.log").display().to_string(),
            conf = conf_path.display().to_string(),
        );
        let child = Command::new(python())
            .args(["-c", &watchdog])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for p in [port, tls_port] {
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                assert!(Instant::now() < deadline, "nginx did not start: {log}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Nginx {
            port,
            tls_port,
            cert_pem,
            root: www,
            _peer: Peer {
                _child: Mutex::new(child),
            },
        }
    })
}

fn nginx_url(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", nginx().port)
}

#[test]
fn nginx_serves_static_files_byte_for_byte() {
    let n = nginx();
    let index = client().get(nginx_url("/index.html")).send().unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(
        index.header("server").map(|s| s.starts_with("nginx")),
        Some(true)
    );
    assert_eq!(
        index.text().unwrap(),
        std::fs::read_to_string(n.root.join("index.html")).unwrap()
    );
    let blob = client().get(nginx_url("/blob.bin")).send().unwrap();
    assert_eq!(blob.content_length(), Some(1_000_000));
    assert_eq!(
        blob.bytes().unwrap(),
        std::fs::read(n.root.join("blob.bin")).unwrap()
    );
    let missing = client().get(nginx_url("/missing")).send().unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[test]
fn nginx_keep_alive_serves_many_requests_on_one_connection() {
    let client = client();
    for _ in 0..20 {
        let response = client.get(nginx_url("/index.html")).send().unwrap();
        assert!(response.text().unwrap().contains("green index"));
    }
    let stats = client.stats();
    assert_eq!((stats.connections, stats.reused), (1, 19));
}

#[test]
fn nginx_gzip_is_decoded() {
    let n = nginx();
    let expected = std::fs::read_to_string(n.root.join("big.txt")).unwrap();
    let raw = client()
        .get(nginx_url("/big.txt"))
        .header("Accept-Encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(raw.header("content-encoding"), Some("gzip"));
    let compressed = raw.bytes().unwrap();
    assert!(compressed.len() < expected.len() / 10);
    let client = client();
    for _ in 0..2 {
        let decoded = client.get(nginx_url("/big.txt")).send().unwrap();
        assert!(decoded.header("content-encoding").is_none());
        assert_eq!(decoded.text().unwrap(), expected);
    }
    assert_eq!(client.stats().connections, 1);
}

#[test]
fn nginx_redirect_chain_is_followed() {
    let response = client().get(nginx_url("/r1")).send().unwrap();
    let chain: Vec<_> = response
        .redirect_chain()
        .iter()
        .map(|u| u.path().to_owned())
        .collect();
    assert_eq!(chain, ["/r1", "/r2", "/r3"]);
    assert_eq!(response.url().path(), "/index.html");
    assert!(response.text().unwrap().contains("green index"));
}

#[test]
fn nginx_https_with_a_test_certificate() {
    let n = nginx();
    let client = Client::builder()
        .no_proxy()
        .add_root_certificate(&n.cert_pem)
        .build()
        .unwrap();
    let target = format!("https://localhost:{}/index.html", n.tls_port);
    for _ in 0..3 {
        let response = client.get(&target).send().unwrap();
        assert_eq!(response.url().scheme(), "https");
        assert!(response.text().unwrap().contains("green index"));
    }
    assert_eq!(
        client.stats().connections,
        1,
        "TLS connections are pooled too"
    );
    let blob = client
        .get(format!("https://localhost:{}/blob.bin", n.tls_port))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(blob.len(), 1_000_000);
    let err = self::client().get(&target).send().unwrap_err();
    assert!(err.is_connect(), "an untrusted certificate: {err}");
}

#[test]
fn request_method_builder_sends_any_method() {
    let doc = echo(
        client()
            .request(Method::OPTIONS, url("/echo"))
            .send()
            .unwrap(),
    );
    assert_eq!(doc["method"], "OPTIONS");
    let doc = echo(
        green::http::post(url("/echo").as_str())
            .body("p")
            .send()
            .unwrap(),
    );
    assert_eq!(doc["body"], "p");
    let mut response = client().get(url("/json")).send().unwrap();
    let mut sink = Vec::new();
    let n = response.copy_to(&mut sink).unwrap();
    assert_eq!(n as usize, sink.len());
}
