//! Reports of panics in greenlets and hub callbacks: once, on stderr, naming the greenlet.
//!
//! A panic hook installed when the first hub is created prints `greenlet '<name>' panicked at
//! <location>:` and the message for panics raised inside a greenlet (`green: hub callback panicked
//! at <location>:` for a [`call_later`](crate::call_later) callback, which the hub catches, see
//! [`run_hub_callback`]), and defers to the previous hook for everything else. Kills and timeouts
//! unwind with `resume_unwind`, which runs no hook, so they are never reported as panics.

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
            let name = match crate::hub::current_greenlet_name() {
                _ if in_callback => None,
                Some(name) => Some(name),
                None => return previous(info),
            };
            let message = crate::greenlet::panic_message(info.payload()).unwrap_or("Box<dyn Any>");
            let location = info
                .location()
                .map(|l| l.to_string())
                .unwrap_or_else(|| "<unknown>".to_string());
            let backtrace = std::backtrace::Backtrace::capture();
            let backtrace = match backtrace.status() {
                std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
                _ => String::new(),
            };
            match name {
                Some(name) => {
                    eprintln!("greenlet '{name}' panicked at {location}:\n{message}{backtrace}")
                }
                None => {
                    eprintln!("green: hub callback panicked at {location}:\n{message}{backtrace}")
                }
            }
        }));
    });
}
