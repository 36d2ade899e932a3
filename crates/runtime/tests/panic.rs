//! Panics in greenlets: caught at the greenlet's root, returned by `join`, reported once on stderr
//! with the greenlet's name, and never taking the hub or other greenlets down.

use std::cell::{Cell, RefCell};
use std::process::Output;
use std::rc::Rc;
use std::time::Duration;

use green::{Builder, JoinError};

mod common;
use common::{child_command, is_child, ms};

/// Re-runs this test binary for just `test`, in child mode, and returns what it printed.
fn run_child(test: &str) -> Output {
    child_command(test)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

#[test]
fn join_returns_panicked_with_the_message() {
    let g = green::spawn(|| -> u8 { panic!("bad input: {}", 7) });
    let err = g.join().unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("bad input: 7"));
    assert_eq!(err.to_string(), "greenlet panicked: bad input: 7");
    assert_eq!(format!("{err:?}"), "Panicked(\"bad input: 7\")");
}

#[test]
fn non_string_payload_is_returned_intact() {
    let g = green::spawn(|| std::panic::panic_any(42i32));
    let err = g.join().unwrap_err();
    assert_eq!(err.panic_message(), None);
    assert_eq!(err.to_string(), "greenlet panicked");
    let payload = err.into_panic().unwrap();
    assert_eq!(payload.downcast_ref::<i32>(), Some(&42));
}

#[test]
fn a_panic_leaves_other_greenlets_and_the_hub_running() {
    let progress = Rc::new(Cell::new(0));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let progress = progress.clone();
            green::spawn(move || {
                for _ in 0..5 {
                    green::sleep(ms(2));
                    progress.set(progress.get() + 1);
                }
            })
        })
        .collect();
    let bad = green::spawn(|| {
        green::sleep(ms(3));
        panic!("one greenlet fails");
    });
    assert_eq!(
        bad.join().unwrap_err().panic_message(),
        Some("one greenlet fails")
    );
    for result in green::joinall(workers) {
        result.unwrap();
    }
    assert_eq!(progress.get(), 15);
    // The hub is still usable afterwards.
    assert_eq!(green::spawn(|| 1).join().unwrap(), 1);
    green::sleep(ms(1));
}

#[test]
fn a_greenlet_joining_a_panicked_greenlet_gets_the_panic() {
    let outer = green::spawn(|| {
        let inner = green::spawn(|| -> () { panic!("inner") });
        inner.join().unwrap_err().panic_message().map(str::to_owned)
    });
    assert_eq!(outer.join().unwrap().as_deref(), Some("inner"));
}

#[test]
fn a_panicking_link_does_not_stop_the_later_links() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let g = green::spawn(|| ());
    let first = log.clone();
    g.link(move |_| first.borrow_mut().push(1));
    g.link(|_| panic!("a link fails"));
    let third = log.clone();
    g.link(move |_| third.borrow_mut().push(3));
    g.join().unwrap();
    // Each link runs in a greenlet of its own, started as `g` ends.
    green::yield_now();
    assert_eq!(*log.borrow(), [1, 3]);
}

#[test]
fn panic_is_reported_once_on_stderr_with_the_greenlets_name() {
    if is_child("panic_is_reported_once_on_stderr_with_the_greenlets_name") {
        let g = Builder::new()
            .name("reporter")
            .spawn(|| -> () { panic!("the message") });
        let err = g.join().unwrap_err();
        assert!(matches!(err, JoinError::Panicked(_)));
        return;
    }
    let out = run_child("panic_is_reported_once_on_stderr_with_the_greenlets_name");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert_eq!(
        stderr.matches("greenlet 'reporter' panicked").count(),
        1,
        "stderr: {stderr}"
    );
    assert_eq!(stderr.matches("the message").count(), 1, "stderr: {stderr}");
    assert!(
        stderr.contains("tests/panic.rs"),
        "names the location: {stderr}"
    );
}

#[test]
fn unnamed_greenlet_panic_is_reported_with_its_default_name() {
    if is_child("unnamed_greenlet_panic_is_reported_with_its_default_name") {
        let g = green::spawn(|| -> () { panic!("anonymous") });
        println!("ID={}", g.id());
        assert!(g.join().unwrap_err().is_panic());
        return;
    }
    let out = run_child("unnamed_greenlet_panic_is_reported_with_its_default_name");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    // libtest prints `test <name> ... ` first, so the marker is mid-line.
    let id = stdout
        .split("ID=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("child printed the id");
    let expected = format!("greenlet 'Greenlet-{id}' panicked");
    assert_eq!(stderr.matches(&expected).count(), 1, "stderr: {stderr}");
}

#[test]
fn kills_and_timeouts_are_not_reported_as_panics() {
    if is_child("kills_and_timeouts_are_not_reported_as_panics") {
        let killed = Builder::new()
            .name("killed")
            .spawn(|| green::sleep(Duration::from_secs(10)));
        let timed_out = Builder::new().name("timed-out").spawn(|| {
            green::with_timeout(ms(5), || green::sleep(Duration::from_secs(10))).is_err()
        });
        green::sleep(ms(1));
        killed.kill();
        assert!(killed.join().unwrap_err().is_killed());
        assert!(timed_out.join().unwrap());
        return;
    }
    let out = run_child("kills_and_timeouts_are_not_reported_as_panics");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn panics_outside_greenlets_still_go_to_the_default_hook() {
    if is_child("panics_outside_greenlets_still_go_to_the_default_hook") {
        // Create the hub (and its panic hook) first, then panic in the root context.
        green::spawn(|| ()).join().unwrap();
        let caught = std::panic::catch_unwind(|| panic!("root context panic"));
        assert!(caught.is_err());
        return;
    }
    let out = run_child("panics_outside_greenlets_still_go_to_the_default_hook");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    // std's own report: `thread '<name>' (<tid>) panicked at ...`.
    let own = stderr
        .lines()
        .find(|l| l.starts_with("thread 'panics_outside_greenlets_still_go_to_the_default_hook'"))
        .unwrap_or_else(|| panic!("no std report in: {stderr}"));
    assert!(own.contains("panicked at"), "stderr: {stderr}");
    assert!(stderr.contains("root context panic"), "stderr: {stderr}");
    assert!(!stderr.contains("greenlet '"), "stderr: {stderr}");
}

/// A Sentry-style hook: records what it saw (the message and the greenlet it ran in) on stderr,
/// then chains to the hook it replaced.
fn install_recording_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .unwrap_or("?");
        let current = green::current();
        let greenlet = (!current.is_root()).then(|| current.name());
        eprintln!("user hook saw {message:?} in {greenlet:?}");
        previous(info);
    }));
}

#[test]
fn a_hook_installed_before_the_first_hub_sees_greenlet_panics() {
    const TEST: &str = "a_hook_installed_before_the_first_hub_sees_greenlet_panics";
    if is_child(TEST) {
        install_recording_hook();
        let g = Builder::new()
            .name("early")
            .spawn(|| -> () { panic!("seen early") });
        assert!(g.join().unwrap_err().is_panic());
        return;
    }
    let out = run_child(TEST);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert_eq!(
        stderr
            .matches("user hook saw \"seen early\" in Some(\"early\")")
            .count(),
        1,
        "stderr: {stderr}"
    );
    assert_eq!(
        stderr.matches("greenlet 'early' panicked").count(),
        1,
        "stderr: {stderr}"
    );
}

#[test]
fn a_hook_installed_after_the_first_hub_sees_greenlet_panics() {
    const TEST: &str = "a_hook_installed_after_the_first_hub_sees_greenlet_panics";
    if is_child(TEST) {
        green::spawn(|| ()).join().unwrap();
        install_recording_hook();
        let g = Builder::new()
            .name("late")
            .spawn(|| -> () { panic!("seen late") });
        assert!(g.join().unwrap_err().is_panic());
        // A second hub on another thread installs nothing over the user's hook.
        std::thread::spawn(|| {
            let g = Builder::new()
                .name("other-thread")
                .spawn(|| -> () { panic!("seen on another thread") });
            assert!(g.join().unwrap_err().is_panic());
        })
        .join()
        .unwrap();
        return;
    }
    let out = run_child(TEST);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    for (message, name) in [
        ("seen late", "late"),
        ("seen on another thread", "other-thread"),
    ] {
        let seen = format!("user hook saw {message:?} in Some({name:?})");
        assert_eq!(stderr.matches(&seen).count(), 1, "stderr: {stderr}");
        let named = format!("greenlet '{name}' panicked");
        assert_eq!(stderr.matches(&named).count(), 1, "stderr: {stderr}");
    }
}
