//! green::patch with the unchanged `memcache` crate against a real memcached on loopback, started
//! by scripts/services (`GREEN_TEST_MEMCACHED`).
//!
//! memcache's `Client` is an r2d2 pool: its connections are opened by r2d2's own plain threads
//! (unpatched), and a greenlet that finds the pool empty would wait on a `Condvar` that blocks the
//! whole thread, so the pool is sized for every greenlet at once.

mod common;
use common::ms;
use common::services::{self, raise_fd_limit, watchdog};

const WORKERS: u32 = 1_000;

#[test]
fn get_and_set_from_1000_greenlets_return_the_right_values() {
    assert!(
        green::patch::all(),
        "green::patch::all() must turn the hooks on"
    );
    let Some(url) = services::address(
        "GREEN_TEST_MEMCACHED",
        "get_and_set_from_1000_greenlets_return_the_right_values",
    ) else {
        return;
    };
    raise_fd_limit(4 * WORKERS as u64 + 256);
    let _watchdog = watchdog(
        "get_and_set_from_1000_greenlets_return_the_right_values",
        ms(60_000),
    );
    let client = std::rc::Rc::new(
        memcache::Client::with_pool_size(url.as_str(), WORKERS).expect("a memcached client"),
    );
    let prefix = services::unique_key("memcache");
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let client = client.clone();
            let key = format!("{prefix}-{i}");
            green::spawn(
                move || -> Result<(Option<String>, u64), memcache::MemcacheError> {
                    client.set(&key, format!("value {i}").as_str(), 60)?;
                    green::yield_now();
                    let value: Option<String> = client.get(&key)?;
                    client.set(&format!("{key}-n"), 10u64, 60)?;
                    let counter = client.increment(&format!("{key}-n"), i as u64)?;
                    client.delete(&key)?;
                    Ok((value, counter))
                },
            )
        })
        .collect();
    for (i, result) in green::joinall(workers).into_iter().enumerate() {
        let (value, counter) = result.unwrap().unwrap();
        assert_eq!(value.as_deref(), Some(format!("value {i}").as_str()));
        assert_eq!(counter, 10 + i as u64);
    }
}
