//! Timeouts that abort any blocking code: [`with_timeout`] and the [`Timeout`] object (gevent's
//! `Timeout`, `Timeout.start_new` and `with Timeout(...)`).
//!
//! A timeout is a hub timer that throws into the context that started it: its current (or next)
//! blocking call unwinds with a private payload carrying the timeout's id, and only the code that
//! owns that id ([`Timeout::run`], [`with_timeout`], [`Timeout::is_own`]) catches it. An inner
//! scope therefore never swallows an outer one's expiry, and a timeout that is cancelled or whose
//! scope ends withdraws its timer and any throw of its own still pending, so nothing fires late.
//!
//! Several timeouts of one context may expire in the same hub turn (the thread was busy past
//! both deadlines): each lands, in the order its timer fired, one per blocking point, as gevent
//! delivers each `Timeout` from its own timer. See `Core::set_throw` for the bookkeeping.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::greenlet::TaskRef;
use crate::hub::{self, TimerAction, TimerGuard};

/// The unwind payload of an expired [`Timeout`] (or [`with_timeout`] scope).
#[derive(Debug)]
pub(crate) struct TimeoutUnwind {
    pub(crate) id: u64,
}

/// The deadline of a [`with_timeout`] scope or [`Timeout`] passed before its closure returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, Elapsed)
    }
}

/// A started timeout (gevent's `Timeout.start_new`): when `duration` passes, the blocking call
/// the starting context is in (or makes next) unwinds. Dropping it, or [`cancel`](Timeout::cancel),
/// withdraws it.
///
/// ```
/// use std::time::Duration;
/// use green_runtime::{Elapsed, Timeout};
///
/// let timeout = Timeout::start(Duration::from_millis(10));
/// let result = timeout.run(|| green_runtime::sleep(Duration::from_secs(10)));
/// assert_eq!(result, Err(Elapsed));
/// ```
///
/// The expiry is an unwind, caught by identity: [`Timeout::run`] (gevent's `with Timeout(...)`)
/// turns this timeout's expiry into `Err(Elapsed)` and lets any other timeout's pass through, and
/// [`Timeout::is_own`] tells a payload caught by hand with `catch_unwind`.
///
/// # Caveats
///
/// * gevent's `Timeout` can raise an exception of the caller's choosing; this one always unwinds
///   with its own payload (use `run`'s `Err(Elapsed)` to map it).
/// * Code that never blocks or yields cannot be interrupted, as in gevent.
/// * Not `Send`: a timeout belongs to the context (greenlet or root) that started it, on its
///   thread. Started in a root context, its timer is pending work like a `sleep`: it is not
///   counted as a deadlock's "only its own timer" (see `green_runtime::sync`'s deadlock policy).
pub struct Timeout {
    id: u64,
    task: TaskRef,
    timer: Cell<Option<TimerGuard>>,
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("id", &self.id)
            .field("pending", &self.is_pending())
            .finish()
    }
}

impl Timeout {
    /// Starts a timeout for the running context (greenlet or root) that expires after `duration`.
    pub fn start(duration: Duration) -> Timeout {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let deadline = hub::deadline_after(duration);
        hub::with(|hub| {
            let task = hub.current_task();
            let key = hub.add_timer(deadline, TimerAction::Throw(task.clone(), id));
            Timeout {
                id,
                task,
                timer: Cell::new(Some(TimerGuard { key })),
            }
        })
    }

    /// Whether the timer is still armed (it has neither fired nor been cancelled).
    pub fn is_pending(&self) -> bool {
        let timer = self.timer.take();
        let pending = timer
            .as_ref()
            .is_some_and(|timer| hub::with(|hub| hub.timer_is_armed(timer.key)));
        self.timer.set(timer);
        pending
    }

    /// Withdraws the timeout: its timer is disarmed, and an expiry not yet delivered never is.
    /// Cancelling twice does nothing.
    pub fn cancel(&self) {
        let timer = self.timer.take();
        drop(timer);
        let _ = hub::try_with(|hub| hub.clear_timeout_throw(&self.task, self.id));
    }

    /// Runs `f`, then cancels the timeout (gevent's `with Timeout(...)`): `Err(Elapsed)` if this
    /// timeout expired inside `f`. Another timeout's expiry, a kill or a panic unwinds on.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, Elapsed> {
        let result = catch_unwind(AssertUnwindSafe(f));
        self.cancel();
        // The expiry was caught in a C-ABI hook (see `foreign`), which made its call fail instead.
        let deferred = crate::foreign::take_deferred_timeout(self.id);
        match result {
            Ok(_) if deferred => Err(Elapsed),
            Ok(value) => Ok(value),
            Err(payload) if self.is_own(payload.as_ref()) => Err(Elapsed),
            Err(payload) => resume_unwind(payload),
        }
    }

    /// Whether an unwind payload (from `catch_unwind`) is this timeout's expiry.
    pub fn is_own(&self, payload: &(dyn Any + Send)) -> bool {
        payload
            .downcast_ref::<TimeoutUnwind>()
            .is_some_and(|expired| expired.id == self.id)
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Runs `f`, aborting it if it is still running after `timeout`: whatever blocking call it is in
/// (or makes next) unwinds, its destructors run, and `Err(Elapsed)` is returned. Code that never
/// blocks or yields cannot be interrupted. Works in greenlets and in root contexts. The same as
/// `Timeout::start(timeout).run(f)`.
///
/// ```
/// use std::time::Duration;
/// use green_runtime::{sleep, with_timeout, Elapsed};
///
/// // Finishes in time: its value.
/// assert_eq!(with_timeout(Duration::from_secs(5), || 42), Ok(42));
///
/// // Still sleeping at the deadline: the sleep unwinds and the call returns `Elapsed`.
/// let slow = with_timeout(Duration::from_millis(20), || {
///     sleep(Duration::from_secs(10));
///     "never"
/// });
/// assert_eq!(slow, Err(Elapsed));
/// ```
pub fn with_timeout<T>(timeout: Duration, f: impl FnOnce() -> T) -> Result<T, Elapsed> {
    Timeout::start(timeout).run(f)
}
