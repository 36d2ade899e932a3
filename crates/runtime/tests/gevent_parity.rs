//! Behaviours that once differed from gevent's: timeouts expiring together, killed `spawn_later`
//! greenlets, panicking hub callbacks, links that block, and the `Timeout` object and link
//! variants a gevent user reaches for.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use green::sync::Event;
use green::{with_timeout, Elapsed, Timeout};

mod common;
use common::{child_command, is_child, ms, panic_message};

const LONG: Duration = Duration::from_secs(10);

#[test]
fn an_outer_timeout_expiring_in_the_same_turn_as_an_inner_one_still_lands() {
    let started = Instant::now();
    let g = green::spawn(|| {
        with_timeout(ms(60), || {
            let _ = with_timeout(ms(40), || green::sleep(LONG));
            green::sleep(ms(500));
            "outer never fired"
        })
    });
    green::yield_now();
    // Both deadlines pass before the hub runs again.
    std::thread::sleep(ms(120));
    assert_eq!(g.join().unwrap(), Err(Elapsed));
    assert!(started.elapsed() < ms(400), "{:?}", started.elapsed());
}

#[test]
fn timeouts_expiring_together_land_inner_first_then_outer_at_the_next_blocking_point() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let seen = log.clone();
    let g = green::spawn(move || {
        let outer = with_timeout(ms(60), || {
            let inner = with_timeout(ms(40), || green::sleep(LONG));
            seen.borrow_mut().push(format!("inner {inner:?}"));
            // Code that does not block keeps running...
            seen.borrow_mut().push("between".to_string());
            // ...and the next blocking point raises the outer expiry.
            green::sleep(ms(500));
            seen.borrow_mut().push("after the sleep".to_string());
        });
        seen.borrow_mut().push(format!("outer {outer:?}"));
    });
    green::yield_now();
    std::thread::sleep(ms(120));
    g.join().unwrap();
    assert_eq!(
        *log.borrow(),
        ["inner Err(Elapsed)", "between", "outer Err(Elapsed)"]
    );
}

#[test]
fn an_outer_timeout_due_first_unwinds_through_an_inner_one_expiring_in_the_same_turn() {
    let started = Instant::now();
    let inner_result = Rc::new(RefCell::new(None));
    let seen = inner_result.clone();
    let g = green::spawn(move || {
        with_timeout(ms(40), || {
            let inner = with_timeout(ms(60), || green::sleep(LONG));
            *seen.borrow_mut() = Some(inner);
        })
    });
    green::yield_now();
    std::thread::sleep(ms(120));
    assert_eq!(g.join().unwrap(), Err(Elapsed));
    assert_eq!(*inner_result.borrow(), None, "the inner scope was unwound");
    assert!(started.elapsed() < ms(1000), "{:?}", started.elapsed());
    assert_eq!(green::unversioned::timer_count(), 0);
}

#[test]
fn three_nested_timeouts_expiring_together_each_land_in_a_root_context() {
    let started = Instant::now();
    let log = RefCell::new(Vec::new());
    let outer = with_timeout(ms(70), || {
        let middle = with_timeout(ms(50), || {
            let inner = with_timeout(ms(30), || {
                std::thread::sleep(ms(120));
                green::sleep(LONG)
            });
            log.borrow_mut().push(inner);
            green::sleep(LONG)
        });
        log.borrow_mut().push(middle);
        green::sleep(LONG)
    });
    log.borrow_mut().push(outer);
    assert_eq!(*log.borrow(), [Err(Elapsed), Err(Elapsed), Err(Elapsed)]);
    assert!(started.elapsed() < ms(1000), "{:?}", started.elapsed());
    assert_eq!(green::unversioned::timer_count(), 0);
}

#[test]
fn a_kill_takes_precedence_over_timeouts_expiring_in_the_same_turn() {
    let reached = Rc::new(RefCell::new(Vec::new()));
    let log = reached.clone();
    let g = green::spawn(move || {
        let outer = with_timeout(ms(30), || {
            let inner = with_timeout(ms(20), || green::sleep(LONG));
            log.borrow_mut().push(format!("inner {inner:?}"));
        });
        log.borrow_mut().push(format!("outer {outer:?}"));
    });
    green::yield_now();
    std::thread::sleep(ms(60));
    g.kill_nowait();
    assert!(g.join().unwrap_err().is_killed());
    assert!(reached.borrow().is_empty(), "{:?}", reached.borrow());
}

#[test]
fn a_timeout_that_ended_before_its_expiry_was_delivered_never_fires_later() {
    let g = green::spawn(|| {
        let outer = with_timeout(ms(30), || {
            let _ = with_timeout(ms(20), || green::sleep(LONG));
        });
        // Both expired together; the outer scope ended before a blocking point, so its expiry
        // went with it.
        green::sleep(ms(20));
        outer
    });
    green::yield_now();
    std::thread::sleep(ms(60));
    assert_eq!(g.join().unwrap(), Ok(()));
}

#[test]
fn killing_a_spawn_later_greenlet_cancels_its_start_timer() {
    let g = green::spawn_later(Duration::from_secs(30), || ());
    assert_eq!(green::unversioned::timer_count(), 1);
    g.kill();
    assert_eq!(green::unversioned::timer_count(), 0);
    let started = Instant::now();
    let message = panic_message(|| {
        Event::new().wait();
    });
    assert!(message.starts_with("deadlock: "), "{message}");
    // Well under the start delay, even with a panic backtrace captured on a loaded machine.
    assert!(started.elapsed() < ms(3000), "{:?}", started.elapsed());
    assert!(g.join().unwrap_err().is_killed());
}

#[test]
fn a_panicking_call_later_callback_is_reported_and_the_loop_keeps_running() {
    const TEST: &str = "a_panicking_call_later_callback_is_reported_and_the_loop_keeps_running";
    if is_child(TEST) {
        let ran_after = Rc::new(RefCell::new(false));
        let flag = ran_after.clone();
        let _bug = green::call_later(ms(10), || panic!("callback bug"));
        let _later = green::call_later(ms(20), move || *flag.borrow_mut() = true);
        let sleeper = green::spawn(|| {
            green::sleep(ms(40));
            "greenlet unaffected"
        });
        green::sleep(ms(60));
        assert!(*ran_after.borrow(), "a later callback still ran");
        assert_eq!(sleeper.join().unwrap(), "greenlet unaffected");
        return;
    }
    let out = child_command(TEST).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert_eq!(stderr.matches("callback bug").count(), 1, "{stderr}");
    assert!(stderr.contains("hub callback"), "{stderr}");
}

#[test]
fn a_link_callback_may_block_and_waiting_on_the_greenlet_is_no_false_deadlock() {
    let done = Rc::new(RefCell::new(false));
    let flag = done.clone();
    let g = green::spawn(|| green::sleep(ms(2)));
    g.link(move |_| {
        green::sleep(ms(10));
        *flag.borrow_mut() = true;
    });
    assert!(g.wait(None).unwrap());
    green::sleep(ms(40));
    assert!(*done.borrow(), "the blocking link finished");
    g.join().unwrap();
}

#[test]
fn a_link_callback_runs_in_its_own_greenlet_and_receives_the_finished_one() {
    let seen = Rc::new(RefCell::new(None));
    let record = seen.clone();
    let g = green::spawn(|| 7);
    let id = g.id();
    g.link(move |finished| {
        *record.borrow_mut() = Some((
            finished.id(),
            finished.is_ready(),
            finished.is_successful(),
            green::current().id(),
        ))
    });
    green::sleep(ms(5));
    let (linked, ready, successful, ran_in) = seen.borrow().unwrap();
    assert_eq!((linked, ready, successful), (id, true, true));
    assert_ne!(ran_in, id, "not inline in the dying greenlet");
    assert!(!green::current().is_root() || ran_in != green::current().id());
    assert_eq!(g.join().unwrap(), 7);
}

#[test]
fn link_value_runs_only_for_a_greenlet_that_returned() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let ok = green::spawn(|| 1);
    let panicked = green::spawn(|| -> i32 { panic!("link_value test") });
    let killed = green::spawn(|| green::sleep(LONG));
    for (label, g) in [
        ("ok", ok.as_ref()),
        ("panicked", panicked.as_ref()),
        ("killed", killed.as_ref()),
    ] {
        let log = log.clone();
        g.link_value(move |_| log.borrow_mut().push(label));
    }
    green::yield_now();
    killed.kill();
    green::sleep(ms(5));
    assert_eq!(*log.borrow(), ["ok"]);
    assert!(ok.is_successful());
    assert!(!panicked.is_successful() && !killed.is_successful());
}

#[test]
fn link_exception_runs_only_for_a_greenlet_that_panicked_or_was_killed() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let ok = green::spawn(|| 1);
    let panicked = green::spawn(|| -> i32 { panic!("link_exception test") });
    let killed = green::spawn(|| green::sleep(LONG));
    for (label, g) in [
        ("ok", ok.as_ref()),
        ("panicked", panicked.as_ref()),
        ("killed", killed.as_ref()),
    ] {
        let log = log.clone();
        g.link_exception(move |finished| {
            assert!(!finished.is_successful());
            log.borrow_mut().push(label)
        });
    }
    green::yield_now();
    killed.kill();
    green::sleep(ms(5));
    log.borrow_mut().sort();
    assert_eq!(*log.borrow(), ["killed", "panicked"]);
}

#[test]
fn unlink_removes_a_callback_before_it_runs() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let g = green::spawn(|| green::sleep(ms(5)));
    let kept = log.clone();
    let removed = log.clone();
    g.link(move |_| kept.borrow_mut().push("kept"));
    let link = g.link(move |_| removed.borrow_mut().push("removed"));
    assert!(g.unlink(link));
    assert!(!g.unlink(link), "already removed");
    g.join().unwrap();
    green::sleep(ms(5));
    assert_eq!(*log.borrow(), ["kept"]);
}

#[test]
fn rawlink_runs_inline_as_the_greenlet_ends_before_joiners_return() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let seen = log.clone();
    let g = green::spawn(|| green::sleep(ms(2)));
    let id = g.id();
    g.rawlink(move |finished| {
        seen.borrow_mut()
            .push((finished.id(), green::current().id()))
    });
    g.join().unwrap();
    assert_eq!(*log.borrow(), [(id, id)]);
}

#[test]
fn a_timeout_object_expires_and_is_caught_by_identity() {
    let started = Instant::now();
    let timeout = Timeout::start(ms(20));
    assert!(timeout.is_pending());
    let result = timeout.run(|| green::sleep(LONG));
    assert_eq!(result, Err(Elapsed));
    assert!(!timeout.is_pending());
    assert!(started.elapsed() < ms(1000));
}

#[test]
fn a_timeout_object_that_is_not_ours_passes_through_run() {
    let outer = Timeout::start(ms(20));
    let result = outer.run(|| {
        let inner = Timeout::start(LONG);
        let caught = inner.run(|| green::sleep(LONG));
        unreachable!("the outer expiry unwinds through the inner run: {caught:?}")
    });
    assert_eq!(result, Err(Elapsed));
}

#[test]
fn a_cancelled_timeout_never_fires() {
    let timeout = Timeout::start(ms(10));
    timeout.cancel();
    assert!(!timeout.is_pending());
    green::sleep(ms(30));
    assert_eq!(green::unversioned::timer_count(), 0);
}

#[test]
fn a_dropped_timeout_guard_cancels_its_timer() {
    {
        let _guard = Timeout::start(ms(10));
        green::sleep(ms(1));
    }
    green::sleep(ms(30));
    assert_eq!(green::unversioned::timer_count(), 0);
}

#[test]
fn a_timeout_payload_can_be_matched_by_hand_with_catch_unwind() {
    let timeout = Timeout::start(ms(10));
    let other = Timeout::start(LONG);
    let payload = std::panic::catch_unwind(|| green::sleep(LONG)).unwrap_err();
    assert!(timeout.is_own(payload.as_ref()));
    assert!(!other.is_own(payload.as_ref()));
    assert!(!timeout.is_own(&"a panic"));
}
