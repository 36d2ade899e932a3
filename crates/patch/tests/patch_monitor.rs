//! The blocking monitor under green::patch: a greenlet that blocks the thread in a futex wait
//! (a std::sync::Mutex another greenlet holds across a patched call) is reported with the
//! greenlets suspended inside patched calls, its likely holders.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn a_futex_wait_is_reported_with_the_greenlets_suspended_in_patched_calls() {
    assert!(green::patch::all());
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    green::monitor::enable(
        Duration::from_millis(50),
        Some(Box::new(move |report| {
            sink.lock().unwrap().push(report.clone())
        })),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();

    let lock = Arc::new(Mutex::new(0));
    let held = lock.clone();
    let holder = green::Builder::new().name("lock-holder").spawn(move || {
        let _guard = held.lock().unwrap();
        let mut byte = [0u8; 1];
        client.read_exact(&mut byte).unwrap(); // suspended in a patched call, lock held
    });
    let blocker = green::Builder::new().name("futex-waiter").spawn(|| {
        // Stands for `lock.lock()` (which would deadlock the thread for good): a futex wait.
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            std::thread::park_timeout(Duration::from_millis(300) - started.elapsed());
        }
    });
    let writer = green::spawn(move || {
        green::sleep(Duration::from_millis(20));
        server.write_all(b"x").unwrap();
    });
    blocker.join().unwrap();
    writer.join().unwrap();
    holder.join().unwrap();
    green::monitor::disable();
    drop(lock);

    let reports = reports.lock().unwrap();
    let report = reports
        .iter()
        .find(|r| r.greenlet == "futex-waiter")
        .unwrap_or_else(|| panic!("no report for the futex waiter: {reports:?}"));
    assert!(report.in_futex_wait, "{report}");
    assert_eq!(
        report.suspended_in_patched_calls,
        ["lock-holder"],
        "{report}"
    );
    let text = report.to_string();
    assert!(
        text.contains("lock-holder") && text.contains("green::sync::Lock"),
        "{text}"
    );
}
