//! `wait`, `iwait` over any `Waitable` (greenlets, events, async results, semaphores, thread-pool
//! jobs, a user's own type), `wait_idle` (gevent's `wait()` without objects) and
//! `joinall_completed`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use green::sync::{AsyncResult, Event, Semaphore};
use green::{GreenletRef, Waitable};

mod common;
use common::{ms, panic_message};

/// Sets `event` after `delay`, from a greenlet.
fn set_later(event: &Event, delay: Duration) {
    let event = event.clone();
    green::spawn(move || {
        green::sleep(delay);
        event.set();
    });
}

#[test]
fn wait_over_mixed_waitables_reports_them_in_completion_order() {
    let event = Event::new();
    set_later(&event, ms(30));
    let result = AsyncResult::<u32>::new();
    {
        let result = result.clone();
        green::spawn(move || {
            green::sleep(ms(10));
            result.set(1);
        });
    }
    let semaphore = Rc::new(Semaphore::new(0));
    {
        let semaphore = semaphore.clone();
        green::spawn(move || {
            green::sleep(ms(20));
            semaphore.release();
        });
    }
    let job = green::spawn_blocking(|| std::thread::sleep(ms(40)));
    let greenlet = green::spawn(|| green::sleep(ms(50)));
    let items: [&dyn Waitable; 5] = [&greenlet, &job, &event, &semaphore, &result];
    assert_eq!(green::wait(&items, None, None), [4, 3, 2, 1, 0]);
    assert_eq!(
        semaphore.available(),
        1,
        "waiting on a semaphore takes no permit"
    );
    assert!(job.join().is_ok());
}

#[test]
fn wait_with_count_returns_after_that_many_and_ready_ones_come_first() {
    let ready = Event::new();
    ready.set();
    let slow = Event::new();
    let fast = Event::new();
    set_later(&fast, ms(5));
    let started = Instant::now();
    let done = green::wait(&[slow.clone(), fast, ready], None, Some(2));
    assert_eq!(done, [2, 1]);
    assert!(started.elapsed() < ms(1_000));
    assert!(!slow.is_set());
}

#[test]
fn iwait_over_events_ends_at_the_timeout_with_the_ones_set() {
    let events: Vec<Event> = (0..3).map(|_| Event::new()).collect();
    set_later(&events[1], ms(5));
    // Something else alive, so the timed wait ends at its timeout, not at the deadlock.
    let _alive = green::spawn(|| green::sleep(ms(200)));
    let started = Instant::now();
    let done: Vec<usize> = green::iwait(&events, Some(ms(60))).collect();
    assert_eq!(done, [1]);
    let waited = started.elapsed();
    assert!(waited >= ms(50) && waited < ms(2_000), "{waited:?}");
}

/// A user's own waitable: ready once its event is set, watched by a greenlet that counts its
/// own end, so a test sees the watcher go away.
struct Watched {
    event: Event,
    watchers_ended: Rc<Cell<usize>>,
}

struct CountOnDrop(Rc<Cell<usize>>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

impl Waitable for Watched {
    fn is_ready(&self) -> bool {
        self.event.is_set()
    }

    fn notify_when_ready(&self, notify: Box<dyn FnOnce()>) -> Option<GreenletRef> {
        let event = self.event.clone();
        let ended = CountOnDrop(self.watchers_ended.clone());
        let watcher = green::spawn(move || {
            let _ended = ended;
            event.wait();
            notify();
        });
        Some(watcher.as_ref())
    }
}

#[test]
fn iwait_dropped_early_kills_the_watchers_it_no_longer_needs() {
    let watchers_ended = Rc::new(Cell::new(0));
    let items: Vec<Watched> = (0..3)
        .map(|_| Watched {
            event: Event::new(),
            watchers_ended: watchers_ended.clone(),
        })
        .collect();
    set_later(&items[0].event, ms(2));
    let mut iteration = green::iwait(&items, None);
    assert_eq!(iteration.next(), Some(0));
    green::yield_now();
    assert_eq!(
        watchers_ended.get(),
        1,
        "the first watcher ended with its item"
    );
    drop(iteration);
    green::sleep(ms(5));
    assert_eq!(watchers_ended.get(), 3, "the other two were killed");
}

#[test]
fn iwait_over_an_event_that_can_never_be_set_panics_with_the_deadlock() {
    let never = Event::new();
    let mut iteration = green::iwait(&[never], None);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| iteration.next()));
    let payload = outcome.expect_err("nothing can set the event: the deadlock policy panics");
    let message = green::JoinError::Panicked(payload)
        .panic_message()
        .map(String::from);
    assert!(message.is_some_and(|m| m.contains("deadlock")));
}

#[test]
fn wait_idle_runs_until_no_greenlet_timer_or_job_is_left() {
    let finished = Rc::new(Cell::new(0));
    for delay in [30, 10, 20] {
        let finished = finished.clone();
        green::spawn(move || {
            green::sleep(ms(delay));
            let job = green::spawn_blocking(|| std::thread::sleep(ms(10)));
            job.join().unwrap();
            finished.set(finished.get() + 1);
        });
    }
    // One greenlet blocked on something nothing can set does not keep the hub running.
    let never = Event::new();
    let stuck = {
        let never = never.clone();
        green::spawn(move || never.wait())
    };
    let started = Instant::now();
    green::wait_idle();
    assert_eq!(finished.get(), 3);
    assert!(started.elapsed() >= ms(35));
    assert!(!stuck.is_ready());
    stuck.kill();
    // Nothing to do: returns at once.
    green::wait_idle();
}

#[test]
fn wait_idle_panics_inside_a_greenlet() {
    let greenlet = green::spawn(|| panic_message(green::wait_idle));
    let message = greenlet.join().unwrap();
    assert!(message.contains("root context"), "{message}");
}

#[test]
fn joinall_completed_gives_results_in_completion_order_with_their_index() {
    let greenlets: Vec<_> = [30u64, 10, 20]
        .into_iter()
        .map(|delay| {
            green::spawn(move || {
                green::sleep(ms(delay));
                delay
            })
        })
        .collect();
    let results: Vec<(usize, u64)> = green::joinall_completed(greenlets)
        .into_iter()
        .map(|(index, result)| (index, result.unwrap()))
        .collect();
    assert_eq!(results, [(1, 10), (2, 20), (0, 30)]);
}

#[test]
fn joinall_keeps_input_order_whatever_the_completion_order() {
    let greenlets: Vec<_> = [30u64, 10, 20]
        .into_iter()
        .map(|delay| {
            green::spawn(move || {
                green::sleep(ms(delay));
                delay
            })
        })
        .collect();
    let results: Vec<u64> = green::joinall(greenlets)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, [30, 10, 20]);
}
