//! `poll`, `ppoll` and `select` with a timeout, inside a greenlet: the greenlet waits on the hub
//! for any of the fds or the timeout, then the real call runs with a zero timeout to report
//! exactly what the kernel reports. (std's `connect_timeout` and many C libraries wait this way.)

use std::time::{Duration, Instant};

use libc::{c_int, fd_set, nfds_t, pollfd, sigset_t, timespec, timeval};

use green_runtime::foreign::{self, FdInterest};

use crate::io::{caught_errno, deadline_after, green_sleep};
use crate::sleep::duration_of;
use crate::{enabled, fds, real, set_errno};

/// Waits green until `check` (the real call with a zero timeout) reports something, or the
/// deadline passes (then the last check's result, 0). Returns the check's result, or -1 with
/// errno.
fn green_wait(
    interests: &[FdInterest],
    deadline: Option<Instant>,
    check: &mut dyn FnMut() -> c_int,
) -> c_int {
    loop {
        let ready = check();
        if ready != 0 {
            return ready;
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return 0;
        }
        let waited = foreign::catch_throw(|| foreign::wait_any(interests, deadline));
        match waited {
            Ok(Ok(())) => {}
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::TimedOut => {}
            // An fd the hub cannot wait on (a regular file, or one another greenlet waits on):
            // look again every millisecond.
            Ok(Err(_)) => {
                let step = deadline
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::MAX)
                    .min(Duration::from_millis(1));
                if let Err(err) = green_sleep(step) {
                    set_errno(err);
                    return -1;
                }
            }
            Err(caught) => {
                set_errno(caught_errno(caught));
                return -1;
            }
        }
    }
}

fn interest_of(fd: c_int, readable: bool, writable: bool) -> FdInterest {
    let source = fds::peek(fd)
        .filter(|record| record.is_socket())
        .map_or(0, |record| record.source(fd));
    FdInterest {
        fd,
        source,
        // Hang-ups and errors are reported whatever was asked: listen for them on the read side.
        readable: readable || !writable,
        writable,
    }
}

/// What the caller's `nfds` pollfds at `fds` ask for.
///
/// # Safety
/// `fds` points to `nfds` pollfds (or `nfds` is 0).
unsafe fn poll_interests(fds: *const pollfd, nfds: nfds_t) -> Vec<FdInterest> {
    let fds = if nfds == 0 {
        &[][..]
    } else {
        // SAFETY: the caller passes `nfds` pollfds at `fds`.
        unsafe { std::slice::from_raw_parts(fds, nfds as usize) }
    };
    fds.iter()
        .filter(|p| p.fd >= 0)
        .map(|p| {
            let readable = p.events & (libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP) != 0;
            let writable = p.events & libc::POLLOUT != 0;
            interest_of(p.fd, readable, writable)
        })
        .collect()
}

fn timeout_of_millis(timeout: c_int) -> Option<Instant> {
    (timeout >= 0).then(|| deadline_after(Some(Duration::from_millis(timeout as u64))))?
}

/// # Safety
/// libc's `poll`.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    if !enabled() || timeout == 0 || !foreign::in_greenlet() {
        return unsafe { real::poll(fds, nfds, timeout) };
    }
    // SAFETY: the caller passes `nfds` pollfds at `fds`.
    let interests = unsafe { poll_interests(fds, nfds) };
    let deadline = timeout_of_millis(timeout);
    green_wait(&interests, deadline, &mut || unsafe {
        real::poll(fds, nfds, 0)
    })
}

/// # Safety
/// libc's `ppoll`.
#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    sigmask: *const sigset_t,
) -> c_int {
    // SAFETY: a non-null timeout is the caller's timespec.
    let zero_timeout =
        !timeout.is_null() && unsafe { (*timeout).tv_sec == 0 && (*timeout).tv_nsec == 0 };
    if !enabled() || zero_timeout || !foreign::in_greenlet() {
        return unsafe { real::ppoll(fds, nfds, timeout, sigmask) };
    }
    let deadline = if timeout.is_null() {
        None
    } else {
        // SAFETY: as above.
        let Some(timeout) = duration_of(unsafe { &*timeout }) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        deadline_after(Some(timeout))
    };
    // SAFETY: the caller passes `nfds` pollfds at `fds`.
    let interests = unsafe { poll_interests(fds, nfds) };
    let zero = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    green_wait(&interests, deadline, &mut || unsafe {
        real::ppoll(fds, nfds, &zero, sigmask)
    })
}

/// # Safety
/// libc's `select`.
#[no_mangle]
pub unsafe extern "C" fn select(
    nfds: c_int,
    readfds: *mut fd_set,
    writefds: *mut fd_set,
    exceptfds: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    // SAFETY: a non-null timeout is the caller's timeval.
    let zero_timeout =
        !timeout.is_null() && unsafe { (*timeout).tv_sec == 0 && (*timeout).tv_usec == 0 };
    if !enabled()
        || zero_timeout
        || !foreign::in_greenlet()
        || !(0..=libc::FD_SETSIZE as c_int).contains(&nfds)
    {
        return unsafe { real::select(nfds, readfds, writefds, exceptfds, timeout) };
    }
    let deadline = if timeout.is_null() {
        None
    } else {
        // SAFETY: as above.
        let timeout = unsafe { &*timeout };
        if timeout.tv_sec < 0 || !(0..1_000_000).contains(&timeout.tv_usec) {
            set_errno(libc::EINVAL);
            return -1;
        }
        deadline_after(Some(
            Duration::from_secs(timeout.tv_sec as u64)
                + Duration::from_micros(timeout.tv_usec as u64),
        ))
    };
    // SAFETY: each non-null set is the caller's fd_set; copied so every check starts from them.
    let copy = |set: *mut fd_set| (!set.is_null()).then(|| unsafe { *set });
    let (read_set, write_set, except_set) = (copy(readfds), copy(writefds), copy(exceptfds));
    let is_set = |set: &Option<fd_set>, fd: c_int| {
        set.as_ref()
            .is_some_and(|set| unsafe { libc::FD_ISSET(fd, set) })
    };
    let interests: Vec<FdInterest> = (0..nfds)
        .filter_map(|fd| {
            let readable = is_set(&read_set, fd) || is_set(&except_set, fd);
            let writable = is_set(&write_set, fd);
            (readable || writable).then(|| interest_of(fd, readable, writable))
        })
        .collect();
    let result = green_wait(&interests, deadline, &mut || {
        let restore = |target: *mut fd_set, saved: &Option<fd_set>| {
            if let Some(saved) = saved {
                // SAFETY: `target` is the caller's non-null set this copy came from.
                unsafe { *target = *saved };
            }
        };
        restore(readfds, &read_set);
        restore(writefds, &write_set);
        restore(exceptfds, &except_set);
        let mut zero = timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        unsafe { real::select(nfds, readfds, writefds, exceptfds, &mut zero) }
    });
    if !timeout.is_null() {
        let left = deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        // SAFETY: the caller's timeval; Linux reports the time left in it.
        unsafe {
            *timeout = timeval {
                tv_sec: left.as_secs() as libc::time_t,
                tv_usec: left.subsec_micros() as libc::suseconds_t,
            }
        };
    }
    result
}
