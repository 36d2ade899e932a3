//! The real servers of the green::patch tests: scripts/services starts them on loopback and
//! exports their addresses; a test asks for one by variable name.

use std::time::{Duration, Instant};

/// Whether a missing server must fail the test instead of skipping it (CI, or
/// `GREEN_REQUIRE_SERVICES=1`).
pub fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
        || std::env::var("GREEN_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// The address scripts/services exported in `var` (e.g. `GREEN_TEST_REDIS`); `None` after a loud
/// SKIPPED line when it is unset, or a panic when [`required`].
pub fn address(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(address) if !address.is_empty() => Some(address),
        _ => {
            let reason = format!(
                "{var} is not set (the server did not start, or the test was not run through \
                 scripts/test or scripts/services): {test} did not run"
            );
            skip(&reason);
            None
        }
    }
}

/// Fails when [`required`], else prints a loud `SKIPPED:` line straight to stderr (past the test
/// harness's capture, so that scripts/test sees it even when the test passes).
pub fn skip(reason: &str) {
    assert!(
        !required(),
        "{reason}; CI / GREEN_REQUIRE_SERVICES=1 require it"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n***** SKIPPED: {reason} *****\n");
}

/// The sockets this process has open: the targets of the `socket:[inode]` links in
/// /proc/self/fd.
pub fn open_sockets() -> std::collections::HashSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with("socket:"))
        .collect()
}

/// The sockets open now that were not open in `before`, after waiting up to 2 s for them to go
/// (a close may lag a little). Sockets are compared by inode, not counted, so fds closed meanwhile
/// by other tests of the binary cannot hide a leak.
pub fn leaked_sockets(before: &std::collections::HashSet<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let leaked: Vec<String> = open_sockets().difference(before).cloned().collect();
        if leaked.is_empty() || Instant::now() >= deadline {
            return leaked;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The greenlets of one test share a time budget: once it is spent they skip their blocking call,
/// so a patch that blocks the thread fails the test in seconds instead of running every call one
/// after another (10,000 sleeps of 100 ms would take 17 minutes).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    start: Instant,
    limit: Duration,
}

impl Budget {
    /// A budget of `limit` from now.
    pub fn new(limit: Duration) -> Budget {
        Budget {
            start: Instant::now(),
            limit,
        }
    }

    /// Whether the budget is spent.
    pub fn spent(&self) -> bool {
        self.start.elapsed() > self.limit
    }

    /// Time since the budget started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Ends the whole test process (exit 101, with the test's name) if it is still running after
/// `limit`: a test whose greenlets wait on each other deadlocks when the calls block the thread.
/// Dropping the guard disarms it.
pub struct Watchdog {
    _disarm: std::sync::mpsc::Sender<()>,
}

/// Arms a [`Watchdog`] for `test`.
pub fn watchdog(test: &'static str, limit: Duration) -> Watchdog {
    let (disarm, disarmed) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
            eprintln!(
                "\n***** {test}: still running after {limit:?}; the greenlets' std calls block \
                 the thread (is green::patch working?) *****\n"
            );
            std::process::exit(101);
        }
    });
    Watchdog { _disarm: disarm }
}

/// Serialises the tests of one binary that count open file descriptors (tests run on parallel
/// threads of one process).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Raises the soft limit on open files to at least `wanted` (up to the hard limit).
pub fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call to fill in.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    if limit.rlim_cur >= wanted {
        return;
    }
    limit.rlim_cur = wanted.min(limit.rlim_max);
    // SAFETY: `limit` is a valid rlimit read by the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// A key no other test, process or earlier run uses: `green-patch-WHAT-PID-NANOS`.
pub fn unique_key(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("green-patch-{what}-{}-{nanos}", std::process::id())
}
