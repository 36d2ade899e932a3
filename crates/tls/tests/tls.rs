//! green::tls against real peers: `openssl s_server` and `openssl s_client` (the `openssl` package)
//! with certificates made at test time by rcgen, plus our own client and server in greenlets.

use std::cell::Cell;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use green::net::{TcpListener, TcpStream};
use green::tls::rustls::{CertificateError, Error as RustlsError, HandshakeKind};
use green::tls::{TlsAcceptor, TlsConnector, TlsError, TlsStream};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

// ---------------------------------------------------------------------------------------------
// Certificates

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// A server certificate and key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

enum Issuer<'a> {
    Ca(&'a Ca),
    SelfSigned,
}

fn leaf(names: &[&str], issuer: Issuer<'_>, expired: bool) -> Leaf {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("leaf {}", names[0]));
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = match issuer {
        Issuer::Ca(ca) => params.signed_by(&key, &ca.cert, &ca.key).unwrap(),
        Issuer::SelfSigned => params.self_signed(&key).unwrap(),
    };
    Leaf {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A test CA and a leaf it signed for localhost and 127.0.0.1.
fn good_chain() -> (Ca, Leaf) {
    let ca = Ca::new("green test CA");
    let leaf = leaf(&["localhost", "127.0.0.1"], Issuer::Ca(&ca), false);
    (ca, leaf)
}

/// A connector trusting only `ca`.
fn connector_for(ca: &Ca) -> TlsConnector {
    TlsConnector::builder()
        .add_root_certificate(ca.pem())
        .system_roots(false)
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Files and openssl processes

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "green-tls-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An `openssl s_server` on a loopback port, stopped (by its pid) on drop.
struct SServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl SServer {
    /// Starts `openssl s_server` presenting `leaf`, with `extra` arguments; waits for its port.
    fn start(leaf: &Leaf, extra: &[&str]) -> SServer {
        let dir = TempDir::new();
        let cert = dir.write("cert.pem", &leaf.cert);
        let key = dir.write("key.pem", &leaf.key);
        // `timeout` bounds its life should this test process die without running `Drop`.
        let mut child = Command::new("timeout")
            .args([
                "120",
                "openssl",
                "s_server",
                "-accept",
                "127.0.0.1:0",
                "-cert",
            ])
            .arg(path_str(&cert))
            .arg("-key")
            .arg(path_str(&key))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl is not installed (apt-get install openssl)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let port = loop {
            line.clear();
            assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "s_server exited");
            if let Some(addr) = line.trim().strip_prefix("ACCEPT ") {
                break addr.parse::<SocketAddr>().unwrap().port();
            }
        };
        // Keep its stdout drained so that it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        SServer {
            child,
            port,
            _dir: dir,
        }
    }

    /// A connection to it; a stuck exchange fails after 10 s instead of hanging the test.
    fn tcp(&self) -> TcpStream {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        // SIGTERM, which `timeout` passes on to openssl (a SIGKILL would orphan openssl).
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if !stopped.is_ok_and(|status| status.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs `openssl s_client` against `port` (at most 20 s), feeding it `stdin`; the wait runs on the
/// thread pool so that this thread's greenlets (our server) go on meanwhile.
fn s_client(port: u16, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("timeout")
        .args(["20", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is not installed (apt-get install openssl)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    green::spawn_blocking(move || child.wait_with_output())
        .join()
        .unwrap()
        .unwrap()
}

/// GETs `/` from an `s_server -www` and returns the page (which tells whether the session was
/// "Reused").
fn get_page(tls: &mut TlsStream<TcpStream>) -> String {
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    tls.flush().unwrap();
    let mut page = String::new();
    tls.read_to_string(&mut page).unwrap();
    page
}

/// Waits (green) up to 10 s for a server greenlet to fill `slot`.
fn wait_take<T>(slot: &Cell<Option<T>>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = slot.take() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "the server greenlet never reported"
        );
        green::sleep(Duration::from_millis(5));
    }
}

fn tls_error(err: &std::io::Error) -> &TlsError {
    TlsError::from_io(err).unwrap_or_else(|| panic!("not a TlsError: {err:?}"))
}

/// Connects with `connector` to an `s_server` presenting `leaf` and returns the failure.
fn handshake_error(connector: &TlsConnector, leaf: &Leaf, name: &str) -> std::io::Error {
    let server = SServer::start(leaf, &["-www"]);
    let err = connector.connect(name, server.tcp()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    err
}

// ---------------------------------------------------------------------------------------------
// Our own server, in greenlets

/// Serves TLS on a loopback port: each connection runs `handler` in its own greenlet.
fn serve<F>(acceptor: TlsAcceptor, handler: F) -> (SocketAddr, green::Greenlet<()>)
where
    F: Fn(std::io::Result<TlsStream<TcpStream>>) + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Rc::new(handler);
    let server = green::spawn(move || loop {
        let (tcp, _) = listener.accept().unwrap();
        let (acceptor, handler) = (acceptor.clone(), handler.clone());
        green::spawn(move || handler(acceptor.accept(tcp)));
    });
    (addr, server)
}

/// Echoes until the client's close_notify, then sends ours.
fn echo(tls: std::io::Result<TlsStream<TcpStream>>) {
    let mut tls = tls.unwrap();
    let mut buf = [0; 1024];
    loop {
        let n = tls.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        tls.write_all(&buf[..n]).unwrap();
    }
    tls.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// A good chain, both ways

#[test]
fn client_fetches_page_from_openssl_s_server_and_sees_its_close_notify() {
    let (ca, leaf) = good_chain();
    let server = SServer::start(&leaf, &["-www"]);
    let mut tls = connector_for(&ca)
        .connect("localhost", server.tcp())
        .unwrap();
    assert!(tls.is_client());
    assert_eq!(tls.server_name(), Some("localhost"));
    assert!(tls.protocol_version().is_some());
    assert_eq!(tls.peer_certificates().map(<[_]>::len), Some(1));
    // read_to_string ending in Ok proves s_server's close_notify gave a clean EOF.
    let page = get_page(&mut tls);
    assert!(page.starts_with("HTTP/1.0 200 ok"), "{page}");
    assert_eq!(tls.read(&mut [0; 8]).unwrap(), 0, "EOF stays EOF");
}

#[test]
fn openssl_s_client_verifies_and_talks_to_our_acceptor() {
    let (ca, leaf) = good_chain();
    let acceptor = TlsAcceptor::builder(&leaf.cert, &leaf.key)
        .alpn(["h2", "http/1.1"])
        .build()
        .unwrap();
    let served = Rc::new(Cell::new(None));
    let count = served.clone();
    let (addr, server) = serve(acceptor, move |tls| {
        let mut tls = tls.unwrap();
        assert_eq!(tls.server_name(), Some("localhost"), "SNI reached us");
        assert_eq!(tls.alpn_protocol(), Some(&b"h2"[..]));
        let mut ping = [0; 5];
        tls.read_exact(&mut ping).unwrap();
        assert_eq!(&ping, b"ping\n");
        tls.write_all(b"PONG\n").unwrap();
        tls.shutdown().unwrap();
        count.set(Some(count.take().unwrap_or(0) + 1));
    });
    let dir = TempDir::new();
    let ca_file = dir.write("ca.pem", &ca.pem());
    let out = s_client(
        addr.port(),
        &[
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
            "-CAfile",
            path_str(&ca_file),
            "-verify_return_error",
            "-alpn",
            "h2",
            "-brief",
            "-ign_eof",
        ],
        b"ping\n",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "PONG\n");
    assert!(stderr.contains("Verification: OK"), "{stderr}");
    assert_eq!(wait_take(&served), 1);
    server.kill();
}

#[test]
fn openssl_s_client_close_notify_gives_our_server_a_clean_eof() {
    let (ca, leaf) = good_chain();
    let received = Rc::new(Cell::new(None));
    let slot = received.clone();
    let (addr, server) = serve(
        TlsAcceptor::new(&leaf.cert, &leaf.key).unwrap(),
        move |tls| {
            let mut data = Vec::new();
            // Ok from read_to_end: s_client ended with close_notify when its stdin closed.
            tls.unwrap().read_to_end(&mut data).unwrap();
            slot.set(Some(data));
        },
    );
    let dir = TempDir::new();
    let ca_file = dir.write("ca.pem", &ca.pem());
    let out = s_client(
        addr.port(),
        &[
            "-CAfile",
            path_str(&ca_file),
            "-verify_return_error",
            "-brief",
        ],
        b"bye\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(wait_take(&received), b"bye\n");
    server.kill();
}

// ---------------------------------------------------------------------------------------------
// Certificate failures say which

#[test]
fn wrong_host_fails_with_not_valid_for_name() {
    let (ca, leaf) = good_chain();
    let err = handshake_error(&connector_for(&ca), &leaf, "wrong.example");
    let tls = tls_error(&err);
    assert!(
        matches!(
            tls.certificate_error(),
            Some(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{tls:?}"
    );
    assert_eq!(tls.server_name(), Some("wrong.example"));
    let message = err.to_string();
    assert!(
        message.starts_with("certificate verification failed for 'wrong.example'"),
        "{message}"
    );
    assert!(message.contains("not valid for name"), "{message}");
}

#[test]
fn expired_certificate_fails_with_expired() {
    let ca = Ca::new("green test CA");
    let expired = leaf(&["localhost"], Issuer::Ca(&ca), true);
    let err = handshake_error(&connector_for(&ca), &expired, "localhost");
    let tls = tls_error(&err);
    assert!(
        matches!(
            tls.certificate_error(),
            Some(CertificateError::Expired | CertificateError::ExpiredContext { .. })
        ),
        "{tls:?}"
    );
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn self_signed_certificate_fails_as_self_signed() {
    let ca = Ca::new("green test CA");
    let self_signed = leaf(&["localhost"], Issuer::SelfSigned, false);
    let err = handshake_error(&connector_for(&ca), &self_signed, "localhost");
    let tls = tls_error(&err);
    assert_eq!(
        tls.certificate_error(),
        Some(&CertificateError::UnknownIssuer)
    );
    assert!(tls.is_self_signed());
    assert!(err.to_string().contains("self-signed"), "{err}");
}

#[test]
fn certificate_from_unknown_ca_fails_with_unknown_issuer() {
    let trusted = Ca::new("green trusted CA");
    let other = Ca::new("green other CA");
    let stranger = leaf(&["localhost"], Issuer::Ca(&other), false);
    let err = handshake_error(&connector_for(&trusted), &stranger, "localhost");
    let tls = tls_error(&err);
    assert_eq!(
        tls.certificate_error(),
        Some(&CertificateError::UnknownIssuer)
    );
    assert!(!tls.is_self_signed());
    assert!(
        err.to_string().contains("unknown certificate authority"),
        "{err}"
    );
}

#[test]
fn acceptor_reports_the_alert_of_a_client_that_rejects_its_certificate() {
    let (_, leaf) = good_chain();
    let other = Ca::new("green other CA");
    let failure = Rc::new(Cell::new(None));
    let slot = failure.clone();
    let (addr, server) = serve(
        TlsAcceptor::new(&leaf.cert, &leaf.key).unwrap(),
        move |tls| {
            slot.set(Some(tls.unwrap_err()));
        },
    );
    let dir = TempDir::new();
    let ca_file = dir.write("ca.pem", &other.pem());
    let out = s_client(
        addr.port(),
        &[
            "-CAfile",
            path_str(&ca_file),
            "-verify_return_error",
            "-brief",
        ],
        b"",
    );
    assert!(
        !out.status.success(),
        "s_client must refuse the certificate"
    );
    let err = wait_take(&failure);
    let tls = tls_error(&err);
    assert!(
        matches!(tls.rustls_error(), RustlsError::AlertReceived(_)),
        "{tls:?}"
    );
    assert!(err.to_string().contains("fatal alert"), "{err}");
    server.kill();
}

// ---------------------------------------------------------------------------------------------
// IP addresses, SNI, ALPN, resumption

#[test]
fn ip_address_is_verified_against_the_certificate_ip_and_sent_without_sni() {
    let (ca, leaf) = good_chain();
    let sni = Rc::new(Cell::new(Some(Some(String::from("unset")))));
    let slot = sni.clone();
    let (addr, server) = serve(
        TlsAcceptor::new(&leaf.cert, &leaf.key).unwrap(),
        move |tls| {
            let tls = tls.unwrap();
            slot.set(Some(tls.server_name().map(str::to_owned)));
            echo(Ok(tls));
        },
    );
    let mut tls = connector_for(&ca)
        .connect("127.0.0.1", TcpStream::connect(addr).unwrap())
        .unwrap();
    assert_eq!(tls.server_name(), Some("127.0.0.1"));
    tls.write_all(b"ip").unwrap();
    let mut buf = [0; 2];
    tls.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ip");
    assert_eq!(sni.take(), Some(None), "no SNI for an IP address");
    server.kill();
}

#[test]
fn ip_address_missing_from_the_certificate_fails_with_not_valid_for_name() {
    let ca = Ca::new("green test CA");
    let names_only = leaf(&["localhost"], Issuer::Ca(&ca), false);
    let err = handshake_error(&connector_for(&ca), &names_only, "127.0.0.1");
    assert!(
        matches!(
            tls_error(&err).certificate_error(),
            Some(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err}"
    );
    assert!(err.to_string().contains("'127.0.0.1'"), "{err}");
}

#[test]
fn alpn_is_negotiated_with_openssl_s_server() {
    let (ca, leaf) = good_chain();
    let server = SServer::start(&leaf, &["-www", "-alpn", "http/1.1"]);
    let connector = TlsConnector::builder()
        .add_root_certificate(ca.pem())
        .system_roots(false)
        .alpn(["h2", "http/1.1"])
        .build()
        .unwrap();
    let mut tls = connector.connect("localhost", server.tcp()).unwrap();
    assert_eq!(tls.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(get_page(&mut tls).starts_with("HTTP/1.0 200 ok"));
}

#[test]
fn alpn_and_sni_reach_our_acceptor_from_our_connector() {
    let (ca, leaf) = good_chain();
    let acceptor = TlsAcceptor::builder(&leaf.cert, &leaf.key)
        .alpn(["http/1.1", "h2"])
        .build()
        .unwrap();
    let (addr, server) = serve(acceptor, |tls| {
        let mut tls = tls.unwrap();
        assert_eq!(tls.alpn_protocol(), Some(&b"h2"[..]));
        let line = format!("sni={}\n", tls.server_name().unwrap());
        tls.write_all(line.as_bytes()).unwrap();
        tls.shutdown().unwrap();
    });
    let connector = TlsConnector::builder()
        .add_root_certificate(ca.pem())
        .system_roots(false)
        .alpn(["h2"])
        .build()
        .unwrap();
    let mut tls = connector
        .connect("localhost", TcpStream::connect(addr).unwrap())
        .unwrap();
    assert_eq!(tls.alpn_protocol(), Some(&b"h2"[..]));
    let mut reply = String::new();
    tls.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "sni=localhost\n");
    server.kill();
}

#[test]
fn second_handshake_with_openssl_resumes_through_the_shared_config() {
    let (ca, leaf) = good_chain();
    let server = SServer::start(&leaf, &["-www"]);
    let connector = connector_for(&ca);
    let mut first = connector.connect("localhost", server.tcp()).unwrap();
    assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
    // Reading the page also takes in the session tickets s_server sends.
    assert!(get_page(&mut first).contains("New, "));
    // s_server serves one connection at a time and holds this one until we close it too.
    first.shutdown().unwrap();
    drop(first);
    let mut second = connector
        .clone()
        .connect("localhost", server.tcp())
        .unwrap();
    assert!(second.is_resumed(), "{:?}", second.handshake_kind());
    let page = get_page(&mut second);
    assert!(
        page.contains("Reused, "),
        "s_server saw no resumption:\n{page}"
    );
}

#[test]
fn second_handshake_with_our_acceptor_resumes_on_both_sides() {
    let (ca, leaf) = good_chain();
    let kinds = Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = kinds.clone();
    let (addr, server) = serve(
        TlsAcceptor::new(&leaf.cert, &leaf.key).unwrap(),
        move |tls| {
            let tls = tls.unwrap();
            seen.borrow_mut().push(tls.handshake_kind());
            echo(Ok(tls));
        },
    );
    let connector = connector_for(&ca);
    let mut client_kinds = Vec::new();
    for _ in 0..2 {
        let mut tls = connector
            .connect("localhost", TcpStream::connect(addr).unwrap())
            .unwrap();
        client_kinds.push(tls.handshake_kind());
        tls.write_all(b"x").unwrap();
        let mut buf = [0; 1];
        tls.read_exact(&mut buf).unwrap();
        tls.shutdown().unwrap();
        assert_eq!(tls.read(&mut buf).unwrap(), 0);
    }
    let expected = vec![Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)];
    assert_eq!(client_kinds, expected);
    assert_eq!(*kinds.borrow(), expected);
    server.kill();
}

// ---------------------------------------------------------------------------------------------
// Deadlines and closing

#[test]
fn handshake_times_out_on_a_server_that_never_speaks() {
    let (ca, _) = good_chain();
    // A server that accepts, then never answers the hello.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = green::spawn(move || {
        let (_conn, _) = listener.accept().unwrap();
        green::sleep(Duration::from_secs(3600));
    });
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let err = connector_for(&ca).connect("localhost", tcp).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(10));
    silent.kill();
}

#[test]
fn server_hanging_up_during_the_handshake_gives_unexpected_eof() {
    let (ca, _) = good_chain();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let rude = green::spawn(move || drop(listener.accept().unwrap()));
    let err = connector_for(&ca)
        .connect("localhost", TcpStream::connect(addr).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
        ),
        "{err}"
    );
    rude.join().unwrap();
}

#[test]
fn accept_times_out_on_a_client_that_never_speaks() {
    let (_, leaf) = good_chain();
    let acceptor = TlsAcceptor::new(&leaf.cert, &leaf.key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _silent = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let err = acceptor.accept(tcp).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
}

#[test]
fn client_shutdown_gives_the_server_eof_and_the_server_answers_in_kind() {
    let (ca, leaf) = good_chain();
    let (addr, server) = serve(TlsAcceptor::new(&leaf.cert, &leaf.key).unwrap(), echo);
    let mut tls = connector_for(&ca)
        .connect("localhost", TcpStream::connect(addr).unwrap())
        .unwrap();
    tls.write_all(b"last words").unwrap();
    tls.shutdown().unwrap();
    let mut echoed = Vec::new();
    // The echo server saw our close_notify as EOF, then sent its own: read_to_end is Ok.
    tls.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed, b"last words");
    server.kill();
}

#[test]
fn peer_closing_without_close_notify_gives_unexpected_eof() {
    let (ca, leaf) = good_chain();
    let (addr, server) = serve(TlsAcceptor::new(&leaf.cert, &leaf.key).unwrap(), |tls| {
        let mut tls = tls.unwrap();
        tls.write_all(b"truncated").unwrap();
        tls.flush().unwrap();
        drop(tls.into_inner()); // the TCP connection closes, no close_notify
    });
    let mut tls = connector_for(&ca)
        .connect("localhost", TcpStream::connect(addr).unwrap())
        .unwrap();
    let mut data = Vec::new();
    let err = tls.read_to_end(&mut data).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
    assert_eq!(data, b"truncated", "the data before the close is delivered");
    server.kill();
}

// ---------------------------------------------------------------------------------------------
// Roots, the default connector, concurrency

#[test]
fn roots_are_accepted_as_pem_or_der_and_bad_pem_is_reported_by_build() {
    let (ca, leaf) = good_chain();
    let (addr, server) = serve(TlsAcceptor::new(&leaf.cert, &leaf.key).unwrap(), echo);
    let der = TlsConnector::builder()
        .add_root_certificate(ca.cert.der())
        .system_roots(false)
        .build()
        .unwrap();
    for connector in [der, connector_for(&ca)] {
        let mut tls = connector
            .connect("localhost", TcpStream::connect(addr).unwrap())
            .unwrap();
        tls.shutdown().unwrap();
        assert_eq!(tls.read(&mut [0; 4]).unwrap(), 0);
    }
    let err = TlsConnector::builder()
        .add_root_certificate("-----BEGIN CERTIFICATE-----\nnot base64!\n")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = TlsAcceptor::new(&leaf.cert, "-----BEGIN PRIVATE KEY-----\n").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    server.kill();
}

#[test]
fn tls_connect_resolves_the_name_and_verifies_with_the_system_roots() {
    let (_, leaf) = good_chain();
    let server = SServer::start(&leaf, &["-www"]);
    // The test CA is in no system store, so the default connector refuses the certificate.
    let err = green::tls::connect(&format!("localhost:{}", server.port)).unwrap_err();
    let tls = tls_error(&err);
    assert_eq!(tls.server_name(), Some("localhost"));
    assert_eq!(
        tls.certificate_error(),
        Some(&CertificateError::UnknownIssuer)
    );
    let err = green::tls::connect("no-port-here").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[test]
fn fifty_concurrent_tls_connections_in_one_thread() {
    const CLIENTS: usize = 50;
    let (ca, leaf) = good_chain();
    let (addr, server) = serve(TlsAcceptor::new(&leaf.cert, &leaf.key).unwrap(), echo);
    let connector = connector_for(&ca);
    let done = Rc::new(Cell::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (connector, done) = (connector.clone(), done.clone());
            green::spawn(move || {
                let mut tls = connector
                    .connect("localhost", TcpStream::connect(addr).unwrap())
                    .unwrap();
                let message = format!("hello from {i}");
                tls.write_all(message.as_bytes()).unwrap();
                tls.shutdown().unwrap();
                let mut echoed = String::new();
                tls.read_to_string(&mut echoed).unwrap();
                assert_eq!(echoed, message);
                done.set(done.get() + 1);
            })
        })
        .collect();
    for result in green::joinall(clients) {
        result.unwrap();
    }
    assert_eq!(done.get(), CLIENTS);
    server.kill();
}
