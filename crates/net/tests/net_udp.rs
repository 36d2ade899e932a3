//! Green UDP: `UdpSocket` behaves like std's while a receive blocks only the greenlet.

use std::cell::Cell;
use std::io::ErrorKind;
use std::rc::Rc;
use std::time::{Duration, Instant};

use green::net::UdpSocket;

fn bound() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

#[test]
fn send_to_and_recv_from_round_trip_with_the_source_address() {
    let (a, b) = (bound(), bound());
    let b_addr = b.local_addr().unwrap();
    let receiver = green::spawn(move || {
        let mut buf = [0; 32];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        b.send_to(&buf[..n], from).unwrap();
        (buf[..n].to_vec(), from)
    });
    green::sleep(Duration::from_millis(10));
    assert_eq!(a.send_to(b"datagram", b_addr).unwrap(), 8);
    let (got, from) = receiver.join().unwrap();
    assert_eq!(got, b"datagram");
    assert_eq!(from, a.local_addr().unwrap());
    let mut buf = [0; 32];
    let (n, reply_from) = a.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"datagram");
    assert_eq!(reply_from, b_addr);
}

#[test]
fn send_to_accepts_a_host_port_string_with_an_ip_literal() {
    let (a, b) = (bound(), bound());
    let target = format!("127.0.0.1:{}", b.local_addr().unwrap().port());
    a.send_to(b"by string", target.as_str()).unwrap();
    let mut buf = [0; 16];
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"by string");
}

#[test]
fn connect_then_send_and_recv_talk_to_the_peer_only() {
    let (a, b, stranger) = (bound(), bound(), bound());
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
    stranger
        .send_to(b"not from the peer", a.local_addr().unwrap())
        .unwrap();
    b.send(b"from the peer").unwrap();
    let mut buf = [0; 32];
    let n = a.recv(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        b"from the peer",
        "a connected socket filters senders"
    );
    a.send(b"reply").unwrap();
    let n = b.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply");
}

#[test]
fn peek_from_leaves_the_datagram_queued() {
    let (a, b) = (bound(), bound());
    a.send_to(b"peeked", b.local_addr().unwrap()).unwrap();
    let mut buf = [0; 16];
    let (n, from) = b.peek_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"peeked");
    assert_eq!(from, a.local_addr().unwrap());
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"peeked", "still there after the peek");
    b.set_nonblocking(true).unwrap();
    assert_eq!(
        b.recv_from(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "consumed by the recv"
    );
}

#[test]
fn recv_timeout_gives_timed_out_and_the_socket_stays_usable() {
    let (a, b) = (bound(), bound());
    b.set_read_timeout(Some(Duration::from_millis(80))).unwrap();
    assert_eq!(b.read_timeout().unwrap(), Some(Duration::from_millis(80)));
    let mut buf = [0; 8];
    let start = Instant::now();
    let err = b.recv_from(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(start.elapsed() >= Duration::from_millis(60));
    assert!(start.elapsed() < Duration::from_secs(2));
    a.send_to(b"after", b.local_addr().unwrap()).unwrap();
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"after");
    assert_eq!(
        b.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn broadcast_and_multicast_options_round_trip() {
    let socket = bound();
    assert!(!socket.broadcast().unwrap());
    socket.set_broadcast(true).unwrap();
    assert!(socket.broadcast().unwrap());
    socket.set_broadcast(false).unwrap();
    assert!(!socket.broadcast().unwrap());
    socket.set_multicast_ttl_v4(7).unwrap();
    assert_eq!(socket.multicast_ttl_v4().unwrap(), 7);
    socket.set_multicast_loop_v4(false).unwrap();
    assert!(!socket.multicast_loop_v4().unwrap());
    socket.set_ttl(21).unwrap();
    assert_eq!(socket.ttl().unwrap(), 21);
}

#[test]
fn many_greenlets_receive_on_separate_sockets() {
    const SOCKETS: usize = 200;
    let sender = bound();
    let received = Rc::new(Cell::new(0));
    let receivers: Vec<(std::net::SocketAddr, green::Greenlet<u16>)> = (0..SOCKETS)
        .map(|_| {
            let socket = bound();
            let addr = socket.local_addr().unwrap();
            let received = received.clone();
            let greenlet = green::spawn(move || {
                let mut buf = [0; 2];
                let (n, _) = socket.recv_from(&mut buf).unwrap();
                assert_eq!(n, 2);
                received.set(received.get() + 1);
                u16::from_le_bytes(buf)
            });
            (addr, greenlet)
        })
        .collect();
    green::sleep(Duration::from_millis(10));
    assert_eq!(received.get(), 0, "every receiver is parked");
    // Send in reverse order: each greenlet wakes for its own socket only.
    for (i, (addr, _)) in receivers.iter().enumerate().rev() {
        sender.send_to(&(i as u16).to_le_bytes(), addr).unwrap();
    }
    let got: Vec<u16> = green::joinall(receivers.into_iter().map(|(_, g)| g))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..SOCKETS as u16).collect::<Vec<_>>());
    assert_eq!(received.get(), SOCKETS);
}

#[test]
fn try_clone_and_into_std_keep_the_same_socket() {
    let (a, b) = (bound(), bound());
    let clone = b.try_clone().unwrap();
    a.send_to(b"one", b.local_addr().unwrap()).unwrap();
    let mut buf = [0; 8];
    let (n, _) = clone.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");
    let std_socket = b.into_std().unwrap();
    std_socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    a.send_to(b"two", std_socket.local_addr().unwrap()).unwrap();
    let (n, _) = std_socket.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"two");
}
