//! `block_on`: run a `Future` to completion inside a greenlet (or a root context), waiting on the
//! hub instead of blocking the thread.
//!
//! Much of Rust's networking ecosystem is async-only. A greenlet is a full stack, so it can simply
//! poll a future where it stands and park between polls; other greenlets run meanwhile.
//!
//! # Implementation
//!
//! The future is pinned on the caller's stack and polled with a `Send + Sync` [`Waker`]. A wake
//! sets a flag; if the caller is parked, the wake also fires the [`ThreadsafeWaker`] registered
//! for that park, which reaches the hub from any thread (directly when the wake happens on the
//! hub's own thread, through its cross-thread inbox otherwise). A wake during a poll makes the
//! caller yield once and poll again, so a future that keeps waking itself cannot starve the
//! other greenlets. The waker of a finished `block_on` whose clones all went away is kept for the
//! thread's next call, so a future that is ready at once costs no allocation.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::greenlet;
use crate::hub;
use crate::xchan::lock;
use crate::ThreadsafeWaker;

/// What a `block_on`'s waker shares with its caller.
#[derive(Default)]
struct Signal {
    /// Woken since the caller last looked.
    notified: AtomicBool,
    /// The caller's park, while it is parked.
    parked: Mutex<Option<ThreadsafeWaker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.notified.swap(true, Ordering::AcqRel) {
            // Already notified: the caller has not looked yet and will poll again.
            return;
        }
        let parked = lock(&self.parked).take();
        if let Some(waker) = parked {
            waker.wake();
        }
    }
}

/// A waker and the signal it sets; `Arc::strong_count(signal) == 2` means no clone escaped.
struct WakerPair {
    signal: Arc<Signal>,
    waker: Waker,
}

impl WakerPair {
    fn new() -> WakerPair {
        let signal = Arc::new(Signal::default());
        WakerPair {
            waker: Waker::from(signal.clone()),
            signal,
        }
    }

    /// Whether only this pair refers to the signal: nothing can wake it any more.
    fn unshared(&self) -> bool {
        Arc::strong_count(&self.signal) == 2
    }
}

/// Per-thread state of `block_on`.
struct ThreadState {
    /// Whether a `block_on` of this thread (perhaps in a parked greenlet) uses `spare`.
    lent: Cell<bool>,
    /// A waker whose clones all went away, kept for the thread's next `block_on`.
    spare: RefCell<Option<WakerPair>>,
    /// The context (a greenlet's address, null for the root) whose poll in `block_on` began
    /// last and has not ended, if no other context's poll began since (see [`Polling`]).
    polling: Cell<Option<*const u8>>,
}

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            lent: Cell::new(false),
            spare: RefCell::new(None),
            polling: Cell::new(None),
        }
    };
}

/// Ends the loan of the spare waker: keeps it for the next call if no clone of it is left,
/// drops it otherwise (something may still wake it).
struct Loan<'a> {
    state: &'a ThreadState,
}

impl Drop for Loan<'_> {
    #[inline]
    fn drop(&mut self) {
        let spare = self.state.spare.borrow();
        match &*spare {
            Some(pair) if pair.unshared() => pair.signal.notified.store(false, Ordering::Relaxed),
            _ => {
                drop(spare);
                *self.state.spare.borrow_mut() = None;
            }
        }
        self.state.lent.set(false);
    }
}

/// Marks the context as polling for the length of one poll.
///
/// A single slot rather than a list: a poll that ends clears the slot only if it still names its
/// context. A greenlet that blocks inside a poll lets other contexts poll meanwhile, which then
/// take the slot, so nesting after such a poll goes undetected (it still works: greenlets are
/// stackful); but a context that is not polling is never named, so nothing is refused wrongly.
struct Polling<'a> {
    state: &'a ThreadState,
    context: *const u8,
}

impl<'a> Polling<'a> {
    #[inline(always)]
    fn enter(state: &'a ThreadState, context: *const u8) -> Polling<'a> {
        state.polling.set(Some(context));
        Polling { state, context }
    }
}

impl Drop for Polling<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.state.polling.get() == Some(self.context) {
            self.state.polling.set(None);
        }
    }
}

/// Takes the caller's registered park back out of the signal (also when a kill or timeout
/// unwinds out of the park); dropping an unused [`ThreadsafeWaker`] releases its registration.
struct Parked<'a> {
    signal: &'a Signal,
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        let waker = lock(&self.signal.parked).take();
        drop(waker);
    }
}

/// Runs `future` to completion on the current greenlet (or root context) and returns its output.
///
/// The future is polled here, on this thread; while it is pending the greenlet parks and the
/// hub runs the others. Its waker is `Send + Sync`: waking from another thread, from inside
/// `poll`, many times or after completion is fine.
///
/// ```
/// let doubled = green_runtime::spawn(|| {
///     let hubs = green_runtime::thread::HubPool::new(1);
///     // Any runtime-agnostic future: here a greenlet running on another thread's hub.
///     let remote = hubs.spawn(|| 21);
///     let value = green_runtime::block_on(async move { remote.await.unwrap() * 2 });
///     hubs.shutdown();
///     value
/// });
/// assert_eq!(doubled.join().unwrap(), 42);
/// ```
///
/// # Caveats
///
/// * Futures that need a runtime's reactor or timers (tokio's `TcpStream`, `tokio::time::sleep`)
///   panic or never wake here: use `green::tokio::block_on` (cargo feature `tokio`) for those.
///   Runtime-agnostic futures (`futures::channel`, `async-channel`, `event-listener`, hand-written
///   ones) need nothing else.
/// * A kill or `with_timeout` expiry lands while the caller is parked between polls: the future is
///   dropped there, once, on the caller's thread (async cancellation). A future that blocks green
///   inside `poll` (a `green::sleep` in an `async` block) can be interrupted there too, like any
///   blocking call.
/// * Calling `block_on` from inside a future that `block_on` is polling, or from a hub callback
///   (`run_threadsafe`, `call_later`), panics with a message saying so: `.await` the inner future
///   instead, or spawn a greenlet from the callback.
/// * A root context whose future can never be woken (it dropped every clone of the waker and
///   returned `Pending`) while nothing else can run panics with gevent's `LoopExit` instead of
///   hanging; a greenlet in that state waits until it is killed, like any greenlet that waits
///   forever.
/// * Unlike tokio's `block_on`, this never blocks the thread, so do not call it on a thread that
///   an async runtime uses for its tasks: it would run a hub there and hold up that runtime's
///   other tasks while it waits.
///
/// # Panics
///
/// When called from inside a future this thread's `block_on` is polling, from a hub callback,
/// or when a root context's future can never be woken and nothing else can run (`LoopExit`).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let context = current_context();
    STATE.with(|state| {
        check_not_nested(state, context);
        if state.lent.replace(true) {
            // The spare is in use by another `block_on` of this thread: a waker of our own.
            return poll_to_completion(future, context, state, &WakerPair::new());
        }
        let loan = Loan { state };
        if state.spare.borrow().is_none() {
            *state.spare.borrow_mut() = Some(WakerPair::new());
        }
        let spare = state.spare.borrow();
        let pair = spare.as_ref().expect("the spare waker was just made");
        let output = poll_to_completion(future, context, state, pair);
        drop(spare);
        drop(loan);
        output
    })
}

/// Polls `future` with `pair`'s waker until it is ready, parking between polls. The future is
/// dropped here, also when a kill or timeout unwinds out of a park.
#[inline]
fn poll_to_completion<F: Future>(
    future: F,
    context: *const u8,
    state: &ThreadState,
    pair: &WakerPair,
) -> F::Output {
    let mut cx = Context::from_waker(&pair.waker);
    let mut future = pin!(future);
    loop {
        let polling = Polling::enter(state, context);
        let poll = future.as_mut().poll(&mut cx);
        drop(polling);
        if let Poll::Ready(output) = poll {
            return output;
        }
        wait_for_wake(pair);
    }
}

/// The current context's identity (a greenlet's address, null for the root), after checking
/// that `block_on` may block here.
#[inline(always)]
fn current_context() -> *const u8 {
    let context = greenlet::running_greenlet_addr();
    if context.is_null() {
        check_not_in_callback();
    }
    context
}

/// A root context runs hub callbacks while it is parked in the hub loop.
#[inline]
fn check_not_in_callback() {
    if hub::in_callback() {
        panic!(
            "green::block_on called from a hub callback (run_threadsafe, call_later): callbacks \
             run inside the hub loop and must not block; spawn a greenlet from the callback and \
             call block_on there"
        );
    }
}

#[inline(always)]
fn check_not_nested(state: &ThreadState, context: *const u8) {
    if state.polling.get() == Some(context) {
        nested_panic();
    }
}

#[cold]
#[inline(never)]
fn nested_panic() -> ! {
    panic!(
        "green::block_on called from inside a future that green::block_on is polling on the same \
         greenlet: .await the inner future instead"
    );
}

/// Parks until the signal is notified; returns at once if it already is. Yields once first
/// when the wake came during the poll, so that a self-waking future shares the hub.
fn wait_for_wake(pair: &WakerPair) {
    let signal = &*pair.signal;
    if signal.notified.swap(false, Ordering::AcqRel) {
        hub::yield_now();
        return;
    }
    let parked = Parked { signal };
    {
        let mut slot = lock(&signal.parked);
        if signal.notified.swap(false, Ordering::AcqRel) {
            return;
        }
        // With no clone of the waker left, nothing could wake the park but a kill or a timeout:
        // parking without a cross-thread registration lets a root context's deadlock surface
        // as `LoopExit`.
        if !pair.unshared() {
            *slot = Some(ThreadsafeWaker::for_current());
        }
    }
    let parked_result = hub::park();
    drop(parked);
    if let Err(exit) = parked_result {
        panic!("{exit}");
    }
    signal.notified.swap(false, Ordering::AcqRel);
}
