//! Cross-thread entry into a hub: [`HubHandle`] and [`ThreadsafeWaker`].
//!
//! Other threads never touch a hub's state. They push an operation onto the hub's mutex-guarded
//! inbox and poke its `mio::Waker`; the hub drains the inbox on its next turn. This is what
//! `spawn_blocking` results, `run_threadsafe` and cross-thread channels are built on.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mio::{Registry, Token, Waker};

use super::{with, Hub, Waiter};

pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

enum RemoteOp {
    Call(Box<dyn FnOnce() + Send>),
    Wake(usize),
    Release(usize),
}

struct Inbox {
    waker: Waker,
    ops: Mutex<Vec<RemoteOp>>,
    pending: AtomicBool,
    alive: AtomicBool,
}

impl Inbox {
    fn push(&self, op: RemoteOp) -> bool {
        if !self.alive.load(Ordering::Acquire) {
            return false;
        }
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        true
    }
}

/// The hub's side: the inbox and the waiters that other threads may wake.
pub(crate) struct RemoteSide {
    inbox: Arc<Inbox>,
    wakers: RefCell<Vec<Option<Waiter>>>,
    free: RefCell<Vec<usize>>,
}

impl RemoteSide {
    pub(crate) fn new(registry: &Registry) -> io::Result<RemoteSide> {
        Ok(RemoteSide {
            inbox: Arc::new(Inbox {
                waker: Waker::new(registry, WAKER_TOKEN)?,
                ops: Mutex::new(Vec::new()),
                pending: AtomicBool::new(false),
                alive: AtomicBool::new(true),
            }),
            wakers: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
        })
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.inbox.pending.load(Ordering::Acquire)
    }

    /// Runs the operations other threads queued.
    pub(crate) fn drain(&self, hub: &Hub) {
        if !self.inbox.pending.swap(false, Ordering::AcqRel) {
            return;
        }
        let ops = std::mem::take(&mut *self.inbox.ops.lock().unwrap_or_else(|e| e.into_inner()));
        for op in ops {
            match op {
                RemoteOp::Call(callback) => {
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(callback)) {
                        let msg = crate::greenlet::panic_message(payload.as_ref())
                            .unwrap_or("<non-string payload>");
                        log::error!("a run_threadsafe callback panicked: {msg}");
                    }
                }
                RemoteOp::Wake(key) => {
                    if let Some(waiter) = self.release(hub, key) {
                        waiter.wake_on(hub);
                    }
                }
                RemoteOp::Release(key) => drop(self.release(hub, key)),
            }
        }
    }

    fn release(&self, hub: &Hub, key: usize) -> Option<Waiter> {
        let waiter = self.wakers.borrow_mut().get_mut(key)?.take()?;
        self.free.borrow_mut().push(key);
        hub.release_external_ref();
        Some(waiter)
    }

    fn register(&self, hub: &Hub, waiter: Waiter) -> usize {
        hub.add_external_ref();
        let mut wakers = self.wakers.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(key) => {
                wakers[key] = Some(waiter);
                key
            }
            None => {
                wakers.push(Some(waiter));
                wakers.len() - 1
            }
        }
    }
}

impl Drop for RemoteSide {
    fn drop(&mut self) {
        self.inbox.alive.store(false, Ordering::Release);
        // Operations queued but never run are dropped now, not with the last handle, so that
        // whatever waits on them (a `spawn_threadsafe` handle) learns of it.
        let ops = std::mem::take(&mut *self.inbox.ops.lock().unwrap_or_else(|e| e.into_inner()));
        drop(ops);
    }
}

/// A `Send + Sync` handle to a thread's hub, for other threads (gevent's `run_callback_threadsafe`).
#[derive(Clone)]
pub struct HubHandle {
    inbox: Arc<Inbox>,
}

impl fmt::Debug for HubHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubHandle")
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// The hub's thread has exited: the operation was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubGone;

impl fmt::Display for HubGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the hub's thread has exited")
    }
}

impl std::error::Error for HubGone {}

impl HubHandle {
    /// A handle to this thread's hub.
    pub fn current() -> HubHandle {
        with(|hub| HubHandle {
            inbox: hub.remote.inbox.clone(),
        })
    }

    /// Whether the hub's thread is still running.
    pub fn is_alive(&self) -> bool {
        self.inbox.alive.load(Ordering::Acquire)
    }

    /// Runs `callback` on the hub's thread, outside any greenlet, on its next turn. The callback
    /// must not block; spawn a greenlet from it (or use [`HubHandle::spawn_threadsafe`]) to block.
    pub fn run_threadsafe(&self, callback: impl FnOnce() + Send + 'static) -> Result<(), HubGone> {
        if self.inbox.push(RemoteOp::Call(Box::new(callback))) {
            Ok(())
        } else {
            Err(HubGone)
        }
    }

    /// Spawns a greenlet running `f` on the hub's thread. Its handle is joinable from any
    /// greenlet or thread and is a `Future + Send` resolving to the greenlet's result, so async
    /// code can `.await` it (see [`crate::thread`]).
    pub fn spawn_threadsafe<T, F>(&self, f: F) -> Result<crate::thread::RemoteGreenlet<T>, HubGone>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        crate::thread::spawn_on(self, f)
    }
}

/// Wakes one park of a greenlet from any thread, once.
///
/// While it exists the hub counts it as a pending external wake-up, so a root context waiting for
/// it is not declared deadlocked. Dropping it without waking releases that count.
pub struct ThreadsafeWaker {
    inbox: Arc<Inbox>,
    key: usize,
    used: bool,
}

impl fmt::Debug for ThreadsafeWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadsafeWaker")
            .field("key", &self.key)
            .finish()
    }
}

impl ThreadsafeWaker {
    /// A waker for the current context's next park; call on the hub's thread.
    pub fn for_current() -> ThreadsafeWaker {
        let waiter = super::current_waiter();
        with(|hub| ThreadsafeWaker {
            inbox: hub.remote.inbox.clone(),
            key: hub.remote.register(hub, waiter),
            used: false,
        })
    }

    /// Wakes the park; returns `false` if the hub's thread has exited.
    pub fn wake(mut self) -> bool {
        self.used = true;
        let key = self.key;
        let woken_here = self.on_own_hub(|hub| {
            if let Some(waiter) = hub.remote.release(hub, key) {
                waiter.wake_on(hub);
            }
        });
        woken_here || self.inbox.push(RemoteOp::Wake(key))
    }

    /// Runs `f` with the hub if this is its thread (no inbox round trip, no system call).
    fn on_own_hub(&self, f: impl FnOnce(&Hub)) -> bool {
        let Some(hub) = crate::greenlet::hub_address() else {
            return false;
        };
        crate::greenlet::with_hub_at(hub, |hub| {
            let own = Arc::ptr_eq(&hub.remote.inbox, &self.inbox);
            if own {
                f(hub);
            }
            own
        })
    }
}

impl Drop for ThreadsafeWaker {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        let key = self.key;
        if !self.on_own_hub(|hub| drop(hub.remote.release(hub, key))) {
            self.inbox.push(RemoteOp::Release(key));
        }
    }
}
