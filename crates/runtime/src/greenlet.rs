//! Greenlets: spawning, joining, killing, and the switch between a greenlet and its hub.
//!
//! A greenlet is one heap allocation (`TaskAlloc`: its bookkeeping, its result slot and the closure
//! to run) until the hub first runs it; only then does it take a stack and become a corosensei
//! coroutine. A greenlet that finishes without ever blocking therefore reuses the stack the previous
//! one just returned, which is what makes `spawn` + `join` cheap. The allocation is reference
//! counted by hand behind a one-word `TaskRef` and, once the greenlet is gone, kept by its
//! thread for the next spawn of a similar size (trimmed whenever the hub goes idle).
//!
//! The hub always ends a greenlet by resuming it: a kill is a pending "throw" that the greenlet's
//! own blocking call turns into an unwind with a [`GreenletExit`] payload. A suspended coroutine is
//! never dropped (corosensei would force-unwind it, aborting the process if a destructor yields);
//! if one is abandoned, for instance by a thread exiting with greenlets still blocked, its stack is
//! leaked instead.
//!
//! This module holds the `unsafe` of the switch itself (the stored `Yielder` pointer, the running
//! greenlet's address in a thread-local) and of the task allocation and its reference count.

use std::alloc::Layout;
use std::any::Any;
use std::cell::{Cell, OnceCell, RefCell, RefMut};
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, RefUnwindSafe, UnwindSafe};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::hub::{self, Hub, LoopExit, Waiter, WaiterKey};
use crate::stack::{self, SlabStack};

pub(crate) type Co = Coroutine<(), (), (), SlabStack>;

/// The payload a killed greenlet unwinds with (gevent's `GreenletExit`).
///
/// A greenlet's root catches it and its `join` returns [`JoinError::Killed`]. Code that catches
/// panics with `catch_unwind` inside a greenlet should re-raise this payload with `resume_unwind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreenletExit;

/// Why a greenlet produced no value.
#[non_exhaustive]
pub enum JoinError {
    /// The greenlet panicked; the payload is the panic's.
    Panicked(Box<dyn Any + Send + 'static>),
    /// The greenlet was killed (before it started, or while it ran).
    Killed,
    /// The caller waited on the main thread (or a plain thread) with nothing left that could ever
    /// finish the greenlet: no greenlet ready, no timer but the wait's own timeout, no I/O, no
    /// thread-pool job. A timed join reports it at once instead of waiting out its timeout.
    LoopExit(LoopExit),
    /// The result was already taken by an earlier `join_timeout`.
    AlreadyJoined,
}

impl JoinError {
    /// Whether the greenlet was killed.
    pub fn is_killed(&self) -> bool {
        matches!(self, JoinError::Killed)
    }

    /// Whether the greenlet panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// The panic payload, if the greenlet panicked; otherwise gives `self` back.
    pub fn into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self {
            JoinError::Panicked(payload) => Ok(payload),
            other => Err(other),
        }
    }

    /// The panic message, when the payload was a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panicked(payload) => panic_message(payload.as_ref()),
            _ => None,
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(p) => f
                .debug_tuple("Panicked")
                .field(&panic_message(p.as_ref()).unwrap_or("<non-string payload>"))
                .finish(),
            JoinError::Killed => f.write_str("Killed"),
            JoinError::LoopExit(e) => f.debug_tuple("LoopExit").field(e).finish(),
            JoinError::AlreadyJoined => f.write_str("AlreadyJoined"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(p) => match panic_message(p.as_ref()) {
                Some(msg) => write!(f, "greenlet panicked: {msg}"),
                None => f.write_str("greenlet panicked"),
            },
            JoinError::Killed => f.write_str("greenlet was killed"),
            JoinError::LoopExit(e) => fmt::Display::fmt(e, f),
            JoinError::AlreadyJoined => f.write_str("greenlet result was already taken"),
        }
    }
}

impl std::error::Error for JoinError {}

/// Lifecycle of a greenlet (or of a thread's root context, which is never `New` or `Dead`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Spawned, not yet run (it may be queued or waiting for its `spawn_later` timer).
    New,
    /// Started and in the ready queue.
    Ready,
    /// Executing (or, for a root context, executing outside the hub loop).
    Running,
    /// Suspended on a waiter.
    Parked,
    /// Finished; its result is stored.
    Dead,
}

/// What a greenlet's pending blocking call must unwind with.
#[derive(Clone, Copy)]
pub(crate) enum Throw {
    Kill,
    Timeout(u64),
}

impl Throw {
    fn payload(self) -> Box<dyn Any + Send> {
        match self {
            Throw::Kill => Box::new(GreenletExit),
            Throw::Timeout(id) => Box::new(crate::timeout::TimeoutUnwind { id }),
        }
    }
}

/// Greenlet ids handed to a thread at a time: ids stay process-unique without an atomic
/// read-modify-write per spawn.
const ID_BLOCK: u64 = 1024;

/// A process-unique greenlet id.
fn next_id() -> u64 {
    static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
}

/// Bookkeeping shared by every greenlet and by each thread's root context.
pub(crate) struct Core {
    pub(crate) id: u64,
    name: Option<Box<str>>,
    pub(crate) is_root: bool,
    stack_size: usize,
    pub(crate) state: Cell<State>,
    /// Incremented each time a park ends; a [`Waiter`] only wakes the park it was made for.
    pub(crate) generation: Cell<u32>,
    /// Set for a root context whose park was woken (the hub loop it runs then returns).
    pub(crate) woken: Cell<bool>,
    /// Resumed in place (borrowed mutably while the greenlet runs).
    coroutine: RefCell<Option<Co>>,
    yielder: Cell<*const Yielder<(), ()>>,
    pub(crate) throw: Cell<Option<Throw>>,
    /// The current park was ended by a throw (not by its own waiter), so the throw is delivered
    /// as the park returns; a timeout that reaches an already-woken context waits for its next
    /// blocking point, so a wake-up due first wins (gevent's order). Kills never wait.
    pub(crate) woken_by_throw: Cell<bool>,
    /// The greenlet suspended while `std::thread::panicking()`: it may be mid-unwind, so throws
    /// into it are deferred until it is not.
    maybe_unwinding: Cell<bool>,
    /// The first joiner, kept inline so that the usual single `join` does not allocate; it is
    /// only used while `more_joiners` is empty, so joiners are always woken in the order added.
    joiner: Cell<Option<Waiter>>,
    /// Rarely used state, allocated on first use so that a greenlet record stays small (a million
    /// spawned greenlets are a million records).
    extras: OnceCell<Box<Extras>>,
    /// Strong references to the task (see [`TaskRef`]).
    refs: Cell<usize>,
    /// The next context in the hub's [`ReadyList`] while this one is listed there.
    next_ready: Cell<Option<TaskRef>>,
    /// Whether this context is in the hub's [`ReadyList`].
    listed: Cell<bool>,
    /// Set as the greenlet ends without a value (it panicked or was killed).
    failed: Cell<bool>,
    /// The payload's functions, set when the task is allocated.
    vtable: &'static TaskVTable,
}

/// The parts of a [`Core`] most greenlets never use.
#[derive(Default)]
pub(crate) struct Extras {
    more_joiners: RefCell<Vec<Waiter>>,
    links: RefCell<Vec<Link>>,
    pub(crate) locals: RefCell<Option<crate::local::LocalMap>>,
    /// Timeouts that expired while another throw was pending, in firing order (see
    /// [`Core::set_throw`]).
    queued_timeouts: RefCell<VecDeque<u64>>,
    /// The start timer of a greenlet spawned by `spawn_later`, cancelled if it is killed first.
    pub(crate) start_timer: Cell<Option<crate::timer::TimerKey>>,
}

impl Core {
    #[inline(always)]
    fn new(
        name: Option<Box<str>>,
        stack_size: usize,
        is_root: bool,
        vtable: &'static TaskVTable,
    ) -> Core {
        Core {
            id: next_id(),
            name,
            is_root,
            stack_size,
            state: Cell::new(if is_root { State::Running } else { State::New }),
            generation: Cell::new(0),
            woken: Cell::new(false),
            coroutine: RefCell::new(None),
            yielder: Cell::new(std::ptr::null()),
            throw: Cell::new(None),
            woken_by_throw: Cell::new(false),
            maybe_unwinding: Cell::new(false),
            joiner: Cell::new(None),
            extras: OnceCell::new(),
            refs: Cell::new(1),
            next_ready: Cell::new(None),
            listed: Cell::new(false),
            failed: Cell::new(false),
            vtable,
        }
    }

    pub(crate) fn name(&self) -> String {
        match &self.name {
            Some(name) => name.to_string(),
            None if self.is_root => match std::thread::current().name() {
                Some(thread) => format!("<root of thread '{thread}'>"),
                None => "<root of an unnamed thread>".to_string(),
            },
            None => format!("Greenlet-{}", self.id),
        }
    }

    /// Records a pending throw; returns whether it became the one to deliver next (so a parked
    /// context must be woken for it).
    ///
    /// A kill always goes first. Timeouts are delivered one per blocking point in the order their
    /// timers fired, which is gevent's order (each `Timeout` fires from its own timer): when two
    /// scopes' deadlines pass in the same hub turn, the first lands now and the second at the
    /// following blocking point, unless its scope ended first ([`Core::clear_timeout_throw`]).
    /// Only the next throw lives in `throw`; the rare further timeouts wait in
    /// [`Extras::queued_timeouts`], so a single pending timeout allocates nothing.
    pub(crate) fn set_throw(&self, throw: Throw) -> bool {
        match (self.throw.get(), throw) {
            (None, _) => {
                self.throw.set(Some(throw));
                true
            }
            (Some(Throw::Kill), Throw::Kill) => true,
            (Some(Throw::Timeout(displaced)), Throw::Kill) => {
                self.extras()
                    .queued_timeouts
                    .borrow_mut()
                    .push_front(displaced);
                self.throw.set(Some(Throw::Kill));
                true
            }
            (Some(_), Throw::Timeout(id)) => {
                self.extras().queued_timeouts.borrow_mut().push_back(id);
                false
            }
        }
    }

    /// Takes the throw to deliver now; the next queued timeout, if any, becomes pending (it is
    /// delivered at the following blocking point).
    pub(crate) fn take_throw(&self) -> Option<Throw> {
        let throw = self.throw.take()?;
        self.promote_queued_timeout();
        Some(throw)
    }

    /// Gives back a throw taken by [`Core::take_throw`] but not delivered (see `foreign`): it
    /// becomes the next throw again, ahead of the timeouts queued since (a kill stays first).
    pub(crate) fn put_back_throw(&self, throw: Throw) {
        match (self.throw.get(), throw) {
            (None, _) => self.throw.set(Some(throw)),
            (Some(Throw::Kill), Throw::Kill) => {}
            (Some(Throw::Kill), Throw::Timeout(id)) => {
                self.extras().queued_timeouts.borrow_mut().push_front(id);
            }
            (Some(Throw::Timeout(next)), throw) => {
                self.extras().queued_timeouts.borrow_mut().push_front(next);
                self.throw.set(Some(throw));
            }
        }
    }

    fn promote_queued_timeout(&self) {
        if let Some(extras) = self.extras.get() {
            if let Some(id) = extras.queued_timeouts.borrow_mut().pop_front() {
                self.throw.set(Some(Throw::Timeout(id)));
            }
        }
    }

    /// Records whether the thread is panicking as this context blocks: if so it may be mid-unwind.
    #[inline(always)]
    pub(crate) fn note_panicking(&self) {
        self.maybe_unwinding.set(std::thread::panicking());
    }

    /// Whether this context is parked in the park of `generation` (a waiter made for it would
    /// wake it).
    #[inline(always)]
    pub(crate) fn is_parked_in(&self, generation: u32) -> bool {
        self.generation.get() == generation && self.state.get() == State::Parked
    }

    /// Ends a park as its context runs again: the park's waiters go stale. Returns whether a
    /// throw must be checked for now (one woke the park, or a kill is pending).
    #[inline(always)]
    pub(crate) fn end_park(&self) -> bool {
        self.generation.set(self.generation.get().wrapping_add(1));
        self.woken_by_throw.replace(false) || self.kill_pending()
    }

    /// Whether a kill is pending (kills are delivered as soon as the greenlet resumes).
    #[inline]
    pub(crate) fn kill_pending(&self) -> bool {
        matches!(self.throw.get(), Some(Throw::Kill))
    }

    /// Drops the pending timeout throw with this id, if any (its scope is over, so it must never
    /// land). Returns whether another queued timeout became the next throw in its place.
    pub(crate) fn clear_timeout_throw(&self, id: u64) -> bool {
        match self.throw.get() {
            Some(Throw::Timeout(pending)) if pending == id => {
                self.throw.set(None);
                self.promote_queued_timeout();
                self.throw_pending()
            }
            _ => {
                if let Some(extras) = self.extras.get() {
                    let mut queued = extras.queued_timeouts.borrow_mut();
                    if !queued.is_empty() {
                        queued.retain(|&queued| queued != id);
                    }
                }
                false
            }
        }
    }

    /// Whether a kill or timeout waits to be delivered.
    #[inline]
    pub(crate) fn throw_pending(&self) -> bool {
        self.throw.get().is_some()
    }

    /// Turns a pending throw into an unwind, unless this greenlet may be mid-unwind already.
    /// Returns whether a throw stays pending (deferred).
    pub(crate) fn deliver_throw(&self) -> bool {
        if self.maybe_unwinding.get() && std::thread::panicking() {
            return self.throw_pending();
        }
        self.maybe_unwinding.set(false);
        if let Some(throw) = self.take_throw() {
            resume_unwind(throw.payload());
        }
        false
    }

    /// Suspends the running greenlet back to the hub loop that resumed it.
    #[inline(always)]
    pub(crate) fn suspend(&self) {
        let yielder = self.yielder.get();
        debug_assert!(!yielder.is_null());
        // SAFETY: `yielder` was stored by this greenlet's coroutine body and points into that
        // coroutine's stack, which lives as long as the coroutine; only the running greenlet calls
        // `suspend` on its own core (the hub sets `current` to it before resuming), so we are on
        // that coroutine's stack.
        unsafe { (*yielder).suspend(()) };
    }

    /// The rarely used parts, allocated on first use.
    pub(crate) fn extras(&self) -> &Extras {
        self.extras.get_or_init(Box::default)
    }

    pub(crate) fn add_joiner(&self, waiter: Waiter) {
        match self.joiner.take() {
            None if self
                .extras
                .get()
                .is_none_or(|e| e.more_joiners.borrow().is_empty()) =>
            {
                self.joiner.set(Some(waiter))
            }
            first => {
                self.joiner.set(first);
                self.extras().more_joiners.borrow_mut().push(waiter);
            }
        }
    }

    pub(crate) fn remove_joiner(&self, key: WaiterKey) {
        match self.joiner.take() {
            Some(first) if first.key() == key => {}
            first => self.joiner.set(first),
        }
        if let Some(extras) = self.extras.get() {
            let mut more = extras.more_joiners.borrow_mut();
            if !more.is_empty() {
                more.retain(|w| w.key() != key);
            }
        }
    }

    /// Runs when the greenlet's result is stored: wakes joiners, then runs link callbacks in order.
    pub(crate) fn finish(&self) {
        self.state.set(State::Dead);
        let first = self.joiner.take();
        let more = self
            .extras
            .get()
            .map(|e| std::mem::take(&mut *e.more_joiners.borrow_mut()))
            .unwrap_or_default();
        hub::with(|hub| {
            for waiter in first.into_iter().chain(more) {
                waiter.wake_on(hub);
            }
        });
        let Some(extras) = self.extras.get() else {
            return;
        };
        loop {
            let next = {
                let mut links = extras.links.borrow_mut();
                if links.is_empty() {
                    break;
                }
                links.remove(0)
            };
            self.dispatch_link(next);
        }
        let locals = extras.locals.borrow_mut().take();
        drop(locals);
    }

    /// A new counted reference to this context: every core is the head of its task allocation,
    /// whose count it holds.
    fn task_ref(&self) -> TaskRef {
        self.refs.set(self.refs.get() + 1);
        TaskRef {
            core: NonNull::from(self),
        }
    }

    /// Adds a link, or dispatches it at once if the greenlet has ended.
    pub(crate) fn add_link(&self, link: Link) {
        if self.state.get() == State::Dead {
            self.dispatch_link(link);
        } else {
            self.extras().links.borrow_mut().push(link);
        }
    }

    /// Removes a link that has not been dispatched; returns whether it was there.
    pub(crate) fn remove_link(&self, id: LinkId) -> bool {
        let Some(extras) = self.extras.get() else {
            return false;
        };
        let mut links = extras.links.borrow_mut();
        let before = links.len();
        links.retain(|link| link.id != id);
        links.len() != before
    }

    /// Runs a link of the ended greenlet if its outcome matches: a raw link inline, any other in
    /// a greenlet of its own (so it may block).
    fn dispatch_link(&self, link: Link) {
        let wanted = match link.when {
            LinkWhen::Always => true,
            LinkWhen::Value => !self.failed.get(),
            LinkWhen::Exception => self.failed.get(),
        };
        if !wanted {
            return;
        }
        let finished = GreenletRef {
            task: self.task_ref(),
        };
        let callback = link.callback;
        if link.raw {
            run_raw_link(callback, finished);
        } else {
            Builder::new().spawn(move || callback(finished));
        }
    }
}

/// Identifies a link callback, for [`Greenlet::unlink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkId(u64);

impl LinkId {
    fn next() -> LinkId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        LinkId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Which outcomes a link runs for.
#[derive(Clone, Copy)]
pub(crate) enum LinkWhen {
    Always,
    Value,
    Exception,
}

/// A callback run when a greenlet ends.
pub(crate) struct Link {
    id: LinkId,
    when: LinkWhen,
    /// Run inline as the greenlet ends (gevent's `rawlink`), not in a greenlet of its own.
    raw: bool,
    callback: Box<dyn FnOnce(GreenletRef)>,
}

impl Link {
    pub(crate) fn new(
        when: LinkWhen,
        raw: bool,
        callback: impl FnOnce(GreenletRef) + 'static,
    ) -> (Link, LinkId) {
        let id = LinkId::next();
        let link = Link {
            id,
            when,
            raw,
            callback: Box::new(callback),
        };
        (link, id)
    }
}

/// Runs a raw link where the greenlet ended; its panic is reported and ends only the link
/// (a kill still unwinds on).
fn run_raw_link(callback: Box<dyn FnOnce(GreenletRef)>, finished: GreenletRef) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || callback(finished))) {
        if payload.downcast_ref::<GreenletExit>().is_some() {
            resume_unwind(payload);
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(co) = self.coroutine.get_mut().take() {
            if co.started() && !co.done() {
                // Never force-unwind a suspended greenlet: leak its stack instead.
                std::mem::forget(co);
            }
        }
    }
}

/// A greenlet's (or root context's) allocation: the [`Core`] first, at the address every
/// [`TaskRef`] holds, then the payload.
#[repr(C)]
struct TaskAlloc<B> {
    core: Core,
    body: B,
}

/// What a [`TaskRef`] needs from the payload it cannot name.
pub(crate) struct TaskVTable {
    run: fn(NonNull<Core>),
    kill_unstarted: fn(NonNull<Core>),
    take_result: fn(NonNull<Core>, &mut dyn Any),
    /// Drops the allocation; called once, when the last reference goes.
    destroy: unsafe fn(NonNull<Core>),
}

impl<B: Task + 'static> TaskAlloc<B> {
    const VTABLE: TaskVTable = TaskVTable {
        run: |core| Self::get(core).body.run(&Self::get(core).core),
        kill_unstarted: |core| Self::get(core).body.kill_unstarted(&Self::get(core).core),
        take_result: |core, out| Self::get(core).body.take_result(out),
        destroy: Self::destroy,
    };

    /// The size class this type's records are kept in, if small enough to be kept.
    const CLASS: Option<usize> = record_class(Layout::new::<TaskAlloc<B>>());

    /// The layout this type's records are allocated with: their class's, so that a kept block
    /// serves any record of the class.
    fn layout() -> Layout {
        match Self::CLASS {
            Some(class) => class_layout(class),
            None => Layout::new::<TaskAlloc<B>>(),
        }
    }

    /// Allocates the task; its one reference is returned.
    fn allocate(name: Option<Box<str>>, stack_size: usize, is_root: bool, body: B) -> TaskRef {
        let vtable: &'static TaskVTable = &Self::VTABLE;
        let block = match Self::CLASS.and_then(take_kept_record) {
            Some(block) => block,
            None => {
                let layout = Self::layout();
                // SAFETY: `layout` has a non-zero size (a `Core` is in it).
                NonNull::new(unsafe { std::alloc::alloc(layout) })
                    .unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
            }
        };
        let task = block.cast::<TaskAlloc<B>>().as_ptr();
        // SAFETY: `block` is an unused allocation of `Self::layout()`, at least as large and as
        // aligned as a `TaskAlloc<B>` (`record_class` only admits types that fit their class);
        // both fields are written (in place, not built elsewhere and copied) before any use.
        unsafe {
            std::ptr::addr_of_mut!((*task).core)
                .write(Core::new(name, stack_size, is_root, vtable));
            std::ptr::addr_of_mut!((*task).body).write(body);
        }
        TaskRef { core: block.cast() }
    }

    /// The allocation whose core `core` is. Only called through this type's vtable, with the
    /// address a live `TaskRef` holds.
    fn get<'a>(core: NonNull<Core>) -> &'a TaskAlloc<B> {
        // SAFETY: a core carries this type's vtable only if `allocate` made it as the first field of
        // a `#[repr(C)] TaskAlloc<B>`, so the address is the allocation's (and covers all of it);
        // the caller's `TaskRef` keeps it alive for the call, and the allocation is only ever
        // shared (its mutable state is in cells).
        unsafe { core.cast::<TaskAlloc<B>>().as_ref() }
    }

    /// # Safety
    ///
    /// `core` is the core of a live `TaskAlloc<B>` made by `allocate` with no reference left.
    unsafe fn destroy(core: NonNull<Core>) {
        let task = core.cast::<TaskAlloc<B>>();
        // SAFETY: the caller's contract: the record is initialised and nothing refers to it.
        unsafe { std::ptr::drop_in_place(task.as_ptr()) };
        match Self::CLASS {
            Some(class) => keep_record(class, task.cast()),
            // SAFETY: allocated by `allocate` with this layout, and dropped above.
            None => unsafe { std::alloc::dealloc(task.as_ptr().cast(), Self::layout()) },
        }
    }
}

/// Size classes of kept records: multiples of this many bytes...
const RECORD_GRAIN: usize = 32;
/// ... aligned like `malloc`'s results (more alignment would take the slower aligned path);
/// records needing more are not kept.
const RECORD_ALIGN: usize = 16;
/// ... up to this size (larger records go back to the allocator at once).
const RECORD_CLASSES: usize = 16;
/// Records of each class an idle hub keeps (see [`trim_kept_records`]).
const RECORDS_KEPT_IDLE: usize = 256;

/// The class of records with `layout`, if they are kept.
const fn record_class(layout: Layout) -> Option<usize> {
    if layout.align() > RECORD_ALIGN || layout.size() > RECORD_GRAIN * RECORD_CLASSES {
        return None;
    }
    Some(layout.size().div_ceil(RECORD_GRAIN) - 1)
}

fn class_layout(class: usize) -> Layout {
    Layout::from_size_align((class + 1) * RECORD_GRAIN, RECORD_ALIGN).expect("a valid layout")
}

/// Freed greenlet records, kept per thread for the next spawns (Go keeps finished goroutines'
/// records the same way): a burst of greenlets pays the allocator and the kernel's first-touch
/// page faults once, not on every spawn. Bounded by the thread's peak number of live greenlets;
/// an idle hub trims each class to [`RECORDS_KEPT_IDLE`].
struct KeptRecords {
    classes: [Vec<NonNull<u8>>; RECORD_CLASSES],
    /// Some class holds more than [`RECORDS_KEPT_IDLE`]: the next trim has work.
    over: bool,
}

impl Drop for KeptRecords {
    fn drop(&mut self) {
        for (class, blocks) in self.classes.iter_mut().enumerate() {
            for block in blocks.drain(..) {
                // SAFETY: every kept block was allocated with its class's layout and is unused.
                unsafe { std::alloc::dealloc(block.as_ptr(), class_layout(class)) };
            }
        }
    }
}

thread_local! {
    static KEPT_RECORDS: RefCell<KeptRecords> = const {
        RefCell::new(KeptRecords {
            classes: [const { Vec::new() }; RECORD_CLASSES],
            over: false,
        })
    };
}

/// A kept block of `class`, if any.
#[inline]
fn take_kept_record(class: usize) -> Option<NonNull<u8>> {
    KEPT_RECORDS
        .try_with(|kept| kept.borrow_mut().classes[class].pop())
        .ok()
        .flatten()
}

/// Keeps an unused block of `class` (or frees it while the thread is exiting).
#[inline]
fn keep_record(class: usize, block: NonNull<u8>) {
    if KEPT_RECORDS
        .try_with(|kept| {
            let mut kept = kept.borrow_mut();
            let blocks = &mut kept.classes[class];
            blocks.push(block);
            if blocks.len() > RECORDS_KEPT_IDLE {
                kept.over = true;
            }
        })
        .is_err()
    {
        // SAFETY: the block was allocated with its class's layout and is unused.
        unsafe { std::alloc::dealloc(block.as_ptr(), class_layout(class)) };
    }
}

/// Gives kept records beyond [`RECORDS_KEPT_IDLE`] per class back to the allocator; the hub
/// calls it when it is about to wait with nothing to run.
pub(crate) fn trim_kept_records() {
    let _ = KEPT_RECORDS.try_with(|kept| {
        let mut kept = kept.borrow_mut();
        if !std::mem::take(&mut kept.over) {
            return;
        }
        for (class, blocks) in kept.classes.iter_mut().enumerate() {
            if blocks.len() > RECORDS_KEPT_IDLE {
                for block in blocks.drain(RECORDS_KEPT_IDLE..) {
                    // SAFETY: every kept block was allocated with its class's layout and is unused.
                    unsafe { std::alloc::dealloc(block.as_ptr(), class_layout(class)) };
                }
                blocks.shrink_to_fit();
            }
        }
    });
}

/// A counted reference to a greenlet or root context: one word, the address of its [`Core`].
///
/// Counted by hand rather than through `Rc<dyn ...>`: every `Rc` operation on a trait object
/// first loads the vtable's alignment to find the count, a dependent load on every hand-off's
/// path; here the count and the core sit at a fixed place. Not `Send`: a task lives and dies on
/// its hub's thread.
pub(crate) struct TaskRef {
    core: NonNull<Core>,
}

impl TaskRef {
    #[inline(always)]
    pub(crate) fn core(&self) -> &Core {
        // SAFETY: this reference keeps the allocation alive.
        unsafe { self.core.as_ref() }
    }

    /// The task's address (an identity, never dereferenced through this).
    #[inline]
    pub(crate) fn addr(&self) -> *const u8 {
        self.core.as_ptr() as *const u8
    }

    fn run(&self) {
        (self.core().vtable.run)(self.core)
    }

    fn kill_unstarted(&self) {
        (self.core().vtable.kill_unstarted)(self.core)
    }

    fn take_result(&self, out: &mut dyn Any) {
        (self.core().vtable.take_result)(self.core, out)
    }

    /// A new reference to the running greenlet, from the address [`CurrentTask::enter`] recorded
    /// (which a `TaskRef` borrowed by the hub keeps alive).
    #[inline(always)]
    fn running(core: NonNull<Core>) -> TaskRef {
        let task = TaskRef { core };
        task.core().refs.set(task.core().refs.get() + 1);
        task
    }
}

impl Clone for TaskRef {
    #[inline(always)]
    fn clone(&self) -> TaskRef {
        let core = self.core();
        core.refs.set(core.refs.get() + 1);
        TaskRef { core: self.core }
    }
}

impl Drop for TaskRef {
    #[inline(always)]
    fn drop(&mut self) {
        let core = self.core();
        let refs = core.refs.get() - 1;
        core.refs.set(refs);
        if refs == 0 {
            let destroy = core.vtable.destroy;
            // SAFETY: this was the last reference to the task `allocate` made.
            unsafe { destroy(self.core) };
        }
    }
}

/// The context running on a hub. The running greenlet's core is kept in a plain thread-local
/// (no lazy initialisation, no destructor) so that [`running_waiter`] and the switch reach it
/// without a call; `None` there means the thread's root context, owned here.
///
/// The pointee is always alive while it is current: a greenlet's coroutine owns a [`TaskRef`] to
/// it until its body returns (and [`CurrentTask::enter`] borrows one for as long as it is
/// current).
pub(crate) struct CurrentTask {
    root: TaskRef,
}

/// Restores the previously running context when the greenlet entered by
/// [`CurrentTask::enter`] suspends or ends.
pub(crate) struct Entered<'a> {
    previous: *const Core,
    _task: &'a TaskRef,
}

impl Drop for Entered<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        CURRENT_CORE.with(|core| core.set(self.previous));
    }
}

impl CurrentTask {
    pub(crate) fn new(root: TaskRef) -> CurrentTask {
        CurrentTask { root }
    }

    /// The running context's bookkeeping.
    #[inline(always)]
    pub(crate) fn core(&self) -> &Core {
        let greenlet = CURRENT_CORE.with(Cell::get);
        if greenlet.is_null() {
            return self.root.core();
        }
        // SAFETY: CURRENT_CORE is the core of the running greenlet (set by `enter`), which is alive
        // while any of its code runs (see the type's docs), and only that code can reach this hub.
        unsafe { &*greenlet }
    }

    /// A counted reference to the running context.
    #[inline(always)]
    pub(crate) fn task(&self) -> TaskRef {
        running_greenlet().unwrap_or_else(|| self.root.clone())
    }

    /// Whether `core` is the running context's.
    #[inline]
    pub(crate) fn is(&self, core: &Core) -> bool {
        std::ptr::eq(self.core(), core)
    }

    /// Makes `task` the running context until the returned guard drops.
    #[inline(always)]
    pub(crate) fn enter<'a>(&'a self, task: &'a TaskRef) -> Entered<'a> {
        debug_assert!(!task.core().is_root);
        let previous = CURRENT_CORE.with(|current| current.replace(task.core.as_ptr()));
        Entered {
            previous,
            _task: task,
        }
    }
}

/// A counted reference to the running greenlet, without visiting the hub; `None` in a root
/// context.
#[inline(always)]
fn running_greenlet() -> Option<TaskRef> {
    NonNull::new(CURRENT_CORE.with(Cell::get) as *mut Core).map(TaskRef::running)
}

/// Whether a greenlet (not a root context) is running on this thread; never creates a hub.
#[inline(always)]
pub(crate) fn running_core_is_set() -> bool {
    !CURRENT_CORE.with(Cell::get).is_null()
}

/// The running greenlet's address (an identity, never dereferenced through this); null in a
/// root context.
#[inline(always)]
pub(crate) fn running_greenlet_addr() -> *const u8 {
    CURRENT_CORE.with(Cell::get).cast()
}

/// The running greenlet and the generation of its next park, without visiting the hub; `None`
/// in a root context.
#[inline(always)]
pub(crate) fn running_waiter() -> Option<(TaskRef, u32)> {
    let task = running_greenlet()?;
    let generation = task.core().generation.get();
    Some((task, generation))
}

/// The type-erased part of a greenlet.
pub(crate) trait Task {
    /// Runs the greenlet's closure to completion on its coroutine and stores the result.
    fn run(&self, core: &Core);
    /// Stores `Killed` as the result of a greenlet killed before it started.
    fn kill_unstarted(&self, core: &Core);
    /// Moves the stored result into `out` when `out` is the `Option<Result<T, JoinError>>` of
    /// this greenlet's `T` (a [`Greenlet<T>`] handle asks with its own type).
    fn take_result(&self, out: &mut dyn Any);
}

struct Payload<T, F> {
    result: Cell<Option<Result<T, JoinError>>>,
    body: Cell<Option<F>>,
}

impl<T: 'static, F: FnOnce() -> T + 'static> Task for Payload<T, F> {
    fn run(&self, core: &Core) {
        let body = self.body.take().expect("greenlet body runs once");
        let result = catch_unwind(AssertUnwindSafe(|| {
            let value = body();
            // A kill caught in a C-ABI hook (see `foreign`) and still pending as the greenlet
            // returns: the greenlet ends `Killed`, as if it had landed in the hook.
            if core.kill_pending() {
                hub::with(|hub| hub.check_throw(core));
            }
            value
        }))
        .map_err(|payload| {
            if payload.downcast_ref::<GreenletExit>().is_some() {
                JoinError::Killed
            } else {
                JoinError::Panicked(payload)
            }
        });
        core.failed.set(result.is_err());
        self.result.set(Some(result));
        core.finish();
    }

    fn kill_unstarted(&self, core: &Core) {
        drop(self.body.take());
        self.result.set(Some(Err(JoinError::Killed)));
        core.failed.set(true);
        core.finish();
    }

    fn take_result(&self, out: &mut dyn Any) {
        if let Some(out) = out.downcast_mut::<Option<Result<T, JoinError>>>() {
            *out = self.result.take();
        }
    }
}

/// The thread's root context: the main thread or a plain thread, which runs the hub loop while
/// it waits.
struct Root;

impl Task for Root {
    fn run(&self, _core: &Core) {
        unreachable!("a root context is never started by the hub")
    }

    fn kill_unstarted(&self, _core: &Core) {}

    fn take_result(&self, _out: &mut dyn Any) {}
}

/// A new root context for this thread's hub.
pub(crate) fn new_root() -> TaskRef {
    TaskAlloc::allocate(None, 0, true, Root)
}

/// Creates the coroutine for a greenlet the hub runs for the first time.
pub(crate) fn start(task: &TaskRef) -> std::io::Result<()> {
    let stack = SlabStack::take(task.core().stack_size)?;
    let this = task.clone();
    let co = Coroutine::with_stack(stack, move |yielder: &Yielder<(), ()>, ()| {
        this.core().yielder.set(yielder as *const _);
        this.run();
    });
    *task.core().coroutine.borrow_mut() = Some(co);
    Ok(())
}

/// Resumes a started greenlet in place; returns whether it finished.
#[inline(always)]
pub(crate) fn resume(core: &Core, mut slot: RefMut<'_, Option<Co>>) -> bool {
    let co = slot.as_mut().expect("resume: the greenlet has a coroutine");
    core.state.set(State::Running);
    let outcome = co.resume(());
    match outcome {
        CoroutineResult::Yield(()) => false,
        CoroutineResult::Return(()) => {
            let co = slot.take().expect("the coroutine that just returned");
            drop(slot);
            co.into_stack().recycle();
            true
        }
    }
}

/// The greenlet's coroutine, locked for [`resume`], if it has one that is not running right now
/// (so it can be resumed).
#[inline(always)]
pub(crate) fn lock_resumable(core: &Core) -> Option<RefMut<'_, Option<Co>>> {
    core.coroutine
        .try_borrow_mut()
        .ok()
        .filter(|co| co.is_some())
}

/// The hub's FIFO of ready contexts, linked through their cores.
///
/// Each listed core holds the next one's reference, so queueing and taking a context touch two
/// cores and no buffer: no index arithmetic, no borrow flag, no capacity check on the hottest path
/// of every hand-off. A context is listed at most once (queueing a listed one again does nothing).
pub(crate) struct ReadyList {
    head: Cell<Option<TaskRef>>,
    /// The last listed core (null when empty), kept alive by the reference the list holds to it.
    tail: Cell<*const Core>,
}

impl ReadyList {
    pub(crate) const fn new() -> ReadyList {
        ReadyList {
            head: Cell::new(None),
            tail: Cell::new(std::ptr::null()),
        }
    }

    /// Queues `task` at the back, unless it is listed already.
    #[inline(always)]
    pub(crate) fn push_back(&self, task: TaskRef) {
        let core = task.core();
        if core.listed.replace(true) {
            return;
        }
        let tail = self.tail.replace(task.core.as_ptr());
        let empty_slot = if tail.is_null() {
            self.head.replace(Some(task))
        } else {
            // SAFETY: a non-null tail is the last listed core, which the list keeps alive through
            // the reference held by `head` or by the previous core's `next_ready`.
            unsafe { (*tail).next_ready.replace(Some(task)) }
        };
        debug_assert!(empty_slot.is_none(), "the list's last link is empty");
        std::mem::forget(empty_slot);
    }

    /// Takes the first context.
    #[inline(always)]
    pub(crate) fn pop_front(&self) -> Option<TaskRef> {
        let task = self.head.take()?;
        let core = task.core();
        let next = core.next_ready.take();
        if next.is_none() {
            self.tail.set(std::ptr::null());
        }
        self.head.set(next);
        core.listed.set(false);
        Some(task)
    }

    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.tail.get().is_null()
    }

    /// The last listed context's address (an identity: null when empty).
    pub(crate) fn last(&self) -> *const Core {
        self.tail.get()
    }

    /// Counts the listed contexts (by walking the list: for diagnostics).
    pub(crate) fn len(&self) -> usize {
        let mut count = 0;
        let mut next = self.head.take();
        let first = next.clone();
        while let Some(task) = next {
            count += 1;
            next = task.core().next_ready.take();
            task.core().next_ready.set(next.clone());
        }
        self.head.set(first);
        count
    }

    /// Drops every listed context.
    pub(crate) fn clear(&self) {
        while self.pop_front().is_some() {}
    }
}

thread_local! {
    /// The address of this thread's hub while it exists: a plain thread-local read is cheaper
    /// than the lazily initialised one holding the hub (a state check and an indirect call).
    static HUB_ADDRESS: Cell<*const Hub> = const { Cell::new(std::ptr::null()) };
}

/// This thread's hub, if it exists and is not being dropped.
#[inline(always)]
pub(crate) fn hub_address() -> Option<NonNull<Hub>> {
    NonNull::new(HUB_ADDRESS.with(Cell::get) as *mut Hub)
}

/// Records (or, from the hub's `Drop`, forgets) this thread's hub.
pub(crate) fn set_hub_address(hub: Option<&Hub>) {
    HUB_ADDRESS.with(|address| address.set(hub.map_or(std::ptr::null(), |hub| hub as *const Hub)));
}

/// Runs `f` with the hub found by [`hub_address`].
#[inline(always)]
pub(crate) fn with_hub_at<R>(hub: NonNull<Hub>, f: impl FnOnce(&Hub) -> R) -> R {
    // SAFETY: the address was recorded from the thread-local that owns the hub, which never
    // moves it, and is forgotten as the hub's `Drop` begins; thread-locals are only dropped at
    // thread exit, so the hub is alive until then.
    f(unsafe { hub.as_ref() })
}

/// Parks the running greenlet: suspends it until a waiter wakes it (or a kill or timeout is
/// thrown into it), visiting the hub only to deliver such a throw. Returns `false`, doing
/// nothing, in a root context (which parks by running the hub loop instead).
#[inline(always)]
pub(crate) fn park_running_greenlet() -> bool {
    let core = CURRENT_CORE.with(Cell::get);
    if core.is_null() {
        return false;
    }
    // SAFETY: CURRENT_CORE is the running greenlet's core (`CurrentTask::enter`), alive while its
    // code runs, which includes all of this park.
    let core = unsafe { &*core };
    core.note_panicking();
    if core.throw_pending() {
        hub::with(|hub| hub.check_throw(core));
    }
    core.state.set(State::Parked);
    core.suspend();
    if core.end_park() {
        hub::with(|hub| hub.check_throw(core));
    }
    true
}

/// Suspends the running greenlet back to the hub loop that resumed it.
#[inline(always)]
pub(crate) fn suspend_running() {
    let core = CURRENT_CORE.with(Cell::get);
    assert!(!core.is_null(), "green: only a greenlet can suspend");
    // SAFETY: `resume` points CURRENT_CORE at the core of the greenlet it resumes for as long as
    // that greenlet runs, and restores the previous value when it suspends or ends; the greenlet
    // is alive meanwhile (its coroutine owns a reference to it) and this code runs on its behalf.
    unsafe { (*core).suspend() };
}

thread_local! {
    /// The running greenlet's core: for the switch back to the hub, and for the overflow handler
    /// (which may not touch `RefCell`s).
    static CURRENT_CORE: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
}

/// Writes the running greenlet's name for the stack-overflow report, without allocating.
pub(crate) fn write_current_name_for_signal(write: &mut dyn FnMut(&[u8])) {
    let core = CURRENT_CORE.with(|c| c.get());
    if core.is_null() {
        write(b"<unknown>");
        return;
    }
    // SAFETY: CURRENT_CORE points at the core of the greenlet executing on this thread, kept alive
    // by the hub loop for as long as it runs; the signal interrupted that greenlet, and `name` is
    // never mutated after spawn.
    let core = unsafe { &*core };
    match &core.name {
        Some(name) => write(name.as_bytes()),
        None => {
            write(b"Greenlet-");
            let mut digits = [0u8; 20];
            let mut i = digits.len();
            let mut n = core.id;
            loop {
                i -= 1;
                digits[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            write(&digits[i..]);
        }
    }
}

/// A handle to a spawned greenlet, producing its `T` (gevent's `Greenlet`).
///
/// Dropping the handle detaches the greenlet: it keeps running. Not `Send`: a greenlet lives and
/// dies on the thread that spawned it.
pub struct Greenlet<T> {
    task: TaskRef,
    result: PhantomData<T>,
}

impl<T> fmt::Debug for Greenlet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Greenlet")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl<T> Greenlet<T> {
    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.task.core().id
    }

    /// The name given to the builder, or `Greenlet-<id>`.
    pub fn name(&self) -> String {
        self.task.core().name()
    }

    /// Whether the greenlet has finished (returned, panicked or was killed).
    pub fn is_ready(&self) -> bool {
        self.task.core().state.get() == State::Dead
    }

    /// Whether the greenlet has ended with a value (gevent's `successful()`); see
    /// [`GreenletRef::is_successful`].
    pub fn is_successful(&self) -> bool {
        self.as_ref().is_successful()
    }

    /// Whether the greenlet has started running (gevent's `bool(g)` before it is dead).
    pub fn is_started(&self) -> bool {
        self.task.core().state.get() != State::New
    }

    /// A type-erased reference to this greenlet.
    pub fn as_ref(&self) -> GreenletRef {
        GreenletRef {
            task: self.task.clone(),
        }
    }

    /// Blocks until the greenlet finishes and returns its value, or why there is none:
    /// [`JoinError::LoopExit`] when called outside any greenlet with nothing that could ever
    /// finish it (the deadlock policy of [`crate::sync`]).
    pub fn join(self) -> Result<T, JoinError>
    where
        T: 'static,
    {
        if let Err(exit) = wait_dead(&self.task, None) {
            return Err(JoinError::LoopExit(exit));
        }
        self.take_result()
    }

    fn take_result(&self) -> Result<T, JoinError>
    where
        T: 'static,
    {
        let mut out: Option<Result<T, JoinError>> = None;
        self.task.take_result(&mut out);
        out.unwrap_or(Err(JoinError::AlreadyJoined))
    }

    /// Waits at most `timeout`; `None` if the greenlet is still running (the handle stays usable).
    /// `Some(Err(JoinError::LoopExit))` at once, without waiting out `timeout`, when called
    /// outside any greenlet with nothing else that could finish it.
    pub fn join_timeout(&self, timeout: Duration) -> Option<Result<T, JoinError>>
    where
        T: 'static,
    {
        match wait_dead(&self.task, Some(timeout)) {
            Err(exit) => Some(Err(JoinError::LoopExit(exit))),
            Ok(false) => None,
            Ok(true) => Some(self.take_result()),
        }
    }

    /// Waits for the greenlet to finish without taking its result; `false` on timeout. `Err` at
    /// once, timed or not, when called outside any greenlet with nothing that could finish it.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, LoopExit> {
        wait_dead(&self.task, timeout)
    }

    /// Kills the greenlet and waits until it is dead: its pending blocking call unwinds with
    /// [`GreenletExit`], destructors run, `join` returns [`JoinError::Killed`]. A greenlet that never
    /// started never runs (a `spawn_later` start timer is cancelled). Killing a dead greenlet does
    /// nothing.
    ///
    /// The one blocking call that never reports a deadlock: it is a clean-up call, made from
    /// destructors too, so if nothing could ever finish the dying greenlet (its destructor blocks
    /// on something that can never come), it returns with the greenlet still alive.
    pub fn kill(&self) {
        self.as_ref().kill();
    }

    /// Kills and waits at most `timeout` for the greenlet to die; returns whether it is dead
    /// (`false` at once if nothing could ever finish it, see [`kill`](Self::kill)).
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        self.as_ref().kill_timeout(timeout)
    }

    /// Requests the kill and returns at once.
    pub fn kill_nowait(&self) {
        kill_nowait(&self.task);
    }

    /// Adds a callback run after the greenlet ends, however it ended (gevent's `link`). See
    /// [`GreenletRef::link`].
    pub fn link(&self, callback: impl FnOnce(GreenletRef) + 'static) -> LinkId {
        self.as_ref().link(callback)
    }

    /// Adds a callback run only if the greenlet returns a value. See [`GreenletRef::link_value`].
    pub fn link_value(&self, callback: impl FnOnce(GreenletRef) + 'static) -> LinkId {
        self.as_ref().link_value(callback)
    }

    /// Adds a callback run only if the greenlet panics or is killed. See
    /// [`GreenletRef::link_exception`].
    pub fn link_exception(&self, callback: impl FnOnce(GreenletRef) + 'static) -> LinkId {
        self.as_ref().link_exception(callback)
    }

    /// Adds a callback run inline as the greenlet ends; it must not block. See
    /// [`GreenletRef::rawlink`].
    pub fn rawlink(&self, callback: impl FnOnce(GreenletRef) + 'static) -> LinkId {
        self.as_ref().rawlink(callback)
    }

    /// Removes a link callback that has not run yet; returns whether it was there.
    pub fn unlink(&self, link: LinkId) -> bool {
        self.task.core().remove_link(link)
    }
}

// Unwind safety of the handles: a handle only reads its greenlet's record or asks the hub to
// act on it, and the runtime updates a record with no user code running halfway (link callbacks
// are taken off the list before they run, the result is stored whole after the body returned or
// unwound). A panic caught around code using a handle therefore cannot leave the greenlet's
// state half-updated for the handle to observe, so `catch_unwind` needs no `AssertUnwindSafe`.
impl<T> UnwindSafe for Greenlet<T> {}
impl<T> RefUnwindSafe for Greenlet<T> {}
impl UnwindSafe for GreenletRef {}
impl RefUnwindSafe for GreenletRef {}
impl<T> UnwindSafe for ScopedGreenlet<'_, T> {}
impl<T> RefUnwindSafe for ScopedGreenlet<'_, T> {}

/// A type-erased reference to a greenlet or to a thread's root context (see [`current`]).
#[derive(Clone)]
pub struct GreenletRef {
    task: TaskRef,
}

impl fmt::Debug for GreenletRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenletRef")
            .field("id", &self.id())
            .field("name", &self.name())
            .finish()
    }
}

impl PartialEq for GreenletRef {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl GreenletRef {
    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.task.core().id
    }

    /// The greenlet's name.
    pub fn name(&self) -> String {
        self.task.core().name()
    }

    /// Whether this is a thread's root context (the main thread or a plain thread), not a greenlet.
    pub fn is_root(&self) -> bool {
        self.task.core().is_root
    }

    /// Whether the greenlet has finished.
    pub fn is_ready(&self) -> bool {
        self.task.core().state.get() == State::Dead
    }

    /// See [`Greenlet::kill`].
    pub fn kill(&self) {
        kill_nowait(&self.task);
        let _ = wait_dead(&self.task, None);
    }

    /// See [`Greenlet::kill_timeout`].
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        kill_nowait(&self.task);
        wait_dead(&self.task, Some(timeout)).unwrap_or(false)
    }

    /// Requests the kill and returns at once.
    pub fn kill_nowait(&self) {
        kill_nowait(&self.task);
    }

    /// Whether the greenlet has ended with a value (it neither panicked nor was killed).
    ///
    /// # Caveats
    ///
    /// gevent counts a greenlet killed with `GreenletExit` as successful; here a killed greenlet
    /// has no value, so it is not.
    pub fn is_successful(&self) -> bool {
        self.is_ready() && !self.task.core().failed.get()
    }

    /// Adds a callback run after the greenlet ends, however it ended (gevent's `link`); it
    /// receives the finished greenlet. Each callback runs in a greenlet of its own, spawned as
    /// the greenlet ends (or at once, if it has), in the order added, so it may block; a callback
    /// that panics is reported like any greenlet's panic and does not affect the others. Joiners
    /// of the greenlet are woken before the callbacks start.
    pub fn link(&self, callback: impl FnOnce(GreenletRef) + 'static) -> LinkId {
        self.add_link(LinkWhen::Always, false, callback)
    }

    /// [`link`](GreenletRef::link), run only if the greenlet returns a value (gevent's
    /// `link_value`; unlike gevent's, not after a kill: see
    /// [`is_successful`](Self::is_successful)).
    pub fn link_value(&self, callback: impl FnOnce(GreenletRef) + 'static) -> LinkId {
        self.add_link(LinkWhen::Value, false, callback)
    }

    /// [`link`](GreenletRef::link), run only if the greenlet panics or is killed (gevent's
    /// `link_exception`; unlike gevent's, also after a kill, which gevent counts as a success
    /// because its `GreenletExit` becomes the value: see [`is_successful`](Self::is_successful)).
    pub fn link_exception(&self, callback: impl FnOnce(GreenletRef) + 'static) -> LinkId {
        self.add_link(LinkWhen::Exception, false, callback)
    }

    /// Adds a callback run inline as the greenlet ends, on its stack (gevent's `rawlink`), or at
    /// once if it has ended; raw and spawned callbacks are dispatched in the order added.
    ///
    /// The callback must not block (no green I/O, sleep or wait): it runs while the greenlet is
    /// ending, after its joiners were woken. Use it for cheap notification, e.g. waking a waiter;
    /// use [`link`](GreenletRef::link) for anything else. A panic in it is reported and ends only
    /// the callback.
    pub fn rawlink(&self, callback: impl FnOnce(GreenletRef) + 'static) -> LinkId {
        self.add_link(LinkWhen::Always, true, callback)
    }

    /// Removes a link callback that has not run yet; returns whether it was there (gevent's
    /// `unlink`).
    pub fn unlink(&self, link: LinkId) -> bool {
        self.task.core().remove_link(link)
    }

    fn add_link(
        &self,
        when: LinkWhen,
        raw: bool,
        callback: impl FnOnce(GreenletRef) + 'static,
    ) -> LinkId {
        let (link, id) = Link::new(when, raw, callback);
        self.task.core().add_link(link);
        id
    }

    /// Waits for the greenlet to finish; `false` on timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, LoopExit> {
        wait_dead(&self.task, timeout)
    }
}

fn kill_nowait(task: &TaskRef) {
    let core = task.core();
    if core.is_root {
        return;
    }
    match core.state.get() {
        State::Dead => {}
        State::New => {
            // A `spawn_later` greenlet's start timer goes too: it would keep the hub busy (and
            // hide a deadlock) until it fired for nothing.
            if let Some(timer) = core.extras.get().and_then(|e| e.start_timer.take()) {
                hub::with(|hub| hub.cancel_timer(timer));
            }
            task.kill_unstarted()
        }
        State::Running if hub::is_current(core) => resume_unwind(Box::new(GreenletExit)),
        _ => hub::with(|hub| hub.throw(task, Throw::Kill)),
    }
}

/// Blocks the caller until `task` is dead or `timeout` passes; `Ok(false)` on timeout.
pub(crate) fn wait_dead(task: &TaskRef, timeout: Option<Duration>) -> Result<bool, LoopExit> {
    let core = task.core();
    if core.state.get() == State::Dead {
        return Ok(true);
    }
    if hub::is_current(core) {
        panic!(
            "greenlet '{}' cannot wait for itself to finish",
            core.name()
        );
    }
    let deadline = timeout.map(hub::deadline_after);
    loop {
        let waiter = hub::current_waiter();
        let key = waiter.key();
        core.add_joiner(waiter);
        let result = hub::park_until(deadline);
        core.remove_joiner(key);
        let timed_out = result?;
        if core.state.get() == State::Dead {
            return Ok(true);
        }
        if timed_out {
            return Ok(false);
        }
    }
}

/// Configures a greenlet before spawning it (std's `thread::Builder`).
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with the default name and stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the greenlet (shown in panic and stack-overflow reports and by the monitor).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Usable stack size in bytes, rounded up to whole pages (at least 16 KiB). The default is
    /// `GREEN_STACK_SIZE` or 512 KiB; untouched stack pages cost no memory.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns the greenlet; it first runs when the caller next blocks or yields.
    pub fn spawn<T: 'static, F: FnOnce() -> T + 'static>(self, f: F) -> Greenlet<T> {
        let greenlet = self.build(f);
        hub::with(|hub| hub.schedule_new(greenlet.task.clone()));
        greenlet
    }

    /// Spawns the greenlet to start after `delay`.
    pub fn spawn_later<T: 'static, F: FnOnce() -> T + 'static>(
        self,
        delay: Duration,
        f: F,
    ) -> Greenlet<T> {
        let greenlet = self.build(f);
        let task = greenlet.task.clone();
        hub::with(|hub| hub.start_later(task, delay));
        greenlet
    }

    fn build<T: 'static, F: FnOnce() -> T + 'static>(self, f: F) -> Greenlet<T> {
        let stack_size = self
            .stack_size
            .map(stack::round_stack_size)
            .unwrap_or_else(stack::default_stack_size);
        let task = TaskAlloc::allocate(
            self.name.map(String::into_boxed_str),
            stack_size,
            false,
            Payload {
                result: Cell::new(None),
                body: Cell::new(Some(f)),
            },
        );
        Greenlet {
            task,
            result: PhantomData,
        }
    }
}

/// Spawns a greenlet running `f` (gevent's `spawn`). It first runs when the caller next blocks
/// or yields; the main thread needs no setup.
///
/// `f` need not be `Send`: the greenlet stays on this thread, so it may hold `Rc`s and
/// `RefCell`s shared with its spawner.
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use std::time::Duration;
///
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let greenlets: Vec<_> = [30, 10, 20]
///     .into_iter()
///     .map(|ms| {
///         let log = log.clone();
///         green_runtime::spawn(move || {
///             green_runtime::sleep(Duration::from_millis(ms)); // parks this greenlet only
///             log.borrow_mut().push(ms);
///             ms * 2
///         })
///     })
///     .collect();
/// let doubled: Vec<u64> = greenlets.into_iter().map(|g| g.join().unwrap()).collect();
/// assert_eq!(doubled, [60, 20, 40]); // join gives each greenlet's own result
/// assert_eq!(*log.borrow(), [10, 20, 30]); // they slept at the same time
/// ```
pub fn spawn<T: 'static, F: FnOnce() -> T + 'static>(f: F) -> Greenlet<T> {
    Builder::new().spawn(f)
}

/// Spawns a greenlet that starts after `delay` (gevent's `spawn_later`).
pub fn spawn_later<T: 'static, F: FnOnce() -> T + 'static>(delay: Duration, f: F) -> Greenlet<T> {
    Builder::new().spawn_later(delay, f)
}

/// The running greenlet, or the thread's root context when called outside any greenlet.
pub fn current() -> GreenletRef {
    GreenletRef {
        task: hub::with(Hub::current_task),
    }
}

/// Gives the kernel back the pages of the running greenlet's stack below the caller's frame.
///
/// A greenlet's stack keeps every page its deepest call ever touched; one about to wait long
/// after deep work (an idle keep-alive connection after its request) can call this first so
/// that only the pages its waiting frames use stay resident. Costs a system call, and each page
/// given back costs a page fault (zero-filled) when a later call goes that deep again. Returns
/// the bytes given back; 0 outside a greenlet (a thread's own stack is left alone).
pub fn trim_stack() -> usize {
    stack::release_below_caller()
}

/// A coroutine's yielder made reachable from any depth of that coroutine's stack, for raw
/// greenlets ([`crate::raw`]), whose `switch` is a method call made from arbitrary user code.
///
/// The stored pointer is dereferenced only while the coroutine runs: `context` holds the id of
/// the hub context (root or greenlet) that resumed it, and is cleared while it is suspended
/// through [`RawYielder::suspend`], the only way to reach its yielder.
pub(crate) struct RawYielder<I, Y> {
    yielder: Cell<*const Yielder<I, Y>>,
    context: Cell<u64>,
}

impl<I: 'static, Y: 'static> RawYielder<I, Y> {
    pub(crate) fn new() -> Rc<RawYielder<I, Y>> {
        Rc::new(RawYielder {
            yielder: Cell::new(std::ptr::null()),
            context: Cell::new(0),
        })
    }

    /// Builds a coroutine on `stack` running `body`, whose yielder `this` becomes.
    pub(crate) fn coroutine<R: 'static>(
        this: &Rc<RawYielder<I, Y>>,
        stack: SlabStack,
        body: impl FnOnce(I) -> R + 'static,
    ) -> Coroutine<I, Y, R, SlabStack> {
        struct Unbind<'a, I, Y>(&'a RawYielder<I, Y>);
        impl<I, Y> Drop for Unbind<'_, I, Y> {
            fn drop(&mut self) {
                self.0.yielder.set(std::ptr::null());
                self.0.context.set(0);
            }
        }
        let this = Rc::clone(this);
        Coroutine::with_stack(stack, move |yielder: &Yielder<I, Y>, input: I| {
            assert!(
                this.yielder.get().is_null(),
                "a RawYielder serves one coroutine at a time"
            );
            this.yielder.set(yielder as *const _);
            this.context.set(current_context_id());
            let _unbind = Unbind(&this);
            body(input)
        })
    }

    /// Suspends the coroutine to whoever resumed it; returns the value it is next resumed with.
    ///
    /// Panics unless the coroutine is running in the hub context executing now.
    pub(crate) fn suspend(&self, value: Y) -> I {
        let yielder = self.yielder.get();
        assert!(
            !yielder.is_null() && self.context.get() == current_context_id(),
            "raw greenlet suspended from outside the context that runs it"
        );
        self.context.set(0);
        // SAFETY: `yielder` was stored by this coroutine's body and is nulled when the body exits,
        // so it points into the live coroutine stack. `context` was set (the coroutine was resumed
        // and has not been suspended since: only this function suspends it, and it clears
        // `context` first) and names the hub context executing now, whose execution is nested in
        // the running coroutine: so we are on its stack or on a stack it resumed, and corosensei
        // saves the suspension point wherever the stack pointer is.
        let input = unsafe { (*yielder).suspend(value) };
        self.context.set(current_context_id());
        input
    }
}

/// The id of the running hub context: the running greenlet, or the thread's root context.
/// Runs `f` with a [`Scope`] to spawn greenlets that may borrow from the caller; when `f`
/// returns, waits until every greenlet spawned in the scope has ended, and when `f` unwinds
/// (a panic, a kill, a timeout), kills them first (gevent's `with spawn(f) as g:`; Rust's
/// [`std::thread::scope`]).
///
/// ```
/// let mut lines = vec![String::from("a"), String::from("b")];
/// let total = green_runtime::scope(|s| {
///     let first = s.spawn(|| lines[0].len());
///     let second = s.spawn(|| lines[1].len());
///     first.join().unwrap() + second.join().unwrap()
/// });
/// lines.push(String::from("c")); // every borrow ended with the scope
/// assert_eq!(total, 2);
/// ```
///
/// Greenlets not joined are waited for at the end of the scope; one that panicked was reported
/// as usual and does not make the scope panic (unlike `std::thread::scope`). Greenlets spawned
/// in the scope may spawn more through the same `&Scope`.
///
/// # Implementation
///
/// Borrowing is sound because the scope cannot end while one of its greenlets lives: the final
/// wait is not interruptible. A kill or timeout thrown at the waiting caller is caught, the
/// scope's greenlets are killed and waited for, and only then does the throw continue; from a
/// root context, a wait that could never end (the deadlock error) kills them and waits again.
/// A greenlet of the scope never outlives it either when its thread exits: the caller is then
/// itself a blocked greenlet, abandoned with its stack (and the data borrowed) leaked.
///
/// # Panics
///
/// After every greenlet of the scope has ended: with the deadlock error, if from a root context
/// the scope's greenlets could never have finished and were killed.
pub fn scope<'env, F, R>(f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let scope = Scope {
        children: RefCell::new(Vec::new()),
        scope: PhantomData,
        env: PhantomData,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    match outcome {
        Ok(value) => {
            scope.end(false);
            value
        }
        Err(payload) => {
            scope.end(true);
            resume_unwind(payload)
        }
    }
}

/// Spawns greenlets that may borrow what outlives `'env`; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    children: RefCell<Vec<GreenletRef>>,
    /// Invariant in both lifetimes, as `std::thread::Scope`.
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("greenlets", &self.children.borrow().len())
            .finish()
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Spawns a greenlet running `f`, which may borrow data that outlives the scope; it first
    /// runs when the caller next blocks or yields.
    pub fn spawn<T, F>(&'scope self, f: F) -> ScopedGreenlet<'scope, T>
    where
        F: FnOnce() -> T + 'scope,
        T: 'scope,
    {
        let result = Rc::new(Cell::new(None));
        let slot = result.clone();
        let body: Box<dyn FnOnce() + 'scope> = Box::new(move || slot.set(Some(f())));
        // SAFETY: the body runs (or is dropped, if the greenlet is killed before it starts)
        // before the greenlet is dead, and `scope` does not return or unwind before every
        // greenlet it spawned is dead (see its `# Implementation`); so nothing the body borrows
        // for `'scope` is used after `'scope` ends. A dead greenlet's record holds no body.
        let body: Box<dyn FnOnce() + 'static> = unsafe { std::mem::transmute(body) };
        let greenlet = spawn(body);
        self.children.borrow_mut().push(greenlet.as_ref());
        ScopedGreenlet {
            greenlet,
            result,
            scope: PhantomData,
        }
    }

    /// Waits until every greenlet of the scope is dead, killing them first if `kill`; catches
    /// throws aimed at the caller meanwhile and re-raises the first once they are.
    fn end(&self, kill: bool) {
        if kill {
            self.kill_living();
        }
        let mut thrown: Option<Box<dyn Any + Send>> = None;
        let mut deadlock: Option<LoopExit> = None;
        loop {
            // Spawned greenlets may add more meanwhile: look again each time.
            let living = self
                .children
                .borrow()
                .iter()
                .find(|greenlet| !greenlet.is_ready())
                .cloned();
            let Some(greenlet) = living else { break };
            match catch_unwind(AssertUnwindSafe(|| greenlet.wait(None))) {
                Ok(Ok(_)) => {}
                Ok(Err(exit)) => {
                    deadlock.get_or_insert(exit);
                    self.kill_living();
                }
                Err(payload) => {
                    if thrown.is_none() {
                        thrown = Some(payload);
                    }
                    self.kill_living();
                }
            }
        }
        self.children.borrow_mut().clear();
        if let Some(payload) = thrown {
            resume_unwind(payload);
        }
        if let (Some(exit), false) = (deadlock, kill) {
            panic!("{exit}");
        }
    }

    fn kill_living(&self) {
        let living: Vec<GreenletRef> = self
            .children
            .borrow()
            .iter()
            .filter(|greenlet| !greenlet.is_ready())
            .cloned()
            .collect();
        for greenlet in living {
            greenlet.kill_nowait();
        }
    }
}

/// A greenlet spawned in a [`scope`]: [`Greenlet`]'s handle, usable only inside the scope.
pub struct ScopedGreenlet<'scope, T> {
    greenlet: Greenlet<()>,
    result: Rc<Cell<Option<T>>>,
    scope: PhantomData<&'scope ()>,
}

impl<T> fmt::Debug for ScopedGreenlet<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedGreenlet")
            .field("id", &self.greenlet.id())
            .field("ready", &self.greenlet.is_ready())
            .finish()
    }
}

impl<T> ScopedGreenlet<'_, T> {
    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.greenlet.id()
    }

    /// Whether the greenlet has finished.
    pub fn is_ready(&self) -> bool {
        self.greenlet.is_ready()
    }

    /// A type-erased reference to the greenlet (to wait for, kill or link to).
    pub fn as_ref(&self) -> GreenletRef {
        self.greenlet.as_ref()
    }

    /// Blocks until the greenlet finishes and returns its value, or why there is none; see
    /// [`Greenlet::join`].
    pub fn join(self) -> Result<T, JoinError> {
        self.greenlet.join()?;
        self.result.take().ok_or(JoinError::AlreadyJoined)
    }

    /// Kills the greenlet and waits until it is dead; see [`Greenlet::kill`].
    pub fn kill(&self) {
        self.greenlet.kill();
    }
}

pub(crate) fn current_context_id() -> u64 {
    hub::with(|hub| hub.current_task().core().id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_list_matches_a_deque_under_a_long_random_sequence() {
        let list = ReadyList::new();
        let tasks: Vec<TaskRef> = (0..8).map(|_| new_root()).collect();
        let mut model: std::collections::VecDeque<u64> = Default::default();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let task = &tasks[(state % 8) as usize];
            if state & 0x100 == 0 {
                if !model.contains(&task.core().id) {
                    model.push_back(task.core().id);
                }
                list.push_back(task.clone());
            } else {
                let popped = list.pop_front().map(|task| task.core().id);
                assert_eq!(popped, model.pop_front());
            }
            assert_eq!(list.is_empty(), model.is_empty());
        }
        assert_eq!(list.len(), model.len());
        list.clear();
        assert!(tasks.iter().all(|task| task.core().refs.get() == 1));
    }

    #[test]
    fn ready_list_is_fifo_lists_a_context_once_and_drops_what_it_holds() {
        let list = ReadyList::new();
        let tasks = [new_root(), new_root(), new_root()];
        assert!(list.is_empty() && list.last().is_null());
        list.push_back(tasks[0].clone());
        list.push_back(tasks[1].clone());
        list.push_back(tasks[0].clone());
        list.push_back(tasks[2].clone());
        assert_eq!(list.len(), 3, "a listed context is not listed again");
        assert!(std::ptr::eq(list.last(), tasks[2].core()));
        assert!(tasks.iter().all(|task| task.core().refs.get() == 2));
        let order: Vec<u64> = std::iter::from_fn(|| list.pop_front())
            .map(|task| task.core().id)
            .collect();
        let ids: Vec<u64> = tasks.iter().map(|task| task.core().id).collect();
        assert_eq!(order, ids);
        assert!(list.is_empty() && list.last().is_null());
        list.push_back(tasks[1].clone());
        list.push_back(tasks[0].clone());
        assert_eq!(list.pop_front().map(|task| task.core().id), Some(ids[1]));
        list.push_back(tasks[2].clone());
        assert_eq!(list.len(), 2);
        list.clear();
        assert!(list.is_empty());
        assert!(tasks.iter().all(|task| task.core().refs.get() == 1));
        assert!(tasks.iter().all(|task| !task.core().listed.get()));
    }
}
