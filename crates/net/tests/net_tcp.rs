//! Green TCP: `TcpStream` and `TcpListener` behave like std's while blocking only the greenlet;
//! timeouts, Happy Eyeballs, cross-thread use and many concurrent connections on one hub.

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use green::net::{TcpListener, TcpStream};
use green::unversioned::{current_waiter, park, Waiter};

/// An address on loopback where nothing listens (a port just released by a listener).
fn closed_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A loopback address whose connects hang: a listener with backlog 0 whose accept queue is full
/// drops further SYNs, so a connect there completes only after the kernel's 1 s SYN retry.
/// Returns the listener and the queued connections, which must stay alive.
fn blackholed() -> (TcpListener, Vec<TcpStream>, SocketAddr) {
    let listener = TcpListener::options()
        .backlog(0)
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(stream) => queued.push(stream),
            Err(err) if err.kind() == ErrorKind::TimedOut => return (listener, queued, addr),
            Err(err) => panic!("unexpected connect error: {err}"),
        }
        assert!(queued.len() < 16, "the accept queue never filled");
    }
}

/// Echoes every connection (one greenlet each) until the peer shuts down its write half.
fn echo_server() -> (SocketAddr, green::Greenlet<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = green::spawn(move || loop {
        let (mut conn, _) = listener.accept().unwrap();
        green::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    });
    (addr, server)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn connect_write_read_round_trip_through_a_green_server() {
    let (addr, server) = echo_server();
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"hello green").unwrap();
    let mut buf = [0; 11];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello green");
    server.kill();
}

#[test]
fn connect_accepts_a_host_port_string_with_an_ip_literal() {
    let (addr, server) = echo_server();
    let mut client = TcpStream::connect(format!("127.0.0.1:{}", addr.port())).unwrap();
    client.write_all(b"x").unwrap();
    let mut buf = [0; 1];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(client.peer_addr().unwrap(), addr);
    server.kill();
}

#[test]
fn connect_resolves_localhost() {
    let (addr, server) = echo_server();
    let mut client = TcpStream::connect(("localhost", addr.port())).unwrap();
    client.write_all(b"local").unwrap();
    let mut buf = [0; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"local");
    server.kill();
}

#[test]
fn ipv6_loopback_round_trip() {
    let listener = TcpListener::bind("[::1]:0").unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.is_ipv6());
    let mut client = TcpStream::connect(addr).unwrap();
    let (mut server, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    client.write_all(b"six").unwrap();
    let mut buf = [0; 3];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"six");
}

#[test]
fn peek_returns_data_without_consuming_it() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let peeker = green::spawn(move || {
        let mut buf = [0; 16];
        let n = server.peek(&mut buf).unwrap();
        let peeked = buf[..n].to_vec();
        let mut all = [0; 4];
        (&server).read_exact(&mut all).unwrap();
        (peeked, all)
    });
    green::sleep(Duration::from_millis(20));
    client.write_all(b"peek").unwrap();
    let (peeked, all) = peeker.join().unwrap();
    assert_eq!(peeked, b"peek");
    assert_eq!(&all, b"peek");
}

#[test]
fn read_after_peer_shutdown_of_its_write_half_returns_zero() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let reader = green::spawn(move || {
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        let mut buf = [0; 8];
        (got, server.read(&mut buf).unwrap())
    });
    (&client).write_all(b"last words").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (got, again) = reader.join().unwrap();
    assert_eq!(got, b"last words");
    assert_eq!(again, 0, "a read after EOF gives 0 again");
    assert!(
        (&client).write_all(b"more").is_err(),
        "writing after shutdown(Write) fails"
    );
}

#[test]
fn nodelay_and_ttl_round_trip() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_nodelay(true).unwrap();
    assert!(client.nodelay().unwrap());
    client.set_nodelay(false).unwrap();
    assert!(!client.nodelay().unwrap());
    client.set_ttl(17).unwrap();
    assert_eq!(client.ttl().unwrap(), 17);
    listener.set_ttl(33).unwrap();
    assert_eq!(listener.ttl().unwrap(), 33);
}

#[test]
fn local_and_peer_addresses_mirror_each_other() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen_addr = listener.local_addr().unwrap();
    assert_ne!(listen_addr.port(), 0);
    let client = TcpStream::connect(listen_addr).unwrap();
    let (server, accepted_from) = listener.accept().unwrap();
    assert_eq!(client.peer_addr().unwrap(), listen_addr);
    assert_eq!(server.local_addr().unwrap(), listen_addr);
    assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());
    assert_eq!(accepted_from, client.local_addr().unwrap());
    let debug = format!("{client:?}");
    assert!(debug.contains(&listen_addr.to_string()), "{debug}");
}

#[test]
fn try_clone_gives_two_working_handles_with_the_same_timeouts() {
    let (addr, server) = echo_server();
    let original = TcpStream::connect(addr).unwrap();
    original
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let clone = original.try_clone().unwrap();
    assert_eq!(clone.read_timeout().unwrap(), Some(Duration::from_secs(5)));
    (&original).write_all(b"from original;").unwrap();
    (&clone).write_all(b"from clone").unwrap();
    let mut buf = [0; 24];
    (&clone).read_exact(&mut buf[..14]).unwrap();
    (&original).read_exact(&mut buf[14..]).unwrap();
    assert_eq!(&buf, b"from original;from clone");
    drop(original);
    (&clone).write_all(b"!").unwrap();
    let mut one = [0; 1];
    (&clone).read_exact(&mut one).unwrap();
    assert_eq!(&one, b"!", "the clone outlives the original");
    server.kill();
}

#[test]
fn from_std_makes_a_std_stream_green() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let std_stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let mut client = TcpStream::from_std(std_stream).unwrap();
    let ticks = Rc::new(Cell::new(0));
    let ticker = {
        let ticks = ticks.clone();
        green::spawn(move || {
            for _ in 0..3 {
                green::sleep(Duration::from_millis(10));
                ticks.set(ticks.get() + 1);
            }
            (&server).write_all(b"late").unwrap();
        })
    };
    let mut buf = [0; 4];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"late");
    assert_eq!(
        ticks.get(),
        3,
        "the read parked the greenlet, not the thread"
    );
    ticker.join().unwrap();
}

#[test]
fn into_std_gives_back_a_blocking_std_stream() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let mut std_stream = client.into_std().unwrap();
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        server.write_all(b"blocking").unwrap();
        server
    });
    // A non-blocking stream would fail with WouldBlock here instead of waiting for the writer.
    let mut buf = [0; 8];
    std_stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"blocking");
    writer.join().unwrap();
}

#[test]
fn read_and_write_work_through_shared_references() {
    let (addr, server) = echo_server();
    let client = TcpStream::connect(addr).unwrap();
    let mut writer: &TcpStream = &client;
    let mut reader: &TcpStream = &client;
    writer.write_all(b"by reference").unwrap();
    writer.flush().unwrap();
    let mut buf = [0; 12];
    reader.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"by reference");
    server.kill();
}

#[test]
fn one_greenlet_reads_while_another_writes_the_same_socket() {
    // 8 MiB through an echo server cannot fit in socket buffers: without a concurrent reader the
    // writer would block forever.
    const TOTAL: usize = 8 << 20;
    let (addr, server) = echo_server();
    let stream = Rc::new(TcpStream::connect(addr).unwrap());
    let writer = {
        let stream = stream.clone();
        green::spawn(move || {
            (&*stream).write_all(&pattern(TOTAL)).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
        })
    };
    let reader = {
        let stream = stream.clone();
        green::spawn(move || {
            let mut got = Vec::with_capacity(TOTAL);
            (&*stream).read_to_end(&mut got).unwrap();
            got
        })
    };
    writer.join().unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got.len(), TOTAL);
    assert!(got == pattern(TOTAL), "echoed bytes differ");
    server.kill();
}

#[test]
fn a_second_concurrent_reader_of_one_socket_gets_resource_busy() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = Rc::new(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    let (server, _) = listener.accept().unwrap();
    let first = {
        let client = client.clone();
        green::spawn(move || {
            let mut byte = [0];
            (&*client).read_exact(&mut byte).unwrap();
            byte[0]
        })
    };
    green::sleep(Duration::from_millis(10));
    let mut byte = [0];
    let err = (&*client).read(&mut byte).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceBusy, "{err}");
    (&server).write_all(b"1").unwrap();
    assert_eq!(
        first.join().unwrap(),
        b'1',
        "the first reader is unaffected"
    );
}

#[test]
fn read_timeout_gives_timed_out_and_the_socket_stays_usable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(
        client.read_timeout().unwrap(),
        Some(Duration::from_millis(100))
    );
    let start = Instant::now();
    let mut buf = [0; 4];
    let err = client.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(start.elapsed() >= Duration::from_millis(80));
    assert!(start.elapsed() < Duration::from_secs(2));
    (&server).write_all(b"late").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"late");
    client.set_read_timeout(None).unwrap();
    assert_eq!(client.read_timeout().unwrap(), None);
}

#[test]
fn write_all_honours_one_deadline_for_the_whole_buffer() {
    // The peer keeps reading, slowly: every single write makes progress within the timeout, so
    // only a deadline for the whole buffer can expire before all 64 MiB are through (~2.5 s).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let slow_reader = {
        let stop = stop.clone();
        thread::spawn(move || {
            peer.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut buf = vec![0; 128 * 1024];
            while !stop.load(Ordering::SeqCst) {
                match peer.read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => thread::sleep(Duration::from_millis(5)),
                    Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
    };
    client
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let data = vec![7u8; 64 << 20];
    let start = Instant::now();
    let err = client.write_all(&data).unwrap_err();
    let elapsed = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    drop(client);
    slow_reader.join().unwrap();
}

#[test]
fn zero_timeouts_are_invalid_input_like_std() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let read = client.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(read.kind(), ErrorKind::InvalidInput);
    let write = client.set_write_timeout(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(write.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        client.read_timeout().unwrap(),
        None,
        "unchanged by the error"
    );
    let connect =
        TcpStream::connect_timeout(&listener.local_addr().unwrap(), Duration::ZERO).unwrap_err();
    assert_eq!(connect.kind(), ErrorKind::InvalidInput);
}

#[test]
fn set_nonblocking_true_gives_would_block_instead_of_parking() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_nonblocking(true).unwrap();
    let mut buf = [0; 4];
    assert_eq!(
        client.read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    let (server, _) = listener.accept().unwrap();
    listener.set_nonblocking(true).unwrap();
    assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    client.set_nonblocking(false).unwrap();
    green::spawn(move || {
        green::sleep(Duration::from_millis(20));
        (&server).write_all(b"back").unwrap();
    });
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"back", "blocking again after set_nonblocking(false)");
}

#[test]
fn connect_to_a_closed_port_is_refused_naming_the_address() {
    let addr = closed_addr();
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn connect_timeout_succeeds_on_a_listening_port() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
    assert_eq!(client.peer_addr().unwrap(), addr);
}

#[test]
fn huge_timeouts_mean_no_deadline_instead_of_overflowing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    TcpStream::connect_timeout(&addr, Duration::MAX).unwrap();
    TcpStream::connect_with_timeout(addr, Duration::MAX).unwrap();
    listener.accept_timeout(Duration::MAX).unwrap();
    let (client, _) = listener.accept().unwrap();
    client.set_read_timeout(Some(Duration::MAX)).unwrap();
    client.set_write_timeout(Some(Duration::MAX)).unwrap();
    let peer = TcpStream::connect(addr).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_read_timeout(Some(Duration::MAX)).unwrap();
    let writer = green::spawn(move || {
        green::sleep(Duration::from_millis(20));
        (&peer).write_all(b"x").unwrap();
        peer
    });
    let mut byte = [0];
    (&server).read_exact(&mut byte).unwrap();
    writer.join().unwrap();
    (&client).write_all(b"x").unwrap();
}

#[test]
fn connect_timeout_to_a_full_backlog_times_out_naming_the_address() {
    let (_listener, _queued, addr) = blackholed();
    let start = Instant::now();
    let err = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn happy_eyeballs_starts_the_next_attempt_at_once_when_one_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    let closed: Vec<SocketAddr> = (0..4).map(|_| closed_addr()).collect();
    let mut addrs = closed.clone();
    addrs.push(open);
    // Four refused attempts staggered by 250 ms would take a second.
    let start = Instant::now();
    let client = TcpStream::connect(&addrs[..]).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(client.peer_addr().unwrap(), open);
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
}

#[test]
fn happy_eyeballs_staggers_past_a_slow_address_to_the_next() {
    let (_slow_listener, _queued, slow) = blackholed();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    let start = Instant::now();
    let client = TcpStream::connect(vec![slow, open]).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(client.peer_addr().unwrap(), open);
    assert!(
        elapsed >= Duration::from_millis(200),
        "the second attempt started before the 250 ms stagger: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "waited for the slow attempt: {elapsed:?}"
    );
}

#[test]
fn happy_eyeballs_error_names_every_address_when_all_fail() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| closed_addr()).collect();
    let err = TcpStream::connect(&addrs[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    let message = err.to_string();
    for addr in &addrs {
        assert!(
            message.contains(&addr.to_string()),
            "{addr} missing: {message}"
        );
    }
}

#[test]
fn connect_with_timeout_bounds_the_whole_race() {
    let (_l1, _q1, slow1) = blackholed();
    let (_l2, _q2, slow2) = blackholed();
    let start = Instant::now();
    let err = TcpStream::connect_with_timeout(vec![slow1, slow2], Duration::from_millis(400))
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains(&slow1.to_string()), "{err}");
    assert!(err.to_string().contains(&slow2.to_string()), "{err}");
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

/// Sockets of this process in SYN_SENT towards `addr` (from /proc/net/tcp).
fn connecting_to(addr: SocketAddr) -> usize {
    let remote = format!("0100007F:{:04X}", addr.port());
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields[2] == remote && fields[3] == "02"
        })
        .count()
}

#[test]
fn an_aborted_happy_eyeballs_race_closes_its_attempts() {
    let (_l1, _q1, slow1) = blackholed();
    let (_l2, _q2, slow2) = blackholed();
    let aborted = green::with_timeout(Duration::from_millis(400), || {
        TcpStream::connect(vec![slow1, slow2])
    });
    assert!(aborted.is_err(), "the race was cut short");
    green::sleep(Duration::from_millis(20));
    assert_eq!(
        connecting_to(slow1) + connecting_to(slow2),
        0,
        "attempts outlived the aborted connect"
    );
}

const PANIC_CHILD: &str = "GREEN_NET_TEST_PANIC_CHILD";

#[test]
fn a_socket_dropped_by_a_panic_on_a_thread_without_a_hub_does_not_abort() {
    // Run alone in a fresh process, so that no hub exists yet anywhere.
    if std::env::var_os(PANIC_CHILD).is_some() {
        let unwound = std::panic::catch_unwind(|| {
            let _listener = TcpListener::bind("127.0.0.1:0").unwrap();
            panic!("unwinding past a green socket");
        });
        assert!(unwound.is_err());
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_socket_dropped_by_a_panic_on_a_thread_without_a_hub_does_not_abort",
            "--exact",
            "--test-threads=1",
        ])
        .env(PANIC_CHILD, "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child failed ({})\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 passed"));
}

#[test]
fn sockets_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<TcpStream>();
    send_sync::<TcpListener>();
    send_sync::<green::net::UdpSocket>();
    send_sync::<green::net::UnixStream>();
    send_sync::<green::net::UnixListener>();
    send_sync::<green::net::UnixDatagram>();
}

#[test]
fn a_stream_made_on_one_thread_works_on_another_with_no_setup() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let other = thread::spawn(move || {
        let mut client = client;
        client.write_all(b"ping").unwrap();
        let mut buf = [0; 4];
        client.read_exact(&mut buf).unwrap();
        buf
    });
    let (mut server, _) = listener.accept().unwrap();
    let mut buf = [0; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").unwrap();
    assert_eq!(&other.join().unwrap(), b"pong");
}

#[test]
fn sockets_work_on_a_plain_thread_without_any_greenlet() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"no greenlets").unwrap();
    let mut buf = [0; 12];
    server.read_exact(&mut buf).unwrap();
    server.write_all(&buf).unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"no greenlets");
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert_eq!(
        client.read(&mut buf).unwrap_err().kind(),
        ErrorKind::TimedOut,
        "a root-context read times out like a greenlet's"
    );
}

/// Parks until `count` greenlets have called it.
fn barrier(arrived: &Cell<usize>, waiters: &RefCell<Vec<Waiter>>, count: usize) {
    arrived.set(arrived.get() + 1);
    if arrived.get() == count {
        for waiter in waiters.borrow_mut().drain(..) {
            waiter.wake();
        }
        return;
    }
    while arrived.get() < count {
        waiters.borrow_mut().push(current_waiter());
        park().unwrap();
    }
}

#[test]
fn a_thousand_concurrent_connections_echo_in_one_thread() {
    const CLIENTS: usize = 1000;
    let (addr, server) = echo_server();
    let arrived = Rc::new(Cell::new(0));
    let waiters = Rc::new(RefCell::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (arrived, waiters) = (arrived.clone(), waiters.clone());
            green::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                // Every connection is open before any is used.
                barrier(&arrived, &waiters, CLIENTS);
                let message = (i as u64).to_le_bytes();
                stream.write_all(&message).unwrap();
                let mut echo = [0; 8];
                stream.read_exact(&mut echo).unwrap();
                u64::from_le_bytes(echo)
            })
        })
        .collect();
    let echoed: Vec<u64> = green::joinall(clients)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(echoed, (0..CLIENTS as u64).collect::<Vec<_>>());
    server.kill();
}

#[test]
fn incoming_yields_each_accepted_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = green::spawn(move || {
        let mut served = 0;
        for (i, stream) in listener.incoming().take(3).enumerate() {
            stream.unwrap().write_all(&[i as u8]).unwrap();
            served += 1;
        }
        served
    });
    for i in 0..3u8 {
        let mut client = TcpStream::connect(addr).unwrap();
        let mut byte = [0];
        client.read_exact(&mut byte).unwrap();
        assert_eq!(byte[0], i);
    }
    assert_eq!(server.join().unwrap(), 3);
}

#[test]
fn reuse_port_lets_two_listeners_share_a_port() {
    let first = TcpListener::options()
        .reuse_port(true)
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = first.local_addr().unwrap();
    let err = TcpListener::bind(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    let second = TcpListener::options().reuse_port(true).bind(addr).unwrap();
    assert_eq!(second.local_addr().unwrap(), addr);
    let clients: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut accepted = [0; 2];
    for (count, listener) in accepted.iter_mut().zip([&first, &second]) {
        listener.set_nonblocking(true).unwrap();
        while listener.accept().is_ok() {
            *count += 1;
        }
    }
    assert_eq!(accepted[0] + accepted[1], clients.len());
    assert!(
        accepted[0] > 0 && accepted[1] > 0,
        "the kernel spreads connections over both: {accepted:?}"
    );
}

#[test]
fn accept_timeout_gives_timed_out_when_nobody_connects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = listener
        .accept_timeout(Duration::from_millis(50))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
}

/// A connected pair on loopback: (client, server side).
fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = green::spawn(move || listener.accept().map(|(stream, _)| stream));
    let client = TcpStream::connect(addr).unwrap();
    let server = accept.join().unwrap().unwrap();
    (client, server)
}

/// Shuts `stream` down from a second greenlet while a first is blocked reading it; returns what
/// the read gave and how long it was blocked.
fn read_woken_by_shutdown_from_another_greenlet(
    reader_side: Rc<TcpStream>,
    closer_side: Rc<TcpStream>,
) -> (std::io::Result<usize>, Duration) {
    let reader = green::spawn(move || {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let read = (&*reader_side).read(&mut buf);
        (read, started.elapsed())
    });
    let closer = green::spawn(move || {
        green::sleep(Duration::from_millis(30));
        closer_side.shutdown(Shutdown::Both).unwrap();
    });
    closer.join().unwrap();
    reader.join().unwrap()
}

#[test]
fn shutdown_both_from_another_greenlet_wakes_a_reader_blocked_on_a_shared_rc_stream() {
    let (client, _server) = connected_pair();
    let shared = Rc::new(client);
    let (read, blocked) =
        read_woken_by_shutdown_from_another_greenlet(shared.clone(), shared.clone());
    assert_eq!(read.unwrap(), 0, "the blocked read ends with EOF");
    let write = (&*shared).write(b"late");
    assert_eq!(write.unwrap_err().kind(), ErrorKind::BrokenPipe);
    assert!(blocked >= Duration::from_millis(25), "{blocked:?}");
    assert!(blocked < Duration::from_secs(5), "{blocked:?}");
}

#[test]
fn shutdown_both_through_a_try_clone_wakes_a_reader_blocked_on_the_original() {
    let (client, _server) = connected_pair();
    let clone = client.try_clone().unwrap();
    let (read, blocked) =
        read_woken_by_shutdown_from_another_greenlet(Rc::new(client), Rc::new(clone));
    assert_eq!(read.unwrap(), 0, "the blocked read ends with EOF");
    assert!(blocked < Duration::from_secs(5), "{blocked:?}");
}
