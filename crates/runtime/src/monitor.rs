//! The blocking monitor (gevent's monitor thread with `max_blocking_time`).
//!
//! Greenlets are cooperative: one that computes or calls blocking foreign code without yielding
//! holds up every other greenlet on its hub. When enabled (`GREEN_MONITOR=1`, or [`enable`] on the
//! hub's thread), a watchdog thread samples the hub and reports a greenlet that has run for longer
//! than the threshold (`GREEN_MAX_BLOCKING_TIME` in milliseconds, default 100) without switching
//! back to the hub: once per episode, to a callback you supply, or else through the `log` facade
//! (warn level) when a logger is installed and on stderr when none is.
//!
//! Every stretch in which the hub could not run is timed, whoever held the thread: a greenlet
//! between two switches, and the thread's root context (the main thread, a plain thread) between
//! two green calls, so `std::thread::sleep` in `main` is reported as gevent reports
//! `time.sleep(0.3)` in the main greenlet (named `<root of thread '...'>`). Time spent inside the
//! hub loop (idle in `epoll`, firing timers) is never reported.
//!
//! A report also says whether the thread was sampled inside a `futex` wait and which greenlets are
//! suspended inside patched libc calls (green-patch): a `std::sync::Mutex` taken by one of those
//! and wanted by the running greenlet deadlocks the thread, and the report names the candidates.
//!
//! Cost when enabled: two atomic stores and a name update per greenlet switch, and per entry of a
//! root context into the hub loop.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::greenlet::Core;

/// One report: a greenlet (or the thread's root context) that held its hub too long.
#[derive(Debug, Clone)]
pub struct BlockingReport {
    /// The greenlet's name (`<root of thread '...'>` for the thread's own code outside any
    /// greenlet).
    pub greenlet: String,
    /// The greenlet's id.
    pub greenlet_id: u64,
    /// How long it had been running when the monitor noticed.
    pub blocked_for: Duration,
    /// The name of the thread whose hub was held.
    pub thread: String,
    /// The thread was sampled inside a `futex` wait (a `std::sync::Mutex`, `Condvar` or
    /// `thread::park`), not computing.
    pub in_futex_wait: bool,
    /// Greenlets of this hub suspended inside patched libc calls (green-patch) at that moment:
    /// with `in_futex_wait`, the likely holders of a `std::sync::Mutex` the running greenlet waits
    /// for.
    pub suspended_in_patched_calls: Vec<String>,
}

impl fmt::Display for BlockingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "green monitor: greenlet '{}' (id {}) has held the hub of thread '{}' for {} ms without \
             yielding; move blocking or CPU-heavy work to spawn_blocking",
            self.greenlet,
            self.greenlet_id,
            self.thread,
            self.blocked_for.as_millis()
        )?;
        if self.in_futex_wait {
            f.write_str("; it is blocked in a futex wait (a std::sync::Mutex, Condvar or park)")?;
            if !self.suspended_in_patched_calls.is_empty() {
                write!(
                    f,
                    " while greenlet(s) '{}' are suspended inside patched calls: if one of them \
                     holds that lock the thread is deadlocked; use green::sync::Lock between greenlets",
                    self.suspended_in_patched_calls.join("', '")
                )?;
            }
        }
        Ok(())
    }
}

/// A callback receiving the monitor's reports instead of the logger or stderr.
pub type ReportSink = Box<dyn Fn(&BlockingReport) + Send + Sync>;

struct Shared {
    epoch: Instant,
    /// Nanoseconds since `epoch` + 1 when the current greenlet was resumed; 0 while in the hub.
    running_since: AtomicU64,
    /// Incremented on every resume, so one long run is reported once.
    switches: AtomicU64,
    greenlet: Mutex<(String, u64)>,
    stopped: AtomicBool,
    sink: Option<ReportSink>,
    thread: String,
    /// The hub thread's kernel id, to sample the system call it is blocked in.
    tid: i64,
    /// Greenlets (id, name) suspended inside patched libc calls.
    in_patched_calls: Mutex<Vec<(u64, String)>>,
}

/// The hub's end of an enabled monitor.
pub(crate) struct HubMonitor {
    shared: Arc<Shared>,
}

impl HubMonitor {
    pub(crate) fn from_env() -> Option<HubMonitor> {
        let on = std::env::var("GREEN_MONITOR").is_ok_and(|v| !v.is_empty() && v != "0");
        on.then(|| HubMonitor::start(threshold_from_env(), None))
    }

    fn start(threshold: Duration, sink: Option<ReportSink>) -> HubMonitor {
        let thread = std::thread::current()
            .name()
            .unwrap_or("<unnamed>")
            .to_string();
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            running_since: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            greenlet: Mutex::new((String::new(), 0)),
            stopped: AtomicBool::new(false),
            sink,
            thread,
            // SAFETY: gettid has no preconditions.
            tid: unsafe { libc::syscall(libc::SYS_gettid) },
            in_patched_calls: Mutex::new(Vec::new()),
        });
        let watched = shared.clone();
        std::thread::Builder::new()
            .name("green-monitor".into())
            .spawn(move || watch(&watched, threshold))
            .expect("green: cannot start the monitor thread");
        HubMonitor { shared }
    }

    pub(crate) fn on_resume(&self, core: &Core) {
        *self
            .shared
            .greenlet
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (core.name(), core.id);
        self.shared.switches.fetch_add(1, Ordering::Relaxed);
        let since = self.shared.epoch.elapsed().as_nanos() as u64 + 1;
        self.shared.running_since.store(since, Ordering::Release);
    }

    pub(crate) fn on_suspend(&self) {
        self.shared.running_since.store(0, Ordering::Release);
    }

    /// Records that `core` waits inside a patched libc call (`entering`) or no longer does.
    pub(crate) fn note_patched_wait(&self, core: &Core, entering: bool) {
        let mut waiting = self
            .shared
            .in_patched_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if entering {
            waiting.push((core.id, core.name()));
        } else if let Some(index) = waiting.iter().position(|(id, _)| *id == core.id) {
            waiting.swap_remove(index);
        }
    }
}

/// Whether the thread `tid` of this process is inside a `futex` system call right now.
fn in_futex_wait(tid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .ok()
        .and_then(|line| line.split_whitespace().next()?.parse::<i64>().ok())
        == Some(libc::SYS_futex)
}

impl Drop for HubMonitor {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
    }
}

fn threshold_from_env() -> Duration {
    let millis = std::env::var("GREEN_MAX_BLOCKING_TIME")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| *ms > 0.0)
        .unwrap_or(100.0);
    Duration::from_secs_f64(millis / 1000.0)
}

fn watch(shared: &Shared, threshold: Duration) {
    let interval = (threshold / 4).max(Duration::from_millis(1));
    let mut reported_switch = u64::MAX;
    while !shared.stopped.load(Ordering::Acquire) {
        std::thread::sleep(interval);
        let since = shared.running_since.load(Ordering::Acquire);
        if since == 0 {
            continue;
        }
        let switch = shared.switches.load(Ordering::Relaxed);
        let now = shared.epoch.elapsed().as_nanos() as u64 + 1;
        let held = Duration::from_nanos(now.saturating_sub(since));
        if held < threshold || switch == reported_switch {
            continue;
        }
        reported_switch = switch;
        let (greenlet, greenlet_id) = shared
            .greenlet
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let report = BlockingReport {
            greenlet,
            greenlet_id,
            blocked_for: held,
            thread: shared.thread.clone(),
            in_futex_wait: in_futex_wait(shared.tid),
            suspended_in_patched_calls: shared
                .in_patched_calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(_, name)| name.clone())
                .collect(),
        };
        match &shared.sink {
            Some(sink) => sink(&report),
            None => report_without_sink(&report),
        }
    }
}

/// Enables the monitor for this thread's hub with `threshold`, reporting to `on_report` when
/// given, else to the `log` facade or stderr (see the module docs). Replaces any monitor enabled before on this hub.
pub fn enable(threshold: Duration, on_report: Option<ReportSink>) {
    crate::hub::with(|hub| hub.set_monitor(Some(HubMonitor::start(threshold, on_report))));
}

/// Disables the monitor for this thread's hub.
pub fn disable() {
    crate::hub::with(|hub| hub.set_monitor(None));
}

/// The default destination of a report: the `log` facade at warn level when a logger takes it,
/// otherwise stderr (the monitor was turned on explicitly, `GREEN_MONITOR=1` included, so its
/// reports must be visible without any logger, as gevent's monitor prints them).
fn report_without_sink(report: &BlockingReport) {
    if log::log_enabled!(log::Level::Warn) {
        log::warn!("{report}");
    } else {
        eprintln!("{report}");
    }
}
