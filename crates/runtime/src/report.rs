//! Reports of panics in greenlets and hub callbacks: once, on stderr, naming the greenlet.
//!
//! A panic hook installed when the first hub is created names the greenlet (`greenlet '<name>'
//! panicked:`, or `green: hub callback panicked:` for a [`call_later`](crate::call_later)
//! callback, which the hub catches, see [`run_hub_callback`]) and then hands every panic to the
//! hook that was installed before it: std's default hook prints the location, the message and
//! the backtrace as for any panic, and a hook the program installed first (an error reporter
//! such as Sentry's) sees greenlet panics like all others. A hook installed after the first hub
//! replaces this one and sees greenlet panics directly (they run on the thread that panicked, so
//! [`current`](crate::current) names the greenlet); if it chains to the hook it replaced, the
//! greenlet is named as well. These reports go to stderr without any logger, as gevent's hub
//! prints greenlet tracebacks: they are the runtime's panic path, not library diagnostics, which
//! go through the `log` facade. Kills and timeouts unwind with `resume_unwind`, which runs no
//! hook, so they are never reported as panics.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while the hub runs a timer callback, so the panic hook names it.
    static IN_HUB_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Runs a hub callback, reporting a panic (through the hook) and carrying on, as gevent's hub
/// reports a failing callback: the panic must not escape into whatever the thread was blocked in.
pub(crate) fn run_hub_callback(callback: Box<dyn FnOnce()>) {
    let outer = IN_HUB_CALLBACK.with(|flag| flag.replace(true));
    let result = catch_unwind(AssertUnwindSafe(callback));
    IN_HUB_CALLBACK.with(|flag| flag.set(outer));
    drop(result);
}

pub(crate) fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    // std forbids touching the hook while panicking; a hub created during a panic (a socket
    // dropped while unwinding) installs it at the next hub creation instead.
    if std::thread::panicking() {
        return;
    }
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_callback = IN_HUB_CALLBACK.try_with(Cell::get).unwrap_or(false);
            if in_callback {
                eprintln!("green: hub callback panicked:");
            } else if let Some(name) = crate::hub::current_greenlet_name() {
                eprintln!("greenlet '{name}' panicked:");
            }
            previous(info);
        }));
    });
}
