//! `green::tokio`: futures that need tokio (reqwest's async client, tokio timers, `spawn`) awaited
//! from greenlets on the helper runtime; cancellation and misuse.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use green::http::server::{Body, Server};
use green::http::Response;

#[allow(dead_code)]
#[path = "../examples/async_bridge.rs"]
mod async_bridge;

/// A green HTTP server on its own hub thread answering each request after `hold`, with its path.
fn slow_server(hold: Duration) -> (green::HubThread, std::net::SocketAddr) {
    let listener = green::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = green::spawn_hub();
    hub.spawn(move || {
        Server::from_listener(listener).serve(move |req| {
            green::sleep(hold);
            Response::new(Body::from(format!("page {}", req.uri().path())))
        })
    });
    (hub, addr)
}

#[test]
fn reqwest_from_100_greenlets_overlaps_on_one_thread() {
    const HOLD: Duration = Duration::from_millis(200);
    let (server, addr) = slow_server(HOLD);
    let client = reqwest::Client::new();
    let start = Instant::now();
    let greenlets: Vec<_> = (0..100)
        .map(|i| {
            let client = client.clone();
            green::spawn(move || {
                green::tokio::block_on(async move {
                    let response = client.get(format!("http://{addr}/{i}")).send().await?;
                    assert_eq!(response.status(), 200);
                    response.text().await
                })
            })
        })
        .collect();
    for (i, page) in green::joinall(greenlets).into_iter().enumerate() {
        assert_eq!(page.unwrap().unwrap(), format!("page /{i}"));
    }
    let elapsed = start.elapsed();
    println!("100 reqwest calls held 200 ms each: {elapsed:?}");
    // One after another: 100 × 200 ms = 20 s.
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    server.stop();
}

#[test]
fn with_timeout_around_a_tokio_sleep_of_10_s_returns_elapsed_on_time() {
    let start = Instant::now();
    let result = green::spawn(|| {
        green::with_timeout(Duration::from_millis(100), || {
            // Built inside the future, as with tokio's own block_on: the sleep needs the context.
            green::tokio::block_on(async { tokio::time::sleep(Duration::from_secs(10)).await })
        })
    })
    .join()
    .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(result, Err(green::Elapsed));
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(700),
        "{elapsed:?}"
    );
}

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

#[test]
fn a_greenlet_killed_in_green_tokio_block_on_drops_the_future_once_on_its_thread() {
    let drops = Arc::new(AtomicUsize::new(0));
    let dropped_on = Arc::new(Mutex::new(None));
    let counter = DropCounter {
        drops: drops.clone(),
        thread: dropped_on.clone(),
    };
    let greenlet = green::spawn(move || {
        green::tokio::block_on(async move {
            let _counter = counter;
            tokio::time::sleep(Duration::from_secs(10)).await;
        })
    });
    green::sleep(Duration::from_millis(50));
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    let start = Instant::now();
    greenlet.kill();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(greenlet.join().unwrap_err().is_killed());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(*dropped_on.lock().unwrap(), Some(thread::current().id()));
}

#[test]
fn spawned_tasks_run_on_the_helper_runtime_and_their_join_handles_are_awaitable() {
    let tasks: Vec<_> = (0..10u64)
        .map(|i| {
            green::tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                (i * i, thread::current().name().map(str::to_string))
            })
        })
        .collect();
    let start = Instant::now();
    let greenlets: Vec<_> = tasks
        .into_iter()
        .map(|task| green::spawn(move || green::block_on(task).unwrap()))
        .collect();
    let results: Vec<_> = green::joinall(greenlets)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(start.elapsed() < Duration::from_secs(1));
    for (i, (square, thread)) in results.into_iter().enumerate() {
        assert_eq!(square, (i * i) as u64);
        assert_eq!(thread.as_deref(), Some("green-tokio"));
    }
}

#[test]
fn tokio_resources_made_in_block_on_are_driven_by_the_runtime() {
    // A tokio listener and stream, both created and used inside green::tokio::block_on.
    let echoed = green::tokio::block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await?;
            let mut buf = [0; 5];
            conn.read_exact(&mut buf).await?;
            conn.write_all(&buf).await?;
            Ok::<_, std::io::Error>(())
        });
        let mut client = tokio::net::TcpStream::connect(addr).await?;
        client.write_all(b"hello").await?;
        let mut buf = [0; 5];
        client.read_exact(&mut buf).await?;
        server.await.unwrap()?;
        Ok::<_, std::io::Error>(buf)
    })
    .unwrap();
    assert_eq!(&echoed, b"hello");
}

#[test]
fn green_tokio_block_on_inside_a_tokio_runtime_panics_with_a_clear_message() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let outcome = runtime
        .block_on(async { std::panic::catch_unwind(|| green::tokio::block_on(async { 1 })) });
    let payload = outcome.unwrap_err();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(
        message.contains("inside a tokio runtime context"),
        "{message}"
    );
}

#[test]
fn configuring_the_runtime_after_its_first_use_is_refused() {
    let _ = green::tokio::handle();
    assert_eq!(
        green::tokio::set_worker_threads(4),
        Err(green::tokio::AlreadyStarted)
    );
    let other = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(
        green::tokio::use_handle(other.handle().clone()),
        Err(green::tokio::AlreadyStarted)
    );
}

#[test]
fn the_async_bridge_example_crawls_and_stores_every_page() {
    const PAGES: usize = 300;
    let report = async_bridge::run(PAGES, 30);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.fetched, report.stored), (PAGES, PAGES));
    // One request at a time: 300 × 2 × 5 ms = 3 s.
    assert!(
        report.elapsed < Duration::from_millis(1500),
        "{:?}",
        report.elapsed
    );
}
