//! Futures that need tokio (its reactor, timers or `spawn`), awaited from greenlets: reqwest's
//! async client, tokio-postgres, sqlx, the AWS SDK, tonic.
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! let start = Instant::now();
//! let naps: Vec<_> = (0..10)
//!     .map(|_| {
//!         green_runtime::spawn(|| {
//!             // A tokio timer; the greenlet waits on its hub, not the thread.
//!             green_tokio::block_on(async { tokio::time::sleep(Duration::from_millis(50)).await })
//!         })
//!     })
//!     .collect();
//! green_runtime::joinall(naps);
//! assert!(start.elapsed() < Duration::from_millis(450), "the sleeps overlap");
//! ```
//!
//! # Which `block_on`
//!
//! * `green::block_on` polls any future on the calling greenlet and needs no runtime: use it for
//!   runtime-agnostic futures (`futures::channel`, `async-channel`, `event-listener`, a
//!   [`RemoteGreenlet`](green_runtime::RemoteGreenlet), a tokio `JoinHandle`, `tokio::sync`).
//! * [`block_on`] (this crate) does the same inside the context of a tokio runtime, so that the
//!   future may create tokio resources (sockets, timers) and `tokio::spawn`; the runtime's threads
//!   drive that I/O and those timers and wake the greenlet through its hub. Use it for clients
//!   built on tokio. Neither blocks the thread: other greenlets run while one waits.
//! * [`spawn`] runs a `Send + 'static` future *on* the runtime's threads, in parallel with the
//!   hub (CPU-heavy futures, or tasks that must outlive the greenlet, such as tokio-postgres'
//!   connection); its `JoinHandle` is awaitable with either `block_on`.
//! * tokio's own `Handle::block_on` blocks the whole thread, and with it every greenlet on its
//!   hub: never call it from green code.
//!
//! # Implementation
//!
//! The runtime is a multi-thread tokio runtime with every driver enabled, built on first use
//! with one worker thread (threads named `green-tokio`): [`set_worker_threads`] changes that, and
//! [`use_handle`] makes green use the application's own runtime instead. [`block_on`] polls the
//! future on the greenlet's thread, entering the runtime's context (`Handle::enter`) for each
//! poll only, since greenlets interleave on one thread and tokio's context guards must nest.
//!
//! # Caveats
//!
//! * A kill or `with_timeout` drops the future at the greenlet's park, on its thread (tokio's
//!   types may be dropped on any thread). A task started with [`spawn`] is not cancelled by
//!   dropping its `JoinHandle` (tokio's rule): call `abort`.
//! * As with tokio's own `block_on`, tokio resources must be created inside the future (an
//!   `async` block): `block_on(async { tokio::time::sleep(d).await })`. An argument such as
//!   `block_on(tokio::time::sleep(d))` is built before the runtime's context is entered, and
//!   tokio panics ("there is no reactor running").
//! * A future passed to [`block_on`] must not block green *inside* a poll (a `green::sleep` in an
//!   `async` block): another greenlet would enter the runtime's context meanwhile and tokio
//!   panics when the contexts are left out of order. Await tokio's sleep there instead, or block
//!   between two `block_on` calls.
//! * [`block_on`] panics when called from inside a tokio runtime context (an async task, or a
//!   future it is polling): from async code, `.await` the future, or hand blocking-style work to a
//!   hub thread ([`green_runtime::thread`]) and await its [`RemoteGreenlet`].
//! * A handle given to [`use_handle`] must belong to a multi-thread runtime, or to a current-thread
//!   runtime that some thread keeps driving (inside its `block_on`): nothing else drives its I/O.
//!
//! [`RemoteGreenlet`]: green_runtime::RemoteGreenlet

#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::{Mutex, OnceLock};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

/// Where the runtime comes from, until it is first used.
enum Source {
    Workers(usize),
    Handle(Handle),
}

/// The configuration; the handle is published (under this lock) when the runtime starts.
static SOURCE: Mutex<Option<Source>> = Mutex::new(None);
static HANDLE: OnceLock<Handle> = OnceLock::new();
/// The helper runtime green built, if it built one (never dropped: its threads serve the
/// process until it exits).
static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime was already started (or a handle was already in use): configuration comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyStarted;

impl fmt::Display for AlreadyStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("green's tokio runtime is already in use; configure it before the first use")
    }
}

impl std::error::Error for AlreadyStarted {}

fn configure(source: Source) -> Result<(), AlreadyStarted> {
    let mut current = SOURCE.lock().unwrap_or_else(|e| e.into_inner());
    if HANDLE.get().is_some() {
        return Err(AlreadyStarted);
    }
    *current = Some(source);
    Ok(())
}

/// Sets the number of worker threads of the runtime green starts (default 1). Call before the
/// first use of [`block_on`], [`spawn`] or [`handle`].
pub fn set_worker_threads(threads: usize) -> Result<(), AlreadyStarted> {
    configure(Source::Workers(threads.max(1)))
}

/// Makes green use the application's own runtime instead of starting one (see the caveats).
/// Call before the first use of [`block_on`], [`spawn`] or [`handle`].
pub fn use_handle(handle: Handle) -> Result<(), AlreadyStarted> {
    configure(Source::Handle(handle))
}

/// The runtime green uses, started on first use.
///
/// # Panics
///
/// If the runtime cannot be built (the OS refuses its threads or its epoll instance).
pub fn handle() -> Handle {
    if let Some(handle) = HANDLE.get() {
        return handle.clone();
    }
    let mut source = SOURCE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = HANDLE.get() {
        return handle.clone();
    }
    let handle = match source.take().unwrap_or(Source::Workers(1)) {
        Source::Handle(handle) => handle,
        Source::Workers(threads) => {
            let runtime = Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("green-tokio")
                .enable_all()
                .build()
                .expect("green: cannot start the tokio runtime");
            RUNTIME.get_or_init(|| runtime).handle().clone()
        }
    };
    HANDLE.get_or_init(|| handle).clone()
}

/// Runs `future` to completion on the current greenlet (or root context) inside the tokio
/// runtime's context, and returns its output; the greenlet waits on its hub, other greenlets run.
/// See the [crate docs](crate) for when to use it rather than `green::block_on`.
///
/// # Panics
///
/// When called from inside a tokio runtime context, or where `green::block_on` panics (from
/// inside a future it polls, from a hub callback).
pub fn block_on<F: Future>(future: F) -> F::Output {
    if Handle::try_current().is_ok() {
        panic!(
            "green::tokio::block_on called from inside a tokio runtime context (an async task, a \
             future being polled, or a Handle::enter scope): .await the future there instead, or \
             run blocking-style code on a hub thread (green::spawn_hub / green::HubPool) and \
             await its RemoteGreenlet"
        );
    }
    let handle = handle();
    let mut future = pin!(future);
    green_runtime::block_on(poll_fn(|cx| {
        let _context = handle.enter();
        future.as_mut().poll(cx)
    }))
}

/// Spawns `future` on the runtime's threads (tokio's `Handle::spawn`). Its `JoinHandle` is a
/// future: await it from a greenlet with [`block_on`] or `green::block_on`.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(future)
}
