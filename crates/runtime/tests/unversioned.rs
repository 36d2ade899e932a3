//! `unversioned::park_until` takes an `Instant`: woken before it, timed out at it, and at once
//! for an instant already past (even one before the hub existed); `unversioned::recent_now` is
//! the clock as of the hub's last turn.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use green_runtime::unversioned::{current_waiter, park_until, Waiter};

#[test]
fn park_until_an_instant_already_past_times_out_at_once() {
    let before_the_hub = Instant::now();
    std::thread::sleep(Duration::from_millis(2));
    let greenlet = green_runtime::spawn(move || {
        let _waiter = current_waiter();
        park_until(Some(before_the_hub)).unwrap()
    });
    assert!(greenlet.join().unwrap(), "a past deadline is timed out");
}

#[test]
fn park_until_reports_a_wake_before_the_deadline() {
    let slot: Rc<RefCell<Option<Waiter>>> = Rc::default();
    let parked = {
        let slot = slot.clone();
        green_runtime::spawn(move || {
            *slot.borrow_mut() = Some(current_waiter());
            park_until(Some(Instant::now() + Duration::from_secs(10))).unwrap()
        })
    };
    green_runtime::yield_now(); // the greenlet parks
    slot.borrow_mut().take().expect("parked").wake();
    let started = Instant::now();
    assert!(!parked.join().unwrap(), "woken, not timed out");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn park_until_times_out_at_the_deadline() {
    let greenlet = green_runtime::spawn(|| {
        let deadline = Instant::now() + Duration::from_millis(50);
        let _waiter = current_waiter();
        let timed_out = park_until(Some(deadline)).unwrap();
        (timed_out, Instant::now() >= deadline)
    });
    assert_eq!(greenlet.join().unwrap(), (true, true));
}

#[test]
fn recent_now_is_the_clock_as_of_the_last_hub_turn() {
    let greenlet = green_runtime::spawn(|| {
        let before = Instant::now();
        green_runtime::sleep(Duration::from_millis(20));
        // The turn that fired the sleep's timer read the clock at or after its deadline.
        let recent = green_runtime::unversioned::recent_now();
        let after = Instant::now();
        (before, recent, after)
    });
    let (before, recent, after) = greenlet.join().unwrap();
    assert!(
        recent >= before + Duration::from_millis(20),
        "recent_now {:?} after the sleep's start, expected at least 20 ms",
        recent - before
    );
    assert!(recent <= after, "recent_now is never ahead of the clock");
}
