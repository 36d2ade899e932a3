//! Queues and `Channel`: FIFO waiters, bounds, joining, ordering, and items never lost or
//! duplicated when waiters time out or are killed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use green::sync::{
    Channel, GenericQueue, LifoQueue, PriorityQueue, Queue, ShutDown, Storage, TaskDoneError,
};
use green::Greenlet;

mod common;
use common::panic_message;

/// A greenlet blocked in (or about to call) `queue.get()`.
fn spawn_getter<T: 'static, S: Storage<T> + 'static>(queue: &GenericQueue<T, S>) -> Greenlet<T> {
    let queue = queue.clone();
    green::spawn(move || queue.get())
}

#[test]
fn queue_getter_that_timed_out_never_consumes_a_later_item() {
    let queue = Queue::new();
    let timed_out = {
        let queue = queue.clone();
        green::spawn(move || queue.get_timeout(Duration::from_millis(5)))
    };
    let aborted = {
        let queue = queue.clone();
        green::spawn(move || green::with_timeout(Duration::from_millis(5), || queue.get()))
    };
    assert_eq!(timed_out.join().unwrap(), None);
    assert!(aborted.join().unwrap().is_err());
    assert_eq!(queue.getters_waiting(), 0);
    queue.put(1);
    queue.put(2);
    assert_eq!(queue.len(), 2);
    assert_eq!(queue.try_get(), Some(1));
    assert_eq!(queue.try_get(), Some(2));
}

#[test]
fn queue_getter_that_timed_out_leaves_the_item_to_the_next_getter() {
    let queue = Queue::new();
    let spawn_timed_getter = |timeout_ms| {
        let queue = queue.clone();
        green::spawn(move || queue.get_timeout(Duration::from_millis(timeout_ms)))
    };
    let short = spawn_timed_getter(2);
    let long = spawn_timed_getter(5_000);
    assert_eq!(short.join().unwrap(), None);
    queue.put(7);
    assert_eq!(long.join().unwrap(), Some(7));
    assert!(queue.is_empty());
}

#[test]
fn queue_getters_are_served_in_fifo_order() {
    let queue = Queue::new();
    let getters: Vec<_> = (0..5).map(|_| spawn_getter(&queue)).collect();
    green::yield_now();
    assert_eq!(queue.getters_waiting(), 5);
    for item in 0..5 {
        queue.put(item);
    }
    // A newcomer does not overtake the waiting getters.
    assert_eq!(queue.try_get(), None);
    let got: Vec<i32> = green::joinall(getters)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, [0, 1, 2, 3, 4]);
}

#[test]
fn queue_getter_killed_after_being_woken_passes_the_item_on() {
    let queue = Queue::new();
    let (first, second) = (spawn_getter(&queue), spawn_getter(&queue));
    green::yield_now();
    queue.put("only");
    // `first` has been promised the item and woken, but has not run yet.
    first.kill();
    assert!(first.join().unwrap_err().is_killed());
    assert_eq!(second.join().unwrap(), "only");
    assert!(queue.is_empty());
    assert_eq!(queue.getters_waiting(), 0);
}

#[test]
fn queue_items_handed_to_getters_killed_before_running_go_to_the_next_getters_in_order() {
    let queue = Queue::new();
    let getters = [
        spawn_getter(&queue),
        spawn_getter(&queue),
        spawn_getter(&queue),
    ];
    green::yield_now();
    // 1 goes straight to the first getter, 2 through the queue to the second.
    queue.put(1);
    queue.put(2);
    getters[0].kill();
    let [first, second, third] = getters;
    assert!(first.join().unwrap_err().is_killed());
    assert_eq!((second.join().unwrap(), third.join().unwrap()), (1, 2));
    assert!(queue.is_empty());
}

#[test]
fn queue_item_handed_to_a_killed_getter_comes_back_before_later_items() {
    let queue = Queue::new();
    let getter = spawn_getter(&queue);
    green::yield_now();
    queue.put("first");
    assert_eq!(
        queue.len(),
        1,
        "an item handed to a getter that has not run is still held"
    );
    queue.put("second");
    assert_eq!(
        queue.try_get(),
        Some("second"),
        "only the later item is free"
    );
    queue.put("third");
    getter.kill();
    assert!(getter.join().unwrap_err().is_killed());
    assert_eq!(queue.len(), 2);
    assert_eq!([queue.get(), queue.get()], ["first", "third"]);
}

#[test]
fn bounded_queue_counts_an_item_handed_to_a_getter_until_it_is_taken() {
    let queue = Queue::bounded(1);
    let getter = spawn_getter(&queue);
    green::yield_now();
    queue.put(1);
    assert!(queue.is_full());
    assert_eq!(queue.try_put(2), Err(2));
    let putter = {
        let queue = queue.clone();
        green::spawn(move || queue.put(3))
    };
    assert_eq!(getter.join().unwrap(), 1);
    putter.join().unwrap();
    assert_eq!(queue.try_get(), Some(3));
    assert_eq!(queue.unfinished_tasks(), 2);
}

#[test]
fn lifo_queue_waiting_getter_takes_the_newest_at_the_time_it_runs() {
    let queue = LifoQueue::new();
    let getter = spawn_getter(&queue);
    green::yield_now();
    queue.put(1);
    queue.put(2);
    assert_eq!(getter.join().unwrap(), 2);
    assert_eq!(queue.try_get(), Some(1));
}

#[test]
fn queue_getter_killed_while_waiting_leaves_the_queue_consistent() {
    let queue = Queue::new();
    let getter = spawn_getter(&queue);
    green::yield_now();
    getter.kill();
    assert_eq!(queue.getters_waiting(), 0);
    queue.put(5);
    assert_eq!(queue.try_get(), Some(5));
}

#[test]
fn bounded_queue_put_blocks_only_the_putter_until_a_get() {
    let queue = Queue::bounded(1);
    queue.put(1);
    assert!(queue.is_full());
    let put_done = Rc::new(Cell::new(false));
    let putter = {
        let (queue, put_done) = (queue.clone(), put_done.clone());
        green::spawn(move || {
            queue.put(2);
            put_done.set(true);
        })
    };
    let ticks = Rc::new(Cell::new(0));
    let ticker = {
        let ticks = ticks.clone();
        green::spawn(move || {
            for _ in 0..3 {
                ticks.set(ticks.get() + 1);
                green::yield_now();
            }
        })
    };
    for _ in 0..4 {
        green::yield_now();
    }
    assert!(!put_done.get(), "the putter waits while the queue is full");
    assert_eq!(ticks.get(), 3, "other greenlets keep running");
    assert_eq!(queue.putters_waiting(), 1);
    assert_eq!(queue.get(), 1);
    putter.join().unwrap();
    ticker.join().unwrap();
    assert!(put_done.get());
    assert_eq!(queue.get(), 2);
}

#[test]
fn bounded_queue_putters_are_served_in_fifo_order() {
    let queue = Queue::bounded(1);
    queue.put(0);
    let putters: Vec<_> = (1..=3)
        .map(|i| {
            let queue = queue.clone();
            green::spawn(move || queue.put(i))
        })
        .collect();
    green::yield_now();
    assert_eq!(queue.try_put(99), Err(99), "a newcomer does not overtake");
    let got: Vec<i32> = (0..4).map(|_| queue.get()).collect();
    assert_eq!(got, [0, 1, 2, 3]);
    green::joinall(putters);
}

#[test]
fn bounded_queue_putter_killed_after_being_woken_passes_the_slot_on() {
    let queue = Queue::bounded(1);
    queue.put(0);
    let spawn_putter = |item| {
        let queue = queue.clone();
        green::spawn(move || queue.put(item))
    };
    let (first, second) = (spawn_putter(1), spawn_putter(2));
    green::yield_now();
    assert_eq!(queue.get(), 0);
    first.kill();
    second.join().unwrap();
    assert_eq!(queue.try_get(), Some(2));
    assert_eq!(
        queue.try_get(),
        None,
        "the killed putter's item was never added"
    );
}

#[test]
fn bounded_queue_put_timeout_gives_the_item_back() {
    let queue = Queue::bounded(1);
    // Something else is alive meanwhile (alone, main's timed wait is a deadlock: see
    // tests/deadlock.rs).
    let _busy = green::spawn(|| green::sleep(Duration::from_millis(50)));
    queue.put("kept");
    assert_eq!(
        queue.put_timeout("refused", Duration::from_millis(5)),
        Err("refused")
    );
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.putters_waiting(), 0);
    assert_eq!(queue.get(), "kept");
}

#[test]
fn try_put_and_try_get_never_block() {
    let queue = Queue::bounded(2);
    assert_eq!(queue.capacity(), Some(2));
    assert_eq!(queue.try_put(1), Ok(()));
    assert_eq!(queue.try_put(2), Ok(()));
    assert_eq!(queue.try_put(3), Err(3));
    assert!(queue.is_full());
    assert_eq!(queue.try_get(), Some(1));
    assert_eq!(queue.try_get(), Some(2));
    assert_eq!(queue.try_get(), None);
    assert!(queue.is_empty() && !queue.is_full());
}

#[test]
fn joinable_queue_join_waits_for_every_task_done() {
    let queue = Queue::new();
    for item in 0..3 {
        queue.put(item);
    }
    let processed = Rc::new(Cell::new(0));
    let worker = {
        let (queue, processed) = (queue.clone(), processed.clone());
        green::spawn(move || loop {
            let _item: i32 = queue.get();
            green::sleep(Duration::from_millis(1));
            processed.set(processed.get() + 1);
            queue.task_done().unwrap();
        })
    };
    assert_eq!(queue.unfinished_tasks(), 3);
    assert!(!queue.join_timeout(Duration::ZERO));
    queue.join();
    assert_eq!(processed.get(), 3);
    assert_eq!(queue.unfinished_tasks(), 0);
    worker.kill();
}

#[test]
fn task_done_more_times_than_put_is_an_error() {
    let queue = Queue::new();
    assert_eq!(queue.task_done(), Err(TaskDoneError));
    queue.put(1);
    queue.get();
    assert_eq!(queue.task_done(), Ok(()));
    assert_eq!(queue.task_done(), Err(TaskDoneError));
    assert_eq!(queue.unfinished_tasks(), 0);
    assert!(queue.join_timeout(Duration::ZERO));
}

#[test]
fn priority_queue_hands_out_the_smallest_first() {
    let queue = PriorityQueue::new();
    for item in [5, 1, 4, 2, 3] {
        queue.put(item);
    }
    let got: Vec<i32> = (0..5).map(|_| queue.get()).collect();
    assert_eq!(got, [1, 2, 3, 4, 5]);
}

#[test]
fn priority_queue_waiting_getter_takes_the_smallest_at_the_time_it_runs() {
    let queue = PriorityQueue::new();
    let getter = spawn_getter(&queue);
    green::yield_now();
    queue.put((3, "late"));
    queue.put((1, "urgent"));
    assert_eq!(getter.join().unwrap(), (1, "urgent"));
    assert_eq!(queue.try_get(), Some((3, "late")));
}

#[test]
fn lifo_queue_hands_out_the_newest_first() {
    let queue = LifoQueue::bounded(3);
    for item in ["a", "b", "c"] {
        queue.put(item);
    }
    assert!(queue.is_full());
    let got: Vec<&str> = (0..3).map(|_| queue.get()).collect();
    assert_eq!(got, ["c", "b", "a"]);
}

#[test]
fn queue_get_from_main_with_nothing_running_panics_with_loop_exit() {
    let queue: Queue<u8> = Queue::new();
    let message = panic_message(|| {
        queue.get();
    });
    assert!(message.contains("LoopExit"), "{message}");
    assert_eq!(queue.getters_waiting(), 0);
    queue.put(1);
    assert_eq!(queue.get(), 1, "the queue still works");
}

#[test]
fn queue_put_to_full_queue_from_main_with_nothing_running_panics_with_loop_exit() {
    let queue = Queue::bounded(1);
    queue.put(1);
    let message = panic_message(|| queue.put(2));
    assert!(message.contains("LoopExit"), "{message}");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.putters_waiting(), 0);
}

#[test]
fn queue_items_are_never_lost_or_duplicated_when_getters_time_out_or_die() {
    items_are_never_lost_or_duplicated_when_getters_time_out_or_die(Queue::bounded(4));
}

#[test]
fn unbounded_queue_items_are_never_lost_or_duplicated_when_getters_time_out_or_die() {
    items_are_never_lost_or_duplicated_when_getters_time_out_or_die(Queue::new());
}

fn items_are_never_lost_or_duplicated_when_getters_time_out_or_die(queue: Queue<u32>) {
    const ITEMS: u32 = 300;
    let done = Rc::new(Cell::new(false));
    let got = Rc::new(RefCell::new(Vec::new()));
    let getters: Vec<_> = (0..6u64)
        .map(|k| {
            let (queue, done, got) = (queue.clone(), done.clone(), got.clone());
            green::spawn(move || loop {
                let item = if k % 2 == 0 {
                    queue.get_timeout(Duration::from_micros(200 * (k + 1)))
                } else {
                    green::with_timeout(Duration::from_micros(300 * k), || queue.get()).ok()
                };
                match item {
                    Some(item) => got.borrow_mut().push(item),
                    None if done.get() => return,
                    None => {}
                }
            })
        })
        .collect();
    let producer = {
        let queue = queue.clone();
        green::spawn(move || {
            for item in 0..ITEMS {
                queue.put(item);
                if item % 16 == 0 {
                    green::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    green::sleep(Duration::from_millis(3));
    getters[1].kill();
    producer.join().unwrap();
    done.set(true);
    for result in green::joinall(getters) {
        let _ = result;
    }
    let mut all = got.borrow().clone();
    while let Some(item) = queue.try_get() {
        all.push(item);
    }
    all.sort_unstable();
    assert_eq!(all, (0..ITEMS).collect::<Vec<_>>());
}

#[test]
fn queue_works_in_a_plain_thread() {
    let sum = std::thread::spawn(|| {
        let queue = Queue::bounded(2);
        let producer = {
            let queue = queue.clone();
            green::spawn(move || (1..=10).for_each(|i| queue.put(i)))
        };
        let sum: i32 = (0..10).map(|_| queue.get()).sum();
        producer.join().unwrap();
        sum
    })
    .join()
    .unwrap();
    assert_eq!(sum, 55);
}

#[test]
fn channel_put_blocks_until_a_getter_takes_the_item() {
    let channel = Channel::new();
    let delivered = Rc::new(Cell::new(false));
    let putter = {
        let (channel, delivered) = (channel.clone(), delivered.clone());
        green::spawn(move || {
            channel.put(42);
            delivered.set(true);
        })
    };
    green::yield_now();
    green::yield_now();
    assert!(!delivered.get(), "no getter yet");
    assert_eq!(channel.putters_waiting(), 1);
    assert_eq!(channel.get(), 42);
    putter.join().unwrap();
    assert!(delivered.get());
    assert_eq!(channel.putters_waiting(), 0);
}

#[test]
fn channel_put_timeout_without_getter_gives_the_item_back() {
    let channel = Channel::new();
    // Something else is alive meanwhile (alone, main's timed wait is a deadlock: see
    // tests/deadlock.rs).
    let _busy = green::spawn(|| green::sleep(Duration::from_millis(50)));
    assert_eq!(channel.put_timeout("x", Duration::from_millis(5)), Err("x"));
    assert_eq!(channel.putters_waiting(), 0);
    assert_eq!(channel.get_timeout(Duration::from_millis(2)), None);
    assert_eq!(channel.getters_waiting(), 0);
}

#[test]
fn channel_try_put_succeeds_only_with_a_waiting_getter() {
    let channel = Channel::new();
    assert_eq!(channel.try_put(1), Err(1));
    assert_eq!(channel.try_get(), None);
    let getter = {
        let channel = channel.clone();
        green::spawn(move || channel.get())
    };
    green::yield_now();
    assert_eq!(channel.try_put(2), Ok(()));
    assert_eq!(getter.join().unwrap(), 2);
}

#[test]
fn channel_serves_putters_and_getters_in_fifo_order() {
    let channel = Channel::new();
    let putters: Vec<_> = (0..3)
        .map(|i| {
            let channel = channel.clone();
            green::spawn(move || channel.put(i))
        })
        .collect();
    green::yield_now();
    let got: Vec<i32> = (0..3).map(|_| channel.get()).collect();
    assert_eq!(got, [0, 1, 2]);
    green::joinall(putters);
}

#[test]
fn channel_getter_killed_after_being_woken_passes_the_item_on() {
    let channel = Channel::new();
    let spawn_channel_getter = || {
        let channel = channel.clone();
        green::spawn(move || channel.get())
    };
    let (first, second) = (spawn_channel_getter(), spawn_channel_getter());
    green::yield_now();
    let putter = {
        let channel = channel.clone();
        green::spawn(move || channel.put("only"))
    };
    green::yield_now();
    first.kill();
    assert_eq!(second.join().unwrap(), "only");
    putter.join().unwrap();
    assert_eq!(channel.putters_waiting(), 0);
    assert_eq!(channel.getters_waiting(), 0);
}

#[test]
fn channel_put_timeout_zero_hands_over_only_to_a_waiting_getter() {
    let channel = Channel::new();
    assert_eq!(channel.put_timeout(1, Duration::ZERO), Err(1));
    let getter = {
        let channel = channel.clone();
        green::spawn(move || channel.get())
    };
    green::yield_now();
    assert_eq!(channel.put_timeout(2, Duration::ZERO), Ok(()));
    assert_eq!(getter.join().unwrap(), 2);
}

#[test]
fn channel_item_is_delivered_if_and_only_if_put_succeeds() {
    // A 1 ns put gives up either before or after its woken getter runs; either way the getter
    // receives the item exactly when the put reports success, and otherwise keeps waiting.
    let channel = Channel::new();
    for i in 0..20 {
        let getter = {
            let channel = channel.clone();
            green::spawn(move || channel.get_timeout(Duration::from_secs(5)))
        };
        green::yield_now();
        match channel.put_timeout(i, Duration::from_nanos(1)) {
            Ok(()) => assert_eq!(getter.join().unwrap(), Some(i)),
            Err(item) => {
                assert_eq!(item, i);
                channel.put(1000 + i);
                assert_eq!(getter.join().unwrap(), Some(1000 + i));
            }
        }
        assert_eq!(channel.putters_waiting(), 0);
        assert_eq!(channel.getters_waiting(), 0);
    }
}

#[test]
fn channel_get_from_main_with_nothing_running_panics_with_loop_exit() {
    let channel: Channel<u8> = Channel::new();
    let message = panic_message(|| {
        channel.get();
    });
    assert!(message.contains("LoopExit"), "{message}");
    assert_eq!(channel.getters_waiting(), 0);
}

#[test]
fn queue_peek_returns_the_head_without_removing_it() {
    let queue = Queue::new();
    assert_eq!(queue.try_peek(), None);
    queue.put(1);
    queue.put(2);
    assert_eq!(queue.peek(), 1);
    assert_eq!(queue.try_peek(), Some(1));
    assert_eq!(queue.len(), 2);
    assert_eq!(queue.get(), 1);
    let lifo = LifoQueue::new();
    lifo.put(1);
    lifo.put(2);
    assert_eq!(lifo.peek(), 2);
    let priority = PriorityQueue::new();
    priority.put(3);
    priority.put(1);
    assert_eq!(priority.peek(), 1);
    assert_eq!(priority.len(), 2);
}

#[test]
fn queue_peek_blocks_until_an_item_comes_and_leaves_it_for_a_getter() {
    let queue = Queue::new();
    let peeker = {
        let queue = queue.clone();
        green::spawn(move || queue.peek())
    };
    let getter = spawn_getter(&queue);
    green::yield_now();
    assert_eq!(queue.getters_waiting(), 2);
    queue.put(5);
    assert_eq!(peeker.join().unwrap(), 5);
    assert_eq!(getter.join().unwrap(), 5);
    assert!(queue.is_empty());
}

#[test]
fn queue_peek_timeout_gives_none_when_no_item_comes() {
    let queue = Queue::<i32>::new();
    // Something else alive, so the timed wait is a timeout, not the deadlock.
    let _alive = green::spawn(|| green::sleep(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    assert_eq!(queue.peek_timeout(Duration::from_millis(30)), None);
    assert!(started.elapsed() >= Duration::from_millis(25));
    assert_eq!(queue.getters_waiting(), 0);
    queue.put(1);
    assert_eq!(queue.peek_timeout(Duration::from_millis(30)), Some(1));
    assert_eq!(queue.len(), 1);
}

#[test]
fn queue_shutdown_wakes_blocked_getters_with_shut_down() {
    let queue = Queue::<i32>::new();
    let getters: Vec<_> = (0..3)
        .map(|_| {
            let queue = queue.clone();
            green::spawn(move || queue.get_checked())
        })
        .collect();
    green::yield_now();
    assert_eq!(queue.getters_waiting(), 3);
    queue.shutdown(false);
    for getter in getters {
        assert_eq!(getter.join().unwrap(), Err(ShutDown(())));
    }
    assert!(queue.is_shut_down());
    assert_eq!(queue.get_checked(), Err(ShutDown(())));
    assert_eq!(queue.get_timeout(Duration::from_millis(10)), None);
}

#[test]
fn queue_shutdown_wakes_blocked_putters_and_gives_their_items_back() {
    let queue = Queue::bounded(1);
    queue.put(0);
    let putters: Vec<_> = (1..=2)
        .map(|i| {
            let queue = queue.clone();
            green::spawn(move || queue.put_checked(i))
        })
        .collect();
    green::yield_now();
    assert_eq!(queue.putters_waiting(), 2);
    queue.shutdown(false);
    let refused: Vec<_> = putters.into_iter().map(|p| p.join().unwrap()).collect();
    assert_eq!(refused, [Err(ShutDown(1)), Err(ShutDown(2))]);
    assert_eq!(queue.put_checked(3), Err(ShutDown(3)));
    assert_eq!(queue.try_put(3), Err(3));
    let unbounded = Queue::new();
    unbounded.shutdown(false);
    assert_eq!(unbounded.put_checked(1), Err(ShutDown(1)));
    assert_eq!(unbounded.put_timeout(2, Duration::from_millis(5)), Err(2));
}

#[test]
fn queue_shutdown_lets_gets_drain_the_items_left_then_fails_them() {
    let queue = Queue::new();
    queue.put(1);
    queue.put(2);
    queue.shutdown(false);
    assert_eq!(queue.get_checked(), Ok(1));
    assert_eq!(queue.get(), 2);
    assert_eq!(queue.get_checked(), Err(ShutDown(())));
    let message = panic_message(|| {
        queue.get();
    });
    assert!(message.contains("shut down"), "{message}");
    let message = panic_message(|| queue.put(3));
    assert!(message.contains("shut down"), "{message}");
}

#[test]
fn queue_shutdown_keeps_an_item_already_handed_to_a_woken_getter() {
    let queue = Queue::new();
    let getter = spawn_getter(&queue);
    green::yield_now();
    queue.put(9);
    queue.shutdown(false);
    assert_eq!(getter.join().unwrap(), 9);
}

#[test]
fn queue_shutdown_immediate_drops_the_items_and_ends_their_tasks() {
    let dropped = Rc::new(Cell::new(0));
    struct Counted(Rc<Cell<usize>>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let queue = Queue::new();
    let getter = {
        let queue = queue.clone();
        green::spawn(move || queue.get_checked().map(drop))
    };
    green::yield_now();
    for _ in 0..3 {
        queue.put(Counted(dropped.clone()));
    }
    let joiner = {
        let queue = queue.clone();
        green::spawn(move || queue.join())
    };
    queue.shutdown(true);
    assert_eq!(
        dropped.get(),
        3,
        "every item left, even the one handed over, is dropped"
    );
    assert!(queue.is_empty());
    assert_eq!(queue.unfinished_tasks(), 0);
    assert_eq!(getter.join().unwrap(), Err(ShutDown(())));
    joiner.join().unwrap();
}

#[test]
fn queue_shutdown_getter_killed_after_the_wake_up_leaves_the_queue_consistent() {
    let queue = Queue::<i32>::new();
    let getter = spawn_getter(&queue);
    green::yield_now();
    queue.shutdown(false);
    getter.kill();
    assert!(getter.join().unwrap_err().is_killed());
    assert_eq!(queue.len(), 0);
    assert_eq!(queue.try_get(), None);
}

#[test]
fn queue_bounded_zero_is_a_rendezvous_put_waits_for_a_getter() {
    let queue = Queue::bounded(0);
    assert!(queue.is_full());
    assert_eq!(queue.try_put(1), Err(1));
    // Something else alive, so the timed wait is a timeout, not the deadlock.
    let _alive = green::spawn(|| green::sleep(Duration::from_millis(50)));
    assert_eq!(queue.put_timeout(1, Duration::from_millis(5)), Err(1));
    let put_done = Rc::new(Cell::new(false));
    let putter = {
        let queue = queue.clone();
        let put_done = put_done.clone();
        green::spawn(move || {
            queue.put(7);
            put_done.set(true);
        })
    };
    green::sleep(Duration::from_millis(20));
    assert!(!put_done.get(), "a rendezvous put waits for a getter");
    assert_eq!(queue.putters_waiting(), 1);
    assert_eq!(queue.get(), 7);
    putter.join().unwrap();
    assert!(put_done.get());
    assert!(queue.is_empty());
    // A getter waiting first: a put hands its item over without waiting.
    let getter = spawn_getter(&queue);
    green::yield_now();
    assert!(!queue.is_full());
    assert_eq!(queue.try_put(8), Ok(()));
    assert_eq!(getter.join().unwrap(), 8);
}

#[test]
fn queue_bounded_zero_passes_many_items_in_order_between_greenlets() {
    let queue = Queue::bounded(0);
    let producer = {
        let queue = queue.clone();
        green::spawn(move || (0..100).for_each(|i| queue.put(i)))
    };
    let got: Vec<i32> = (0..100).map(|_| queue.get()).collect();
    producer.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    let lifo = LifoQueue::bounded(0);
    let producer = {
        let lifo = lifo.clone();
        green::spawn(move || (0..10).for_each(|i| lifo.put(i)))
    };
    let got: Vec<i32> = (0..10).map(|_| lifo.get()).collect();
    producer.join().unwrap();
    assert_eq!(
        got,
        (0..10).collect::<Vec<_>>(),
        "a rendezvous holds no item to reorder"
    );
}
