//! Green waits for code reached through a C ABI frame: libc hooks (crate `green-patch`) and
//! other `extern "C"` callers.
//!
//! A kill or timeout normally unwinds from the greenlet's blocking point. Unwinding out of an
//! `extern "C"` function aborts the process, so a hook that blocks green runs its wait inside
//! [`catch_throw`]: a kill or timeout that lands there is caught before the C boundary, the hooked
//! call fails (the hook picks the errno), and the throw is kept pending so that it lands at the
//! greenlet's next green switch point instead — or, if there is none, at the end of its
//! `with_timeout` scope (which then returns `Elapsed`) or when the greenlet returns (which then
//! ends `Killed`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::greenlet::{GreenletExit, Throw};
use crate::timeout::TimeoutUnwind;

/// Why [`catch_throw`] did not return its closure's value.
#[derive(Debug)]
pub enum Caught {
    /// A `with_timeout` scope's deadline passed; it stays pending for the scope.
    TimedOut,
    /// The greenlet was killed; the kill stays pending.
    Killed,
    /// The closure panicked (a bug): the payload, to report (it cannot unwind through C).
    Panicked(Box<dyn Any + Send>),
}

thread_local! {
    /// Timeouts (by scope id) caught by [`catch_throw`] and not yet seen by their scope.
    static DEFERRED_TIMEOUTS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Whether `DEFERRED_TIMEOUTS` may be non-empty (checked without borrowing it).
    static ANY_DEFERRED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling code runs inside a greenlet (not a root context, not a thread without a
/// hub). Never creates a hub; safe to call from any thread, at any time.
#[inline(always)]
pub fn in_greenlet() -> bool {
    crate::greenlet::running_core_is_set()
}

/// Runs `f`, turning a kill or timeout that unwinds out of it into [`Caught`] and keeping that
/// throw pending for the greenlet's next switch point (see the module docs). Any other panic is
/// returned as [`Caught::Panicked`].
pub fn catch_throw<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    crate::hub::with(|hub| hub.monitor_patched_wait(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    crate::hub::with(|hub| hub.monitor_patched_wait(false));
    let payload = match outcome {
        Ok(value) => return Ok(value),
        Err(payload) => payload,
    };
    let payload = match payload.downcast::<TimeoutUnwind>() {
        Ok(timeout) => {
            DEFERRED_TIMEOUTS.with(|deferred| deferred.borrow_mut().push(timeout.id));
            ANY_DEFERRED.with(|any| any.set(true));
            repend(Throw::Timeout(timeout.id));
            return Err(Caught::TimedOut);
        }
        Err(payload) => payload,
    };
    if payload.downcast_ref::<GreenletExit>().is_some() {
        repend(Throw::Kill);
        return Err(Caught::Killed);
    }
    Err(Caught::Panicked(payload))
}

/// Records `throw` again for the running context, without waking anything: it is delivered at
/// its next park or yield.
fn repend(throw: Throw) {
    crate::hub::with(|hub| {
        hub.current_task().core().put_back_throw(throw);
    });
}

/// Whether the timeout of the scope `id` was caught by [`catch_throw`] (and forgets it): the
/// scope then reports `Elapsed` even though its closure returned.
pub(crate) fn take_deferred_timeout(id: u64) -> bool {
    if !ANY_DEFERRED.with(Cell::get) {
        return false;
    }
    DEFERRED_TIMEOUTS.with(|deferred| {
        let mut deferred = deferred.borrow_mut();
        let found = deferred.iter().position(|&pending| pending == id);
        if let Some(index) = found {
            deferred.swap_remove(index);
        }
        ANY_DEFERRED.with(|any| any.set(!deferred.is_empty()));
        found.is_some()
    })
}

/// Readiness of one fd that [`wait_any`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdInterest {
    /// The fd.
    pub fd: RawFd,
    /// Its owner, as in [`wait_fd`] (0: unknown, trust any registration of the number).
    pub source: u64,
    /// Wait for it to become readable.
    pub readable: bool,
    /// Wait for it to become writable.
    pub writable: bool,
}

/// Blocks the current greenlet until any of `fds` may be ready in a direction asked for, or
/// `deadline` passes (`ErrorKind::TimedOut`). Like [`wait_readable`](crate::wait_readable), a
/// return means "maybe ready": check with a non-blocking call. Fails with
/// `ErrorKind::ResourceBusy` if another greenlet already waits on one of them in the same
/// direction, and with the registration's error for an fd epoll refuses (a regular file).
pub fn wait_any(fds: &[FdInterest], deadline: Option<Instant>) -> io::Result<()> {
    let deadline = deadline.map(|d| crate::hub::with(|hub| hub.nanos_at(d)));
    crate::hub::with(|hub| hub.io.wait_any(fds, deadline))
}

/// [`wait_readable`](crate::wait_readable) / [`wait_writable`](crate::wait_writable) for an fd
/// whose owner is identified by `source` (non-zero): a registration of the same fd number by
/// another owner (a closed fd whose number was reused) is replaced rather than trusted.
pub fn wait_fd(
    fd: RawFd,
    source: u64,
    readable: bool,
    deadline: Option<Instant>,
) -> io::Result<()> {
    crate::hub::io::wait_source(fd, source, readable, deadline)
}
