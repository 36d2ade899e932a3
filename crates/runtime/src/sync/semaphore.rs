//! [`Semaphore`] and [`BoundedSemaphore`]: at most N holders at once (gevent's).

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

use super::{deadlock, Position, WaitQueue};
use crate::hub::{self, LoopExit};

/// A counter of permits; acquiring blocks while none is left (gevent's `Semaphore`).
///
/// Waiters are served in FIFO order: a released permit goes to the first waiter, never to a
/// newcomer. A permit is a guard that releases it on drop; [`SemaphorePermit::forget`] keeps it
/// taken and [`release`](Semaphore::release) adds one, gevent-style. Share a semaphore between
/// greenlets through an `Rc`.
///
/// ```
/// use green_runtime::sync::Semaphore;
///
/// let semaphore = Semaphore::new(1);
/// let permit = semaphore.acquire();
/// assert!(semaphore.try_acquire().is_none());
/// drop(permit);
/// assert_eq!(semaphore.available(), 1);
/// ```
pub struct Semaphore {
    permits: Cell<usize>,
    waiters: WaitQueue,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.available())
            .field("waiters", &self.waiting())
            .finish()
    }
}

/// A permit of a [`Semaphore`] (or [`BoundedSemaphore`]), given back when dropped.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct SemaphorePermit<'a> {
    semaphore: &'a Semaphore,
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}

impl SemaphorePermit<'_> {
    /// Keeps the permit taken without a guard; give it back with [`Semaphore::release`].
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.semaphore.add_permit();
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            permits: Cell::new(permits),
            waiters: WaitQueue::default(),
        }
    }

    /// The permits free now (gevent's `counter`). Permits handed to a woken waiter that has not
    /// run yet are not free.
    pub fn available(&self) -> usize {
        self.permits.get()
    }

    /// The number of greenlets (or root contexts) blocked in `acquire`.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Takes a permit, blocking while none is free.
    ///
    /// # Panics
    ///
    /// From a root context, if nothing could ever release one (the [`LoopExit`] deadlock).
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        match self.acquire_until(None) {
            Ok(Some(permit)) => permit,
            Ok(None) => unreachable!("an acquire without a deadline cannot time out"),
            Err(exit) => deadlock(exit),
        }
    }

    /// Takes a permit, waiting at most `timeout`; `None` if none came free.
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        self.acquire_until(Some(hub::deadline_after(timeout)))
            .unwrap_or_else(|exit| deadlock(exit))
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        let permits = self.permits.get();
        if permits == 0 {
            return None;
        }
        self.permits.set(permits - 1);
        Some(SemaphorePermit { semaphore: self })
    }

    /// Adds a permit (after [`SemaphorePermit::forget`]), waking the first waiter. An unbounded
    /// semaphore accepts any number of releases; see [`BoundedSemaphore`].
    pub fn release(&self) {
        self.add_permit();
    }

    pub(crate) fn acquire_until(
        &self,
        deadline: Option<u64>,
    ) -> Result<Option<SemaphorePermit<'_>>, LoopExit> {
        if let Some(permit) = self.try_acquire() {
            return Ok(Some(permit));
        }
        let granted = self
            .waiters
            .wait(deadline, Position::Back, || self.add_permit())?;
        Ok(granted.then(|| SemaphorePermit { semaphore: self }))
    }

    /// Gives a permit to the first waiter (it stays taken), or makes it free.
    fn add_permit(&self) {
        if !self.waiters.grant_one() {
            self.permits.set(self.permits.get() + 1);
        }
    }
}

/// A [`Semaphore`] that refuses to be released more times than it was acquired (gevent's
/// `BoundedSemaphore`, which raises `ValueError`).
///
/// Over-releasing is a bug in the caller's bookkeeping, reported as an error rather than a panic
/// so the caller decides: [`release`](BoundedSemaphore::release) returns [`OverRelease`] and
/// changes nothing.
pub struct BoundedSemaphore {
    semaphore: Semaphore,
    bound: usize,
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("available", &self.available())
            .field("bound", &self.bound)
            .field("waiters", &self.waiting())
            .finish()
    }
}

/// [`BoundedSemaphore::release`] was called with every permit already free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverRelease {
    /// The semaphore's initial (and maximal) number of permits.
    pub bound: usize,
}

impl fmt::Display for OverRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BoundedSemaphore released too many times: all {} permits are already free",
            self.bound
        )
    }
}

impl std::error::Error for OverRelease {}

impl BoundedSemaphore {
    /// A semaphore with `permits` permits, never more.
    pub fn new(permits: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            semaphore: Semaphore::new(permits),
            bound: permits,
        }
    }

    /// The permits free now.
    pub fn available(&self) -> usize {
        self.semaphore.available()
    }

    /// The number of greenlets (or root contexts) blocked in `acquire`.
    pub fn waiting(&self) -> usize {
        self.semaphore.waiting()
    }

    /// See [`Semaphore::acquire`].
    ///
    /// # Panics
    ///
    /// From a root context, if nothing could ever release a permit (the [`LoopExit`] deadlock).
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.semaphore.acquire()
    }

    /// See [`Semaphore::acquire_timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        self.semaphore.acquire_timeout(timeout)
    }

    /// See [`Semaphore::try_acquire`].
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.semaphore.try_acquire()
    }

    /// Gives back a permit kept with [`SemaphorePermit::forget`].
    ///
    /// # Errors
    ///
    /// [`OverRelease`] if every permit is already free; nothing changes then.
    pub fn release(&self) -> Result<(), OverRelease> {
        if self.semaphore.available() >= self.bound {
            return Err(OverRelease { bound: self.bound });
        }
        self.semaphore.release();
        Ok(())
    }
}
