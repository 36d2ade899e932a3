//! Greenlets from async code and other threads: `HubHandle::spawn_threadsafe`'s `RemoteGreenlet`
//! (a `Future + Send`, joinable from greenlets and plain threads), `spawn_hub` and `HubPool`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use green::{HubPool, JoinError, RemoteGreenlet};

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_tokio_task_awaits_greenlets_on_a_hub_pool_and_their_sleeps_overlap() {
    let hubs = HubPool::new(2);
    let start = Instant::now();
    let greenlets: Vec<RemoteGreenlet<(usize, String)>> = (0..100)
        .map(|i| {
            hubs.spawn(move || {
                green::sleep(Duration::from_millis(200));
                (i, thread::current().name().unwrap_or("").to_string())
            })
        })
        .collect();
    let results = current_thread_runtime().block_on(async move {
        let mut results = Vec::new();
        for greenlet in greenlets {
            results.push(greenlet.await.unwrap());
        }
        results
    });
    let elapsed = start.elapsed();
    assert_eq!(
        results.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
    let on_first = results.iter().filter(|(_, t)| t == "green-hub-0").count();
    let on_second = results.iter().filter(|(_, t)| t == "green-hub-1").count();
    assert_eq!((on_first, on_second), (50, 50), "round-robin over the pool");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    hubs.shutdown();
}

#[test]
fn a_remote_greenlet_is_send_and_joinable_from_a_plain_thread_and_a_greenlet() {
    fn assert_send<T: Send>(_: &T) {}
    let hub = green::spawn_hub();
    let from_thread = hub.spawn(|| "thread");
    let from_greenlet = hub.spawn(|| "greenlet");
    assert_send(&from_thread);
    let joiner = thread::spawn(move || from_thread.join().unwrap());
    let greenlet = green::spawn(move || from_greenlet.join().unwrap());
    assert_eq!(joiner.join().unwrap(), "thread");
    assert_eq!(greenlet.join().unwrap(), "greenlet");
    hub.stop();
}

#[test]
fn spawn_threadsafe_reports_panics_and_kills_through_the_handle() {
    let hub = green::spawn_hub();
    let panicking = hub
        .handle()
        .spawn_threadsafe(|| -> u32 { panic!("boom in a remote greenlet") })
        .unwrap();
    let err = panicking.join().unwrap_err();
    assert_eq!(err.panic_message(), Some("boom in a remote greenlet"));
    let sleeper = hub.spawn(|| green::sleep(Duration::from_secs(30)));
    assert!(sleeper.join_timeout(Duration::from_millis(20)).is_none());
    let start = Instant::now();
    sleeper.kill();
    assert!(matches!(sleeper.join(), Err(JoinError::Killed)));
    assert!(start.elapsed() < Duration::from_secs(2));
    hub.stop();
}

#[test]
fn stopping_a_hub_thread_kills_its_greenlets_and_their_futures_resolve_killed() {
    let hub = green::spawn_hub();
    let destructors = Arc::new(AtomicUsize::new(0));
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let greenlets: Vec<_> = (0..5)
        .map(|_| {
            let counted = Counted(destructors.clone());
            hub.spawn(move || {
                let _counted = counted;
                green::sleep(Duration::from_secs(60));
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    hub.stop();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(destructors.load(Ordering::SeqCst), 5);
    let results = current_thread_runtime().block_on(async move {
        let mut results = Vec::new();
        for greenlet in greenlets {
            results.push(greenlet.await);
        }
        results
    });
    assert!(results.iter().all(|r| matches!(r, Err(JoinError::Killed))));
}

#[test]
fn a_handle_spawned_on_a_hub_whose_thread_exits_first_resolves_killed() {
    let (tx, rx) = std::sync::mpsc::channel();
    let hub_thread = thread::spawn(move || {
        tx.send(green::HubHandle::current()).unwrap();
        // Exits at once: what was queued for its hub never runs.
        thread::sleep(Duration::from_millis(100));
    });
    let handle = rx.recv().unwrap();
    let greenlet = handle.spawn_threadsafe(|| 1).unwrap();
    hub_thread.join().unwrap();
    assert!(matches!(greenlet.join(), Err(JoinError::Killed)));
}
