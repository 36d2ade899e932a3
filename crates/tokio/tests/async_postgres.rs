//! tokio-postgres (async only) queried from greenlets through `green::tokio::block_on`.
//!
//! PostgreSQL comes from the test environment: `GREEN_TEST_POSTGRES` holds its address in libpq's
//! key=value form (`host=127.0.0.1 port=5433 user=postgres`); scripts/test starts one on loopback
//! and exports it. Without it the tests say they are skipped, unless `GREEN_REQUIRE_SERVICES=1`.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config, NoTls};

/// The configured server, or `None` (after saying so) when the tests may skip.
fn postgres_config() -> Option<Config> {
    match std::env::var("GREEN_TEST_POSTGRES") {
        Ok(spec) => Some(
            spec.parse()
                .unwrap_or_else(|e| panic!("GREEN_TEST_POSTGRES={spec:?}: {e}")),
        ),
        Err(_) if std::env::var("GREEN_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("GREEN_TEST_POSTGRES not set and GREEN_REQUIRE_SERVICES=1")
        }
        Err(_) => {
            println!("SKIPPED: GREEN_TEST_POSTGRES not set");
            None
        }
    }
}

/// Connects from the calling greenlet; the connection's task runs on the helper runtime.
fn connect(config: &Config) -> Client {
    let config = config.clone();
    green::tokio::block_on(async move {
        let (client, connection) = config.connect(NoTls).await.expect("connect to PostgreSQL");
        green::tokio::spawn(connection);
        client
    })
}

#[test]
fn fifty_greenlets_sleeping_in_postgres_overlap() {
    let Some(config) = postgres_config() else {
        return;
    };
    const GREENLETS: i32 = 50;
    let start = Instant::now();
    let greenlets: Vec<_> = (0..GREENLETS)
        .map(|i| {
            let config = config.clone();
            green::spawn(move || {
                let client = connect(&config);
                let row = green::tokio::block_on(
                    client.query_one("SELECT $1::INT4 FROM pg_sleep(0.2)", &[&i]),
                )
                .expect("query");
                row.get::<_, i32>(0)
            })
        })
        .collect();
    let answers: Vec<i32> = green::joinall(greenlets)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let elapsed = start.elapsed();
    println!("50 × pg_sleep(0.2) from 50 greenlets: {elapsed:?}");
    assert_eq!(answers, (0..GREENLETS).collect::<Vec<_>>());
    // One after another: 50 × 0.2 s = 10 s.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[test]
fn with_timeout_abandons_a_slow_query_on_time() {
    let Some(config) = postgres_config() else {
        return;
    };
    let client = connect(&config);
    let start = Instant::now();
    let result = green::with_timeout(Duration::from_millis(100), || {
        green::tokio::block_on(client.simple_query("SELECT pg_sleep(5)"))
    });
    assert_eq!(result.err(), Some(green::Elapsed));
    assert!(start.elapsed() < Duration::from_secs(1));
    // The abandoned query still runs server-side on its connection (tokio-postgres does not
    // cancel it); another connection is answered at once.
    let other = connect(&config);
    let row = green::tokio::block_on(other.query_one("SELECT 40 + 2", &[])).unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
}
