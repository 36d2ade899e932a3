//! [`Event`]: a flag that greenlets wait on (gevent's `Event`).

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use super::{deadlock, TicketQueue};
use crate::hub::{self, LoopExit};

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

/// A set grants every waiter at once; a waiter the list no longer holds was set after its wait
/// began (see [`TicketQueue`]).
#[derive(Default)]
struct Inner {
    flag: Cell<bool>,
    waiters: TicketQueue,
}

// Unwind safety: an event's flag and waiter list are only changed by its own methods, which run
// no user code, so a caught panic cannot leave them half-updated.
impl std::panic::UnwindSafe for Event {}
impl std::panic::RefUnwindSafe for Event {}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .field("waiters", &self.inner.waiters.len())
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
        self.inner.flag.set(true);
        self.inner.waiters.grant_all();
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
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
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
        self.inner
            .waiters
            .wait(deadline, |_| {})
            .map(|granted| granted.is_some())
    }
}
