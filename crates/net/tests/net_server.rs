//! `StreamServer`, `serve_workers` and `DatagramServer`: concurrency, limits, graceful stop,
//! handler panics and accept-error backoff.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use green::net::{serve_workers, DatagramServer, StreamServer, TcpStream, UdpSocket};
use green::net::{Datagram, DatagramHandle, ServerHandle};
use green::unversioned::{current_waiter, park, Waiter};

mod common;
use common::logger;

/// Echoes until the peer closes.
fn echo(mut stream: TcpStream, _peer: SocketAddr) {
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Counts its drops.
struct DropCounter(Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Green-sleeps until `done()` or two seconds pass.
fn wait_for(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !done() && Instant::now() < deadline {
        green::sleep(Duration::from_millis(2));
    }
    assert!(done(), "condition not reached within 2 s");
}

fn send_and_expect(addr: SocketAddr, message: &[u8]) {
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(message).unwrap();
    let mut echo = vec![0; message.len()];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(echo, message);
}

#[test]
fn stream_server_echoes_for_200_concurrent_clients() {
    const CLIENTS: usize = 200;
    let server = Rc::new(StreamServer::new("127.0.0.1:0", echo).start().unwrap());
    let addr = server.local_addr();
    let arrived = Rc::new(Cell::new(0));
    let waiters: Rc<RefCell<Vec<Waiter>>> = Rc::default();
    let concurrent = Rc::new(Cell::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (server, arrived, waiters, concurrent) = (
                server.clone(),
                arrived.clone(),
                waiters.clone(),
                concurrent.clone(),
            );
            green::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                let message = format!("client {i}");
                stream.write_all(message.as_bytes()).unwrap();
                let mut echo = vec![0; message.len()];
                stream.read_exact(&mut echo).unwrap();
                assert_eq!(echo, message.as_bytes());
                // Hold the connection until every client has its echo.
                arrived.set(arrived.get() + 1);
                if arrived.get() == CLIENTS {
                    concurrent.set(server.connections());
                    waiters.borrow_mut().drain(..).for_each(|w| w.wake());
                }
                while arrived.get() < CLIENTS {
                    waiters.borrow_mut().push(current_waiter());
                    park().unwrap();
                }
            })
        })
        .collect();
    for result in green::joinall(clients) {
        result.unwrap();
    }
    assert_eq!(concurrent.get(), CLIENTS, "one live handler per client");
    assert_eq!(server.accepted(), CLIENTS as u64);
    assert!(
        server.stop(Duration::from_secs(2)),
        "handlers end when clients close"
    );
    assert_eq!(server.connections(), 0);
}

#[test]
fn stop_refuses_new_connections_and_waits_for_running_handlers() {
    let finished = Rc::new(Cell::new(0));
    let server = {
        let finished = finished.clone();
        StreamServer::new("127.0.0.1:0", move |mut stream: TcpStream, _| {
            let mut byte = [0];
            stream.read_exact(&mut byte).unwrap();
            green::sleep(Duration::from_millis(150));
            stream.write_all(b"done").unwrap();
            finished.set(finished.get() + 1);
        })
        .start()
        .unwrap()
    };
    let addr = server.local_addr();
    let client = green::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"x").unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        reply
    });
    wait_for(|| server.connections() == 1);
    let start = Instant::now();
    assert!(
        server.stop(Duration::from_secs(3)),
        "the handler finished within grace"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "stop waited for the handler"
    );
    assert_eq!(finished.get(), 1);
    assert_eq!(client.join().unwrap(), b"done");
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn stop_kills_handlers_still_running_after_grace_dropping_each_once() {
    let (started, finished, drops) = (
        Rc::new(Cell::new(0)),
        Rc::new(Cell::new(0)),
        Rc::new(Cell::new(0)),
    );
    let server = {
        let (started, finished, drops) = (started.clone(), finished.clone(), drops.clone());
        StreamServer::new("127.0.0.1:0", move |mut stream: TcpStream, _| {
            let _guard = DropCounter(drops.clone());
            started.set(started.get() + 1);
            let mut buf = [0; 1];
            let _ = stream.read(&mut buf);
            finished.set(finished.get() + 1);
        })
        .start()
        .unwrap()
    };
    let clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server.local_addr()).unwrap())
        .collect();
    wait_for(|| started.get() == 3);
    let start = Instant::now();
    assert!(
        !server.stop(Duration::from_millis(100)),
        "the handlers outlived the grace"
    );
    assert!(start.elapsed() >= Duration::from_millis(80));
    assert_eq!(drops.get(), 3);
    assert_eq!(
        finished.get(),
        0,
        "killed handlers never got past their read"
    );
    assert_eq!(server.connections(), 0);
    for mut client in clients {
        let mut buf = [0; 1];
        assert_eq!(
            client.read(&mut buf).unwrap(),
            0,
            "the killed handler closed it"
        );
    }
    green::sleep(Duration::from_millis(20));
    assert_eq!(drops.get(), 3, "each handler dropped exactly once");
}

#[test]
fn max_connections_caps_running_handlers_and_serves_every_client() {
    const LIMIT: usize = 4;
    let (running, peak, served) = (
        Rc::new(Cell::new(0)),
        Rc::new(Cell::new(0)),
        Rc::new(Cell::new(0)),
    );
    let server = {
        let (running, peak, served) = (running.clone(), peak.clone(), served.clone());
        StreamServer::new("127.0.0.1:0", move |mut stream: TcpStream, _| {
            running.set(running.get() + 1);
            peak.set(peak.get().max(running.get()));
            let mut byte = [0];
            stream.read_exact(&mut byte).unwrap();
            green::sleep(Duration::from_millis(20));
            stream.write_all(&byte).unwrap();
            served.set(served.get() + 1);
            running.set(running.get() - 1);
        })
        .max_connections(LIMIT)
        .start()
        .unwrap()
    };
    let addr = server.local_addr();
    let clients: Vec<_> = (0..3 * LIMIT as u8)
        .map(|i| {
            green::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.write_all(&[i]).unwrap();
                let mut byte = [0];
                stream.read_exact(&mut byte).unwrap();
                byte[0] == i
            })
        })
        .collect();
    for result in green::joinall(clients) {
        assert!(result.unwrap());
    }
    assert_eq!(served.get(), 3 * LIMIT);
    assert_eq!(
        peak.get(),
        LIMIT,
        "the limit was reached and never exceeded"
    );
    assert!(server.stop(Duration::from_secs(1)));
}

#[test]
fn stop_at_the_connection_limit_closes_the_waiting_connection_too() {
    let drops = Rc::new(Cell::new(0));
    let server = {
        let drops = drops.clone();
        StreamServer::new("127.0.0.1:0", move |mut stream: TcpStream, _| {
            let _guard = DropCounter(drops.clone());
            let mut buf = [0; 1];
            let _ = stream.read(&mut buf);
        })
        .max_connections(1)
        .start()
        .unwrap()
    };
    let addr = server.local_addr();
    let mut running = TcpStream::connect(addr).unwrap();
    wait_for(|| server.connections() == 1);
    // Accepted, or queued in the backlog, while the only slot is taken.
    let mut waiting = TcpStream::connect(addr).unwrap();
    green::sleep(Duration::from_millis(20));
    assert_eq!(server.accepted(), 2, "accepted, waiting for a free slot");
    assert!(!server.stop(Duration::from_millis(50)));
    assert_eq!(drops.get(), 1, "only the running handler ever started");
    let mut buf = [0; 1];
    assert!(matches!(running.read(&mut buf), Ok(0) | Err(_)));
    assert!(matches!(waiting.read(&mut buf), Ok(0) | Err(_)));
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn a_panicking_handler_does_not_stop_the_server() {
    let server = StreamServer::new("127.0.0.1:0", |mut stream: TcpStream, _| {
        let mut byte = [0];
        stream.read_exact(&mut byte).unwrap();
        if byte[0] == b'!' {
            panic!("handler fails on purpose");
        }
        stream.write_all(&byte).unwrap();
    })
    .start()
    .unwrap();
    let addr = server.local_addr();
    let mut doomed = TcpStream::connect(addr).unwrap();
    doomed.write_all(b"!").unwrap();
    let mut buf = [0];
    assert!(
        matches!(doomed.read(&mut buf), Ok(0) | Err(_)),
        "the panicking handler's stream is closed"
    );
    send_and_expect(addr, b"a");
    send_and_expect(addr, b"b");
    assert_eq!(server.accepted(), 3);
    assert!(server.stop(Duration::from_secs(1)));
}

#[test]
fn killing_serve_forever_stops_accepting() {
    let listener = green::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = green::spawn(move || StreamServer::from_listener(listener, echo).serve_forever());
    send_and_expect(addr, b"served");
    serving.kill();
    green::sleep(Duration::from_millis(20));
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn killing_datagram_serve_forever_closes_its_socket() {
    // A port just released, since the server binds by address only.
    let addr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let serving = green::spawn(move || {
        DatagramServer::new(addr, |datagram: Datagram| {
            datagram.reply(&datagram.data).unwrap();
        })
        .serve_forever()
    });
    green::sleep(Duration::from_millis(20));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.send_to(b"hi", addr).unwrap();
    let mut buf = [0; 8];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hi");
    serving.kill();
    green::sleep(Duration::from_millis(20));
    UdpSocket::bind(addr).expect("the server's socket is closed");
}

const EMFILE_CHILD: &str = "GREEN_NET_TEST_EMFILE_CHILD";

/// User plus system CPU time of this process.
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call to fill in.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

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

/// The child's half of the EMFILE test: runs in a process of its own, since it exhausts the
/// process's descriptors.
fn accept_backoff_child() {
    logger::install();
    let server = StreamServer::new("127.0.0.1:0", echo).start().unwrap();
    let addr = server.local_addr();
    send_and_expect(addr, b"warm up");
    // The warm-up handler closes its stream when it sees EOF: that must not free a descriptor
    // for the server later.
    wait_for(|| server.connections() == 0);
    limit_open_files(256);
    let mut hoard = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hoard.push(file),
            Err(err) if err.raw_os_error() == Some(libc::EMFILE) => break,
            Err(err) => panic!("unexpected open error: {err}"),
        }
    }
    // One descriptor for the client; the server's accept then has none.
    hoard.pop();
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"queued").unwrap();
    green::sleep(Duration::from_millis(20));
    let before = cpu_time();
    green::sleep(Duration::from_millis(500));
    let spent = cpu_time() - before;
    assert!(
        spent < Duration::from_millis(100),
        "the accept loop spun: {spent:?} of CPU in 500 ms"
    );
    client.set_nonblocking(true).unwrap();
    let mut buf = [0; 6];
    assert_eq!(
        client.read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "not served while descriptors are exhausted"
    );
    client.set_nonblocking(false).unwrap();
    drop(hoard);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"queued", "served once descriptors are free");
    send_and_expect(addr, b"and new clients too");
    drop(client);
    assert!(server.stop(Duration::from_secs(1)));
    // The episode is logged once each way, through `log`.
    let paused = logger::matching("pausing accepts");
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0].0, log::Level::Warn);
    assert!(paused[0].1.starts_with("green_net::server: "), "{paused:?}");
    let resumed = logger::matching("accepting again");
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(resumed[0].0, log::Level::Info);
}

#[test]
fn accept_errors_back_off_without_spinning_and_the_server_recovers() {
    if std::env::var_os(EMFILE_CHILD).is_some() {
        accept_backoff_child();
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "accept_errors_back_off_without_spinning_and_the_server_recovers",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
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

#[test]
fn serve_workers_serves_on_two_threads_and_stop_joins_them() {
    let names: Arc<Mutex<HashSet<String>>> = Arc::default();
    let workers = {
        let names = names.clone();
        serve_workers("127.0.0.1:0", 2, None, move || {
            let names = names.clone();
            move |stream: TcpStream, peer: SocketAddr| {
                let name = thread::current().name().unwrap_or("unnamed").to_string();
                names.lock().unwrap().insert(name);
                echo(stream, peer);
            }
        })
        .unwrap()
    };
    let addr = workers.local_addr();
    for i in 0..40 {
        send_and_expect(addr, format!("request {i}").as_bytes());
    }
    let seen = names.lock().unwrap().clone();
    let expected: HashSet<String> = ["green-worker-0", "green-worker-1"]
        .map(String::from)
        .into();
    assert_eq!(
        seen, expected,
        "the kernel spread 40 connections over both workers"
    );
    assert!(workers.stop(Duration::from_secs(1)));
    assert_eq!(
        Arc::strong_count(&names),
        1,
        "the joined workers dropped their handlers"
    );
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn stream_server_workers_clone_the_handler_into_each_thread() {
    let names: Arc<Mutex<HashSet<String>>> = Arc::default();
    let handler = {
        let names = names.clone();
        move |stream: TcpStream, peer: SocketAddr| {
            let name = thread::current().name().unwrap_or("unnamed").to_string();
            names.lock().unwrap().insert(name);
            echo(stream, peer);
        }
    };
    let workers = StreamServer::new("127.0.0.1:0", handler)
        .max_connections(8)
        .workers(2)
        .unwrap();
    let addr = workers.local_addr();
    for i in 0..40 {
        send_and_expect(addr, format!("request {i}").as_bytes());
    }
    assert_eq!(
        names.lock().unwrap().len(),
        2,
        "connections were served by both worker threads"
    );
    assert!(workers.stop(Duration::from_secs(1)));
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn datagram_server_replies_to_each_datagram_and_stops() {
    const CLIENTS: usize = 20;
    let handled = Rc::new(Cell::new(0));
    let server: DatagramHandle = {
        let handled = handled.clone();
        DatagramServer::new("127.0.0.1:0", move |datagram: Datagram| {
            handled.set(handled.get() + 1);
            datagram.reply(&datagram.data.to_ascii_uppercase()).unwrap();
        })
        .start()
        .unwrap()
    };
    let addr = server.local_addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            green::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                socket
                    .send_to(format!("hello {i}").as_bytes(), addr)
                    .unwrap();
                let mut buf = [0; 32];
                let (n, from) = socket.recv_from(&mut buf).unwrap();
                assert_eq!(from, addr);
                String::from_utf8(buf[..n].to_vec()).unwrap()
            })
        })
        .collect();
    let replies: Vec<String> = green::joinall(clients)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<String> = (0..CLIENTS).map(|i| format!("HELLO {i}")).collect();
    assert_eq!(replies, expected);
    assert_eq!(handled.get(), CLIENTS);
    assert!(server.stop(Duration::from_secs(1)));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    socket.send(b"anyone?").unwrap();
    let mut buf = [0; 32];
    assert!(socket.recv(&mut buf).is_err(), "nobody answers after stop");
    assert_eq!(handled.get(), CLIENTS);
}

/// A `ServerHandle` is plain data for the caller: `Debug` shows where it listens.
#[test]
fn server_handle_debug_shows_the_address() {
    let server: ServerHandle = StreamServer::new("127.0.0.1:0", echo).start().unwrap();
    let debug = format!("{server:?}");
    assert!(debug.contains(&server.local_addr().to_string()), "{debug}");
    assert!(server.stop(Duration::from_millis(100)));
}
