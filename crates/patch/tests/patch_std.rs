//! green::patch with std itself: `std::net` types and `std::thread::sleep` called from greenlets
//! run green on one thread, while plain threads, files, pipes and stdout behave exactly as
//! unpatched, and `with_timeout` interrupts a std `read`.
//!
//! Each test calls `green::patch::all()` first (it is process-wide; calling it again is harmless).

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::ms;
use common::services::{raise_fd_limit, watchdog, Budget};

const ECHOERS: usize = 1_000;

fn patch() {
    assert!(
        green::patch::all(),
        "green::patch::all() must turn the hooks on"
    );
    assert!(green::patch::enabled());
}

fn is_nonblocking(fd: i32) -> bool {
    // SAFETY: F_GETFL on an fd we hold open reads its flags and changes nothing.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "F_GETFL on fd {fd}");
    flags & libc::O_NONBLOCK != 0
}

#[test]
fn std_tcp_echo_between_1000_greenlets_on_one_thread() {
    patch();
    raise_fd_limit(4 * ECHOERS as u64 + 256);
    let _watchdog = watchdog(
        "std_tcp_echo_between_1000_greenlets_on_one_thread",
        ms(30_000),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = green::spawn(move || {
        let mut handlers = Vec::with_capacity(ECHOERS);
        for _ in 0..ECHOERS {
            let (mut stream, _) = listener.accept().expect("std accept in a greenlet");
            handlers.push(green::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                stream.write_all(line.as_bytes()).unwrap();
            }));
        }
        for handler in green::joinall(handlers) {
            handler.unwrap();
        }
    });
    let clients: Vec<_> = (0..ECHOERS)
        .map(|i| {
            green::spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("std connect in a greenlet");
                stream.write_all(format!("hello {i}\n").as_bytes()).unwrap();
                let mut echoed = String::new();
                BufReader::new(stream).read_line(&mut echoed).unwrap();
                echoed
            })
        })
        .collect();
    for (i, echoed) in green::joinall(clients).into_iter().enumerate() {
        assert_eq!(echoed.unwrap(), format!("hello {i}\n"));
    }
    server.join().unwrap();
}

#[test]
fn std_udp_echo_between_1000_greenlets_on_one_thread() {
    patch();
    raise_fd_limit(2 * ECHOERS as u64 + 256);
    let _watchdog = watchdog(
        "std_udp_echo_between_1000_greenlets_on_one_thread",
        ms(30_000),
    );
    let server_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server_socket.local_addr().unwrap();
    let server = green::spawn(move || {
        let mut buf = [0; 64];
        loop {
            let (n, from) = server_socket.recv_from(&mut buf).expect("std recv_from");
            if &buf[..n] == b"stop" {
                return;
            }
            server_socket.send_to(&buf[..n], from).expect("std send_to");
        }
    });
    let clients: Vec<_> = (0..ECHOERS)
        .map(|i| {
            green::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                // Datagrams can be dropped when 1,000 arrive at once: resend after a read timeout
                // (SO_RCVTIMEO, honoured by the patch as by the kernel).
                socket.set_read_timeout(Some(ms(300))).unwrap();
                let message = format!("datagram {i}");
                let mut buf = [0; 64];
                for _ in 0..20 {
                    socket.send_to(message.as_bytes(), addr).unwrap();
                    match socket.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            assert_eq!(from, addr);
                            return String::from_utf8(buf[..n].to_vec()).unwrap();
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => panic!("recv_from: {e}"),
                    }
                }
                panic!("no echo for {message} after 20 tries");
            })
        })
        .collect();
    for (i, echoed) in green::joinall(clients).into_iter().enumerate() {
        assert_eq!(echoed.unwrap(), format!("datagram {i}"));
    }
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"stop", addr)
        .unwrap();
    server.join().unwrap();
}

#[test]
fn std_thread_sleep_of_100ms_in_10000_greenlets_takes_well_under_a_second() {
    patch();
    let budget = Budget::new(ms(2_000));
    let sleepers: Vec<_> = (0..10_000)
        .map(|_| {
            green::spawn(move || {
                if budget.spent() {
                    return false;
                }
                thread::sleep(ms(100));
                true
            })
        })
        .collect();
    let slept = green::joinall(sleepers)
        .into_iter()
        .filter(|slept| *slept.as_ref().unwrap())
        .count();
    let elapsed = budget.elapsed();
    assert_eq!(
        slept, 10_000,
        "only {slept} sleeps ran within the budget: sleeps block the thread"
    );
    assert!(elapsed >= ms(100), "{elapsed:?}: the sleeps did not sleep");
    assert!(
        elapsed < ms(1_000),
        "10,000 concurrent 100 ms sleeps took {elapsed:?}"
    );
}

#[test]
fn thread_per_connection_std_server_on_plain_threads_still_works_with_the_patch_on() {
    patch();
    let _watchdog = watchdog(
        "thread_per_connection_std_server_on_plain_threads_still_works_with_the_patch_on",
        ms(30_000),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    const CONNECTIONS: usize = 40;
    let server = thread::spawn(move || {
        let mut handlers = Vec::new();
        for _ in 0..CONNECTIONS {
            let (stream, _) = listener
                .accept()
                .expect("blocking accept on a plain thread");
            assert!(
                !is_nonblocking(stream.as_raw_fd()),
                "accepted socket made non-blocking"
            );
            handlers.push(thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                // A blocking read that has to wait: the client writes only after 20 ms.
                let mut lines = BufReader::new(stream).lines();
                let line = lines
                    .next()
                    .unwrap()
                    .expect("blocking read on a plain thread");
                writer.write_all(format!("{line}!\n").as_bytes()).unwrap();
            }));
        }
        for handler in handlers {
            handler.join().unwrap();
        }
    });
    let client = move |i: usize| {
        let mut stream = TcpStream::connect(addr).unwrap();
        green::sleep(ms(20));
        stream
            .write_all(format!("client {i}\n").as_bytes())
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, format!("client {i}!\n"));
    };
    // Half the clients are greenlets, half plain threads: both sides must see a working server.
    let greenlets: Vec<_> = (0..CONNECTIONS / 2)
        .map(|i| green::spawn(move || client(i)))
        .collect();
    let threads: Vec<_> = (CONNECTIONS / 2..CONNECTIONS)
        .map(|i| thread::spawn(move || client(i)))
        .collect();
    for greenlet in green::joinall(greenlets) {
        greenlet.unwrap();
    }
    for thread in threads {
        thread.join().unwrap();
    }
    server.join().unwrap();
}

#[test]
fn file_copy_pipes_and_stdout_from_a_greenlet_are_untouched_by_the_patch() {
    patch();
    let dir = std::env::temp_dir().join(format!("green-patch-std-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let dir_in_greenlet = dir.clone();
    let copied = green::spawn(move || {
        let dir = dir_in_greenlet;
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(dir.join("source"), &data).unwrap();
        fs::copy(dir.join("source"), dir.join("copy")).unwrap();
        let mut reader = fs::File::open(dir.join("copy")).unwrap();
        assert!(
            !is_nonblocking(reader.as_raw_fd()),
            "a regular file was made non-blocking"
        );
        let mut writer = fs::File::create(dir.join("copy2")).unwrap();
        assert_eq!(
            io::copy(&mut reader, &mut writer).unwrap(),
            data.len() as u64
        );
        drop(writer);
        assert_eq!(fs::read(dir.join("copy2")).unwrap(), data);

        // A child's pipes: plain blocking reads, not sockets.
        let output = Command::new("sh")
            .args(["-c", "sleep 0.05; echo piped"])
            .output()
            .unwrap();
        assert_eq!(output.stdout, b"piped\n");

        let stdout_was_nonblocking = is_nonblocking(1);
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "green::patch: stdout from a greenlet").unwrap();
        stdout.flush().unwrap();
        assert_eq!(
            is_nonblocking(1),
            stdout_was_nonblocking,
            "stdout's flags changed"
        );
    });
    let result = copied.join();
    let _ = fs::remove_dir_all(&dir);
    result.unwrap();
}

#[test]
fn with_timeout_around_a_std_read_returns_elapsed() {
    patch();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = green::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        // A safety net so an unpatched read cannot hang the test: it would give WouldBlock.
        stream.set_read_timeout(Some(ms(3_000))).unwrap();
        let start = Instant::now();
        let mut buf = [0; 16];
        let result = green::with_timeout(ms(100), || stream.read(&mut buf));
        let elapsed = start.elapsed();
        // The stream is in an unknown state after a cancelled call; closing it is fine.
        stream.shutdown(Shutdown::Both).ok();
        (result.map(|read| read.map_err(|e| e.kind())), elapsed)
    });
    // The kernel completes the connection in the backlog; the peer never writes.
    let (result, elapsed) = reader.join().unwrap();
    drop(listener);
    assert_eq!(result, Err(green::Elapsed), "after {elapsed:?}");
    assert!(elapsed >= ms(90), "{elapsed:?}");
    assert!(elapsed < ms(1_000), "the timeout fired after {elapsed:?}");
}

#[test]
fn a_plain_thread_std_sleep_still_blocks_that_thread() {
    patch();
    let start = Instant::now();
    thread::spawn(|| thread::sleep(Duration::from_millis(100)))
        .join()
        .unwrap();
    assert!(start.elapsed() >= ms(100));
}
