//! `set_worker_threads`: the size of the runtime green starts. (A test binary of its own: the
//! choice is process-wide and made once.)

#[test]
fn set_worker_threads_sizes_the_helper_runtime() {
    green_tokio::set_worker_threads(3).unwrap();
    // Changing one's mind before the first use is fine.
    green_tokio::set_worker_threads(2).unwrap();
    assert_eq!(green_tokio::handle().metrics().num_workers(), 2);
    assert_eq!(
        green_tokio::set_worker_threads(4),
        Err(green_tokio::AlreadyStarted)
    );
    assert_eq!(green_tokio::handle().metrics().num_workers(), 2);
}
