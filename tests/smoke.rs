use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

#[test]
fn yield_interleaves_two_greenlets() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let gs: Vec<_> = (1..=2)
        .map(|i| {
            let log = log.clone();
            green::spawn(move || {
                log.borrow_mut().push(format!("{i}A"));
                green::yield_now();
                log.borrow_mut().push(format!("{i}B"));
            })
        })
        .collect();
    green::joinall(gs);
    assert_eq!(*log.borrow(), ["1A", "2A", "1B", "2B"]);
}

#[test]
fn sleep_and_join() {
    let g = green::spawn(|| {
        green::sleep(Duration::from_millis(20));
        42
    });
    assert_eq!(g.join().unwrap(), 42);
}

#[test]
fn timeout_interrupts_yield_loop() {
    let r = green::with_timeout(Duration::from_millis(20), || loop {
        green::yield_now()
    });
    assert!(r.is_err());
}

#[test]
fn kill_sleeping() {
    let g = green::spawn(|| green::sleep(Duration::from_secs(10)));
    green::sleep(Duration::from_millis(1));
    g.kill();
    assert!(g.join().unwrap_err().is_killed());
}

#[test]
fn deadlock_is_reported() {
    let g = green::spawn(|| {
        let w = green::hub::current_waiter();
        let _ = green::hub::park();
        drop(w);
    });
    let e = g.join().unwrap_err();
    assert!(matches!(e, green::JoinError::LoopExit(_)), "{e}");
}
