//! The socket hooks: each tries the real call and, where the user expects a blocking socket
//! inside a greenlet, parks the greenlet on the hub until the fd is ready, then retries.

use std::time::{Duration, Instant};

use libc::{c_int, c_ulong, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use green_runtime::foreign::{self, Caught};

use crate::fds::{self, Record, GREEN_NONBLOCK, SOCKET, USER_NONBLOCK};
use crate::{enabled, errno, real, report_panic, set_errno};

/// Which readiness a call waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

fn would_block(err: c_int) -> bool {
    err == libc::EAGAIN || err == libc::EWOULDBLOCK
}

/// `now + timeout`, or `None` (no deadline) when the sum does not fit.
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|timeout| Instant::now().checked_add(timeout))
}

/// Defines the hook of a socket call that may block: the real call, made the way the user's view
/// of its fd says it should behave. While the patch is off the hook is a flag check and a tail
/// call (the hooked path is a cold function of its own: a closure built before the check cost
/// 25 more instructions per call, its captures going to the stack first). With `dontwait`, a
/// call whose flags ask for `MSG_DONTWAIT` goes straight to libc.
macro_rules! socket_hook {
    ($name:ident($fd:ident: $fd_type:ty $(, $arg:ident: $type:ty)*), $direction:ident
     $(, dontwait $flags:ident)?) => {
        #[doc = concat!("# Safety\nlibc's `", stringify!($name), "`.")]
        #[no_mangle]
        pub unsafe extern "C" fn $name($fd: $fd_type $(, $arg: $type)*) -> ssize_t {
            #[cold]
            #[inline(never)]
            fn hooked($fd: $fd_type $(, $arg: $type)*) -> ssize_t {
                if plain_call($fd) {
                    return unsafe { real::$name($fd $(, $arg)*) };
                }
                hooked_call($fd, Direction::$direction, &mut move || unsafe {
                    real::$name($fd $(, $arg)*)
                })
            }
            if !enabled() $(|| $flags & libc::MSG_DONTWAIT != 0)? {
                return unsafe { real::$name($fd $(, $arg)*) };
            }
            hooked($fd $(, $arg)*)
        }
    };
}

/// Whether a call on `fd` needs nothing from green: outside any greenlet, on an fd green did not
/// make non-blocking under the user (the common case for the hub's own and other threads' calls).
#[inline(always)]
fn plain_call(fd: c_int) -> bool {
    !foreign::in_greenlet() && !fds::peek(fd).is_some_and(Record::blocking_emulated)
}

/// Out of line, so that the hook's own frame stays a flag check and a call while the patch is
/// off (inlined, this function's register saves ran on every call).
#[inline(never)]
fn hooked_call(fd: c_int, direction: Direction, call: &mut dyn FnMut() -> ssize_t) -> ssize_t {
    if !foreign::in_greenlet() {
        return match fds::peek(fd) {
            Some(record) if record.blocking_emulated() => {
                blocking_call(fd, direction, record, false, call)
            }
            _ => call(),
        };
    }
    let Some(record) = fds::record(fd) else {
        return call();
    };
    let state = fds::classify(fd, record);
    if state & (SOCKET | USER_NONBLOCK) != SOCKET {
        return call();
    }
    blocking_call(fd, direction, record, true, call)
}

/// A call the user expects to block on a socket green made non-blocking: retry after each wait
/// for readiness ([`wait_ready`]), within the socket's own timeout (then `EAGAIN`, as the kernel
/// does).
fn blocking_call(
    fd: c_int,
    direction: Direction,
    record: &Record,
    green: bool,
    call: &mut dyn FnMut() -> ssize_t,
) -> ssize_t {
    let deadline = deadline_after(record.timeout(direction == Direction::Write));
    loop {
        let result = call();
        if result >= 0 || !would_block(errno()) {
            return result;
        }
        if let Err(err) = wait_ready(fd, direction, record, green, deadline) {
            set_errno(err);
            return -1;
        }
    }
}

/// Waits until `fd` may be ready: inside a greenlet (`green`) parked on the hub ([`wait`]),
/// elsewhere with the real `poll`, as the kernel would have blocked. `EAGAIN` once `deadline`
/// passed; otherwise the errors of [`wait`] or `poll`.
fn wait_ready(
    fd: c_int,
    direction: Direction,
    record: &Record,
    green: bool,
    deadline: Option<Instant>,
) -> Result<(), c_int> {
    if green {
        return wait(fd, direction, record, deadline);
    }
    match poll_one(fd, direction, deadline) {
        Ok(true) => Ok(()),
        Ok(false) => Err(libc::EAGAIN),
        Err(err) => Err(err),
    }
}

/// Parks the greenlet until `fd` may be ready. Errors are errno values: `EAGAIN` when the
/// socket timeout passed, `EBADF` when the fd was closed meanwhile, `ETIMEDOUT` / `ECANCELED`
/// when a `with_timeout` expiry or a kill landed (kept pending for the next switch point).
pub(crate) fn wait(
    fd: c_int,
    direction: Direction,
    record: &Record,
    deadline: Option<Instant>,
) -> Result<(), c_int> {
    let source = record.source(fd);
    let readable = direction == Direction::Read;
    match foreign::catch_throw(|| foreign::wait_fd(fd, source, readable, deadline)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => match err.kind() {
            std::io::ErrorKind::TimedOut => Err(libc::EAGAIN),
            std::io::ErrorKind::NotConnected => Err(libc::EBADF),
            // Another greenlet waits on the same fd and direction (two readers of one socket):
            // take turns by polling every millisecond.
            std::io::ErrorKind::ResourceBusy => green_sleep(Duration::from_millis(1)),
            _ => Err(err.raw_os_error().unwrap_or(libc::EIO)),
        },
        Err(caught) => Err(caught_errno(caught)),
    }
}

/// The errno a hooked call fails with when a throw landed in it.
pub(crate) fn caught_errno(caught: Caught) -> c_int {
    match caught {
        Caught::TimedOut => libc::ETIMEDOUT,
        Caught::Killed => libc::ECANCELED,
        Caught::Panicked(payload) => {
            report_panic(&*payload);
            libc::EIO
        }
    }
}

/// A green sleep from inside a hook; a throw ends it early with its errno.
pub(crate) fn green_sleep(duration: Duration) -> Result<(), c_int> {
    foreign::catch_throw(|| green_runtime::sleep(duration)).map_err(caught_errno)
}

/// The real `poll` on one fd until `deadline`: whether it became ready.
pub(crate) fn poll_one(
    fd: c_int,
    direction: Direction,
    deadline: Option<Instant>,
) -> Result<bool, c_int> {
    let events = match direction {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    let mut pollfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let timeout = match deadline {
        None => -1,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            left.as_nanos().div_ceil(1_000_000).min(c_int::MAX as u128) as c_int
        }
    };
    // SAFETY: one valid pollfd on the stack.
    match unsafe { real::poll(&mut pollfd, 1, timeout) } {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => Err(errno()),
    }
}

socket_hook!(read(fd: c_int, buf: *mut c_void, count: size_t), Read);
socket_hook!(readv(fd: c_int, iov: *const iovec, count: c_int), Read);
socket_hook!(write(fd: c_int, buf: *const c_void, count: size_t), Write);
socket_hook!(writev(fd: c_int, iov: *const iovec, count: c_int), Write);
socket_hook!(recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int), Read, dontwait flags);
socket_hook!(
    recvfrom(
        fd: c_int,
        buf: *mut c_void,
        len: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        addrlen: *mut socklen_t
    ),
    Read,
    dontwait flags
);
socket_hook!(recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int), Read, dontwait flags);
socket_hook!(send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int), Write, dontwait flags);
socket_hook!(
    sendto(
        fd: c_int,
        buf: *const c_void,
        len: size_t,
        flags: c_int,
        addr: *const sockaddr,
        addrlen: socklen_t
    ),
    Write,
    dontwait flags
);
socket_hook!(sendmsg(fd: c_int, msg: *const msghdr, flags: c_int), Write, dontwait flags);

/// # Safety
/// libc's `accept`.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    unsafe { accept4(fd, addr, len, 0) }
}

/// # Safety
/// libc's `accept4`.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    if !enabled() {
        return unsafe { real::accept4(fd, addr, len, flags) };
    }
    let accepted = hooked_call(fd, Direction::Read, &mut || unsafe {
        real::accept4(fd, addr, len, flags) as ssize_t
    }) as c_int;
    if accepted >= 0 {
        new_socket(accepted, flags);
    }
    accepted
}

/// Starts the record of a socket the kernel just handed out.
fn new_socket(fd: c_int, flags: c_int) {
    if let Some(record) = fds::record(fd) {
        let user = if flags & libc::SOCK_NONBLOCK != 0 {
            USER_NONBLOCK
        } else {
            0
        };
        record.reset(SOCKET | user);
    }
}

/// # Safety
/// libc's `socket`.
#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int {
    let fd = unsafe { real::socket(domain, kind, protocol) };
    if fd >= 0 && enabled() {
        new_socket(fd, kind);
    }
    fd
}

/// # Safety
/// libc's `socketpair`.
#[no_mangle]
pub unsafe extern "C" fn socketpair(
    domain: c_int,
    kind: c_int,
    protocol: c_int,
    fds: *mut c_int,
) -> c_int {
    let result = unsafe { real::socketpair(domain, kind, protocol, fds) };
    if result == 0 && enabled() {
        // SAFETY: on success the kernel wrote two fds into the caller's array.
        let pair = unsafe { [*fds, *fds.add(1)] };
        for fd in pair {
            new_socket(fd, kind);
        }
    }
    result
}

/// # Safety
/// libc's `connect`.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    if !enabled() {
        return unsafe { real::connect(fd, addr, len) };
    }
    let green = foreign::in_greenlet();
    let record = if green {
        fds::record(fd)
            .filter(|record| fds::classify(fd, record) & (SOCKET | USER_NONBLOCK) == SOCKET)
    } else {
        fds::peek(fd).filter(|record| record.blocking_emulated())
    };
    let result = unsafe { real::connect(fd, addr, len) };
    let Some(record) = record else {
        return result;
    };
    if result == 0 || errno() != libc::EINPROGRESS {
        return result;
    }
    // The kernel's blocking connect waits up to SO_SNDTIMEO, then fails with EINPROGRESS.
    let deadline = deadline_after(record.timeout(true));
    loop {
        match wait_ready(fd, Direction::Write, record, green, deadline) {
            Ok(()) => {}
            Err(libc::EAGAIN) => {
                set_errno(libc::EINPROGRESS);
                return -1;
            }
            Err(err) => {
                set_errno(err);
                return -1;
            }
        }
        // Readiness can be spurious: connected (or failed) only once poll says writable.
        match poll_one(fd, Direction::Write, Some(Instant::now())) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                set_errno(err);
                return -1;
            }
        }
        let mut error: c_int = 0;
        let mut size = std::mem::size_of::<c_int>() as socklen_t;
        // SAFETY: SO_ERROR writes one int into the buffer given with its size.
        let got = unsafe {
            real::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut error as *mut c_int).cast(),
                &mut size,
            )
        };
        if got < 0 {
            return -1;
        }
        if error != 0 {
            set_errno(error);
            return -1;
        }
        return 0;
    }
}

/// # Safety
/// libc's `close`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if enabled() {
        forget(fd);
    }
    unsafe { real::close(fd) }
}

/// The fd number is about to stop naming what it names: wake this thread's greenlets waiting on
/// it (they fail with `EBADF`) and forget its record.
fn forget(fd: c_int) {
    if let Some(record) = fds::peek(fd) {
        if record.is_socket() {
            green_runtime::notify_close(fd);
        }
        record.reset(fds::UNKNOWN);
    }
}

/// # Safety
/// libc's `dup`.
#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let copy = unsafe { real::dup(fd) };
    if copy >= 0 && enabled() {
        copy_record(fd, copy);
    }
    copy
}

/// # Safety
/// libc's `dup2`.
#[no_mangle]
pub unsafe extern "C" fn dup2(fd: c_int, target: c_int) -> c_int {
    if enabled() && fd != target {
        forget(target);
    }
    let copy = unsafe { real::dup2(fd, target) };
    if copy >= 0 && enabled() && fd != target {
        copy_record(fd, copy);
    }
    copy
}

/// # Safety
/// libc's `dup3`.
#[no_mangle]
pub unsafe extern "C" fn dup3(fd: c_int, target: c_int, flags: c_int) -> c_int {
    if enabled() && fd != target {
        forget(target);
    }
    let copy = unsafe { real::dup3(fd, target, flags) };
    if copy >= 0 && enabled() {
        copy_record(fd, copy);
    }
    copy
}

fn copy_record(from: c_int, to: c_int) {
    let Some(target) = fds::record(to) else {
        return;
    };
    match fds::peek(from) {
        Some(source) => target.copy_from(source),
        None => target.reset(fds::UNKNOWN),
    }
}

/// `fcntl`, whose third argument C declares variadic: on the Linux ABIs green supports
/// (x86-64, AArch64) a variadic integer or pointer argument travels exactly as a fixed one, so
/// it is taken as one here and passed on as is.
///
/// # Safety
/// libc's `fcntl`.
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    if !enabled() {
        return unsafe { real::fcntl(fd, cmd, arg) };
    }
    match cmd {
        libc::F_GETFL => {
            let flags = unsafe { real::fcntl(fd, cmd, arg) };
            match fds::peek(fd) {
                Some(record) if flags >= 0 && record.blocking_emulated() => {
                    flags & !libc::O_NONBLOCK
                }
                _ => flags,
            }
        }
        libc::F_SETFL => {
            let nonblocking = arg & libc::O_NONBLOCK as c_ulong != 0;
            match fds::peek(fd).filter(|record| record.is_socket()) {
                Some(record) => {
                    let green_made = record.state() & GREEN_NONBLOCK != 0;
                    let arg = if green_made {
                        arg | libc::O_NONBLOCK as c_ulong
                    } else {
                        arg
                    };
                    let result = unsafe { real::fcntl(fd, cmd, arg) };
                    if result == 0 {
                        record.set_user_nonblocking(nonblocking);
                    }
                    result
                }
                None => unsafe { real::fcntl(fd, cmd, arg) },
            }
        }
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let copy = unsafe { real::fcntl(fd, cmd, arg) };
            if copy >= 0 {
                copy_record(fd, copy);
            }
            copy
        }
        _ => unsafe { real::fcntl(fd, cmd, arg) },
    }
}

/// `ioctl`; only `FIONBIO` is looked at (std's `set_nonblocking`). Variadic like `fcntl`.
///
/// # Safety
/// libc's `ioctl`.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    if !enabled() || request != libc::FIONBIO as c_ulong || arg.is_null() {
        return unsafe { real::ioctl(fd, request, arg) };
    }
    // SAFETY: FIONBIO's argument points to an int.
    let nonblocking = unsafe { *arg.cast::<c_int>() } != 0;
    let Some(record) = fds::peek(fd).filter(|record| record.is_socket()) else {
        return unsafe { real::ioctl(fd, request, arg) };
    };
    if !nonblocking && record.state() & GREEN_NONBLOCK != 0 {
        // Stays non-blocking underneath; the user sees a blocking socket.
        record.set_user_nonblocking(false);
        return 0;
    }
    let result = unsafe { real::ioctl(fd, request, arg) };
    if result == 0 {
        // A socket the user makes blocking again is made green again at its next green use.
        record.set_user_nonblocking(nonblocking);
    }
    result
}

/// # Safety
/// libc's `setsockopt`.
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    let result = unsafe { real::setsockopt(fd, level, name, value, len) };
    let is_timeout = level == libc::SOL_SOCKET
        && (name == libc::SO_RCVTIMEO || name == libc::SO_SNDTIMEO)
        && len as usize >= std::mem::size_of::<libc::timeval>();
    if result == 0 && is_timeout && enabled() {
        // SAFETY: the kernel accepted `value` as a timeval of at least this size.
        let timeval = unsafe { &*value.cast::<libc::timeval>() };
        let timeout = Duration::from_secs(timeval.tv_sec.max(0) as u64)
            + Duration::from_micros(timeval.tv_usec.max(0) as u64);
        if let Some(record) = fds::record(fd) {
            record.set_timeout(name == libc::SO_SNDTIMEO, timeout);
        }
    }
    result
}
