//! [`Pool`] and [`Group`]: sets of greenlets joined, killed and mapped over together (gevent's
//! `gevent.pool`).
//!
//! A group tracks the greenlets spawned through (or added to) it; a pool is a group with a
//! capacity whose `spawn` blocks the caller while `size` members are running, the usual way to cap
//! concurrency (connections, requests in flight). Both are one shared inner with an optional size,
//! so every operation exists once.
//!
//! A member leaves through a [`Greenlet::link`] callback when it ends (returns, panics or is
//! killed), which frees its slot. Callers waiting for a slot queue in FIFO order and one is woken
//! per freed slot; a caller woken that does not take the slot (it timed out, was killed, or only
//! asked [`Pool::wait_available`]) passes the wake-up on, so none is lost and nobody is woken for
//! nothing. [`Imap`] is a lazy iterator driven by its consumer rather than a helper greenlet: it
//! pulls an item only when a slot is free and fewer than `size` finished results wait to be
//! yielded, so memory stays bounded however slow the consumer or skewed the items.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use crate::greenlet::{current, Builder, Greenlet, GreenletRef, JoinError};
use crate::hub::{self, LoopExit, Waiter};
use crate::wait::AsGreenlet;

/// What [`Pool`] and [`Group`] share: the members, and who waits for a slot or for the end.
struct Inner {
    /// `None` for a group: no limit.
    size: Option<usize>,
    /// Running members by greenlet id (ids grow, so this is spawn order).
    members: RefCell<BTreeMap<u64, GreenletRef>>,
    /// Callers waiting for a free slot, FIFO.
    slot_waiters: RefCell<VecDeque<Waiter>>,
    /// Callers of `join`, woken when at most one member is left.
    idle_waiters: RefCell<Vec<Waiter>>,
}

impl Inner {
    fn new(size: Option<usize>) -> Rc<Inner> {
        Rc::new(Inner {
            size,
            members: RefCell::new(BTreeMap::new()),
            slot_waiters: RefCell::new(VecDeque::new()),
            idle_waiters: RefCell::new(Vec::new()),
        })
    }

    fn len(&self) -> usize {
        self.members.borrow().len()
    }

    fn has_free(&self) -> bool {
        match self.size {
            Some(size) => self.len() < size,
            None => true,
        }
    }

    fn contains(&self, id: u64) -> bool {
        self.members.borrow().contains_key(&id)
    }

    /// Makes `greenlet` a member until it ends; never blocks.
    fn insert(self: &Rc<Self>, greenlet: GreenletRef) {
        let id = greenlet.id();
        if self
            .members
            .borrow_mut()
            .insert(id, greenlet.clone())
            .is_some()
        {
            return;
        }
        let inner = Rc::downgrade(self);
        greenlet.rawlink(move |_| {
            if let Some(inner) = inner.upgrade() {
                inner.remove(id);
            }
        });
    }

    /// Ends a membership: frees its slot and wakes `join` callers once at most one member is left
    /// (the one left may be the caller itself).
    fn remove(&self, id: u64) {
        let removed = self.members.borrow_mut().remove(&id);
        if removed.is_none() {
            return;
        }
        drop(removed);
        self.notify_slot();
        if self.len() <= 1 {
            let waiters = std::mem::take(&mut *self.idle_waiters.borrow_mut());
            for waiter in waiters {
                waiter.wake();
            }
        }
    }

    /// Hands a free slot to the first caller waiting for one.
    fn notify_slot(&self) {
        if !self.has_free() {
            return;
        }
        let next = self.slot_waiters.borrow_mut().pop_front();
        if let Some(waiter) = next {
            waiter.wake();
        }
    }

    /// Spawns a member without waiting for a slot.
    fn spawn_now<T: 'static, F: FnOnce() -> T + 'static>(
        self: &Rc<Self>,
        builder: Builder,
        f: F,
    ) -> Greenlet<T> {
        let greenlet = builder.spawn(f);
        self.insert(greenlet.as_ref());
        greenlet
    }

    fn spawn<T: 'static, F: FnOnce() -> T + 'static>(
        self: &Rc<Self>,
        builder: Builder,
        f: F,
    ) -> Greenlet<T> {
        if let Err(exit) = self.wait_slot(None, true) {
            panic!("{exit}");
        }
        self.spawn_now(builder, f)
    }

    fn add(self: &Rc<Self>, greenlet: GreenletRef) {
        if greenlet.is_ready() || self.contains(greenlet.id()) {
            return;
        }
        if let Err(exit) = self.wait_slot(None, true) {
            panic!("{exit}");
        }
        self.insert(greenlet);
    }

    /// Spawns a member if a slot is free now, without waiting.
    fn try_spawn<T: 'static, F: FnOnce() -> T + 'static>(
        self: &Rc<Self>,
        builder: Builder,
        f: F,
    ) -> Result<Greenlet<T>, PoolFull> {
        if !self.has_free() {
            return Err(PoolFull);
        }
        Ok(self.spawn_now(builder, f))
    }

    fn try_add(self: &Rc<Self>, greenlet: GreenletRef) -> Result<(), PoolFull> {
        if greenlet.is_ready() || self.contains(greenlet.id()) {
            return Ok(());
        }
        if !self.has_free() {
            return Err(PoolFull);
        }
        self.insert(greenlet);
        Ok(())
    }

    /// Runs `f` in a member and returns its outcome; inline when the caller is a member already
    /// (waiting for a slot it holds itself could deadlock).
    fn apply<T: 'static, F: FnOnce() -> T + 'static>(
        self: &Rc<Self>,
        f: F,
    ) -> Result<T, JoinError> {
        if self.contains(current().id()) {
            return Ok(f());
        }
        self.spawn(Builder::new(), f).join()
    }

    /// Spawns `f` as a member without ever blocking the caller: at once if a slot is free, else
    /// in a greenlet that first waits (in FIFO order with the other callers) for a slot, joins
    /// the members and then runs `f`.
    fn apply_async<T: 'static, F: FnOnce() -> T + 'static>(self: &Rc<Self>, f: F) -> Greenlet<T> {
        if self.has_free() {
            return self.spawn_now(Builder::new(), f);
        }
        let inner = self.clone();
        Builder::new().spawn(move || {
            // A greenlet's wait is never a root context's deadlock: it ends or is killed.
            if let Err(exit) = inner.wait_slot(None, true) {
                panic!("{exit}");
            }
            inner.insert(current());
            drop(inner);
            f()
        })
    }

    /// Waits until a slot is free or `deadline` passes; `Ok(false)` on timeout. `take` says
    /// whether the caller fills the slot at once (if not, the wake-up it was handed goes on to
    /// the next caller waiting).
    fn wait_slot(&self, deadline: Option<u64>, take: bool) -> Result<bool, LoopExit> {
        let mut front = false;
        loop {
            if self.has_free() {
                return Ok(true);
            }
            let registration = SlotWait::register(self, hub::current_waiter(), front);
            let parked = hub::park_until(deadline);
            let handed = registration.end();
            if self.has_free() {
                if handed && !take {
                    self.notify_slot();
                }
                return Ok(true);
            }
            if parked? {
                return Ok(false);
            }
            front = handed;
        }
    }

    /// Whether no member is left but (possibly) the caller itself.
    fn only_current_left(&self) -> bool {
        let me = current().id();
        self.members.borrow().keys().all(|&id| id == me)
    }

    fn wait_idle(&self, deadline: Option<u64>) -> Result<bool, LoopExit> {
        loop {
            if self.only_current_left() {
                return Ok(true);
            }
            let waiter = hub::current_waiter();
            self.idle_waiters.borrow_mut().push(waiter.clone());
            let registration = IdleWait {
                inner: self,
                waiter,
            };
            let parked = hub::park_until(deadline);
            drop(registration);
            if self.only_current_left() {
                return Ok(true);
            }
            if parked? {
                return Ok(false);
            }
        }
    }

    /// Kills every member but the caller and waits until they are dead, or `deadline`.
    fn kill_until(&self, deadline: Option<u64>) -> bool {
        let me = current().id();
        loop {
            let targets: Vec<GreenletRef> = self
                .members
                .borrow()
                .values()
                .filter(|greenlet| greenlet.id() != me)
                .cloned()
                .collect();
            if targets.is_empty() {
                return true;
            }
            for greenlet in &targets {
                greenlet.kill_nowait();
            }
            for greenlet in &targets {
                let left = deadline.map(|deadline| {
                    Duration::from_nanos(deadline.saturating_sub(hub::now_nanos()))
                });
                if !matches!(greenlet.wait(left), Ok(true)) {
                    return false;
                }
            }
        }
    }

    fn imap<It, R, F>(self: &Rc<Self>, items: It, f: F, ordered: bool) -> Imap<It::IntoIter, F, R>
    where
        It: IntoIterator,
        It::Item: 'static,
        F: Fn(It::Item) -> R + 'static,
        R: 'static,
    {
        Imap {
            inner: self.clone(),
            items: items.into_iter(),
            f: Rc::new(f),
            ordered,
            // A pool of size 0 still buffers one result: its items wait for a slot forever.
            limit: self.size.unwrap_or(usize::MAX).max(1),
            exhausted: false,
            stopped: false,
            next_index: 0,
            next_out: 0,
            pending: HashMap::new(),
            shared: Rc::new(ImapShared {
                finished: Cell::new(0),
                order: RefCell::new(VecDeque::new()),
                waiter: RefCell::new(None),
            }),
        }
    }
}

/// One park's place in the slot queue. Dropped while unwinding (a kill or timeout), it passes on a
/// wake-up it was handed.
struct SlotWait<'a> {
    inner: &'a Inner,
    waiter: Waiter,
    active: bool,
}

impl<'a> SlotWait<'a> {
    fn register(inner: &'a Inner, waiter: Waiter, front: bool) -> SlotWait<'a> {
        let mut queue = inner.slot_waiters.borrow_mut();
        if front {
            queue.push_front(waiter.clone());
        } else {
            queue.push_back(waiter.clone());
        }
        SlotWait {
            inner,
            waiter,
            active: true,
        }
    }

    /// Leaves the queue; returns whether a freed slot's wake-up was handed to this registration.
    fn end(mut self) -> bool {
        self.active = false;
        self.unregister()
    }

    fn unregister(&self) -> bool {
        let mut queue = self.inner.slot_waiters.borrow_mut();
        match queue.iter().position(|w| w.same(&self.waiter)) {
            Some(index) => {
                queue.remove(index);
                false
            }
            None => true,
        }
    }
}

impl Drop for SlotWait<'_> {
    fn drop(&mut self) {
        if self.active && self.unregister() {
            self.inner.notify_slot();
        }
    }
}

/// One park's place among the `join` callers.
struct IdleWait<'a> {
    inner: &'a Inner,
    waiter: Waiter,
}

impl Drop for IdleWait<'_> {
    fn drop(&mut self) {
        self.inner
            .idle_waiters
            .borrow_mut()
            .retain(|w| !w.same(&self.waiter));
    }
}

/// The methods [`Pool`] and [`Group`] share (written once, on the shared inner).
macro_rules! shared_api {
    ($ty:ident) => {
        impl $ty {
            /// Spawns `f` as a member. A [`Pool`] first blocks the caller while it is full (a
            /// [`Group`] never blocks); panics if that wait could never end (the deadlock error).
            pub fn spawn<T: 'static, F: FnOnce() -> T + 'static>(&self, f: F) -> Greenlet<T> {
                self.inner.spawn(Builder::new(), f)
            }

            /// [`spawn`](Self::spawn) with a configured [`Builder`] (name, stack size).
            pub fn spawn_with<T: 'static, F: FnOnce() -> T + 'static>(
                &self,
                builder: Builder,
                f: F,
            ) -> Greenlet<T> {
                self.inner.spawn(builder, f)
            }

            /// Makes an existing greenlet a member until it ends. A [`Pool`] first blocks while it
            /// is full. A finished greenlet or a member already is left alone.
            pub fn add<W: AsGreenlet>(&self, greenlet: &W) {
                self.inner.add(greenlet.greenlet_ref());
            }

            /// Runs `f` in a member greenlet, waits for it and returns its outcome (gevent's
            /// `apply`): a [`Pool`] first blocks while it is full. Called from a greenlet that is
            /// a member already, `f` runs inline in the caller, as in gevent (waiting for a slot
            /// the caller holds could deadlock); a panic in `f` then unwinds through the caller
            /// rather than coming back as `Err(JoinError::Panicked)`.
            pub fn apply<T: 'static, F: FnOnce() -> T + 'static>(
                &self,
                f: F,
            ) -> Result<T, JoinError> {
                self.inner.apply(f)
            }

            /// Spawns `f` as a member and returns its handle without ever blocking (gevent's
            /// `apply_async`). When a [`Pool`] is full, the returned greenlet starts at once but
            /// first waits for a slot (in turn with blocked [`spawn`](Self::spawn) callers), then
            /// becomes a member and runs `f`; killing it meanwhile gives the turn to the next.
            /// It counts as a member only from the moment it holds its slot: as in gevent,
            /// [`join`](Self::join) and [`kill`](Self::kill) do not see one still queued.
            pub fn apply_async<T: 'static, F: FnOnce() -> T + 'static>(&self, f: F) -> Greenlet<T> {
                self.inner.apply_async(f)
            }

            /// Removes a greenlet from the members without touching it (it keeps running, no
            /// longer counted).
            pub fn discard<W: AsGreenlet>(&self, greenlet: &W) {
                self.inner.remove(greenlet.greenlet_ref().id());
            }

            /// Whether `greenlet` is a member.
            pub fn contains<W: AsGreenlet>(&self, greenlet: &W) -> bool {
                self.inner.contains(greenlet.greenlet_ref().id())
            }

            /// Number of members (greenlets spawned or added that have not ended).
            pub fn len(&self) -> usize {
                self.inner.len()
            }

            /// Whether there are no members.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// The members, in the order they were spawned.
            pub fn greenlets(&self) -> Vec<GreenletRef> {
                self.inner.members.borrow().values().cloned().collect()
            }

            /// Waits until every member has ended (a member calling it waits for the others).
            /// `Err` when called outside any greenlet with nothing left that could end them.
            pub fn join(&self) -> Result<(), LoopExit> {
                self.inner.wait_idle(None).map(drop)
            }

            /// Waits at most `timeout` for every member to end; returns whether they all have.
            ///
            /// # Panics
            ///
            /// Outside any greenlet, at once, if nothing could ever end them (the
            /// [`LoopExit`] deadlock; its own timeout does not count).
            pub fn join_timeout(&self, timeout: Duration) -> bool {
                let deadline = hub::deadline_after(timeout);
                self.inner
                    .wait_idle(Some(deadline))
                    .unwrap_or_else(|exit| panic!("{exit}"))
            }

            /// Kills every member (except the caller, if it is one) and waits until they are
            /// dead: their blocking calls unwind, destructors run, members that never started
            /// never run. Members added meanwhile are killed too.
            pub fn kill(&self) {
                self.inner.kill_until(None);
            }

            /// [`kill`](Self::kill), waiting at most `timeout`; returns whether all are dead.
            pub fn kill_timeout(&self, timeout: Duration) -> bool {
                self.inner.kill_until(Some(hub::deadline_after(timeout)))
            }

            /// Runs `f` on every item in member greenlets and returns the results in input order;
            /// a panicking or killed item gives its `Err` at its position. See [`imap`](Self::imap).
            pub fn map<It, R, F>(&self, items: It, f: F) -> Vec<Result<R, JoinError>>
            where
                It: IntoIterator,
                It::Item: 'static,
                F: Fn(It::Item) -> R + 'static,
                R: 'static,
            {
                self.imap(items, f).collect()
            }

            /// Runs `f` on every item in member greenlets, yielding the results in input order
            /// as the caller iterates. Items are pulled lazily, only when a slot is free and
            /// fewer than `size` finished results wait to be yielded (a [`Group`] spawns one
            /// greenlet per item as fast as items come). A panic in one item is yielded as
            /// `Err(JoinError::Panicked)` at its position and the iteration continues.
            pub fn imap<It, R, F>(&self, items: It, f: F) -> Imap<It::IntoIter, F, R>
            where
                It: IntoIterator,
                It::Item: 'static,
                F: Fn(It::Item) -> R + 'static,
                R: 'static,
            {
                self.inner.imap(items, f, true)
            }

            /// [`imap`](Self::imap) yielding the results in completion order.
            pub fn imap_unordered<It, R, F>(&self, items: It, f: F) -> Imap<It::IntoIter, F, R>
            where
                It: IntoIterator,
                It::Item: 'static,
                F: Fn(It::Item) -> R + 'static,
                R: 'static,
            {
                self.inner.imap(items, f, false)
            }
        }
    };
}

// Unwind safety: a pool's or group's shared state is only changed by its own code, which runs
// no user code while it holds a borrow (members' bodies run in their own greenlets, membership
// ends through a link callback that only updates the map). A panic caught around code using
// the handle cannot leave that state half-updated.
impl std::panic::UnwindSafe for Pool {}
impl std::panic::RefUnwindSafe for Pool {}
impl std::panic::UnwindSafe for Group {}
impl std::panic::RefUnwindSafe for Group {}

/// A set of greenlets with a capacity (gevent's `Pool`): [`spawn`](Pool::spawn) blocks the caller
/// while `size` members are running.
///
/// A cheap handle: clones share the same pool. Hub-local (not `Send`).
///
/// ```
/// use std::time::Duration;
///
/// let pool = green_runtime::Pool::new(2);
/// let squares: Vec<u64> = pool
///     .imap(1..=5u64, |n| {
///         green_runtime::sleep(Duration::from_millis(1));
///         n * n
///     })
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: Rc<Inner>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.size())
            .field("len", &self.len())
            .finish()
    }
}

impl Pool {
    /// A pool running at most `size` greenlets at once.
    ///
    /// `Pool::new(0)` is gevent's `Pool(0)`: a pool that can never have a member. Spawning into
    /// it blocks forever (from a root context with nothing else to run: the deadlock error),
    /// [`try_spawn`](Pool::try_spawn) always fails and [`wait_available`](Pool::wait_available)
    /// times out; it is only useful to code that checks [`free_count`](Pool::free_count) or waits
    /// with a timeout before spawning.
    pub fn new(size: usize) -> Pool {
        Pool {
            inner: Inner::new(Some(size)),
        }
    }

    /// The capacity given to [`new`](Pool::new).
    pub fn size(&self) -> usize {
        self.inner.size.unwrap_or(usize::MAX)
    }

    /// How many more greenlets could be spawned without blocking.
    pub fn free_count(&self) -> usize {
        self.size().saturating_sub(self.len())
    }

    /// Whether [`spawn`](Pool::spawn) would block.
    pub fn is_full(&self) -> bool {
        !self.inner.has_free()
    }

    /// Waits until a slot is free (without taking it), at most `timeout` if given; returns
    /// whether one is.
    ///
    /// # Panics
    ///
    /// Outside any greenlet, at once, timed or not, if nothing could ever free a slot (the
    /// [`LoopExit`] deadlock).
    pub fn wait_available(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(hub::deadline_after);
        self.inner
            .wait_slot(deadline, false)
            .unwrap_or_else(|exit| panic!("{exit}"))
    }

    /// Spawns `f` as a member if a slot is free now; [`PoolFull`] otherwise (the closure is
    /// dropped). Never blocks.
    pub fn try_spawn<T: 'static, F: FnOnce() -> T + 'static>(
        &self,
        f: F,
    ) -> Result<Greenlet<T>, PoolFull> {
        self.inner.try_spawn(Builder::new(), f)
    }

    /// [`try_spawn`](Pool::try_spawn) with a configured [`Builder`] (name, stack size).
    pub fn try_spawn_with<T: 'static, F: FnOnce() -> T + 'static>(
        &self,
        builder: Builder,
        f: F,
    ) -> Result<Greenlet<T>, PoolFull> {
        self.inner.try_spawn(builder, f)
    }

    /// Makes an existing greenlet a member if a slot is free now; [`PoolFull`] otherwise (the
    /// greenlet keeps running, not a member). A finished greenlet or a member already is left
    /// alone and gives `Ok`. Never blocks.
    pub fn try_add<W: AsGreenlet>(&self, greenlet: &W) -> Result<(), PoolFull> {
        self.inner.try_add(greenlet.greenlet_ref())
    }
}

/// The error of [`Pool::try_spawn`] and [`Pool::try_add`]: every slot is taken (gevent's
/// `PoolFull`, raised by `spawn(..., block=False)` and `add(..., blocking=False)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFull;

impl fmt::Display for PoolFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pool is full: every slot is taken by a running member")
    }
}

impl std::error::Error for PoolFull {}

shared_api!(Pool);

/// A set of greenlets without a size limit (gevent's `Group`): spawn into it, add or discard
/// existing greenlets, then join, kill or map over them together.
///
/// A cheap handle: clones share the same group. Hub-local (not `Send`).
#[derive(Clone)]
pub struct Group {
    inner: Rc<Inner>,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group").field("len", &self.len()).finish()
    }
}

impl Default for Group {
    fn default() -> Group {
        Group::new()
    }
}

impl Group {
    /// An empty group.
    pub fn new() -> Group {
        Group {
            inner: Inner::new(None),
        }
    }
}

shared_api!(Group);

/// What an [`Imap`]'s greenlets report as they end.
struct ImapShared {
    /// Items ended but not yet yielded.
    finished: Cell<usize>,
    /// Ended items in completion order (unordered iteration only).
    order: RefCell<VecDeque<usize>>,
    /// The consumer's park, while it waits for a result.
    waiter: RefCell<Option<Waiter>>,
}

/// The iterator of [`Pool::imap`], [`Pool::imap_unordered`] and their [`Group`] twins.
///
/// Driven by its consumer: `next` spawns items into the pool as slots free up and blocks the
/// calling greenlet until the next result is there. Dropping it early leaves the greenlets already
/// spawned running (their results are discarded), as dropping a [`Greenlet`] handle does. If the
/// consumer is a root context that would wait forever, it yields one `Err(JoinError::LoopExit)`
/// and ends.
pub struct Imap<It, F, R> {
    inner: Rc<Inner>,
    items: It,
    f: Rc<F>,
    ordered: bool,
    /// At most this many ended results wait to be yielded before no more items are pulled.
    limit: usize,
    exhausted: bool,
    stopped: bool,
    next_index: usize,
    /// Ordered iteration: the index to yield next.
    next_out: usize,
    /// Spawned, not yet yielded, by input index.
    pending: HashMap<usize, Greenlet<R>>,
    shared: Rc<ImapShared>,
}

impl<It, F, R> fmt::Debug for Imap<It, F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("ordered", &self.ordered)
            .field("pulled", &self.next_index)
            .field("pending", &self.pending.len())
            .field("finished", &self.shared.finished.get())
            .field("exhausted", &self.exhausted)
            .finish()
    }
}

impl<It, F, R> Imap<It, F, R>
where
    It: Iterator,
    It::Item: 'static,
    F: Fn(It::Item) -> R + 'static,
    R: 'static,
{
    /// Spawns items while slots are free and the buffer allows; returns whether it stopped for
    /// lack of a slot (more items may follow).
    fn top_up(&mut self) -> bool {
        while !self.exhausted && self.shared.finished.get() < self.limit {
            if !self.inner.has_free() {
                return true;
            }
            match self.items.next() {
                Some(item) => self.spawn_item(item),
                None => self.exhausted = true,
            }
        }
        false
    }

    fn spawn_item(&mut self, item: It::Item) {
        let index = self.next_index;
        self.next_index += 1;
        let f = self.f.clone();
        let greenlet = self.inner.spawn_now(Builder::new(), move || f(item));
        let shared = self.shared.clone();
        let ordered = self.ordered;
        greenlet.rawlink(move |_| {
            shared.finished.set(shared.finished.get() + 1);
            if !ordered {
                shared.order.borrow_mut().push_back(index);
            }
            let waiter = shared.waiter.borrow().clone();
            if let Some(waiter) = waiter {
                waiter.wake();
            }
        });
        self.pending.insert(index, greenlet);
    }

    /// The index of a result ready to be yielded.
    fn ready(&mut self) -> Option<usize> {
        if self.ordered {
            let next = self.next_out;
            self.pending
                .get(&next)
                .is_some_and(Greenlet::is_ready)
                .then_some(next)
        } else {
            self.shared.order.borrow_mut().pop_front()
        }
    }

    fn take(&mut self, index: usize) -> Result<R, JoinError> {
        let greenlet = self
            .pending
            .remove(&index)
            .expect("a finished imap item is pending");
        self.shared.finished.set(self.shared.finished.get() - 1);
        if self.ordered {
            self.next_out += 1;
        }
        greenlet.join()
    }
}

impl<It, F, R> Iterator for Imap<It, F, R>
where
    It: Iterator,
    It::Item: 'static,
    F: Fn(It::Item) -> R + 'static,
    R: 'static,
{
    type Item = Result<R, JoinError>;

    fn next(&mut self) -> Option<Result<R, JoinError>> {
        if self.stopped {
            return None;
        }
        let mut handed = false;
        loop {
            let want_slot = self.top_up();
            if handed {
                // A slot handed to us that `top_up` left free goes to the next caller waiting.
                self.inner.notify_slot();
            }
            if let Some(index) = self.ready() {
                return Some(self.take(index));
            }
            if self.pending.is_empty() && !want_slot {
                return None;
            }
            let waiter = hub::current_waiter();
            *self.shared.waiter.borrow_mut() = Some(waiter.clone());
            let registration = want_slot.then(|| SlotWait::register(&self.inner, waiter, handed));
            let parked = hub::park();
            handed = registration.is_some_and(SlotWait::end);
            self.shared.waiter.borrow_mut().take();
            if let Err(exit) = parked {
                if handed {
                    self.inner.notify_slot();
                }
                self.stopped = true;
                return Some(Err(JoinError::LoopExit(exit)));
            }
        }
    }
}
