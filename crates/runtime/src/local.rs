//! Greenlet-local storage (gevent's `local`): a value per greenlet, created on first use and
//! dropped when its greenlet finishes. Root contexts (the main thread, plain threads) have their
//! own values too.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hub;

pub(crate) type LocalMap = HashMap<u64, Box<dyn Any>>;

/// A key to one greenlet-local value of type `T`, initialised by `init` in each greenlet.
pub struct Local<T: 'static> {
    id: u64,
    init: fn() -> T,
    marker: PhantomData<fn() -> T>,
}

impl<T: 'static> fmt::Debug for Local<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Local").field("id", &self.id).finish()
    }
}

impl<T: 'static> Local<T> {
    /// A new key; each greenlet's value starts as `init()`.
    pub fn new(init: fn() -> T) -> Local<T> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Local {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            init,
            marker: PhantomData,
        }
    }

    /// Runs `f` with the current greenlet's value. `f` must not block (the value is borrowed).
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let task = hub::with(|hub| hub.current_task());
        let mut locals = task.core().extras().locals.borrow_mut();
        let value = locals
            .get_or_insert_with(HashMap::new)
            .entry(self.id)
            .or_insert_with(|| Box::new((self.init)()));
        f(value
            .downcast_mut::<T>()
            .expect("local value has its key's type"))
    }

    /// Replaces the current greenlet's value, returning the old one.
    pub fn set(&self, value: T) -> T {
        self.with(|slot| std::mem::replace(slot, value))
    }
}

impl<T: Clone + 'static> Local<T> {
    /// A clone of the current greenlet's value.
    pub fn get(&self) -> T {
        self.with(|v| v.clone())
    }
}
