//! Helpers shared by the integration tests (each test binary includes this with `mod common;`
//! and uses what it needs).
#![allow(dead_code)]

pub mod dnsmasq;
pub mod logger;
pub mod services;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::time::Duration;

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `f`, which must panic, and returns its panic message.
pub fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The variable that tells a re-run test binary which test runs in child mode.
pub const CHILD_ENV: &str = "GREEN_TEST_CHILD";

/// Whether this process is the child re-run for `test`.
pub fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(test)
}

/// A command re-running this test binary for just `test`, in child mode; callers add their
/// environment and run it.
pub fn child_command(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test);
    command
}
