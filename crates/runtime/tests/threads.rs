//! Threads: `spawn_blocking` and its pool, hubs on plain threads, `HubHandle`, cross-thread channels.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use green::xchan::{self, RecvError, RecvTimeoutError, TryRecvError};
use green::{HubGone, HubHandle, JoinError};

/// Counts its drops, from any thread.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A greenlet that increments the counter every `period` until killed.
fn ticker(ticks: Rc<Cell<usize>>, period: Duration) -> green::Greenlet<()> {
    green::spawn(move || loop {
        green::sleep(period);
        ticks.set(ticks.get() + 1);
    })
}

/// Green-sleeps until `done()` or two seconds pass.
fn wait_for(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !done() && Instant::now() < deadline {
        green::sleep(Duration::from_millis(2));
    }
    assert!(done(), "condition not reached within 2 s");
}

#[test]
fn spawn_blocking_leaves_other_greenlets_running() {
    let ticks = Rc::new(Cell::new(0));
    let tick = ticker(ticks.clone(), Duration::from_millis(5));
    let caller = thread::current().id();
    let job = green::spawn_blocking(move || {
        thread::sleep(Duration::from_millis(100));
        thread::current().id() != caller
    });
    assert!(job.join().unwrap(), "the job ran on the caller's thread");
    // 100 ms of std sleep on the pool; the ticker would get 0 ticks if the hub were blocked.
    assert!(ticks.get() >= 3, "only {} ticks", ticks.get());
    tick.kill();
}

#[test]
fn spawn_blocking_runs_the_job_once_and_returns_its_result() {
    let runs = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..10u64)
        .map(|i| {
            let runs = runs.clone();
            green::spawn_blocking(move || {
                runs.fetch_add(1, Ordering::SeqCst);
                i * i
            })
        })
        .collect();
    let results: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results, (0..10).map(|i| i * i).collect::<Vec<_>>());
    assert_eq!(runs.load(Ordering::SeqCst), 10);
}

#[test]
fn spawn_blocking_panic_is_returned_by_join_and_the_pool_survives() {
    let jobs: Vec<_> = (0..2 * green::threadpool::max_threads())
        .map(|_| green::spawn_blocking(|| -> u32 { panic!("job failed") }))
        .collect();
    for job in jobs {
        let err = job.join().unwrap_err();
        assert!(err.is_panic(), "{err:?}");
        assert_eq!(err.panic_message(), Some("job failed"));
    }
    // Every pool thread has seen a panic; they all still take work.
    let ok: Vec<_> = (0..green::threadpool::max_threads())
        .map(|i| green::spawn_blocking(move || i + 1))
        .collect();
    let sum: usize = ok.into_iter().map(|h| h.join().unwrap()).sum();
    let n = green::threadpool::max_threads();
    assert_eq!(sum, n * (n + 1) / 2);
}

#[test]
fn threadpool_never_runs_more_than_max_threads_jobs_at_once() {
    let max = green::threadpool::max_threads();
    assert!(max >= 1);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let jobs: Vec<_> = (0..3 * max)
        .map(|i| {
            let (running, peak) = (running.clone(), peak.clone());
            green::spawn_blocking(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(15));
                running.fetch_sub(1, Ordering::SeqCst);
                i
            })
        })
        .collect();
    assert!(green::threadpool::thread_count() <= max);
    let results: Vec<usize> = jobs.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results, (0..3 * max).collect::<Vec<_>>());
    assert!(
        peak.load(Ordering::SeqCst) <= max,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(green::threadpool::thread_count() <= max);
}

#[test]
fn join_timeout_returns_none_while_running_then_the_value_once() {
    let job = green::spawn_blocking(|| {
        thread::sleep(Duration::from_millis(80));
        7
    });
    let start = Instant::now();
    assert!(job.join_timeout(Duration::from_millis(10)).is_none());
    assert!(start.elapsed() >= Duration::from_millis(10));
    assert!(!job.is_ready());
    assert_eq!(
        job.join_timeout(Duration::from_secs(5)).unwrap().unwrap(),
        7
    );
    assert!(job.is_ready());
    assert!(matches!(
        job.join_timeout(Duration::from_millis(1)),
        Some(Err(JoinError::AlreadyJoined))
    ));
}

#[test]
fn killing_a_greenlet_waiting_on_a_blocking_job_lets_the_job_finish_and_drops_its_result() {
    let runs = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let after_join = Rc::new(Cell::new(false));
    let waiter = {
        let (runs, drops, after_join) = (runs.clone(), drops.clone(), after_join.clone());
        green::spawn(move || {
            let job = green::spawn_blocking(move || {
                thread::sleep(Duration::from_millis(50));
                runs.fetch_add(1, Ordering::SeqCst);
                Counted(drops)
            });
            let _value = job.join();
            after_join.set(true);
        })
    };
    green::sleep(Duration::from_millis(10));
    waiter.kill();
    assert!(waiter.join().unwrap_err().is_killed());
    assert!(!after_join.get());
    wait_for(|| drops.load(Ordering::SeqCst) == 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    green::sleep(Duration::from_millis(5));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn with_timeout_around_a_blocking_join_expires_and_the_handle_stays_usable() {
    let job = green::spawn_blocking(|| {
        thread::sleep(Duration::from_millis(60));
        "done"
    });
    let timed_out = green::with_timeout(Duration::from_millis(10), || {
        job.join_timeout(Duration::from_secs(5))
    });
    assert!(timed_out.is_err());
    assert_eq!(job.join().unwrap(), "done");
}

#[test]
fn blocking_handle_can_be_joined_on_another_thread() {
    let job = green::spawn_blocking(|| {
        thread::sleep(Duration::from_millis(20));
        String::from("moved")
    });
    let joiner = thread::spawn(move || {
        let ticks = Rc::new(Cell::new(0));
        let tick = ticker(ticks.clone(), Duration::from_millis(2));
        let value = job.join().unwrap();
        tick.kill();
        (value, ticks.get())
    });
    let (value, ticks) = joiner.join().unwrap();
    assert_eq!(value, "moved");
    assert!(ticks >= 1);
}

#[test]
fn green_code_runs_in_a_plain_thread_without_setup() {
    let result = thread::spawn(|| {
        let order = Rc::new(std::cell::RefCell::new(Vec::new()));
        let gs: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                green::spawn(move || {
                    green::sleep(Duration::from_millis(ms));
                    order.borrow_mut().push(ms);
                    ms
                })
            })
            .collect();
        let sum: u64 = green::joinall(gs).into_iter().map(Result::unwrap).sum();
        let timed_out = green::with_timeout(Duration::from_millis(10), || {
            green::sleep(Duration::from_secs(10));
        });
        let order = order.borrow().clone();
        (sum, order, timed_out.is_err())
    })
    .join()
    .unwrap();
    assert_eq!(result, (60, vec![10, 20, 30], true));
}

#[test]
fn four_hubs_in_four_threads_run_independently_and_concurrently() {
    const GREENLETS: usize = 1000;
    const NAP: Duration = Duration::from_millis(300);
    let barrier = Arc::new(Barrier::new(4));
    let start = Instant::now();
    let threads: Vec<_> = (0..4usize)
        .map(|t| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let finished = Rc::new(Cell::new(0usize));
                barrier.wait();
                let gs: Vec<_> = (0..GREENLETS)
                    .map(|i| {
                        let finished = finished.clone();
                        green::spawn(move || {
                            green::sleep(NAP);
                            finished.set(finished.get() + 1);
                            t * GREENLETS + i
                        })
                    })
                    .collect();
                let sum: usize = green::joinall(gs).into_iter().map(Result::unwrap).sum();
                (sum, finished.get())
            })
        })
        .collect();
    for (t, handle) in threads.into_iter().enumerate() {
        let (sum, finished) = handle.join().unwrap();
        let expected: usize = (0..GREENLETS).map(|i| t * GREENLETS + i).sum();
        assert_eq!((sum, finished), (expected, GREENLETS));
    }
    // One after the other would take at least 4 × 300 ms.
    let elapsed = start.elapsed();
    assert!(
        elapsed < 4 * NAP - Duration::from_millis(100),
        "took {elapsed:?}"
    );
}

#[test]
fn run_threadsafe_and_spawn_threadsafe_run_on_the_hubs_thread() {
    let hub = HubHandle::current();
    assert!(hub.is_alive());
    let me = thread::current().id();
    let (tx, rx) = xchan::channel();
    let other = thread::spawn(move || {
        let tx1 = tx.clone();
        hub.run_threadsafe(move || {
            tx1.send((
                "callback",
                thread::current().id(),
                green::current().is_root(),
            ))
            .unwrap();
        })
        .unwrap();
        hub.spawn_threadsafe(move || {
            green::sleep(Duration::from_millis(1));
            tx.send((
                "greenlet",
                thread::current().id(),
                green::current().is_root(),
            ))
            .unwrap();
        })
        .unwrap();
    });
    let mut got: Vec<_> = rx.iter().collect();
    other.join().unwrap();
    got.sort_by_key(|(what, _, _)| *what);
    assert_eq!(got, [("callback", me, true), ("greenlet", me, false)]);
}

#[test]
fn hub_handle_to_an_exited_threads_hub_returns_hub_gone() {
    let handle = thread::spawn(HubHandle::current).join().unwrap();
    assert!(!handle.is_alive());
    let ran = Arc::new(AtomicUsize::new(0));
    let ran2 = ran.clone();
    assert_eq!(
        handle.run_threadsafe(move || {
            ran2.fetch_add(1, Ordering::SeqCst);
        }),
        Err(HubGone)
    );
    assert!(matches!(handle.spawn_threadsafe(|| ()), Err(HubGone)));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn xchan_delivers_every_message_from_many_threads() {
    let (tx, rx) = xchan::channel();
    let senders: Vec<_> = (0..8u32)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..100u32 {
                    tx.send(t * 1000 + i).unwrap();
                    if i % 25 == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let mut got: Vec<u32> = rx.iter().collect();
    for s in senders {
        s.join().unwrap();
    }
    got.sort_unstable();
    let expected: Vec<u32> = (0..8u32)
        .flat_map(|t| (0..100).map(move |i| t * 1000 + i))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(rx.recv(), Err(RecvError));
}

#[test]
fn xchan_recv_blocks_only_the_receiving_greenlet() {
    let (tx, rx) = xchan::channel::<&'static str>();
    let ticks = Rc::new(Cell::new(0));
    let tick = ticker(ticks.clone(), Duration::from_millis(5));
    let receiver = {
        let ticks = ticks.clone();
        green::spawn(move || (rx.recv().unwrap(), ticks.get()))
    };
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(60));
        tx.send("hello").unwrap();
    });
    let (message, ticks_seen) = receiver.join().unwrap();
    sender.join().unwrap();
    tick.kill();
    assert_eq!(message, "hello");
    assert!(ticks_seen >= 3, "only {ticks_seen} ticks while receiving");
}

#[test]
fn xchan_dropping_the_last_sender_wakes_the_receiver_with_recv_error() {
    let (tx, rx) = xchan::channel::<u8>();
    let tx2 = tx.clone();
    let receiver = green::spawn(move || {
        let first = rx.recv();
        (first, rx.try_recv())
    });
    let dropper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        drop(tx);
        thread::sleep(Duration::from_millis(20));
        drop(tx2);
    });
    let (first, second) = receiver.join().unwrap();
    dropper.join().unwrap();
    assert_eq!(first, Err(RecvError));
    assert_eq!(second, Err(TryRecvError::Disconnected));
}

#[test]
fn xchan_recv_timeout_times_out_then_receives() {
    let (tx, rx) = xchan::channel();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    let start = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(30)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        tx.send(5).unwrap();
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(5));
    sender.join().unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Err(RecvTimeoutError::Disconnected)
    );
}

#[test]
fn xchan_killed_receiver_does_not_consume_a_later_message() {
    let (tx, rx) = xchan::channel();
    let rx = Rc::new(rx);
    let victim = {
        let rx = rx.clone();
        green::spawn(move || rx.recv())
    };
    green::sleep(Duration::from_millis(5));
    victim.kill();
    assert!(victim.join().unwrap_err().is_killed());
    thread::spawn(move || tx.send(42).unwrap()).join().unwrap();
    assert_eq!(rx.try_recv(), Ok(42));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn xchan_dropping_the_receiver_returns_sends_and_drops_queued_messages_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = xchan::channel();
    for _ in 0..3 {
        tx.send(Counted(drops.clone())).map_err(|_| ()).unwrap();
    }
    drop(rx);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    let back = tx.send(Counted(drops.clone())).unwrap_err();
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    drop(back);
    assert_eq!(drops.load(Ordering::SeqCst), 4);
}

#[test]
fn xchan_greenlets_on_another_hub_can_send() {
    let (tx, rx) = xchan::channel();
    let producer = thread::spawn(move || {
        let gs: Vec<_> = (0..10u32)
            .map(|i| {
                let tx = tx.clone();
                green::spawn(move || {
                    green::sleep(Duration::from_millis(u64::from(10 - i)));
                    tx.send(i).unwrap();
                })
            })
            .collect();
        green::joinall(gs);
    });
    let got: Vec<u32> = rx.iter().collect();
    producer.join().unwrap();
    assert_eq!(got.len(), 10);
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
}

#[test]
fn xchan_two_greenlets_sharing_a_receiver_each_get_one_message() {
    let (tx, rx) = xchan::channel();
    let rx = Rc::new(rx);
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            green::spawn(move || rx.recv().unwrap())
        })
        .collect();
    green::sleep(Duration::from_millis(5));
    let sender = thread::spawn(move || {
        tx.send(1).unwrap();
        thread::sleep(Duration::from_millis(10));
        tx.send(2).unwrap();
    });
    let mut got: Vec<i32> = green::joinall(receivers)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    sender.join().unwrap();
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}
