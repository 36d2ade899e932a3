//! [`AsyncResult`]: a value (or an error) delivered once and read by any number of greenlets
//! (gevent's `AsyncResult`).

use std::any::Any;
use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use super::{deadlock, Position, WaitQueue};
use crate::greenlet::{panic_message, JoinError};
use crate::hub::{self, LoopExit};

/// The default error of an [`AsyncResult`]: an error or a panic payload, shareable so every getter
/// receives a clone.
#[derive(Clone)]
#[non_exhaustive]
pub enum AsyncError {
    /// Stored by [`AsyncResult::set_error`] (see [`AsyncError::new`]).
    Error(Rc<dyn Error>),
    /// Stored by [`AsyncResult::set_panic`]: the payload of a panic.
    Panicked(Rc<dyn Any + Send>),
}

impl AsyncError {
    /// Wraps any error.
    pub fn new(error: impl Error + 'static) -> AsyncError {
        AsyncError::Error(Rc::new(error))
    }

    /// Whether this is a panic payload.
    pub fn is_panic(&self) -> bool {
        matches!(self, AsyncError::Panicked(_))
    }

    /// The panic message, when this is a panic whose payload is a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            AsyncError::Panicked(payload) => panic_message(&**payload),
            AsyncError::Error(_) => None,
        }
    }
}

impl From<JoinError> for AsyncError {
    /// A greenlet's panic stays a panic payload; other join errors become [`AsyncError::Error`].
    fn from(error: JoinError) -> AsyncError {
        match error.into_panic() {
            Ok(payload) => AsyncError::Panicked(payload.into()),
            Err(other) => AsyncError::new(other),
        }
    }
}

impl fmt::Debug for AsyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsyncError::Error(error) => f.debug_tuple("Error").field(error).finish(),
            AsyncError::Panicked(_) => f
                .debug_tuple("Panicked")
                .field(&self.panic_message().unwrap_or("<non-string payload>"))
                .finish(),
        }
    }
}

impl fmt::Display for AsyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsyncError::Error(error) => fmt::Display::fmt(error, f),
            AsyncError::Panicked(_) => match self.panic_message() {
                Some(message) => write!(f, "panicked: {message}"),
                None => f.write_str("panicked"),
            },
        }
    }
}

impl Error for AsyncError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            AsyncError::Error(error) => Some(&**error),
            AsyncError::Panicked(_) => None,
        }
    }
}

/// A result set once by one greenlet and read by any number of others (gevent's `AsyncResult`).
///
/// A cloneable handle: the setter and the getters hold clones. [`get`](AsyncResult::get) blocks
/// until a value or an error is set, then returns a *clone* of it, to every getter and on every
/// call, as gevent's `get` returns the value or raises the exception each time (wrap a value that
/// is not `Clone` in an `Rc`). Setting again replaces the stored result, as in gevent.
///
/// The error type `E` defaults to [`AsyncError`] (any error or a panic payload); use
/// `AsyncResult::<T, MyError>::default()` for your own.
///
/// ```
/// use green_runtime::sync::AsyncResult;
///
/// let result = AsyncResult::new();
/// let setter = result.clone();
/// green_runtime::spawn(move || setter.set(6 * 7));
/// assert_eq!(result.get().unwrap(), 42);
/// assert!(result.successful());
/// ```
pub struct AsyncResult<T, E = AsyncError> {
    inner: Rc<Inner<T, E>>,
}

struct Inner<T, E> {
    result: RefCell<Option<Result<T, E>>>,
    waiters: WaitQueue,
}

impl<T, E> Clone for AsyncResult<T, E> {
    fn clone(&self) -> Self {
        AsyncResult {
            inner: self.inner.clone(),
        }
    }
}

impl<T, E> Default for AsyncResult<T, E> {
    fn default() -> Self {
        AsyncResult {
            inner: Rc::new(Inner {
                result: RefCell::new(None),
                waiters: WaitQueue::default(),
            }),
        }
    }
}

impl<T: fmt::Debug, E: fmt::Debug> fmt::Debug for AsyncResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("result", &*self.inner.result.borrow())
            .field("waiters", &self.inner.waiters.len())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    /// An empty result with the default error type [`AsyncError`].
    pub fn new() -> AsyncResult<T> {
        AsyncResult::default()
    }

    /// Stores a panic payload (from `catch_unwind` or [`JoinError::into_panic`]) as the error.
    pub fn set_panic(&self, payload: Box<dyn Any + Send>) {
        self.set_result(Err(AsyncError::Panicked(payload.into())));
    }
}

impl<T, E> AsyncResult<T, E> {
    /// Stores `value` and wakes every waiter.
    pub fn set(&self, value: T) {
        self.set_result(Ok(value));
    }

    /// Stores `error` and wakes every waiter (gevent's `set_exception`).
    pub fn set_error(&self, error: E) {
        self.set_result(Err(error));
    }

    /// Stores a value or an error and wakes every waiter; replaces any earlier result.
    pub fn set_result(&self, result: Result<T, E>) {
        let old = self.inner.result.replace(Some(result));
        drop(old);
        self.inner.waiters.grant_all();
    }

    /// Whether a value or an error is stored.
    pub fn ready(&self) -> bool {
        self.inner.result.borrow().is_some()
    }

    /// Whether a value (not an error) is stored.
    pub fn successful(&self) -> bool {
        matches!(*self.inner.result.borrow(), Some(Ok(_)))
    }

    /// Blocks until a result is stored, without taking it.
    ///
    /// # Panics
    ///
    /// From a root context, if nothing could ever set it (the [`LoopExit`] deadlock).
    pub fn wait(&self) {
        self.wait_until(None).unwrap_or_else(|exit| deadlock(exit));
    }

    /// Blocks at most `timeout`; whether a result is stored.
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(hub::deadline_after(timeout)))
            .unwrap_or_else(|exit| deadlock(exit))
    }

    fn wait_until(&self, deadline: Option<u64>) -> Result<bool, LoopExit> {
        loop {
            if self.ready() {
                return Ok(true);
            }
            if !self.inner.waiters.wait(deadline, Position::Back, || {})? {
                return Ok(self.ready());
            }
        }
    }
}

impl<T: Clone, E: Clone> AsyncResult<T, E> {
    /// Blocks until a result is stored and returns a clone of it.
    ///
    /// # Panics
    ///
    /// From a root context, if nothing could ever set it (the [`LoopExit`] deadlock).
    pub fn get(&self) -> Result<T, E> {
        self.wait();
        self.try_get().expect("a result is stored after wait")
    }

    /// Blocks at most `timeout`; `None` if no result was stored in time.
    ///
    /// # Panics
    ///
    /// From a root context, at once, if nothing but this timeout could end the wait (the
    /// [`LoopExit`] deadlock; see the [module docs](crate::sync)).
    pub fn get_timeout(&self, timeout: Duration) -> Option<Result<T, E>> {
        self.wait_timeout(timeout);
        self.try_get()
    }

    /// A clone of the stored result, without blocking (gevent's `get(block=False)`).
    pub fn try_get(&self) -> Option<Result<T, E>> {
        self.inner.result.borrow().clone()
    }
}
