//! gevent's `monkey.patch_all()` for Rust: std::net, `std::thread::sleep`, name lookups and the
//! crates built on them (redis, mysql, memcache, ureq's default agent, tungstenite) run green,
//! unchanged.
//!
//! ```no_run
//! use std::io::{Read, Write};
//!
//! green_patch::all(); // first thing in main
//! let pages: Vec<_> = (0..100)
//!     .map(|_| {
//!         green_runtime::spawn(|| {
//!             std::thread::sleep(std::time::Duration::from_millis(100)); // parks the greenlet
//!             let mut stream = std::net::TcpStream::connect("127.0.0.1:8080")?; // green too
//!             stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
//!             let mut page = String::new();
//!             stream.read_to_string(&mut page)?;
//!             Ok::<_, std::io::Error>(page)
//!         })
//!     })
//!     .collect();
//! green_runtime::joinall(pages); // ~100 ms of sleeping in all, on one thread
//! ```
//!
//! # Implementation
//!
//! Link-time interposition: this crate defines `read`, `connect`, `nanosleep`, `getaddrinfo`, …
//! with C linkage, so the executable's own definitions win over glibc's for every caller linked
//! into it (std and every Rust crate); glibc's are reached with `dlsym(RTLD_NEXT)`. Each hook
//! first checks one flag, off until [`all`] is called, and then behaves exactly as glibc's.
//!
//! With the flag on, only a call made **inside a greenlet**, on a **socket**, changes:
//! * A per-fd record keeps the user's view (libco's design): a socket the user keeps blocking is
//!   made `O_NONBLOCK` underneath, and a call that would block parks the greenlet on the hub
//!   until the fd is ready, within the socket's own `SO_RCVTIMEO`/`SO_SNDTIMEO` (then `EAGAIN`, as
//!   the kernel does; a timed-out `connect` fails with `EINPROGRESS`, as the kernel's does). A
//!   socket the user made non-blocking (`SOCK_NONBLOCK`, `O_NONBLOCK`, `FIONBIO`) gets `EAGAIN`
//!   as asked; `F_GETFL` hides the `O_NONBLOCK` green added. Outside greenlets (plain threads,
//!   the hub, `spawn_blocking` workers) a socket green made non-blocking still blocks: the call
//!   waits with the real `poll`.
//! * `close` (and `dup2`/`dup3` onto an fd) wakes this thread's greenlets blocked on the fd with
//!   `EBADF` and forgets its record before the real close, since fd numbers are reused.
//! * `poll`, `ppoll` and `select` with a non-zero timeout wait on the hub for any of their fds or
//!   the timeout, then run the real call with a zero timeout.
//! * `nanosleep`, `clock_nanosleep` (relative or `TIMER_ABSTIME`, on the wall clocks), `usleep`
//!   and `sleep` are green sleeps; `sched_yield` (std's `thread::yield_now`) lets the other
//!   ready greenlets run, as gevent's `sleep(0)`.
//! * `getaddrinfo` of a host name uses green's resolver (hosts file, resolv.conf, search list,
//!   cache, `GREEN_RESOLVER`), with glibc's result layout and error codes; glibc's own
//!   `freeaddrinfo` frees either kind of list. `getnameinfo` of a name runs glibc's on green's
//!   thread pool.
//!
//! # Kills and timeouts never unwind through C
//!
//! An `extern "C"` call cannot be unwound through (Rust aborts the process). A kill or
//! `with_timeout` expiry that lands while a greenlet waits in a hooked call makes that call fail
//! — `ECANCELED` for a kill, `ETIMEDOUT` for a timeout (a sleep just ends early) — and the throw
//! stays pending: it lands at the greenlet's next green switch point, or at the end of the
//! `with_timeout` scope (which returns `Elapsed`), or when the greenlet returns (which ends
//! `Killed`), whichever comes first. As under gevent, a client whose call was cancelled is in an
//! unknown protocol state: drop the connection.
//!
//! # Caveats
//!
//! * Linux with glibc only (x86-64 and AArch64: the variadic `fcntl`/`ioctl` are defined with a
//!   fixed third argument, which those ABIs pass identically).
//! * Not hooked: regular files and pipes (their `read`/`write` pass through: disk I/O does not
//!   park), `io_uring`, raw `syscall()`, `sendfile`/`splice`, `recvmmsg`/`sendmmsg`,
//!   `epoll_wait` unless diverted (see below), fortified `__*_chk` variants, and calls glibc makes to itself
//!   (`fclose`'s close, for instance). Shared libraries written in C keep calling glibc directly
//!   unless the executable exports its symbols (`-rdynamic`).
//! * `epoll_wait` is not diverted unless [`divert_epoll`] asks for it: a library that hides a runtime behind blocking calls (the
//!   `postgres` crate and `reqwest::blocking` run tokio inside) keeps per-thread "runtime
//!   entered" state, and a second greenlet entering it while the first is suspended would panic
//!   inside tokio. Such libraries stay correct and block the thread (their calls are serialised);
//!   use their async versions through `green::block_on` to make them concurrent.
//! * A `std::sync::Mutex` held across a patched blocking call deadlocks the thread when another
//!   greenlet of the same thread wants it (gevent patches `threading.Lock` for this reason): use
//!   `green::sync::Lock` between greenlets. The blocking monitor (`GREEN_MONITOR=1`) reports the
//!   stuck greenlet as blocked in a futex wait and names the greenlets suspended inside patched
//!   calls, the likely holders.
//! * A blocking `write` to a socket may return short (as one interrupted by a signal may): use
//!   `write_all`, as std code does.
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]
#![allow(clippy::missing_safety_doc)]

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
compile_error!("green-patch interposes glibc's functions: it builds only for Linux with glibc");

mod dns;
mod epoll;
mod fds;
mod io;
mod poll;
mod real;
mod sleep;

use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Every hook's address, taken in [`all`] so that the linker keeps them (an object file of a
/// library is linked only when something refers to it).
#[inline(never)]
fn hook_addresses() -> [usize; 36] {
    [
        io::read as *const () as usize,
        io::readv as *const () as usize,
        io::write as *const () as usize,
        io::writev as *const () as usize,
        io::recv as *const () as usize,
        io::recvfrom as *const () as usize,
        io::recvmsg as *const () as usize,
        io::send as *const () as usize,
        io::sendto as *const () as usize,
        io::sendmsg as *const () as usize,
        io::accept as *const () as usize,
        io::accept4 as *const () as usize,
        io::socket as *const () as usize,
        io::socketpair as *const () as usize,
        io::connect as *const () as usize,
        io::close as *const () as usize,
        io::dup as *const () as usize,
        io::dup2 as *const () as usize,
        io::dup3 as *const () as usize,
        io::fcntl as *const () as usize,
        io::ioctl as *const () as usize,
        io::setsockopt as *const () as usize,
        poll::poll as *const () as usize,
        poll::ppoll as *const () as usize,
        poll::select as *const () as usize,
        sleep::nanosleep as *const () as usize,
        sleep::clock_nanosleep as *const () as usize,
        sleep::usleep as *const () as usize,
        sleep::sleep as *const () as usize,
        sleep::sched_yield as *const () as usize,
        epoll::epoll_wait as *const () as usize,
        epoll::epoll_pwait as *const () as usize,
        dns::getaddrinfo as *const () as usize,
        dns::getnameinfo as *const () as usize,
        enabled as *const () as usize,
        all as *const () as usize,
    ]
}

/// Turns the hooks on for the whole process (gevent's `patch_all`: call it first in `main`,
/// before sockets exist). Does nothing when the environment has `GREEN_PATCH=0`. Returns whether
/// the hooks are on. There is no way back: sockets made green stay green.
pub fn all() -> bool {
    std::hint::black_box(hook_addresses());
    if std::env::var_os("GREEN_PATCH").is_some_and(|value| value == "0") {
        return enabled();
    }
    ENABLED.store(true, Ordering::SeqCst);
    true
}

/// Also diverts `epoll_wait`/`epoll_pwait` made inside greenlets (off by default): for a library
/// that waits on its own epoll fd with no runtime state of its own. Never use it with a library
/// that runs tokio (or another event loop) behind its blocking calls — the `postgres` crate,
/// `reqwest::blocking`: a second greenlet entering it while the first waits would panic inside
/// that runtime. The hub's own `epoll_wait` is never diverted (it runs outside any greenlet).
pub fn divert_epoll(on: bool) {
    epoll::DIVERTED.store(on, Ordering::SeqCst);
}

/// Whether [`all`] turned the hooks on.
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

#[inline(always)]
fn errno() -> libc::c_int {
    // SAFETY: glibc's thread-local errno.
    unsafe { *libc::__errno_location() }
}

#[inline(always)]
fn set_errno(value: libc::c_int) {
    // SAFETY: glibc's thread-local errno.
    unsafe { *libc::__errno_location() = value };
}

/// A panic caught inside a hook (a bug): it cannot unwind through the C boundary, so it is
/// reported and the call fails with `EIO`.
fn report_panic(payload: &(dyn std::any::Any + Send)) {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "green-patch: panic inside a hooked libc call (the call fails with EIO): {message}"
    );
}
