//! `with_timeout`: abort any blocking code after a deadline (gevent's `Timeout`).
//!
//! The deadline is a hub timer that throws into the greenlet: its current (or next) blocking call
//! unwinds with a private payload carrying the scope's id, and `with_timeout` catches exactly its
//! own id. An inner scope therefore never swallows an outer one's expiry, and a scope that ends
//! cancels its timer and any throw of its own still pending, so nothing fires late.

use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::greenlet::TaskRef;
use crate::hub::{self, TimerAction, TimerGuard};

/// The unwind payload of an expired [`with_timeout`] scope.
#[derive(Debug)]
pub(crate) struct TimeoutUnwind {
    pub(crate) id: u64,
}

/// The deadline of a [`with_timeout`] scope passed before its closure returned.
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

struct ScopeGuard {
    timer: TimerGuard,
    task: TaskRef,
    id: u64,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        self.task.core().clear_timeout_throw(self.id);
        let _ = &self.timer;
    }
}

/// Runs `f`, aborting it if it is still running after `timeout`: whatever blocking call it is in
/// (or makes next) unwinds, its destructors run, and `Err(Elapsed)` is returned. Code that never
/// blocks or yields cannot be interrupted. Works in greenlets and in root contexts.
pub fn with_timeout<T>(timeout: Duration, f: impl FnOnce() -> T) -> Result<T, Elapsed> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let deadline = hub::deadline_after(timeout);
    let guard = hub::with(|hub| {
        let task = hub.current_task();
        let key = hub.add_timer(deadline, TimerAction::Throw(task.clone(), id));
        ScopeGuard {
            timer: TimerGuard { key },
            task,
            id,
        }
    });
    let result = catch_unwind(AssertUnwindSafe(f));
    drop(guard);
    // The expiry was caught in a C-ABI hook (see `foreign`), which made its call fail instead.
    let deferred = crate::foreign::take_deferred_timeout(id);
    match result {
        Ok(_) if deferred => Err(Elapsed),
        Ok(value) => Ok(value),
        Err(payload) => match payload.downcast::<TimeoutUnwind>() {
            Ok(timeout) if timeout.id == id => Err(Elapsed),
            Ok(other) => resume_unwind(other),
            Err(payload) => resume_unwind(payload),
        },
    }
}
