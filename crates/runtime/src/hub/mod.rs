//! The hub: one per OS thread, created by the first green call on that thread.
//!
//! The hub is a loop, not a thread: whichever root context blocks (the main thread, a plain thread,
//! or code running outside any greenlet) runs it until its own wait is satisfied, the way gevent's
//! main greenlet switches to the hub. Each turn of the loop runs ready greenlets in FIFO order for a
//! bounded batch, fires due timers, and polls `mio` (without blocking while greenlets are ready), so
//! neither timers nor I/O starve behind a busy ready queue.
//!
//! Every blocking primitive is built on one mechanism: take a [`Waiter`] for the current context,
//! hand it to whatever will fire (a timer, an fd, an event's waiter list), and [`park`]. A waiter
//! wakes only the park it was created for (it carries the park's generation), so stale wake-ups
//! from sources a greenlet has stopped waiting on are impossible.

pub(crate) mod io;
pub(crate) mod remote;

use std::cell::{Cell, RefCell, RefMut};
use std::fmt;
use std::time::{Duration, Instant};

use crate::greenlet::{self, Core, CurrentTask, ReadyList, State, TaskRef, Throw};
use crate::timer::{TimerKey, Timers};

/// Greenlets resumed between two polls of the event loop.
const BATCH: u32 = 256;

/// The error of a root context's wait that nothing could ever satisfy (gevent's `LoopExit`).
///
/// Reported at once by every blocking call, timed or not, made outside any greenlet when
/// nothing but the call's own timeout could ever end it; see [`crate::sync`] for the policy (APIs
/// that return a `Result` give it as `Err`, the others panic with its message).
#[derive(Clone)]
pub struct LoopExit {
    waiter: String,
}

impl fmt::Debug for LoopExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for LoopExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deadlock: {} is waiting, but no greenlet is ready, no timer but its own timeout is \
             pending, no I/O is registered and no thread-pool job is running, so nothing can ever \
             wake it (gevent's LoopExit)",
            self.waiter
        )
    }
}

impl std::error::Error for LoopExit {}

/// What a due timer does.
pub(crate) enum TimerAction {
    Wake(Waiter),
    Throw(TaskRef, u64),
    Start(TaskRef),
    Callback(Box<dyn FnOnce()>),
}

/// A park's identity (see [`Waiter::key`]); only compared, never dereferenced.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaiterKey {
    task: *const u8,
    generation: u32,
}

/// Wakes one park of one greenlet (or root context).
#[derive(Clone)]
pub struct Waiter {
    task: TaskRef,
    generation: u32,
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("greenlet", &self.task.core().name())
            .field("generation", &self.generation)
            .finish()
    }
}

impl Waiter {
    /// Wakes the park this waiter was made for, if it is still in progress.
    #[inline]
    pub fn wake(&self) {
        with(|hub| self.wake_on(hub));
    }

    #[inline(always)]
    pub(crate) fn wake_on(&self, hub: &Hub) {
        wake_parked(hub, &self.task, self.generation);
    }

    /// [`Waiter::wake_on`] for a waiter given away: its reference to the context goes into the
    /// ready queue as is (no count round trip), or is dropped if that park is over.
    #[inline(always)]
    pub(crate) fn wake_into(self, hub: &Hub) {
        if self.task.core().is_parked_in(self.generation) {
            hub.make_ready(self.task);
        }
    }

    /// Whether both wake the same park.
    #[inline]
    pub fn same(&self, other: &Waiter) -> bool {
        self.key() == other.key()
    }

    /// What identifies the park this waiter wakes, without holding the greenlet.
    #[inline]
    pub(crate) fn key(&self) -> WaiterKey {
        WaiterKey {
            task: self.task.addr(),
            generation: self.generation,
        }
    }

    /// Whether the park this waiter was made for is still in progress.
    #[inline]
    pub fn is_waiting(&self) -> bool {
        self.task.core().is_parked_in(self.generation)
    }
}

pub(crate) struct Hub {
    ready: ReadyList,
    timers: RefCell<Timers<TimerAction>>,
    pub(crate) io: io::Reactor,
    pub(crate) remote: remote::RemoteSide,
    current: CurrentTask,
    epoch: Instant,
    /// The latest clock reading ([`Hub::now`]), in hub nanoseconds and as read: at least once
    /// per loop turn.
    recent_now: Cell<u64>,
    recent_instant: Cell<Instant>,
    budget: Cell<u32>,
    /// Pending external wake-ups (thread-pool jobs, cross-thread channels) that keep a blocked root
    /// context from being declared deadlocked.
    external_refs: Cell<usize>,
    /// Armed timers that only bound a root context's timed wait (see [`park_until`]): they are
    /// not work that could ever wake anything else, so a root whose park has nothing else
    /// pending is deadlocked even though its timeout would eventually end the wait.
    root_timeouts: Cell<usize>,
    monitor: RefCell<Option<crate::monitor::HubMonitor>>,
    /// Whether `monitor` is set (checked on every switch without borrowing it).
    monitor_on: Cell<bool>,
}

thread_local! {
    static HUB: Hub = Hub::new();
    /// Whether this thread's hub exists, so the panic hook can ask without creating one.
    static HUB_EXISTS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's hub, creating it on first use.
#[inline(always)]
pub(crate) fn with<R>(f: impl FnOnce(&Hub) -> R) -> R {
    match greenlet::hub_address() {
        Some(hub) => greenlet::with_hub_at(hub, f),
        None => HUB.with(|hub| {
            greenlet::set_hub_address(Some(hub));
            f(hub)
        }),
    }
}

/// Runs `f` with this thread's hub if it exists and is not being dropped; never creates one.
pub(crate) fn try_with<R>(f: impl FnOnce(&Hub) -> R) -> Option<R> {
    greenlet::hub_address().map(|hub| greenlet::with_hub_at(hub, f))
}

impl Hub {
    fn new() -> Hub {
        HUB_EXISTS.with(|exists| exists.set(true));
        crate::overflow::ensure_alt_stack();
        crate::report::install_panic_hook();
        let root = greenlet::new_root();
        let io = io::Reactor::new().expect("green: cannot create the hub's epoll instance");
        let registry = io
            .registry()
            .expect("green: cannot clone the epoll registry");
        let monitor = crate::monitor::HubMonitor::from_env();
        let epoch = Instant::now();
        if let Some(monitor) = &monitor {
            // The first green call runs in the root context, which holds the thread from now on.
            monitor.on_resume(root.core());
        }
        Hub {
            ready: ReadyList::new(),
            timers: RefCell::new(Timers::new()),
            remote: remote::RemoteSide::new(&registry)
                .expect("green: cannot create the hub's cross-thread waker"),
            io,
            current: CurrentTask::new(root),
            epoch,
            recent_now: Cell::new(0),
            recent_instant: Cell::new(epoch),
            budget: Cell::new(BATCH),
            external_refs: Cell::new(0),
            root_timeouts: Cell::new(0),
            monitor_on: Cell::new(monitor.is_some()),
            monitor: RefCell::new(monitor),
        }
    }

    pub(crate) fn set_monitor(&self, monitor: Option<crate::monitor::HubMonitor>) {
        self.monitor_on.set(monitor.is_some());
        *self.monitor.borrow_mut() = monitor;
        // The caller is running outside the hub loop from now on.
        self.monitor_context_runs();
    }

    /// Tells the monitor (if on) that the running greenlet waits inside a patched libc call, or
    /// no longer does.
    pub(crate) fn monitor_patched_wait(&self, entering: bool) {
        if self.monitor_on.get() {
            if let Some(monitor) = &*self.monitor.borrow() {
                monitor.note_patched_wait(self.current.core(), entering);
            }
        }
    }

    /// Tells the monitor the running context (the root, returning from the hub loop) holds the
    /// thread from now on: a root that blocks its own thread between green calls is timed like a
    /// greenlet that does.
    #[inline(always)]
    fn monitor_context_runs(&self) {
        if self.monitor_on.get() {
            self.monitor_root_change(true);
        }
    }

    /// Tells the monitor the hub loop runs from now on (the root context entered it).
    #[inline(always)]
    fn monitor_hub_runs(&self) {
        if self.monitor_on.get() {
            self.monitor_root_change(false);
        }
    }

    #[cold]
    #[inline(never)]
    fn monitor_root_change(&self, context_runs: bool) {
        if let Some(monitor) = &*self.monitor.borrow() {
            if context_runs {
                monitor.on_resume(self.current.core());
            } else {
                monitor.on_suspend();
            }
        }
    }

    #[inline(always)]
    pub(crate) fn current_task(&self) -> TaskRef {
        self.current.task()
    }

    /// A waiter for the running context's next park.
    fn current_waiter(&self) -> Waiter {
        Waiter {
            task: self.current.task(),
            generation: self.current.core().generation.get(),
        }
    }

    /// Nanoseconds since this hub's epoch.
    pub(crate) fn now(&self) -> u64 {
        let instant = Instant::now();
        let now = instant.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.recent_now.set(now);
        self.recent_instant.set(instant);
        now
    }

    /// The latest clock reading, without reading the clock: at most one loop turn old (a turn
    /// reads it once), never later than [`now`](Self::now).
    #[inline]
    pub(crate) fn recent_now(&self) -> u64 {
        self.recent_now.get()
    }

    pub(crate) fn nanos_at(&self, instant: Instant) -> u64 {
        let nanos = instant.saturating_duration_since(self.epoch).as_nanos();
        nanos.min(u64::MAX as u128) as u64
    }

    pub(crate) fn add_timer(&self, deadline: u64, action: TimerAction) -> TimerKey {
        self.timers.borrow_mut().add(deadline, action)
    }

    pub(crate) fn cancel_timer(&self, key: TimerKey) {
        let action = self.timers.borrow_mut().cancel(key);
        drop(action);
    }

    pub(crate) fn timer_is_armed(&self, key: TimerKey) -> bool {
        self.timers.borrow().is_armed(key)
    }

    pub(crate) fn add_external_ref(&self) {
        self.external_refs.set(self.external_refs.get() + 1);
    }

    pub(crate) fn release_external_ref(&self) {
        self.external_refs.set(self.external_refs.get() - 1);
    }

    /// Queues a freshly spawned greenlet.
    pub(crate) fn schedule_new(&self, task: TaskRef) {
        self.ready.push_back(task);
    }

    pub(crate) fn start_later(&self, task: TaskRef, delay: Duration) {
        let deadline = self.now().saturating_add(saturating_nanos(delay));
        let core = task.core();
        let key = self.add_timer(deadline, TimerAction::Start(task.clone()));
        core.extras().start_timer.set(Some(key));
    }

    /// Makes a parked greenlet ready, or marks a parked root context woken.
    #[inline(always)]
    pub(crate) fn make_ready(&self, task: TaskRef) {
        let core = task.core();
        if core.is_root {
            core.woken.set(true);
            core.state.set(State::Running);
        } else {
            core.state.set(State::Ready);
            self.ready.push_back(task);
        }
    }

    /// Delivers a kill or timeout to `task` at its next blocking point.
    pub(crate) fn throw(&self, task: &TaskRef, throw: Throw) {
        let core = task.core();
        if core.state.get() == State::Dead || !core.set_throw(throw) {
            return;
        }
        if core.state.get() == State::Parked {
            core.woken_by_throw.set(true);
            self.make_ready(task.clone());
        }
    }

    /// Withdraws `task`'s pending timeout `id` (its scope ended or its [`Timeout`] was
    /// cancelled). If a queued timeout takes its place while `task` is parked (cancelled from
    /// another greenlet), the park is woken to deliver it.
    ///
    /// [`Timeout`]: crate::Timeout
    pub(crate) fn clear_timeout_throw(&self, task: &TaskRef, id: u64) {
        let core = task.core();
        if core.clear_timeout_throw(id) && core.state.get() == State::Parked {
            core.woken_by_throw.set(true);
            self.make_ready(task.clone());
        }
    }

    #[inline(always)]
    fn run_task(&self, task: TaskRef) {
        let core = task.core();
        match core.state.get() {
            State::Dead => return,
            State::New => match greenlet::start(&task) {
                Ok(()) => {}
                Err(err) => {
                    log::error!(
                        "cannot allocate a stack for greenlet '{}': {err}; retrying later",
                        core.name()
                    );
                    self.ready.push_back(task);
                    return;
                }
            },
            _ => {}
        }
        let Some(slot) = greenlet::lock_resumable(core) else {
            return;
        };
        let entered = self.current.enter(&task);
        let finished = if self.monitor_on.get() {
            self.resume_monitored(core, slot)
        } else {
            greenlet::resume(core, slot)
        };
        drop(entered);
        if finished {
            core.state.set(State::Dead);
        }
    }

    /// [`greenlet::resume`] under the blocking monitor, which times every resume.
    #[cold]
    #[inline(never)]
    fn resume_monitored(&self, core: &Core, slot: RefMut<'_, Option<greenlet::Co>>) -> bool {
        if let Some(monitor) = &*self.monitor.borrow() {
            monitor.on_resume(core);
        }
        let finished = greenlet::resume(core, slot);
        if let Some(monitor) = &*self.monitor.borrow() {
            monitor.on_suspend();
        }
        finished
    }

    /// Runs the loop until the root context `root` is woken. Returns `Err` when nothing could
    /// ever wake it.
    fn run_until_woken(&self, root: &Core) -> Result<(), LoopExit> {
        loop {
            while !root.woken.get() && self.budget.get() > 0 {
                let Some(task) = self.ready.pop_front() else {
                    break;
                };
                self.budget.set(self.budget.get() - 1);
                self.run_task(task);
            }
            if root.woken.get() {
                return Ok(());
            }
            self.budget.set(BATCH);
            self.turn(Some(root))?;
            if root.woken.get() {
                return Ok(());
            }
        }
    }

    /// Fires due timers and polls for I/O and cross-thread wake-ups, blocking only if nothing is
    /// ready. `root` is the blocked root context to name in a deadlock error.
    fn turn(&self, root: Option<&Core>) -> Result<(), LoopExit> {
        // One clock read serves the timers due and the poll's timeout.
        let now = self.fire_timers();
        let timeout = if !self.ready.is_empty() || root.is_some_and(|r| r.woken.get()) {
            Some(Duration::ZERO)
        } else {
            let next = self.timers.borrow_mut().next_deadline();
            next.map(|deadline| Duration::from_nanos(deadline.saturating_sub(now)))
        };
        if timeout != Some(Duration::ZERO) {
            // About to wait with nothing to run: a good moment to give memory back.
            greenlet::trim_kept_records();
        }
        // Nothing pending but the blocked root's own timeouts (none at all, in particular) is a
        // deadlock: no greenlet can run again, so only the timeout could end the wait.
        let idle = timeout != Some(Duration::ZERO);
        if idle
            && self.timers.borrow().len() == self.root_timeouts.get()
            && self.io.waiting() == 0
            && self.external_refs.get() == 0
            && !self.remote.has_pending()
        {
            let waiter = root
                .map(Core::name)
                .unwrap_or_else(|| "the hub".to_string());
            return Err(LoopExit { waiter });
        }
        let events = self.io.poll(self, timeout);
        self.remote.drain(self);
        // A poll that waited and came back empty may have waited for the next timer: fire it.
        // One woken by I/O leaves timers to the next turn's first step, which comes right after
        // the woken greenlets run: a clock read per turn instead of two.
        if !events && timeout != Some(Duration::ZERO) {
            self.fire_timers();
        }
        Ok(())
    }

    /// Fires the timers due now; returns the time it read.
    fn fire_timers(&self) -> u64 {
        let now = self.now();
        loop {
            let due = self.timers.borrow_mut().pop_due(now);
            let Some(action) = due else { break };
            match action {
                TimerAction::Wake(waiter) => waiter.wake_on(self),
                TimerAction::Throw(task, id) => self.throw(&task, Throw::Timeout(id)),
                TimerAction::Start(task) => {
                    if task.core().state.get() == State::New {
                        self.ready.push_back(task);
                    }
                }
                TimerAction::Callback(callback) => crate::report::run_hub_callback(callback),
            }
        }
        now
    }

    /// Parks a root context: runs the loop until one of its waiters is woken. (A greenlet parks
    /// in [`greenlet::park_running_greenlet`], see [`park`].) Out of line: greenlets' parks,
    /// inlined everywhere, stay small.
    #[inline(never)]
    fn park_root(&self) -> Result<(), LoopExit> {
        let core = self.current.core();
        debug_assert!(core.is_root);
        core.note_panicking();
        self.check_throw(core);
        core.state.set(State::Parked);
        core.woken.set(false);
        self.monitor_hub_runs();
        let result = self.run_until_woken(core);
        self.monitor_context_runs();
        core.state.set(State::Running);
        if core.end_park() {
            self.check_throw(core);
        }
        result
    }

    /// Unwinds the current context if a kill or timeout is pending for it. A throw into a context
    /// that may be mid-unwind is deferred: its park is woken again in a millisecond to retry.
    #[inline]
    pub(crate) fn check_throw(&self, core: &Core) {
        if core.throw_pending() {
            self.deliver_throw(core);
        }
    }

    #[cold]
    fn deliver_throw(&self, core: &Core) {
        if core.deliver_throw() {
            let waiter = self.current_waiter();
            self.add_timer(self.now() + 1_000_000, TimerAction::Wake(waiter));
        }
    }

    /// Yields from a root context: runs the greenlets that are ready now, once each, and polls
    /// timers and I/O without blocking. From a greenlet, queues it again and returns `true`: the
    /// caller then suspends it (see [`park`]).
    #[inline(always)]
    fn yield_begin(&self) -> bool {
        let core = self.current.core();
        core.note_panicking();
        if !core.is_root {
            core.state.set(State::Ready);
            self.ready.push_back(self.current.task());
            return true;
        }
        self.monitor_hub_runs();
        // Each context ready now runs once: up to the one listed last at this point.
        let last = self.ready.last();
        if !last.is_null() {
            while let Some(next) = self.ready.pop_front() {
                let was_last = std::ptr::eq(next.addr().cast(), last);
                self.run_task(next);
                if was_last {
                    break;
                }
            }
        }
        // A yield must not wait for the next timer.
        self.fire_timers();
        self.io.poll(self, Some(Duration::ZERO));
        self.remote.drain(self);
        self.fire_timers();
        self.monitor_context_runs();
        self.check_throw(core);
        false
    }

    #[inline(always)]
    fn yield_end(&self) {
        self.check_throw(self.current.core());
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        greenlet::set_hub_address(None);
        // Greenlets still blocked when their thread exits are abandoned (their stacks leak, see
        // greenlet.rs); the ready queue's unstarted ones simply never run.
        self.ready.clear();
    }
}

/// Wakes park `generation` of `task` if it is still in progress: a [`Waiter`]'s wake-up, for
/// code that stores a waiter's parts separately.
#[inline(always)]
pub(crate) fn wake_parked(hub: &Hub, task: &TaskRef, generation: u32) {
    if task.core().is_parked_in(generation) {
        hub.make_ready(task.clone());
    }
}

/// The parts of [`current_waiter`]'s waiter: the running context and its park generation.
#[inline(always)]
pub(crate) fn current_waiter_parts() -> (TaskRef, u32) {
    match greenlet::running_waiter() {
        Some(parts) => parts,
        None => with(|hub| {
            let Waiter { task, generation } = hub.current_waiter();
            (task, generation)
        }),
    }
}

/// A waiter for the current context's next park.
#[inline(always)]
pub(crate) fn current_waiter() -> Waiter {
    let (task, generation) = current_waiter_parts();
    Waiter { task, generation }
}

/// Parks the current greenlet (or runs the hub, from a root context) until a waiter made by
/// [`current_waiter`] since the last park is woken.
///
/// A greenlet's switch to the hub happens outside any visit to the thread-local hub: code that
/// resumes after a switch returns through frames the CPU's
/// return predictor knows nothing about, and every such frame costs a mispredicted return
/// (measured: a yield round trip took 3x as long when the switch sat inside the accessor).
#[inline(always)]
pub(crate) fn park() -> Result<(), LoopExit> {
    if greenlet::park_running_greenlet() {
        return Ok(());
    }
    with(Hub::park_root)
}

/// Parks until woken or until `deadline` (hub nanoseconds, see [`deadline_after`]); `Ok(true)` if
/// the deadline passed. Without a deadline this is [`park`], inlined into the caller like it.
///
/// `Ok(true)` means the deadline's timer fired (or the deadline had passed before the park): a
/// park woken otherwise just as the deadline passes gives `Ok(false)`, and the caller's next
/// park with that deadline returns `Ok(true)` at once.
///
/// The deadline is a timeout, not a wake-up the caller waits for: in a root context, a park
/// with nothing else pending (no greenlet ready, no other timer, no I/O, no thread-pool job) is
/// the [`LoopExit`] deadlock at once, rather than a wait for the timeout to pass (see
/// [`crate::sync`]'s deadlock policy). [`sleep`] is the park whose timer *is* the wake-up.
#[inline(always)]
pub(crate) fn park_until(deadline: Option<u64>) -> Result<bool, LoopExit> {
    match deadline {
        None => park().map(|()| false),
        Some(deadline) => park_until_deadline(deadline, true),
    }
}

/// [`park_until`] with a deadline: arms a timer for it around the park. `is_timeout` says the
/// timer only bounds the wait (see [`Hub::root_timeouts`]); a sleep's timer is its wake-up.
fn park_until_deadline(deadline: u64, is_timeout: bool) -> Result<bool, LoopExit> {
    // The clock as of this turn is enough to know a deadline has passed; one that passed since
    // has its timer fire on the next turn, before any poll waits.
    let guard = with(|hub| {
        (hub.recent_now() < deadline).then(|| {
            let waiter = hub.current_waiter();
            let root_timeout = is_timeout && hub.current.core().is_root;
            if root_timeout {
                hub.root_timeouts.set(hub.root_timeouts.get() + 1);
            }
            DeadlineGuard {
                _timer: TimerGuard {
                    key: hub.add_timer(deadline, TimerAction::Wake(waiter)),
                },
                root_timeout,
            }
        })
    });
    let Some(guard) = guard else {
        return Ok(true);
    };
    let result = park();
    // The timer fired (it is no longer armed) exactly when the deadline passed: no clock read.
    let fired = with(|hub| !hub.timer_is_armed(guard._timer.key));
    drop(guard);
    result?;
    Ok(fired)
}

/// A park's deadline timer, cancelled (and uncounted) when the park ends or unwinds.
struct DeadlineGuard {
    /// Cancelled as the guard drops.
    _timer: TimerGuard,
    root_timeout: bool,
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        if self.root_timeout {
            let _ = try_with(|hub| hub.root_timeouts.set(hub.root_timeouts.get() - 1));
        }
    }
}

/// Cancels a timer when dropped (also while unwinding from a kill or timeout).
pub(crate) struct TimerGuard {
    pub(crate) key: TimerKey,
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        let _ = HUB.try_with(|hub| hub.cancel_timer(self.key));
    }
}

/// `duration` in nanoseconds, `u64::MAX` (never, in hub time) when it does not fit: a cast would
/// wrap a huge delay into a short one.
fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The hub deadline `timeout` from now.
pub(crate) fn deadline_after(timeout: Duration) -> u64 {
    with(|hub| hub.now().saturating_add(saturating_nanos(timeout)))
}

/// The hub deadline at `instant` (saturating: an instant before the hub's epoch is 0).
pub(crate) fn nanos_at(instant: Instant) -> u64 {
    with(|hub| hub.nanos_at(instant))
}

/// The hub clock: nanoseconds since this thread's hub was created.
pub(crate) fn now_nanos() -> u64 {
    with(Hub::now)
}

/// The hub's latest clock reading as an `Instant` (see [`Hub::recent_now`]).
pub(crate) fn recent_instant() -> Instant {
    with(|hub| hub.recent_instant.get())
}

/// Whether code runs as a hub callback (`run_threadsafe`, `call_later`): in a root context that
/// is parked, running the hub loop.
#[inline]
pub(crate) fn in_callback() -> bool {
    with(|hub| {
        let core = hub.current.core();
        core.is_root && core.state.get() == State::Parked
    })
}

/// Whether `core` is the context running right now.
pub(crate) fn is_current(core: &Core) -> bool {
    with(|hub| hub.current.is(core))
}

/// Yields to the other ready greenlets (gevent's `sleep(0)`); from a root context, runs each ready
/// greenlet once.
#[inline(always)]
pub fn yield_now() {
    if with(Hub::yield_begin) {
        greenlet::suspend_running();
        with(Hub::yield_end);
    }
}

/// Blocks the current greenlet (not the thread) for `duration`.
pub fn sleep(duration: Duration) {
    if duration.is_zero() {
        return yield_now();
    }
    let deadline = deadline_after(duration);
    loop {
        match park_until_deadline(deadline, false) {
            Ok(true) => return,
            Ok(false) => continue,
            Err(exit) => panic!("{exit}"),
        }
    }
}

/// Schedules `callback` to run on this thread's hub after `delay`, outside any greenlet (it must
/// not block). Returns a handle that cancels it when [`TimerHandle::cancel`] is called.
///
/// A callback that panics is reported on stderr (`green: hub callback panicked at ...`, like a
/// greenlet's panic) and the loop carries on, as gevent's hub reports a failing callback: the
/// panic never reaches whatever the thread was blocked in.
pub fn call_later(delay: Duration, callback: impl FnOnce() + 'static) -> TimerHandle {
    with(|hub| {
        let deadline = hub.now().saturating_add(saturating_nanos(delay));
        TimerHandle {
            key: hub.add_timer(deadline, TimerAction::Callback(Box::new(callback))),
        }
    })
}

/// A callback scheduled by [`call_later`].
#[derive(Debug)]
pub struct TimerHandle {
    key: TimerKey,
}

impl TimerHandle {
    /// Cancels the callback if it has not run yet.
    pub fn cancel(self) {
        with(|hub| hub.cancel_timer(self.key));
    }
}

/// Number of greenlets in this thread's ready queue (for tests and diagnostics).
pub(crate) fn ready_count() -> usize {
    with(|hub| hub.ready.len())
}

/// Number of timers armed on this thread's hub (for tests and diagnostics).
pub(crate) fn timer_count() -> usize {
    with(|hub| hub.timers.borrow().len())
}

/// The running greenlet's name, or `None` in a root context (used by the panic hook).
pub(crate) fn current_greenlet_name() -> Option<String> {
    if !HUB_EXISTS.try_with(Cell::get).unwrap_or(false) {
        return None;
    }
    HUB.try_with(|hub| {
        let core = hub.current.core();
        (!core.is_root).then(|| core.name())
    })
    .ok()
    .flatten()
}
