//! Waiting on many greenlets: `joinall`, `joinall_timeout`, `wait`, `iwait`, `killall`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use crate::greenlet::{Greenlet, GreenletRef, JoinError};
use crate::hub::{self, Waiter};

/// Something that finishes: a [`Greenlet`] or a [`GreenletRef`].
pub trait Waitable {
    /// A type-erased reference to it.
    fn greenlet_ref(&self) -> GreenletRef;
}

impl<T> Waitable for Greenlet<T> {
    fn greenlet_ref(&self) -> GreenletRef {
        self.as_ref()
    }
}

impl Waitable for GreenletRef {
    fn greenlet_ref(&self) -> GreenletRef {
        self.clone()
    }
}

/// Waits for every greenlet and returns their results in input order (gevent's `joinall`).
pub fn joinall<T: 'static>(
    greenlets: impl IntoIterator<Item = Greenlet<T>>,
) -> Vec<Result<T, JoinError>> {
    greenlets.into_iter().map(Greenlet::join).collect()
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

/// Waits until `count` of them (all, if `None`) have finished or `timeout` passes; returns the
/// indices of the finished ones in completion order (gevent's `wait`). Panics like [`iwait`]'s
/// iterator.
pub fn wait<W: Waitable>(
    items: &[W],
    timeout: Option<Duration>,
    count: Option<usize>,
) -> Vec<usize> {
    let count = count.unwrap_or(items.len()).min(items.len());
    iwait(items, timeout).take(count).collect()
}

/// Yields the indices of `items` as they finish, in completion order, until all have or `timeout`
/// passes (gevent's `iwait`).
pub fn iwait<W: Waitable>(items: &[W], timeout: Option<Duration>) -> Iwait {
    let shared = Rc::new(IwaitShared {
        done: RefCell::new(VecDeque::new()),
        waiter: RefCell::new(None),
    });
    for (index, item) in items.iter().enumerate() {
        let shared = shared.clone();
        item.greenlet_ref().rawlink(move |_| {
            shared.done.borrow_mut().push_back(index);
            if let Some(waiter) = shared.waiter.borrow_mut().take() {
                waiter.wake();
            }
        });
    }
    Iwait {
        shared,
        remaining: items.len(),
        deadline: timeout.map(hub::deadline_after),
    }
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
pub fn killall<W: Waitable>(items: &[W], timeout: Option<Duration>) -> bool {
    let refs: Vec<GreenletRef> = items.iter().map(Waitable::greenlet_ref).collect();
    for greenlet in &refs {
        greenlet.kill_nowait();
    }
    let deadline = timeout.map(hub::deadline_after);
    refs.iter().all(|greenlet| {
        let left = deadline.map(|d| Duration::from_nanos(d.saturating_sub(hub::with(|h| h.now()))));
        matches!(greenlet.wait(left), Ok(true))
    })
}
