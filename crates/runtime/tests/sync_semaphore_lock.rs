//! `Semaphore`, `BoundedSemaphore`, `Lock` and `RLock`: bounded concurrency, FIFO hand-over, no
//! permit lost to a killed waiter, no poisoning, deadlock from a root context.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use green::sync::{BoundedSemaphore, Lock, OverRelease, RLock, Semaphore};

mod common;
use common::panic_message;

#[test]
fn semaphore_never_lets_more_than_n_in_at_once() {
    let semaphore = Rc::new(Semaphore::new(3));
    let inside = Rc::new(Cell::new(0));
    let most = Rc::new(Cell::new(0));
    let runs = Rc::new(Cell::new(0));
    let workers: Vec<_> = (0..10)
        .map(|i| {
            let (semaphore, inside, most, runs) = (
                semaphore.clone(),
                inside.clone(),
                most.clone(),
                runs.clone(),
            );
            green::spawn(move || {
                let _permit = semaphore.acquire();
                inside.set(inside.get() + 1);
                most.set(most.get().max(inside.get()));
                if i % 2 == 0 {
                    green::sleep(Duration::from_millis(1));
                } else {
                    green::yield_now();
                }
                runs.set(runs.get() + 1);
                inside.set(inside.get() - 1);
            })
        })
        .collect();
    for result in green::joinall(workers) {
        result.unwrap();
    }
    assert_eq!(runs.get(), 10);
    assert_eq!(most.get(), 3);
    assert_eq!(semaphore.available(), 3);
}

#[test]
fn semaphore_waiters_are_served_in_fifo_order() {
    let semaphore = Rc::new(Semaphore::new(1));
    let held = semaphore.acquire();
    let order = Rc::new(RefCell::new(Vec::new()));
    let waiters: Vec<_> = (0..5)
        .map(|i| {
            let (semaphore, order) = (semaphore.clone(), order.clone());
            green::spawn(move || {
                let _permit = semaphore.acquire();
                order.borrow_mut().push(i);
                green::yield_now();
            })
        })
        .collect();
    green::yield_now();
    assert_eq!(semaphore.waiting(), 5);
    drop(held);
    assert!(
        semaphore.try_acquire().is_none(),
        "a newcomer does not overtake"
    );
    green::joinall(waiters);
    assert_eq!(*order.borrow(), [0, 1, 2, 3, 4]);
    assert_eq!(semaphore.available(), 1);
}

#[test]
fn semaphore_acquire_timeout_and_try_acquire_fail_without_a_free_permit() {
    let semaphore = Semaphore::new(1);
    // Something else is alive meanwhile (alone, main's timed wait is a deadlock: see
    // tests/deadlock.rs).
    let _busy = green::spawn(|| green::sleep(Duration::from_millis(50)));
    let permit = semaphore.try_acquire().expect("one permit is free");
    assert!(semaphore.try_acquire().is_none());
    assert!(semaphore
        .acquire_timeout(Duration::from_millis(5))
        .is_none());
    assert_eq!(semaphore.waiting(), 0);
    drop(permit);
    assert!(semaphore.acquire_timeout(Duration::ZERO).is_some());
    assert_eq!(semaphore.available(), 1);
}

#[test]
fn semaphore_waiter_killed_after_being_woken_passes_the_permit_on() {
    let semaphore = Rc::new(Semaphore::new(1));
    let held = semaphore.acquire();
    let got = Rc::new(Cell::new(0));
    let spawn_waiter = || {
        let (semaphore, got) = (semaphore.clone(), got.clone());
        green::spawn(move || {
            let _permit = semaphore.acquire();
            got.set(got.get() + 1);
        })
    };
    let (first, second) = (spawn_waiter(), spawn_waiter());
    green::yield_now();
    drop(held); // hands the permit to `first`, which has not run yet
    first.kill();
    second.join().unwrap();
    assert!(first.join().unwrap_err().is_killed());
    assert_eq!(got.get(), 1);
    assert_eq!(semaphore.available(), 1, "no permit lost");
}

#[test]
fn semaphore_waiter_killed_while_waiting_leaves_the_count_intact() {
    let semaphore = Rc::new(Semaphore::new(0));
    let waiter = {
        let semaphore = semaphore.clone();
        green::spawn(move || {
            semaphore.acquire().forget();
        })
    };
    green::yield_now();
    assert_eq!(semaphore.waiting(), 1);
    waiter.kill();
    assert_eq!(semaphore.waiting(), 0);
    semaphore.release();
    assert_eq!(semaphore.available(), 1);
}

#[test]
fn semaphore_forget_and_release_work_like_gevent_acquire_release() {
    let semaphore = Semaphore::new(2);
    semaphore.acquire().forget();
    semaphore.acquire().forget();
    assert_eq!(semaphore.available(), 0);
    semaphore.release();
    semaphore.release();
    semaphore.release();
    assert_eq!(semaphore.available(), 3, "an unbounded semaphore grows");
}

#[test]
fn bounded_semaphore_release_above_its_bound_is_an_error() {
    let semaphore = BoundedSemaphore::new(2);
    assert_eq!(semaphore.release(), Err(OverRelease { bound: 2 }));
    semaphore.acquire().forget();
    assert_eq!(semaphore.available(), 1);
    assert_eq!(semaphore.release(), Ok(()));
    assert_eq!(semaphore.available(), 2);
    let error = semaphore.release().unwrap_err();
    assert!(error.to_string().contains("released too many times"));
    assert_eq!(semaphore.available(), 2);
    let permit = semaphore.acquire();
    drop(permit);
    assert_eq!(
        semaphore.available(),
        2,
        "dropping a permit never over-releases"
    );
}

#[test]
fn semaphore_acquire_from_main_with_nothing_running_panics_with_loop_exit() {
    let semaphore = Semaphore::new(0);
    let message = panic_message(|| {
        let _permit = semaphore.acquire();
    });
    assert!(message.contains("LoopExit"), "{message}");
    assert_eq!(semaphore.waiting(), 0);
}

#[test]
fn lock_excludes_other_greenlets_across_yields() {
    let total = Rc::new(Lock::new(0));
    let adders: Vec<_> = (0..5)
        .map(|_| {
            let total = total.clone();
            green::spawn(move || {
                for _ in 0..3 {
                    let mut guard = total.lock();
                    let seen = *guard;
                    green::yield_now();
                    *guard = seen + 1;
                }
            })
        })
        .collect();
    for result in green::joinall(adders) {
        result.unwrap();
    }
    assert_eq!(*total.lock(), 15);
}

#[test]
fn lock_waiters_are_served_in_fifo_order() {
    let lock = Rc::new(Lock::new(Vec::new()));
    let held = lock.lock();
    let waiters: Vec<_> = (0..5)
        .map(|i| {
            let lock = lock.clone();
            green::spawn(move || lock.lock().push(i))
        })
        .collect();
    green::yield_now();
    drop(held);
    assert!(lock.try_lock().is_none(), "a newcomer does not overtake");
    green::joinall(waiters);
    assert_eq!(*lock.lock(), [0, 1, 2, 3, 4]);
}

#[test]
fn lock_timeout_and_try_lock_fail_while_held() {
    let lock = Rc::new(Lock::new(()));
    let guard = lock.lock();
    assert!(lock.is_locked());
    let contender = {
        let lock = lock.clone();
        green::spawn(move || lock.lock_timeout(Duration::from_millis(5)).is_some())
    };
    assert!(!contender.join().unwrap());
    assert!(lock.try_lock().is_none());
    drop(guard);
    assert!(!lock.is_locked());
    assert!(lock.try_lock().is_some());
}

#[test]
fn killing_a_greenlet_blocked_in_lock_leaves_the_lock_usable() {
    let lock = Rc::new(Lock::new(0));
    let held = lock.lock();
    let blocked = {
        let lock = lock.clone();
        green::spawn(move || *lock.lock() += 1)
    };
    green::yield_now();
    blocked.kill();
    drop(held);
    assert!(!lock.is_locked());
    assert_eq!(*lock.try_lock().expect("lock is free"), 0);
}

#[test]
fn lock_waiter_killed_after_being_woken_passes_the_lock_on() {
    let lock = Rc::new(Lock::new(Vec::new()));
    let held = lock.lock();
    let spawn_waiter = |name| {
        let lock = lock.clone();
        green::spawn(move || lock.lock().push(name))
    };
    let (first, second) = (spawn_waiter("first"), spawn_waiter("second"));
    green::yield_now();
    drop(held);
    first.kill();
    second.join().unwrap();
    assert_eq!(*lock.lock(), ["second"]);
    assert!(!lock.is_locked());
}

#[test]
fn lock_is_not_poisoned_by_a_panicking_holder() {
    let lock = Rc::new(Lock::new(1));
    let panicker = {
        let lock = lock.clone();
        green::spawn(move || {
            let mut guard = lock.lock();
            *guard = 2;
            panic!("holder panicked");
        })
    };
    assert!(panicker.join().unwrap_err().is_panic());
    assert!(!lock.is_locked());
    assert_eq!(*lock.lock(), 2);
}

#[test]
fn lock_twice_from_main_with_nothing_running_panics_with_loop_exit() {
    let lock = Lock::new(());
    let guard = lock.lock();
    let message = panic_message(|| {
        let _again = lock.lock();
    });
    assert!(message.contains("LoopExit"), "{message}");
    drop(guard);
    assert!(!lock.is_locked());
}

#[test]
fn rlock_is_reentrant_for_its_owner_and_excludes_others() {
    let lock = Rc::new(RLock::new(RefCell::new(0)));
    let outer = lock.lock();
    let inner = lock.lock();
    *inner.borrow_mut() += 1;
    let contender = {
        let lock = lock.clone();
        green::spawn(move || lock.lock_timeout(Duration::from_millis(5)).is_some())
    };
    assert!(!contender.join().unwrap(), "another greenlet is kept out");
    drop(inner);
    assert!(lock.is_locked(), "one level is still held");
    let waiter = {
        let lock = lock.clone();
        green::spawn(move || {
            let guard = lock.lock();
            let again = lock.lock();
            *again.borrow_mut() += 1;
            drop(guard);
            let value = *again.borrow();
            value
        })
    };
    green::yield_now();
    drop(outer);
    assert_eq!(waiter.join().unwrap(), 2);
    assert!(!lock.is_locked());
}
