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
//! Every wait has a `_timeout` variant (and a `try_` one where gevent has `block=False`).
//!
//! **Deadlock policy** (gevent's `LoopExit`), the same for every blocking call of the runtime
//! (these primitives, [`Greenlet::join`](crate::Greenlet::join) / `join_timeout` / `wait`,
//! [`Group`](crate::Group) / [`Pool`](crate::Pool) `join`, `join_timeout`, `spawn`, `add`,
//! `wait_available`, [`joinall`](crate::joinall), [`joinall_timeout`](crate::joinall_timeout),
//! [`wait`](crate::wait), [`iwait`](crate::iwait), [`Channel`], the green sockets' waits): a call
//! made from a root context (the main thread, a plain thread) when nothing but its own timeout
//! could ever end it (no greenlet ready or able to run again, no other timer, no I/O registered,
//! no thread-pool job or cross-thread sender) reports the deadlock **at once**, timed or not: a
//! `join_timeout(one hour)` with nothing else alive does not wait the hour.
//!
//! * Calls that return a `Result` report it as their error: `Greenlet::join` / `join_timeout`
//!   (`JoinError::LoopExit`), `Greenlet::wait` and `Group::join` (`Err(LoopExit)`),
//!   `Pool::imap` (one `Err(JoinError::LoopExit)` item), green socket I/O (an `io::Error`).
//! * Calls that return a value (`Event::wait`, `Queue::get` / `put` / `join` and their
//!   `_timeout` forms, `Semaphore::acquire`, `Lock::lock`, `AsyncResult::get`, `Channel`,
//!   `Pool::spawn`, `Pool::wait_available`, `Group::join_timeout`, `joinall_timeout`, the
//!   [`Iwait`](crate::Iwait) iterator, ...) panic with the [`LoopExit`] message.
//!
//! What is *not* a deadlock: a root context's [`sleep`](crate::sleep) (its timer is what it
//! waits for), a wait inside a [`with_timeout`](crate::with_timeout) scope or under a
//! [`Timeout`](crate::Timeout) (the expiry is scheduled work that ends the wait), any timer of
//! another greenlet (it will run again), and any wait made inside a greenlet (a greenlet just stays
//! parked; the root context that waits on it is the one told). `Greenlet::kill` never reports
//! one: it is a clean-up call.
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
//!
//! A primitive's waiters live in a slab owned by its wait queue, threaded by a doubly linked
//! FIFO: a wait takes a free slot (no allocation once the slab has grown to the peak number of
//! waiters), a grant unlinks the first slot and marks it, and the woken waiter reads the mark by
//! index and frees its slot; one that gives up unlinks itself in O(1). A hand-off through a
//! semaphore or lock therefore allocates nothing: its cost is the hub's park and wake-up plus a
//! little bookkeeping. A queue's getters, the hottest waiters, only ever join at the back, so they
//! use a lighter list with tickets: a grant takes the first off the list, and a waiter still
//! waiting knows it was granted when its ticket is at or before the last one granted; the first
//! waiter sits outside the list's buffer, so a lone waiter never touches one. An
//! [`Event`]'s waiters use the same list, a set granting all of them at once; a waiter that gives
//! up searches the list for itself.

mod async_result;
mod channel;
mod event;
mod lock;
mod queue;
mod semaphore;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

pub use async_result::{AsyncError, AsyncResult};
pub use channel::Channel;
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use queue::{
    Fifo, GenericQueue, Lifo, LifoQueue, Priority, PriorityQueue, Queue, ShutDown, Storage,
    TaskDoneError,
};
pub use semaphore::{BoundedSemaphore, OverRelease, Semaphore, SemaphorePermit};

use crate::greenlet::TaskRef;
use crate::hub::{self, LoopExit, Waiter};

/// Panics with a root context's deadlock error (gevent's `LoopExit`).
fn deadlock(exit: LoopExit) -> ! {
    panic!("{exit}")
}

/// A [`Waiters`] link that points nowhere.
const NIL: u32 = u32::MAX;

/// Where a waiter joins a [`WaitQueue`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    Back,
    /// A waiter that was granted something that vanished before it ran keeps its turn.
    Front,
}

/// One waiting context's slot in [`Waiters`]. A waiter owns its slot from the moment it starts
/// waiting until its wait ends (the slot then goes back to the free list), so its index needs no
/// generation: a grant only unlinks the slot and sets `granted`, which the waiter reads by index.
struct Slot {
    /// The waiting context; `None` while the slot is free. Kept as a [`Waiter`]'s two parts,
    /// written and dropped in place, so that waiting copies nothing through the stack.
    task: Option<TaskRef>,
    /// The generation of the park the waiting context is in.
    generation: u32,
    /// Set, with the slot unlinked, when the waiter is granted.
    granted: bool,
    prev: u32,
    /// The next waiter in FIFO order, or the next free slot.
    next: u32,
}

/// The waiters of a [`WaitQueue`]: a slab of slots threaded by a doubly linked FIFO of the
/// waiters not yet granted, and a free list. Waiting allocates nothing once the slab has grown to
/// the peak number of waiters, and a waiter that gives up leaves in O(1).
struct Waiters {
    slots: Vec<Slot>,
    head: u32,
    tail: u32,
    free: u32,
    /// Waiters in the FIFO (not yet granted).
    linked: usize,
    /// Slots in use (waiters in the FIFO and granted waiters that have not run yet).
    occupied: usize,
}

/// A slab that grew past this many slots is released once no waiter is left.
const KEEP_SLOTS: usize = 64;

impl Waiters {
    const fn new() -> Waiters {
        Waiters {
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            free: NIL,
            linked: 0,
            occupied: 0,
        }
    }

    /// Takes a slot for `waiter` and links it at `position`.
    #[inline(always)]
    fn insert(&mut self, position: Position) -> u32 {
        let (task, generation) = hub::current_waiter_parts();
        let index = if self.free != NIL {
            let index = self.free;
            let slot = &mut self.slots[index as usize];
            self.free = slot.next;
            slot.task = Some(task);
            slot.generation = generation;
            slot.granted = false;
            index
        } else {
            let index = u32::try_from(self.slots.len())
                .ok()
                .filter(|&index| index != NIL)
                .expect("too many waiters on one primitive");
            self.slots.push(Slot {
                task: Some(task),
                generation,
                granted: false,
                prev: NIL,
                next: NIL,
            });
            index
        };
        match position {
            Position::Back => {
                let tail = self.tail;
                let slot = &mut self.slots[index as usize];
                slot.prev = tail;
                slot.next = NIL;
                match tail {
                    NIL => self.head = index,
                    tail => self.slots[tail as usize].next = index,
                }
                self.tail = index;
            }
            Position::Front => {
                let head = self.head;
                let slot = &mut self.slots[index as usize];
                slot.prev = NIL;
                slot.next = head;
                match head {
                    NIL => self.tail = index,
                    head => self.slots[head as usize].prev = index,
                }
                self.head = index;
            }
        }
        self.linked += 1;
        self.occupied += 1;
        index
    }

    /// Takes slot `index` out of the FIFO.
    fn unlink(&mut self, index: u32) {
        let slot = &self.slots[index as usize];
        let (prev, next) = (slot.prev, slot.next);
        match prev {
            NIL => self.head = next,
            prev => self.slots[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.slots[next as usize].prev = prev,
        }
        self.linked -= 1;
    }

    /// Grants the first waiter in the FIFO, returning its slot.
    #[inline(always)]
    fn grant_first(&mut self) -> Option<&Slot> {
        let index = self.head;
        if index == NIL {
            return None;
        }
        let slot = &mut self.slots[index as usize];
        let next = slot.next;
        slot.granted = true;
        self.head = next;
        match next {
            NIL => self.tail = NIL,
            next => self.slots[next as usize].prev = NIL,
        }
        self.linked -= 1;
        Some(&self.slots[index as usize])
    }

    /// Frees slot `index` (already unlinked), returning its waiter to be dropped by the caller
    /// once nothing is borrowed.
    #[inline(always)]
    fn release(&mut self, index: u32) -> Option<TaskRef> {
        let slot = &mut self.slots[index as usize];
        let waiter = slot.task.take();
        slot.next = self.free;
        self.free = index;
        self.occupied -= 1;
        if self.occupied == 0 && self.slots.len() > KEEP_SLOTS {
            // Nobody waits: give the large slab back.
            self.slots = Vec::new();
            self.free = NIL;
        }
        waiter
    }
}

/// FIFO waiters, each woken by a grant (see the module docs).
struct WaitQueue {
    waiters: RefCell<Waiters>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        WaitQueue {
            waiters: RefCell::new(Waiters::new()),
        }
    }
}

impl WaitQueue {
    /// Waiters not yet granted.
    fn len(&self) -> usize {
        self.waiters.borrow().linked
    }

    /// Whether no waiter waits for a grant.
    #[inline]
    fn is_empty(&self) -> bool {
        self.waiters.borrow().head == NIL
    }

    /// Grants the first waiter, if any, and wakes it.
    #[inline(always)]
    fn grant_one(&self) -> bool {
        let mut waiters = self.waiters.borrow_mut();
        match waiters.grant_first() {
            Some(slot) => {
                if let Some(task) = &slot.task {
                    hub::with(|hub| hub::wake_parked(hub, task, slot.generation));
                }
                true
            }
            None => false,
        }
    }

    /// Grants and wakes every waiter.
    #[inline(always)]
    fn grant_all(&self) {
        let mut waiters = self.waiters.borrow_mut();
        if waiters.head == NIL {
            return;
        }
        hub::with(|hub| {
            while let Some(slot) = waiters.grant_first() {
                if let Some(task) = &slot.task {
                    hub::wake_parked(hub, task, slot.generation);
                }
            }
        });
    }

    /// Waits for a grant until `deadline`: `Ok(true)` if granted (even if the deadline passed in
    /// the same instant), `Ok(false)` on timeout. If the caller unwinds (kill, `with_timeout`)
    /// after being granted, `abandon` runs to hand the grant back; otherwise it is dropped.
    #[inline(always)]
    fn wait(
        &self,
        deadline: Option<u64>,
        position: Position,
        abandon: impl FnOnce(),
    ) -> Result<bool, LoopExit> {
        let index = self.waiters.borrow_mut().insert(position);
        let mut pending = Pending {
            queue: self,
            index,
            abandon: Some(abandon),
        };
        loop {
            let result = hub::park_until(deadline);
            let mut waiters = self.waiters.borrow_mut();
            if waiters.slots[index as usize].granted {
                let waiter = waiters.release(index);
                drop(waiters);
                drop(waiter);
                // Defused: the slot is free and the grant is taken.
                pending.abandon = None;
                std::mem::forget(pending);
                return Ok(true);
            }
            drop(waiters);
            if result? {
                return Ok(false);
            }
            self.refresh(index);
        }
    }

    /// Gives slot `index` a waiter for the next park, after a wake-up that was not a grant (a
    /// deferred throw's retry).
    #[cold]
    fn refresh(&self, index: u32) {
        let (task, generation) = hub::current_waiter_parts();
        let stale = {
            let mut waiters = self.waiters.borrow_mut();
            let slot = &mut waiters.slots[index as usize];
            slot.generation = generation;
            slot.task.replace(task)
        };
        drop(stale);
    }
}

/// FIFO waiters that only ever join at the back, each woken by a grant: a lighter [`WaitQueue`]
/// for the hottest waits (a queue's getters, an event's waiters, which a set grants all at once).
/// Waiters hold tickets in increasing order and a grant takes the first one off the list, so a
/// waiter still waiting was granted exactly when its ticket is at or before the last one granted
/// (those before it that are not waiting any more left by themselves): no slot, no mark. The
/// first waiter is kept apart from the others, so that a lone waiter, the usual case, never
/// touches a buffer.
#[derive(Default)]
struct TicketQueue {
    /// The first waiter's ticket, 0 when nobody waits (then `rest` is empty too).
    first_ticket: Cell<u64>,
    first: Cell<Option<Waiter>>,
    /// The waiters after the first, in ticket order.
    rest: RefCell<VecDeque<(u64, Waiter)>>,
    /// The ticket the last waiter to come was given (tickets start at 1).
    last_ticket: Cell<u64>,
    /// The ticket of the last waiter granted (0: none yet).
    last_granted: Cell<u64>,
}

impl TicketQueue {
    /// Waiters not yet granted.
    fn len(&self) -> usize {
        usize::from(self.first_ticket.get() != 0) + self.rest.borrow().len()
    }

    /// Takes the first waiter off the list.
    #[inline(always)]
    fn pop_first(&self) -> Option<(u64, Waiter)> {
        let ticket = self.first_ticket.get();
        if ticket == 0 {
            return None;
        }
        let waiter = self.first.take()?;
        if ticket == self.last_ticket.get() {
            // Nobody came after it, so nobody else waits.
            self.first_ticket.set(0);
        } else {
            self.promote_next();
        }
        Some((ticket, waiter))
    }

    /// Moves the next waiter, if any, into the first place (which is empty).
    fn promote_next(&self) {
        let next = self.rest.borrow_mut().pop_front();
        match next {
            Some((ticket, waiter)) => {
                self.first_ticket.set(ticket);
                self.first.set(Some(waiter));
            }
            None => self.first_ticket.set(0),
        }
    }

    /// Grants the first waiter, if any, and wakes it; returns the ticket granted.
    #[inline(always)]
    fn grant_one(&self) -> Option<u64> {
        let (ticket, waiter) = self.pop_first()?;
        self.last_granted.set(ticket);
        hub::with(|hub| waiter.wake_into(hub));
        Some(ticket)
    }

    /// The ticket of the last waiter granted (0: none yet).
    fn last_granted(&self) -> u64 {
        self.last_granted.get()
    }

    /// Whether a waiter waits for a grant.
    #[inline(always)]
    fn has_waiters(&self) -> bool {
        self.first_ticket.get() != 0
    }

    /// Grants and wakes every waiter, in the order they came.
    #[inline(always)]
    fn grant_all(&self) {
        if self.first_ticket.get() == 0 {
            return;
        }
        // Every listed waiter is parked and alive (held by its coroutine or its hub), so
        // dropping these references runs no destructor that could touch this queue.
        hub::with(|hub| {
            while let Some((ticket, waiter)) = self.pop_first() {
                self.last_granted.set(ticket);
                waiter.wake_into(hub);
            }
        });
    }

    /// Whether the waiter holding `ticket`, which has not left, is still waiting for a grant.
    #[inline(always)]
    fn is_listed(&self, ticket: u64) -> bool {
        ticket > self.last_granted.get()
    }

    /// As [`WaitQueue::wait`] with [`Position::Back`], except that a grant is told by its ticket:
    /// `Ok(Some(ticket))` if granted, `Ok(None)` on timeout, and `abandon(ticket)` hands an
    /// unused grant back.
    #[inline(always)]
    fn wait(
        &self,
        deadline: Option<u64>,
        abandon: impl FnOnce(u64),
    ) -> Result<Option<u64>, LoopExit> {
        let ticket = self.last_ticket.get() + 1;
        self.last_ticket.set(ticket);
        let waiter = hub::current_waiter();
        if self.first_ticket.get() == 0 {
            self.first_ticket.set(ticket);
            self.first.set(Some(waiter));
        } else {
            self.rest.borrow_mut().push_back((ticket, waiter));
        }
        let mut leave = LeaveTickets {
            queue: self,
            ticket,
            abandon: Some(abandon),
        };
        loop {
            let parked = hub::park_until(deadline);
            if !self.is_listed(ticket) {
                // Defused: granted, and the caller takes what was granted.
                leave.abandon = None;
                std::mem::forget(leave);
                return Ok(Some(ticket));
            }
            if parked? {
                return Ok(None);
            }
            self.refresh(ticket);
        }
    }

    /// Gives the waiter holding `ticket` a waiter for its next park (after a wake-up that was
    /// not a grant: a deferred throw's retry).
    #[cold]
    fn refresh(&self, ticket: u64) {
        let fresh = hub::current_waiter();
        let stale = if self.first_ticket.get() == ticket {
            self.first.replace(Some(fresh))
        } else {
            let mut rest = self.rest.borrow_mut();
            let index = Self::find_in_rest(&rest, ticket);
            index.map(|index| std::mem::replace(&mut rest[index].1, fresh))
        };
        drop(stale);
    }

    /// Takes the waiter holding `ticket`, which gave up, off the list.
    fn leave(&self, ticket: u64) {
        let left = if self.first_ticket.get() == ticket {
            let left = self.first.take();
            self.promote_next();
            left
        } else {
            let mut rest = self.rest.borrow_mut();
            let index = Self::find_in_rest(&rest, ticket);
            index
                .and_then(|index| rest.remove(index))
                .map(|(_, waiter)| waiter)
        };
        drop(left);
    }

    /// Where the waiter holding `ticket` is in `rest` (kept in ticket order, so a binary search:
    /// many waiters timing out at once do not each scan the list).
    fn find_in_rest(rest: &VecDeque<(u64, Waiter)>, ticket: u64) -> Option<usize> {
        rest.binary_search_by_key(&ticket, |(listed, _)| *listed)
            .ok()
    }
}

/// Leaves a [`TicketQueue`] when a wait ends without a grant, or hands an unused grant back.
struct LeaveTickets<'a, F: FnOnce(u64)> {
    queue: &'a TicketQueue,
    ticket: u64,
    abandon: Option<F>,
}

impl<F: FnOnce(u64)> Drop for LeaveTickets<'_, F> {
    fn drop(&mut self) {
        if self.queue.is_listed(self.ticket) {
            self.queue.leave(self.ticket);
        } else if let Some(abandon) = self.abandon.take() {
            abandon(self.ticket);
        }
    }
}

/// Leaves the queue when a wait ends without a grant, or hands an unused grant back. A wait that
/// succeeds frees its slot itself and forgets the guard.
struct Pending<'a, F: FnOnce()> {
    queue: &'a WaitQueue,
    index: u32,
    abandon: Option<F>,
}

impl<F: FnOnce()> Drop for Pending<'_, F> {
    fn drop(&mut self) {
        let mut waiters = self.queue.waiters.borrow_mut();
        let granted = waiters.slots[self.index as usize].granted;
        if !granted {
            waiters.unlink(self.index);
        }
        let waiter = waiters.release(self.index);
        drop(waiters);
        drop(waiter);
        if granted {
            if let Some(abandon) = self.abandon.take() {
                abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    impl Waiters {
        /// Grants the first waiter and says which slot it was in.
        fn grant_first_index(&mut self) -> Option<u32> {
            let head = self.head;
            self.grant_first().map(|_| head)
        }
    }

    #[test]
    fn waiters_grant_in_fifo_order_with_front_inserts_and_removals_from_the_middle() {
        let mut waiters = Waiters::new();
        let a = waiters.insert(Position::Back);
        let b = waiters.insert(Position::Back);
        let c = waiters.insert(Position::Back);
        let d = waiters.insert(Position::Front);
        waiters.unlink(b);
        drop(waiters.release(b));
        let e = waiters.insert(Position::Back);
        assert_eq!(e, b, "a freed slot is reused");
        assert_eq!(waiters.linked, 4);
        let order: Vec<u32> = std::iter::from_fn(|| waiters.grant_first_index()).collect();
        assert_eq!(order, [d, a, c, e]);
        assert_eq!((waiters.linked, waiters.occupied), (0, 4));
        assert!(order.iter().all(|&i| waiters.slots[i as usize].granted));
        for i in order {
            drop(waiters.release(i));
        }
        assert_eq!(waiters.occupied, 0);
        assert_eq!((waiters.head, waiters.tail), (NIL, NIL));
    }

    #[test]
    fn waiters_unlinking_the_only_first_or_last_waiter_keeps_the_links_consistent() {
        let mut waiters = Waiters::new();
        let only = waiters.insert(Position::Back);
        waiters.unlink(only);
        drop(waiters.release(only));
        assert_eq!((waiters.head, waiters.tail, waiters.linked), (NIL, NIL, 0));
        let [a, b, c] = [(); 3].map(|()| waiters.insert(Position::Back));
        waiters.unlink(a);
        drop(waiters.release(a));
        waiters.unlink(c);
        drop(waiters.release(c));
        assert_eq!((waiters.head, waiters.tail), (b, b));
        let back = waiters.insert(Position::Back);
        let front = waiters.insert(Position::Front);
        let order: Vec<u32> = std::iter::from_fn(|| waiters.grant_first_index()).collect();
        assert_eq!(order, [front, b, back]);
    }

    #[test]
    fn waiters_give_a_large_slab_back_once_nobody_waits() {
        let mut waiters = Waiters::new();
        let indices: Vec<u32> = (0..KEEP_SLOTS + 10)
            .map(|_| waiters.insert(Position::Back))
            .collect();
        for &i in &indices {
            waiters.unlink(i);
            drop(waiters.release(i));
        }
        assert_eq!(waiters.slots.capacity(), 0);
        assert_eq!(waiters.insert(Position::Back), 0);

        let mut small = Waiters::new();
        let indices: Vec<u32> = (0..3).map(|_| small.insert(Position::Back)).collect();
        for &i in &indices {
            small.unlink(i);
            drop(small.release(i));
        }
        assert_eq!(
            small.slots.len(),
            3,
            "a small slab is kept for the next waiters"
        );
    }

    #[test]
    fn wait_queue_waiters_that_time_out_or_die_leave_the_others_served_in_order() {
        let queue = Rc::new(WaitQueue::default());
        let served = Rc::new(RefCell::new(Vec::new()));
        let timed_out = Rc::new(Cell::new(0));
        let count = KEEP_SLOTS * 2;
        let waiters: Vec<_> = (0..count)
            .map(|i| {
                let (queue, served, timed_out) = (queue.clone(), served.clone(), timed_out.clone());
                crate::spawn(move || {
                    let deadline =
                        (i % 5 == 1).then(|| hub::deadline_after(Duration::from_millis(1)));
                    if queue.wait(deadline, Position::Back, || {}).unwrap() {
                        served.borrow_mut().push(i);
                    } else {
                        timed_out.set(timed_out.get() + 1);
                    }
                })
            })
            .collect();
        crate::yield_now();
        assert_eq!(queue.len(), count);
        for (i, waiter) in waiters.iter().enumerate() {
            if i % 5 == 2 {
                waiter.kill();
            }
        }
        // Later than every waiter's deadline: their timers fire first.
        crate::sleep(Duration::from_millis(20));
        let expected: Vec<usize> = (0..count).filter(|i| ![1, 2].contains(&(i % 5))).collect();
        assert_eq!(timed_out.get(), (0..count).filter(|i| i % 5 == 1).count());
        assert_eq!(queue.len(), expected.len());
        while queue.grant_one() {}
        let killed = crate::joinall(waiters)
            .into_iter()
            .filter(|result| matches!(result, Err(crate::JoinError::Killed)))
            .count();
        assert_eq!(killed, (0..count).filter(|i| i % 5 == 2).count());
        assert_eq!(*served.borrow(), expected);
        let waiters = queue.waiters.borrow();
        assert_eq!((waiters.linked, waiters.occupied), (0, 0));
        assert_eq!(waiters.slots.capacity(), 0, "the slab is given back");
    }

    #[test]
    fn ticket_queue_waiters_leaving_from_first_middle_or_last_place_keep_the_rest_served_in_order()
    {
        let queue = Rc::new(TicketQueue::default());
        let served = Rc::new(RefCell::new(Vec::new()));
        let count = 20;
        // 0 is killed and 1 times out, so the first place empties twice; 19 (last) times out.
        let times_out = |i: usize| i == 1 || i == 19 || i % 5 == 3;
        let killed = |i: usize| i == 0 || i % 5 == 4;
        let waiters: Vec<_> = (0..count)
            .map(|i| {
                let (queue, served) = (queue.clone(), served.clone());
                crate::spawn(move || {
                    let deadline =
                        times_out(i).then(|| hub::deadline_after(Duration::from_millis(1)));
                    if queue.wait(deadline, |_| {}).unwrap().is_some() {
                        served.borrow_mut().push(i);
                    }
                })
            })
            .collect();
        crate::yield_now();
        assert_eq!(queue.len(), count);
        for (i, waiter) in waiters.iter().enumerate() {
            if killed(i) {
                waiter.kill();
            }
        }
        crate::sleep(Duration::from_millis(20));
        let expected: Vec<usize> = (0..count)
            .filter(|&i| !times_out(i) && !killed(i))
            .collect();
        assert_eq!(queue.len(), expected.len());
        assert!(queue.grant_one().is_some());
        crate::yield_now();
        queue.grant_all();
        assert!(queue.grant_one().is_none());
        crate::joinall(waiters);
        assert_eq!(*served.borrow(), expected);
        assert_eq!(queue.len(), 0);
        assert!(queue.rest.borrow().is_empty());
    }

    #[test]
    fn wait_queue_grant_of_a_waiter_killed_before_it_ran_goes_to_the_next() {
        let queue = Rc::new(WaitQueue::default());
        let abandoned = Rc::new(Cell::new(0));
        let served = Rc::new(RefCell::new(Vec::new()));
        let waiters: Vec<_> = (0..3)
            .map(|i| {
                let (queue, abandoned, served) = (queue.clone(), abandoned.clone(), served.clone());
                crate::spawn(move || {
                    let pass_on = || {
                        abandoned.set(abandoned.get() + 1);
                        queue.grant_one();
                    };
                    if queue.wait(None, Position::Back, pass_on).unwrap() {
                        served.borrow_mut().push(i);
                    }
                })
            })
            .collect();
        crate::yield_now();
        assert!(queue.grant_one());
        waiters[0].kill();
        crate::yield_now();
        assert_eq!(abandoned.get(), 1);
        assert_eq!(*served.borrow(), [1]);
        assert_eq!(queue.len(), 1);
        assert!(queue.grant_one());
        let results = crate::joinall(waiters);
        assert!(matches!(results[0], Err(crate::JoinError::Killed)));
        assert!(results[1..].iter().all(Result::is_ok));
        assert_eq!(*served.borrow(), [1, 2]);
        assert_eq!(queue.waiters.borrow().occupied, 0);
    }
}
