//! Queues between greenlets (gevent's `Queue`, `JoinableQueue`, `PriorityQueue`, `LifoQueue`).
//!
//! One implementation, [`GenericQueue`], over a [`Storage`] that only decides the order items
//! leave in; the waiting, bounding and joining logic exists once. Every queue is joinable (gevent's
//! `JoinableQueue`): the bookkeeping is one counter.
//!
//! A put into an empty FIFO queue that a getter waits on hands its item straight to that getter
//! (the item it would take anyway), skipping the storage: the item stays in the queue, counted
//! as held, until the getter runs, and a getter killed before that gives it back first in line.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use super::{deadlock, Position, TicketQueue, WaitQueue};
use crate::hub::{self, LoopExit};

/// The order a [`GenericQueue`] hands its items out in.
///
/// Implementations are plain containers: they are called while the queue's state is borrowed and
/// must not block or touch the queue.
pub trait Storage<T>: Default {
    /// Adds an item.
    fn push(&mut self, item: T);
    /// Removes the next item to hand out.
    fn pop(&mut self) -> Option<T>;
    /// The number of items held.
    fn len(&self) -> usize;
    /// Whether no item is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether items leave in the order they were put. A put into an empty queue may then hand
    /// its item straight to a waiting getter (the item that getter would take anyway), without
    /// passing through the storage; [`push_front`](Storage::push_front) must then put an item
    /// back so that it leaves first.
    const FIFO: bool = false;

    /// Puts back an item that must leave before every item held (only called when
    /// [`FIFO`](Storage::FIFO)).
    fn push_front(&mut self, item: T) {
        self.push(item);
    }
}

/// First in, first out ([`Queue`]).
pub struct Fifo<T>(VecDeque<T>);

/// Last in, first out ([`LifoQueue`]).
pub struct Lifo<T>(Vec<T>);

/// Smallest first, like gevent's `PriorityQueue` and Python's `heapq` ([`PriorityQueue`]). Equal
/// items leave in no particular order; add a sequence number to the item for stability.
pub struct Priority<T>(BinaryHeap<Reverse<T>>);

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo(VecDeque::new())
    }
}

impl<T> Default for Lifo<T> {
    fn default() -> Self {
        Lifo(Vec::new())
    }
}

impl<T: Ord> Default for Priority<T> {
    fn default() -> Self {
        Priority(BinaryHeap::new())
    }
}

impl<T> fmt::Debug for Fifo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fifo").field("len", &self.0.len()).finish()
    }
}

impl<T> fmt::Debug for Lifo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifo").field("len", &self.0.len()).finish()
    }
}

impl<T> fmt::Debug for Priority<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Priority")
            .field("len", &self.0.len())
            .finish()
    }
}

impl<T> Storage<T> for Fifo<T> {
    const FIFO: bool = true;

    fn push(&mut self, item: T) {
        self.0.push_back(item);
    }
    fn push_front(&mut self, item: T) {
        self.0.push_front(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Storage<T> for Lifo<T> {
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Ord> Storage<T> for Priority<T> {
    fn push(&mut self, item: T) {
        self.0.push(Reverse(item));
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop().map(|Reverse(item)| item)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A FIFO queue (gevent's `Queue` / `JoinableQueue`).
pub type Queue<T> = GenericQueue<T, Fifo<T>>;

/// A queue handing out the smallest item first (gevent's `PriorityQueue`).
pub type PriorityQueue<T> = GenericQueue<T, Priority<T>>;

/// A queue handing out the newest item first (gevent's `LifoQueue`).
pub type LifoQueue<T> = GenericQueue<T, Lifo<T>>;

/// [`task_done`](GenericQueue::task_done) was called more times than items were put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called more times than there were items put in the queue")
    }
}

impl std::error::Error for TaskDoneError {}

/// A green queue, bounded or not, in the order of its [`Storage`]; use it as [`Queue`],
/// [`PriorityQueue`] or [`LifoQueue`].
///
/// A cloneable handle: clones share the queue. `put` blocks only the putter while a bounded queue
/// is full, `get` blocks only the getter while it is empty; both serve their waiters in FIFO order.
/// A getter that times out or is killed never takes an item, and one that was already promised an
/// item passes it on, so items are never lost or duplicated.
///
/// Every queue is joinable: each successful put adds an unfinished task, [`task_done`] ends one,
/// and [`join`] blocks until none is left.
///
/// [`task_done`]: GenericQueue::task_done
/// [`join`]: GenericQueue::join
///
/// ```
/// use green_runtime::sync::PriorityQueue;
///
/// let queue = PriorityQueue::new();
/// for n in [3, 1, 2] {
///     queue.put(n);
/// }
/// assert_eq!([queue.get(), queue.get(), queue.get()], [1, 2, 3]);
/// ```
pub struct GenericQueue<T, S: Storage<T>> {
    inner: Rc<Inner<T, S>>,
}

struct Inner<T, S> {
    items: RefCell<S>,
    /// An item a put handed straight to a waiting getter (FIFO storage only), and the ticket of
    /// that getter's grant (0: none); it counts as held until the getter takes it.
    handed: Cell<Option<T>>,
    handed_ticket: Cell<u64>,
    capacity: Option<usize>,
    /// Items granted to woken getters that have not run yet.
    reserved_items: Cell<usize>,
    /// Free slots granted to woken putters that have not run yet.
    reserved_slots: Cell<usize>,
    getters: TicketQueue,
    putters: WaitQueue,
    unfinished: Cell<usize>,
    joiners: WaitQueue,
    marker: PhantomData<fn(T) -> T>,
}

impl<T, S: Storage<T>> Clone for GenericQueue<T, S> {
    fn clone(&self) -> Self {
        GenericQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T, S: Storage<T>> Default for GenericQueue<T, S> {
    fn default() -> Self {
        GenericQueue::new()
    }
}

impl<T, S: Storage<T>> fmt::Debug for GenericQueue<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .field("getters", &self.inner.getters.len())
            .field("putters", &self.inner.putters.len())
            .field("unfinished_tasks", &self.unfinished_tasks())
            .finish()
    }
}

impl<T, S: Storage<T>> GenericQueue<T, S> {
    /// An unbounded queue: `put` never blocks.
    pub fn new() -> Self {
        Self::with_storage(S::default(), None)
    }

    /// A queue holding at most `capacity` items: `put` blocks while it is full.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0: a queue that hands each item straight from putter to getter is a
    /// [`Channel`](super::Channel).
    pub fn bounded(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "a bounded queue needs a capacity of at least 1; use sync::Channel for a rendezvous"
        );
        Self::with_storage(S::default(), Some(capacity))
    }

    /// A queue over `storage` (which may already hold items; each counts as an unfinished task),
    /// bounded by `capacity` if given.
    pub fn with_storage(storage: S, capacity: Option<usize>) -> Self {
        let unfinished = storage.len();
        GenericQueue {
            inner: Rc::new(Inner {
                items: RefCell::new(storage),
                handed: Cell::new(None),
                handed_ticket: Cell::new(0),
                capacity,
                reserved_items: Cell::new(0),
                reserved_slots: Cell::new(0),
                getters: TicketQueue::default(),
                putters: WaitQueue::default(),
                unfinished: Cell::new(unfinished),
                joiners: WaitQueue::default(),
                marker: PhantomData,
            }),
        }
    }

    /// The number of items in the queue (including any already promised to a woken getter).
    pub fn len(&self) -> usize {
        self.held() + usize::from(self.inner.handed_ticket.get() != 0)
    }

    /// The number of items in the storage.
    #[inline(always)]
    fn held(&self) -> usize {
        self.inner.items.borrow().len()
    }

    /// Whether the queue holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a `put` would block now: the queue is bounded and every slot is taken or promised
    /// to a woken putter.
    pub fn is_full(&self) -> bool {
        !self.has_free_slot()
    }

    /// The bound given to [`bounded`](GenericQueue::bounded), if any.
    pub fn capacity(&self) -> Option<usize> {
        self.inner.capacity
    }

    /// The number of greenlets (or root contexts) blocked in `get`.
    pub fn getters_waiting(&self) -> usize {
        self.inner.getters.len()
    }

    /// The number of greenlets (or root contexts) blocked in `put`.
    pub fn putters_waiting(&self) -> usize {
        self.inner.putters.len()
    }

    /// Adds `item`, blocking while the queue is full.
    ///
    /// # Panics
    ///
    /// From a root context, if the queue is full and nothing could ever take an item (the
    /// [`LoopExit`] deadlock).
    #[inline(always)]
    pub fn put(&self, item: T) {
        match self.put_until(item, None) {
            Ok(Ok(())) => {}
            Ok(Err(_)) => unreachable!("a put without a deadline cannot time out"),
            Err(exit) => deadlock(exit),
        }
    }

    /// Adds `item`, waiting at most `timeout` for room; gives the item back if there was none.
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), T> {
        self.put_until(item, Some(hub::deadline_after(timeout)))
            .unwrap_or_else(|exit| deadlock(exit))
    }

    /// Adds `item` if there is room now; gives it back otherwise (gevent's `put_nowait`).
    pub fn try_put(&self, item: T) -> Result<(), T> {
        if self.has_free_slot() {
            self.push(item);
            Ok(())
        } else {
            Err(item)
        }
    }

    /// Removes the next item, blocking while the queue is empty.
    ///
    /// # Panics
    ///
    /// From a root context, if the queue is empty and nothing could ever put an item (the
    /// [`LoopExit`] deadlock), e.g. `Queue::<i32>::new().get()` on the main thread with no
    /// greenlet.
    #[inline(always)]
    pub fn get(&self) -> T {
        match self.get_until(None) {
            Ok(Some(item)) => item,
            Ok(None) => unreachable!("a get without a deadline cannot time out"),
            Err(exit) => deadlock(exit),
        }
    }

    /// Removes the next item, waiting at most `timeout`; `None` if none came.
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn get_timeout(&self, timeout: Duration) -> Option<T> {
        self.get_until(Some(hub::deadline_after(timeout)))
            .unwrap_or_else(|exit| deadlock(exit))
    }

    /// Removes the next item if one is available now (gevent's `get_nowait`). Items already
    /// promised to waiting getters are not available.
    pub fn try_get(&self) -> Option<T> {
        self.has_free_item().then(|| self.pop())
    }

    /// Marks one item taken by a getter as processed (gevent's `JoinableQueue.task_done`).
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] if every item put has already been marked done.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let unfinished = self.inner.unfinished.get();
        if unfinished == 0 {
            return Err(TaskDoneError);
        }
        self.inner.unfinished.set(unfinished - 1);
        if unfinished == 1 {
            self.inner.joiners.grant_all();
        }
        Ok(())
    }

    /// The number of items put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        self.inner.unfinished.get()
    }

    /// Blocks until every item put has been marked done with
    /// [`task_done`](GenericQueue::task_done).
    ///
    /// # Panics
    ///
    /// From a root context, if nothing could ever finish the tasks (the [`LoopExit`] deadlock).
    pub fn join(&self) {
        self.join_until(None).unwrap_or_else(|exit| deadlock(exit));
    }

    /// Like [`join`](GenericQueue::join), waiting at most `timeout`; whether every task was done.
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(Some(hub::deadline_after(timeout)))
            .unwrap_or_else(|exit| deadlock(exit))
    }

    fn join_until(&self, deadline: Option<u64>) -> Result<bool, LoopExit> {
        if self.inner.unfinished.get() == 0 {
            return Ok(true);
        }
        self.inner.joiners.wait(deadline, Position::Back, || {})
    }

    fn has_free_slot(&self) -> bool {
        match self.inner.capacity {
            Some(capacity) => self.len() + self.inner.reserved_slots.get() < capacity,
            None => true,
        }
    }

    #[inline(always)]
    fn has_free_item(&self) -> bool {
        self.held() > self.inner.reserved_items.get()
    }

    #[inline(always)]
    fn put_until(&self, item: T, deadline: Option<u64>) -> Result<Result<(), T>, LoopExit> {
        if self.has_free_slot() {
            self.push(item);
            return Ok(Ok(()));
        }
        let granted = self
            .inner
            .putters
            .wait(deadline, Position::Back, || self.return_slot())?;
        if !granted {
            return Ok(Err(item));
        }
        self.inner
            .reserved_slots
            .set(self.inner.reserved_slots.get() - 1);
        self.push(item);
        Ok(Ok(()))
    }

    #[inline(always)]
    fn get_until(&self, deadline: Option<u64>) -> Result<Option<T>, LoopExit> {
        if self.has_free_item() {
            return Ok(Some(self.pop()));
        }
        let granted = self
            .inner
            .getters
            .wait(deadline, |ticket| self.return_item(ticket))?;
        let Some(ticket) = granted else {
            return Ok(None);
        };
        if let Some(item) = self.take_handed(ticket) {
            self.grant_slots();
            return Ok(Some(item));
        }
        self.inner
            .reserved_items
            .set(self.inner.reserved_items.get() - 1);
        Ok(Some(self.pop()))
    }

    /// The item handed to the getter granted `ticket`, if it was handed one.
    #[inline(always)]
    fn take_handed(&self, ticket: u64) -> Option<T> {
        if !S::FIFO || self.inner.handed_ticket.get() != ticket {
            return None;
        }
        self.inner.handed_ticket.set(0);
        self.inner.handed.take()
    }

    #[inline(always)]
    fn push(&self, item: T) {
        self.inner.unfinished.set(self.inner.unfinished.get() + 1);
        if S::FIFO
            && self.inner.handed_ticket.get() == 0
            && self.inner.getters.has_waiters()
            && self.held() == 0
        {
            // The getter would take this very item: hand it over without the storage. (A getter
            // waits only while no item is free, so an empty storage is the usual case.)
            self.inner.handed.set(Some(item));
            let ticket = self.inner.getters.grant_one();
            self.inner.handed_ticket.set(ticket.unwrap_or(0));
            return;
        }
        let len = {
            let mut items = self.inner.items.borrow_mut();
            items.push(item);
            items.len()
        };
        self.grant_items_of(len);
    }

    #[inline(always)]
    fn pop(&self) -> T {
        let item = self.inner.items.borrow_mut().pop();
        let item = item.expect("a getter only pops an item that is there for it");
        self.grant_slots();
        item
    }

    /// A woken getter that unwound gives its promised item to the next getter: an item handed
    /// to it goes back to the front of the storage (every item held was put after it).
    fn return_item(&self, ticket: u64) {
        match self.take_handed(ticket) {
            Some(item) => self.inner.items.borrow_mut().push_front(item),
            None => self
                .inner
                .reserved_items
                .set(self.inner.reserved_items.get() - 1),
        }
        self.grant_items();
    }

    /// A woken putter that unwound gives its promised slot to the next putter.
    fn return_slot(&self) {
        self.inner
            .reserved_slots
            .set(self.inner.reserved_slots.get() - 1);
        self.grant_slots();
    }

    #[inline(always)]
    fn grant_items(&self) {
        self.grant_items_of(self.held());
    }

    /// Grants the items free among `len` held to waiting getters.
    #[inline(always)]
    fn grant_items_of(&self, len: usize) {
        // Nothing a grant does adds or takes items, so count the free ones once.
        let reserved = self.inner.reserved_items.get();
        let mut free = len.saturating_sub(reserved);
        let mut granted = 0;
        while free > 0 && self.inner.getters.grant_one().is_some() {
            free -= 1;
            granted += 1;
        }
        self.inner.reserved_items.set(reserved + granted);
    }

    #[inline]
    fn grant_slots(&self) {
        // Putters of an unbounded queue never wait.
        if self.inner.capacity.is_some() && !self.inner.putters.is_empty() {
            self.grant_waiting_putters();
        }
    }

    fn grant_waiting_putters(&self) {
        while self.has_free_slot() && self.inner.putters.grant_one() {
            self.inner
                .reserved_slots
                .set(self.inner.reserved_slots.get() + 1);
        }
    }
}
