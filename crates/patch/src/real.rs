//! The real libc functions behind the hooks, found once with `dlsym(RTLD_NEXT, name)`: the
//! definition that the executable's own (the hook) shadows.

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{
    addrinfo, c_char, c_int, c_uint, c_ulong, c_void, fd_set, iovec, msghdr, nfds_t, pollfd,
    sigset_t, size_t, sockaddr, socklen_t, ssize_t, timespec, timeval,
};

/// The address of libc's `name` (NUL-terminated), after the executable's own definition.
fn resolve(name: &'static str) -> usize {
    // SAFETY: `name` is a NUL-terminated string literal; dlsym is thread-safe.
    let address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) };
    if address.is_null() {
        let message = b"green-patch: dlsym(RTLD_NEXT) cannot find a libc function; aborting\n";
        // SAFETY: a raw write of a static buffer to stderr; nothing to unwind into.
        unsafe { libc::syscall(libc::SYS_write, 2, message.as_ptr(), message.len()) };
        std::process::abort();
    }
    address as usize
}

macro_rules! real_functions {
    ($( $name:ident ( $($arg:ident : $ty:ty),* $(; $dots:tt)? ) -> $ret:ty; )*) => {
        $(
            /// Calls libc's own function of this name (never the hook).
            ///
            /// # Safety
            /// The same contract as the libc function.
            #[inline(always)]
            pub(crate) unsafe fn $name($($arg: $ty),*) -> $ret {
                static ADDRESS: AtomicUsize = AtomicUsize::new(0);
                /// The first call: finds the function, then makes the call (out of line, so
                /// the usual path is a load, a test and a tail call).
                #[cold]
                #[inline(never)]
                unsafe fn first($($arg: $ty),*) -> $ret {
                    let address = resolve(concat!(stringify!($name), "\0"));
                    ADDRESS.store(address, Ordering::Relaxed);
                    // SAFETY: as below.
                    let function: unsafe extern "C" fn($($ty),* $(, $dots)?) -> $ret =
                        unsafe { std::mem::transmute(address) };
                    unsafe { function($($arg),*) }
                }
                let address = ADDRESS.load(Ordering::Relaxed);
                if address == 0 {
                    return unsafe { first($($arg),*) };
                }
                // SAFETY: `address` is libc's definition of this very function, whose C
                // signature the declaration above repeats.
                let function: unsafe extern "C" fn($($ty),* $(, $dots)?) -> $ret =
                    unsafe { std::mem::transmute(address) };
                unsafe { function($($arg),*) }
            }
        )*
    };
}

real_functions! {
    socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    socketpair(domain: c_int, kind: c_int, protocol: c_int, fds: *mut c_int) -> c_int;
    accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t;
    readv(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t;
    write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t;
    writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t;
    recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> ssize_t;
    recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t;
    send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t;
    sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, addrlen: socklen_t) -> ssize_t;
    sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t;
    poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int;
    ppoll(fds: *mut pollfd, nfds: nfds_t, timeout: *const timespec, sigmask: *const sigset_t) -> c_int;
    select(nfds: c_int, readfds: *mut fd_set, writefds: *mut fd_set, exceptfds: *mut fd_set, timeout: *mut timeval) -> c_int;
    close(fd: c_int) -> c_int;
    fcntl(fd: c_int, cmd: c_int, arg: c_ulong; ...) -> c_int;
    ioctl(fd: c_int, request: c_ulong, arg: *mut c_void; ...) -> c_int;
    setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: socklen_t) -> c_int;
    getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut socklen_t) -> c_int;
    dup(fd: c_int) -> c_int;
    dup2(fd: c_int, target: c_int) -> c_int;
    dup3(fd: c_int, target: c_int, flags: c_int) -> c_int;
    nanosleep(request: *const timespec, remain: *mut timespec) -> c_int;
    clock_nanosleep(clock: libc::clockid_t, flags: c_int, request: *const timespec, remain: *mut timespec) -> c_int;
    usleep(micros: libc::useconds_t) -> c_int;
    sched_yield() -> c_int;
    sleep(seconds: c_uint) -> c_uint;
    epoll_wait(epfd: c_int, events: *mut libc::epoll_event, max: c_int, timeout: c_int) -> c_int;
    epoll_pwait(epfd: c_int, events: *mut libc::epoll_event, max: c_int, timeout: c_int, sigmask: *const sigset_t) -> c_int;
    getaddrinfo(node: *const c_char, service: *const c_char, hints: *const addrinfo, res: *mut *mut addrinfo) -> c_int;
    getnameinfo(addr: *const sockaddr, addrlen: socklen_t, host: *mut c_char, hostlen: socklen_t, serv: *mut c_char, servlen: socklen_t, flags: c_int) -> c_int;
}
