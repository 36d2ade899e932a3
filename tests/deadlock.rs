//! Waits that nothing can ever satisfy end with `LoopExit` (gevent's) instead of hanging.

use std::cell::RefCell;
use std::rc::Rc;

use green::hub::{self, Waiter};
use green::JoinError;

mod common;
use common::ms;

/// A greenlet that parks on a waiter nobody will ever wake.
fn stuck() -> green::Greenlet<()> {
    green::spawn(|| {
        let _waiter = hub::current_waiter();
        let _ = hub::park();
    })
}

#[test]
fn joining_a_greenlet_that_waits_on_nothing_is_a_loop_exit_naming_the_deadlock() {
    let g = stuck();
    let err = g.join().unwrap_err();
    let JoinError::LoopExit(exit) = &err else {
        panic!("expected LoopExit, got {err:?}");
    };
    let message = exit.to_string();
    assert!(message.starts_with("deadlock: "), "{message}");
    assert!(
        message.contains("root of thread"),
        "names the waiter: {message}"
    );
    assert_eq!(err.to_string(), message);
}

#[test]
fn a_root_park_with_nothing_scheduled_returns_loop_exit() {
    let _waiter = hub::current_waiter();
    let exit = hub::park().unwrap_err();
    assert!(exit.to_string().contains("deadlock"));
}

#[test]
fn the_hub_stays_usable_after_a_deadlock_and_the_stuck_greenlet_can_be_killed() {
    let g = stuck();
    assert!(g.wait(None).is_err());
    green::sleep(ms(1));
    assert_eq!(green::spawn(|| 3).join().unwrap(), 3);
    g.kill();
    assert!(g.join().unwrap_err().is_killed());
}

#[test]
fn join_timeout_on_a_stuck_greenlet_is_a_timeout_not_a_deadlock() {
    let g = stuck();
    assert!(g.join_timeout(ms(10)).is_none());
    g.kill();
}

#[test]
fn two_greenlets_joining_each_other_deadlock() {
    let slot: Rc<RefCell<Option<green::GreenletRef>>> = Rc::new(RefCell::new(None));
    let s = slot.clone();
    let first = green::spawn(move || {
        let other = s.borrow().clone().unwrap();
        other.wait(None)
    });
    let first_ref = first.as_ref();
    let second = green::spawn(move || first_ref.wait(None));
    *slot.borrow_mut() = Some(second.as_ref());
    let err = first.join().unwrap_err();
    assert!(matches!(err, JoinError::LoopExit(_)), "{err:?}");
    second.kill();
}

#[test]
fn a_pending_timer_is_not_a_deadlock() {
    let g = green::spawn(|| {
        let waiter: Waiter = hub::current_waiter();
        let _timer = green::call_later(ms(10), move || waiter.wake());
        hub::park().is_ok()
    });
    assert!(g.join().unwrap());
}

#[test]
fn iwait_over_stuck_greenlets_ends_instead_of_hanging() {
    let greenlets = [stuck(), stuck()];
    let mut waiting = green::iwait(&greenlets, None);
    let finished: Vec<usize> = waiting.by_ref().collect();
    assert!(finished.is_empty());
    let exit = waiting
        .loop_exit()
        .expect("the early end is reported as a deadlock");
    assert!(exit.to_string().starts_with("deadlock: "), "{exit}");
    assert!(green::killall(&greenlets, None));
}

#[test]
fn a_plain_thread_gets_its_own_deadlock_error() {
    let message = std::thread::Builder::new()
        .name("worker".into())
        .spawn(|| stuck().join().unwrap_err().to_string())
        .unwrap()
        .join()
        .unwrap();
    assert!(message.contains("deadlock"), "{message}");
    assert!(message.contains("'worker'"), "{message}");
}
