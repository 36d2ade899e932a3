//! green::patch with the unchanged `redis` crate (its sync API) against a real redis-server on
//! loopback, started by scripts/services (`GREEN_TEST_REDIS`): blocking commands in hundreds of
//! greenlets overlap on one thread, and a greenlet killed inside one ends promptly.

use std::time::Instant;

use redis::Commands;

mod common;
use common::ms;
use common::services::{self, leaked_sockets, open_sockets, raise_fd_limit, watchdog, Budget};

fn client(test: &str) -> Option<redis::Client> {
    assert!(
        green::patch::all(),
        "green::patch::all() must turn the hooks on"
    );
    let url = services::address("GREEN_TEST_REDIS", test)?;
    Some(redis::Client::open(url).expect("a redis URL"))
}

#[test]
fn blpop_with_1s_timeout_in_200_greenlets_takes_about_1s_in_all() {
    let _serial = services::serial();
    let Some(client) = client("blpop_with_1s_timeout_in_200_greenlets_takes_about_1s_in_all")
    else {
        return;
    };
    raise_fd_limit(1_024);
    let key = services::unique_key("empty-list");
    let budget = Budget::new(ms(5_000));
    let poppers: Vec<_> = (0..200)
        .map(|_| {
            let client = client.clone();
            let key = key.clone();
            green::spawn(move || {
                if budget.spent() {
                    return Err("budget spent before BLPOP ran".to_string());
                }
                let mut connection = client.get_connection().map_err(|e| e.to_string())?;
                let popped: Option<(String, String)> = redis::cmd("BLPOP")
                    .arg(&key)
                    .arg(1)
                    .query(&mut connection)
                    .map_err(|e| e.to_string())?;
                Ok(popped)
            })
        })
        .collect();
    for popped in green::joinall(poppers) {
        assert_eq!(
            popped.unwrap(),
            Ok(None),
            "BLPOP on an empty list times out"
        );
    }
    let elapsed = budget.elapsed();
    assert!(
        elapsed >= ms(950),
        "BLPOP returned before its timeout: {elapsed:?}"
    );
    assert!(elapsed < ms(3_000), "200 BLPOPs of 1 s took {elapsed:?}");
}

#[test]
fn get_and_set_from_1000_greenlets_return_the_right_values() {
    let _serial = services::serial();
    let Some(client) = client("get_and_set_from_1000_greenlets_return_the_right_values") else {
        return;
    };
    raise_fd_limit(4_096);
    let _watchdog = watchdog(
        "get_and_set_from_1000_greenlets_return_the_right_values",
        ms(60_000),
    );
    let prefix = services::unique_key("value");
    let workers: Vec<_> = (0..1_000)
        .map(|i| {
            let client = client.clone();
            let key = format!("{prefix}-{i}");
            green::spawn(move || -> redis::RedisResult<(String, i64)> {
                let mut connection = client.get_connection()?;
                let () = connection.set_ex(&key, format!("value {i}"), 60)?;
                green::yield_now();
                let value: String = connection.get(&key)?;
                let counter: i64 = connection.incr(format!("{key}-counter"), i)?;
                let _: i64 = connection.del((&key, format!("{key}-counter")))?;
                Ok((value, counter))
            })
        })
        .collect();
    for (i, result) in green::joinall(workers).into_iter().enumerate() {
        let (value, counter) = result.unwrap().unwrap();
        assert_eq!(value, format!("value {i}"));
        assert_eq!(counter, i as i64);
    }
}

#[test]
fn greenlet_killed_in_blpop_ends_killed_promptly_without_leaking_its_socket() {
    let _serial = services::serial();
    let Some(client) =
        client("greenlet_killed_in_blpop_ends_killed_promptly_without_leaking_its_socket")
    else {
        return;
    };
    let key = services::unique_key("kill");
    // The thread's hub (its poller and waker) exists before counting.
    green::sleep(ms(1));
    let sockets_before = open_sockets();
    let popper = green::spawn(move || {
        let mut connection = client.get_connection().unwrap();
        let popped: redis::RedisResult<Option<(String, String)>> =
            redis::cmd("BLPOP").arg(&key).arg(5).query(&mut connection);
        popped.map_err(|e| e.to_string())
    });
    green::sleep(ms(200));
    let start = Instant::now();
    popper.kill();
    let result = popper.join();
    let kill_took = start.elapsed();
    assert!(
        matches!(result, Err(green::JoinError::Killed)),
        "a greenlet killed in BLPOP ends Killed, got {result:?}"
    );
    assert!(
        kill_took < ms(1_000),
        "the kill took {kill_took:?} (BLPOP waits 5 s)"
    );
    assert_eq!(
        leaked_sockets(&sockets_before),
        Vec::<String>::new(),
        "the killed connection's fd leaked"
    );
}
