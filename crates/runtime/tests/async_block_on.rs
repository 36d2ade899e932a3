//! `green::block_on`: runtime-agnostic futures (futures::channel, async-channel, hand-written ones)
//! awaited from greenlets and root contexts, their wakers fired from other threads, cancellation by
//! kill and timeout, and the misuse that must panic instead of hanging.

use std::cell::Cell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn ready_futures_complete_in_a_greenlet_and_in_the_root_context() {
    assert_eq!(green::block_on(async { 40 + 2 }), 42);
    let greenlet = green::spawn(|| green::block_on(std::future::ready("in a greenlet")));
    assert_eq!(greenlet.join().unwrap(), "in a greenlet");
}

#[test]
fn oneshot_sent_from_a_plain_thread_wakes_a_greenlet_while_others_run() {
    let (tx, rx) = oneshot::channel::<u32>();
    let ticks = Rc::new(Cell::new(0));
    let ticker = {
        let ticks = ticks.clone();
        green::spawn(move || {
            for _ in 0..10 {
                green::sleep(Duration::from_millis(5));
                ticks.set(ticks.get() + 1);
            }
        })
    };
    let waiter = green::spawn(move || green::block_on(rx).unwrap());
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        tx.send(7).unwrap();
    });
    assert_eq!(waiter.join().unwrap(), 7);
    assert_eq!(ticks.get(), 10, "the ticker ran while the greenlet waited");
    ticker.join().unwrap();
    sender.join().unwrap();
}

#[test]
fn root_context_waits_for_a_oneshot_from_a_plain_thread_without_a_deadlock_error() {
    let (tx, rx) = oneshot::channel::<&str>();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        tx.send("from a thread").unwrap();
    });
    assert_eq!(green::block_on(rx), Ok("from a thread"));
    sender.join().unwrap();
}

#[test]
fn futures_mpsc_carries_items_from_greenlets_to_a_plain_thread_and_back() {
    const ITEMS: u64 = 200;
    let (to_thread, mut thread_rx) = mpsc::channel::<u64>(4);
    let (mut to_green, mut green_rx) = mpsc::channel::<u64>(4);
    // The plain thread doubles each item with futures' own executor.
    let doubler = thread::spawn(move || {
        futures::executor::block_on(async move {
            while let Some(item) = thread_rx.next().await {
                to_green.send(item * 2).await.unwrap();
            }
        })
    });
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let mut tx = to_thread.clone();
            green::spawn(move || {
                for i in 0..ITEMS / 4 {
                    // A bounded channel: the greenlet parks while it is full.
                    green::block_on(tx.send(p * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    drop(to_thread);
    let consumer = green::spawn(move || {
        let mut sum = 0;
        let mut count = 0;
        while let Some(item) = green::block_on(green_rx.next()) {
            sum += item;
            count += 1;
        }
        (count, sum)
    });
    for producer in producers {
        producer.join().unwrap();
    }
    let expected: u64 = (0..4u64)
        .flat_map(|p| (0..ITEMS / 4).map(move |i| 2 * (p * 1000 + i)))
        .sum();
    assert_eq!(consumer.join().unwrap(), (ITEMS, expected));
    doubler.join().unwrap();
}

#[test]
fn async_channel_connects_greenlets_on_two_hubs_and_a_plain_thread() {
    let (tx, rx) = async_channel::bounded::<u32>(2);
    let (done_tx, done_rx) = async_channel::unbounded::<u32>();
    // A hub on another thread: its greenlets receive and report.
    let hub = green::spawn_hub();
    let receivers: Vec<_> = (0..3)
        .map(|_| {
            let (rx, done_tx) = (rx.clone(), done_tx.clone());
            hub.spawn(move || {
                let mut sum = 0;
                while let Ok(item) = green::block_on(rx.recv()) {
                    sum += item;
                }
                green::block_on(done_tx.send(sum)).unwrap();
            })
        })
        .collect();
    drop((rx, done_tx));
    // Greenlets here and a plain thread send.
    let thread_tx = tx.clone();
    let plain = thread::spawn(move || {
        for i in 0..50 {
            thread_tx.send_blocking(i).unwrap();
        }
    });
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let tx = tx.clone();
            green::spawn(move || {
                for i in 50..100 {
                    green::block_on(tx.send(i)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    green::joinall(senders);
    plain.join().unwrap();
    let total: u32 = green::block_on(done_rx.take(3).collect::<Vec<_>>())
        .iter()
        .sum();
    assert_eq!(total, (0..50).sum::<u32>() + 2 * (50..100).sum::<u32>());
    for receiver in receivers {
        receiver.join().unwrap();
    }
    hub.stop();
}

/// Wakes itself `wakes_in_poll` times from inside `poll`, hands a waker clone to a thread that
/// wakes it late (after completion too), and completes on the `polls`-th poll.
struct SelfWaking {
    polls: usize,
    wakes_in_poll: usize,
    late: Arc<Mutex<Vec<Waker>>>,
}

impl Future for SelfWaking {
    type Output = usize;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        self.polls -= 1;
        if self.polls == 0 {
            return Poll::Ready(self.wakes_in_poll);
        }
        for _ in 0..self.wakes_in_poll {
            cx.waker().wake_by_ref();
        }
        self.late.lock().unwrap().push(cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn waking_inside_poll_many_times_from_threads_and_after_completion_is_harmless() {
    let late = Arc::new(Mutex::new(Vec::new()));
    let ticks = Rc::new(Cell::new(0u32));
    let ticker = {
        let ticks = ticks.clone();
        green::spawn(move || loop {
            ticks.set(ticks.get() + 1);
            green::yield_now();
        })
    };
    let result = green::block_on(SelfWaking {
        polls: 100,
        wakes_in_poll: 3,
        late: late.clone(),
    });
    assert_eq!(result, 3);
    assert!(
        ticks.get() >= 50,
        "a self-waking future yields to the other greenlets ({} ticks)",
        ticks.get()
    );
    ticker.kill();
    // Wakers kept past completion, fired from other threads: nothing to wake, nothing breaks.
    let wakers = std::mem::take(&mut *late.lock().unwrap());
    assert_eq!(wakers.len(), 99);
    let threads: Vec<_> = wakers
        .into_iter()
        .map(|waker| thread::spawn(move || waker.wake()))
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    green::sleep(Duration::from_millis(10));
    assert_eq!(green::block_on(async { 1 }), 1);
}

/// Counts its drops and records the thread each happened on.
struct DropCounter {
    drops: Arc<AtomicUsize>,
    thread: Arc<Mutex<Option<thread::ThreadId>>>,
}

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        *self.thread.lock().unwrap() = Some(thread::current().id());
    }
}

fn counted_pending_future(
    drops: &Arc<AtomicUsize>,
    thread: &Arc<Mutex<Option<thread::ThreadId>>>,
    rx: oneshot::Receiver<()>,
) -> impl Future<Output = ()> {
    let counter = DropCounter {
        drops: drops.clone(),
        thread: thread.clone(),
    };
    async move {
        let _counter = counter;
        let _ = rx.await;
    }
}

#[test]
fn a_greenlet_killed_inside_block_on_drops_the_future_once_on_its_thread() {
    let drops = Arc::new(AtomicUsize::new(0));
    let dropped_on = Arc::new(Mutex::new(None));
    // The sender lives on another thread, so the waker is registered across threads.
    let (tx, rx) = oneshot::channel::<()>();
    let future = counted_pending_future(&drops, &dropped_on, rx);
    let greenlet = green::spawn(move || green::block_on(future));
    green::sleep(Duration::from_millis(20));
    assert_eq!(drops.load(Ordering::SeqCst), 0, "still waiting");
    greenlet.kill();
    assert!(greenlet.join().unwrap_err().is_killed());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(*dropped_on.lock().unwrap(), Some(thread::current().id()));
    // A send after the kill finds the receiver gone; nothing is woken, nothing dropped again.
    assert!(thread::spawn(move || tx.send(())).join().unwrap().is_err());
    green::sleep(Duration::from_millis(10));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn with_timeout_around_block_on_returns_elapsed_on_time_and_drops_the_future_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let dropped_on = Arc::new(Mutex::new(None));
    let (_tx, rx) = oneshot::channel::<()>();
    let future = counted_pending_future(&drops, &dropped_on, rx);
    let start = Instant::now();
    let result = green::with_timeout(Duration::from_millis(100), || green::block_on(future));
    let elapsed = start.elapsed();
    assert_eq!(result, Err(green::Elapsed));
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(600),
        "{elapsed:?}"
    );
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(*dropped_on.lock().unwrap(), Some(thread::current().id()));
}

#[test]
fn block_on_nested_inside_a_polled_future_panics_with_a_clear_message() {
    let greenlet = green::spawn(|| {
        green::block_on(async {
            let inner = async { 1 };
            green::block_on(inner)
        })
    });
    let err = greenlet.join().unwrap_err();
    let message = err.panic_message().unwrap_or_default().to_string();
    assert!(
        message.contains("inside a future that green::block_on is polling"),
        "{message}"
    );
}

#[test]
fn block_on_in_a_hub_callback_panics_with_a_clear_message() {
    let (tx, rx) = green::xchan::channel();
    let hub = green::HubHandle::current();
    thread::spawn(move || {
        hub.run_threadsafe(move || {
            let result = catch_unwind(AssertUnwindSafe(|| green::block_on(async { 1 })));
            tx.send(result.map_err(panic_text)).unwrap();
        })
        .unwrap();
    })
    .join()
    .unwrap();
    let message = rx.recv().unwrap().unwrap_err();
    assert!(message.contains("from a hub callback"), "{message}");
}

#[test]
fn a_root_future_that_can_never_wake_panics_with_loop_exit_instead_of_hanging() {
    let outcome = thread::spawn(|| catch_unwind(|| green::block_on(std::future::pending::<()>())))
        .join()
        .unwrap();
    let message = panic_text(outcome.unwrap_err());
    assert!(message.contains("deadlock"), "{message}");
}

#[test]
fn block_on_in_many_greenlets_overlaps_their_waits() {
    let start = Instant::now();
    let (senders, greenlets): (Vec<_>, Vec<_>) = (0..100)
        .map(|i| {
            let (tx, rx) = oneshot::channel::<u32>();
            (tx, green::spawn(move || green::block_on(rx).unwrap() + i))
        })
        .unzip();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        for tx in senders {
            tx.send(1).unwrap();
        }
    });
    let sum: u32 = green::joinall(greenlets)
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(sum, (0..100).sum::<u32>() + 100);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    sender.join().unwrap();
}
