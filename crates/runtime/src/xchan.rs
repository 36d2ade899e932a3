//! A cross-thread channel whose receiving side blocks greenlets, not threads.
//!
//! `std::sync::mpsc::Receiver::recv` would block the whole thread and with it every greenlet on
//! its hub. This channel has std's shape and error types, but a receiver that must wait parks
//! its greenlet (or runs the hub, from a root context) and is woken through the hub's
//! [`ThreadsafeWaker`], so senders can be plain threads, pool jobs or greenlets on any hub.
//!
//! ```
//! let (tx, rx) = green_runtime::xchan::channel();
//! for i in 0..3 {
//!     let tx = tx.clone();
//!     std::thread::spawn(move || tx.send(i).unwrap());
//! }
//! drop(tx);
//! let mut got: Vec<i32> = rx.iter().collect();
//! got.sort();
//! assert_eq!(got, [0, 1, 2]);
//! ```
//!
//! # Implementation
//!
//! A `Mutex` guards the queue, the sender count and a list of parked receivers, each registered
//! as a [`ThreadsafeWaker`]. A send wakes every parked receiver (there is normally one); each
//! re-checks the queue. While a receiver is parked its waker counts as a pending external
//! wake-up, so a root context waiting in `recv` is never declared deadlocked while it waits.
//!
//! # Caveats
//!
//! A receiver waiting for a sender that lives on its own hub and never sends is not reported as a
//! deadlock: the hub cannot tell a silent sender from a slow one.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use std::sync::mpsc::{RecvError, RecvTimeoutError, SendError, TryRecvError};

use crate::greenlet::JoinError;
use crate::hub::{self, LoopExit};
use crate::ThreadsafeWaker;

/// Locks `mutex`, ignoring poisoning: nothing in this crate leaves guarded state half-updated.
pub(crate) fn lock<S>(mutex: &Mutex<S>) -> MutexGuard<'_, S> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Parked contexts (on any threads' hubs) waiting for a state change, each woken at most once.
#[derive(Debug, Default)]
pub(crate) struct WakerList {
    next_id: u64,
    wakers: Vec<(u64, ThreadsafeWaker)>,
}

impl WakerList {
    fn add(&mut self, waker: ThreadsafeWaker) -> u64 {
        self.next_id += 1;
        self.wakers.push((self.next_id, waker));
        self.next_id
    }

    fn remove(&mut self, id: u64) -> Option<ThreadsafeWaker> {
        let index = self.wakers.iter().position(|(i, _)| *i == id)?;
        Some(self.wakers.swap_remove(index).1)
    }

    /// Takes every waker; call [`wake_all`] on the result after unlocking.
    pub(crate) fn take(&mut self) -> Vec<(u64, ThreadsafeWaker)> {
        std::mem::take(&mut self.wakers)
    }
}

/// Wakes the wakers taken from a [`WakerList`].
pub(crate) fn wake_all(wakers: Vec<(u64, ThreadsafeWaker)>) {
    for (_, waker) in wakers {
        waker.wake();
    }
}

/// State guarded by a mutex that green-blocking waiters park on.
pub(crate) trait WaitState {
    /// The list of parked waiters.
    fn waiters(&mut self) -> &mut WakerList;
}

/// Removes a parked context's waker from the list when its park ends, also when a kill or a
/// `with_timeout` unwinds it out of the park.
struct Registration<'a, S: WaitState> {
    mutex: &'a Mutex<S>,
    id: u64,
}

impl<S: WaitState> Drop for Registration<'_, S> {
    fn drop(&mut self) {
        let waker = lock(self.mutex).waiters().remove(self.id);
        drop(waker);
    }
}

/// Blocks the current greenlet (or runs the hub, from a root context) until `check` returns
/// `Some`, re-checking after every wake-up; `Ok(None)` once the hub deadline passes.
pub(crate) fn wait_until<S: WaitState, R>(
    mutex: &Mutex<S>,
    deadline: Option<u64>,
    mut check: impl FnMut(&mut S) -> Option<R>,
) -> Result<Option<R>, LoopExit> {
    loop {
        let mut state = lock(mutex);
        if let Some(value) = check(&mut state) {
            return Ok(Some(value));
        }
        if deadline.is_some_and(|d| hub::now_nanos() >= d) {
            return Ok(None);
        }
        let id = state.waiters().add(ThreadsafeWaker::for_current());
        drop(state);
        let registration = Registration { mutex, id };
        let parked = hub::park_until(deadline);
        drop(registration);
        parked?;
    }
}

/// Joins a cross-thread result (a thread-pool job, a greenlet on another hub): waits until
/// `take` hands it over; a deadlock the wait reports becomes `JoinError::LoopExit`.
pub(crate) fn join_result<S: WaitState, T>(
    mutex: &Mutex<S>,
    take: impl FnMut(&mut S) -> Option<Result<T, JoinError>>,
) -> Result<T, JoinError> {
    match wait_until(mutex, None, take) {
        Ok(Some(result)) => result,
        Ok(None) => unreachable!("a wait without a deadline cannot time out"),
        Err(exit) => Err(JoinError::LoopExit(exit)),
    }
}

/// [`join_result`] for at most `timeout`: `None` if the result is not there by then.
pub(crate) fn join_result_timeout<S: WaitState, T>(
    mutex: &Mutex<S>,
    timeout: Duration,
    take: impl FnMut(&mut S) -> Option<Result<T, JoinError>>,
) -> Option<Result<T, JoinError>> {
    let deadline = hub::deadline_after(timeout);
    match wait_until(mutex, Some(deadline), take) {
        Ok(result) => result,
        Err(exit) => Some(Err(JoinError::LoopExit(exit))),
    }
}

struct Inner<T> {
    queue: VecDeque<T>,
    senders: usize,
    receiver: bool,
    waiters: WakerList,
}

impl<T> WaitState for Inner<T> {
    fn waiters(&mut self) -> &mut WakerList {
        &mut self.waiters
    }
}

struct Shared<T> {
    inner: Mutex<Inner<T>>,
}

/// Creates an unbounded cross-thread channel (std's `mpsc::channel`, with a green receiver).
pub fn channel<T: Send>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            queue: VecDeque::new(),
            senders: 1,
            receiver: true,
            waiters: WakerList::default(),
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver {
            shared,
            not_sync: PhantomData,
        },
    )
}

/// The sending half: `Send + Clone`, usable from any thread, never blocks.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        lock(&self.shared.inner).senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Sender<T> {
    /// Queues `value` and wakes the receiver; gives it back if the receiver was dropped.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut inner = lock(&self.shared.inner);
        if !inner.receiver {
            return Err(SendError(value));
        }
        inner.queue.push_back(value);
        let wakers = inner.waiters.take();
        drop(inner);
        wake_all(wakers);
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut inner = lock(&self.shared.inner);
        inner.senders -= 1;
        let wakers = if inner.senders == 0 {
            inner.waiters.take()
        } else {
            Vec::new()
        };
        drop(inner);
        wake_all(wakers);
    }
}

/// The receiving half: its waits block the calling greenlet only.
///
/// Like std's, it is `Send` but not `Sync`: move it to another thread to receive there. Several
/// greenlets of one thread may share it (through an `Rc`) and receive concurrently.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

fn take_or_disconnected<T>(inner: &mut Inner<T>) -> Option<Result<T, RecvError>> {
    match inner.queue.pop_front() {
        Some(value) => Some(Ok(value)),
        None if inner.senders == 0 => Some(Err(RecvError)),
        None => None,
    }
}

impl<T> Receiver<T> {
    /// Takes a message if one is queued, without blocking.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut inner = lock(&self.shared.inner);
        match take_or_disconnected(&mut inner) {
            Some(Ok(value)) => Ok(value),
            Some(Err(RecvError)) => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Blocks the calling greenlet until a message arrives; `Err(RecvError)` once the queue is
    /// empty and every sender is gone.
    ///
    /// # Panics
    ///
    /// Never panics for lack of a sender: while a sender exists, the wait is not a deadlock.
    pub fn recv(&self) -> Result<T, RecvError> {
        match wait_until(&self.shared.inner, None, take_or_disconnected) {
            Ok(Some(result)) => result,
            Ok(None) => unreachable!("a wait without a deadline cannot time out"),
            Err(exit) => panic!("{exit}"),
        }
    }

    /// Like [`Receiver::recv`], giving up after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = hub::deadline_after(timeout);
        match wait_until(&self.shared.inner, Some(deadline), take_or_disconnected) {
            Ok(Some(Ok(value))) => Ok(value),
            Ok(Some(Err(RecvError))) => Err(RecvTimeoutError::Disconnected),
            Ok(None) => Err(RecvTimeoutError::Timeout),
            Err(exit) => panic!("{exit}"),
        }
    }

    /// An iterator of messages that blocks the greenlet for each and ends at disconnection.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { receiver: self }
    }

    /// An iterator of the messages already queued; it never blocks.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { receiver: self }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut inner = lock(&self.shared.inner);
        inner.receiver = false;
        let queued = std::mem::take(&mut inner.queue);
        drop(inner);
        drop(queued);
    }
}

/// Blocking iterator over a [`Receiver`], from [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    receiver: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

/// Non-blocking iterator over a [`Receiver`], from [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    receiver: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.receiver.try_recv().ok()
    }
}

/// Owning blocking iterator over a [`Receiver`].
#[derive(Debug)]
pub struct IntoIter<T> {
    receiver: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.receiver.recv().ok()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter { receiver: self }
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}
