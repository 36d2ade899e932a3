//! green::patch with the unchanged `mysql` crate (sync, pure std networking) against a real
//! MariaDB on loopback, started by scripts/services (`GREEN_TEST_MYSQL`): queries on their own
//! connections in 50 greenlets overlap on one thread, and a greenlet killed in a query ends
//! promptly.

use std::time::Instant;

use mysql::prelude::Queryable;

mod common;
use common::ms;
use common::services::{self, leaked_sockets, open_sockets, Budget};

fn opts(test: &str) -> Option<mysql::Opts> {
    assert!(
        green::patch::all(),
        "green::patch::all() must turn the hooks on"
    );
    let url = services::address("GREEN_TEST_MYSQL", test)?;
    Some(mysql::Opts::from_url(&url).expect("a mysql URL"))
}

#[test]
fn select_sleep_on_50_connections_in_50_greenlets_overlaps() {
    let _serial = services::serial();
    let Some(opts) = opts("select_sleep_on_50_connections_in_50_greenlets_overlaps") else {
        return;
    };
    let budget = Budget::new(ms(4_000));
    let sleepers: Vec<_> = (0..50)
        .map(|i| {
            let opts = opts.clone();
            green::spawn(move || -> Result<(i64, i64), String> {
                if budget.spent() {
                    return Err("budget spent before the query ran".into());
                }
                let mut conn = mysql::Conn::new(opts).map_err(|e| e.to_string())?;
                let slept: Option<i64> = conn
                    .query_first("SELECT SLEEP(0.2)")
                    .map_err(|e| e.to_string())?;
                let echoed: Option<i64> = conn
                    .exec_first("SELECT ? + 1", (i,))
                    .map_err(|e| e.to_string())?;
                Ok((slept.unwrap(), echoed.unwrap()))
            })
        })
        .collect();
    let results = green::joinall(sleepers);
    let elapsed = budget.elapsed();
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), Ok((0, i as i64 + 1)));
    }
    assert!(
        elapsed >= ms(200),
        "SELECT SLEEP(0.2) did not sleep: {elapsed:?}"
    );
    assert!(
        elapsed < ms(2_500),
        "50 × SELECT SLEEP(0.2) took {elapsed:?} (10 s in a row)"
    );
}

#[test]
fn greenlet_killed_in_select_sleep_ends_killed_promptly_without_leaking_its_socket() {
    let _serial = services::serial();
    let Some(opts) =
        opts("greenlet_killed_in_select_sleep_ends_killed_promptly_without_leaking_its_socket")
    else {
        return;
    };
    // The thread's hub (its poller and waker) exists before counting.
    green::sleep(ms(1));
    let sockets_before = open_sockets();
    let sleeper = green::spawn(move || {
        let mut conn = mysql::Conn::new(opts).unwrap();
        let slept: mysql::Result<Option<i64>> = conn.query_first("SELECT SLEEP(5)");
        slept.map_err(|e| e.to_string())
    });
    green::sleep(ms(300));
    let start = Instant::now();
    sleeper.kill();
    let result = sleeper.join();
    let kill_took = start.elapsed();
    assert!(
        matches!(result, Err(green::JoinError::Killed)),
        "a greenlet killed in SELECT SLEEP ends Killed, got {result:?}"
    );
    assert!(
        kill_took < ms(1_000),
        "the kill took {kill_took:?} (the query sleeps 5 s)"
    );
    assert_eq!(
        leaked_sockets(&sockets_before),
        Vec::<String>::new(),
        "the killed connection's fd leaked"
    );
}
