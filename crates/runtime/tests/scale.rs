//! Many greenlets at once: 100,000 concurrent sleepers, fair round-robin of yields, deep join
//! chains, and stack reuse by sequential spawn + join.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

#[test]
fn hundred_thousand_greenlets_sleeping_concurrently_all_finish() {
    const N: usize = 100_000;
    let asleep = Rc::new(Cell::new(0usize));
    let most_asleep = Rc::new(Cell::new(0usize));
    let finished = Rc::new(Cell::new(0usize));
    // Everyone sleeps until one shared instant, which the root keeps pushing back until all have
    // started (however long that takes on a loaded machine).
    let wake_at = Rc::new(Cell::new(Instant::now() + Duration::from_millis(500)));
    let greenlets: Vec<_> = (0..N)
        .map(|_| {
            let (asleep, most, finished, wake_at) = (
                asleep.clone(),
                most_asleep.clone(),
                finished.clone(),
                wake_at.clone(),
            );
            green::spawn(move || {
                asleep.set(asleep.get() + 1);
                most.set(most.get().max(asleep.get()));
                loop {
                    let (until, now) = (wake_at.get(), Instant::now());
                    if now >= until {
                        break;
                    }
                    green::sleep(until - now);
                }
                asleep.set(asleep.get() - 1);
                finished.set(finished.get() + 1);
            })
        })
        .collect();
    while most_asleep.get() < N {
        wake_at.set(Instant::now() + Duration::from_millis(500));
        green::sleep(Duration::from_millis(20));
    }
    for result in green::joinall(greenlets) {
        result.unwrap();
    }
    assert_eq!(finished.get(), N);
    assert_eq!(most_asleep.get(), N);
    assert_eq!(asleep.get(), 0);
    assert_eq!(green::unversioned::timer_count(), 0);
}

#[test]
fn ten_thousand_yielding_greenlets_take_turns_fairly() {
    const N: usize = 10_000;
    const ROUNDS: usize = 5;
    let log = Rc::new(RefCell::new(Vec::with_capacity(N * ROUNDS)));
    let greenlets: Vec<_> = (0..N)
        .map(|i| {
            let log = log.clone();
            green::spawn(move || {
                for round in 0..ROUNDS {
                    log.borrow_mut().push((round, i));
                    green::yield_now();
                }
            })
        })
        .collect();
    green::joinall(greenlets);
    let log = log.borrow();
    let expected: Vec<(usize, usize)> = (0..ROUNDS)
        .flat_map(|round| (0..N).map(move |i| (round, i)))
        .collect();
    assert!(
        *log == expected,
        "yields are not round-robin in spawn order"
    );
}

#[test]
fn a_thousand_deep_chain_of_greenlets_joining_the_next() {
    fn chain(depth: u32) -> u32 {
        if depth == 0 {
            green::sleep(Duration::from_millis(1));
            return 0;
        }
        green::spawn(move || chain(depth - 1)).join().unwrap() + 1
    }
    assert_eq!(green::spawn(|| chain(1_000)).join().unwrap(), 1_000);
}

#[test]
fn sequential_spawn_and_join_reuses_one_pooled_stack() {
    green::spawn(|| ()).join().unwrap();
    let (hot_before, _) = green::stack::pooled_stacks();
    for i in 0..50_000u32 {
        assert_eq!(green::spawn(move || i).join().unwrap(), i);
    }
    let (hot_after, _) = green::stack::pooled_stacks();
    assert_eq!(
        hot_after, hot_before,
        "each finished greenlet returns its stack"
    );
}
