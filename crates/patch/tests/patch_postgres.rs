//! green::patch with the unchanged `postgres` crate (a sync `Client` with a tokio runtime inside)
//! against a real PostgreSQL on loopback, started by scripts/services (`GREEN_TEST_POSTGRES`).
//!
//! The patch does not divert `epoll_wait`, so a `postgres::Client` blocks its thread while tokio
//! waits inside it: greenlets using it are correct but serialised (green-patch's documented
//! behaviour), and never make tokio panic.

use std::time::Instant;

mod common;
use common::ms;
use common::services::{self, leaked_sockets, open_sockets, watchdog};

fn config(test: &str) -> Option<String> {
    assert!(
        green::patch::all(),
        "green::patch::all() must turn the hooks on"
    );
    services::address("GREEN_TEST_POSTGRES", test)
}

#[test]
fn sync_client_in_20_greenlets_answers_every_query_correctly() {
    let _serial = services::serial();
    let Some(config) = config("sync_client_in_20_greenlets_answers_every_query_correctly") else {
        return;
    };
    let _watchdog = watchdog(
        "sync_client_in_20_greenlets_answers_every_query_correctly",
        ms(60_000),
    );
    let workers: Vec<_> = (0..20i32)
        .map(|i| {
            let config = config.clone();
            green::spawn(move || -> Result<Vec<i32>, postgres::Error> {
                let mut client = postgres::Client::connect(&config, postgres::NoTls)?;
                let mut answers = Vec::new();
                for j in 0..5i32 {
                    let row = client.query_one("SELECT $1::INT4 * 100 + $2::INT4", &[&i, &j])?;
                    answers.push(row.get(0));
                    // Give the other greenlets a turn between queries.
                    green::yield_now();
                }
                let slept = client.query_one("SELECT pg_sleep(0.01)::TEXT = ''", &[])?;
                assert!(slept.get::<_, bool>(0));
                client.close()?;
                Ok(answers)
            })
        })
        .collect();
    for (i, result) in green::joinall(workers).into_iter().enumerate() {
        let answers = result
            .unwrap_or_else(|e| panic!("greenlet {i} panicked: {:?}", e.panic_message()))
            .unwrap_or_else(|e| panic!("greenlet {i}: {e}"));
        let expected: Vec<i32> = (0..5).map(|j| i as i32 * 100 + j).collect();
        assert_eq!(answers, expected);
    }
}

/// The issue asks for this, but green-patch's own design rules it out: tokio waits for the reply
/// in `epoll_wait`, which the patch does not divert, so the thread is blocked for the whole
/// `pg_sleep` and nothing on it can deliver the kill until the query has returned. Run it with
/// `--ignored` to see (the greenlet finishes after 5 s instead of ending `Killed`).
#[test]
#[ignore = "by design: postgres blocks its thread inside tokio's epoll_wait, so a kill waits for the query"]
fn greenlet_killed_in_pg_sleep_ends_killed_promptly_without_leaking_its_socket() {
    let _serial = services::serial();
    let Some(config) =
        config("greenlet_killed_in_pg_sleep_ends_killed_promptly_without_leaking_its_socket")
    else {
        return;
    };
    // The thread's hub (its poller and waker) exists before counting.
    green::sleep(ms(1));
    let sockets_before = open_sockets();
    let start = Instant::now();
    let sleeper = green::spawn(move || {
        let mut client = postgres::Client::connect(&config, postgres::NoTls).unwrap();
        let slept = client.query_one("SELECT pg_sleep(5)::TEXT", &[]);
        slept.map(|_| ()).map_err(|e| e.to_string())
    });
    green::sleep(ms(300));
    sleeper.kill();
    let result = sleeper.join();
    let took = start.elapsed();
    assert!(
        matches!(result, Err(green::JoinError::Killed)),
        "a greenlet killed in pg_sleep ends Killed, got {result:?}"
    );
    assert!(
        took < ms(1_500),
        "the kill ended the greenlet after {took:?} (pg_sleep waits 5 s)"
    );
    assert_eq!(
        leaked_sockets(&sockets_before),
        Vec::<String>::new(),
        "the killed client's fds leaked"
    );
}
