//! `epoll_wait` / `epoll_pwait` inside a greenlet, only after [`divert_epoll`](crate::divert_epoll):
//! an epoll fd is itself pollable, so the greenlet waits on the hub for it to become readable (or
//! the timeout), then the real call runs with a zero timeout.
//!
//! Off by default: a library that runs an event loop behind blocking calls (tokio inside the
//! `postgres` crate or `reqwest::blocking`) keeps per-thread "runtime entered" state, and a second
//! greenlet entering it while the first waits here would make it panic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use libc::{c_int, epoll_event, sigset_t};

use green_runtime::foreign::{self, FdInterest};

use crate::io::{caught_errno, deadline_after};
use crate::{enabled, real, set_errno};

pub(crate) static DIVERTED: AtomicBool = AtomicBool::new(false);

fn diverted() -> bool {
    enabled() && DIVERTED.load(Ordering::Relaxed) && foreign::in_greenlet()
}

fn green_epoll_wait(epfd: c_int, timeout: c_int, check: &mut dyn FnMut() -> c_int) -> c_int {
    let deadline = (timeout >= 0)
        .then(|| deadline_after(Some(Duration::from_millis(timeout as u64))))
        .flatten();
    let interest = [FdInterest {
        fd: epfd,
        source: 0,
        readable: true,
        writable: false,
    }];
    loop {
        let ready = check();
        if ready != 0 {
            return ready;
        }
        if deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
            return 0;
        }
        match foreign::catch_throw(|| foreign::wait_any(&interest, deadline)) {
            Ok(Ok(())) => {}
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::TimedOut => {}
            Ok(Err(err)) => {
                set_errno(err.raw_os_error().unwrap_or(libc::EIO));
                return -1;
            }
            Err(caught) => {
                set_errno(caught_errno(caught));
                return -1;
            }
        }
    }
}

/// # Safety
/// libc's `epoll_wait`.
#[no_mangle]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    if timeout == 0 || !diverted() {
        return unsafe { real::epoll_wait(epfd, events, max, timeout) };
    }
    green_epoll_wait(epfd, timeout, &mut || unsafe {
        real::epoll_wait(epfd, events, max, 0)
    })
}

/// # Safety
/// libc's `epoll_pwait`.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut epoll_event,
    max: c_int,
    timeout: c_int,
    sigmask: *const sigset_t,
) -> c_int {
    if timeout == 0 || !diverted() {
        return unsafe { real::epoll_pwait(epfd, events, max, timeout, sigmask) };
    }
    green_epoll_wait(epfd, timeout, &mut || unsafe {
        real::epoll_pwait(epfd, events, max, 0, sigmask)
    })
}
