//! gevent's synchronisation toolkit, green-blocking: [`Event`], [`AsyncResult`], the queues
//! ([`Queue`], [`PriorityQueue`], [`LifoQueue`], all joinable), [`Channel`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Lock`] and [`RLock`].
//!
//! ```
//! use green_runtime::sync::Queue;
//!
//! let queue = Queue::bounded(2);
//! let producer = {
//!     let queue = queue.clone();
//!     green_runtime::spawn(move || (1..=5).for_each(|i| queue.put(i)))
//! };
//! let got: Vec<i32> = (0..5).map(|_| queue.get()).collect();
//! producer.join().unwrap();
//! assert_eq!(got, [1, 2, 3, 4, 5]);
//! ```
//!
//! Everything here is hub-local (`Rc`/`Cell` inside, not `Send`) and works the same from a
//! greenlet and from a root context (the main thread, a plain thread), which runs the hub while it
//! waits. The communication objects ([`Event`], [`AsyncResult`], the queues, [`Channel`]) are
//! cheap cloneable handles to shared state, as in gevent where one object is passed to many
//! greenlets; [`Semaphore`], [`Lock`] and [`RLock`] own their state like std's `Mutex` (share them
//! through an `Rc`), because their guards borrow them.
//!
//! # Blocking, timeouts and deadlock
//!
//! Every wait has a `_timeout` variant (and a `try_` one where gevent has `block=False`). A
//! blocking call without a timeout made from a root context when nothing else could ever wake it
//! (no greenlet ready, no timer, no I/O) panics with the [`LoopExit`] message, as gevent raises
//! `LoopExit`; a `_timeout` variant never deadlocks (its own timer is pending) and simply times
//! out.
//!
//! # Implementation: grants
//!
//! Written here rather than taken from a crate because each must park on the hub's
//! [`Waiter`]s, and async crates' primitives block futures, not greenlets.
//!
//! Waiters queue in FIFO order. A resource that becomes available (an item, a free slot, a permit,
//! the lock) is *granted* to the first waiter: it is reserved for that waiter, which is woken and
//! takes it when it next runs; newcomers only take what is not reserved, so waiters are served in
//! order. The resource itself never leaves the primitive until its waiter runs, so a waiter that is
//! killed or times out (by `with_timeout`) between the grant and running cannot lose it: its drop
//! guard passes the grant on to the next waiter. A waiter whose own timeout passes keeps a grant
//! that arrived in the same instant (the call succeeds), so a timed-out call never consumes
//! anything later.

mod async_result;
mod channel;
mod event;
mod lock;
mod queue;
mod semaphore;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

pub use async_result::{AsyncError, AsyncResult};
pub use channel::Channel;
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use queue::{
    Fifo, GenericQueue, Lifo, LifoQueue, Priority, PriorityQueue, Queue, Storage, TaskDoneError,
};
pub use semaphore::{BoundedSemaphore, OverRelease, Semaphore, SemaphorePermit};

use crate::hub::{self, LoopExit, Waiter};

/// Panics with a root context's deadlock error (gevent's `LoopExit`).
fn deadlock(exit: LoopExit) -> ! {
    panic!("{exit}")
}

/// One waiting context in a [`WaitQueue`].
struct Entry {
    waiter: RefCell<Waiter>,
    granted: Cell<bool>,
}

/// Where a waiter joins a [`WaitQueue`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    Back,
    /// A waiter that was granted something that vanished before it ran keeps its turn.
    Front,
}

/// FIFO waiters, each woken by a grant (see the module docs).
#[derive(Default)]
struct WaitQueue {
    entries: RefCell<VecDeque<Rc<Entry>>>,
}

impl WaitQueue {
    /// Waiters not yet granted.
    fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Grants the first waiter, if any, and wakes it.
    fn grant_one(&self) -> bool {
        let first = self.entries.borrow_mut().pop_front();
        match first {
            Some(entry) => {
                entry.granted.set(true);
                entry.waiter.borrow().wake();
                true
            }
            None => false,
        }
    }

    /// Grants and wakes every waiter.
    fn grant_all(&self) {
        let entries = std::mem::take(&mut *self.entries.borrow_mut());
        for entry in entries {
            entry.granted.set(true);
            entry.waiter.borrow().wake();
        }
    }

    /// Waits for a grant until `deadline`: `Ok(true)` if granted (even if the deadline passed in
    /// the same instant), `Ok(false)` on timeout. If the caller unwinds (kill, `with_timeout`)
    /// after being granted, `abandon` runs to hand the grant back; otherwise it is dropped.
    fn wait(
        &self,
        deadline: Option<u64>,
        position: Position,
        abandon: impl FnOnce(),
    ) -> Result<bool, LoopExit> {
        let entry = Rc::new(Entry {
            waiter: RefCell::new(hub::current_waiter()),
            granted: Cell::new(false),
        });
        match position {
            Position::Back => self.entries.borrow_mut().push_back(entry.clone()),
            Position::Front => self.entries.borrow_mut().push_front(entry.clone()),
        }
        let mut pending = Pending {
            queue: self,
            entry,
            abandon: Some(abandon),
        };
        loop {
            let result = hub::park_until(deadline);
            if pending.entry.granted.get() {
                pending.abandon = None;
                return Ok(true);
            }
            if result? {
                return Ok(false);
            }
            // Woken by something else (a deferred throw's retry): wait again with a fresh waiter.
            *pending.entry.waiter.borrow_mut() = hub::current_waiter();
        }
    }
}

/// Leaves the queue when a wait ends without a grant, or hands an unused grant back.
struct Pending<'a, F: FnOnce()> {
    queue: &'a WaitQueue,
    entry: Rc<Entry>,
    abandon: Option<F>,
}

impl<F: FnOnce()> Drop for Pending<'_, F> {
    fn drop(&mut self) {
        if self.entry.granted.get() {
            if let Some(abandon) = self.abandon.take() {
                abandon();
            }
        } else {
            self.queue
                .entries
                .borrow_mut()
                .retain(|entry| !Rc::ptr_eq(entry, &self.entry));
        }
    }
}
