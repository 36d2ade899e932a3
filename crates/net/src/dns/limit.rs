//! A per-hub cap on lookups asking at once (each with one UDP try in flight at a time).
//!
//! Hundreds of greenlets resolving at once would otherwise burst a query each at the server:
//! a local cache (dnsmasq, systemd-resolved) reads them from one socket whose receive buffer
//! then overflows, and every dropped query costs a full retransmission timeout. Capping the
//! lookups asking at once keeps the burst inside the buffer; the extra lookups queue on the hub
//! and a freed slot is handed straight to the first of them (FIFO, no barging, no futile
//! wake-ups).
//!
//! The cap must not stretch a lookup past its bound (attempts × servers × timeout, as glibc, Go
//! and c-ares bound it), however many lookups share the hub. So a lookup keeps its slot from its
//! first query to its last (retries, the next servers and CNAME re-queries never queue behind
//! newer lookups), a try waits for a slot only until its own deadline (the wait is part of the
//! try), and a lookup whose try went by without a slot waits for the next ahead of new lookups:
//! behind a silent server, failover is not queued behind every newer lookup's first try.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use green_runtime::unversioned::{current_waiter, park_until, Waiter};

/// A queued acquirer: its current park's waiter, and whether a slot was handed to it.
struct Ticket {
    waiter: RefCell<Waiter>,
    granted: Cell<bool>,
}

#[derive(Default)]
struct Limiter {
    in_flight: Cell<usize>,
    /// Lookups whose earlier try went by without a slot, served first.
    retries: RefCell<VecDeque<Rc<Ticket>>>,
    /// Lookups at their first try.
    first_tries: RefCell<VecDeque<Rc<Ticket>>>,
}

impl Limiter {
    fn queue(&self, retry: bool) -> &RefCell<VecDeque<Rc<Ticket>>> {
        if retry {
            &self.retries
        } else {
            &self.first_tries
        }
    }
}

thread_local! {
    static LIMITER: Limiter = Limiter::default();
}

/// Gives a slot back: to the first queued acquirer if there is one (retries first), else to the
/// pool.
fn release() {
    let _ = LIMITER.try_with(|limiter| {
        let next = limiter.retries.borrow_mut().pop_front();
        let next = next.or_else(|| limiter.first_tries.borrow_mut().pop_front());
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

/// Leaves the queue if the park ends any other way than a grant taken (kill, deadline, loop
/// exit); a slot granted meanwhile is passed on.
struct Queued {
    ticket: Rc<Ticket>,
    retry: bool,
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
            // Waits mostly end in the order they began (each try waits at most its timeout), so
            // the ticket is found near the front: no scan of a long queue per expiry.
            let mut queue = limiter.queue(self.retry).borrow_mut();
            if let Some(at) = queue.iter().position(|t| Rc::ptr_eq(t, &self.ticket)) {
                queue.remove(at);
            }
        });
    }
}

/// What [`acquire`] found.
enum Arrival {
    /// A free slot, now taken.
    Taken,
    /// No free slot, and the deadline has passed.
    TooLate,
    /// No free slot: queued with this ticket.
    Queued(Rc<Ticket>),
}

/// Takes one of `limit` slots of this thread's hub, parking the caller while all are taken:
/// `None` if none came free before `deadline`. A `retry` (of a lookup whose earlier try got no
/// slot) queues ahead of first tries.
pub(crate) fn acquire(limit: usize, retry: bool, deadline: Instant) -> io::Result<Option<Permit>> {
    let limit = limit.max(1);
    let arrival = LIMITER.with(|limiter| {
        if limiter.in_flight.get() < limit
            && limiter.retries.borrow().is_empty()
            && limiter.first_tries.borrow().is_empty()
        {
            limiter.in_flight.set(limiter.in_flight.get() + 1);
            return Arrival::Taken;
        }
        if Instant::now() >= deadline {
            return Arrival::TooLate;
        }
        let ticket = Rc::new(Ticket {
            waiter: RefCell::new(current_waiter()),
            granted: Cell::new(false),
        });
        limiter.queue(retry).borrow_mut().push_back(ticket.clone());
        Arrival::Queued(ticket)
    });
    let ticket = match arrival {
        Arrival::Taken => return Ok(Some(Permit { _private: () })),
        Arrival::TooLate => return Ok(None),
        Arrival::Queued(ticket) => ticket,
    };
    let mut queued = Queued {
        ticket,
        retry,
        armed: true,
    };
    loop {
        *queued.ticket.waiter.borrow_mut() = current_waiter();
        let expired =
            park_until(Some(deadline)).map_err(|exit| io::Error::other(exit.to_string()))?;
        // Past the deadline a slot granted meanwhile is passed on: the try has no time left.
        if expired {
            return Ok(None);
        }
        if queued.ticket.granted.get() {
            queued.armed = false;
            return Ok(Some(Permit { _private: () }));
        }
    }
}
