//! Raw greenlets (`green::raw::RawGreenlet`): Python greenlet's switch/throw/parent semantics.

use std::cell::{Cell, OnceCell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use green::raw::{RawGreenlet, RawGreenletExit, Value};

fn unit() -> Value {
    Box::new(())
}

fn int(value: Value) -> i32 {
    *value.downcast::<i32>().expect("an i32 value")
}

/// Counts its drops.
struct DropCounter(Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// The running greenlet's parent. Binding it (rather than writing
/// `RawGreenlet::current().parent().unwrap().switch(v)`) keeps no handle to the running greenlet on
/// its own stack across the switch, so dropping the greenlet's last outside handle can kill it.
fn parent() -> RawGreenlet {
    RawGreenlet::current().parent().unwrap()
}

type Log = Rc<RefCell<Vec<&'static str>>>;

fn push(log: &Log, line: &'static str) {
    log.borrow_mut().push(line);
}

#[test]
fn classic_example_never_prints_line_after_subtask_switch() {
    let log: Log = Rc::default();
    let task_slot: Rc<OnceCell<RawGreenlet>> = Rc::default();
    let subtask = RawGreenlet::new({
        let (log, task_slot) = (log.clone(), task_slot.clone());
        move |_| {
            push(&log, "56");
            task_slot.get().unwrap().switch(unit());
            push(&log, "78");
            unit()
        }
    });
    let task = RawGreenlet::new({
        let (log, subtask) = (log.clone(), subtask.clone());
        move |_| {
            push(&log, "12");
            subtask.switch(unit());
            push(&log, "34");
            Box::new("task done")
        }
    });
    task_slot.set(task.clone()).unwrap();

    let returned = task.switch(unit());

    assert_eq!(*returned.downcast::<&str>().unwrap(), "task done");
    assert_eq!(*log.borrow(), ["12", "56", "34"]);
    assert!(task.is_dead());
    assert!(!subtask.is_dead());
    assert!(subtask.is_active());
}

#[test]
fn values_pass_both_ways() {
    let echo = RawGreenlet::new(|first| {
        let mut n = int(first);
        let parent = parent();
        for _ in 0..3 {
            n = int(parent.switch(Box::new(n * 10)));
        }
        Box::new(-1)
    });
    assert!(!echo.is_started());
    assert_eq!(int(echo.switch(Box::new(1))), 10);
    assert!(echo.is_started());
    assert_eq!(int(echo.switch(Box::new(2))), 20);
    assert_eq!(int(echo.switch(Box::new(3))), 30);
    assert!(!echo.is_dead());
    assert_eq!(int(echo.switch(Box::new(4))), -1);
    assert!(echo.is_dead());
}

#[test]
fn return_value_goes_to_parent_not_to_last_switcher() {
    let log: Log = Rc::default();
    let outer = RawGreenlet::new({
        let log = log.clone();
        move |_| {
            let outer = RawGreenlet::current();
            let inner = RawGreenlet::new(|v| Box::new(int(v) + 1));
            assert_eq!(inner.parent(), Some(outer.clone()));
            // `inner` returns into its parent (us), not into the root.
            let got = int(inner.switch(Box::new(41)));
            assert_eq!(got, 42);
            push(&log, "inner returned to outer");
            Box::new(got * 2)
        }
    });
    assert_eq!(outer.parent(), Some(RawGreenlet::current()));
    assert_eq!(int(outer.switch(unit())), 84);
    assert_eq!(*log.borrow(), ["inner returned to outer"]);
}

#[derive(Debug, PartialEq)]
struct Boom(u32);

#[test]
fn throw_unwinds_target_runs_destructors_once_and_reaches_parent() {
    let drops = Rc::new(Cell::new(0));
    let after = Rc::new(Cell::new(false));
    let g = RawGreenlet::new({
        let (drops, after) = (drops.clone(), after.clone());
        move |_| {
            let _guard = DropCounter(drops);
            let parent = parent();
            parent.switch(unit());
            after.set(true);
            unit()
        }
    });
    g.switch(unit());
    assert_eq!(drops.get(), 0);

    let payload = catch_unwind(AssertUnwindSafe(|| g.throw(Box::new(Boom(7))))).unwrap_err();

    assert_eq!(payload.downcast_ref::<Boom>(), Some(&Boom(7)));
    assert_eq!(drops.get(), 1);
    assert!(!after.get());
    assert!(g.is_dead());
    drop(g);
    assert_eq!(drops.get(), 1);
}

#[test]
fn caught_throw_lets_target_carry_on() {
    let g = RawGreenlet::new(|_| {
        let parent = parent();
        let caught = catch_unwind(AssertUnwindSafe(|| parent.switch(unit()))).unwrap_err();
        let Boom(n) = *caught.downcast::<Boom>().unwrap();
        Box::new(n as i32 + 1)
    });
    g.switch(unit());
    assert_eq!(int(g.throw(Box::new(Boom(9)))), 10);
    assert!(g.is_dead());
}

#[test]
fn raw_greenlet_exit_is_returned_to_parent_as_value() {
    let drops = Rc::new(Cell::new(0));
    let g = RawGreenlet::new({
        let drops = drops.clone();
        move |_| {
            let _guard = DropCounter(drops);
            parent().switch(unit());
            unit()
        }
    });
    g.switch(unit());
    let value = g.throw(Box::new(RawGreenletExit));
    assert!(value.is::<RawGreenletExit>());
    assert_eq!(drops.get(), 1);
    assert!(g.is_dead());
}

#[test]
fn throw_into_unstarted_greenlet_never_runs_it() {
    let ran = Rc::new(Cell::new(false));
    let drops = Rc::new(Cell::new(0));
    let g = RawGreenlet::new({
        let (ran, guard) = (ran.clone(), DropCounter(drops.clone()));
        move |_| {
            ran.set(true);
            drop(guard);
            unit()
        }
    });
    let payload = catch_unwind(AssertUnwindSafe(|| g.throw(Box::new(Boom(1))))).unwrap_err();
    assert_eq!(payload.downcast_ref::<Boom>(), Some(&Boom(1)));
    assert!(!ran.get());
    assert_eq!(drops.get(), 1);
    assert!(g.is_dead());
    assert!(g.is_started());
}

#[test]
fn panic_in_greenlet_is_reraised_in_parent_switch() {
    let g = RawGreenlet::new(|_| std::panic::panic_any(Boom(3)));
    let payload = catch_unwind(AssertUnwindSafe(|| g.switch(unit()))).unwrap_err();
    assert_eq!(payload.downcast_ref::<Boom>(), Some(&Boom(3)));
    assert!(g.is_dead());
}

#[test]
fn switch_to_dead_greenlet_returns_value_to_its_live_parent_at_once() {
    let runs = Rc::new(Cell::new(0));
    let g = RawGreenlet::new({
        let runs = runs.clone();
        move |_| {
            runs.set(runs.get() + 1);
            Box::new(1)
        }
    });
    assert_eq!(int(g.switch(unit())), 1);
    assert!(g.is_dead());
    // Its parent is the caller (the root): the value comes straight back, the body never reruns.
    assert_eq!(int(g.switch(Box::new(5))), 5);
    let payload = catch_unwind(AssertUnwindSafe(|| g.throw(Box::new(Boom(2))))).unwrap_err();
    assert_eq!(payload.downcast_ref::<Boom>(), Some(&Boom(2)));
    assert_eq!(runs.get(), 1);
}

#[test]
fn switch_to_self_returns_the_value() {
    let g = RawGreenlet::new(|v| RawGreenlet::current().switch(Box::new(int(v) * 3)));
    assert_eq!(int(g.switch(Box::new(4))), 12);
    let root = RawGreenlet::current();
    assert_eq!(int(root.switch(Box::new(8))), 8);
}

#[test]
fn set_parent_redirects_return_value() {
    let log: Log = Rc::default();
    let collector = RawGreenlet::new({
        let log = log.clone();
        move |first| {
            push(&log, "collector started");
            assert_eq!(int(first), 99);
            Box::new(100)
        }
    });
    let worker = RawGreenlet::new({
        let log = log.clone();
        move |_| {
            push(&log, "worker ran");
            Box::new(99)
        }
    });
    worker.set_parent(&collector);
    assert_eq!(worker.parent(), Some(collector.clone()));
    // The worker returns 99 into its parent, which starts with it, then returns 100 to the root.
    assert_eq!(int(worker.switch(unit())), 100);
    assert_eq!(*log.borrow(), ["worker ran", "collector started"]);
    assert!(worker.is_dead() && collector.is_dead());
}

#[test]
#[should_panic(expected = "cyclic parent chain")]
fn set_parent_rejects_a_cycle() {
    let a = RawGreenlet::new(|v| v);
    let b = RawGreenlet::new(|v| v);
    b.set_parent(&a);
    a.set_parent(&b);
}

#[test]
fn current_is_the_root_outside_and_the_greenlet_inside() {
    let root = RawGreenlet::current();
    assert!(root.is_root());
    assert!(root.parent().is_none());
    assert_eq!(root, green::raw::current());
    let seen: Rc<RefCell<Option<RawGreenlet>>> = Rc::default();
    let g = RawGreenlet::new({
        let seen = seen.clone();
        move |_| {
            *seen.borrow_mut() = Some(RawGreenlet::current());
            unit()
        }
    });
    g.switch(unit());
    assert_eq!(seen.borrow().as_ref(), Some(&g));
    assert_eq!(RawGreenlet::current(), root);
}

#[test]
fn dropping_suspended_greenlet_runs_its_destructors_once() {
    let drops = Rc::new(Cell::new(0));
    let after = Rc::new(Cell::new(false));
    let g = RawGreenlet::new({
        let (drops, after) = (drops.clone(), after.clone());
        move |_| {
            let _guard = DropCounter(drops);
            parent().switch(unit());
            after.set(true);
            unit()
        }
    });
    g.switch(unit());
    assert_eq!(drops.get(), 0);
    drop(g);
    assert_eq!(drops.get(), 1);
    assert!(!after.get());
}

#[test]
fn dropping_suspended_greenlet_inside_another_greenlet_kills_it_there() {
    let log: Log = Rc::default();
    let drops = Rc::new(Cell::new(0));
    let outer = RawGreenlet::new({
        let (log, drops) = (log.clone(), drops.clone());
        move |_| {
            let inner = RawGreenlet::new({
                let log = log.clone();
                move |_| {
                    let _guard = DropCounter(drops);
                    push(&log, "inner runs");
                    parent().switch(unit());
                    push(&log, "inner resumes normally");
                    unit()
                }
            });
            inner.switch(unit());
            push(&log, "outer drops inner");
            drop(inner);
            push(&log, "outer after drop");
            Box::new(1)
        }
    });
    assert_eq!(int(outer.switch(unit())), 1);
    assert_eq!(
        *log.borrow(),
        ["inner runs", "outer drops inner", "outer after drop"]
    );
    assert_eq!(drops.get(), 1);
}

#[test]
fn dropping_unstarted_greenlet_drops_its_closure_once() {
    let drops = Rc::new(Cell::new(0));
    let guard = DropCounter(drops.clone());
    let g = RawGreenlet::new(move |_| {
        drop(guard);
        unit()
    });
    drop(g);
    assert_eq!(drops.get(), 1);
}

#[test]
fn temporary_greenlet_left_suspended_is_killed_at_end_of_statement() {
    let drops = Rc::new(Cell::new(0));
    let order: Log = Rc::default();
    // A temporary greenlet switches back to the root and nobody else holds it: the temporary is
    // the last handle, so it is killed when the statement ends.
    let value = RawGreenlet::new({
        let (drops, order) = (drops.clone(), order.clone());
        move |_| {
            let _guard = DropCounter(drops);
            push(&order, "switching to root");
            parent().switch(Box::new(7));
            push(&order, "never");
            unit()
        }
    })
    .switch(unit());
    assert_eq!(int(value), 7);
    assert_eq!(drops.get(), 1);
    assert_eq!(*order.borrow(), ["switching to root"]);
}

#[test]
fn raw_greenlet_sleeps_on_the_hub_from_a_main_thread_switch() {
    let ticks = Rc::new(Cell::new(0));
    let ticker = green::spawn({
        let ticks = ticks.clone();
        move || {
            for _ in 0..3 {
                ticks.set(ticks.get() + 1);
                green::sleep(Duration::from_millis(1));
            }
        }
    });
    let sleeper = RawGreenlet::new({
        let ticks = ticks.clone();
        move |_| {
            green::sleep(Duration::from_millis(1));
            // The hub runs the ticker while this raw greenlet blocks.
            ticker.join().unwrap();
            let seen = ticks.get();
            let back = parent().switch(Box::new(seen));
            green::sleep(Duration::from_millis(1));
            Box::new(int(back) + 1)
        }
    });
    assert_eq!(int(sleeper.switch(unit())), 3);
    assert_eq!(int(sleeper.switch(Box::new(10))), 11);
    assert!(sleeper.is_dead());
}

#[test]
fn hub_greenlets_have_their_own_raw_roots() {
    let main_root = RawGreenlet::current();
    let g = green::spawn(move || {
        let root = RawGreenlet::current();
        assert!(root.is_root());
        assert_ne!(root, main_root);
        let raw = RawGreenlet::new(|v| {
            green::sleep(Duration::from_millis(5));
            Box::new(int(v) * 2)
        });
        assert_eq!(raw.parent(), Some(root));
        int(raw.switch(Box::new(21)))
    });
    let h = green::spawn(|| {
        let raw = RawGreenlet::new(|v| {
            green::sleep(Duration::from_millis(1));
            Box::new(int(v) + 1)
        });
        int(raw.switch(Box::new(1)))
    });
    assert_eq!(g.join().unwrap(), 42);
    assert_eq!(h.join().unwrap(), 2);
}

#[test]
fn raw_greenlets_work_in_a_plain_thread_with_its_own_hub() {
    let main_root = RawGreenlet::current().id();
    let result = std::thread::spawn(move || {
        let root = RawGreenlet::current();
        assert_ne!(root.id(), main_root);
        let raw = RawGreenlet::new(|v| {
            green::sleep(Duration::from_millis(1));
            let back = parent().switch(Box::new(int(v) + 1));
            Box::new(int(back) * 2)
        });
        let first = int(raw.switch(Box::new(1)));
        let second = int(raw.switch(Box::new(first + 1)));
        (first, second, raw.is_dead())
    })
    .join()
    .unwrap();
    assert_eq!(result, (2, 6, true));
}

#[test]
fn killing_a_hub_greenlet_unwinds_its_sleeping_raw_greenlet() {
    let drops = Rc::new(Cell::new(0));
    let after = Rc::new(Cell::new(0));
    let g = green::spawn({
        let (drops, after) = (drops.clone(), after.clone());
        move || {
            let raw = RawGreenlet::new({
                let after = after.clone();
                move |_| {
                    let _guard = DropCounter(drops);
                    green::sleep(Duration::from_secs(10));
                    after.set(after.get() + 1);
                    unit()
                }
            });
            raw.switch(unit());
            after.set(after.get() + 1);
        }
    });
    green::sleep(Duration::from_millis(5));
    g.kill();
    assert!(g.join().unwrap_err().is_killed());
    assert_eq!(drops.get(), 1);
    assert_eq!(after.get(), 0);
}

#[test]
fn with_timeout_interrupts_a_raw_greenlet_sleeping_from_main() {
    let drops = Rc::new(Cell::new(0));
    let raw = RawGreenlet::new({
        let drops = drops.clone();
        move |_| {
            let _guard = DropCounter(drops);
            green::sleep(Duration::from_secs(10));
            unit()
        }
    });
    let result = green::with_timeout(Duration::from_millis(10), || raw.switch(unit()));
    assert!(result.is_err());
    assert!(raw.is_dead());
    assert_eq!(drops.get(), 1);
}

#[test]
fn switching_to_a_raw_greenlet_of_another_hub_context_panics() {
    let raw = RawGreenlet::new(|v| v);
    let g = green::spawn({
        let raw = raw.clone();
        move || raw.switch(unit())
    });
    let err = g.join().unwrap_err();
    assert!(err.panic_message().unwrap().contains("another hub context"));
    assert!(!raw.is_started());
}

#[test]
fn many_switches_between_two_greenlets_keep_order() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let ping_slot: Rc<OnceCell<RawGreenlet>> = Rc::default();
    let pong = RawGreenlet::new({
        let (log, ping_slot) = (log.clone(), ping_slot.clone());
        move |mut v| loop {
            let n = int(v);
            log.borrow_mut().push(n);
            v = ping_slot.get().unwrap().switch(Box::new(n + 1));
        }
    });
    let ping = RawGreenlet::new({
        let (log, pong) = (log.clone(), pong.clone());
        move |_| {
            let mut n = 0;
            while n < 1000 {
                log.borrow_mut().push(n);
                n = int(pong.switch(Box::new(n + 1)));
            }
            Box::new(n)
        }
    });
    ping_slot.set(ping.clone()).unwrap();
    assert_eq!(int(ping.switch(unit())), 1000);
    let log = log.borrow();
    assert_eq!(log.len(), 1000);
    assert!(log.iter().copied().eq(0..1000));
    assert!(ping.is_dead() && pong.is_active());
}
