//! `Event` and `AsyncResult`: every waiter wakes, timeouts, errors, deadlock from a root context.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::catch_unwind;
use std::rc::Rc;
use std::time::Duration;

use green::sync::{AsyncError, AsyncResult, Event};

mod common;
use common::panic_message;

#[test]
fn event_set_wakes_every_waiter() {
    let event = Event::new();
    let woken = Rc::new(Cell::new(0));
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (event, woken) = (event.clone(), woken.clone());
            green::spawn(move || {
                assert!(event.wait());
                woken.set(woken.get() + 1);
            })
        })
        .collect();
    green::yield_now();
    assert_eq!(woken.get(), 0, "nobody wakes before set");
    event.set();
    for result in green::joinall(waiters) {
        result.unwrap();
    }
    assert_eq!(woken.get(), 5);
}

#[test]
fn event_set_then_clear_still_wakes_the_waiters_already_waiting() {
    let event = Event::new();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let event = event.clone();
            green::spawn(move || event.wait_timeout(Duration::from_secs(5)))
        })
        .collect();
    green::yield_now();
    event.set();
    event.clear();
    let results: Vec<bool> = green::joinall(waiters)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, [true, true, true]);
    assert!(!event.is_set());
}

#[test]
fn event_wait_returns_at_once_when_already_set() {
    let event = Event::new();
    event.set();
    assert!(event.is_set());
    assert!(event.wait());
    assert!(event.wait_timeout(Duration::ZERO));
}

#[test]
fn event_wait_timeout_is_false_when_never_set() {
    let event = Event::new();
    let waiter = {
        let event = event.clone();
        green::spawn(move || event.wait_timeout(Duration::from_millis(10)))
    };
    assert!(!waiter.join().unwrap());
    // From main too, while something else could still set it (alone, it is a deadlock: see
    // tests/deadlock.rs).
    let _busy = green::spawn(|| green::sleep(Duration::from_millis(50)));
    assert!(
        !event.wait_timeout(Duration::from_millis(1)),
        "from main too"
    );
}

#[test]
fn event_killed_waiter_does_not_stop_the_others_waking() {
    let event = Event::new();
    let spawn_waiter = || {
        let event = event.clone();
        green::spawn(move || event.wait())
    };
    let (first, second) = (spawn_waiter(), spawn_waiter());
    green::yield_now();
    first.kill();
    event.set();
    assert!(first.join().unwrap_err().is_killed());
    assert!(second.join().unwrap());
}

#[test]
fn event_wait_from_main_with_nothing_running_panics_with_loop_exit() {
    let event = Event::new();
    let message = panic_message(|| {
        event.wait();
    });
    assert!(message.contains("LoopExit"), "{message}");
    // The event is still usable afterwards.
    event.set();
    assert!(event.wait());
}

#[test]
fn event_works_in_a_plain_thread() {
    let woke = std::thread::spawn(|| {
        let event = Event::new();
        let setter = event.clone();
        green::spawn(move || {
            green::sleep(Duration::from_millis(2));
            setter.set();
        });
        event.wait()
    })
    .join()
    .unwrap();
    assert!(woke);
}

#[test]
fn async_result_get_gives_every_getter_the_value() {
    let result: AsyncResult<String> = AsyncResult::new();
    let getters: Vec<_> = (0..3)
        .map(|_| {
            let result = result.clone();
            green::spawn(move || result.get().unwrap())
        })
        .collect();
    let setter = {
        let result = result.clone();
        green::spawn(move || {
            green::sleep(Duration::from_millis(2));
            result.set("done".to_string());
        })
    };
    assert!(!result.ready());
    assert_eq!(result.get().unwrap(), "done");
    for value in green::joinall(getters) {
        assert_eq!(value.unwrap(), "done");
    }
    setter.join().unwrap();
    assert!(result.ready() && result.successful());
    assert_eq!(result.try_get().unwrap().unwrap(), "done", "get again");
}

#[derive(Debug, Clone, PartialEq)]
struct Refused(u32);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused {}", self.0)
    }
}

impl std::error::Error for Refused {}

#[test]
fn async_result_set_error_is_what_get_returns() {
    let typed: AsyncResult<u8, Refused> = AsyncResult::default();
    let setter = typed.clone();
    green::spawn(move || setter.set_error(Refused(7)));
    assert_eq!(typed.get(), Err(Refused(7)));
    assert!(typed.ready() && !typed.successful());

    let boxed: AsyncResult<u8> = AsyncResult::new();
    boxed.set_error(AsyncError::new(Refused(8)));
    let error = boxed.get().unwrap_err();
    assert!(!error.is_panic());
    assert_eq!(error.to_string(), "refused 8");
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn async_result_set_panic_keeps_the_panic_message() {
    let result: AsyncResult<u8> = AsyncResult::new();
    let payload = catch_unwind(|| panic!("worker exploded")).unwrap_err();
    result.set_panic(payload);
    let error = result.get().unwrap_err();
    assert!(error.is_panic());
    assert_eq!(error.panic_message(), Some("worker exploded"));
}

#[test]
fn async_result_from_a_panicked_greenlet_keeps_the_panic() {
    let greenlet = green::spawn(|| -> u8 { panic!("greenlet exploded") });
    let result: AsyncResult<u8> = AsyncResult::new();
    result.set_result(greenlet.join().map_err(AsyncError::from));
    assert_eq!(
        result.get().unwrap_err().panic_message(),
        Some("greenlet exploded")
    );
}

#[test]
fn async_result_get_timeout_is_none_until_set() {
    let result: AsyncResult<u8> = AsyncResult::new();
    // Something else could still set it (alone, main's timed wait is a deadlock).
    let _busy = green::spawn(|| green::sleep(Duration::from_millis(50)));
    assert_eq!(
        result.get_timeout(Duration::from_millis(5)).map(|r| r.ok()),
        None
    );
    assert!(!result.wait_timeout(Duration::from_millis(1)));
    result.set(3);
    assert_eq!(result.get_timeout(Duration::ZERO).unwrap().unwrap(), 3);
}

#[test]
fn async_result_wakes_waiters_in_the_order_they_waited() {
    let result: AsyncResult<u8> = AsyncResult::new();
    let order = Rc::new(RefCell::new(Vec::new()));
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let (result, order) = (result.clone(), order.clone());
            green::spawn(move || {
                result.wait();
                order.borrow_mut().push(i);
            })
        })
        .collect();
    green::yield_now();
    result.set(1);
    green::joinall(waiters);
    assert_eq!(*order.borrow(), [0, 1, 2, 3]);
}

#[test]
fn async_result_get_from_main_with_nothing_running_panics_with_loop_exit() {
    let result: AsyncResult<u8> = AsyncResult::new();
    let message = panic_message(|| {
        let _ = result.get();
    });
    assert!(message.contains("LoopExit"), "{message}");
}

#[test]
fn event_waiters_that_time_out_or_are_killed_leave_no_trace() {
    let event = Event::new();
    let timed_out = {
        let event = event.clone();
        green::spawn(move || event.wait_timeout(Duration::from_millis(2)))
    };
    let killed = {
        let event = event.clone();
        green::spawn(move || event.wait())
    };
    green::yield_now();
    assert!(format!("{event:?}").contains("waiters: 2"), "{event:?}");
    killed.kill();
    assert!(!timed_out.join().unwrap(), "never set: the wait times out");
    assert!(format!("{event:?}").contains("waiters: 0"), "{event:?}");
    event.set();
    assert!(event.wait());
}

#[test]
fn event_set_and_clear_in_a_loop_wake_each_round_of_waiters_once() {
    let (ping, pong) = (Event::new(), Event::new());
    let rounds = Rc::new(Cell::new(0));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (ping, pong, rounds) = (ping.clone(), pong.clone(), rounds.clone());
            green::spawn(move || {
                for _ in 0..100 {
                    assert!(ping.wait());
                    rounds.set(rounds.get() + 1);
                    pong.wait();
                }
            })
        })
        .collect();
    for round in 1..=100 {
        green::yield_now();
        pong.clear();
        ping.set();
        green::yield_now();
        assert_eq!(rounds.get(), 3 * round);
        ping.clear();
        pong.set();
    }
    for waiter in waiters {
        waiter.join().unwrap();
    }
}

#[test]
fn event_waiters_timing_out_last_first_leave_and_a_later_set_wakes_only_the_rest() {
    let event = Event::new();
    let count = 2_000u64;
    // Waiter i times out after (count - i) µs, so they leave from the back and the middle of the
    // list; every third one waits without a timeout and is woken by the set.
    let waiters: Vec<_> = (0..count)
        .map(|i| {
            let event = event.clone();
            green::spawn(move || {
                if i % 3 == 0 {
                    event.wait()
                } else {
                    event.wait_timeout(Duration::from_micros(1_000 + 10 * (count - i)))
                }
            })
        })
        .collect();
    green::yield_now();
    let left = (0..count).filter(|i| i % 3 != 0).count();
    let staying = count as usize - left;
    // The last timeout is due after 21 ms; a loaded machine may take longer to run them all.
    let give_up = std::time::Instant::now() + Duration::from_secs(5);
    while !format!("{event:?}").contains(&format!("waiters: {staying}")) {
        assert!(std::time::Instant::now() < give_up, "{event:?}");
        green::sleep(Duration::from_millis(10));
    }
    assert!(
        format!("{event:?}").contains(&format!("waiters: {staying}")),
        "{event:?}"
    );
    event.set();
    let results = green::joinall(waiters);
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), i % 3 == 0, "waiter {i}");
    }
    assert!(format!("{event:?}").contains("waiters: 0"), "{event:?}");
}
