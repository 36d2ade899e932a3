//! `use_handle`: green uses the application's own tokio runtime instead of starting one. (A test
//! binary of its own: the choice is process-wide and made once.)

use std::time::{Duration, Instant};

#[test]
fn use_handle_runs_block_on_and_spawn_on_the_applications_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("app-runtime")
        .enable_all()
        .build()
        .unwrap();
    green_tokio::use_handle(runtime.handle().clone()).unwrap();
    let start = Instant::now();
    let thread_name = green_runtime::spawn(|| {
        green_tokio::block_on(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let task =
                green_tokio::spawn(async { std::thread::current().name().map(str::to_string) });
            task.await.unwrap()
        })
    })
    .join()
    .unwrap();
    assert_eq!(thread_name.as_deref(), Some("app-runtime"));
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(
        green_tokio::set_worker_threads(2),
        Err(green_tokio::AlreadyStarted)
    );
}
