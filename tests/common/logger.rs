//! A `log` logger that keeps every record in memory, so tests can assert on what the library
//! crates logged instead of parsing stderr. The logger is process-wide: tests running in
//! parallel share it, so assert on messages that only your test produces.

use std::sync::{Mutex, Once};

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{}: {}", record.target(), record.args());
        RECORDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((record.level(), line));
    }

    fn flush(&self) {}
}

/// Installs the capturing logger (once per process; later calls do nothing).
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The records logged so far whose text contains `needle`.
pub fn matching(needle: &str) -> Vec<(log::Level, String)> {
    RECORDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, line)| line.contains(needle))
        .cloned()
        .collect()
}
