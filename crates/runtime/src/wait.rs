//! Waiting on many greenlets or other [`Waitable`]s: `joinall`, `joinall_completed`,
//! `joinall_timeout`, `wait`, `iwait`, `wait_idle`, `killall`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use crate::greenlet::{Greenlet, GreenletRef, JoinError};
use crate::hub::{self, Waiter};
use crate::sync::{AsyncResult, Event, Semaphore};
use crate::threadpool::BlockingHandle;

/// A greenlet handle: a [`Greenlet`] or a [`GreenletRef`], the members [`Pool`](crate::Pool)
/// and [`Group`](crate::Group) hold and [`killall`] kills.
pub trait AsGreenlet {
    /// A type-erased reference to it.
    fn greenlet_ref(&self) -> GreenletRef;
}

impl<T> AsGreenlet for Greenlet<T> {
    fn greenlet_ref(&self) -> GreenletRef {
        self.as_ref()
    }
}

impl AsGreenlet for GreenletRef {
    fn greenlet_ref(&self) -> GreenletRef {
        self.clone()
    }
}

/// Something [`wait`] and [`iwait`] can wait for (gevent's objects with `rawlink`): a greenlet,
/// an [`Event`] (set), an [`AsyncResult`] (holding a result), a shared [`Semaphore`] (a permit
/// free), a [`spawn_blocking`](crate::spawn_blocking) job (finished), or your own type.
///
/// Mixed kinds wait together as trait objects: `wait(&[&event as &dyn Waitable, &greenlet], ..)`.
///
/// # Implementation
///
/// A greenlet reports its end through a [`link`](Greenlet::link) callback. The other kinds are
/// watched by a small greenlet blocked in the object's own wait, so that nothing is added to
/// their hot paths; [`iwait`] kills the watchers it no longer needs when it is dropped.
pub trait Waitable {
    /// Whether it is ready now.
    fn is_ready(&self) -> bool;

    /// Arranges for `notify` to run once it becomes ready; called only when it is not ready.
    /// Returns the greenlet watching it, if one was spawned, to be killed when the caller stops
    /// waiting.
    fn notify_when_ready(&self, notify: Box<dyn FnOnce()>) -> Option<GreenletRef>;
}

impl<W: Waitable + ?Sized> Waitable for &W {
    fn is_ready(&self) -> bool {
        (**self).is_ready()
    }

    fn notify_when_ready(&self, notify: Box<dyn FnOnce()>) -> Option<GreenletRef> {
        (**self).notify_when_ready(notify)
    }
}

impl<T> Waitable for Greenlet<T> {
    fn is_ready(&self) -> bool {
        Greenlet::is_ready(self)
    }

    fn notify_when_ready(&self, notify: Box<dyn FnOnce()>) -> Option<GreenletRef> {
        self.rawlink(move |_| notify());
        None
    }
}

impl Waitable for GreenletRef {
    fn is_ready(&self) -> bool {
        GreenletRef::is_ready(self)
    }

    fn notify_when_ready(&self, notify: Box<dyn FnOnce()>) -> Option<GreenletRef> {
        self.rawlink(move |_| notify());
        None
    }
}

/// Spawns a greenlet that runs `notify` once `until_ready` returns.
fn watch(until_ready: impl FnOnce() + 'static, notify: Box<dyn FnOnce()>) -> Option<GreenletRef> {
    let watcher = crate::spawn(move || {
        until_ready();
        notify();
    });
    Some(watcher.as_ref())
}

impl Waitable for Event {
    /// Set.
    fn is_ready(&self) -> bool {
        self.is_set()
    }

    fn notify_when_ready(&self, notify: Box<dyn FnOnce()>) -> Option<GreenletRef> {
        let event = self.clone();
        watch(
            move || {
                event.wait();
            },
            notify,
        )
    }
}

impl<T: 'static, E: 'static> Waitable for AsyncResult<T, E> {
    /// Holding a value or an error.
    fn is_ready(&self) -> bool {
        self.ready()
    }

    fn notify_when_ready(&self, notify: Box<dyn FnOnce()>) -> Option<GreenletRef> {
        let result = self.clone();
        watch(move || result.wait(), notify)
    }
}

impl Waitable for Rc<Semaphore> {
    /// A permit is free (gevent's `Semaphore.rawlink`); waiting takes none.
    fn is_ready(&self) -> bool {
        self.available() > 0
    }

    fn notify_when_ready(&self, notify: Box<dyn FnOnce()>) -> Option<GreenletRef> {
        // The watcher queues for a permit in turn and gives it straight back.
        let semaphore = self.clone();
        watch(move || drop(semaphore.acquire()), notify)
    }
}

impl<T: Send + 'static> Waitable for BlockingHandle<T> {
    /// The job has finished.
    fn is_ready(&self) -> bool {
        BlockingHandle::is_ready(self)
    }

    fn notify_when_ready(&self, notify: Box<dyn FnOnce()>) -> Option<GreenletRef> {
        watch(self.until_done(), notify)
    }
}

/// Waits for every greenlet and returns their results **in input order**, so that each result
/// sits at its greenlet's position.
///
/// gevent's `joinall` returns the greenlets that finished, in completion order; in Rust, where
/// results are values, input order lets callers zip them with their inputs. For completion order
/// use [`joinall_completed`] (or [`iwait`] over the handles).
pub fn joinall<T: 'static>(
    greenlets: impl IntoIterator<Item = Greenlet<T>>,
) -> Vec<Result<T, JoinError>> {
    greenlets.into_iter().map(Greenlet::join).collect()
}

/// Waits for every greenlet and returns `(input index, result)` pairs **in completion order**
/// (the order gevent's `joinall` and `iwait` report them in).
///
/// From a root context with nothing left that could finish the rest, those come last, in input
/// order, each with `Err(JoinError::LoopExit)`.
pub fn joinall_completed<T: 'static>(
    greenlets: impl IntoIterator<Item = Greenlet<T>>,
) -> Vec<(usize, Result<T, JoinError>)> {
    let mut greenlets: Vec<Option<Greenlet<T>>> = greenlets.into_iter().map(Some).collect();
    let order: Vec<usize> = {
        let refs: Vec<GreenletRef> = greenlets.iter().flatten().map(Greenlet::as_ref).collect();
        iwait(&refs, None).collect()
    };
    let mut results = Vec::with_capacity(greenlets.len());
    for index in order {
        if let Some(greenlet) = greenlets[index].take() {
            results.push((index, greenlet.join()));
        }
    }
    for (index, greenlet) in greenlets.into_iter().enumerate() {
        if let Some(greenlet) = greenlet {
            results.push((index, greenlet.join()));
        }
    }
    results
}

/// Waits at most `timeout` for all of them; returns `(finished, still_running)`, each in input
/// order. The finished ones can be joined without blocking.
///
/// # Panics
///
/// Outside any greenlet, at once, if nothing could ever finish the rest (the
/// [`LoopExit`](crate::LoopExit) deadlock; the timeout does not count).
pub fn joinall_timeout<T>(
    greenlets: impl IntoIterator<Item = Greenlet<T>>,
    timeout: Duration,
) -> (Vec<Greenlet<T>>, Vec<Greenlet<T>>) {
    let greenlets: Vec<Greenlet<T>> = greenlets.into_iter().collect();
    let deadline = hub::deadline_after(timeout);
    for greenlet in &greenlets {
        let left = deadline.saturating_sub(hub::with(|hub| hub.now()));
        match greenlet.wait(Some(Duration::from_nanos(left))) {
            Ok(true) => {}
            Ok(false) => break,
            Err(exit) => panic!("{exit}"),
        }
    }
    greenlets.into_iter().partition(Greenlet::is_ready)
}

/// Waits until `count` of them (all, if `None`) are ready or `timeout` passes; returns the
/// indices of the ready ones in completion order (gevent's `wait(objects, timeout, count)`).
/// Any [`Waitable`] works, not only greenlets; those ready already come first, in input order.
/// For gevent's `wait()` without objects see [`wait_idle`].
pub fn wait<W: Waitable>(
    items: &[W],
    timeout: Option<Duration>,
    count: Option<usize>,
) -> Vec<usize> {
    let count = count.unwrap_or(items.len()).min(items.len());
    iwait(items, timeout).take(count).collect()
}

/// Yields the indices of `items` as they become ready, in completion order, until all have or
/// `timeout` passes (gevent's `iwait`). Any [`Waitable`] works; those ready already come first,
/// in input order.
pub fn iwait<W: Waitable>(items: &[W], timeout: Option<Duration>) -> Iwait {
    let shared = Rc::new(IwaitShared {
        done: RefCell::new(VecDeque::new()),
        waiter: RefCell::new(None),
    });
    let mut watchers = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if item.is_ready() {
            shared.done.borrow_mut().push_back(index);
            continue;
        }
        let shared = shared.clone();
        let watcher = item.notify_when_ready(Box::new(move || {
            shared.done.borrow_mut().push_back(index);
            let waiter = shared.waiter.borrow_mut().take();
            if let Some(waiter) = waiter {
                waiter.wake();
            }
        }));
        watchers.extend(watcher);
    }
    Iwait {
        shared,
        remaining: items.len(),
        deadline: timeout.map(hub::deadline_after),
        watchers,
    }
}

/// Runs the hub until it has nothing left to do: no greenlet ready or blocked on something that
/// could still happen (a timer, registered I/O, a thread-pool job, a cross-thread wake-up)
/// (gevent's `wait()` without objects, i.e. `get_hub().join()`).
///
/// Greenlets blocked on something nothing can set any more (an [`Event`] no one holds a way to
/// set) do not keep it running; a server with a listening socket does, for ever.
///
/// # Panics
///
/// Called from inside a greenlet, which would wait for itself (gevent: "only possible from the
/// MAIN greenlet").
pub fn wait_idle() {
    assert!(
        crate::current().is_root(),
        "wait_idle() runs the hub until it is idle and can only be called from a root context \
         (the main thread or a plain thread), not from a greenlet"
    );
    // A waiter nobody holds: the park ends only when the hub finds nothing left that could wake
    // anyone (the deadlock error, here the expected end).
    let _unwoken = hub::current_waiter();
    while hub::park().is_ok() {}
}

struct IwaitShared {
    done: RefCell<VecDeque<usize>>,
    waiter: RefCell<Option<Waiter>>,
}

/// The iterator returned by [`iwait`]. It ends early on timeout.
///
/// # Panics
///
/// `next` panics with the [`LoopExit`](crate::LoopExit) message when called outside any
/// greenlet with nothing left that could finish the rest, timed or not (the deadlock policy of
/// [`crate::sync`]).
pub struct Iwait {
    shared: Rc<IwaitShared>,
    remaining: usize,
    deadline: Option<u64>,
    /// Greenlets watching items that are not greenlets, killed when the iteration is dropped.
    watchers: Vec<GreenletRef>,
}

impl Drop for Iwait {
    fn drop(&mut self) {
        for watcher in &self.watchers {
            watcher.kill_nowait();
        }
    }
}

impl std::fmt::Debug for Iwait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iwait")
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Iterator for Iwait {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            if let Some(index) = self.shared.done.borrow_mut().pop_front() {
                self.remaining -= 1;
                return Some(index);
            }
            *self.shared.waiter.borrow_mut() = Some(hub::current_waiter());
            let timed_out = hub::park_until(self.deadline);
            self.shared.waiter.borrow_mut().take();
            match timed_out {
                Ok(false) => {}
                Err(exit) => panic!("{exit}"),
                Ok(true) => {
                    let index = self.shared.done.borrow_mut().pop_front();
                    self.remaining -= usize::from(index.is_some());
                    if index.is_none() {
                        self.remaining = 0;
                    }
                    return index;
                }
            }
        }
    }
}

/// Kills all of them and waits (at most `timeout`, if given) until they are dead; returns whether
/// all are (gevent's `killall`).
pub fn killall<W: AsGreenlet>(items: &[W], timeout: Option<Duration>) -> bool {
    let refs: Vec<GreenletRef> = items.iter().map(AsGreenlet::greenlet_ref).collect();
    for greenlet in &refs {
        greenlet.kill_nowait();
    }
    let deadline = timeout.map(hub::deadline_after);
    refs.iter().all(|greenlet| {
        let left = deadline.map(|d| Duration::from_nanos(d.saturating_sub(hub::with(|h| h.now()))));
        matches!(greenlet.wait(left), Ok(true))
    })
}
