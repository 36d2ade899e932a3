//! gevent's green threads for Rust: greenlets on a per-thread hub, and sockets, DNS, TLS and HTTP
//! that switch to the hub instead of blocking. This crate only re-exports the layers below, each
//! item at one path; the README follows (its example is compiled as a doctest).
//!
//! # Where things are
//!
//! * At the top: greenlets and what every program uses ([`spawn`], [`sleep`], [`with_timeout`],
//!   [`joinall`], [`Pool`], [`spawn_blocking`], [`block_on`], …), and [`prelude`] to import the
//!   common ones at once.
//! * [`sync`]: gevent's toolkit (Event, AsyncResult, the queues, Semaphore, Lock); [`xchan`]: a
//!   channel from other threads into greenlets.
//! * [`net`], [`dns`], [`tls`], [`http`]: green I/O with std's, rustls' and the `http` crate's
//!   vocabulary.
//! * Public modules for what gevent users reach for less often: [`raw`] (Python's `greenlet`:
//!   explicit switching, to write a scheduler or a generator), [`monitor`] (the blocking
//!   watchdog), [`stack`] and [`threadpool`] (sizes and counters). [`unversioned`] is the
//!   park/wake primitive under every green type, for writing your own: public, but outside
//!   semver.
//! * Cargo features: `patch` adds `green::patch` (gevent's `monkey.patch_all()`), `tokio` adds
//!   `green::tokio` (futures that need tokio).
//!
//! Left out on purpose: the runtime's module paths whose items are all at the top (`greenlet`,
//! `thread`, `pool`, `local`, `fd`), the stack allocator itself, and `foreign` (the C-ABI wait
//! behind `patch`); they stay reachable through the `green-runtime` crate for sibling crates.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]
// The README's example is a whole program, to be pasted as is.
#![allow(clippy::needless_doctest_main)]

// Greenlets: spawn, join, kill, scopes.
#[doc(inline)]
pub use green_runtime::{
    current, scope, spawn, spawn_later, trim_stack, Builder, Greenlet, GreenletExit, GreenletRef,
    JoinError, LinkId, Scope, ScopedGreenlet,
};

// Time: sleeping, yielding, hub callbacks, timeouts.
#[doc(inline)]
pub use green_runtime::{
    call_later, sleep, with_timeout, yield_now, Elapsed, LoopExit, Timeout, TimerHandle,
};

// Waiting on many: gevent's joinall, killall, wait, iwait.
#[doc(inline)]
pub use green_runtime::{
    iwait, joinall, joinall_completed, joinall_timeout, killall, wait, wait_idle, AsGreenlet,
    Iwait, Waitable,
};

// Sets of greenlets, greenlet-local values.
#[doc(inline)]
pub use green_runtime::local::Local;
#[doc(inline)]
pub use green_runtime::pool::{Group, Imap, Pool, PoolFull};

// Other threads: the thread pool, hubs on other threads, futures.
#[doc(inline)]
pub use green_runtime::{
    block_on, spawn_blocking, spawn_hub, BlockingHandle, HubGone, HubHandle, HubPool, HubThread,
    RemoteGreenlet, ThreadsafeWaker,
};

// Your own file descriptors, green.
#[doc(inline)]
pub use green_runtime::{notify_close, wait_readable, wait_writable, GreenFd};

#[doc(inline)]
pub use green_runtime::{monitor, raw, sync, unversioned, xchan};

/// Greenlet stack sizes ([`Builder::stack_size`]) and the stack pool's counters.
///
/// Stacks are address space reserved per greenlet; only the pages a greenlet touches cost
/// memory. The default can also be set with `GREEN_STACK_SIZE` (bytes).
pub mod stack {
    #[doc(inline)]
    pub use green_runtime::stack::{
        pooled_stacks, uses_mprotect_guards, DEFAULT_STACK_SIZE, MIN_STACK_SIZE,
    };
}

/// The process-wide pool behind [`spawn_blocking`] (gevent's threadpool):
/// its bound (`GREEN_THREADPOOL_SIZE`) and how many threads it runs now.
pub mod threadpool {
    #[doc(inline)]
    pub use green_runtime::threadpool::{max_threads, thread_count};
}

/// Green sockets with std's names and signatures (gevent's `socket`), and gevent's
/// `StreamServer` / `DatagramServer` (crate `green-net`).
///
/// Switching from std is an import change: `use green::net::TcpStream` instead of
/// `std::net::TcpStream`. A call that would block parks its greenlet; every difference from std
/// is listed in the type's `# Caveats`.
pub mod net {
    #[doc(inline)]
    pub use green_net::server::{DatagramHandle, STOP_KILL_WAIT};
    #[doc(inline)]
    pub use green_net::tcp::{Incoming, CONNECTION_ATTEMPT_DELAY, DEFAULT_BACKLOG};
    #[doc(inline)]
    pub use green_net::{
        serve_workers, Datagram, DatagramServer, ListenerOptions, ServerHandle, StreamServer,
        TcpListener, TcpStream, ToSocketAddrs, UdpSocket, UnixDatagram, UnixListener, UnixStream,
        WorkersHandle,
    };
}

#[doc(inline)]
pub use green_net::dns;

#[doc(inline)]
pub use green_tls as tls;

#[doc(inline)]
pub use green_http as http;

#[cfg(feature = "patch")]
#[doc(inline)]
pub use green_patch as patch;

#[cfg(feature = "tokio")]
#[doc(inline)]
pub use green_tokio as tokio;

/// The names most green programs use, for `use green::prelude::*`.
///
/// The functions that start and wait for greenlets, the timeout, their handle and error types,
/// the traits that `wait`/`iwait`/`killall` take, and `std::io`'s `Read`, `Write` and `BufRead`,
/// which every green socket and body implements.
///
/// ```
/// use green::prelude::*;
/// use std::time::Duration;
///
/// let greenlets: Vec<Greenlet<u32>> = (1..=3).map(|n| spawn(move || n * 10)).collect();
/// let results: Vec<u32> = joinall(greenlets).into_iter().map(Result::unwrap).collect();
/// assert_eq!(results, [10, 20, 30]);
/// assert_eq!(with_timeout(Duration::from_millis(10), || sleep(Duration::from_secs(5))), Err(Elapsed));
/// ```
pub mod prelude {
    #[doc(no_inline)]
    pub use crate::{
        joinall, sleep, spawn, with_timeout, yield_now, AsGreenlet, Elapsed, Greenlet, JoinError,
        Waitable,
    };
    #[doc(no_inline)]
    pub use std::io::{BufRead, Read, Write};
}
