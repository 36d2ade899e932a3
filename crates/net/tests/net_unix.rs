//! Green Unix-domain sockets: streams, listeners and datagrams with std's API.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::time::Duration;

use green::net::{UnixDatagram, UnixListener, UnixStream};

/// A fresh directory for socket files, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("green-net-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn unix_stream_pair_echoes_between_greenlets() {
    let (mut a, b) = UnixStream::pair().unwrap();
    let echo = green::spawn(move || {
        let mut b = b;
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        b.write_all(&got).unwrap();
        got.len()
    });
    let data: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    a.write_all(&data).unwrap();
    a.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    a.read_to_end(&mut back).unwrap();
    assert_eq!(echo.join().unwrap(), data.len());
    assert!(back == data, "echoed bytes differ");
}

#[test]
fn unix_stream_read_timeout_gives_timed_out() {
    let (mut a, _b) = UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0; 1];
    assert_eq!(a.read(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
}

#[test]
fn unix_listener_accepts_connections_on_a_path() {
    let dir = TempDir::new("listener");
    let path = dir.path("sock");
    let listener = UnixListener::bind(&path).unwrap();
    assert_eq!(
        listener.local_addr().unwrap().as_pathname(),
        Some(path.as_path())
    );
    let server = green::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming().take(2) {
            let mut stream = stream.unwrap();
            let mut buf = [0; 5];
            stream.read_exact(&mut buf).unwrap();
            buf.reverse();
            stream.write_all(&buf).unwrap();
            served += 1;
        }
        served
    });
    for word in [b"hello", b"green"] {
        let mut client = UnixStream::connect(&path).unwrap();
        assert_eq!(
            client.peer_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        client.write_all(word).unwrap();
        let mut buf = [0; 5];
        client.read_exact(&mut buf).unwrap();
        let mut expected = *word;
        expected.reverse();
        assert_eq!(buf, expected);
    }
    assert_eq!(server.join().unwrap(), 2);
}

#[test]
fn unix_datagram_pair_round_trips_messages() {
    let (a, b) = UnixDatagram::pair().unwrap();
    let receiver = green::spawn(move || {
        let mut buf = [0; 16];
        let n = b.recv(&mut buf).unwrap();
        b.send(&buf[..n]).unwrap();
        buf[..n].to_vec()
    });
    green::sleep(Duration::from_millis(10));
    a.send(b"dgram").unwrap();
    assert_eq!(receiver.join().unwrap(), b"dgram");
    let mut buf = [0; 16];
    let n = a.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"dgram");
}

#[test]
fn unix_datagram_bound_sockets_send_to_paths() {
    let dir = TempDir::new("datagram");
    let (a_path, b_path) = (dir.path("a"), dir.path("b"));
    let a = UnixDatagram::bind(&a_path).unwrap();
    let b = UnixDatagram::bind(&b_path).unwrap();
    let receiver = green::spawn(move || {
        let mut buf = [0; 16];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        let from = from.as_pathname().map(Path::to_path_buf);
        b.send_to(b"pong", from.as_ref().unwrap()).unwrap();
        (buf[..n].to_vec(), from)
    });
    a.send_to(b"ping", &b_path).unwrap();
    let (got, from) = receiver.join().unwrap();
    assert_eq!(got, b"ping");
    assert_eq!(from.as_deref(), Some(a_path.as_path()));
    let mut buf = [0; 16];
    let (n, reply_from) = a.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(reply_from.as_pathname(), Some(b_path.as_path()));
    drop((a, dir));
    assert!(!a_path.exists(), "the temporary directory is cleaned up");
}

#[test]
fn unix_datagram_send_to_a_full_receiver_waits_for_room() {
    let dir = TempDir::new("full");
    let path = dir.path("receiver");
    let receiver = UnixDatagram::bind(&path).unwrap();
    let sender = UnixDatagram::unbound().unwrap();
    const COUNT: usize = 2000;
    let drain = green::spawn(move || {
        green::sleep(Duration::from_millis(50));
        let mut buf = [0; 1024];
        for _ in 0..COUNT {
            receiver.recv(&mut buf).unwrap();
        }
    });
    // Far more than the receiver's queue holds: later sends wait until the drain makes room.
    let sent = green::with_timeout(Duration::from_secs(5), || {
        for _ in 0..COUNT {
            sender.send_to(&[0; 1024], &path).unwrap();
        }
    });
    assert!(sent.is_ok(), "a send to a full receiver never woke up");
    drain.join().unwrap();
}
