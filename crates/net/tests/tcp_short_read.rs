//! A TCP read that returns fewer bytes than asked leaves the socket known to be empty, so the next
//! read parks for a readiness edge without first making a syscall bound to fail with `EAGAIN`
//! (`GreenFd::read_stream_with`). These tests prove that no data, EOF or timeout is lost to that
//! shortcut: data arriving later, while the reader is elsewhere, or together with the peer's FIN.

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

use green::net::{TcpListener, TcpStream};

/// A connected pair on loopback: (client side, server side). The server side has already made
/// one short read that had to park first, so its fd is registered with the hub and known empty.
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    // A hang must fail the test instead of blocking it forever.
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let writer = green::spawn(move || {
        green::sleep(Duration::from_millis(1));
        client.write_all(b"ready").unwrap();
        client
    });
    let mut buf = [0u8; 64];
    assert_eq!(server.read(&mut buf).unwrap(), 5);
    (writer.join().unwrap(), server)
}

#[test]
fn ping_pong_after_short_reads_loses_no_message() {
    let (mut client, server) = pair();
    let echoed = Rc::new(Cell::new(0usize));
    let echo = {
        let echoed = echoed.clone();
        green::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = (&server).read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                (&server).write_all(&buf[..n]).unwrap();
                echoed.set(echoed.get() + 1);
            }
        })
    };
    let mut reply = [0u8; 8];
    for i in 0..1000u64 {
        client.write_all(&i.to_le_bytes()).unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(u64::from_le_bytes(reply), i);
    }
    client.shutdown(Shutdown::Write).unwrap();
    echo.join().unwrap();
    assert_eq!(echoed.get(), 1000);
}

#[test]
fn data_that_arrives_while_the_reader_is_busy_elsewhere_is_read() {
    let (mut client, mut server) = pair();
    client.write_all(b"one").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(server.read(&mut buf).unwrap(), 3);
    // The reader is away (sleeping) when the next data and its edge arrive.
    let writer = green::spawn(move || {
        client.write_all(b"two").unwrap();
        client
    });
    green::sleep(Duration::from_millis(20));
    assert_eq!(server.read(&mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"two");
    drop(writer.join().unwrap());
}

#[test]
fn data_and_fin_seen_before_a_short_read_give_eof_at_once() {
    let (mut client, server) = pair();
    let reads = Rc::new(Cell::new(0usize));
    let reader = {
        let reads = reads.clone();
        green::spawn(move || {
            let mut buf = [0u8; 64];
            // Parks first (nothing sent yet): the hub then sees data and FIN in one edge.
            let n = (&server).read(&mut buf).unwrap();
            reads.set(reads.get() + 1);
            assert_eq!(&buf[..n], b"last words");
            // No edge will ever come again: this read must not park waiting for one.
            let eof = (&server).read(&mut buf);
            assert_eq!(eof.unwrap(), 0);
            reads.set(reads.get() + 1);
        })
    };
    green::yield_now();
    client.write_all(b"last words").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    reader.join().unwrap();
    assert_eq!(reads.get(), 2);
}

#[test]
fn fin_after_a_short_read_wakes_the_parked_reader_with_eof() {
    let (mut client, mut server) = pair();
    client.write_all(b"abc").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(server.read(&mut buf).unwrap(), 3);
    let closer = green::spawn(move || {
        green::sleep(Duration::from_millis(20));
        client.shutdown(Shutdown::Write).unwrap();
        client
    });
    assert_eq!(server.read(&mut buf).unwrap(), 0);
    drop(closer.join().unwrap());
}

#[test]
fn read_timeout_after_a_short_read_still_times_out() {
    let (mut client, mut server) = pair();
    server
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    client.write_all(b"x").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(server.read(&mut buf).unwrap(), 1);
    let err = server.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
}

#[test]
fn nonblocking_read_after_a_short_read_returns_would_block_at_once() {
    let (mut client, mut server) = pair();
    client.write_all(b"x").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(server.read(&mut buf).unwrap(), 1);
    // A parked read would time out after 10 s instead.
    server.set_nonblocking(true).unwrap();
    let err = server.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    server.set_nonblocking(false).unwrap();
    client.write_all(b"y").unwrap();
    assert_eq!(server.read(&mut buf).unwrap(), 1);
}

#[test]
fn a_full_read_does_not_make_the_next_read_park_first() {
    let (mut client, mut server) = pair();
    client.write_all(&[7u8; 100]).unwrap();
    let mut small = [0u8; 10];
    // Ten full reads drain the 100 bytes; none of them may park waiting for an edge.
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(server.read(&mut small).unwrap(), 10);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn known_empty_holds_after_a_short_read_until_data_or_eof_arrives() {
    let (mut client, server) = pair();
    assert!(
        server.known_empty(),
        "a short read leaves the socket known empty"
    );
    client.write_all(b"more").unwrap();
    // The hub notices the new data at its next poll.
    green::sleep(Duration::from_millis(20));
    assert!(!server.known_empty(), "a readiness event clears it");
    let mut buf = [0u8; 64];
    assert_eq!((&server).read(&mut buf).unwrap(), 4);
    assert!(server.known_empty());
    client.shutdown(Shutdown::Write).unwrap();
    green::sleep(Duration::from_millis(20));
    assert!(!server.known_empty(), "the peer's FIN clears it too");
    assert_eq!((&server).read(&mut buf).unwrap(), 0);
}

#[test]
fn a_first_short_read_without_a_wait_leaves_the_socket_known_empty() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"early").unwrap();
    // Let the bytes reach the server's receive queue, so its first read never has to park.
    green::sleep(Duration::from_millis(20));
    let mut buf = [0u8; 64];
    assert_eq!(server.read(&mut buf).unwrap(), 5);
    assert!(server.known_empty());
    client.write_all(b"later").unwrap();
    server.wait_readable().unwrap();
    assert!(!server.known_empty());
    assert_eq!(server.read(&mut buf).unwrap(), 5);
}

#[test]
fn wait_readable_parks_until_data_arrives_and_honours_the_read_timeout() {
    let (client, server) = pair();
    assert!(server.known_empty());
    server
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert_eq!(
        server.wait_readable().unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let arrived = Rc::new(Cell::new(false));
    let writer = {
        let arrived = arrived.clone();
        green::spawn(move || {
            green::sleep(Duration::from_millis(20));
            arrived.set(true);
            (&client).write_all(b"data").unwrap();
            client
        })
    };
    server.wait_readable().unwrap();
    assert!(arrived.get(), "woke before any data was sent");
    let mut buf = [0u8; 64];
    assert_eq!((&server).read(&mut buf).unwrap(), 4);
    drop(writer.join().unwrap());
}
