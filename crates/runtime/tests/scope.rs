//! `green::scope`: greenlets that borrow from the caller, joined at the end of the scope and
//! killed if it unwinds; and the greenlet handles' unwind safety.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe, RefUnwindSafe, UnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use green::sync::Event;
use green::{BlockingHandle, Greenlet, GreenletRef, Group, JoinError, Pool, ScopedGreenlet};

mod common;
use common::ms;

/// Counts its drops.
struct DropCounter<'a>(&'a Cell<usize>);

impl Drop for DropCounter<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn scope_greenlets_borrow_local_data_and_are_joined_at_the_end() {
    let counter = Cell::new(0);
    let names = ["a".to_string(), "bb".to_string()];
    let log = RefCell::new(Vec::new());
    let total = green::scope(|s| {
        let lengths: Vec<_> = names
            .iter()
            .map(|name| {
                s.spawn(|| {
                    green::sleep(ms(5));
                    counter.set(counter.get() + 1);
                    name.len()
                })
            })
            .collect();
        // Not joined: the scope waits for it.
        s.spawn(|| {
            green::sleep(ms(20));
            log.borrow_mut().push("unjoined finished");
        });
        lengths
            .into_iter()
            .map(|g| g.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(total, 3);
    assert_eq!(counter.get(), 2);
    assert_eq!(
        *log.borrow(),
        ["unjoined finished"],
        "the scope waited for it"
    );
}

#[test]
fn scope_greenlets_may_spawn_more_in_the_same_scope() {
    let done = Cell::new(0);
    green::scope(|s| {
        s.spawn(|| {
            s.spawn(|| {
                green::sleep(ms(10));
                done.set(done.get() + 1);
            });
            done.set(done.get() + 1);
        });
    });
    assert_eq!(done.get(), 2);
}

#[test]
fn scope_that_unwinds_kills_its_greenlets_before_the_panic_goes_on() {
    let dropped = Cell::new(0);
    let started = Instant::now();
    // `dropped` is a `Cell` borrowed across the unwind: that part is not unwind-safe.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        green::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let _guard = DropCounter(&dropped);
                    green::sleep(Duration::from_secs(30));
                });
            }
            green::yield_now();
            panic!("scope body failed");
        })
    }));
    assert!(outcome.is_err());
    assert_eq!(
        dropped.get(),
        3,
        "each greenlet was killed and its destructors ran"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn scope_in_a_killed_greenlet_kills_its_greenlets_and_the_kill_goes_on() {
    let dropped = Rc::new(Cell::new(0));
    let owner = {
        let dropped = dropped.clone();
        green::spawn(move || {
            green::scope(|s| {
                s.spawn(|| {
                    let _guard = DropCounter(&dropped);
                    green::sleep(Duration::from_secs(30));
                });
                green::sleep(Duration::from_secs(30));
            });
            unreachable!("the kill unwinds through the scope");
        })
    };
    green::sleep(ms(5));
    owner.kill();
    assert!(owner.join().unwrap_err().is_killed());
    assert_eq!(dropped.get(), 1);
}

#[test]
fn scope_end_is_not_cut_short_by_a_timeout_thrown_at_the_waiting_caller() {
    let finished = Cell::new(false);
    let stubborn_done = Cell::new(false);
    let outcome = green::with_timeout(ms(20), || {
        green::scope(|s| {
            s.spawn(|| {
                // Refuses to die quickly: its cleanup blocks after the kill.
                struct SlowCleanup<'a>(&'a Cell<bool>);
                impl Drop for SlowCleanup<'_> {
                    fn drop(&mut self) {
                        green::sleep(ms(30));
                        self.0.set(true);
                    }
                }
                let _cleanup = SlowCleanup(&stubborn_done);
                green::sleep(Duration::from_secs(30));
            });
        });
        finished.set(true);
    });
    assert!(outcome.is_err(), "the timeout still reaches the caller");
    assert!(!finished.get());
    assert!(
        stubborn_done.get(),
        "the scope ended only after its greenlet did"
    );
}

#[test]
fn scope_that_can_never_finish_kills_its_greenlets_and_reports_the_deadlock() {
    let never = Event::new();
    let dropped = Cell::new(0);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        green::scope(|s| {
            s.spawn(|| {
                let _guard = DropCounter(&dropped);
                never.wait();
            });
        })
    }));
    let message = common::panic_message(move || std::panic::resume_unwind(outcome.unwrap_err()));
    assert!(message.contains("deadlock"), "{message}");
    assert_eq!(dropped.get(), 1);
}

#[test]
fn scoped_greenlet_join_gives_a_panic_back_and_the_scope_still_returns() {
    let value = green::scope(|s| {
        let failing = s.spawn(|| -> u32 { panic!("scoped failure") });
        let error = failing.join().unwrap_err();
        assert_eq!(error.panic_message(), Some("scoped failure"));
        s.spawn(|| panic!("unjoined failure"));
        7
    });
    assert_eq!(value, 7);
}

fn assert_unwind_safe<T: UnwindSafe + RefUnwindSafe>() {}

#[test]
fn greenlet_handles_are_unwind_safe() {
    assert_unwind_safe::<Greenlet<Rc<RefCell<u32>>>>();
    assert_unwind_safe::<GreenletRef>();
    assert_unwind_safe::<ScopedGreenlet<'static, RefCell<u32>>>();
    assert_unwind_safe::<BlockingHandle<u32>>();
    assert_unwind_safe::<Pool>();
    assert_unwind_safe::<Group>();
    assert_unwind_safe::<Event>();
    // catch_unwind around green code, no AssertUnwindSafe.
    let greenlet = green::spawn(|| 5);
    let pool = Pool::new(1);
    let joined = catch_unwind(|| {
        pool.spawn(|| ()).join().unwrap();
        greenlet.join()
    });
    assert!(matches!(joined, Ok(Ok(5))));
    let killed = green::spawn(|| green::sleep(Duration::from_secs(30)));
    let outcome = catch_unwind(|| {
        killed.kill();
        panic!("after the kill");
    });
    assert!(outcome.is_err());
    assert!(matches!(killed.join(), Err(JoinError::Killed)));
}
