//! [`Event`]: a flag that greenlets wait on (gevent's `Event`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use super::deadlock;
use crate::hub::{self, LoopExit, Waiter, WaiterKey};

/// A flag that greenlets wait on; [`set`](Event::set) wakes every waiter (gevent's `Event`).
///
/// A cloneable handle: clones share one flag. A waiter returns `true` once the event has been set
/// after its wait began, even if it was cleared again before the waiter ran (a `set` then `clear`
/// wakes everyone already waiting, like Python's `threading.Event`).
///
/// ```
/// use green_runtime::sync::Event;
///
/// let ready = Event::new();
/// let waiter = {
///     let ready = ready.clone();
///     green_runtime::spawn(move || ready.wait())
/// };
/// ready.set();
/// assert!(waiter.join().unwrap());
/// ```
#[derive(Clone, Default)]
pub struct Event {
    inner: Rc<Inner>,
}

/// An event has nothing to grant, only news to spread, so it needs no wait queue: its waiters
/// are a list that `set` empties, waking each, and a count of sets tells a waiter whether a set
/// came after its wait began.
#[derive(Default)]
struct Inner {
    flag: Cell<bool>,
    /// How many times the event has been set.
    sets: Cell<u64>,
    /// The contexts waiting, in the order they began; each leaves by itself only when its wait
    /// ends without a set (timeout, kill).
    waiters: RefCell<Vec<Waiter>>,
}

/// Takes a waiter out of the list when its wait ends without a set (also while unwinding).
struct Leave<'a> {
    inner: &'a Inner,
    key: WaiterKey,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut waiters = self.inner.waiters.borrow_mut();
        if let Some(index) = waiters.iter().position(|w| w.key() == self.key) {
            let waiter = waiters.remove(index);
            drop(waiters);
            drop(waiter);
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .field("waiters", &self.inner.waiters.borrow().len())
            .finish()
    }
}

impl Event {
    /// A new, clear event.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the flag and wakes every waiter.
    #[inline(always)]
    pub fn set(&self) {
        let inner = &*self.inner;
        inner.flag.set(true);
        inner.sets.set(inner.sets.get() + 1);
        let mut waiters = inner.waiters.borrow_mut();
        if waiters.is_empty() {
            return;
        }
        // Every waiter is parked and alive (held by its coroutine or its hub), so dropping these
        // references runs no destructor that could touch this event.
        hub::with(|hub| {
            if waiters.len() == 1 {
                // The usual case, without `Drain`'s bookkeeping.
                if let Some(waiter) = waiters.pop() {
                    waiter.wake_into(hub);
                }
            } else {
                waiters.drain(..).for_each(|waiter| waiter.wake_into(hub));
            }
        });
    }

    /// Clears the flag; later waits block until the next [`set`](Event::set).
    #[inline]
    pub fn clear(&self) {
        self.inner.flag.set(false);
    }

    /// Whether the flag is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.inner.flag.get()
    }

    /// Blocks until the event is set; returns `true` (gevent returns the flag). Returns at once
    /// if it is already set.
    ///
    /// # Panics
    ///
    /// From a root context, if nothing could ever set it (the [`LoopExit`] deadlock).
    #[inline(always)]
    pub fn wait(&self) -> bool {
        self.wait_until(None).unwrap_or_else(|exit| deadlock(exit))
    }

    /// Blocks at most `timeout`; `false` if the event was not set in time.
    #[inline]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(hub::deadline_after(timeout)))
            .unwrap_or_else(|exit| deadlock(exit))
    }

    #[inline(always)]
    fn wait_until(&self, deadline: Option<u64>) -> Result<bool, LoopExit> {
        if self.is_set() {
            return Ok(true);
        }
        let inner = &*self.inner;
        let start = inner.sets.get();
        let waiter = hub::current_waiter();
        let mut leave = Leave {
            inner,
            key: waiter.key(),
        };
        inner.waiters.borrow_mut().push(waiter);
        loop {
            let parked = match deadline {
                None => hub::park().map(|()| false),
                Some(_) => hub::park_until(deadline),
            };
            if inner.sets.get() != start {
                // `set` took this waiter out of the list as it woke it.
                std::mem::forget(leave);
                return Ok(true);
            }
            if parked? {
                return Ok(false);
            }
            // Woken without a set (a deferred throw's retry): wait again with a fresh waiter.
            let fresh = hub::current_waiter();
            let fresh_key = fresh.key();
            let stale = {
                let mut waiters = inner.waiters.borrow_mut();
                match waiters.iter_mut().find(|w| w.key() == leave.key) {
                    Some(slot) => Some(std::mem::replace(slot, fresh)),
                    None => {
                        waiters.push(fresh);
                        None
                    }
                }
            };
            drop(stale);
            leave.key = fresh_key;
        }
    }
}
