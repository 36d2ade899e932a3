//! The hub's park/wake primitive, for green's sibling crates and for your own green primitives.
//! **Not covered by semver**: anything here may change in a minor release (ureq's `unversioned`
//! module makes the same deal).
//!
//! Every blocking call in green is built the same way: take a [`Waiter`] for the current
//! context, hand it to whatever will fire (a timer, an fd, another greenlet), and [`park`]. A
//! waiter wakes only the park it was made for, so a stale wake-up from a source the greenlet
//! stopped waiting on is harmless.
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use green_runtime::unversioned::{current_waiter, park, Waiter};
//!
//! // A one-shot signal: the waiting side parks until the other side wakes its waiter.
//! let slot: Rc<RefCell<Option<Waiter>>> = Rc::default();
//! let waker = {
//!     let slot = slot.clone();
//!     green_runtime::spawn(move || {
//!         if let Some(waiter) = slot.borrow_mut().take() {
//!             waiter.wake();
//!         }
//!     })
//! };
//! *slot.borrow_mut() = Some(current_waiter());
//! park().unwrap(); // runs the hub until `waker` wakes this park
//! waker.join().unwrap();
//! ```

use std::time::Instant;

use crate::hub::{self, LoopExit};

pub use crate::hub::Waiter;

/// A waiter for the current context's next park (made before handing it out, woken after).
#[inline(always)]
pub fn current_waiter() -> Waiter {
    hub::current_waiter()
}

/// Parks the current greenlet (or runs the hub, from a root context) until a waiter made by
/// [`current_waiter`] since the last park is woken. Wake-ups can be spurious: re-check the
/// condition and park again.
///
/// # Errors
///
/// [`LoopExit`] when called outside any greenlet and nothing could ever wake it.
#[inline(always)]
pub fn park() -> Result<(), LoopExit> {
    hub::park()
}

/// [`park`] until woken or until `deadline`; `Ok(true)` if the deadline passed.
///
/// `Ok(true)` means the deadline's timer fired (or the deadline had passed before the park): a
/// park woken otherwise just as the deadline passes gives `Ok(false)`, and the next park with
/// that deadline returns `Ok(true)` at once, so loop on `Ok(false)` as on any wake-up.
///
/// The deadline bounds the wait; it is not a wake-up: from a root context with nothing else
/// pending, this is the [`LoopExit`] deadlock at once (see [`crate::sync`]'s deadlock policy).
///
/// # Errors
///
/// [`LoopExit`], as for [`park`].
#[inline(always)]
pub fn park_until(deadline: Option<Instant>) -> Result<bool, LoopExit> {
    hub::park_until(deadline.map(hub::nanos_at))
}

/// The hub's latest clock reading, without reading the clock: taken at least once per turn of
/// the hub loop, so it lags `Instant::now()` by at most the time the greenlets ready in one turn
/// run (never ahead of it). For values that need the time only coarsely, many times per turn (a
/// cached `Date` header decides with it when to read the wall clock again, as nginx uses the
/// time it caches once per event-loop iteration).
pub fn recent_now() -> Instant {
    hub::recent_instant()
}

/// Number of greenlets in this thread's ready queue (for tests and diagnostics).
pub fn ready_count() -> usize {
    hub::ready_count()
}

/// Number of timers armed on this thread's hub (for tests and diagnostics).
pub fn timer_count() -> usize {
    hub::timer_count()
}
