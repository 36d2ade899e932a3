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
    /// The next item to hand out, left in place (for [`GenericQueue::peek`]).
    fn peek(&self) -> Option<&T>;
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
    fn peek(&self) -> Option<&T> {
        self.0.front()
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
    fn peek(&self) -> Option<&T> {
        self.0.last()
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
    fn peek(&self) -> Option<&T> {
        self.0.peek().map(|Reverse(item)| item)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A FIFO queue (gevent's `Queue` / `JoinableQueue`); see [`GenericQueue`] for its methods.
///
/// A bounded queue between a producer and workers, joined when every item is done:
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use green_runtime::sync::Queue;
///
/// let jobs = Queue::bounded(4); // put blocks the producer while 4 items wait
/// let total = Rc::new(Cell::new(0));
/// for _ in 0..3 {
///     let (jobs, total) = (jobs.clone(), total.clone());
///     green_runtime::spawn(move || loop {
///         let n: u32 = jobs.get();
///         total.set(total.get() + n);
///         jobs.task_done().unwrap();
///     });
/// }
/// for n in 1..=100 {
///     jobs.put(n);
/// }
/// jobs.join(); // every item taken and marked done
/// assert_eq!(total.get(), 5050);
/// ```
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

/// The queue was shut down ([`GenericQueue::shutdown`]; gevent's and Python 3.13's `ShutDown`).
///
/// A put refused gives its item back in the error (`ShutDown<T>`); a get or peek that finds
/// the queue shut down and empty gives `ShutDown<()>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutDown<T = ()>(pub T);

impl<T> ShutDown<T> {
    /// The item a refused put gives back.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Display for ShutDown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the queue was shut down")
    }
}

impl<T: fmt::Debug> std::error::Error for ShutDown<T> {}

/// Why a put did not add its item.
enum PutRefused<T> {
    TimedOut(T),
    ShutDown(T),
}

/// Panics for a blocking call that cannot return what its signature promises because the queue
/// was shut down (gevent raises `ShutDown` from the same calls).
#[cold]
#[inline(never)]
fn shut_down_panic() -> ! {
    panic!(
        "{}: use put_checked / get_checked to handle it",
        ShutDown(())
    )
}

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
/// [`shutdown`] ends a queue's life as in gevent 25.4 and Python 3.13: puts fail, gets drain what
/// is left (nothing, after an immediate shutdown) and then fail, and blocked putters and getters
/// wake with [`ShutDown`]. [`put_checked`] and [`get_checked`] report it as a value; the plain
/// [`put`] and [`get`] panic with it, as gevent's raise.
///
/// A queue of capacity 0 ([`bounded(0)`](GenericQueue::bounded)) is a rendezvous, like gevent's
/// `Channel`: a put waits until a getter is there to take its item.
///
/// [`task_done`]: GenericQueue::task_done
/// [`join`]: GenericQueue::join
/// [`shutdown`]: GenericQueue::shutdown
/// [`put_checked`]: GenericQueue::put_checked
/// [`get_checked`]: GenericQueue::get_checked
/// [`put`]: GenericQueue::put
/// [`get`]: GenericQueue::get
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
    /// The bound given at creation.
    bound: Option<usize>,
    /// The bound puts see: `bound`, or 0 once shut down, so that a put into a shut-down queue
    /// takes the slow path (where it fails) without a check of its own on the fast one.
    capacity: Cell<Option<usize>>,
    /// Set for a rendezvous queue (`bounded(0)`) or once shut down: a getter about to wait
    /// takes the cold path that handles both.
    getter_cold_path: Cell<bool>,
    shut_down: Cell<bool>,
    /// Getters granted after this ticket without an item were woken by the shutdown (0 after
    /// an immediate one: every getter still to run fails); `u64::MAX` while open.
    shut_after_ticket: Cell<u64>,
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
            .field("capacity", &self.inner.bound)
            .field("shut_down", &self.inner.shut_down.get())
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
    /// `bounded(0)` is a rendezvous, like gevent's `Channel`: a put waits until a getter is
    /// waiting and hands its item to it. (gevent's `Queue(0)` means unbounded since 1.1; use
    /// [`new`](GenericQueue::new) for that.)
    ///
    /// # Caveats
    ///
    /// A rendezvous put returns once its item is handed to a getter, before that getter runs;
    /// if the getter is then killed or times out, the item stays in the queue for the next
    /// getter. [`try_get`](GenericQueue::try_get) does not take from a waiting putter (its item
    /// is not in the queue yet); gevent's `Channel.get(block=False)` does.
    pub fn bounded(capacity: usize) -> Self {
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
                bound: capacity,
                capacity: Cell::new(capacity),
                getter_cold_path: Cell::new(capacity == Some(0)),
                shut_down: Cell::new(false),
                shut_after_ticket: Cell::new(u64::MAX),
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
        self.inner.bound
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
    /// [`LoopExit`] deadlock); if the queue is or gets [shut down](GenericQueue::shutdown)
    /// (see [`put_checked`](GenericQueue::put_checked)).
    #[inline(always)]
    pub fn put(&self, item: T) {
        match self.put_until(item, None) {
            Ok(Ok(())) => {}
            Ok(Err(PutRefused::TimedOut(_))) => {
                unreachable!("a put without a deadline cannot time out")
            }
            Ok(Err(PutRefused::ShutDown(_))) => shut_down_panic(),
            Err(exit) => deadlock(exit),
        }
    }

    /// Adds `item`, blocking while the queue is full; gives it back in [`ShutDown`] if the queue
    /// is or gets [shut down](GenericQueue::shutdown) first.
    ///
    /// # Panics
    ///
    /// As [`put`](GenericQueue::put), on deadlock.
    pub fn put_checked(&self, item: T) -> Result<(), ShutDown<T>> {
        match self.put_until(item, None) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(PutRefused::ShutDown(item) | PutRefused::TimedOut(item))) => Err(ShutDown(item)),
            Err(exit) => deadlock(exit),
        }
    }

    /// Adds `item`, waiting at most `timeout` for room; gives the item back if there was none
    /// (or the queue is or gets [shut down](GenericQueue::shutdown): see
    /// [`is_shut_down`](GenericQueue::is_shut_down)).
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), T> {
        match self.put_until(item, Some(hub::deadline_after(timeout))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(PutRefused::TimedOut(item) | PutRefused::ShutDown(item))) => Err(item),
            Err(exit) => deadlock(exit),
        }
    }

    /// Adds `item` if there is room now; gives it back otherwise (gevent's `put_nowait`), also
    /// once the queue is [shut down](GenericQueue::shutdown).
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
    /// greenlet; if the queue is or gets [shut down](GenericQueue::shutdown) with no item left
    /// for this getter (see [`get_checked`](GenericQueue::get_checked)).
    #[inline(always)]
    pub fn get(&self) -> T {
        match self.get_until(None) {
            Ok(Ok(Some(item))) => item,
            Ok(Ok(None)) => unreachable!("a get without a deadline cannot time out"),
            Ok(Err(ShutDown(()))) => shut_down_panic(),
            Err(exit) => deadlock(exit),
        }
    }

    /// Removes the next item, blocking while the queue is empty; [`ShutDown`] once the queue is
    /// [shut down](GenericQueue::shutdown) and has no item left for this getter (the items put
    /// before a shutdown that is not immediate are still handed out).
    ///
    /// # Panics
    ///
    /// As [`get`](GenericQueue::get), on deadlock.
    pub fn get_checked(&self) -> Result<T, ShutDown> {
        match self.get_until(None) {
            Ok(Ok(Some(item))) => Ok(item),
            Ok(Ok(None)) => unreachable!("a get without a deadline cannot time out"),
            Ok(Err(shut)) => Err(shut),
            Err(exit) => deadlock(exit),
        }
    }

    /// Removes the next item, waiting at most `timeout`; `None` if none came (or the queue is
    /// [shut down](GenericQueue::shutdown) and empty: see
    /// [`is_shut_down`](GenericQueue::is_shut_down)).
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn get_timeout(&self, timeout: Duration) -> Option<T> {
        match self.get_until(Some(hub::deadline_after(timeout))) {
            Ok(Ok(item)) => item,
            Ok(Err(ShutDown(()))) => None,
            Err(exit) => deadlock(exit),
        }
    }

    /// A clone of the next item, left in the queue, blocking while the queue is empty (gevent's
    /// `peek`). The item is the one at the head of the queue, which may already be promised to
    /// a woken getter that has not run yet.
    ///
    /// # Caveats
    ///
    /// A blocked peek waits in line with the getters: an item that arrives goes to the getters
    /// before it first, and the peek goes on waiting for the next one.
    ///
    /// # Panics
    ///
    /// As [`get`](GenericQueue::get): on deadlock, or when shut down and empty.
    pub fn peek(&self) -> T
    where
        T: Clone,
    {
        match self.peek_until(None) {
            Ok(Ok(Some(item))) => item,
            Ok(Ok(None)) => unreachable!("a peek without a deadline cannot time out"),
            Ok(Err(ShutDown(()))) => shut_down_panic(),
            Err(exit) => deadlock(exit),
        }
    }

    /// [`peek`](GenericQueue::peek), waiting at most `timeout`; `None` if no item came (or the
    /// queue is shut down and empty).
    pub fn peek_timeout(&self, timeout: Duration) -> Option<T>
    where
        T: Clone,
    {
        match self.peek_until(Some(hub::deadline_after(timeout))) {
            Ok(Ok(item)) => item,
            Ok(Err(ShutDown(()))) => None,
            Err(exit) => deadlock(exit),
        }
    }

    /// A clone of the item at the head of the queue, if any, without blocking (gevent's
    /// `peek_nowait`).
    pub fn try_peek(&self) -> Option<T>
    where
        T: Clone,
    {
        let handed = self.inner.handed.take();
        let front = match &handed {
            Some(item) => Some(item.clone()),
            None => self.inner.items.borrow().peek().cloned(),
        };
        self.inner.handed.set(handed);
        front
    }

    /// Shuts the queue down (gevent 25.4's and Python 3.13's `Queue.shutdown`): from now on
    /// every put fails with [`ShutDown`] (blocked putters wake with it, their items given back),
    /// gets hand out the items left and then fail with [`ShutDown`] (getters blocked on an empty
    /// queue wake with it). With `immediate`, the items left are dropped at once, each ending
    /// an unfinished task (waking [`join`](GenericQueue::join) callers when none is left), and
    /// every getter still to run fails, including one already promised an item. Calling it
    /// again only makes a shutdown immediate.
    pub fn shutdown(&self, immediate: bool) {
        let inner = &*self.inner;
        if !inner.shut_down.get() {
            inner.shut_down.set(true);
            inner.getter_cold_path.set(true);
            inner.capacity.set(Some(0));
            inner.shut_after_ticket.set(inner.getters.last_granted());
        }
        let mut drained = Vec::new();
        if immediate {
            inner.shut_after_ticket.set(0);
            if inner.handed_ticket.replace(0) != 0 {
                drained.extend(inner.handed.take());
            }
            {
                let mut items = inner.items.borrow_mut();
                while let Some(item) = items.pop() {
                    drained.push(item);
                }
            }
            inner.reserved_items.set(0);
            let unfinished = inner.unfinished.get();
            if unfinished > 0 {
                let left = unfinished.saturating_sub(drained.len());
                inner.unfinished.set(left);
                if left == 0 {
                    inner.joiners.grant_all();
                }
            }
        }
        inner
            .reserved_slots
            .set(inner.reserved_slots.get() + inner.putters.len());
        inner.putters.grant_all();
        inner.getters.grant_all();
        // Dropped last, with nothing borrowed: an item's destructor may use the queue.
        drop(drained);
    }

    /// Whether [`shutdown`](GenericQueue::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.get()
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

    #[inline(always)]
    fn has_free_slot(&self) -> bool {
        match self.inner.capacity.get() {
            Some(capacity) => {
                self.len() + self.inner.reserved_slots.get() < capacity
                    || (capacity == 0 && self.rendezvous_slot())
            }
            None => true,
        }
    }

    /// Whether a put into a rendezvous queue (capacity 0) finds a getter waiting that no woken
    /// putter is about to serve. (Never after a shutdown: no getter waits then.)
    #[cold]
    fn rendezvous_slot(&self) -> bool {
        self.inner.getters.len() > self.inner.reserved_slots.get()
    }

    #[inline(always)]
    fn has_free_item(&self) -> bool {
        self.held() > self.inner.reserved_items.get()
    }

    #[inline(always)]
    fn put_until(
        &self,
        item: T,
        deadline: Option<u64>,
    ) -> Result<Result<(), PutRefused<T>>, LoopExit> {
        if self.has_free_slot() {
            self.push(item);
            return Ok(Ok(()));
        }
        if self.inner.shut_down.get() {
            return Ok(Err(PutRefused::ShutDown(item)));
        }
        let granted = self
            .inner
            .putters
            .wait(deadline, Position::Back, || self.return_slot())?;
        if !granted {
            return Ok(Err(PutRefused::TimedOut(item)));
        }
        self.inner
            .reserved_slots
            .set(self.inner.reserved_slots.get() - 1);
        if self.inner.shut_down.get() {
            return Ok(Err(PutRefused::ShutDown(item)));
        }
        self.push(item);
        Ok(Ok(()))
    }

    #[inline(always)]
    fn get_until(&self, deadline: Option<u64>) -> Result<Result<Option<T>, ShutDown>, LoopExit> {
        if self.has_free_item() {
            return Ok(Ok(Some(self.pop())));
        }
        let ticket = match self.wait_as_getter(deadline)? {
            Ok(Some(ticket)) => ticket,
            Ok(None) => return Ok(Ok(None)),
            Err(shut) => return Ok(Err(shut)),
        };
        if let Some(item) = self.take_handed(ticket) {
            self.grant_slots();
            return Ok(Ok(Some(item)));
        }
        if self.woken_by_shutdown(ticket) {
            return Ok(Err(ShutDown(())));
        }
        self.inner
            .reserved_items
            .set(self.inner.reserved_items.get() - 1);
        Ok(Ok(Some(self.pop())))
    }

    /// Waits in line with the getters (for `get` and `peek`): the ticket granted, `None` once
    /// `deadline` passed, [`ShutDown`] if the queue is shut down with no item free.
    #[inline(always)]
    fn wait_as_getter(
        &self,
        deadline: Option<u64>,
    ) -> Result<Result<Option<u64>, ShutDown>, LoopExit> {
        if self.inner.getter_cold_path.get() {
            if let Err(shut) = self.before_getter_waits() {
                return Ok(Err(shut));
            }
        }
        let granted = self
            .inner
            .getters
            .wait(deadline, |ticket| self.return_item(ticket))?;
        Ok(Ok(granted))
    }

    /// A getter of a rendezvous or shut-down queue about to wait: fails if shut down (no item
    /// is free), else calls a waiting putter to hand it an item.
    #[cold]
    #[inline(never)]
    fn before_getter_waits(&self) -> Result<(), ShutDown> {
        if self.inner.shut_down.get() {
            return Err(ShutDown(()));
        }
        if self.inner.putters.grant_one() {
            self.inner
                .reserved_slots
                .set(self.inner.reserved_slots.get() + 1);
        }
        Ok(())
    }

    /// Whether the getter granted `ticket` without a handed item was woken by the shutdown
    /// rather than granted an item.
    #[inline(always)]
    fn woken_by_shutdown(&self, ticket: u64) -> bool {
        ticket > self.inner.shut_after_ticket.get()
    }

    fn peek_until(&self, deadline: Option<u64>) -> Result<Result<Option<T>, ShutDown>, LoopExit>
    where
        T: Clone,
    {
        if let Some(item) = self.try_peek() {
            return Ok(Ok(Some(item)));
        }
        let ticket = match self.wait_as_getter(deadline)? {
            Ok(Some(ticket)) => ticket,
            Ok(None) => return Ok(Ok(None)),
            Err(shut) => return Ok(Err(shut)),
        };
        if self.take_handed_back(ticket).is_none() && self.woken_by_shutdown(ticket) {
            return Ok(Err(ShutDown(())));
        }
        // The item granted is in the storage now; look, then give the grant back.
        let item = self.try_peek();
        self.return_item(ticket);
        Ok(Ok(item))
    }

    /// Moves an item handed to the getter granted `ticket` back to the front of the storage
    /// (where it stays reserved for that getter); returns whether there was one.
    fn take_handed_back(&self, ticket: u64) -> Option<()> {
        let item = self.take_handed(ticket)?;
        self.inner.items.borrow_mut().push_front(item);
        self.inner
            .reserved_items
            .set(self.inner.reserved_items.get() + 1);
        Some(())
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
            // Woken by the shutdown: it was granted nothing.
            None if self.woken_by_shutdown(ticket) => return,
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
        if self.inner.capacity.get().is_some() && !self.inner.putters.is_empty() {
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
