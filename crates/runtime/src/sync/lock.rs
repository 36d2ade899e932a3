//! [`Lock`] (a green mutex) and [`RLock`] (reentrant), both a [`Semaphore`] of one permit.
//!
//! Neither poisons. std's `Mutex` poisons when a guard is dropped while
//! `std::thread::panicking()`, but that flag is per thread, not per greenlet: while any greenlet
//! on the thread is suspended mid-unwind (a destructor doing green I/O during a kill), every other
//! greenlet sees `panicking() == true`, so poisoning would blame innocent holders. A guard dropped
//! by a panicking or killed greenlet simply unlocks.

use std::cell::{Cell, RefCell, RefMut};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use super::deadlock;
use super::semaphore::{Semaphore, SemaphorePermit};
use crate::hub::{self, LoopExit};

/// A green mutex protecting a `T`: `lock` blocks the greenlet, not the thread (gevent's `Lock`
/// with the data inside, like std's `Mutex`).
///
/// Waiting greenlets get the lock in FIFO order: an unlock hands it to the first waiter, never to
/// a newcomer. It does not poison (see the module docs). Share it through an `Rc`.
///
/// ```
/// use std::rc::Rc;
/// use green_runtime::sync::Lock;
///
/// let total = Rc::new(Lock::new(0));
/// let adders: Vec<_> = (0..3)
///     .map(|_| {
///         let total = total.clone();
///         green_runtime::spawn(move || {
///             let mut guard = total.lock();
///             let seen = *guard;
///             green_runtime::yield_now(); // others block on the lock meanwhile
///             *guard = seen + 1;
///         })
///     })
///     .collect();
/// green_runtime::joinall(adders);
/// assert_eq!(*total.lock(), 3);
/// ```
pub struct Lock<T> {
    semaphore: Semaphore,
    value: RefCell<T>,
}

/// Access to a [`Lock`]'s value; unlocks when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a, T> {
    // Dropped in declaration order: the borrow ends before the lock passes to the next holder.
    value: RefMut<'a, T>,
    _permit: SemaphorePermit<'a>,
}

impl<T: fmt::Debug> fmt::Debug for Lock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Lock");
        match self.value.try_borrow() {
            Ok(value) if !self.is_locked() => d.field("value", &*value),
            _ => d.field("value", &format_args!("<locked>")),
        };
        d.field("waiters", &self.semaphore.waiting()).finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for LockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}

impl<T: Default> Default for Lock<T> {
    fn default() -> Self {
        Lock::new(T::default())
    }
}

impl<T> Lock<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> Lock<T> {
        Lock {
            semaphore: Semaphore::new(1),
            value: RefCell::new(value),
        }
    }

    /// Locks, blocking while another greenlet (or root context) holds the lock. Locking a lock
    /// the caller already holds blocks forever (use [`RLock`] for reentrancy).
    ///
    /// # Panics
    ///
    /// From a root context, if nothing could ever unlock it (the [`LoopExit`] deadlock).
    pub fn lock(&self) -> LockGuard<'_, T> {
        self.guard(self.semaphore.acquire())
    }

    /// Locks, waiting at most `timeout`; `None` if the lock stayed taken.
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn lock_timeout(&self, timeout: Duration) -> Option<LockGuard<'_, T>> {
        self.semaphore
            .acquire_timeout(timeout)
            .map(|permit| self.guard(permit))
    }

    /// Locks if the lock is free now.
    pub fn try_lock(&self) -> Option<LockGuard<'_, T>> {
        self.semaphore
            .try_acquire()
            .map(|permit| self.guard(permit))
    }

    /// Whether the lock is held (or handed to a woken waiter that has not run yet).
    pub fn is_locked(&self) -> bool {
        self.semaphore.available() == 0
    }

    /// The value, without locking: `&mut self` proves no guard exists.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// Consumes the lock and returns the value.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }

    fn guard<'a>(&'a self, permit: SemaphorePermit<'a>) -> LockGuard<'a, T> {
        LockGuard {
            value: self.value.borrow_mut(),
            _permit: permit,
        }
    }
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

/// A reentrant lock: the greenlet (or root context) holding it may lock it again (gevent's
/// `RLock`). Guards give shared access to the `T` (wrap it in a `RefCell` to mutate), because
/// one holder may have several guards at once. Like [`Lock`], FIFO and never poisoned.
///
/// The owner is the greenlet that locked it; a guard must be dropped by the greenlet that made it.
///
/// ```
/// use green_runtime::sync::RLock;
///
/// let lock = RLock::new(());
/// let outer = lock.lock();
/// let inner = lock.lock(); // same greenlet: does not block
/// drop((inner, outer));
/// assert!(!lock.is_locked());
/// ```
pub struct RLock<T> {
    semaphore: Semaphore,
    owner: Cell<Option<u64>>,
    depth: Cell<usize>,
    value: T,
}

/// Shared access to an [`RLock`]'s value; unlocks one level when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a, T> {
    lock: &'a RLock<T>,
}

impl<T: fmt::Debug> fmt::Debug for RLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("value", &self.value)
            .field("owner", &self.owner.get())
            .field("depth", &self.depth.get())
            .field("waiters", &self.semaphore.waiting())
            .finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for RLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.lock.value, f)
    }
}

impl<T: Default> Default for RLock<T> {
    fn default() -> Self {
        RLock::new(T::default())
    }
}

impl<T> RLock<T> {
    /// An unlocked reentrant lock holding `value`.
    pub fn new(value: T) -> RLock<T> {
        RLock {
            semaphore: Semaphore::new(1),
            owner: Cell::new(None),
            depth: Cell::new(0),
            value,
        }
    }

    /// Locks, blocking while another greenlet (or root context) holds the lock; returns at once
    /// if the caller holds it already.
    ///
    /// # Panics
    ///
    /// From a root context, if nothing could ever unlock it (the [`LoopExit`] deadlock).
    pub fn lock(&self) -> RLockGuard<'_, T> {
        self.lock_until(None)
            .unwrap_or_else(|exit| deadlock(exit))
            .expect("a lock without a deadline cannot time out")
    }

    /// Locks, waiting at most `timeout`; `None` if another holder kept it.
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn lock_timeout(&self, timeout: Duration) -> Option<RLockGuard<'_, T>> {
        self.lock_until(Some(hub::deadline_after(timeout)))
            .unwrap_or_else(|exit| deadlock(exit))
    }

    /// Locks if the lock is free or held by the caller.
    pub fn try_lock(&self) -> Option<RLockGuard<'_, T>> {
        if self.owned_by_caller() {
            return Some(self.enter());
        }
        let permit = self.semaphore.try_acquire()?;
        Some(self.take(permit))
    }

    /// Whether some greenlet (or root context) holds the lock.
    pub fn is_locked(&self) -> bool {
        self.semaphore.available() == 0
    }

    /// Consumes the lock and returns the value.
    pub fn into_inner(self) -> T {
        self.value
    }

    fn lock_until(&self, deadline: Option<u64>) -> Result<Option<RLockGuard<'_, T>>, LoopExit> {
        if self.owned_by_caller() {
            return Ok(Some(self.enter()));
        }
        let permit = self.semaphore.acquire_until(deadline)?;
        Ok(permit.map(|permit| self.take(permit)))
    }

    fn owned_by_caller(&self) -> bool {
        self.owner.get() == Some(crate::greenlet::current().id())
    }

    fn take(&self, permit: SemaphorePermit<'_>) -> RLockGuard<'_, T> {
        permit.forget();
        self.owner.set(Some(crate::greenlet::current().id()));
        self.enter()
    }

    fn enter(&self) -> RLockGuard<'_, T> {
        self.depth.set(self.depth.get() + 1);
        RLockGuard { lock: self }
    }
}

impl<T> Deref for RLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.lock.value
    }
}

impl<T> Drop for RLockGuard<'_, T> {
    fn drop(&mut self) {
        let depth = self.lock.depth.get() - 1;
        self.lock.depth.set(depth);
        if depth == 0 {
            self.lock.owner.set(None);
            self.lock.semaphore.release();
        }
    }
}
