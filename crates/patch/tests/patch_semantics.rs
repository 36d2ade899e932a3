//! green::patch's contract on std's own types and raw libc calls: what a greenlet sees, what a
//! plain thread sees, and how kills and timeouts end a hooked call without unwinding through C.

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn patched() {
    assert!(green::patch::all(), "the patch is on");
}

/// A greenlet that counts hub turns until `stop`: proof that the thread was not blocked.
fn ticker() -> (green::Greenlet<u32>, Rc<Cell<bool>>) {
    let stop = Rc::new(Cell::new(false));
    let flag = stop.clone();
    let ticks = green::spawn(move || {
        let mut ticks = 0;
        while !flag.get() {
            green::sleep(ms(5));
            ticks += 1;
        }
        ticks
    });
    (ticks, stop)
}

fn connected_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// Installs (once) a green resolver whose hosts file knows names glibc has never heard of.
fn install_green_only_names() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let hosts = std::env::temp_dir().join(format!("green-patch-hosts-{}", std::process::id()));
        std::fs::write(
            &hosts,
            "192.0.2.7 only-green-knows.test\n2001:db8::7 only-green-knows.test\n192.0.2.9 gai-shape.test\n",
        )
        .unwrap();
        green::dns::set_resolver(
            green::dns::NativeResolver::builder()
                .hosts_file(&hosts)
                .nameservers([])
                .build(),
        );
    });
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

#[test]
fn std_sleeps_in_greenlets_overlap_on_one_thread() {
    patched();
    let started = Instant::now();
    let sleepers: Vec<_> = (0..500)
        .map(|_| green::spawn(|| std::thread::sleep(ms(100))))
        .collect();
    for result in green::joinall(sleepers) {
        result.unwrap();
    }
    assert!(started.elapsed() < ms(900), "took {:?}", started.elapsed());
}

#[test]
fn a_std_sleep_outside_any_greenlet_blocks_the_thread_as_unpatched() {
    patched();
    let ran = Rc::new(Cell::new(false));
    let flag = ran.clone();
    let greenlet = green::spawn(move || flag.set(true));
    std::thread::sleep(ms(30));
    assert!(
        !ran.get(),
        "the hub must not run during a root context's std sleep"
    );
    greenlet.join().unwrap();
    assert!(ran.get());
}

#[test]
fn a_blocking_std_read_parks_only_its_greenlet_and_keeps_a_blocking_view() {
    patched();
    let (mut client, mut server) = connected_pair();
    let (ticks, stop) = ticker();
    let reader = green::spawn(move || {
        let mut buf = [0u8; 16];
        let n = client.read(&mut buf).unwrap();
        // SAFETY: F_GETFL on an open fd.
        let flags = unsafe { libc::fcntl(client.as_raw_fd(), libc::F_GETFL) };
        (buf[..n].to_vec(), flags & libc::O_NONBLOCK)
    });
    let writer = green::spawn(move || {
        green::sleep(ms(60));
        server.write_all(b"hello").unwrap();
        server
    });
    let (data, nonblocking_flag) = reader.join().unwrap();
    assert_eq!(data, b"hello");
    assert_eq!(
        nonblocking_flag, 0,
        "F_GETFL hides the O_NONBLOCK green set"
    );
    stop.set(true);
    assert!(ticks.join().unwrap() >= 5, "other greenlets ran meanwhile");
    drop(writer.join().unwrap());
}

#[test]
fn a_socket_the_user_made_nonblocking_gets_would_block_as_asked() {
    patched();
    let (mut client, _server) = connected_pair();
    let result = green::spawn(move || {
        client.set_nonblocking(true).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 16];
        (
            client.read(&mut buf).map_err(|e| e.kind()),
            started.elapsed(),
        )
    })
    .join()
    .unwrap();
    assert_eq!(result.0, Err(ErrorKind::WouldBlock));
    assert!(result.1 < ms(50));
}

#[test]
fn a_read_timeout_gives_would_block_after_it_like_the_kernel_while_others_run() {
    patched();
    let (mut client, _server) = connected_pair();
    let (ticks, stop) = ticker();
    let reader = green::spawn(move || {
        client.set_read_timeout(Some(ms(120))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let result = client.read(&mut buf).map_err(|e| e.kind());
        (result, started.elapsed())
    });
    let (result, elapsed) = reader.join().unwrap();
    stop.set(true);
    assert_eq!(result, Err(ErrorKind::WouldBlock));
    assert!(elapsed >= ms(110) && elapsed < ms(600), "{elapsed:?}");
    assert!(ticks.join().unwrap() >= 5);
}

#[test]
fn connect_timeout_waits_green_through_the_poll_hook() {
    patched();
    // A listener whose accept queue is full drops further SYNs: the next connect hangs.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(stream) = TcpStream::connect_timeout(&addr, ms(50)) {
            fillers.push(stream);
        }
    }
    let (ticks, stop) = ticker();
    let attempt = green::spawn(move || {
        let started = Instant::now();
        let result = TcpStream::connect_timeout(&addr, ms(150))
            .map(drop)
            .map_err(|e| e.kind());
        (result, started.elapsed())
    });
    let (result, elapsed) = attempt.join().unwrap();
    stop.set(true);
    assert_eq!(result, Err(ErrorKind::TimedOut));
    assert!(elapsed >= ms(140) && elapsed < ms(800), "{elapsed:?}");
    assert!(
        ticks.join().unwrap() >= 5,
        "the hub ran during connect_timeout"
    );
}

#[test]
fn closing_an_fd_from_another_greenlet_wakes_its_blocked_reader_with_ebadf() {
    patched();
    let (client, _server) = connected_pair();
    let fd = client.into_raw_fd();
    let reader = green::spawn(move || {
        let mut buf = [0u8; 8];
        // SAFETY: a read into a stack buffer of an fd that is open when the call starts.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        (n, errno())
    });
    let closer = green::spawn(move || {
        green::sleep(ms(30));
        // SAFETY: closes the fd this test owns.
        unsafe { libc::close(fd) }
    });
    assert_eq!(closer.join().unwrap(), 0);
    assert_eq!(reader.join().unwrap(), (-1, libc::EBADF));
}

#[test]
fn a_dup_of_a_green_socket_reads_green_too() {
    patched();
    let (client, mut server) = connected_pair();
    let copy = client.try_clone().unwrap(); // dup / F_DUPFD_CLOEXEC
    let reader = green::spawn(move || {
        let mut copy = copy;
        let mut buf = [0u8; 8];
        let n = copy.read(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    let writer = green::spawn(move || {
        green::sleep(ms(30));
        server.write_all(b"dup").unwrap();
        server
    });
    assert_eq!(reader.join().unwrap(), b"dup");
    drop((client, writer.join().unwrap()));
}

#[test]
fn with_timeout_around_a_std_read_returns_elapsed_and_the_greenlet_goes_on() {
    patched();
    let (mut client, _server) = connected_pair();
    let greenlet = green::spawn(move || {
        let started = Instant::now();
        let outcome = green::with_timeout(ms(80), || {
            let mut buf = [0u8; 8];
            let read = client.read(&mut buf);
            (read.map_err(|e| e.raw_os_error()), "the closure returned")
        });
        let elapsed = started.elapsed();
        // The throw was spent by the scope: a later green sleep is an ordinary sleep.
        green::sleep(ms(10));
        (outcome.map(|(read, _)| read), elapsed)
    });
    let (outcome, elapsed) = greenlet.join().unwrap();
    assert_eq!(outcome, Err(green::Elapsed));
    assert!(elapsed >= ms(70) && elapsed < ms(500), "{elapsed:?}");
}

#[test]
fn the_hooked_call_fails_with_etimedout_and_the_timeout_lands_at_the_next_switch() {
    patched();
    let (mut client, _server) = connected_pair();
    let seen = Rc::new(Cell::new(0));
    let after = Rc::new(Cell::new(false));
    let (seen_in, after_in) = (seen.clone(), after.clone());
    let outcome = green::spawn(move || {
        green::with_timeout(ms(50), || {
            let mut buf = [0u8; 8];
            let err = client.read(&mut buf).unwrap_err();
            seen_in.set(err.raw_os_error().unwrap_or(0));
            green::sleep(ms(500)); // the pending timeout lands here
            after_in.set(true);
        })
    })
    .join()
    .unwrap();
    assert_eq!(outcome, Err(green::Elapsed));
    assert_eq!(seen.get(), libc::ETIMEDOUT);
    assert!(!after.get(), "code after the next switch point never ran");
}

#[test]
fn a_greenlet_killed_in_a_std_read_fails_it_with_ecanceled_and_ends_killed() {
    patched();
    let (mut client, _server) = connected_pair();
    let seen = Rc::new(Cell::new(0));
    let seen_in = seen.clone();
    let reader = green::spawn(move || {
        let mut buf = [0u8; 8];
        let err = client.read(&mut buf).unwrap_err();
        seen_in.set(err.raw_os_error().unwrap_or(0));
        "returned normally"
    });
    green::sleep(ms(20));
    let started = Instant::now();
    reader.kill();
    let result = reader.join();
    assert!(
        matches!(result, Err(green::JoinError::Killed)),
        "{result:?}"
    );
    assert!(started.elapsed() < ms(300));
    assert_eq!(seen.get(), libc::ECANCELED);
}

#[test]
fn poll_with_a_timeout_waits_on_the_hub_for_any_fd() {
    patched();
    let (a, mut b) = UnixStream::pair().unwrap();
    let (quiet, _quiet_peer) = UnixStream::pair().unwrap();
    let (ticks, stop) = ticker();
    let poller = green::spawn(move || {
        let mut fds = [
            libc::pollfd {
                fd: quiet.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: a.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let started = Instant::now();
        // SAFETY: two valid pollfds.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, 2_000) };
        (ready, fds[0].revents, fds[1].revents, started.elapsed())
    });
    let writer = green::spawn(move || {
        green::sleep(ms(60));
        b.write_all(b"x").unwrap();
        b
    });
    let (ready, quiet_events, events, elapsed) = poller.join().unwrap();
    stop.set(true);
    assert_eq!((ready, quiet_events), (1, 0));
    assert!(events & libc::POLLIN != 0);
    assert!(elapsed >= ms(50) && elapsed < ms(1_000), "{elapsed:?}");
    assert!(ticks.join().unwrap() >= 5);
    drop(writer.join().unwrap());
}

#[test]
fn poll_and_select_time_out_green() {
    patched();
    let (a, _b) = UnixStream::pair().unwrap();
    let (ticks, stop) = ticker();
    let fd = a.as_raw_fd();
    let waits = green::spawn(move || {
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let started = Instant::now();
        // SAFETY: one valid pollfd.
        let polled = unsafe { libc::poll(&mut pollfd, 1, 80) };
        let poll_time = started.elapsed();
        // SAFETY: an fd_set holding one open fd below FD_SETSIZE, and a timeval.
        let selected = unsafe {
            let mut set: libc::fd_set = std::mem::zeroed();
            libc::FD_ZERO(&mut set);
            libc::FD_SET(fd, &mut set);
            let mut timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 80_000,
            };
            libc::select(
                fd + 1,
                &mut set,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut timeout,
            )
        };
        (polled, poll_time, selected, started.elapsed() - poll_time)
    });
    let (polled, poll_time, selected, select_time) = waits.join().unwrap();
    stop.set(true);
    assert_eq!((polled, selected), (0, 0));
    assert!(
        poll_time >= ms(75) && select_time >= ms(75),
        "{poll_time:?} {select_time:?}"
    );
    assert!(ticks.join().unwrap() >= 10, "the hub ran during both waits");
    drop(a);
}

#[test]
fn a_socket_made_green_still_blocks_on_a_plain_thread() {
    patched();
    let (client, mut server) = connected_pair();
    let client = green::spawn(move || {
        let mut client = client;
        client.set_read_timeout(None).unwrap();
        server.write_all(b"one").unwrap();
        let mut buf = [0u8; 3];
        client.read_exact(&mut buf).unwrap(); // made non-blocking underneath here
        (client, server)
    })
    .join()
    .unwrap();
    let (mut client, mut server) = client;
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 3];
        client
            .read_exact(&mut buf)
            .map(|()| buf.to_vec())
            .map_err(|e| e.kind())
    });
    std::thread::sleep(ms(50));
    server.write_all(b"two").unwrap();
    assert_eq!(reader.join().unwrap(), Ok(b"two".to_vec()));
}

#[test]
fn files_and_stdout_in_a_greenlet_are_untouched() {
    patched();
    let dir = std::env::temp_dir().join(format!("green-patch-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copied = green::spawn({
        let dir = dir.clone();
        move || {
            let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            std::fs::write(dir.join("a"), &data).unwrap();
            std::fs::copy(dir.join("a"), dir.join("b")).unwrap();
            println!("stdout from a patched greenlet");
            std::fs::read(dir.join("b")).unwrap() == data
        }
    })
    .join()
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(copied);
}

#[test]
fn name_lookups_in_a_greenlet_use_greens_resolver_and_glibcs_outside() {
    patched();
    install_green_only_names();
    let found = green::spawn(|| {
        ("only-green-knows.test", 443)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.to_string()).collect::<Vec<_>>())
    })
    .join()
    .unwrap()
    .unwrap();
    assert!(found.contains(&"192.0.2.7:443".to_string()), "{found:?}");
    assert!(
        found.contains(&"[2001:db8::7]:443".to_string()),
        "{found:?}"
    );
    let missing = green::spawn(|| ("no-such-name.invalid", 80).to_socket_addrs().map(|_| ()))
        .join()
        .unwrap();
    assert!(missing.is_err());
    // Outside greenlets glibc answers, and it has never heard of the name.
    assert!(("only-green-knows.test", 443).to_socket_addrs().is_err());
}

#[test]
fn getaddrinfo_lists_every_socket_type_and_maps_v4_for_v6_like_glibc() {
    patched();
    install_green_only_names();
    let shapes = green::spawn(move || {
        let list = |family: i32, flags: i32, socktype: i32| {
            // SAFETY: zeroed hints are valid; the list returned is walked then freed by glibc.
            unsafe {
                let mut hints: libc::addrinfo = std::mem::zeroed();
                hints.ai_family = family;
                hints.ai_flags = flags;
                hints.ai_socktype = socktype;
                let mut res = std::ptr::null_mut();
                let code = libc::getaddrinfo(
                    c"gai-shape.test".as_ptr(),
                    c"8080".as_ptr(),
                    &hints,
                    &mut res,
                );
                let mut entries = Vec::new();
                let mut node = res;
                while !node.is_null() {
                    entries.push(((*node).ai_family, (*node).ai_socktype, (*node).ai_protocol));
                    node = (*node).ai_next;
                }
                if code == 0 {
                    libc::freeaddrinfo(res);
                }
                (code, entries)
            }
        };
        (
            list(libc::AF_UNSPEC, 0, 0),
            list(libc::AF_INET6, libc::AI_V4MAPPED, libc::SOCK_STREAM),
            list(libc::AF_INET6, 0, libc::SOCK_STREAM),
        )
    })
    .join()
    .unwrap();
    let (all, mapped, v6_only) = shapes;
    assert_eq!(
        all,
        (
            0,
            vec![
                (libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP),
                (libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDP),
                (libc::AF_INET, libc::SOCK_RAW, 0),
            ]
        )
    );
    assert_eq!(
        mapped,
        (
            0,
            vec![(libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_TCP)]
        )
    );
    assert_eq!(v6_only.0, -5, "EAI_NODATA: the name has no IPv6 address");
}

#[test]
fn a_greenlet_killed_in_a_std_sleep_ends_killed_promptly() {
    patched();
    let after = Rc::new(Cell::new(false));
    let after_in = after.clone();
    let sleeper = green::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        after_in.set(true); // runs: the hooked sleep returned early, no switch point since
        green::yield_now(); // the kill lands here
        "never returned"
    });
    green::sleep(ms(20));
    let started = Instant::now();
    sleeper.kill();
    assert!(matches!(sleeper.join(), Err(green::JoinError::Killed)));
    assert!(started.elapsed() < ms(300));
    assert!(after.get());
}

#[test]
fn with_timeout_around_a_std_sleep_returns_elapsed_promptly() {
    patched();
    let started = Instant::now();
    let outcome = green::spawn(|| {
        green::with_timeout(ms(50), || std::thread::sleep(Duration::from_secs(10)))
    })
    .join()
    .unwrap();
    assert_eq!(outcome, Err(green::Elapsed));
    assert!(started.elapsed() < ms(500), "{:?}", started.elapsed());
}

#[test]
fn std_yield_now_in_a_greenlet_lets_the_other_greenlets_run() {
    patched();
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (first, second) = (order.clone(), order.clone());
    let a = green::spawn(move || {
        first.borrow_mut().push("a1");
        std::thread::yield_now();
        first.borrow_mut().push("a2");
    });
    let b = green::spawn(move || second.borrow_mut().push("b"));
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(*order.borrow(), ["a1", "b", "a2"]);
}
