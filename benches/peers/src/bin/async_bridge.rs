//! green's async bridge side by side with tokio (issue 14): `block_on` of a ready future, a
//! cross-thread wake round trip to a greenlet waiting in `block_on`, and a trip to a tokio runtime
//! and back from blocking-style code.
//!
//! ```text
//! taskset -c 0,1 cargo run --release -p green-bench --bin async_bridge -- --runs 5
//! ```
//!
//! Each case runs `--runs` times (default 5) after a warm-up; the table shows medians in ns per
//! operation: thread CPU time for the single-threaded ready case (a loaded machine's preemptions
//! left out), wall time for the cross-thread ones.
//!
//! * ready: `green::block_on(ready(x))` in a greenlet and in the root context, against tokio's
//!   current-thread `Runtime::block_on(ready(x))`.
//! * wake round trip: two threads ping-pong through two `tokio::sync::Notify` (runtime-agnostic):
//!   each waits in `green::block_on` inside a greenlet on its own hub, against the same ping-pong
//!   between two tokio current-thread runtimes (each parked in its I/O driver, like a hub). One
//!   round trip is two cross-thread wakes.
//! * runtime round trip: spawn `async { x }` on a one-worker multi-thread tokio runtime and wait
//!   for its `JoinHandle`: from a greenlet with `green::tokio::block_on` (the greenlet waits on its
//!   hub), from a plain thread with `Handle::block_on` (the thread waits on a futex); and the way
//!   round for async code: `spawn_blocking(|| x).await` from a task, and awaiting a greenlet on a
//!   hub thread (`HubThread::spawn(|| x).await`).

use std::future::{ready, Future};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use green_bench::{loadavg, median};
use tokio::sync::Notify;

struct Args {
    runs: usize,
    /// Only this case (`ready`, `wake`, `trip`), or all.
    case: Option<String>,
    ready_n: u64,
    wake_n: u64,
    trip_n: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        runs: 5,
        case: None,
        ready_n: 10_000_000,
        wake_n: 100_000,
        trip_n: 50_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{flag} needs a number")))
        };
        match flag.as_str() {
            "--runs" => args.runs = value() as usize,
            "--case" => args.case = it.next(),
            "--ready-n" => args.ready_n = value(),
            "--wake-n" => args.wake_n = value(),
            "--trip-n" => args.trip_n = value(),
            "--help" | "-h" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("async_bridge: {problem}");
    }
    eprintln!(
        "usage: async_bridge [--case ready|wake|trip] [--runs R] [--ready-n N] [--wake-n N] \
         [--trip-n N]"
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}

/// The calling thread's CPU time: a shared, loaded machine takes the CPU away from a
/// single-threaded loop now and then, which wall time would count.
fn thread_cpu_time() -> std::time::Duration {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    std::time::Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32)
}

/// CPU nanoseconds (of the calling thread) per iteration of `f(n)`; `f` must run on it.
fn cpu_per_op(n: u64, f: impl FnOnce(u64)) -> f64 {
    let start = thread_cpu_time();
    f(n);
    (thread_cpu_time() - start).as_nanos() as f64 / n as f64
}

/// Nanoseconds per iteration of `f(n)`.
fn per_op(n: u64, f: impl FnOnce(u64)) -> f64 {
    let start = Instant::now();
    f(n);
    start.elapsed().as_nanos() as f64 / n as f64
}

fn green_ready_root(n: u64) {
    for i in 0..n {
        black_box(green::block_on(ready(black_box(i))));
    }
}

/// The floor: polling a ready future with a no-op waker, no executor at all.
fn noop_waker_poll(n: u64) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for i in 0..n {
        let mut future = std::pin::pin!(ready(black_box(i)));
        let _ = black_box(future.as_mut().poll(&mut cx));
    }
}

/// In a greenlet on this thread (so the thread's CPU time covers it).
fn green_ready_greenlet(n: u64) {
    green::spawn(move || green_ready_root(n)).join().unwrap();
}

fn tokio_ready(n: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for i in 0..n {
        black_box(runtime.block_on(ready(black_box(i))));
    }
}

/// Two hub threads ping-pong `n` times, each side waiting in `green::block_on` in a greenlet.
fn green_wake_round_trip(n: u64) {
    let (ping, pong) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let echo = std::thread::spawn(move || {
        green::spawn(move || {
            for _ in 0..n {
                green::block_on(ping2.notified());
                pong2.notify_one();
            }
        })
        .join()
        .unwrap();
    });
    green::spawn(move || {
        for _ in 0..n {
            ping.notify_one();
            green::block_on(pong.notified());
        }
    })
    .join()
    .unwrap();
    echo.join().unwrap();
}

/// The same ping-pong between two tokio current-thread runtimes.
fn tokio_wake_round_trip(n: u64) {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let (ping, pong) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let echo_runtime = runtime();
    let echo = std::thread::spawn(move || {
        echo_runtime.block_on(async move {
            for _ in 0..n {
                ping2.notified().await;
                pong2.notify_one();
            }
        })
    });
    runtime().block_on(async move {
        for _ in 0..n {
            ping.notify_one();
            pong.notified().await;
        }
    });
    echo.join().unwrap();
}

fn green_tokio_trip(n: u64) {
    let handle = green::tokio::handle();
    green::spawn(move || {
        for i in 0..n {
            black_box(green::tokio::block_on(handle.spawn(async move { i })).unwrap());
        }
    })
    .join()
    .unwrap();
}

fn handle_block_on_trip(n: u64) {
    let handle = green::tokio::handle();
    std::thread::spawn(move || {
        for i in 0..n {
            black_box(handle.block_on(handle.spawn(async move { i })).unwrap());
        }
    })
    .join()
    .unwrap();
}

fn spawn_blocking_trip(n: u64) {
    let handle = green::tokio::handle();
    handle
        .block_on(handle.spawn(async move {
            for i in 0..n {
                black_box(tokio::task::spawn_blocking(move || i).await.unwrap());
            }
        }))
        .unwrap();
}

fn remote_greenlet_trip(n: u64, hub: &green::HubThread) {
    let handle = green::tokio::handle();
    let hub = hub.handle().clone();
    handle
        .block_on(handle.spawn(async move {
            for i in 0..n {
                black_box(hub.spawn_threadsafe(move || i).unwrap().await.unwrap());
            }
        }))
        .unwrap();
}

fn measure(runs: usize, mut once: impl FnMut() -> f64) -> f64 {
    once(); // warm-up
    median((0..runs).map(|_| once()).collect())
}

fn main() {
    let args = parse_args();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# green async bridge\n\nruns per cell = {} (median), CPUs allowed = {cpus}, load average \
         before: {}\n",
        args.runs,
        loadavg()
    );
    let r = args.runs;
    let run = |case: &str| args.case.as_deref().is_none_or(|only| only == case);
    println!("| case | green | tokio | green ÷ tokio | target |");
    println!("|---|---:|---:|---:|---|");
    if run("ready") {
        let root = measure(r, || cpu_per_op(args.ready_n, green_ready_root));
        let greenlet = measure(r, || cpu_per_op(args.ready_n, green_ready_greenlet));
        let tokio = measure(r, || cpu_per_op(args.ready_n, tokio_ready));
        let floor = measure(r, || cpu_per_op(args.ready_n, noop_waker_poll));
        println!(
            "| `block_on` of a ready future, root context | {root:.1} ns | {tokio:.1} ns | {:.2} | ≤ 20 ns |",
            root / tokio
        );
        println!(
            "| `block_on` of a ready future, in a greenlet | {greenlet:.1} ns | {tokio:.1} ns | {:.2} | ≤ 20 ns |",
            greenlet / tokio
        );
        println!("| floor: one poll with a no-op waker, no executor | {floor:.1} ns | | | |");
    }
    if run("wake") {
        let green = measure(r, || per_op(args.wake_n, green_wake_round_trip));
        let tokio = measure(r, || per_op(args.wake_n, tokio_wake_round_trip));
        println!(
            "| cross-thread wake round trip (two wakes) | {green:.0} ns | {tokio:.0} ns | {:.2} | ≤ 1.5 |",
            green / tokio
        );
    }
    if run("trip") {
        let green = measure(r, || per_op(args.trip_n, green_tokio_trip));
        let handle = measure(r, || per_op(args.trip_n, handle_block_on_trip));
        let blocking = measure(r, || per_op(args.trip_n, spawn_blocking_trip));
        let hub = green::spawn_hub();
        let remote = measure(r, || per_op(args.trip_n, |n| remote_greenlet_trip(n, &hub)));
        hub.stop();
        println!(
            "| runtime round trip: `green::tokio::block_on(spawn)` in a greenlet vs `Handle::block_on` from a thread | {green:.0} ns | {handle:.0} ns | {:.2} | — |",
            green / handle
        );
        println!(
            "| async → blocking → async: `HubThread` greenlet `.await` vs `spawn_blocking(..).await` | {remote:.0} ns | {blocking:.0} ns | {:.2} | — |",
            remote / blocking
        );
    }
    println!("\nload average after: {}", loadavg());
}
