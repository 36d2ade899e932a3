//! Killing greenlets: before they start, while they block, twice, after they end, and with
//! destructors that block greenly while the kill unwinds them.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use green::{GreenletExit, JoinError};

mod common;
use common::ms;

/// Counts its drops in a shared cell.
struct DropCounter(Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Calls its closure when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

fn counter() -> Rc<Cell<usize>> {
    Rc::new(Cell::new(0))
}

fn bump(cell: &Cell<usize>) {
    cell.set(cell.get() + 1);
}

#[test]
fn kill_before_start_never_runs_and_drops_the_closure_once() {
    let runs = counter();
    let drops = counter();
    let (r, guard) = (runs.clone(), DropCounter(drops.clone()));
    let g = green::spawn(move || {
        let _guard = guard;
        bump(&r);
    });
    g.kill();
    assert!(g.is_ready());
    assert_eq!(drops.get(), 1);
    green::sleep(ms(5));
    assert_eq!(runs.get(), 0);
    assert!(matches!(g.join(), Err(JoinError::Killed)));
    assert_eq!(drops.get(), 1);
}

#[test]
fn kill_before_spawn_later_delay_never_runs() {
    let runs = counter();
    let r = runs.clone();
    let g = green::spawn_later(ms(10), move || bump(&r));
    g.kill();
    green::sleep(ms(30));
    assert_eq!(runs.get(), 0);
    assert!(g.join().unwrap_err().is_killed());
}

#[test]
fn kill_during_sleep_runs_destructors_once_and_skips_the_code_after_it() {
    let drops = counter();
    let after = counter();
    let (d, a) = (drops.clone(), after.clone());
    let g = green::spawn(move || {
        let _guard = DropCounter(d);
        green::sleep(Duration::from_secs(10));
        bump(&a);
    });
    green::sleep(ms(1));
    assert!(g.is_started() && !g.is_ready());
    g.kill();
    assert!(g.is_ready(), "kill waits until the greenlet is dead");
    assert_eq!(drops.get(), 1);
    assert_eq!(after.get(), 0);
    assert!(g.join().unwrap_err().is_killed());
    assert_eq!(
        green::unversioned::timer_count(),
        0,
        "the sleep's timer is cancelled"
    );
}

#[test]
fn kill_of_a_yielding_greenlet_unwinds_from_yield_now() {
    let drops = counter();
    let d = drops.clone();
    let g = green::spawn(move || {
        let _guard = DropCounter(d);
        loop {
            green::yield_now();
        }
    });
    green::yield_now();
    green::yield_now();
    g.kill();
    assert_eq!(drops.get(), 1);
    assert!(g.join().unwrap_err().is_killed());
}

#[test]
fn killing_twice_is_harmless() {
    let drops = counter();
    let d = drops.clone();
    let g = green::spawn(move || {
        let _guard = DropCounter(d);
        green::sleep(Duration::from_secs(10));
    });
    green::sleep(ms(1));
    g.kill_nowait();
    g.kill_nowait();
    g.kill();
    g.kill();
    assert_eq!(drops.get(), 1);
    assert!(g.join().unwrap_err().is_killed());
}

#[test]
fn killing_a_finished_greenlet_keeps_its_value() {
    let g = green::spawn(|| 5);
    assert!(g.wait(None).unwrap());
    g.kill();
    assert!(g.kill_timeout(ms(1)));
    assert_eq!(g.join().unwrap(), 5);
}

#[test]
fn kill_nowait_returns_before_the_target_has_died() {
    let g = green::spawn(|| green::sleep(Duration::from_secs(10)));
    green::sleep(ms(1));
    g.kill_nowait();
    assert!(
        !g.is_ready(),
        "the kill is delivered when the target next runs"
    );
    assert!(g.join().unwrap_err().is_killed());
}

#[test]
fn greenlet_killing_itself_stops_at_once() {
    let after = counter();
    let a = after.clone();
    let g = green::spawn(move || {
        green::current().kill();
        bump(&a);
    });
    assert!(g.join().unwrap_err().is_killed());
    assert_eq!(after.get(), 0);
}

#[test]
fn greenlet_kills_another_greenlet() {
    let victim = green::spawn(|| green::sleep(Duration::from_secs(10)));
    let victim_ref = victim.as_ref();
    let killer = green::spawn(move || {
        green::sleep(ms(2));
        victim_ref.kill();
        victim_ref.is_ready()
    });
    assert!(killer.join().unwrap());
    assert!(victim.join().unwrap_err().is_killed());
}

#[test]
fn killing_a_joiner_leaves_the_joined_greenlet_running() {
    let go = Rc::new(Cell::new(false));
    let g = go.clone();
    let target = green::spawn(move || {
        while !g.get() {
            green::sleep(ms(1));
        }
        "finished"
    });
    let target_ref = target.as_ref();
    let joiner = green::spawn(move || target_ref.wait(None));
    green::sleep(ms(1));
    joiner.kill();
    assert!(joiner.join().unwrap_err().is_killed());
    assert!(!target.is_ready());
    go.set(true);
    assert_eq!(target.join().unwrap(), "finished");
}

#[test]
fn greenlet_exit_caught_and_reraised_still_ends_as_killed() {
    let caught = counter();
    let c = caught.clone();
    let g = green::spawn(move || {
        let result = catch_unwind(AssertUnwindSafe(|| green::sleep(Duration::from_secs(10))));
        if let Err(payload) = result {
            if payload.downcast_ref::<GreenletExit>().is_some() {
                bump(&c);
            }
            resume_unwind(payload);
        }
    });
    green::sleep(ms(1));
    g.kill();
    assert_eq!(caught.get(), 1);
    assert!(g.join().unwrap_err().is_killed());
}

#[test]
fn destructor_that_sleeps_while_a_kill_unwinds_it_completes() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let g = green::spawn(move || {
        let l2 = l.clone();
        let _cleanup = OnDrop(move || {
            l2.borrow_mut().push("cleanup start");
            green::sleep(ms(20));
            l2.borrow_mut().push("cleanup end");
        });
        l.borrow_mut().push("body");
        green::sleep(Duration::from_secs(10));
        l.borrow_mut().push("after sleep");
    });
    green::sleep(ms(1));
    g.kill();
    assert_eq!(*log.borrow(), ["body", "cleanup start", "cleanup end"]);
    assert!(g.join().unwrap_err().is_killed());
}

#[test]
fn destructor_that_waits_on_an_fd_while_a_kill_unwinds_it_completes() {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    theirs.set_nonblocking(true).unwrap();
    let received = Rc::new(RefCell::new(Vec::new()));
    let r = received.clone();
    let g = green::spawn(move || {
        let _cleanup = OnDrop(move || {
            // A "close_notify" exchange: wait for the peer's reply, greenly, mid-unwind.
            let mut buf = [0u8; 16];
            loop {
                match ours.read(&mut buf) {
                    Ok(n) => break r.borrow_mut().extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        green::wait_readable(&ours, None).unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
        green::sleep(Duration::from_secs(10));
    });
    let peer = green::spawn(move || {
        green::sleep(ms(20));
        (&theirs).write_all(b"bye").unwrap();
        theirs
    });
    green::sleep(ms(1));
    g.kill();
    assert_eq!(*received.borrow(), b"bye");
    assert!(g.join().unwrap_err().is_killed());
    drop(peer.join().unwrap());
}

/// What lib.rs's Caveats document: `std::thread::panicking()` is per thread, so while one greenlet
/// is suspended in a destructor in the middle of a kill's unwind, every other greenlet on the
/// thread sees `true`; a std `Mutex` guard taken before that window and dropped inside it poisons.
#[test]
fn other_greenlets_see_thread_panicking_while_one_is_suspended_mid_unwind() {
    let in_cleanup = Rc::new(Cell::new(false));
    let flag = in_cleanup.clone();
    let unwinding = green::spawn(move || {
        let _cleanup = OnDrop(move || {
            flag.set(true);
            green::sleep(ms(30));
            flag.set(false);
        });
        green::sleep(Duration::from_secs(10));
    });
    let held_across = std::sync::Arc::new(std::sync::Mutex::new(0));
    let taken_inside = std::sync::Arc::new(std::sync::Mutex::new(0));
    let (across, inside) = (held_across.clone(), taken_inside.clone());
    let flag = in_cleanup.clone();
    let observer = green::spawn(move || {
        let before = std::thread::panicking();
        let guard = across.lock().unwrap();
        while !flag.get() {
            green::yield_now();
        }
        let during = std::thread::panicking();
        drop(guard);
        drop(inside.lock().unwrap());
        while flag.get() {
            green::yield_now();
        }
        green::yield_now();
        let after = std::thread::panicking();
        (before, during, after)
    });
    green::sleep(ms(1));
    unwinding.kill();
    assert_eq!(observer.join().unwrap(), (false, true, false));
    assert!(
        held_across.is_poisoned(),
        "a std guard taken before and dropped during the window poisons its mutex"
    );
    assert!(
        !taken_inside.is_poisoned(),
        "a guard taken and dropped within the window does not (std records panicking() at lock)"
    );
    assert!(!std::thread::panicking());
}

/// Also from the Caveats: a kill aimed at a greenlet that blocked while the thread was panicking is
/// deferred until no unwind is in progress, then delivered.
#[test]
fn kill_of_a_greenlet_parked_during_anothers_unwind_waits_for_that_unwind() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let in_cleanup = Rc::new(Cell::new(false));
    let (l, flag) = (log.clone(), in_cleanup.clone());
    let unwinding = green::spawn(move || {
        let _cleanup = OnDrop(move || {
            flag.set(true);
            green::sleep(ms(40));
            l.borrow_mut().push("first cleanup done");
        });
        green::sleep(Duration::from_secs(10));
    });
    let (l, flag) = (log.clone(), in_cleanup.clone());
    let second = green::spawn(move || {
        while !flag.get() {
            green::yield_now();
        }
        let _guard = OnDrop(move || l.borrow_mut().push("second dropped"));
        green::sleep(Duration::from_secs(10));
    });
    green::sleep(ms(1));
    unwinding.kill_nowait();
    while !in_cleanup.get() {
        green::sleep(ms(1));
    }
    second.kill();
    assert_eq!(*log.borrow(), ["first cleanup done", "second dropped"]);
    assert!(unwinding.join().unwrap_err().is_killed());
    assert!(second.join().unwrap_err().is_killed());
}

#[test]
fn kill_timeout_is_false_while_a_slow_destructor_runs() {
    let drops = counter();
    let d = drops.clone();
    let g = green::spawn(move || {
        let _slow = OnDrop(move || {
            green::sleep(ms(200));
            bump(&d);
        });
        green::sleep(Duration::from_secs(10));
    });
    green::sleep(ms(1));
    assert!(!g.kill_timeout(ms(10)));
    assert_eq!(drops.get(), 0);
    assert!(g.join().unwrap_err().is_killed());
    assert_eq!(drops.get(), 1);
}

#[test]
fn killall_with_timeout_is_false_while_a_slow_destructor_runs() {
    let slow = green::spawn(|| {
        let _slow = OnDrop(|| green::sleep(ms(200)));
        green::sleep(Duration::from_secs(10));
    });
    let quick = green::spawn(|| green::sleep(Duration::from_secs(10)));
    green::sleep(ms(1));
    let items = [slow.as_ref(), quick.as_ref()];
    assert!(!green::killall(&items, Some(ms(10))));
    assert!(quick.is_ready());
    assert!(green::killall(&items, None));
    assert!(slow.join().unwrap_err().is_killed());
}
