//! Waits that nothing can ever satisfy end with `LoopExit` (gevent's) instead of hanging.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use green::sync::{AsyncResult, Channel, Event, Lock, Queue, Semaphore};
use green::unversioned::{current_waiter, park, Waiter};
use green::{Group, JoinError, Pool};

mod common;
use common::{ms, panic_message};

/// A timeout nobody should wait out: a deadlock must be reported long before.
const HOUR: Duration = Duration::from_secs(3600);

/// Well under any timeout the tests give, even with panic backtraces captured on a loaded machine.
const PROMPTLY: Duration = Duration::from_secs(3);

/// Runs `f`, which must panic with the deadlock message well before any timeout it has.
fn deadlock_panic(f: impl FnOnce()) -> String {
    let started = Instant::now();
    let message = panic_message(f);
    assert!(message.starts_with("deadlock: "), "{message}");
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    message
}

/// A greenlet that parks on a waiter nobody will ever wake.
fn stuck() -> green::Greenlet<()> {
    green::spawn(|| {
        let _waiter = current_waiter();
        let _ = park();
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
    let _waiter = current_waiter();
    let exit = park().unwrap_err();
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
fn join_timeout_on_a_stuck_greenlet_reports_the_deadlock_at_once() {
    let g = stuck();
    let started = Instant::now();
    let result = g.join_timeout(HOUR);
    assert!(
        matches!(result, Some(Err(JoinError::LoopExit(_)))),
        "{result:?}"
    );
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
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
        let waiter: Waiter = current_waiter();
        let _timer = green::call_later(ms(10), move || waiter.wake());
        park().is_ok()
    });
    assert!(g.join().unwrap());
}

#[test]
fn iwait_over_stuck_greenlets_panics_with_the_deadlock() {
    let greenlets = [stuck(), stuck()];
    let message = deadlock_panic(|| {
        let _ = green::iwait(&greenlets, None).count();
    });
    assert!(message.starts_with("deadlock: "), "{message}");
    let message = deadlock_panic(|| {
        let _ = green::iwait(&greenlets, Some(HOUR)).count();
    });
    assert!(message.starts_with("deadlock: "), "{message}");
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

#[test]
fn greenlet_wait_with_a_timeout_reports_the_deadlock_at_once() {
    let g = stuck();
    let started = Instant::now();
    assert!(g.wait(Some(HOUR)).is_err());
    assert!(g.as_ref().wait(Some(HOUR)).is_err());
    assert!(started.elapsed() < PROMPTLY);
    g.kill();
}

#[test]
fn a_root_sleep_with_nothing_else_pending_is_not_a_deadlock() {
    let started = Instant::now();
    green::sleep(ms(20));
    assert!(started.elapsed() >= ms(20));
}

#[test]
fn a_timed_wait_while_another_greenlet_sleeps_is_not_a_deadlock() {
    let event = Event::new();
    let setter = event.clone();
    green::spawn(move || {
        green::sleep(ms(20));
        setter.set();
    });
    assert!(event.wait_timeout(HOUR));
}

#[test]
fn a_timed_wait_under_with_timeout_is_not_a_deadlock_the_scope_expires() {
    let result = green::with_timeout(ms(20), || Event::new().wait_timeout(HOUR));
    assert_eq!(result, Err(green::Elapsed));
}

#[test]
fn event_wait_and_wait_timeout_panic_with_the_deadlock() {
    deadlock_panic(|| {
        Event::new().wait();
    });
    deadlock_panic(|| {
        Event::new().wait_timeout(HOUR);
    });
}

#[test]
fn queue_get_put_and_join_panic_with_the_deadlock_timed_or_not() {
    let empty = Queue::<i32>::new();
    deadlock_panic(|| {
        empty.get();
    });
    deadlock_panic(|| {
        empty.get_timeout(HOUR);
    });
    let full = Queue::bounded(1);
    full.put(1);
    deadlock_panic(|| full.put(2));
    deadlock_panic(|| {
        let _ = full.put_timeout(2, HOUR);
    });
    deadlock_panic(|| full.join());
    deadlock_panic(|| {
        full.join_timeout(HOUR);
    });
}

#[test]
fn semaphore_and_lock_panic_with_the_deadlock_timed_or_not() {
    let semaphore = Semaphore::new(0);
    deadlock_panic(|| {
        let _ = semaphore.acquire();
    });
    deadlock_panic(|| {
        semaphore.acquire_timeout(HOUR);
    });
    let lock = Lock::new(());
    let _held = lock.lock();
    deadlock_panic(|| {
        lock.lock_timeout(HOUR);
    });
}

#[test]
fn async_result_get_panics_with_the_deadlock_timed_or_not() {
    let result = AsyncResult::<i32>::new();
    deadlock_panic(|| {
        let _ = result.get();
    });
    deadlock_panic(|| {
        result.get_timeout(HOUR);
    });
    deadlock_panic(|| {
        result.wait_timeout(HOUR);
    });
}

#[test]
fn channel_get_and_put_panic_with_the_deadlock_timed_or_not() {
    let channel = Channel::<i32>::new();
    deadlock_panic(|| {
        channel.get();
    });
    deadlock_panic(|| {
        channel.get_timeout(HOUR);
    });
    deadlock_panic(|| channel.put(1));
    deadlock_panic(|| {
        let _ = channel.put_timeout(1, HOUR);
    });
}

#[test]
fn group_and_pool_join_report_the_deadlock_timed_or_not() {
    let group = Group::new();
    group.add(&stuck());
    assert!(group.join().is_err());
    deadlock_panic(|| {
        group.join_timeout(HOUR);
    });
    group.kill();
    let pool = Pool::new(1);
    pool.add(&stuck());
    assert!(pool.join().is_err());
    deadlock_panic(|| {
        pool.join_timeout(HOUR);
    });
    pool.kill();
}

#[test]
fn a_full_pool_spawn_and_wait_available_panic_with_the_deadlock() {
    let pool = Pool::new(1);
    pool.add(&stuck());
    deadlock_panic(|| {
        pool.spawn(|| ());
    });
    deadlock_panic(|| {
        pool.wait_available(None);
    });
    deadlock_panic(|| {
        pool.wait_available(Some(HOUR));
    });
    pool.kill();
}

#[test]
fn joinall_timeout_and_wait_panic_with_the_deadlock() {
    deadlock_panic(|| {
        green::joinall_timeout([stuck()], HOUR);
    });
    let greenlets = [stuck()];
    deadlock_panic(|| {
        green::wait(&greenlets, Some(HOUR), None);
    });
    green::killall(&greenlets, None);
}

#[test]
fn kill_of_a_greenlet_that_can_never_die_returns_instead_of_panicking() {
    let g = green::spawn(|| {
        struct BlocksOnDrop;
        impl Drop for BlocksOnDrop {
            fn drop(&mut self) {
                let _waiter = current_waiter();
                let _ = park();
            }
        }
        let _guard = BlocksOnDrop;
        green::sleep(HOUR);
    });
    green::yield_now();
    let started = Instant::now();
    g.kill();
    assert!(!g.is_ready());
    assert!(started.elapsed() < PROMPTLY);
}
