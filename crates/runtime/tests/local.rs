//! Greenlet-local storage: one value per greenlet, created on first use, dropped when the
//! greenlet ends (returns, panics or is killed).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use green::Local;

thread_local! {
    static INITS: Cell<usize> = const { Cell::new(0) };
    static DROPS: Cell<usize> = const { Cell::new(0) };
}

/// Counts its creations and drops in this thread's counters.
struct Counted(u32);

impl Drop for Counted {
    fn drop(&mut self) {
        DROPS.with(|d| d.set(d.get() + 1));
    }
}

fn new_counted() -> Counted {
    INITS.with(|i| i.set(i.get() + 1));
    Counted(0)
}

fn inits() -> usize {
    INITS.with(Cell::get)
}

fn drops() -> usize {
    DROPS.with(Cell::get)
}

#[test]
fn local_values_are_per_greenlet() {
    let local = Rc::new(Local::new(|| 0u64));
    let greenlets: Vec<_> = (1..=3u64)
        .map(|i| {
            let local = local.clone();
            green::spawn(move || {
                assert_eq!(local.get(), 0, "each greenlet starts from init");
                local.set(i * 10);
                green::yield_now(); // the others set theirs meanwhile
                green::sleep(Duration::from_millis(1));
                local.get()
            })
        })
        .collect();
    let values: Vec<u64> = green::joinall(greenlets)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(values, [10, 20, 30]);
    assert_eq!(local.get(), 0, "the main thread has its own value");
}

#[test]
fn local_values_are_dropped_when_their_greenlet_ends() {
    let local = Rc::new(Local::new(new_counted));
    let greenlets: Vec<_> = (0..4)
        .map(|i| {
            let local = local.clone();
            green::spawn(move || {
                local.with(|value| value.0 = i);
                green::yield_now();
                assert_eq!(local.with(|value| value.0), i);
            })
        })
        .collect();
    green::yield_now();
    assert_eq!(inits(), 4);
    assert_eq!(drops(), 0, "alive while the greenlets run");
    for result in green::joinall(greenlets) {
        result.unwrap();
    }
    assert_eq!(drops(), 4);
}

#[test]
fn local_value_of_a_killed_greenlet_is_dropped() {
    let local = Rc::new(Local::new(new_counted));
    let victim = {
        let local = local.clone();
        green::spawn(move || {
            local.with(|_| ());
            green::sleep(Duration::from_secs(10));
        })
    };
    green::yield_now();
    assert_eq!((inits(), drops()), (1, 0));
    victim.kill();
    assert!(victim.join().unwrap_err().is_killed());
    assert_eq!(drops(), 1);
}

#[test]
fn local_value_of_a_panicking_greenlet_is_dropped() {
    let local = Rc::new(Local::new(new_counted));
    let panicker = {
        let local = local.clone();
        green::spawn(move || {
            local.with(|_| ());
            panic!("boom");
        })
    };
    assert!(panicker.join().unwrap_err().is_panic());
    assert_eq!((inits(), drops()), (1, 1));
}

#[test]
fn local_is_initialised_lazily_once_per_greenlet() {
    let local = Rc::new(Local::new(new_counted));
    let untouched = green::spawn(green::yield_now);
    let toucher = {
        let local = local.clone();
        green::spawn(move || {
            for _ in 0..3 {
                local.with(|value| value.0 += 1);
            }
            local.with(|value| value.0)
        })
    };
    untouched.join().unwrap();
    assert_eq!(toucher.join().unwrap(), 3);
    assert_eq!((inits(), drops()), (1, 1));
}

#[test]
fn local_set_returns_the_previous_value() {
    let local = Local::new(String::new);
    assert_eq!(local.set("first".to_string()), "");
    assert_eq!(local.set("second".to_string()), "first");
    assert_eq!(local.get(), "second");
}

#[test]
fn separate_locals_do_not_share_values() {
    let a = Local::new(|| 1);
    let b = Local::new(|| 2);
    a.set(10);
    assert_eq!((a.get(), b.get()), (10, 2));
}
