//! Until `green::patch::all()` is called — and when `GREEN_PATCH=0` says no — the hooks behave as
//! glibc's: a std sleep in a greenlet blocks the whole thread.

use std::time::{Duration, Instant};

/// How long two greenlets that each `std::thread::sleep(60 ms)` take together.
fn two_std_sleeps() -> Duration {
    let started = Instant::now();
    let sleepers: Vec<_> = (0..2)
        .map(|_| green::spawn(|| std::thread::sleep(Duration::from_millis(60))))
        .collect();
    for result in green::joinall(sleepers) {
        result.unwrap();
    }
    started.elapsed()
}

#[test]
fn the_hooks_do_nothing_until_all_and_green_patch_0_keeps_them_off() {
    assert!(!green::patch::enabled());
    assert!(
        two_std_sleeps() >= Duration::from_millis(115),
        "unpatched sleeps block the thread"
    );

    std::env::set_var("GREEN_PATCH", "0");
    assert!(!green::patch::all(), "GREEN_PATCH=0 keeps the hooks off");
    assert!(!green::patch::enabled());
    assert!(two_std_sleeps() >= Duration::from_millis(115));

    std::env::remove_var("GREEN_PATCH");
    assert!(green::patch::all());
    assert!(
        two_std_sleeps() < Duration::from_millis(115),
        "patched sleeps overlap"
    );
}
