//! A per-hub cap on UDP tries in flight.
//!
//! Hundreds of greenlets resolving at once would otherwise burst a query each at the server:
//! a local cache (dnsmasq, systemd-resolved) reads them from one socket whose receive buffer
//! then overflows, and every dropped query costs a full retransmission timeout. Capping the tries
//! in flight keeps the burst inside the buffer; the extra lookups queue on the hub and a freed
//! slot is handed straight to the first of them (FIFO, no barging, no futile wake-ups).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use green_runtime::hub::{self, Waiter};

/// A queued acquirer: its current park's waiter, and whether a slot was handed to it.
struct Ticket {
    waiter: RefCell<Waiter>,
    granted: Cell<bool>,
}

#[derive(Default)]
struct Limiter {
    in_flight: Cell<usize>,
    queue: RefCell<VecDeque<Rc<Ticket>>>,
}

thread_local! {
    static LIMITER: Limiter = Limiter::default();
}

/// Gives a slot back: to the first queued acquirer if there is one, else to the pool.
fn release() {
    let _ = LIMITER.try_with(|limiter| {
        let next = limiter.queue.borrow_mut().pop_front();
        match next {
            Some(ticket) => {
                ticket.granted.set(true);
                ticket.waiter.borrow().wake();
            }
            None => limiter.in_flight.set(limiter.in_flight.get() - 1),
        }
    });
}

/// A slot taken by [`acquire`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    _private: (),
}

impl Drop for Permit {
    fn drop(&mut self) {
        release();
    }
}

/// Leaves the queue if the park ends any other way than a grant (kill, timeout, loop exit);
/// a slot granted meanwhile is passed on.
struct Queued {
    ticket: Rc<Ticket>,
    armed: bool,
}

impl Drop for Queued {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.ticket.granted.get() {
            release();
            return;
        }
        let _ = LIMITER.try_with(|limiter| {
            limiter
                .queue
                .borrow_mut()
                .retain(|t| !Rc::ptr_eq(t, &self.ticket));
        });
    }
}

/// Takes one of `limit` slots of this thread's hub, parking the caller while all are taken.
pub(crate) fn acquire(limit: usize) -> io::Result<Permit> {
    let limit = limit.max(1);
    let ticket = LIMITER.with(|limiter| {
        if limiter.in_flight.get() < limit && limiter.queue.borrow().is_empty() {
            limiter.in_flight.set(limiter.in_flight.get() + 1);
            return None;
        }
        let ticket = Rc::new(Ticket {
            waiter: RefCell::new(hub::current_waiter()),
            granted: Cell::new(false),
        });
        limiter.queue.borrow_mut().push_back(ticket.clone());
        Some(ticket)
    });
    let Some(ticket) = ticket else {
        return Ok(Permit { _private: () });
    };
    let mut queued = Queued {
        ticket,
        armed: true,
    };
    loop {
        *queued.ticket.waiter.borrow_mut() = hub::current_waiter();
        hub::park().map_err(|exit| io::Error::other(exit.to_string()))?;
        if queued.ticket.granted.get() {
            queued.armed = false;
            return Ok(Permit { _private: () });
        }
    }
}
