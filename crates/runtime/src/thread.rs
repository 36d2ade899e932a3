//! Greenlets for callers on other threads: [`RemoteGreenlet`] (the handle of
//! [`HubHandle::spawn_threadsafe`]), threads that only run a hub ([`spawn_hub`]) and a pool of them
//! ([`HubPool`]).
//!
//! This is how async code hands blocking-style work to green and awaits the result: a
//! `RemoteGreenlet` is a `Future + Send`, and also joinable from greenlets and plain threads.
//!
//! ```
//! let hubs = green_runtime::thread::HubPool::new(2);
//! let greenlet = hubs.spawn(|| {
//!     green_runtime::sleep(std::time::Duration::from_millis(5));
//!     6 * 7
//! });
//! // From async code: `greenlet.await`; here, from a plain thread, through `block_on`.
//! assert_eq!(green_runtime::block_on(greenlet).unwrap(), 42);
//! hubs.shutdown();
//! ```
//!
//! # Caveats
//!
//! * Dropping a `RemoteGreenlet` (or the future awaiting it) detaches the greenlet, like tokio's
//!   `JoinHandle`: it keeps running. [`RemoteGreenlet::kill`] stops it.
//! * A [`HubThread`] that stops kills the greenlets spawned on it through
//!   [`HubHandle::spawn_threadsafe`] that are still running, so their handles report `Killed`.
//!   Greenlets those greenlets spawned themselves are abandoned with the thread, as on any thread;
//!   so are greenlets still blocked on another kind of thread when it exits (their handles never
//!   finish: join them with a timeout there).

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::greenlet::{GreenletExit, GreenletRef, JoinError};
use crate::pool::Group;
use crate::xchan::{self, join_result, join_result_timeout, lock, wake_all, WaitState, WakerList};
use crate::{HubGone, HubHandle};

struct Slot<T> {
    result: Option<Result<T, JoinError>>,
    done: bool,
    /// Greenlets and threads parked in `join`.
    waiters: WakerList,
    /// The task awaiting the handle as a future.
    task: Option<Waker>,
    /// The greenlet's id, once it is spawned on its hub.
    id: Option<u64>,
}

impl<T> WaitState for Slot<T> {
    fn waiters(&mut self) -> &mut WakerList {
        &mut self.waiters
    }
}

/// Stores the greenlet's outcome; dropped unused (the hub exited before running the greenlet,
/// or the greenlet was killed before it started), it stores `Killed`.
struct Completion<T> {
    slot: Arc<Mutex<Slot<T>>>,
    done: bool,
}

impl<T> Completion<T> {
    fn complete(&mut self, result: Result<T, JoinError>) {
        self.done = true;
        let mut slot = lock(&self.slot);
        slot.result = Some(result);
        slot.done = true;
        let waiters = slot.waiters.take();
        let task = slot.task.take();
        drop(slot);
        wake_all(waiters);
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        if !self.done {
            self.complete(Err(JoinError::Killed));
        }
    }
}

thread_local! {
    /// The greenlets other threads spawned on this thread's hub and that still run.
    static REMOTE: Group = Group::new();
}

/// Spawns `f` on `hub`; the hub side of [`HubHandle::spawn_threadsafe`].
pub(crate) fn spawn_on<T, F>(hub: &HubHandle, f: F) -> Result<RemoteGreenlet<T>, HubGone>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        done: false,
        waiters: WakerList::default(),
        task: None,
        id: None,
    }));
    let mut completion = Completion {
        slot: slot.clone(),
        done: false,
    };
    hub.run_threadsafe(move || {
        let id_slot = completion.slot.clone();
        let greenlet = REMOTE.with(|remote| {
            remote.spawn(move || match catch_unwind(AssertUnwindSafe(f)) {
                Ok(value) => completion.complete(Ok(value)),
                Err(payload) if payload.is::<GreenletExit>() => {
                    completion.complete(Err(JoinError::Killed));
                    resume_unwind(payload)
                }
                Err(payload) => completion.complete(Err(JoinError::Panicked(payload))),
            })
        });
        lock(&id_slot).id = Some(greenlet.id());
    })?;
    Ok(RemoteGreenlet {
        slot,
        hub: hub.clone(),
    })
}

/// Kills the greenlets other threads spawned here (as the thread's hub stops).
fn kill_remote_greenlets(timeout: Duration) {
    let _ = REMOTE.try_with(|remote| remote.kill_timeout(timeout));
}

fn take_result<T>(slot: &mut Slot<T>) -> Option<Result<T, JoinError>> {
    if !slot.done {
        return None;
    }
    Some(slot.result.take().unwrap_or(Err(JoinError::AlreadyJoined)))
}

/// A greenlet running on another thread's hub: joinable from any greenlet or thread, and a
/// `Future + Send` resolving to its result (for async code).
///
/// Made by [`HubHandle::spawn_threadsafe`], [`HubThread::spawn`] and [`HubPool::spawn`].
pub struct RemoteGreenlet<T> {
    slot: Arc<Mutex<Slot<T>>>,
    hub: HubHandle,
}

impl<T> fmt::Debug for RemoteGreenlet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteGreenlet")
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl<T> RemoteGreenlet<T> {
    /// Whether the greenlet has finished (returned, panicked or was killed).
    pub fn is_ready(&self) -> bool {
        lock(&self.slot).done
    }

    /// Blocks the calling greenlet (not its thread) until the greenlet finishes; its value, or
    /// why there is none. From a plain thread this runs that thread's own hub meanwhile.
    pub fn join(self) -> Result<T, JoinError> {
        join_result(&self.slot, take_result)
    }

    /// Waits at most `timeout`; `None` if the greenlet is still running (the handle stays
    /// usable). After a result was returned, later calls give `Err(JoinError::AlreadyJoined)`.
    pub fn join_timeout(&self, timeout: Duration) -> Option<Result<T, JoinError>> {
        join_result_timeout(&self.slot, timeout, take_result)
    }
}

impl<T: Send + 'static> RemoteGreenlet<T> {
    /// Requests the greenlet's kill on its hub and returns at once; its result becomes
    /// `Err(JoinError::Killed)` unless it finishes first. Does nothing if its hub is gone.
    pub fn kill(&self) {
        let slot = self.slot.clone();
        let _ = self.hub.run_threadsafe(move || {
            let Some(id) = lock(&slot).id else { return };
            let target: Option<GreenletRef> = REMOTE
                .try_with(|remote| remote.greenlets().into_iter().find(|g| g.id() == id))
                .ok()
                .flatten();
            if let Some(target) = target {
                target.kill_nowait();
            }
        });
    }
}

impl<T> Future for RemoteGreenlet<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = lock(&self.slot);
        if let Some(result) = take_result(&mut slot) {
            return Poll::Ready(result);
        }
        match &mut slot.task {
            Some(task) if task.will_wake(cx.waker()) => {}
            task => *task = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A thread that only runs a hub, for greenlets spawned from other threads (async code, plain
/// threads): made by [`spawn_hub`].
///
/// Dropping it stops the thread (without waiting for it); [`HubThread::stop`] also waits.
pub struct HubThread {
    hub: HubHandle,
    stop: Option<xchan::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for HubThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubThread")
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

/// How long a stopping hub thread waits for its greenlets to die of their kill.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Starts a thread named `green-hub` whose root context just runs its hub, and returns its handle.
///
/// # Panics
///
/// If the OS cannot start a thread (like `std::thread::spawn`).
pub fn spawn_hub() -> HubThread {
    spawn_named_hub("green-hub".to_string())
}

fn spawn_named_hub(name: String) -> HubThread {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = xchan::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _ = handle_tx.send(HubHandle::current());
            // Runs the hub until told to stop (or the `HubThread` is dropped).
            let _ = stop_rx.recv();
            kill_remote_greenlets(STOP_GRACE);
        })
        .expect("green: cannot start a hub thread");
    let hub = handle_rx
        .recv()
        .expect("a new hub thread sends its handle first");
    HubThread {
        hub,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

impl HubThread {
    /// A handle to the thread's hub (`run_threadsafe`, `spawn_threadsafe`).
    pub fn handle(&self) -> &HubHandle {
        &self.hub
    }

    /// Spawns a greenlet running `f` on the thread's hub.
    pub fn spawn<T, F>(&self, f: F) -> RemoteGreenlet<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        spawn_on(&self.hub, f).expect("a HubThread's hub runs until the HubThread is stopped")
    }

    /// Stops the thread: the greenlets spawned on it from other threads are killed (their handles
    /// report `Killed`), then the thread exits. Waits for it, green-blocking: from async code,
    /// drop the `HubThread` instead (which stops it without waiting).
    pub fn stop(mut self) {
        self.signal_stop();
        if let Some(thread) = self.thread.take() {
            let done = crate::spawn_blocking(move || thread.join());
            let _ = done.join();
        }
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for HubThread {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// `n` hub threads for async callers; [`HubPool::spawn`] picks them in turn.
#[derive(Debug)]
pub struct HubPool {
    threads: Vec<HubThread>,
    next: AtomicUsize,
}

impl HubPool {
    /// Starts `n` hub threads (at least one), named `green-hub-<i>`.
    pub fn new(n: usize) -> HubPool {
        HubPool {
            threads: (0..n.max(1))
                .map(|i| spawn_named_hub(format!("green-hub-{i}")))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The number of hub threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Always `false`: a pool has at least one thread.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// The hub threads, for spawning on a chosen one.
    pub fn threads(&self) -> &[HubThread] {
        &self.threads
    }

    /// Spawns a greenlet running `f` on the next hub thread (round-robin).
    pub fn spawn<T, F>(&self, f: F) -> RemoteGreenlet<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        self.threads[index].spawn(f)
    }

    /// Stops every thread (see [`HubThread::stop`]) and waits for them.
    pub fn shutdown(self) {
        for thread in self.threads {
            thread.stop();
        }
    }
}
