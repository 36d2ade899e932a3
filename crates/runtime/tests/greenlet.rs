//! Greenlet lifecycle: spawn, join, spawn_later, Builder, links, current(), ids, and waiting on many.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use green::{Builder, JoinError};

mod common;
use common::ms;

/// Counts its drops in a shared cell.
struct DropCounter(Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Spawns one greenlet per delay, each sleeping until a shared start instant plus its delay, so
/// their completion order depends only on the delays (not on when each one got to run).
fn sleepers(delays: &[u64]) -> Vec<green::Greenlet<u64>> {
    let base = Instant::now() + ms(30);
    delays
        .iter()
        .map(|&delay| {
            green::spawn(move || {
                green::sleep((base + ms(delay)).saturating_duration_since(Instant::now()));
                delay
            })
        })
        .collect()
}

#[test]
fn join_returns_the_greenlets_value() {
    let g = green::spawn(|| 6 * 7);
    assert_eq!(g.join().unwrap(), 42);
}

#[test]
fn spawned_greenlet_runs_only_when_the_caller_blocks() {
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    let g = green::spawn(move || r.set(r.get() + 1));
    assert_eq!(runs.get(), 0, "spawn must not run the greenlet");
    assert!(!g.is_started());
    g.join().unwrap();
    assert_eq!(runs.get(), 1);
}

#[test]
fn closure_and_its_captures_are_dropped_exactly_once() {
    let drops = Rc::new(Cell::new(0));
    let counter = DropCounter(drops.clone());
    let g = green::spawn(move || {
        let _keep = &counter;
        green::yield_now();
    });
    g.join().unwrap();
    assert_eq!(drops.get(), 1);
}

#[test]
fn yield_now_interleaves_two_greenlets_1a_2a_1b_2b() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let greenlets: Vec<_> = (1..=2)
        .map(|i| {
            let log = log.clone();
            green::spawn(move || {
                log.borrow_mut().push(format!("{i}A"));
                green::yield_now();
                log.borrow_mut().push(format!("{i}B"));
            })
        })
        .collect();
    for result in green::joinall(greenlets) {
        result.unwrap();
    }
    assert_eq!(*log.borrow(), ["1A", "2A", "1B", "2B"]);
}

#[test]
fn root_yield_runs_each_ready_greenlet_once_even_when_they_yield_again() {
    let runs = Rc::new(RefCell::new(Vec::new()));
    let greenlets: Vec<_> = (0..3)
        .map(|i| {
            let runs = runs.clone();
            green::spawn(move || {
                for _ in 0..3 {
                    runs.borrow_mut().push(i);
                    green::yield_now();
                }
            })
        })
        .collect();
    green::yield_now();
    assert_eq!(*runs.borrow(), [0, 1, 2]);
    assert_eq!(green::unversioned::ready_count(), 3);
    green::yield_now();
    assert_eq!(*runs.borrow(), [0, 1, 2, 0, 1, 2]);
    for result in green::joinall(greenlets) {
        result.unwrap();
    }
    assert_eq!(runs.borrow().len(), 9);
    assert_eq!(green::unversioned::ready_count(), 0);
}

#[test]
fn sleeping_greenlets_wake_in_deadline_order() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let base = Instant::now() + ms(30);
    let greenlets: Vec<_> = [60, 0, 30]
        .into_iter()
        .map(|delay| {
            let log = log.clone();
            green::spawn(move || {
                green::sleep((base + ms(delay)).saturating_duration_since(Instant::now()));
                log.borrow_mut().push(delay);
            })
        })
        .collect();
    green::joinall(greenlets);
    assert_eq!(*log.borrow(), [0, 30, 60]);
}

#[test]
fn spawn_later_does_not_start_before_its_delay() {
    let start = Instant::now();
    let g = green::spawn_later(ms(100), move || start.elapsed());
    green::yield_now();
    assert!(!g.is_started(), "started before its delay");
    let started_after = g.join().unwrap();
    assert!(started_after >= ms(100), "started after {started_after:?}");
}

#[test]
fn builder_names_the_greenlet_for_handle_and_current() {
    let g = Builder::new()
        .name("worker-7")
        .spawn(|| green::current().name());
    assert_eq!(g.name(), "worker-7");
    assert_eq!(g.join().unwrap(), "worker-7");
}

#[test]
fn builder_spawn_later_keeps_the_name() {
    let g = Builder::new()
        .name("late")
        .spawn_later(ms(5), || green::current().name());
    assert_eq!(g.join().unwrap(), "late");
}

#[test]
fn unnamed_greenlet_is_called_greenlet_dash_id() {
    let g = green::spawn(|| ());
    assert_eq!(g.name(), format!("Greenlet-{}", g.id()));
}

#[test]
fn builder_stack_size_gives_room_for_deep_recursion() {
    fn depth(n: u32) -> u32 {
        let pad = std::hint::black_box([0u8; 512]);
        if n == 0 {
            u32::from(pad[0])
        } else {
            1 + depth(n - 1) + u32::from(std::hint::black_box(pad)[511])
        }
    }
    // ~2,000 frames of > 512 bytes: well past the default 256 KiB, well inside 8 MiB.
    let g = Builder::new()
        .stack_size(8 * 1024 * 1024)
        .spawn(|| depth(2_000));
    assert_eq!(g.join().unwrap(), 2_000);
}

#[test]
fn links_run_in_the_order_added() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let g = green::spawn(|| green::sleep(ms(5)));
    for i in 1..=3 {
        let log = log.clone();
        g.link(move |_| log.borrow_mut().push(i));
    }
    assert!(
        log.borrow().is_empty(),
        "links ran before the greenlet ended"
    );
    g.join().unwrap();
    // Each link runs in a greenlet of its own, started as `g` ends.
    green::yield_now();
    assert_eq!(*log.borrow(), [1, 2, 3]);
}

#[test]
fn link_added_after_death_is_started_at_once_after_the_earlier_ones() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let g = green::spawn(|| ());
    let early = log.clone();
    g.link(move |_| early.borrow_mut().push("early"));
    let handle = g.as_ref();
    g.join().unwrap();
    green::yield_now();
    assert_eq!(*log.borrow(), ["early"]);
    let late = log.clone();
    handle.link(move |_| late.borrow_mut().push("late"));
    green::yield_now();
    assert_eq!(*log.borrow(), ["early", "late"]);
}

#[test]
fn links_run_for_killed_and_panicked_greenlets_and_see_them_ready() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let killed = green::spawn(|| green::sleep(Duration::from_secs(10)));
    let panicked = green::spawn(|| -> () { panic!("link test panic") });
    for (label, handle) in [("killed", killed.as_ref()), ("panicked", panicked.as_ref())] {
        let seen = seen.clone();
        let me = handle.clone();
        handle.link(move |_| seen.borrow_mut().push((label, me.is_ready())));
    }
    green::yield_now();
    killed.kill();
    assert!(killed.join().unwrap_err().is_killed());
    assert!(panicked.join().unwrap_err().is_panic());
    green::yield_now();
    let mut seen = seen.borrow().clone();
    seen.sort();
    assert_eq!(seen, [("killed", true), ("panicked", true)]);
}

#[test]
fn current_outside_any_greenlet_is_the_threads_root() {
    let root = green::current();
    assert!(root.is_root());
    assert!(root.name().contains("root of thread"), "{}", root.name());
    assert_eq!(green::current(), root, "the root context is stable");
}

#[test]
fn current_inside_a_greenlet_is_that_greenlet() {
    let g = green::spawn(|| {
        let me = green::current();
        (me.id(), me.is_root())
    });
    let id = g.id();
    assert_eq!(g.join().unwrap(), (id, false));
}

#[test]
fn ids_are_unique_and_match_their_refs() {
    let greenlets: Vec<_> = (0..100).map(|_| green::spawn(|| ())).collect();
    let mut ids: Vec<u64> = greenlets.iter().map(|g| g.id()).collect();
    for g in &greenlets {
        assert_eq!(g.id(), g.as_ref().id());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 100);
    assert!(!ids.contains(&green::current().id()));
    green::joinall(greenlets);
}

#[test]
fn is_ready_turns_true_only_when_the_greenlet_ends() {
    let g = green::spawn(|| green::sleep(ms(20)));
    assert!(!g.is_ready() && !g.is_started());
    green::yield_now();
    assert!(
        g.is_started(),
        "yield_now from the root runs ready greenlets"
    );
    assert!(!g.is_ready(), "it is asleep, not finished");
    assert!(g.wait(None).unwrap());
    assert!(g.is_ready());
    g.join().unwrap();
}

#[test]
fn join_timeout_gives_none_while_running_then_the_result_once() {
    let g = green::spawn(|| {
        green::sleep(ms(50));
        "done"
    });
    assert!(g.join_timeout(ms(1)).is_none());
    assert_eq!(
        g.join_timeout(Duration::from_secs(10)).unwrap().unwrap(),
        "done"
    );
    assert!(matches!(g.join(), Err(JoinError::AlreadyJoined)));
}

#[test]
fn greenlets_spawn_and_join_greenlets() {
    let outer = green::spawn(|| {
        let inner: Vec<_> = (0..10)
            .map(|i| green::spawn(move || green::spawn(move || i * 2).join().unwrap()))
            .collect();
        green::joinall(inner)
            .into_iter()
            .map(Result::unwrap)
            .sum::<i32>()
    });
    assert_eq!(outer.join().unwrap(), 90);
}

#[test]
fn plain_thread_runs_green_code_with_its_own_hub() {
    let main_root = green::current().id();
    let thread = std::thread::spawn(|| {
        let root = green::current().id();
        let g = green::spawn(|| {
            green::sleep(ms(5));
            7
        });
        (root, g.join().unwrap())
    });
    let (thread_root, value) = thread.join().unwrap();
    assert_eq!(value, 7);
    assert_ne!(thread_root, main_root);
}

#[test]
fn joinall_returns_results_in_input_order() {
    let results: Vec<u64> = green::joinall(sleepers(&[60, 0, 30]))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(results, [60, 0, 30]);
}

#[test]
fn joinall_reports_each_failure_at_its_position() {
    let ok = green::spawn(|| 1);
    let panics = green::spawn(|| -> i32 { panic!("second fails") });
    let killed = green::spawn(|| {
        green::sleep(Duration::from_secs(10));
        3
    });
    killed.kill_nowait();
    let results = green::joinall([ok, panics, killed]);
    assert_eq!(*results[0].as_ref().unwrap(), 1);
    assert_eq!(
        results[1].as_ref().unwrap_err().panic_message(),
        Some("second fails")
    );
    assert!(results[2].as_ref().unwrap_err().is_killed());
}

#[test]
fn joinall_timeout_returns_only_the_finished_ones() {
    let runs = Rc::new(Cell::new(0));
    let greenlets: Vec<_> = [10u64, 10_000, 20]
        .into_iter()
        .map(|delay| {
            let runs = runs.clone();
            green::spawn(move || {
                green::sleep(ms(delay));
                runs.set(runs.get() + 1);
                delay
            })
        })
        .collect();
    let (finished, running) = green::joinall_timeout(greenlets, ms(200));
    let finished: Vec<u64> = finished.into_iter().map(|g| g.join().unwrap()).collect();
    assert_eq!(finished, [10, 20]);
    assert_eq!(running.len(), 1);
    assert!(!running[0].is_ready());
    assert_eq!(runs.get(), 2);
    assert!(green::killall(&running, None));
}

#[test]
fn wait_returns_indices_in_completion_order_up_to_count() {
    let greenlets = sleepers(&[60, 0, 30]);
    assert_eq!(green::wait(&greenlets, None, Some(2)), [1, 2]);
    // The two already finished come first (their links run at once), then the last.
    assert_eq!(green::wait(&greenlets, None, None), [1, 2, 0]);
}

#[test]
fn iwait_yields_greenlets_in_completion_order() {
    let greenlets = sleepers(&[90, 30, 60, 0]);
    let order: Vec<usize> = green::iwait(&greenlets, None).collect();
    assert_eq!(order, [3, 1, 2, 0]);
}

#[test]
fn iwait_with_timeout_yields_only_the_finished_subset() {
    let greenlets: Vec<_> = [10_000u64, 10]
        .into_iter()
        .map(|delay| green::spawn(move || green::sleep(ms(delay))))
        .collect();
    let order: Vec<usize> = green::iwait(&greenlets, Some(ms(200))).collect();
    assert_eq!(order, [1]);
    assert!(green::killall(&greenlets, None));
}

#[test]
fn killall_kills_every_greenlet_and_runs_each_destructor_once() {
    let drops = Rc::new(Cell::new(0));
    let after_sleep = Rc::new(Cell::new(0));
    let sleeper = |drops: &Rc<Cell<usize>>, after_sleep: &Rc<Cell<usize>>| {
        let counter = DropCounter(drops.clone());
        let after_sleep = after_sleep.clone();
        green::spawn(move || {
            let _counter = counter;
            green::sleep(Duration::from_secs(10));
            after_sleep.set(after_sleep.get() + 1);
        })
    };
    let mut greenlets: Vec<_> = (0..3).map(|_| sleeper(&drops, &after_sleep)).collect();
    green::sleep(ms(1));
    assert!(greenlets.iter().all(|g| g.is_started()));
    // Two more that are killed before they ever run.
    greenlets.extend((0..2).map(|_| sleeper(&drops, &after_sleep)));
    assert!(green::killall(&greenlets, Some(Duration::from_secs(5))));
    assert_eq!(drops.get(), 5);
    assert_eq!(after_sleep.get(), 0);
    for result in green::joinall(greenlets) {
        assert!(result.unwrap_err().is_killed());
    }
}

/// Regression: `yield_now` from a root context used to poll with the next timer's deadline as its
/// timeout, so with nothing ready it slept until that timer (here 10 s) instead of returning.
#[test]
fn root_yield_now_does_not_wait_for_the_next_timer() {
    let sleeper = green::spawn(|| green::sleep(Duration::from_secs(10)));
    let start = Instant::now();
    green::yield_now();
    assert!(sleeper.is_started());
    green::yield_now();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    sleeper.kill();
}

/// Counts drops of a payload of `N` bytes aligned like `A`.
struct CountedBytes<const N: usize, A> {
    bytes: [u8; N],
    _align: [A; 0],
    drops: Rc<Cell<usize>>,
}

impl<const N: usize, A> Drop for CountedBytes<N, A> {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

fn spawn_sized<const N: usize, A: 'static>(
    drops: &Rc<Cell<usize>>,
    fill: u8,
) -> green::Greenlet<usize> {
    let payload = CountedBytes::<N, A> {
        bytes: [fill; N],
        _align: [],
        drops: drops.clone(),
    };
    green::spawn(move || payload.bytes.iter().map(|&b| b as usize).sum())
}

#[test]
fn greenlet_records_of_every_size_and_alignment_are_reused_without_mixing_payloads() {
    #[repr(align(64))]
    struct Wide;
    let drops = Rc::new(Cell::new(0));
    // Records freed by one round are reused by the next (small sizes), or go back to the
    // allocator (large or over-aligned ones); every payload must come back intact.
    for round in 0..3u8 {
        let fill = round + 1;
        let greenlets = vec![
            (spawn_sized::<1, u8>(&drops, fill), fill as usize),
            (spawn_sized::<40, u64>(&drops, fill), 40 * fill as usize),
            (spawn_sized::<200, u16>(&drops, fill), 200 * fill as usize),
            (spawn_sized::<300, u32>(&drops, fill), 300 * fill as usize),
            (spawn_sized::<4000, u8>(&drops, fill), 4000 * fill as usize),
            (spawn_sized::<8, Wide>(&drops, fill), 8 * fill as usize),
        ];
        for (greenlet, expected) in greenlets {
            assert_eq!(greenlet.join().unwrap(), expected);
        }
        assert_eq!(drops.get(), 6 * (round as usize + 1));
    }
    // Many at once, then freed, then many again (the kept records are reused for a burst).
    for _ in 0..2 {
        let burst: Vec<_> = (0..10_000)
            .map(|i: usize| green::spawn(move || i * 2))
            .collect();
        let sum: usize = green::joinall(burst).into_iter().map(Result::unwrap).sum();
        assert_eq!(sum, (0..10_000usize).map(|i| i * 2).sum::<usize>());
    }
    // An idle hub (a real wait) gives kept records back; everything still works after.
    green::sleep(ms(5));
    assert_eq!(green::spawn(|| 7).join().unwrap(), 7);
}
