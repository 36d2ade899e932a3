//! green's runtime side by side with tokio (current-thread), may (1 worker) and std threads.
//!
//! Issue 2 §8: spawn+join, hand-off between two tasks (yield / event / queue ping-pong), one million
//! live greenlets (time to spawn, peak RSS each) and one million concurrent sleeps. Each case runs
//! `--runs` times (default 3) per peer and the median is printed in a markdown table with the ratio
//! green/peer (below 1: green is faster or smaller).
//!
//! ```text
//! taskset -c 1 cargo run --release -p green-bench --bin runtime                 # everything
//! taskset -c 1 cargo run --release -p green-bench --bin runtime -- --case spawn --n 100000
//! ```
//!
//! The floor case measures corosensei alone (no green code): a two-coroutine hand-off through a
//! `VecDeque`, and spawn+join with one bare coroutine per small record; it says how much of the
//! other rows any design built on corosensei and malloc pays on this machine.
//!
//! The live and sleep cases run each peer in a child process (this binary re-executed with
//! `--child`), so that every peer starts from a clean heap and its peak RSS is its own.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use green_bench::loadavg;

/// may's stack size, in machine words (may's unit): 0x1000 words = 32 KiB, may's own default.
const MAY_STACK_WORDS: usize = 0x1000;
/// std threads are far too slow for a million spawns: this many, reported per thread.
const STD_SPAWN_THREADS: usize = 10_000;
/// std hand-offs go through the kernel scheduler (µs each): at most this many.
const STD_HANDOFFS: usize = 100_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    Green,
    Tokio,
    May,
    Std,
}

const PEERS: [Peer; 4] = [Peer::Green, Peer::Tokio, Peer::May, Peer::Std];

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Green => "green",
            Peer::Tokio => "tokio",
            Peer::May => "may",
            Peer::Std => "std",
        }
    }

    fn parse(text: &str) -> Option<Peer> {
        PEERS.into_iter().find(|p| p.name() == text)
    }
}

/// One measured cell: the median of the runs, or why there is none.
#[derive(Clone, Debug)]
enum Cellv {
    Value(f64),
    /// A value measured on fewer tasks than asked, and why.
    Partial(f64, String),
    Failed(String),
    Skipped(&'static str),
}

/// One line of the table: a metric measured for each peer.
struct Row {
    metric: String,
    unit: &'static str,
    cells: Vec<(Peer, Cellv)>,
}

impl Row {
    fn new(metric: impl Into<String>, unit: &'static str) -> Row {
        Row {
            metric: metric.into(),
            unit,
            cells: Vec::new(),
        }
    }

    fn get(&self, peer: Peer) -> Option<&Cellv> {
        self.cells.iter().find(|(p, _)| *p == peer).map(|(_, c)| c)
    }
}

struct Args {
    case: Option<String>,
    n: usize,
    runs: usize,
    peers: Vec<Peer>,
    child: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        case: None,
        n: 1_000_000,
        runs: 3,
        peers: PEERS.to_vec(),
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--case" => args.case = Some(value()),
            "--n" => args.n = value().parse().unwrap_or_else(|_| usage("bad --n")),
            "--runs" => args.runs = value().parse().unwrap_or_else(|_| usage("bad --runs")),
            "--peers" => {
                args.peers = value()
                    .split(',')
                    .map(|p| Peer::parse(p).unwrap_or_else(|| usage("bad --peers")))
                    .collect()
            }
            "--child" => args.child = Some(value()),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if let Some(case) = &args.case {
        if !["spawn", "handoff", "live", "sleep", "floor"].contains(&case.as_str()) {
            usage("--case is one of spawn, handoff, live, sleep, floor");
        }
    }
    args
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("runtime: {problem}");
    }
    eprintln!(
        "usage: runtime [--case spawn|handoff|live|sleep|floor] [--n N] [--runs R] \
         [--peers green,tokio,may,std]"
    );
    std::process::exit(2)
}

fn main() {
    let args = parse_args();
    may::config()
        .set_workers(1)
        .set_stack_size(MAY_STACK_WORDS)
        .set_worker_pin(false);
    if let Some(child) = &args.child {
        return run_child(child, args.n);
    }
    let cpus = allowed_cpus();
    println!(
        "# green runtime benchmarks\n\nn = {}, runs per cell = {} (median), CPUs allowed = {cpus}, \
         load before: {}",
        args.n,
        args.runs,
        loadavg()
    );
    let wanted = |case: &str| args.case.as_deref().is_none_or(|c| c == case);
    let mut rows = Vec::new();
    if wanted("spawn") {
        rows.push(case_spawn(&args));
    }
    if wanted("handoff") {
        rows.extend(case_handoff(&args, cpus));
    }
    if wanted("live") {
        rows.extend(case_live(&args));
    }
    if wanted("sleep") {
        rows.extend(case_sleep(&args));
    }
    let floors = wanted("floor").then(|| case_floor(&args));
    println!("\nload after: {}\n", loadavg());
    print_table(&rows, &args.peers);
    if let Some(floors) = floors {
        println!("\n| floor (corosensei alone, no green code) | unit | value |\n|---|---|---:|");
        for (what, unit, value) in floors {
            println!("| {what} | {unit} | {value:.1} |");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Floors: corosensei alone

/// `(what, unit, median)` for the two floors.
fn case_floor(args: &Args) -> Vec<(String, &'static str, f64)> {
    let n = args.n;
    let value = |cell: Cellv| match cell {
        Cellv::Value(v) => v,
        _ => f64::NAN,
    };
    eprintln!("floor: hand-off");
    let handoff = value(median(args.runs, || Ok(floor_handoff(n))));
    eprintln!("floor: spawn+join");
    let spawn = value(median(args.runs, || Ok(floor_spawn(n))));
    vec![
        (
            format!("hand-off: 2 coroutines x {n} suspends, resumed by a loop popping a VecDeque"),
            "ns/hand-off",
            handoff,
        ),
        (
            format!("spawn+join: {n} records of 112 bytes, one coroutine each on a reused stack"),
            "ns/task",
            spawn,
        ),
    ]
}

/// The least a hub-mediated hand-off can cost: each coroutine queues its index and suspends; a
/// loop pops the next index and resumes it.
fn floor_handoff(n: usize) -> f64 {
    use corosensei::{Coroutine, CoroutineResult, Yielder};
    use std::cell::RefCell;
    use std::collections::VecDeque;
    let ready = Rc::new(RefCell::new(VecDeque::from([0usize, 1])));
    let mut coroutines: Vec<Coroutine<(), (), ()>> = (0..2)
        .map(|index| {
            let ready = ready.clone();
            Coroutine::new(move |yielder: &Yielder<(), ()>, ()| {
                for _ in 0..n {
                    ready.borrow_mut().push_back(index);
                    yielder.suspend(());
                }
            })
        })
        .collect();
    let start = Instant::now();
    loop {
        let next = ready.borrow_mut().pop_front();
        let Some(index) = next else { break };
        if let CoroutineResult::Return(()) = coroutines[index].resume(()) {
            continue;
        }
    }
    ns_per(start.elapsed(), 2 * n)
}

/// The least a spawn+join can cost with one malloc'd record per task: all records made first
/// (as the spawn case does), then each run to completion on a fresh coroutine over one reused
/// stack, then every result read.
fn floor_spawn(n: usize) -> f64 {
    use corosensei::stack::DefaultStack;
    use corosensei::{Coroutine, Yielder};
    struct Record<F> {
        result: Cell<Option<usize>>,
        body: Cell<Option<F>>,
        /// A state word, joiner, id and links, as a minimal task record would hold.
        _bookkeeping: [u64; 10],
    }
    let mut stack = Some(DefaultStack::new(64 * 1024).expect("stack"));
    let start = Instant::now();
    let records: Vec<_> = (0..n)
        .map(|i| {
            Rc::new(Record {
                result: Cell::new(None),
                body: Cell::new(Some(move || i)),
                _bookkeeping: [0; 10],
            })
        })
        .collect();
    for record in &records {
        let running = record.clone();
        let mut coroutine = Coroutine::with_stack(
            stack.take().expect("the stack is returned after each run"),
            move |_: &Yielder<(), ()>, ()| {
                let body = running.body.take().expect("runs once");
                running.result.set(Some(body()));
            },
        );
        coroutine.resume(());
        stack = Some(coroutine.into_stack());
    }
    let sum: usize = records
        .into_iter()
        .map(|r| r.result.take().expect("ran"))
        .sum();
    let elapsed = start.elapsed();
    assert_eq!(sum, expected_sum(n));
    ns_per(elapsed, n)
}

/// Runs `f` `runs` times and returns the median, or the first failure.
fn median(runs: usize, mut f: impl FnMut() -> Result<f64, String>) -> Cellv {
    let mut values = Vec::new();
    for _ in 0..runs.max(1) {
        match f() {
            Ok(v) => values.push(v),
            Err(e) => return Cellv::Failed(e),
        }
    }
    values.sort_by(|a, b| a.total_cmp(b));
    Cellv::Value(values[values.len() / 2])
}

fn ns_per(elapsed: Duration, ops: usize) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// 1. spawn + join
// ---------------------------------------------------------------------------------------------

fn case_spawn(args: &Args) -> Row {
    let n = args.n;
    let mut row = Row::new(
        format!(
            "spawn+join, {n} tasks (std: {} threads)",
            STD_SPAWN_THREADS.min(n)
        ),
        "ns/task",
    );
    for &peer in &args.peers {
        eprintln!("spawn: {}", peer.name());
        let cell = median(args.runs, || match peer {
            Peer::Green => Ok(spawn_green(n)),
            Peer::Tokio => Ok(spawn_tokio(n)),
            Peer::May => spawn_may(n),
            Peer::Std => Ok(spawn_std(STD_SPAWN_THREADS.min(n))),
        });
        row.cells.push((peer, cell));
    }
    row
}

fn expected_sum(n: usize) -> usize {
    n * (n - 1) / 2
}

fn spawn_green(n: usize) -> f64 {
    let start = Instant::now();
    let greenlets: Vec<_> = (0..n).map(|i| green::spawn(move || i)).collect();
    let mut sum = 0;
    for g in greenlets {
        sum += g.join().expect("greenlet");
    }
    let elapsed = start.elapsed();
    assert_eq!(sum, expected_sum(n));
    ns_per(elapsed, n)
}

fn spawn_tokio(n: usize) -> f64 {
    let rt = current_thread_runtime();
    rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..n).map(|i| tokio::spawn(async move { i })).collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.expect("tokio task");
        }
        let elapsed = start.elapsed();
        assert_eq!(sum, expected_sum(n));
        ns_per(elapsed, n)
    })
}

fn spawn_may(n: usize) -> Result<f64, String> {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let spawned = std::panic::catch_unwind(|| may::go!(move || i));
        match spawned {
            Ok(h) => handles.push(h),
            Err(_) => return Err(format!("spawn {i} panicked")),
        }
    }
    let mut sum = 0;
    for h in handles {
        sum += h.join().map_err(|_| "may coroutine panicked".to_string())?;
    }
    let elapsed = start.elapsed();
    assert_eq!(sum, expected_sum(n));
    Ok(ns_per(elapsed, n))
}

fn spawn_std(n: usize) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..n).map(|i| std::thread::spawn(move || i)).collect();
    let mut sum = 0;
    for h in handles {
        sum += h.join().expect("thread");
    }
    let elapsed = start.elapsed();
    assert_eq!(sum, expected_sum(n));
    ns_per(elapsed, n)
}

// ---------------------------------------------------------------------------------------------
// 2. hand-off: two tasks ping-pong; each switch from one to the other is one hand-off
// ---------------------------------------------------------------------------------------------

fn case_handoff(args: &Args, cpus: usize) -> Vec<Row> {
    let n = args.n;
    let std_n = STD_HANDOFFS.min(n);
    let mut yield_row = Row::new(
        format!("hand-off by yield_now, 2 tasks x {n} yields (std: sched_yield, {std_n})"),
        "ns/hand-off",
    );
    let mut event_row = Row::new(
        format!(
            "hand-off by event pair, {n} round trips (green Event, tokio Notify, may Semphore)"
        ),
        "ns/hand-off",
    );
    let mut queue_row = Row::new(
        format!("hand-off by queue pair, {n} round trips (std: mpsc, {std_n})"),
        "ns/hand-off",
    );
    for &peer in &args.peers {
        eprintln!("handoff: {}", peer.name());
        let runs = args.runs;
        let (y, e, q) = match peer {
            Peer::Green => (
                median(runs, || Ok(handoff_yield_green(n))),
                median(runs, || Ok(handoff_event_green(n))),
                median(runs, || Ok(handoff_queue_green(n))),
            ),
            Peer::Tokio => (
                median(runs, || Ok(handoff_yield_tokio(n))),
                median(runs, || Ok(handoff_event_tokio(n))),
                median(runs, || Ok(handoff_queue_tokio(n))),
            ),
            Peer::May => (
                median(runs, || Ok(handoff_yield_may(n))),
                median(runs, || Ok(handoff_event_may(n))),
                median(runs, || Ok(handoff_queue_may(n))),
            ),
            Peer::Std => (
                if cpus == 1 {
                    median(runs, || Ok(handoff_yield_std(std_n)))
                } else {
                    Cellv::Skipped("needs 1 CPU (taskset)")
                },
                Cellv::Skipped("no event type"),
                median(runs, || Ok(handoff_queue_std(std_n))),
            ),
        };
        yield_row.cells.push((peer, y));
        event_row.cells.push((peer, e));
        queue_row.cells.push((peer, q));
    }
    vec![yield_row, event_row, queue_row]
}

fn handoff_yield_green(n: usize) -> f64 {
    let turns = Rc::new(Cell::new(0usize));
    let start = Instant::now();
    let players: Vec<_> = (0..2)
        .map(|_| {
            let turns = turns.clone();
            green::spawn(move || {
                for _ in 0..n {
                    turns.set(turns.get() + 1);
                    green::yield_now();
                }
            })
        })
        .collect();
    for p in players {
        p.join().expect("player");
    }
    let elapsed = start.elapsed();
    assert_eq!(turns.get(), 2 * n);
    ns_per(elapsed, 2 * n)
}

fn handoff_yield_tokio(n: usize) -> f64 {
    let rt = current_thread_runtime();
    rt.block_on(async move {
        let turns = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let players: Vec<_> = (0..2)
            .map(|_| {
                let turns = turns.clone();
                tokio::spawn(async move {
                    for _ in 0..n {
                        turns.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for p in players {
            p.await.expect("player");
        }
        let elapsed = start.elapsed();
        assert_eq!(turns.load(Ordering::Relaxed), 2 * n);
        ns_per(elapsed, 2 * n)
    })
}

fn handoff_yield_may(n: usize) -> f64 {
    let turns = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let players: Vec<_> = (0..2)
        .map(|_| {
            let turns = turns.clone();
            may::go!(move || {
                for _ in 0..n {
                    turns.fetch_add(1, Ordering::Relaxed);
                    may::coroutine::yield_now();
                }
            })
        })
        .collect();
    for p in players {
        p.join().expect("player");
    }
    let elapsed = start.elapsed();
    assert_eq!(turns.load(Ordering::Relaxed), 2 * n);
    ns_per(elapsed, 2 * n)
}

fn handoff_yield_std(n: usize) -> f64 {
    let start = Instant::now();
    let players: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..n {
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    for p in players {
        p.join().expect("player");
    }
    ns_per(start.elapsed(), 2 * n)
}

fn handoff_event_green(n: usize) -> f64 {
    use green::sync::Event;
    let (ping, pong) = (Event::new(), Event::new());
    let start = Instant::now();
    let a = {
        let (ping, pong) = (ping.clone(), pong.clone());
        green::spawn(move || {
            for _ in 0..n {
                ping.set();
                pong.wait();
                pong.clear();
            }
        })
    };
    let b = green::spawn(move || {
        for _ in 0..n {
            ping.wait();
            ping.clear();
            pong.set();
        }
    });
    a.join().expect("a");
    b.join().expect("b");
    ns_per(start.elapsed(), 2 * n)
}

fn handoff_event_tokio(n: usize) -> f64 {
    use tokio::sync::Notify;
    let rt = current_thread_runtime();
    rt.block_on(async move {
        let (ping, pong) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let start = Instant::now();
        let a = {
            let (ping, pong) = (ping.clone(), pong.clone());
            tokio::spawn(async move {
                for _ in 0..n {
                    ping.notify_one();
                    pong.notified().await;
                }
            })
        };
        let b = tokio::spawn(async move {
            for _ in 0..n {
                ping.notified().await;
                pong.notify_one();
            }
        });
        a.await.expect("a");
        b.await.expect("b");
        ns_per(start.elapsed(), 2 * n)
    })
}

fn handoff_event_may(n: usize) -> f64 {
    use may::sync::Semphore;
    let (ping, pong) = (Arc::new(Semphore::new(0)), Arc::new(Semphore::new(0)));
    let start = Instant::now();
    let a = {
        let (ping, pong) = (ping.clone(), pong.clone());
        may::go!(move || {
            for _ in 0..n {
                ping.post();
                pong.wait();
            }
        })
    };
    let b = may::go!(move || {
        for _ in 0..n {
            ping.wait();
            pong.post();
        }
    });
    a.join().expect("a");
    b.join().expect("b");
    ns_per(start.elapsed(), 2 * n)
}

fn handoff_queue_green(n: usize) -> f64 {
    use green::sync::Queue;
    let (there, back) = (Queue::new(), Queue::new());
    let start = Instant::now();
    let a = {
        let (there, back) = (there.clone(), back.clone());
        green::spawn(move || {
            let mut sum = 0usize;
            for i in 0..n {
                there.put(i);
                sum += back.get();
            }
            sum
        })
    };
    let b = green::spawn(move || {
        for _ in 0..n {
            let v: usize = there.get();
            back.put(v);
        }
    });
    let sum = a.join().expect("a");
    b.join().expect("b");
    let elapsed = start.elapsed();
    assert_eq!(sum, expected_sum(n));
    ns_per(elapsed, 2 * n)
}

fn handoff_queue_tokio(n: usize) -> f64 {
    use tokio::sync::mpsc::unbounded_channel;
    let rt = current_thread_runtime();
    rt.block_on(async move {
        let (there_tx, mut there_rx) = unbounded_channel::<usize>();
        let (back_tx, mut back_rx) = unbounded_channel::<usize>();
        let start = Instant::now();
        let a = tokio::spawn(async move {
            let mut sum = 0usize;
            for i in 0..n {
                there_tx.send(i).expect("send");
                sum += back_rx.recv().await.expect("recv");
            }
            sum
        });
        let b = tokio::spawn(async move {
            while let Some(v) = there_rx.recv().await {
                back_tx.send(v).expect("send");
            }
        });
        let sum = a.await.expect("a");
        b.await.expect("b");
        let elapsed = start.elapsed();
        assert_eq!(sum, expected_sum(n));
        ns_per(elapsed, 2 * n)
    })
}

fn handoff_queue_may(n: usize) -> f64 {
    use may::sync::mpsc::channel;
    let (there_tx, there_rx) = channel::<usize>();
    let (back_tx, back_rx) = channel::<usize>();
    let start = Instant::now();
    let a = may::go!(move || {
        let mut sum = 0usize;
        for i in 0..n {
            there_tx.send(i).expect("send");
            sum += back_rx.recv().expect("recv");
        }
        sum
    });
    let b = may::go!(move || {
        while let Ok(v) = there_rx.recv() {
            back_tx.send(v).expect("send");
        }
    });
    let sum = a.join().expect("a");
    b.join().expect("b");
    let elapsed = start.elapsed();
    assert_eq!(sum, expected_sum(n));
    ns_per(elapsed, 2 * n)
}

fn handoff_queue_std(n: usize) -> f64 {
    use std::sync::mpsc::channel;
    let (there_tx, there_rx) = channel::<usize>();
    let (back_tx, back_rx) = channel::<usize>();
    let start = Instant::now();
    let a = std::thread::spawn(move || {
        let mut sum = 0usize;
        for i in 0..n {
            there_tx.send(i).expect("send");
            sum += back_rx.recv().expect("recv");
        }
        sum
    });
    let b = std::thread::spawn(move || {
        while let Ok(v) = there_rx.recv() {
            back_tx.send(v).expect("send");
        }
    });
    let sum = a.join().expect("a");
    b.join().expect("b");
    let elapsed = start.elapsed();
    assert_eq!(sum, expected_sum(n));
    ns_per(elapsed, 2 * n)
}

// ---------------------------------------------------------------------------------------------
// 3 and 4: live tasks and concurrent sleeps, each run in a child process
// ---------------------------------------------------------------------------------------------

/// Memory counters of this process, in bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    rss: u64,
    hwm: u64,
    pte: u64,
}

fn mem() -> Mem {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Mem {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
        pte: field("VmPTE:"),
    }
}

fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530)
}

fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0)
}

/// Prints one machine-readable result line for the parent.
fn report(values: &[(&str, f64)]) {
    let fields: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RESULT {}", fields.join(" "));
}

/// Reports a live-task measurement: spawn time per task and memory growth per task.
fn report_live(before: Mem, spawn: Duration, spawned: usize) {
    let after = mem();
    report(&[
        ("spawned", spawned as f64),
        ("spawn_ns", ns_per(spawn, spawned.max(1))),
        (
            "rss_per",
            after.hwm.saturating_sub(before.rss) as f64 / spawned.max(1) as f64,
        ),
        (
            "pte_per",
            after.pte.saturating_sub(before.pte) as f64 / spawned.max(1) as f64,
        ),
        ("maps", map_count() as f64),
    ]);
}

fn run_child(child: &str, n: usize) {
    match child {
        "live-green" => live_green(n),
        "live-tokio" => live_tokio(n),
        "live-may" => live_may(n),
        "sleep-green" => sleep_green(n),
        "sleep-tokio" => sleep_tokio(n),
        "sleep-may" => sleep_may(n),
        other => usage(&format!("unknown child {other}")),
    }
}

/// Runs this binary as a child and collects its `RESULT` values.
fn child(name: &str, n: usize) -> Result<BTreeMap<String, f64>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["--child", name, "--n", &n.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
    match line {
        Some(line) => Ok(line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()),
        None => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            Err(format!(
                "child exited with {} ({})",
                out.status,
                last.unwrap_or("no output").trim()
            ))
        }
    }
}

/// Runs a child `runs` times; per key the median.
fn child_median(name: &str, n: usize, runs: usize) -> Result<BTreeMap<String, f64>, String> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..runs.max(1) {
        for (k, v) in child(name, n)? {
            all.entry(k).or_default().push(v);
        }
    }
    Ok(all
        .into_iter()
        .map(|(k, mut vs)| {
            vs.sort_by(|a, b| a.total_cmp(b));
            (k, vs[vs.len() / 2])
        })
        .collect())
}

fn case_live(args: &Args) -> Vec<Row> {
    let n = args.n;
    let mut spawn_row = Row::new(format!("live: spawn {n} blocked tasks"), "ns/task");
    let mut rss_row = Row::new(format!("live: peak RSS growth, {n} tasks"), "bytes/task");
    let mut pte_row = Row::new(format!("live: page tables, {n} tasks"), "bytes/task");
    for &peer in &args.peers {
        if peer == Peer::Std {
            continue;
        }
        eprintln!("live: {}", peer.name());
        let name = format!("live-{}", peer.name());
        match child_median(&name, n, args.runs) {
            Ok(r) => {
                let spawned = r.get("spawned").copied().unwrap_or(0.0) as usize;
                if spawned < n {
                    let why = format!("only {spawned} fit under vm.max_map_count");
                    let partial = |key: &str| Cellv::Partial(r[key], why.clone());
                    spawn_row.cells.push((peer, partial("spawn_ns")));
                    rss_row.cells.push((peer, partial("rss_per")));
                    pte_row.cells.push((peer, partial("pte_per")));
                    continue;
                }
                spawn_row.cells.push((peer, Cellv::Value(r["spawn_ns"])));
                rss_row.cells.push((peer, Cellv::Value(r["rss_per"])));
                pte_row.cells.push((peer, Cellv::Value(r["pte_per"])));
            }
            Err(e) => {
                spawn_row.cells.push((peer, Cellv::Failed(e.clone())));
                rss_row.cells.push((peer, Cellv::Failed(e.clone())));
                pte_row.cells.push((peer, Cellv::Failed(e)));
            }
        }
    }
    vec![spawn_row, rss_row, pte_row]
}

fn live_green(n: usize) {
    use green::sync::Event;
    let release = Event::new();
    // Start the hub before measuring.
    green::yield_now();
    let before = mem();
    let start = Instant::now();
    let greenlets: Vec<_> = (0..n)
        .map(|i| {
            let release = release.clone();
            green::spawn(move || {
                release.wait();
                i
            })
        })
        .collect();
    // From the main thread, yield_now runs every ready greenlet once: each starts and blocks.
    green::yield_now();
    let spawn = start.elapsed();
    assert_eq!(green::unversioned::ready_count(), 0);
    report_live(before, spawn, n);
    release.set();
    let mut sum = 0;
    for g in greenlets {
        sum += g.join().expect("greenlet");
    }
    assert_eq!(sum, expected_sum(n));
}

fn live_tokio(n: usize) {
    use tokio::sync::Notify;
    let rt = current_thread_runtime();
    rt.block_on(async move {
        let release = Arc::new(Notify::new());
        let blocked = Arc::new(AtomicUsize::new(0));
        tokio::task::yield_now().await;
        let before = mem();
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let release = release.clone();
                let blocked = blocked.clone();
                tokio::spawn(async move {
                    let notified = release.notified();
                    blocked.fetch_add(1, Ordering::Relaxed);
                    notified.await;
                    i
                })
            })
            .collect();
        while blocked.load(Ordering::Relaxed) < n {
            tokio::task::yield_now().await;
        }
        // The last task counted itself before its first poll of `notified` registered it.
        tokio::task::yield_now().await;
        let spawn = start.elapsed();
        report_live(before, spawn, n);
        release.notify_waiters();
        let mut sum = 0;
        for h in handles {
            sum += h.await.expect("task");
        }
        assert_eq!(sum, expected_sum(n));
    });
}

fn live_may(n: usize) {
    use may::sync::SyncFlag;
    let release = Arc::new(SyncFlag::new());
    let blocked = Arc::new(AtomicUsize::new(0));
    may::go!(|| ()).join().expect("warm-up");
    let before = mem();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    let mut spawned = 0;
    // Each may stack is its own mmap plus an mprotect guard: two mappings. Running out of
    // mappings makes may panic and the panic itself cannot allocate, so stop short of the limit
    // (the time spent counting mappings is not counted).
    let limit = max_map_count().saturating_sub(2_000);
    let mut checking = Duration::ZERO;
    for i in 0..n {
        if i % 1024 == 0 {
            let t = Instant::now();
            let full = map_count() + 2 * 1024 > limit;
            checking += t.elapsed();
            if full {
                break;
            }
        }
        let release = release.clone();
        let blocked = blocked.clone();
        handles.push(may::go!(move || {
            blocked.fetch_add(1, Ordering::Relaxed);
            release.wait();
            i
        }));
        spawned += 1;
    }
    while blocked.load(Ordering::Relaxed) < spawned {
        std::thread::sleep(Duration::from_micros(100));
    }
    let spawn = start.elapsed().saturating_sub(checking);
    report_live(before, spawn, spawned);
    release.fire();
    for h in handles {
        let _ = h.join();
    }
}

/// The deterministic, scattered sleep of task `i`: 100 ms to 1 s.
fn sleep_of(i: usize) -> Duration {
    let spread = (i as u64).wrapping_mul(2_654_435_761) % 900_000;
    Duration::from_micros(100_000 + spread)
}

fn longest_sleep(n: usize) -> Duration {
    (0..n).map(sleep_of).max().unwrap_or_default()
}

fn case_sleep(args: &Args) -> Vec<Row> {
    let n = args.n;
    let mut row = Row::new(
        format!("{n} concurrent sleeps of 0.1-1 s: time to all done minus longest sleep"),
        "ns/sleep",
    );
    for &peer in &args.peers {
        if peer == Peer::Std {
            continue;
        }
        eprintln!("sleep: {}", peer.name());
        let name = format!("sleep-{}", peer.name());
        let cell = match child_median(&name, n, args.runs) {
            Ok(r) => match r.get("overhead_ns") {
                Some(v) => Cellv::Value(*v),
                None => Cellv::Failed(format!(
                    "only {} fit under vm.max_map_count",
                    r.get("spawned").copied().unwrap_or(0.0)
                )),
            },
            Err(e) => Cellv::Failed(e),
        };
        row.cells.push((peer, cell));
    }
    vec![row]
}

fn report_sleep(n: usize, elapsed: Duration) {
    let overhead = elapsed.saturating_sub(longest_sleep(n));
    report(&[
        ("spawned", n as f64),
        ("overhead_ns", ns_per(overhead, n)),
        ("overhead_ms", overhead.as_secs_f64() * 1e3),
    ]);
}

fn sleep_green(n: usize) {
    green::yield_now();
    let start = Instant::now();
    let greenlets: Vec<_> = (0..n)
        .map(|i| green::spawn(move || green::sleep(sleep_of(i))))
        .collect();
    for g in greenlets {
        g.join().expect("greenlet");
    }
    report_sleep(n, start.elapsed());
}

fn sleep_tokio(n: usize) {
    let rt = current_thread_runtime();
    rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| tokio::spawn(tokio::time::sleep(sleep_of(i))))
            .collect();
        for h in handles {
            h.await.expect("task");
        }
        report_sleep(n, start.elapsed());
    });
}

fn sleep_may(n: usize) {
    may::go!(|| ()).join().expect("warm-up");
    // Two mappings per may stack: a million do not fit under vm.max_map_count.
    let fits = max_map_count().saturating_sub(map_count() + 2_000) / 2;
    if n > fits {
        report(&[("spawned", fits as f64)]);
        return;
    }
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| may::go!(move || may::coroutine::sleep(sleep_of(i))))
        .collect();
    for h in handles {
        h.join().expect("coroutine");
    }
    report_sleep(n, start.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        let int = v.round() as u64;
        let s = int.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_cell(c: Option<&Cellv>) -> String {
    match c {
        Some(Cellv::Value(v)) => fmt_value(*v),
        Some(Cellv::Partial(v, why)) => format!("{} ({why})", fmt_value(*v)),
        Some(Cellv::Failed(why)) => format!("failed: {why}"),
        Some(Cellv::Skipped(why)) => format!("n/a ({why})"),
        None => "–".to_string(),
    }
}

fn print_table(rows: &[Row], peers: &[Peer]) {
    let others: Vec<Peer> = peers
        .iter()
        .copied()
        .filter(|p| *p != Peer::Green)
        .collect();
    let mut header = String::from("| case | unit |");
    let mut rule = String::from("|---|---|");
    for p in peers {
        header += &format!(" {} |", p.name());
        rule += "---:|";
    }
    if peers.contains(&Peer::Green) {
        for p in &others {
            header += &format!(" green/{} |", p.name());
            rule += "---:|";
        }
    }
    println!("{header}\n{rule}");
    for row in rows {
        let mut line = format!("| {} | {} |", row.metric, row.unit);
        for p in peers {
            line += &format!(" {} |", fmt_cell(row.get(*p)));
        }
        if peers.contains(&Peer::Green) {
            for p in &others {
                let ratio = match (row.get(Peer::Green), row.get(*p)) {
                    (Some(Cellv::Value(g)), Some(Cellv::Value(o))) if *o > 0.0 => {
                        format!("{:.2}", g / o)
                    }
                    _ => "–".to_string(),
                };
                line += &format!(" {ratio} |");
            }
        }
        println!("{line}");
    }
}

fn allowed_cpus() -> usize {
    // On Linux this is the affinity mask's size (taskset), or the cgroup quota if smaller.
    std::thread::available_parallelism().map_or(0, |n| n.get())
}
