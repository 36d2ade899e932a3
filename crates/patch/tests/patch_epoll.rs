//! `green::patch::divert_epoll`: a greenlet waiting in its own `epoll_wait` parks on the hub
//! instead of blocking the thread — only when asked.

use std::cell::Cell;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Waits up to 2 s in `epoll_wait` for `fd` to become readable: (events, time taken).
fn epoll_wait_readable(fd: i32) -> (i32, Duration) {
    // SAFETY: a fresh epoll fd watching an open fd; closed before returning.
    unsafe {
        let epfd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 7,
        };
        assert_eq!(
            libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut event),
            0
        );
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let started = Instant::now();
        let ready = libc::epoll_wait(epfd, out.as_mut_ptr(), 4, 2_000);
        let elapsed = started.elapsed();
        libc::close(epfd);
        (ready, elapsed)
    }
}

/// Runs a waiter greenlet and a writer greenlet (writing after 60 ms) and a ticker; returns the
/// waiter's result and the ticks seen meanwhile.
fn wait_with_writer() -> ((i32, Duration), u32) {
    let (a, mut b) = UnixStream::pair().unwrap();
    let stop = Rc::new(Cell::new(false));
    let flag = stop.clone();
    let ticker = green::spawn(move || {
        let mut ticks = 0;
        while !flag.get() {
            green::sleep(ms(5));
            ticks += 1;
        }
        ticks
    });
    let fd = a.as_raw_fd();
    let waiter = green::spawn(move || epoll_wait_readable(fd));
    let writer = green::spawn(move || {
        green::sleep(ms(60));
        b.write_all(b"x").unwrap();
        b
    });
    let result = waiter.join().unwrap();
    stop.set(true);
    let ticks = ticker.join().unwrap();
    drop((a, writer.join().unwrap()));
    (result, ticks)
}

#[test]
fn epoll_wait_blocks_the_thread_unless_diverted_and_parks_the_greenlet_when_diverted() {
    assert!(green::patch::all());
    // Not diverted: the waiter holds the thread for the whole 2 s (the writer cannot run).
    let ((ready, elapsed), _) = wait_with_writer();
    assert_eq!(ready, 0);
    assert!(elapsed >= Duration::from_millis(1_900), "{elapsed:?}");

    green::patch::divert_epoll(true);
    let ((ready, elapsed), ticks) = wait_with_writer();
    assert_eq!(ready, 1);
    assert!(elapsed >= ms(50) && elapsed < ms(1_000), "{elapsed:?}");
    assert!(ticks >= 5, "the hub ran meanwhile");
}
