//! Raw greenlets with explicit switching: Python's `greenlet` module, the layer gevent is built on.
//!
//! The hub's greenlets never choose who runs next; raw greenlets do: `g.switch(value)` transfers
//! control (and a value) to `g`, and the `switch` call that suspended `g` returns that value.
//! Returning from a greenlet switches to its parent with the return value. This gives symmetric
//! coroutines, with which a user can write schedulers, generators or their own hub.
//!
//! ```
//! use green_runtime::raw::{RawGreenlet, Value};
//!
//! let doubler = RawGreenlet::new(|first: Value| {
//!     let mut n = *first.downcast::<i32>().unwrap();
//!     loop {
//!         // Hand 2n to whoever switched to us (our parent, here), wait for the next number.
//!         let parent = RawGreenlet::current().parent().unwrap();
//!         n = *parent.switch(Box::new(2 * n)).downcast::<i32>().unwrap();
//!     }
//! });
//! assert_eq!(*doubler.switch(Box::new(3)).downcast::<i32>().unwrap(), 6);
//! assert_eq!(*doubler.switch(Box::new(5)).downcast::<i32>().unwrap(), 10);
//! ```
//!
//! # Implementation
//!
//! corosensei coroutines are asymmetric (a coroutine can only suspend back to whoever resumed
//! it), so the switch is a trampoline: a greenlet that switches suspends back to a *driver* loop
//! with a request "switch to B with this value", and the driver resumes B. The driver runs in the
//! *root* context, the code that is not a raw greenlet: a `switch` called from the root runs the
//! driver until some greenlet switches back to the root (or returns into it). Stacks come from the
//! hub's slab pool ([`crate::stack`]).
//!
//! Every hub context (the thread's root context, and each hub greenlet) has its own root and its
//! own tree of raw greenlets: a raw greenlet belongs to the hub context that created it, and
//! switching to it from another context panics (as Python's greenlet refuses a switch from
//! another thread). So a raw greenlet's body may call green blocking APIs (`green::sleep`, green
//! I/O, `join`): the hub sees the context that drives the raw greenlets (the main thread, or a
//! hub greenlet) blocking, runs its loop on the raw greenlet's stack or suspends that hub
//! greenlet, and other hub greenlets keep their own raw greenlets apart. A kill or `with_timeout`
//! of that hub context unwinds the raw greenlet blocked in it; the unwind then propagates up the
//! parent chain to the root, like any uncaught panic.
//!
//! # Semantics (Python greenlet's, in Rust terms)
//!
//! * Values are `Box<dyn Any>` ([`Value`]), in both directions, as Python's are untyped.
//! * An uncaught panic in a greenlet kills it and is re-raised (`resume_unwind`, same payload) in
//!   its parent's pending `switch`. A greenlet that dies with [`RawGreenletExit`] is the
//!   exception: its parent's `switch` *returns* that payload as the value (Python's
//!   `GreenletExit` does not propagate either).
//! * [`RawGreenlet::throw`] unwinds the target from its pending `switch`; thrown into a greenlet
//!   that never started, it never runs and the payload goes straight to its parent.
//! * Switching to (or throwing into) a dead greenlet goes to its nearest live ancestor instead:
//!   when that is the caller, `switch` returns the value at once.
//! * Dropping the last handle to a suspended greenlet throws [`RawGreenletExit`] into it from the
//!   dropping context, which becomes its parent (Python does this on garbage collection), so its
//!   destructors run. A panic it dies with other than `RawGreenletExit` is re-raised by `drop`.
//!
//! # Caveats
//!
//! * A greenlet whose own stack holds its handle (a reference cycle) is never dropped: it stays
//!   suspended and its stack is leaked, since Rust has no cycle collector. Beware temporaries:
//!   in `RawGreenlet::current().parent().unwrap().switch(v)` the `current()` handle lives until
//!   the switch returns; bind the parent first (`let parent = ...; parent.switch(v)`).
//! * A suspended greenlet dropped while the thread is panicking, from another hub context, during
//!   thread teardown, or that survives its kill-on-drop (it caught the exit and switched away) is
//!   leaked with its stack, never force-unwound: corosensei's forced unwind aborts the process if
//!   a destructor switches.
//! * Do not switch raw greenlets from a [`call_later`](crate::call_later) callback: it runs inside
//!   the hub loop, which must not block.
//! * A raw greenlet overflowing its stack is reported under the name of the hub context that
//!   drives it.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use corosensei::{Coroutine, CoroutineResult};

use crate::greenlet::{current_context_id, RawYielder};
use crate::local::Local;
use crate::stack::{self, SlabStack};

/// What is passed between raw greenlets: any value, boxed (Python's values are untyped too).
pub type Value = Box<dyn Any>;

/// The payload that kills a raw greenlet quietly (Python's `greenlet.GreenletExit`).
///
/// `g.throw(Box::new(RawGreenletExit))` unwinds `g` from its pending switch; when `g` dies with it,
/// `g`'s parent's `switch` returns the payload (`Box<RawGreenletExit>`) as a value instead of
/// unwinding. It is also what a suspended greenlet is killed with when its last handle is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawGreenletExit;

type Payload = Box<dyn Any + Send>;

/// A greenlet's function, until it starts.
type Body = Box<dyn FnOnce(Value) -> Value>;

/// What a switch delivers to the greenlet it resumes.
enum Transfer {
    Value(Value),
    Throw(Payload),
}

/// What a switching greenlet asks the driver to do.
struct Request {
    target: RawGreenlet,
    transfer: Transfer,
}

type RawCo = Coroutine<Transfer, Request, Result<Value, Payload>, SlabStack>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Created, never switched to.
    New,
    /// Executing (resumed by the driver and not switched away).
    Running,
    /// Waiting in a `switch` (the root: waiting for its driver to come back).
    Suspended,
    /// Returned or died of an uncaught panic.
    Dead,
}

struct Inner {
    id: u64,
    /// The hub context (its [`World`]) this greenlet belongs to.
    world: u64,
    is_root: bool,
    stack_size: usize,
    state: Cell<State>,
    body: Cell<Option<Body>>,
    /// The suspended coroutine (state `Suspended`, non-root only).
    co: Cell<Option<RawCo>>,
    yielder: Rc<RawYielder<Transfer, Request>>,
    /// `None` only for a root.
    parent: RefCell<Option<RawGreenlet>>,
    /// Already thrown [`RawGreenletExit`] into by a drop: a second drop leaks it.
    killed_on_drop: bool,
}

/// A raw greenlet (Python's `greenlet.greenlet`): a function on its own stack that runs when
/// switched to, and switches explicitly.
///
/// The handle is a reference: clones name the same greenlet and compare equal. Not `Send`: a raw
/// greenlet belongs to the hub context (thread root or hub greenlet) that created it. See the
/// [module docs](crate::raw) for the semantics.
#[derive(Clone)]
pub struct RawGreenlet {
    inner: Rc<Inner>,
}

impl fmt::Debug for RawGreenlet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawGreenlet")
            .field("id", &self.inner.id)
            .field("root", &self.inner.is_root)
            .field("state", &self.inner.state.get())
            .finish()
    }
}

impl PartialEq for RawGreenlet {
    fn eq(&self, other: &RawGreenlet) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for RawGreenlet {}

fn next_id() -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The raw greenlets of one hub context: its root and the greenlet running now.
struct World {
    id: u64,
    root: RawGreenlet,
    current: RefCell<RawGreenlet>,
}

thread_local! {
    /// Each hub context's world, dropped with that context when it is a hub greenlet.
    static WORLD: Local<Rc<World>> = Local::new(World::new);
    /// The last world looked up, with its hub context's id: most switches skip the local lookup.
    static LAST_WORLD: RefCell<Option<(u64, Rc<World>)>> = const { RefCell::new(None) };
}

fn world() -> Rc<World> {
    let context = current_context_id();
    LAST_WORLD.with(|last| {
        if let Some((id, world)) = &*last.borrow() {
            if *id == context {
                return world.clone();
            }
        }
        let world = WORLD.with(|key| key.get());
        let previous = last.replace(Some((context, world.clone())));
        drop(previous);
        world
    })
}

impl World {
    fn new() -> Rc<World> {
        let id = next_id();
        let root = RawGreenlet {
            inner: Rc::new(Inner {
                id: next_id(),
                world: id,
                is_root: true,
                stack_size: 0,
                state: Cell::new(State::Running),
                body: Cell::new(None),
                co: Cell::new(None),
                yielder: RawYielder::new(),
                parent: RefCell::new(None),
                killed_on_drop: false,
            }),
        };
        Rc::new(World {
            id,
            current: RefCell::new(root.clone()),
            root,
        })
    }

    fn current(&self) -> RawGreenlet {
        self.current.borrow().clone()
    }

    /// Delivers `transfer` from the root context to `target`, resuming greenlets until one
    /// switches (or returns) to the root; gives what the root receives.
    fn drive(&self, mut target: RawGreenlet, mut transfer: Transfer) -> Transfer {
        // Who asked for the current transfer: told if the target's stack cannot be allocated.
        let mut requester = self.root.clone();
        self.root.inner.state.set(State::Suspended);
        let result = loop {
            while target.inner.state.get() == State::Dead {
                let parent = target.parent().expect("only a root has no parent");
                target = parent;
            }
            if target.inner.is_root {
                break transfer;
            }
            let mut co = match target.inner.state.get() {
                State::New => match transfer {
                    Transfer::Throw(payload) => {
                        // Killed before it started: it never runs.
                        target.inner.state.set(State::Dead);
                        transfer = death(Err(payload));
                        drop(target.inner.body.take());
                        continue;
                    }
                    Transfer::Value(value) => match target.start() {
                        Ok(co) => {
                            transfer = Transfer::Value(value);
                            co
                        }
                        Err(err) => {
                            transfer = Transfer::Throw(Box::new(format!(
                                "cannot allocate a stack for raw greenlet {}: {err}",
                                target.inner.id
                            )));
                            target = requester.clone();
                            continue;
                        }
                    },
                },
                _ => target
                    .inner
                    .co
                    .take()
                    .expect("a suspended raw greenlet has its coroutine"),
            };
            target.inner.state.set(State::Running);
            drop(self.current.replace(target.clone()));
            let outcome = co.resume(transfer);
            drop(self.current.replace(self.root.clone()));
            match outcome {
                CoroutineResult::Yield(request) => {
                    target.inner.state.set(State::Suspended);
                    target.inner.co.set(Some(co));
                    transfer = request.transfer;
                    requester = std::mem::replace(&mut target, request.target);
                }
                CoroutineResult::Return(outcome) => {
                    target.inner.state.set(State::Dead);
                    co.into_stack().recycle();
                    transfer = death(outcome);
                    requester = target.clone();
                }
            }
        };
        self.root.inner.state.set(State::Running);
        result
    }
}

/// What a greenlet's end delivers to its parent.
fn death(outcome: Result<Value, Payload>) -> Transfer {
    match outcome {
        Ok(value) => Transfer::Value(value),
        Err(payload) if payload.is::<RawGreenletExit>() => Transfer::Value(payload),
        Err(payload) => Transfer::Throw(payload),
    }
}

/// What a `switch` or `throw` call returns: the value, or the unwind it must re-raise.
fn settle(transfer: Transfer) -> Value {
    match transfer {
        Transfer::Value(value) => value,
        Transfer::Throw(payload) => resume_unwind(payload),
    }
}

impl RawGreenlet {
    /// A greenlet that will run `f` when first switched to, with the switch's value as argument.
    /// Its parent is the current raw greenlet (or the root). It takes a stack (of the default
    /// greenlet size, see [`crate::Builder::stack_size`]) only when it starts.
    pub fn new<F: FnOnce(Value) -> Value + 'static>(f: F) -> RawGreenlet {
        Self::build(stack::default_stack_size(), Box::new(f))
    }

    /// Like [`RawGreenlet::new`] with a stack of `bytes` usable bytes (rounded up to whole
    /// pages, at least 16 KiB).
    pub fn with_stack_size<F: FnOnce(Value) -> Value + 'static>(bytes: usize, f: F) -> RawGreenlet {
        Self::build(stack::round_stack_size(bytes), Box::new(f))
    }

    fn build(stack_size: usize, body: Body) -> RawGreenlet {
        let world = world();
        RawGreenlet {
            inner: Rc::new(Inner {
                id: next_id(),
                world: world.id,
                is_root: false,
                stack_size,
                state: Cell::new(State::New),
                body: Cell::new(Some(body)),
                co: Cell::new(None),
                yielder: RawYielder::new(),
                parent: RefCell::new(Some(world.current())),
                killed_on_drop: false,
            }),
        }
    }

    /// The running raw greenlet, or the root of the current hub context (the thread's root
    /// context, or the hub greenlet running now) when no raw greenlet runs.
    pub fn current() -> RawGreenlet {
        world().current()
    }

    /// Switches to this greenlet, passing `value`: starts it with `value` as its argument, or
    /// makes its pending `switch` return `value`. Returns when something switches back to the
    /// caller, with the value it passed (or the return value of a child that ended).
    ///
    /// Switching to a dead greenlet goes to its nearest live ancestor; switching to the caller
    /// itself returns `value` at once.
    ///
    /// # Panics
    ///
    /// Re-raises the unwind of a child that died of a panic, or a payload thrown into the caller.
    /// Panics if this greenlet belongs to another hub context.
    pub fn switch(&self, value: Value) -> Value {
        settle(self.transfer(Transfer::Value(value)))
    }

    /// Raises `payload` in this greenlet: its pending `switch` unwinds with it (as if it had
    /// called `resume_unwind(payload)` there). If it never started it never runs; if it does not
    /// catch the unwind it dies and the payload goes to its parent (see [`RawGreenletExit`]).
    /// Returns like [`switch`](RawGreenlet::switch) when something switches back to the caller.
    /// Throwing into the caller itself unwinds the caller at once.
    ///
    /// # Panics
    ///
    /// As [`switch`](RawGreenlet::switch).
    pub fn throw(&self, payload: Box<dyn Any + Send>) -> Value {
        settle(self.transfer(Transfer::Throw(payload)))
    }

    fn transfer(&self, transfer: Transfer) -> Transfer {
        let world = world();
        assert!(
            self.inner.world == world.id,
            "cannot switch to raw greenlet {}: it belongs to another hub context (another \
             thread, or another hub greenlet)",
            self.inner.id
        );
        let current = world.current();
        if current == *self {
            transfer
        } else if current.inner.is_root {
            world.drive(self.clone(), transfer)
        } else {
            drop(world);
            let yielder = current.inner.yielder.clone();
            drop(current);
            yielder.suspend(Request {
                target: self.clone(),
                transfer,
            })
        }
    }

    /// Creates the coroutine of a greenlet about to start.
    fn start(&self) -> std::io::Result<RawCo> {
        let stack = SlabStack::take(self.inner.stack_size)?;
        let body = self
            .inner
            .body
            .take()
            .expect("an unstarted raw greenlet has its body");
        Ok(RawYielder::coroutine(
            &self.inner.yielder,
            stack,
            move |first: Transfer| {
                catch_unwind(AssertUnwindSafe(move || match first {
                    Transfer::Value(value) => body(value),
                    Transfer::Throw(payload) => resume_unwind(payload),
                }))
            },
        ))
    }

    /// The greenlet that gets this one's return value (or uncaught panic) when it ends; `None`
    /// for a root.
    pub fn parent(&self) -> Option<RawGreenlet> {
        self.inner.parent.borrow().clone()
    }

    /// Makes `parent` this greenlet's parent.
    ///
    /// # Panics
    ///
    /// If this greenlet is a root, if `parent` belongs to another hub context, or if the change
    /// would make a cycle (this greenlet would become its own ancestor).
    pub fn set_parent(&self, parent: &RawGreenlet) {
        assert!(!self.inner.is_root, "a root raw greenlet has no parent");
        assert!(
            parent.inner.world == self.inner.world,
            "the parent of a raw greenlet must belong to the same hub context"
        );
        let mut ancestor = Some(parent.clone());
        while let Some(greenlet) = ancestor {
            assert!(
                greenlet != *self,
                "set_parent would make a cyclic parent chain"
            );
            ancestor = greenlet.parent();
        }
        *self.inner.parent.borrow_mut() = Some(parent.clone());
    }

    /// Whether the greenlet has finished (returned, or died of an uncaught panic or throw).
    pub fn is_dead(&self) -> bool {
        self.inner.state.get() == State::Dead
    }

    /// Whether the greenlet has been switched to at least once (a root always has).
    pub fn is_started(&self) -> bool {
        self.inner.state.get() != State::New
    }

    /// Whether it has started and is not dead (Python's `bool(g)`).
    pub fn is_active(&self) -> bool {
        self.is_started() && !self.is_dead()
    }

    /// Whether this is the root of a hub context (not a greenlet of its own: the code that
    /// drives the raw greenlets).
    pub fn is_root(&self) -> bool {
        self.inner.is_root
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }
}

/// The running raw greenlet, or the current hub context's root (see [`RawGreenlet::current`]).
pub fn current() -> RawGreenlet {
    RawGreenlet::current()
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Some(co) = self.co.take() else { return };
        if self.killed_on_drop || std::thread::panicking() {
            std::mem::forget(co);
            return;
        }
        // During thread teardown the hub or the world may be gone: then the lookup panics.
        let world = match catch_unwind(world) {
            Ok(world) if world.id == self.world => world,
            _ => {
                std::mem::forget(co);
                return;
            }
        };
        let zombie = RawGreenlet {
            inner: Rc::new(Inner {
                id: self.id,
                world: self.world,
                is_root: false,
                stack_size: self.stack_size,
                state: Cell::new(State::Suspended),
                body: Cell::new(None),
                co: Cell::new(Some(co)),
                yielder: self.yielder.clone(),
                parent: RefCell::new(Some(world.current())),
                killed_on_drop: true,
            }),
        };
        drop(world);
        let outcome = zombie.transfer(Transfer::Throw(Box::new(RawGreenletExit)));
        drop(zombie);
        if let Transfer::Throw(payload) = outcome {
            resume_unwind(payload);
        }
    }
}
