//! Greenlets, the per-thread hub, timers and gevent's concurrency toolkit.
//!
//! ```
//! use std::time::Duration;
//!
//! let greenlets: Vec<_> = (0..3)
//!     .map(|i| green_runtime::spawn(move || {
//!         green_runtime::sleep(Duration::from_millis(10 * (3 - i)));
//!         i * 10
//!     }))
//!     .collect();
//! let results: Vec<u64> = green_runtime::joinall(greenlets)
//!     .into_iter()
//!     .map(|r| r.unwrap())
//!     .collect();
//! assert_eq!(results, [0, 10, 20]);
//! ```
//!
//! # Implementation
//!
//! Each OS thread gets a hub on its first green call: a ready queue, a timer heap and a `mio`
//! poller. Greenlets are corosensei coroutines on stacks carved from large `MAP_NORESERVE` slabs
//! (see [`stack`]). A greenlet that would block takes a [`Waiter`](unversioned::Waiter), hands it to what
//! will fire, and parks; when code outside any greenlet blocks (the main thread, a plain thread), it
//! runs the hub loop until its own waiter fires. Greenlets never move between threads.
//!
//! Async code meets greenlets both ways: [`block_on`] polls a future on the current greenlet,
//! parking it between polls, and [`thread`] gives async callers greenlets to await
//! ([`RemoteGreenlet`], [`spawn_hub`], [`HubPool`]).
//!
//! # Caveats
//!
//! * Cooperative: a greenlet that computes without blocking or yielding holds up its hub (see
//!   [`monitor`]). Blocking foreign calls belong in [`spawn_blocking`].
//! * `std::thread::panicking()` is per thread, not per greenlet: while one greenlet is suspended in
//!   the middle of unwinding (a destructor doing green I/O during a kill), every other greenlet on
//!   that thread also sees `panicking() == true`. A `std::sync::Mutex` guard taken before that
//!   window and dropped during it is poisoned; green's own [`sync::Lock`] does not poison. Kills and
//!   timeouts aimed at a greenlet that may be mid-unwind wait until it is not (retried every
//!   millisecond).
//! * A timeout is delivered at the greenlet's blocking point; if the greenlet was already woken
//!   when the expiry fires (its sleep ended in the same hub turn), the wake-up wins and the expiry
//!   waits for the following blocking point, as in gevent. Several expiries of one greenlet in the
//!   same hub turn land one per blocking point, in the order their timers fired (an expiry whose
//!   scope ended first is dropped). A kill is delivered as soon as the greenlet next runs, before
//!   any pending timeout.
//! * A wait made outside any greenlet that nothing but its own timeout could end is gevent's
//!   [`LoopExit`] deadlock, reported at once (see [`sync`] for the policy every blocking call
//!   follows).
//! * A greenlet still blocked when its thread exits is abandoned: its destructors do not run and
//!   its stack is leaked (a suspended coroutine cannot be dropped safely).
//! * The default stack is 512 KiB of address space per greenlet (`GREEN_STACK_SIZE`,
//!   [`Builder::stack_size`]); only touched pages cost memory. Overflowing it aborts the process
//!   with a message naming the greenlet. Measured minimum stack sizes (`tests/stack.rs`,
//!   `measure_minimum_stack_sizes`): serde_json parsing and writing a 1 MB document nested 100
//!   deep needs 52 KiB in release and 240 KiB in debug builds; a rustls TLS 1.3/1.2 handshake 20 KiB
//!   (release) / 56 KiB (debug); httparse fits in the 16 KiB minimum. 512 KiB leaves twice the
//!   debug-build need.

#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "green-runtime (and so green) builds only for Linux: its stacks use Linux's madvise guard pages \
     and process_madvise, and its blocking monitor reads Linux thread and futex state"
);

mod block_on;
pub mod fd;
pub mod foreign;
pub mod greenlet;
mod hub;
pub mod local;
pub mod monitor;
mod overflow;
pub mod pool;
pub mod raw;
mod report;
pub mod stack;
pub mod sync;
pub mod thread;
pub mod threadpool;
mod timeout;
mod timer;
pub mod unversioned;
mod wait;
pub mod xchan;

pub use block_on::block_on;
pub use fd::GreenFd;
pub use greenlet::{
    current, scope, spawn, spawn_later, trim_stack, Builder, Greenlet, GreenletExit, GreenletRef,
    JoinError, LinkId, Scope, ScopedGreenlet,
};
pub use hub::io::{notify_close, wait_readable, wait_writable};
pub use hub::remote::{HubGone, HubHandle, ThreadsafeWaker};
pub use hub::{call_later, sleep, yield_now, LoopExit, TimerHandle};
pub use pool::{Group, Pool, PoolFull};
pub use thread::{spawn_hub, HubPool, HubThread, RemoteGreenlet};
pub use threadpool::{spawn_blocking, BlockingHandle};
pub use timeout::{with_timeout, Elapsed, Timeout};
pub use wait::{
    iwait, joinall, joinall_completed, joinall_timeout, killall, wait, wait_idle, AsGreenlet,
    Iwait, Waitable,
};
