//! `wait_readable` / `wait_writable` / `notify_close` on Unix socket pairs and pipes.

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Instant;

use green::{wait_readable, wait_writable, Elapsed};

mod common;
use common::ms;

fn in_ms(n: u64) -> Option<Instant> {
    Some(Instant::now() + ms(n))
}

/// A connected non-blocking socket pair.
fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// Reads once, waiting greenly while the socket has nothing.
fn green_read(mut stream: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => wait_readable(stream, None)?,
            other => return other,
        }
    }
}

/// Writes everything, waiting greenly while the socket buffer is full.
fn green_write_all(mut stream: &UnixStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match stream.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => wait_writable(stream, None)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[test]
fn wait_readable_returns_after_the_peer_writes() {
    let (a, b) = pair();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let reader = green::spawn(move || {
        l.borrow_mut().push("waiting");
        wait_readable(&a, in_ms(5_000)).unwrap();
        l.borrow_mut().push("readable");
        let mut buf = [0u8; 8];
        let n = (&a).read(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    let l = log.clone();
    let writer = green::spawn(move || {
        green::sleep(ms(10));
        l.borrow_mut().push("writing");
        (&b).write_all(b"hi").unwrap();
        b
    });
    assert_eq!(reader.join().unwrap(), b"hi");
    assert_eq!(*log.borrow(), ["waiting", "writing", "readable"]);
    drop(writer.join().unwrap());
}

#[test]
fn wait_readable_times_out_at_the_deadline() {
    let (a, _b) = pair();
    let start = Instant::now();
    let g = green::spawn(move || wait_readable(&a, in_ms(30)));
    let err = g.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(start.elapsed() >= ms(30), "{:?}", start.elapsed());
}

#[test]
fn wait_writable_on_an_empty_socket_returns_at_once() {
    let (a, _b) = pair();
    let g = green::spawn(move || wait_writable(&a, in_ms(5_000)));
    g.join().unwrap().unwrap();
}

#[test]
fn second_waiter_on_the_same_fd_and_direction_gets_resource_busy() {
    let (a, b) = pair();
    let a = Rc::new(a);
    let first = {
        let a = a.clone();
        green::spawn(move || wait_readable(&*a, in_ms(5_000)))
    };
    let second = {
        let a = a.clone();
        green::spawn(move || wait_readable(&*a, in_ms(5_000)))
    };
    let err = second.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceBusy, "{err}");
    assert!(err.to_string().contains("already waiting"), "{err}");
    // The first waiter was not disturbed: it still wakes when data arrives.
    (&b).write_all(b"x").unwrap();
    first.join().unwrap().unwrap();
}

#[test]
fn one_greenlet_reads_while_another_writes_the_same_fd() {
    const LEN: usize = 512 * 1024;
    let (a, b) = pair();
    let a = Rc::new(a);
    let payload: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    // The peer echoes everything back.
    let echo = green::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        let mut echoed = 0;
        while echoed < LEN {
            let n = green_read(&b, &mut buf).unwrap();
            green_write_all(&b, &buf[..n]).unwrap();
            echoed += n;
        }
        echoed
    });
    let writer = {
        let (a, payload) = (a.clone(), payload.clone());
        green::spawn(move || green_write_all(&a, &payload))
    };
    let reader = {
        let a = a.clone();
        green::spawn(move || {
            let mut got = Vec::with_capacity(LEN);
            let mut buf = vec![0u8; 16 * 1024];
            while got.len() < LEN {
                let n = green_read(&a, &mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            got
        })
    };
    writer.join().unwrap().unwrap();
    assert_eq!(reader.join().unwrap(), payload);
    assert_eq!(echo.join().unwrap(), LEN);
}

#[test]
fn notify_close_wakes_a_waiter_with_an_error() {
    let (a, _b) = pair();
    let a = Rc::new(a);
    let waiter = {
        let a = a.clone();
        green::spawn(move || wait_readable(&*a, None))
    };
    green::sleep(ms(5));
    assert!(waiter.is_started() && !waiter.is_ready());
    green::notify_close(a.as_raw_fd());
    let err = waiter.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    assert!(err.to_string().contains("closed"), "{err}");
}

#[test]
fn killing_a_waiter_frees_its_slot_for_the_next_one() {
    let (a, b) = pair();
    let a = Rc::new(a);
    let doomed = {
        let a = a.clone();
        green::spawn(move || wait_readable(&*a, None))
    };
    green::sleep(ms(2));
    doomed.kill();
    assert!(doomed.join().unwrap_err().is_killed());
    let next = {
        let a = a.clone();
        green::spawn(move || wait_readable(&*a, in_ms(5_000)))
    };
    green::sleep(ms(2));
    (&b).write_all(b"x").unwrap();
    next.join().unwrap().unwrap();
}

#[test]
fn with_timeout_aborts_a_wait_and_frees_its_slot() {
    let (a, _b) = pair();
    let g = green::spawn(move || {
        let aborted = green::with_timeout(ms(10), || wait_readable(&a, None));
        let after = wait_readable(&a, in_ms(10));
        (aborted.map(|r| r.is_ok()), after.map_err(|e| e.kind()))
    });
    assert_eq!(g.join().unwrap(), (Err(Elapsed), Err(ErrorKind::TimedOut)));
}

#[test]
fn root_context_waits_on_an_fd_a_greenlet_writes() {
    let (a, b) = pair();
    let writer = green::spawn(move || {
        green::sleep(ms(10));
        (&b).write_all(b"from a greenlet").unwrap();
        b
    });
    wait_readable(&a, in_ms(5_000)).unwrap();
    let mut buf = [0u8; 32];
    let n = (&a).read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from a greenlet");
    drop(writer.join().unwrap());
}

#[test]
fn another_thread_writing_wakes_a_green_waiter() {
    let (a, b) = pair();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(ms(20));
        (&b).write_all(b"t").unwrap();
        b
    });
    let g = green::spawn(move || {
        wait_readable(&a, in_ms(5_000)).unwrap();
        let mut buf = [0u8; 1];
        (&a).read_exact(&mut buf).unwrap();
        buf[0]
    });
    assert_eq!(g.join().unwrap(), b't');
    drop(thread.join().unwrap());
}

#[test]
fn pipe_becomes_readable_when_written() {
    let (mut reader, mut writer) = io::pipe().unwrap();
    let g = green::spawn(move || {
        wait_readable(&reader, in_ms(5_000)).unwrap();
        let mut buf = [0u8; 4];
        let n = reader.read(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    let w = green::spawn(move || {
        green::sleep(ms(5));
        wait_writable(&writer, in_ms(5_000)).unwrap();
        writer.write_all(b"pipe").unwrap();
    });
    assert_eq!(g.join().unwrap(), b"pipe");
    w.join().unwrap();
}

#[test]
fn peer_hangup_makes_the_fd_readable_with_eof() {
    let (a, b) = pair();
    let g = green::spawn(move || {
        wait_readable(&a, in_ms(5_000)).unwrap();
        (&a).read(&mut [0u8; 4]).unwrap()
    });
    green::sleep(ms(5));
    drop(b);
    assert_eq!(g.join().unwrap(), 0);
}

#[test]
fn readiness_that_arrived_while_nobody_waited_is_not_lost() {
    let (a, b) = pair();
    // Register the fd (writable at once), then let data arrive while nobody waits to read.
    wait_writable(&a, in_ms(5_000)).unwrap();
    (&b).write_all(b"early").unwrap();
    green::sleep(ms(10));
    let start = Instant::now();
    wait_readable(&a, in_ms(5_000)).unwrap();
    assert!(start.elapsed() < ms(2_500), "{:?}", start.elapsed());
}

/// The documented contract: call `notify_close` before closing an fd you waited on, so that a new
/// fd given the same number registers afresh. (Without it the hub keeps the stale registration
/// and the new fd's readiness is never seen.)
#[test]
fn fd_number_reused_after_notify_close_registers_afresh() {
    let (a, b) = pair();
    wait_writable(&a, in_ms(5_000)).unwrap();
    let number = a.as_raw_fd();
    green::notify_close(number);
    drop((a, b));
    let (a, b) = pair();
    // Usually the same number (the kernel hands out the lowest free fd), unless another test's
    // thread took it meanwhile; either way the new fd must work.
    (&b).write_all(b"x").unwrap();
    wait_readable(&a, in_ms(5_000)).unwrap();
}

/// The hub's epoll fd, found by its `/proc` link (a child process has one hub, so one).
fn epoll_fd() -> i32 {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        if std::fs::read_link(entry.path())
            .is_ok_and(|l| l.to_str() == Some("anon_inode:[eventpoll]"))
        {
            found.push(entry.file_name().to_str().unwrap().parse().unwrap());
        }
    }
    assert_eq!(found.len(), 1, "one epoll fd: {found:?}");
    found[0]
}

fn thread_cpu_time() -> std::time::Duration {
    // SAFETY: timespec is plain integers, for which all zeroes is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec for the call to fill in.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) },
        0
    );
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn epoll_failure_is_logged_once_and_fails_the_fd_waits_while_timers_still_run() {
    const TEST: &str = "epoll_failure_is_logged_once_and_fails_the_fd_waits_while_timers_still_run";
    if !common::is_child(TEST) {
        let out = common::child_command(TEST).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("1 passed"),
            "the child ran the test:\n{stdout}"
        );
        return;
    }
    common::logger::install();
    let (a, _b) = pair();
    let reader = green::spawn(move || {
        let mut buf = [0; 8];
        green_read(&a, &mut buf)
    });
    green::sleep(ms(5));
    // Fault injection: the epoll fd now refers to /dev/null, so epoll_wait fails with EINVAL.
    let null = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: both are open fds of this process; the epoll fd's number now names a copy of
    // /dev/null, which the hub closes when it is dropped, as it would have closed its epoll fd.
    assert!(unsafe { libc::dup2(null.as_raw_fd(), epoll_fd()) } >= 0);

    let started = Instant::now();
    green::sleep(ms(30));
    assert!(
        started.elapsed() >= ms(30),
        "the timer still ends the sleep"
    );
    let err = reader.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("event loop failed"), "{err}");

    // No busy loop: a sleep on the broken hub costs little CPU.
    let cpu = thread_cpu_time();
    green::sleep(ms(200));
    let spent = thread_cpu_time() - cpu;
    assert!(spent < ms(50), "the hub spun: {spent:?} of CPU in 200 ms");
    // A timeout and a new wait still behave.
    assert!(green::with_timeout(ms(20), || green::sleep(ms(500))).is_err());
    let (c, _d) = pair();
    let err = wait_readable(&c, None).unwrap_err();
    assert!(err.to_string().contains("event loop failed"), "{err}");

    let logged = common::logger::matching("epoll_wait failed");
    assert_eq!(logged.len(), 1, "logged once: {logged:?}");
    assert_eq!(logged[0].0, log::Level::Error);
}

#[test]
fn lazy_deadline_is_asked_for_only_when_a_read_has_to_wait() {
    let (a, mut b) = pair();
    let fd = green::GreenFd::new(a);
    b.write_all(b"x").unwrap();
    let mut buf = [0u8; 8];
    let read = fd.read_with_lazy_deadline(
        || panic!("a read that finds data needs no deadline"),
        |mut s| s.read(&mut buf),
    );
    assert_eq!(read.unwrap(), 1);

    let asked = std::cell::Cell::new(0);
    let started = Instant::now();
    let read = fd.read_with_lazy_deadline(
        || {
            asked.set(asked.get() + 1);
            in_ms(50)
        },
        |mut s| s.read(&mut buf),
    );
    assert_eq!(read.unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(
        asked.get(),
        1,
        "asked once, when the read first had to wait"
    );
    assert!(started.elapsed() >= ms(50));
}
