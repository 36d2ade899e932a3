//! Reports of panics in greenlets: once, on stderr, naming the greenlet.
//!
//! A panic hook installed when the first hub is created prints `greenlet '<name>' panicked at
//! <location>:` and the message for panics raised inside a greenlet, and defers to the previous hook
//! for everything else. Kills and timeouts unwind with `resume_unwind`, which runs no hook, so they
//! are never reported as panics.

use std::sync::Once;

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
            let Some(name) = crate::hub::current_greenlet_name() else {
                return previous(info);
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
            eprintln!("greenlet '{name}' panicked at {location}:\n{message}{backtrace}");
        }));
    });
}
