//! `Pool` and `Group`: capacity, joining, killing, and map/imap/imap_unordered.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use green::{Group, JoinError, Pool, PoolFull};

mod common;
use common::ms;

/// Counts how many of its holders run at once and the most that ever did.
#[derive(Clone, Default)]
struct Concurrency {
    now: Rc<Cell<usize>>,
    max: Rc<Cell<usize>>,
}

impl Concurrency {
    fn enter(&self) -> ConcurrencyGuard {
        self.now.set(self.now.get() + 1);
        self.max.set(self.max.get().max(self.now.get()));
        ConcurrencyGuard {
            now: self.now.clone(),
        }
    }
}

struct ConcurrencyGuard {
    now: Rc<Cell<usize>>,
}

impl Drop for ConcurrencyGuard {
    fn drop(&mut self) {
        self.now.set(self.now.get() - 1);
    }
}

/// A flag a greenlet waits on with [`wait_for`], so tests order events without timing.
fn gate() -> Rc<Cell<bool>> {
    Rc::new(Cell::new(false))
}

fn wait_for(gate: &Cell<bool>) {
    while !gate.get() {
        green::sleep(ms(1));
    }
}

/// Counts its drops.
struct DropCounter(Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn pool_of_one_spawn_blocks_until_the_first_finishes() {
    let pool = Pool::new(1);
    let log = Rc::new(RefCell::new(Vec::new()));
    let first = {
        let log = log.clone();
        pool.spawn(move || {
            log.borrow_mut().push("first starts");
            green::sleep(ms(20));
            log.borrow_mut().push("first ends");
        })
    };
    log.borrow_mut().push("spawning second");
    let second = {
        let log = log.clone();
        pool.spawn(move || log.borrow_mut().push("second runs"))
    };
    log.borrow_mut().push("second spawned");
    assert!(
        first.is_ready(),
        "spawn returned before the first member ended"
    );
    second.join().unwrap();
    assert_eq!(
        *log.borrow(),
        [
            "spawning second",
            "first starts",
            "first ends",
            "second spawned",
            "second runs"
        ]
    );
}

#[test]
fn pool_imap_keeps_input_order_and_never_runs_more_than_size() {
    let pool = Pool::new(3);
    let concurrency = Concurrency::default();
    let runs = Rc::new(Cell::new(0));
    let results: Vec<u64> = {
        let concurrency = concurrency.clone();
        let runs = runs.clone();
        pool.imap(0..20u64, move |n| {
            let _inside = concurrency.enter();
            runs.set(runs.get() + 1);
            // Later items finish sooner, so completion order differs from input order.
            green::sleep(ms(1 + (20 - n) % 7));
            n * 10
        })
        .map(Result::unwrap)
        .collect()
    };
    assert_eq!(results, (0..20).map(|n| n * 10).collect::<Vec<_>>());
    assert_eq!(runs.get(), 20);
    assert_eq!(concurrency.max.get(), 3);
    assert!(pool.is_empty());
}

#[test]
fn imap_unordered_yields_in_completion_order() {
    let pool = Pool::new(3);
    let order: Vec<u64> = pool
        .imap_unordered([10u64, 1, 2], |units| {
            green::sleep(ms(10 * units));
            units
        })
        .map(Result::unwrap)
        .collect();
    assert_eq!(order, [1, 2, 10]);
}

#[test]
fn imap_panic_comes_back_at_its_position_and_the_rest_still_run() {
    let pool = Pool::new(2);
    let runs = Rc::new(Cell::new(0));
    let results: Vec<Result<u32, JoinError>> = {
        let runs = runs.clone();
        pool.imap(0..6u32, move |n| {
            runs.set(runs.get() + 1);
            green::yield_now();
            if n == 2 {
                panic!("item two fails");
            }
            n
        })
        .collect()
    };
    assert_eq!(runs.get(), 6);
    assert_eq!(results.len(), 6);
    for (index, result) in results.iter().enumerate() {
        match result {
            Err(error) if index == 2 => {
                assert_eq!(error.panic_message(), Some("item two fails"))
            }
            Ok(value) => assert_eq!(*value as usize, index),
            Err(error) => panic!("item {index} failed: {error}"),
        }
    }
}

#[test]
fn pool_kill_kills_every_member_and_runs_destructors_once() {
    let pool = Pool::new(3);
    let drops = Rc::new(Cell::new(0));
    let after_sleep = Rc::new(Cell::new(0));
    let greenlets: Vec<_> = (0..3)
        .map(|_| {
            let guard = DropCounter(drops.clone());
            let after_sleep = after_sleep.clone();
            pool.spawn(move || {
                let _guard = guard;
                green::sleep(Duration::from_secs(10));
                after_sleep.set(after_sleep.get() + 1);
            })
        })
        .collect();
    green::sleep(ms(1));
    assert!(greenlets.iter().all(|g| g.is_started()));
    assert_eq!(pool.free_count(), 0);
    pool.kill();
    assert_eq!(drops.get(), 3);
    assert_eq!(after_sleep.get(), 0);
    assert!(pool.is_empty());
    assert_eq!(pool.free_count(), 3);
    for greenlet in greenlets {
        assert!(greenlet.join().unwrap_err().is_killed());
    }
    assert_eq!(drops.get(), 3);
}

#[test]
fn group_kill_before_start_means_members_never_run() {
    let group = Group::new();
    let runs = Rc::new(Cell::new(0));
    let drops = Rc::new(Cell::new(0));
    let greenlets: Vec<_> = (0..4)
        .map(|_| {
            let runs = runs.clone();
            let guard = DropCounter(drops.clone());
            group.spawn(move || {
                let _guard = guard;
                runs.set(runs.get() + 1);
            })
        })
        .collect();
    assert_eq!(group.len(), 4);
    group.kill();
    assert!(group.is_empty());
    assert_eq!(runs.get(), 0);
    assert_eq!(drops.get(), 4);
    for greenlet in greenlets {
        assert!(greenlet.join().unwrap_err().is_killed());
    }
}

#[test]
fn free_count_and_wait_available_follow_the_members() {
    let pool = Pool::new(2);
    assert_eq!(pool.size(), 2);
    assert_eq!(pool.free_count(), 2);
    assert!(pool.wait_available(None));
    let (open_a, open_b) = (gate(), gate());
    let a = {
        let open_a = open_a.clone();
        pool.spawn(move || wait_for(&open_a))
    };
    assert_eq!(pool.free_count(), 1);
    let b = {
        let open_b = open_b.clone();
        pool.spawn(move || wait_for(&open_b))
    };
    assert_eq!(pool.free_count(), 0);
    assert!(pool.is_full());
    assert!(!pool.wait_available(Some(ms(5))), "no member can end yet");
    open_a.set(true);
    assert!(pool.wait_available(Some(Duration::from_secs(5))));
    assert!(a.is_ready());
    assert!(!b.is_ready());
    assert_eq!(pool.free_count(), 1);
    assert_eq!(pool.len(), 1);
    open_b.set(true);
    b.join().unwrap();
    assert_eq!(pool.free_count(), 2);
}

#[test]
fn wait_available_does_not_take_the_slot_from_a_waiting_spawner() {
    let pool = Pool::new(1);
    let busy = pool.spawn(|| green::sleep(ms(10)));
    let watchers: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            green::spawn(move || pool.wait_available(None))
        })
        .collect();
    let spawner = {
        let pool = pool.clone();
        green::spawn(move || pool.spawn(|| 7).join().unwrap())
    };
    for watcher in watchers {
        assert!(watcher.join().unwrap());
    }
    assert_eq!(spawner.join().unwrap(), 7);
    assert!(busy.is_ready());
}

#[test]
fn a_spawner_killed_after_being_handed_a_slot_passes_it_on() {
    let pool = Pool::new(1);
    let busy = pool.spawn(|| green::sleep(ms(10)));
    let first_ran = Rc::new(Cell::new(false));
    let first = {
        let pool = pool.clone();
        let first_ran = first_ran.clone();
        green::spawn(move || pool.spawn(move || first_ran.set(true)))
    };
    let second = {
        let pool = pool.clone();
        green::spawn(move || pool.spawn(|| 2).join().unwrap())
    };
    green::sleep(ms(1));
    assert_eq!(pool.len(), 1, "both spawners wait for the busy member");
    // Runs right after the pool hands the freed slot to `first`, before `first` resumes.
    let first_ref = first.as_ref();
    busy.rawlink(move |_| first_ref.kill_nowait());
    assert!(first.join().unwrap_err().is_killed());
    assert_eq!(second.join().unwrap(), 2);
    assert!(!first_ran.get());
    assert!(pool.is_empty());
}

#[test]
fn join_timeout_is_false_until_every_member_ends() {
    let group = Group::new();
    let open = gate();
    let ends = Rc::new(Cell::new(0));
    let quick = {
        let ends = ends.clone();
        group.spawn(move || ends.set(ends.get() + 1))
    };
    {
        let ends = ends.clone();
        let open = open.clone();
        group.spawn(move || {
            wait_for(&open);
            ends.set(ends.get() + 1);
        });
    }
    quick.wait(None).unwrap();
    assert!(!group.join_timeout(ms(10)));
    assert_eq!(ends.get(), 1);
    assert_eq!(group.len(), 1);
    open.set(true);
    assert!(group.join_timeout(Duration::from_secs(5)));
    assert_eq!(ends.get(), 2);
    assert!(group.is_empty());
    group.join().unwrap();
}

#[test]
fn group_add_and_discard_track_existing_greenlets() {
    let group = Group::new();
    let open = gate();
    let waiting = {
        let open = open.clone();
        green::spawn(move || {
            wait_for(&open);
            5
        })
    };
    let sleeper = green::spawn(|| green::sleep(Duration::from_secs(10)));
    group.add(&waiting);
    group.add(&sleeper);
    group.add(&waiting);
    assert_eq!(group.len(), 2);
    assert!(group.contains(&sleeper));
    group.discard(&sleeper);
    assert!(!group.contains(&sleeper));
    assert_eq!(group.len(), 1);
    open.set(true);
    group.join().unwrap();
    assert!(waiting.is_ready());
    assert!(!sleeper.is_ready(), "a discarded greenlet is not joined");
    group.kill();
    assert!(!sleeper.is_ready(), "a discarded greenlet is not killed");
    sleeper.kill();
    let finished = green::spawn(|| ());
    finished.wait(None).unwrap();
    group.add(&finished);
    assert!(group.is_empty(), "a finished greenlet is never a member");
    assert_eq!(waiting.join().unwrap(), 5);
}

#[test]
fn map_returns_results_in_input_order_and_nothing_for_empty_input() {
    let pool = Pool::new(2);
    let empty: Vec<Result<u8, JoinError>> = pool.map(Vec::<u8>::new(), |n| n);
    assert!(empty.is_empty());
    let group = Group::new();
    assert!(group.map(std::iter::empty::<u8>(), |n| n).is_empty());
    let doubled: Vec<u32> = pool
        .map([3u32, 1, 2], |n| {
            green::sleep(ms(u64::from(n)));
            n * 2
        })
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(doubled, [6, 2, 4]);
    let unordered: Vec<u32> = group
        .imap_unordered([3u32, 1, 2], |n| {
            green::sleep(ms(5 * u64::from(n)));
            n
        })
        .map(Result::unwrap)
        .collect();
    assert_eq!(unordered, [1, 2, 3]);
}

#[test]
fn imap_pulls_items_lazily_and_buffers_at_most_size_results() {
    let size = 2;
    let pool = Pool::new(size);
    let pulled = Rc::new(Cell::new(0));
    let started = Rc::new(Cell::new(0));
    let started_when_first_ended = Rc::new(Cell::new(0));
    let items = {
        let pulled = pulled.clone();
        (0..50u32).inspect(move |_| pulled.set(pulled.get() + 1))
    };
    let mut results = {
        let started = started.clone();
        let seen = started_when_first_ended.clone();
        pool.imap(items, move |n| {
            started.set(started.get() + 1);
            if n == 0 {
                // The slow head: everything behind it finishes at once and must wait.
                green::sleep(ms(30));
                seen.set(started.get());
            }
            n
        })
    };
    assert_eq!(pulled.get(), 0, "imap pulls nothing before iteration");
    assert_eq!(results.next().unwrap().unwrap(), 0);
    assert!(
        started_when_first_ended.get() <= 2 * size,
        "{} items ran behind the slow head",
        started_when_first_ended.get()
    );
    assert!(
        pulled.get() <= 2 * size + 1,
        "pulled {} items",
        pulled.get()
    );
    let rest: Vec<u32> = results.map(Result::unwrap).collect();
    assert_eq!(rest, (1..50).collect::<Vec<_>>());
    assert_eq!(pulled.get(), 50);
    assert_eq!(started.get(), 50);
}

#[test]
fn pool_works_from_the_main_thread_and_inside_a_greenlet() {
    let pool = Pool::new(2);
    let concurrency = Concurrency::default();
    let job = {
        let concurrency = concurrency.clone();
        move |n: u32| {
            let _inside = concurrency.enter();
            green::sleep(ms(2));
            n + 1
        }
    };
    let from_main: Vec<u32> = pool
        .map(0..5u32, job.clone())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let inside = {
        let pool = pool.clone();
        green::spawn(move || {
            let spawned: Vec<_> = (0..5u32)
                .map(|n| {
                    let job = job.clone();
                    pool.spawn(move || job(n))
                })
                .collect();
            let mapped: Vec<u32> = pool.imap(0..5u32, job).map(Result::unwrap).collect();
            let joined: Vec<u32> = green::joinall(spawned)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            (joined, mapped)
        })
    };
    let (joined, mapped) = inside.join().unwrap();
    assert_eq!(from_main, [1, 2, 3, 4, 5]);
    assert_eq!(joined, [1, 2, 3, 4, 5]);
    assert_eq!(mapped, [1, 2, 3, 4, 5]);
    assert_eq!(concurrency.max.get(), 2);
    assert!(pool.is_empty());
}

#[test]
fn group_spawn_never_blocks_and_join_waits_for_all() {
    let group = Group::new();
    let concurrency = Concurrency::default();
    for _ in 0..50 {
        let concurrency = concurrency.clone();
        group.spawn(move || {
            let _inside = concurrency.enter();
            green::sleep(ms(5));
        });
    }
    assert_eq!(group.len(), 50);
    assert_eq!(concurrency.max.get(), 0, "spawn never ran a member");
    group.join().unwrap();
    assert_eq!(concurrency.max.get(), 50);
    assert!(group.is_empty());
}

#[test]
fn join_from_a_member_waits_for_the_others() {
    let group = Group::new();
    let other = group.spawn(|| green::sleep(ms(10)));
    let inner_group = group.clone();
    let member = group.spawn(move || {
        inner_group.join().unwrap();
        inner_group.len()
    });
    assert_eq!(
        member.join().unwrap(),
        1,
        "the joining member is still a member"
    );
    assert!(other.is_ready());
}

#[test]
fn imap_items_killed_with_the_pool_come_back_as_killed() {
    let pool = Pool::new(2);
    let mut results = pool.imap(0..4u32, |n| {
        if n == 0 {
            green::sleep(Duration::from_secs(10));
        }
        n
    });
    let killer = {
        let pool = pool.clone();
        green::spawn(move || {
            green::sleep(ms(5));
            pool.kill();
        })
    };
    assert!(results.next().unwrap().unwrap_err().is_killed());
    // `kill` also kills members added until it returns: let it return before pulling more.
    killer.join().unwrap();
    let rest: Vec<u32> = results.map(Result::unwrap).collect();
    assert_eq!(rest, [1, 2, 3]);
}

#[test]
fn imap_that_can_never_finish_reports_the_deadlock_once() {
    let pool = Pool::new(1);
    let mut results = pool.imap([()], |()| {
        let _waiter = green::unversioned::current_waiter();
        let _ = green::unversioned::park();
    });
    let error = results.next().unwrap().unwrap_err();
    assert!(matches!(error, JoinError::LoopExit(_)), "{error}");
    assert!(results.next().is_none());
}

#[test]
fn imap_with_a_full_buffer_passes_a_freed_slot_to_another_spawner() {
    let pool = Pool::new(2);
    let open = gate();
    let spawner_done = gate();
    // Queued for a slot right behind the imap consumer.
    let spawner = {
        let pool = pool.clone();
        let spawner_done = spawner_done.clone();
        green::spawn(move || {
            pool.spawn(|| ()).join().unwrap();
            spawner_done.set(true);
        })
    };
    // Opens the slow head's gate once the spawner got its slot (or gives up after ~1 s).
    let opener = {
        let open = open.clone();
        let spawner_done = spawner_done.clone();
        green::spawn(move || {
            for _ in 0..1000 {
                if spawner_done.get() {
                    break;
                }
                green::sleep(ms(1));
            }
            let done_while_head_blocked = spawner_done.get();
            open.set(true);
            done_while_head_blocked
        })
    };
    let results: Vec<u32> = {
        let open = open.clone();
        pool.imap(0..5u32, move |n| {
            if n == 0 {
                wait_for(&open);
            }
            n
        })
        .map(Result::unwrap)
        .collect()
    };
    assert_eq!(results, [0, 1, 2, 3, 4]);
    assert!(
        opener.join().unwrap(),
        "the spawner waited for the slow head although the imap could not use the free slot"
    );
    spawner.join().unwrap();
}

#[test]
fn pool_apply_runs_in_a_member_and_returns_the_value() {
    let pool = Pool::new(2);
    let member = pool.apply({
        let pool = pool.clone();
        move || pool.contains(&green::current())
    });
    assert!(member.unwrap(), "f ran in a member greenlet");
    assert!(pool.is_empty());
    let panicked = pool.apply(|| -> u32 { panic!("apply failed") });
    assert_eq!(panicked.unwrap_err().panic_message(), Some("apply failed"));
}

#[test]
fn pool_apply_from_a_member_runs_inline_even_when_the_pool_is_full() {
    let pool = Pool::new(1);
    let outer = pool.spawn({
        let pool = pool.clone();
        move || {
            let me = green::current();
            // The only slot is the caller's: a spawn would wait for itself for ever.
            pool.apply(move || green::current() == me).unwrap()
        }
    });
    assert!(
        outer.join().unwrap(),
        "apply ran inline in the calling member"
    );
}

#[test]
fn pool_apply_async_never_blocks_and_runs_when_a_slot_frees() {
    let pool = Pool::new(1);
    let open = gate();
    let first = pool.spawn({
        let open = open.clone();
        move || wait_for(&open)
    });
    let concurrency = Concurrency::default();
    let queued: Vec<_> = (0..3)
        .map(|i| {
            let concurrency = concurrency.clone();
            let pool_seen = pool.clone();
            pool.apply_async(move || {
                let _running = concurrency.enter();
                green::sleep(ms(2));
                (i, pool_seen.len())
            })
        })
        .collect();
    assert_eq!(pool.len(), 1, "apply_async returned without taking a slot");
    green::sleep(ms(10));
    assert!(
        queued.iter().all(|g| !g.is_ready()),
        "nothing runs while the pool is full"
    );
    open.set(true);
    first.join().unwrap();
    let results: Vec<_> = queued.into_iter().map(|g| g.join().unwrap()).collect();
    assert_eq!(
        results,
        [(0, 1), (1, 1), (2, 1)],
        "in turn, each as the only member"
    );
    assert_eq!(concurrency.max.get(), 1);
    // With a free slot it is a plain spawn into the pool.
    let member = pool.apply_async(|| ());
    assert!(pool.contains(&member));
    member.join().unwrap();
}

#[test]
fn pool_apply_async_killed_while_queued_passes_its_turn_on() {
    let pool = Pool::new(1);
    let open = gate();
    let first = pool.spawn({
        let open = open.clone();
        move || wait_for(&open)
    });
    let ran = gate();
    let killed = pool.apply_async({
        let ran = ran.clone();
        move || ran.set(true)
    });
    let next = pool.apply_async(|| 5);
    green::yield_now();
    killed.kill();
    open.set(true);
    first.join().unwrap();
    assert_eq!(next.join().unwrap(), 5);
    assert!(killed.join().unwrap_err().is_killed());
    assert!(!ran.get());
}

#[test]
fn pool_try_spawn_and_try_add_fail_with_pool_full() {
    let pool = Pool::new(1);
    let open = gate();
    let first = pool
        .try_spawn({
            let open = open.clone();
            move || wait_for(&open)
        })
        .unwrap();
    assert_eq!(pool.try_spawn(|| ()).unwrap_err(), PoolFull);
    let outsider = green::spawn(|| green::sleep(ms(5)));
    assert_eq!(pool.try_add(&outsider), Err(PoolFull));
    assert!(!pool.contains(&outsider));
    assert_eq!(
        pool.try_add(&first),
        Ok(()),
        "a member already is left alone"
    );
    let error: Box<dyn std::error::Error> = Box::new(PoolFull);
    assert!(error.to_string().contains("full"), "{error}");
    open.set(true);
    first.join().unwrap();
    assert_eq!(pool.try_add(&outsider), Ok(()));
    assert!(pool.contains(&outsider));
    outsider.join().unwrap();
}

#[test]
fn pool_of_size_zero_never_runs_a_member_like_gevent() {
    let pool = Pool::new(0);
    assert_eq!(pool.size(), 0);
    assert_eq!(pool.free_count(), 0);
    assert!(pool.is_full());
    assert_eq!(pool.try_spawn(|| ()).unwrap_err(), PoolFull);
    // Something else alive, so the timed wait is a timeout, not the deadlock.
    let _alive = green::spawn(|| green::sleep(ms(50)));
    assert!(!pool.wait_available(Some(ms(10))));
    let spawner = {
        let pool = pool.clone();
        green::spawn(move || pool.spawn(|| ()))
    };
    let queued = pool.apply_async(|| ());
    green::sleep(ms(20));
    assert!(
        !spawner.is_ready() && !queued.is_ready(),
        "both wait for a slot for ever"
    );
    spawner.kill();
    queued.kill();
    let mut results = pool.imap([1], |n| n);
    let error = results.next().unwrap().unwrap_err();
    assert!(matches!(error, JoinError::LoopExit(_)), "{error}");
}
