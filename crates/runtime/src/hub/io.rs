//! Readiness waiting on file descriptors: the primitive every green socket is built on.
//!
//! An fd is registered once with the hub's `mio::Poll`, edge-triggered, for both directions. An
//! edge that arrives while nobody waits is remembered, so the next wait returns at once and the
//! caller retries its syscall; callers must treat any return as "maybe ready" and retry (readiness
//! can be spurious). One greenlet may wait per fd and direction: a second gets an error rather than
//! a lost wake-up. [`notify_close`] wakes the waiters of an fd that is about to be closed with an
//! error, and forgets its registration so a later fd with the same number starts afresh.
//!
//! `epoll_wait` failing with anything but `EINTR` means the hub's epoll fd is unusable (closed or
//! replaced under it: `EBADF`, `EINVAL`); retrying would fail the same way every turn. The first
//! such failure is logged once (`log::error!`), every greenlet waiting on an fd is woken and its
//! wait, like every later one, fails with an error naming the cause, and the hub keeps running
//! timers and thread-pool results by sleeping between turns (at most [`DEGRADED_TICK`]) instead of
//! polling: sleeps, timeouts and joins still work, I/O fails loudly instead of hanging.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::{park_until, with, Hub, Waiter};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

struct FdEntry {
    registration: u64,
    /// The owner that registered this fd number (0: unknown, a plain `wait_readable` caller).
    source: u64,
    waiters: [Option<Waiter>; 2],
    /// An edge arrived with no waiter: the next wait returns immediately.
    pending: [bool; 2],
    /// A stream read came back short, so the socket was empty right after it: until the next
    /// read edge, a read parks first instead of making a syscall bound to fail with `EAGAIN`.
    drained: bool,
    /// The peer shut down its side or the socket failed. That edge comes once, so from now on
    /// reads never park before trying (the next read returns EOF or the error at once).
    read_closed: bool,
}

/// The longest a hub whose epoll failed sleeps per turn (so cross-thread results, which arrive
/// without a wake-up then, are seen soon).
const DEGRADED_TICK: Duration = Duration::from_millis(10);

pub(crate) struct Reactor {
    poll: RefCell<Poll>,
    /// Why `epoll_wait` failed for good, once it has.
    failure: RefCell<Option<String>>,
    /// Whether `failure` is set (checked by every wait without borrowing it).
    failed: Cell<bool>,
    events: RefCell<Events>,
    fds: RefCell<Vec<Option<FdEntry>>>,
    waiting: Cell<usize>,
    next_registration: Cell<u64>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            poll: RefCell::new(Poll::new()?),
            failure: RefCell::new(None),
            failed: Cell::new(false),
            events: RefCell::new(Events::with_capacity(1024)),
            fds: RefCell::new(Vec::new()),
            waiting: Cell::new(0),
            next_registration: Cell::new(1),
        })
    }

    pub(crate) fn registry(&self) -> io::Result<mio::Registry> {
        self.poll.borrow().registry().try_clone()
    }

    /// Greenlets (or root contexts) currently waiting on an fd.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.get()
    }

    /// Waits for events up to `timeout` and wakes the waiters of ready fds; whether any event
    /// came.
    pub(crate) fn poll(&self, hub: &Hub, timeout: Option<Duration>) -> bool {
        if self.failed.get() {
            let nap = timeout.map_or(DEGRADED_TICK, |t| t.min(DEGRADED_TICK));
            if !nap.is_zero() {
                std::thread::sleep(nap);
            }
            return false;
        }
        let mut events = self.events.borrow_mut();
        if let Err(err) = self.poll.borrow_mut().poll(&mut events, timeout) {
            if err.kind() != io::ErrorKind::Interrupted {
                drop(events);
                self.fail(hub, err);
            }
            return false;
        }
        let mut fds = self.fds.borrow_mut();
        for event in events.iter() {
            if event.token() == super::remote::WAKER_TOKEN {
                continue;
            }
            let Some(Some(entry)) = fds.get_mut(event.token().0) else {
                continue;
            };
            let failed = event.is_error();
            if event.is_read_closed() || failed {
                entry.read_closed = true;
            }
            if event.is_readable() || event.is_read_closed() || failed {
                entry.fire(Direction::Read, hub);
            }
            if event.is_writable() || event.is_write_closed() || failed {
                entry.fire(Direction::Write, hub);
            }
        }
        !events.is_empty()
    }

    /// `epoll_wait` failed for good: logs it once and wakes every fd waiter, whose wait then
    /// fails (see the module docs).
    #[cold]
    fn fail(&self, hub: &Hub, err: io::Error) {
        log::error!(
            "epoll_wait failed: {err}; this hub's I/O waits fail from now on (timers and \
             thread-pool results still run)"
        );
        *self.failure.borrow_mut() = Some(format!("epoll_wait failed: {err}"));
        self.failed.set(true);
        let waiters: Vec<Waiter> = self
            .fds
            .borrow_mut()
            .iter_mut()
            .flatten()
            .flat_map(|entry| entry.waiters.iter_mut().filter_map(Option::take))
            .collect();
        for waiter in waiters {
            waiter.wake_on(hub);
        }
    }

    /// The error every fd wait returns once the event loop has failed.
    #[inline]
    fn check_failed(&self) -> io::Result<()> {
        if !self.failed.get() {
            return Ok(());
        }
        self.failed_error()
    }

    #[cold]
    fn failed_error(&self) -> io::Result<()> {
        match &*self.failure.borrow() {
            None => Ok(()),
            Some(cause) => Err(io::Error::other(format!(
                "the hub's event loop failed ({cause}); no fd can be waited for on this thread"
            ))),
        }
    }

    fn ensure_registered(&self, fd: RawFd, source: u64) -> io::Result<u64> {
        let index = fd as usize;
        let mut fds = self.fds.borrow_mut();
        if let Some(Some(entry)) = fds.get(index) {
            if source == 0 || entry.source == source {
                return Ok(entry.registration);
            }
            // The fd number now belongs to another owner: the old one was closed without telling
            // this hub (for instance on another thread). Start afresh.
        }
        let poll = self.poll.borrow();
        let interest = Interest::READABLE | Interest::WRITABLE;
        let token = Token(index);
        if let Err(err) = poll
            .registry()
            .register(&mut SourceFd(&fd), token, interest)
        {
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(err);
            }
            poll.registry()
                .reregister(&mut SourceFd(&fd), token, interest)?;
        }
        if fds.len() <= index {
            fds.resize_with(index + 1, || None);
        }
        let registration = self.next_registration.get();
        self.next_registration.set(registration + 1);
        fds[index] = Some(FdEntry {
            registration,
            source,
            waiters: [None, None],
            pending: [false, false],
            drained: false,
            read_closed: false,
        });
        Ok(registration)
    }

    fn registration(&self, fd: RawFd) -> Option<u64> {
        match self.fds.borrow().get(fd as usize) {
            Some(Some(entry)) => Some(entry.registration),
            _ => None,
        }
    }

    fn wait(
        &self,
        fd: RawFd,
        source: u64,
        direction: Direction,
        deadline: Option<u64>,
    ) -> io::Result<()> {
        self.check_failed()?;
        let registration = self.ensure_registered(fd, source)?;
        let slot = direction as usize;
        loop {
            let waiter = super::current_waiter();
            {
                let mut fds = self.fds.borrow_mut();
                let entry = fds[fd as usize].as_mut().expect("registered above");
                if entry.ready_or_busy(fd, direction, &waiter)? {
                    return Ok(());
                }
                entry.waiters[slot] = Some(waiter.clone());
            }
            self.waiting.set(self.waiting.get() + 1);
            let guard = WaitGuard {
                reactor: self,
                fd,
                slot,
                waiter,
            };
            let parked = park_until(deadline);
            drop(guard);
            let timed_out = parked.map_err(|exit| io::Error::other(exit.to_string()))?;
            self.check_failed()?;
            if self.registration(fd) != Some(registration) {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!("fd {fd} was closed while a greenlet waited for it"),
                ));
            }
            let mut fds = self.fds.borrow_mut();
            let entry = fds[fd as usize].as_mut().expect("registration checked");
            if std::mem::take(&mut entry.pending[slot]) {
                return Ok(());
            }
            if timed_out {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "timed out waiting for fd {fd} to become {}",
                        direction.adjective()
                    ),
                ));
            }
        }
    }

    /// Whether the last read of `fd` by `source` drained it and no read edge has come since.
    fn read_drained(&self, fd: RawFd, source: u64) -> bool {
        match self.fds.borrow().get(fd as usize) {
            Some(Some(entry)) => entry.source == source && entry.drained,
            _ => false,
        }
    }

    /// Records that a read of `fd` by `source` just emptied its receive queue. The edges
    /// already seen (`pending`) announced data that this read consumed, so they are dropped;
    /// data arriving later raises a new edge, which clears `drained`. An fd read to empty before
    /// it ever waited is registered now (as its first wait would), so that its next read can
    /// wait for an edge instead of first failing with `EAGAIN`; data that came in between shows
    /// at once as an edge of the registration.
    fn set_read_drained(&self, fd: RawFd, source: u64) {
        let registered = matches!(self.fds.borrow().get(fd as usize), Some(Some(_)));
        if !registered && self.ensure_registered(fd, source).is_err() {
            return;
        }
        if let Some(Some(entry)) = self.fds.borrow_mut().get_mut(fd as usize) {
            if entry.source == source && !entry.read_closed {
                entry.drained = true;
                entry.pending[Direction::Read as usize] = false;
            }
        }
    }

    fn close(&self, hub: &Hub, fd: RawFd) {
        let entry = match self.fds.borrow_mut().get_mut(fd as usize) {
            Some(slot) => slot.take(),
            None => None,
        };
        if let Some(entry) = entry {
            let _ = self.poll.borrow().registry().deregister(&mut SourceFd(&fd));
            for waiter in entry.waiters.into_iter().flatten() {
                waiter.wake_on(hub);
            }
        }
    }
}

impl FdEntry {
    /// Before a wait in `direction`: `Ok(true)` if an edge is already pending (consumed: the
    /// caller returns at once), an error if another greenlet waits in that direction.
    fn ready_or_busy(
        &mut self,
        fd: RawFd,
        direction: Direction,
        waiter: &Waiter,
    ) -> io::Result<bool> {
        let slot = direction as usize;
        if std::mem::take(&mut self.pending[slot]) {
            return Ok(true);
        }
        if let Some(other) = &self.waiters[slot] {
            if !other.same(waiter) && other.is_waiting() {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "another greenlet is already waiting for fd {fd} to become {}",
                        direction.adjective()
                    ),
                ));
            }
        }
        Ok(false)
    }

    fn fire(&mut self, direction: Direction, hub: &Hub) {
        let slot = direction as usize;
        // The woken waiter sees `pending` and returns; without a waiter, the edge is remembered.
        self.pending[slot] = true;
        if direction == Direction::Read {
            self.drained = false;
        }
        if let Some(waiter) = self.waiters[slot].take() {
            waiter.wake_on(hub);
        }
    }
}

impl Direction {
    fn adjective(self) -> &'static str {
        match self {
            Direction::Read => "readable",
            Direction::Write => "writable",
        }
    }
}

/// Unregisters a wait when it ends, normally or by unwinding.
struct WaitGuard<'a> {
    reactor: &'a Reactor,
    fd: RawFd,
    slot: usize,
    waiter: Waiter,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.reactor.waiting.set(self.reactor.waiting.get() - 1);
        if let Some(Some(entry)) = self.reactor.fds.borrow_mut().get_mut(self.fd as usize) {
            if entry.waiters[self.slot]
                .as_ref()
                .is_some_and(|w| w.same(&self.waiter))
            {
                entry.waiters[self.slot] = None;
            }
        }
    }
}

fn deadline_nanos(deadline: Option<Instant>) -> Option<u64> {
    deadline.map(|d| with(|hub| hub.nanos_at(d)))
}

/// Blocks the current greenlet until `fd` may be readable (gevent's `wait_read`).
///
/// Returns `Ok` when the fd may be readable (retry the read: readiness can be spurious),
/// `ErrorKind::TimedOut` once `deadline` passes, an error if another greenlet already waits to
/// read the same fd, and an error if [`notify_close`] is called for the fd meanwhile.
pub fn wait_readable(fd: impl AsFd, deadline: Option<Instant>) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    let deadline = deadline_nanos(deadline);
    with(|hub| hub.io.wait(fd, 0, Direction::Read, deadline))
}

/// Blocks the current greenlet until `fd` may be writable (gevent's `wait_write`). See
/// [`wait_readable`].
pub fn wait_writable(fd: impl AsFd, deadline: Option<Instant>) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    let deadline = deadline_nanos(deadline);
    with(|hub| hub.io.wait(fd, 0, Direction::Write, deadline))
}

/// Waits for `fd`, registered on behalf of the owner `source` (see `GreenFd`): if the hub holds a
/// registration of this fd number made for another owner, it is replaced.
pub(crate) fn wait_source(
    fd: RawFd,
    source: u64,
    readable: bool,
    deadline: Option<Instant>,
) -> io::Result<()> {
    let deadline = deadline_nanos(deadline);
    let direction = if readable {
        Direction::Read
    } else {
        Direction::Write
    };
    with(|hub| hub.io.wait(fd, source, direction, deadline))
}

/// Whether a read of `fd` (owner `source`) should park before trying its syscall: its last
/// read drained it and no read edge has arrived since (see `GreenFd::read_stream_with`). Never
/// creates a hub.
pub(crate) fn read_drained(fd: RawFd, source: u64) -> bool {
    super::try_with(|hub| hub.io.read_drained(fd, source)).unwrap_or(false)
}

/// Records that a read of `fd` (owner `source`) returned less than asked: a stream's receive
/// queue was empty then. Does nothing if this thread's hub never registered the fd.
pub(crate) fn set_read_drained(fd: RawFd, source: u64) {
    let _ = super::try_with(|hub| hub.io.set_read_drained(fd, source));
}

/// Tells this thread's hub that `fd` is about to be closed: greenlets waiting on it wake with an
/// error and its registration is dropped (gevent's `cancel_wait`). Green sockets call this for
/// you; call it yourself before closing an fd you wait on with [`wait_readable`].
pub fn notify_close(fd: RawFd) {
    // Without a hub on this thread nothing is registered: do not create one (in a destructor,
    // perhaps while unwinding).
    if !super::HUB_EXISTS.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    let _ = super::HUB.try_with(|hub| hub.io.close(hub, fd));
}

impl Reactor {
    /// Waits until any of `fds` fires in a direction asked for, or `deadline` (hub nanoseconds)
    /// passes; see [`crate::foreign::wait_any`].
    pub(crate) fn wait_any(
        &self,
        fds: &[crate::foreign::FdInterest],
        deadline: Option<u64>,
    ) -> io::Result<()> {
        self.check_failed()?;
        let mut wanted = Vec::with_capacity(fds.len() * 2);
        for interest in fds {
            let registration = self.ensure_registered(interest.fd, interest.source)?;
            for (asked, direction) in [
                (interest.readable, Direction::Read),
                (interest.writable, Direction::Write),
            ] {
                if asked {
                    wanted.push((interest.fd, direction, registration));
                }
            }
        }
        let waiter = super::current_waiter();
        let mut guards = Vec::with_capacity(wanted.len());
        {
            let mut table = self.fds.borrow_mut();
            for &(fd, direction, _) in &wanted {
                let entry = table[fd as usize].as_mut().expect("registered above");
                if entry.ready_or_busy(fd, direction, &waiter)? {
                    return Ok(());
                }
            }
            for &(fd, direction, _) in &wanted {
                let slot = direction as usize;
                let entry = table[fd as usize].as_mut().expect("registered above");
                entry.waiters[slot] = Some(waiter.clone());
                self.waiting.set(self.waiting.get() + 1);
                guards.push(WaitGuard {
                    reactor: self,
                    fd,
                    slot,
                    waiter: waiter.clone(),
                });
            }
        }
        let parked = park_until(deadline);
        drop(guards);
        let timed_out = parked.map_err(|exit| io::Error::other(exit.to_string()))?;
        self.check_failed()?;
        let mut table = self.fds.borrow_mut();
        for &(fd, direction, registration) in &wanted {
            match table.get_mut(fd as usize) {
                Some(Some(entry)) if entry.registration == registration => {
                    if std::mem::take(&mut entry.pending[direction as usize]) {
                        return Ok(());
                    }
                }
                // Closed meanwhile: the caller's next call reports it.
                _ => return Ok(()),
            }
        }
        if timed_out {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out waiting for any of the fds",
            ));
        }
        // Woken without an edge of ours (spurious): the caller checks and waits again.
        Ok(())
    }
}
