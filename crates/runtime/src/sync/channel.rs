//! [`Channel`]: a rendezvous between a putter and a getter (gevent's `Channel`).
//!
//! A waiting putter leaves an *offer* holding its item; a getter takes the item out of the first
//! offer and wakes its putter. The item stays in the putter's offer until a getter runs, so a
//! putter that gives up takes its item back and a getter that gives up takes nothing.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use super::{deadlock, Position, WaitQueue};
use crate::hub::{self, LoopExit};

/// A queue of capacity zero: `put` blocks until a getter has taken the item (gevent's `Channel`).
///
/// A cloneable handle: clones share the channel. Putters and getters are each served in FIFO
/// order.
///
/// ```
/// use green_runtime::sync::Channel;
///
/// let channel = Channel::new();
/// let getter = {
///     let channel = channel.clone();
///     green_runtime::spawn(move || channel.get())
/// };
/// channel.put("hello"); // returns once the getter has the item
/// assert_eq!(getter.join().unwrap(), "hello");
/// ```
pub struct Channel<T> {
    inner: Rc<Inner<T>>,
}

struct Inner<T> {
    /// Items of waiting putters (and of `try_put`s made while a getter waited), oldest first.
    offers: RefCell<VecDeque<Rc<Offer<T>>>>,
    /// Offers promised to woken getters that have not run yet.
    reserved: Cell<usize>,
    getters: WaitQueue,
}

struct Offer<T> {
    item: RefCell<Option<T>>,
    /// The putter waiting for its item to be taken (none for a `try_put`).
    taken: WaitQueue,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for Channel<T> {
    fn default() -> Self {
        Channel {
            inner: Rc::new(Inner {
                offers: RefCell::new(VecDeque::new()),
                reserved: Cell::new(0),
                getters: WaitQueue::default(),
            }),
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("offers", &self.inner.offers.borrow().len())
            .field("getters", &self.inner.getters.len())
            .finish()
    }
}

/// Withdraws a putter's offer when its `put` ends, whichever way it ends.
struct Withdraw<'a, T> {
    inner: &'a Inner<T>,
    offer: &'a Rc<Offer<T>>,
}

impl<T> Drop for Withdraw<'_, T> {
    fn drop(&mut self) {
        self.inner
            .offers
            .borrow_mut()
            .retain(|offer| !Rc::ptr_eq(offer, self.offer));
    }
}

impl<T> Channel<T> {
    /// A new channel.
    pub fn new() -> Channel<T> {
        Channel::default()
    }

    /// The number of greenlets (or root contexts) blocked in `get`.
    pub fn getters_waiting(&self) -> usize {
        self.inner.getters.len()
    }

    /// The number of items offered and not yet taken (putters blocked in `put`).
    pub fn putters_waiting(&self) -> usize {
        self.inner.offers.borrow().len()
    }

    /// Hands `item` to a getter, blocking until one has taken it.
    ///
    /// # Panics
    ///
    /// From a root context, if no getter could ever come (the [`LoopExit`] deadlock).
    pub fn put(&self, item: T) {
        match self.put_until(item, None) {
            Ok(Ok(())) => {}
            Ok(Err(_)) => unreachable!("a put without a deadline cannot time out"),
            Err(exit) => deadlock(exit),
        }
    }

    /// Hands `item` to a getter within `timeout`; gives it back if no getter took it. A zero
    /// `timeout` is [`try_put`](Channel::try_put).
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), T> {
        if timeout.is_zero() {
            return self.try_put(item);
        }
        self.put_until(item, Some(hub::deadline_after(timeout)))
            .unwrap_or_else(|exit| deadlock(exit))
    }

    /// Hands `item` over only if a getter is already waiting (it will take it when it runs);
    /// gives it back otherwise.
    pub fn try_put(&self, item: T) -> Result<(), T> {
        if self.inner.getters.is_empty() {
            return Err(item);
        }
        self.inner.offers.borrow_mut().push_back(Rc::new(Offer {
            item: RefCell::new(Some(item)),
            taken: WaitQueue::default(),
        }));
        self.grant_offers();
        Ok(())
    }

    /// Takes an item from a putter, blocking until one comes.
    ///
    /// # Panics
    ///
    /// From a root context, if no putter could ever come (the [`LoopExit`] deadlock).
    pub fn get(&self) -> T {
        match self.get_until(None) {
            Ok(Some(item)) => item,
            Ok(None) => unreachable!("a get without a deadline cannot time out"),
            Err(exit) => deadlock(exit),
        }
    }

    /// Takes an item from a putter, waiting at most `timeout`; `None` if none came.
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn get_timeout(&self, timeout: Duration) -> Option<T> {
        self.get_until(Some(hub::deadline_after(timeout)))
            .unwrap_or_else(|exit| deadlock(exit))
    }

    /// Takes an item only if a putter is already waiting.
    pub fn try_get(&self) -> Option<T> {
        self.has_free_offer().then(|| self.take())
    }

    fn put_until(&self, item: T, deadline: Option<u64>) -> Result<Result<(), T>, LoopExit> {
        let offer = Rc::new(Offer {
            item: RefCell::new(Some(item)),
            taken: WaitQueue::default(),
        });
        self.inner.offers.borrow_mut().push_back(offer.clone());
        let withdraw = Withdraw {
            inner: &self.inner,
            offer: &offer,
        };
        self.grant_offers();
        let result = offer.taken.wait(deadline, Position::Back, || {});
        drop(withdraw);
        // Delivered if and only if a getter took the item.
        let item = offer.item.borrow_mut().take();
        match (item, result) {
            (None, _) => Ok(Ok(())),
            (Some(_), Err(exit)) => Err(exit),
            (Some(item), Ok(_)) => Ok(Err(item)),
        }
    }

    fn get_until(&self, deadline: Option<u64>) -> Result<Option<T>, LoopExit> {
        if self.has_free_offer() {
            return Ok(Some(self.take()));
        }
        let mut position = Position::Back;
        loop {
            let granted = self
                .inner
                .getters
                .wait(deadline, position, || self.return_offer())?;
            if !granted {
                return Ok(None);
            }
            self.inner.reserved.set(self.inner.reserved.get() - 1);
            if self.has_free_offer() {
                return Ok(Some(self.take()));
            }
            // The putter withdrew before this getter ran: wait again, keeping its turn.
            position = Position::Front;
        }
    }

    fn has_free_offer(&self) -> bool {
        self.inner.offers.borrow().len() > self.inner.reserved.get()
    }

    fn take(&self) -> T {
        let offer = self.inner.offers.borrow_mut().pop_front();
        let offer = offer.expect("a getter only takes an offer that is there for it");
        let item = offer.item.borrow_mut().take();
        offer.taken.grant_all();
        item.expect("an offer in the channel holds its item")
    }

    /// A woken getter that unwound lets the next getter have its offer.
    fn return_offer(&self) {
        self.inner.reserved.set(self.inner.reserved.get() - 1);
        self.grant_offers();
    }

    fn grant_offers(&self) {
        while self.has_free_offer() && self.inner.getters.grant_one() {
            self.inner.reserved.set(self.inner.reserved.get() + 1);
        }
    }
}
