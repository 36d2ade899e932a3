//! The blocking monitor: a greenlet that holds its hub (here with `std::thread::sleep`) is reported
//! once, by name, to a callback or (with `GREEN_MONITOR=1`) on stderr.

use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use green::monitor::{self, BlockingReport};
use green::Builder;

mod common;
use common::{child_command, is_child, ms};

/// Enables the monitor on this thread's hub with a callback collecting its reports.
fn collect_reports(threshold: Duration) -> Arc<Mutex<Vec<BlockingReport>>> {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    monitor::enable(
        threshold,
        Some(Box::new(move |report: &BlockingReport| {
            sink.lock().unwrap().push(report.clone())
        })),
    );
    reports
}

/// A greenlet that blocks its whole thread for `duration`.
fn hog(name: &str, duration: Duration) -> green::Greenlet<u64> {
    Builder::new().name(name).spawn(move || {
        std::thread::sleep(duration);
        green::current().id()
    })
}

#[test]
fn a_greenlet_blocking_the_thread_is_reported_once_with_its_name() {
    let reports = collect_reports(ms(50));
    let id = hog("hog", ms(300)).join().unwrap();
    monitor::disable();
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(report.greenlet, "hog");
    assert_eq!(report.greenlet_id, id);
    assert!(report.blocked_for >= ms(50), "{report:?}");
    assert_eq!(
        report.thread,
        "a_greenlet_blocking_the_thread_is_reported_once_with_its_name"
    );
    let text = report.to_string();
    assert!(text.starts_with("green monitor: greenlet 'hog'"), "{text}");
    assert!(text.contains("spawn_blocking"), "{text}");
}

#[test]
fn each_blocking_greenlet_is_reported_once_in_turn() {
    let reports = collect_reports(ms(50));
    hog("first", ms(250)).join().unwrap();
    hog("second", ms(250)).join().unwrap();
    monitor::disable();
    let names: Vec<String> = reports
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.greenlet.clone())
        .collect();
    assert_eq!(names, ["first", "second"]);
}

#[test]
fn cooperative_greenlets_are_not_reported() {
    let reports = collect_reports(ms(100));
    let greenlets: Vec<_> = (0..20)
        .map(|_| {
            green::spawn(|| {
                for _ in 0..30 {
                    green::sleep(ms(5));
                    green::yield_now();
                }
            })
        })
        .collect();
    green::joinall(greenlets);
    monitor::disable();
    assert!(reports.lock().unwrap().is_empty());
}

#[test]
fn a_disabled_monitor_reports_nothing() {
    let reports = collect_reports(ms(30));
    monitor::disable();
    hog("unwatched", ms(150)).join().unwrap();
    assert!(reports.lock().unwrap().is_empty());
}

/// Re-runs this test binary for just `test` in child mode, with extra environment variables.
fn run_child(test: &str, envs: &[(&str, &str)]) -> Output {
    child_command(test)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn green_monitor_env_prints_the_report_on_stderr() {
    const TEST: &str = "green_monitor_env_prints_the_report_on_stderr";
    if is_child(TEST) {
        hog("env-hog", ms(300)).join().unwrap();
        return;
    }
    let out = run_child(
        TEST,
        &[("GREEN_MONITOR", "1"), ("GREEN_MAX_BLOCKING_TIME", "50")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert_eq!(
        stderr.matches("green monitor: greenlet 'env-hog'").count(),
        1,
        "stderr: {stderr}"
    );
}

#[test]
fn the_root_context_blocking_its_own_thread_between_green_calls_is_reported() {
    let reports = collect_reports(ms(50));
    green::spawn(|| green::sleep(ms(1))).join().unwrap();
    std::thread::sleep(ms(300));
    green::yield_now();
    monitor::disable();
    let reports = reports.lock().unwrap();
    let root_id = green::current().id();
    let root_reports: Vec<_> = reports
        .iter()
        .filter(|r| r.greenlet_id == root_id)
        .collect();
    // Once for the sleep (a loaded machine may add one for a preempted stretch, never none).
    assert!(!root_reports.is_empty(), "{reports:?}");
    assert!(
        root_reports[0].greenlet.starts_with("<root of thread"),
        "{reports:?}"
    );
}
