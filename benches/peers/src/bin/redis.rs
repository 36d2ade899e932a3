//! Redis GETs through the unchanged `redis` crate (issue 13, "Benchmark"): its sync API under
//! `green::patch` (one thread, one greenlet per connection), the same sync API on one std thread
//! per connection, and its async API on tokio's current-thread runtime, one task per request
//! stream, sharing one multiplexed connection (the issue's comparison) or with a connection each
//! (the sync rows' pattern); plus the cost of one hooked libc call with the patch off and on.
//!
//! ```text
//! cargo run --release -p green-bench --bin redis                  # writes benches/RESULTS-patch.md
//! cargo run --release -p green-bench --bin redis -- --ops 20000 --runs 1 --no-write
//! ```
//!
//! The benchmark starts its own redis-server (no persistence) on a free loopback port, pinned to
//! core 0 with `taskset`, and runs each measured client in a child process (this binary with
//! `--child MODE`) pinned to core 1, so that every mode gets the same single core and its CPU time
//! is its own (`getrusage` of the child, all threads). Each row is the median by throughput of
//! `--runs` runs (default 3). Connections are made before the clock starts.
//!
//! The hook rows time 1-byte `write`s to /dev/null (a call the patch hooks but passes through, as
//! for every non-socket fd): glibc's `syscall(SYS_write)` and glibc's own `write` (reached with
//! `dlsym(RTLD_NEXT)`) as baselines, then the hooked `write` with the patch off, on outside a
//! greenlet, and on inside one. Each figure is the fastest of 100 rounds taken in turns, median
//! over the runs.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use green_bench::{loadavg, median};

const KEYS: usize = 1_000;
const VALUE_BYTES: usize = 64;
const MODES: [(&str, &str); 4] = [
    ("green", "sync `redis` under `green::patch`, 1 thread"),
    ("threads", "sync `redis` on std threads"),
    ("tokio", "async multiplexed `redis`, tokio current-thread"),
    (
        "tokio-conns",
        "async `redis`, tokio current-thread, one connection per task",
    ),
];
/// The row the others are compared with: the issue's tokio figure.
const TOKIO_ROW: usize = 2;
/// (name, label, the name of the row it is compared with).
const HOOK_ROWS: [(&str, &str, &str); 9] = [
    ("raw", "`write`: `syscall(SYS_write)` (no hook)", "glibc"),
    (
        "glibc",
        "`write`: glibc's via `dlsym(RTLD_NEXT)` (no hook)",
        "glibc",
    ),
    ("off", "`write`: hooked, patch off", "glibc"),
    (
        "on",
        "`write`: hooked, patch on, outside a greenlet",
        "glibc",
    ),
    (
        "greenlet",
        "`write`: hooked, patch on, inside a greenlet (not a socket)",
        "glibc",
    ),
    (
        "gai-glibc",
        "`getaddrinfo(\"127.0.0.1\")`: glibc's (no hook)",
        "gai-glibc",
    ),
    (
        "gai-off",
        "`getaddrinfo(\"127.0.0.1\")`: hooked, patch off",
        "gai-glibc",
    ),
    (
        "gai-on",
        "`getaddrinfo(\"127.0.0.1\")`: hooked, patch on, outside a greenlet",
        "gai-glibc",
    ),
    (
        "gai-greenlet",
        "`getaddrinfo(\"127.0.0.1\")`: hooked, patch on, inside a greenlet",
        "gai-glibc",
    ),
];

struct Args {
    ops: usize,
    concurrency: usize,
    runs: usize,
    calls: usize,
    write: bool,
    child: Option<String>,
    redis: String,
    raw: Vec<String>,
}

const USAGE: &str = "usage: redis [--ops N] [--concurrency N] [--runs R] [--calls N] [--no-write]
  N GETs (default 100000) at --concurrency in flight (default 100) against a redis-server it
  starts on core 0: green::patch vs std threads vs tokio; then --calls hooked writes (default
  20000) per round for the hook overhead. Writes benches/RESULTS-patch.md unless --no-write.";

fn parse_args() -> Args {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args {
        ops: 100_000,
        concurrency: 100,
        runs: 3,
        calls: 20_000,
        write: true,
        child: None,
        redis: String::new(),
        raw: raw.clone(),
    };
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next().unwrap_or_else(|| {
                eprintln!("redis: {arg} needs a value\n{USAGE}");
                std::process::exit(2);
            })
        };
        let number = |text: String| -> usize {
            text.parse().unwrap_or_else(|_| {
                eprintln!("redis: {text:?} is not a number\n{USAGE}");
                std::process::exit(2);
            })
        };
        match arg.as_str() {
            "--ops" => args.ops = number(value()).max(1),
            "--concurrency" => args.concurrency = number(value()).max(1),
            "--runs" => args.runs = number(value()).max(1),
            "--calls" => args.calls = number(value()).max(1),
            "--no-write" => args.write = false,
            "--child" => args.child = Some(value()),
            "--redis" => args.redis = value(),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("redis: unknown argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    args
}

fn key(worker: usize, i: usize) -> String {
    format!("bench:{}", (worker * 7919 + i) % KEYS)
}

/// User + system CPU time of this process, all threads, in microseconds.
fn cpu_us() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    us(usage.user_time()) + us(usage.system_time())
}

/// CPU time of another process from /proc, in microseconds (10 ms resolution).
fn process_cpu_us(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000) // USER_HZ is 100 on every Linux ABI
}

/// Prints a child's result line for the parent: `RESULT ops=… secs=… cpu_us=…`.
fn report(ops: usize, secs: f64, cpu_us: u64) {
    println!("RESULT ops={ops} secs={secs} cpu_us={cpu_us}");
}

fn child_green(args: &Args) {
    assert!(green::patch::all(), "GREEN_PATCH=0 is set");
    let client = redis::Client::open(args.redis.as_str()).unwrap();
    let per_worker = args.ops / args.concurrency;
    let start = std::rc::Rc::new(green::sync::Event::new());
    let connected = std::rc::Rc::new(std::cell::Cell::new(0));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let (client, start, connected) = (client.clone(), start.clone(), connected.clone());
            green::spawn(move || {
                let mut connection = client.get_connection().unwrap();
                connected.set(connected.get() + 1);
                start.wait();
                for i in 0..per_worker {
                    let value: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(key(w, i))
                        .query(&mut connection)
                        .unwrap();
                    assert_eq!(value.map(|v| v.len()), Some(VALUE_BYTES));
                }
                per_worker
            })
        })
        .collect();
    while connected.get() < args.concurrency {
        green::sleep(Duration::from_millis(1));
    }
    let (started, cpu_before) = (Instant::now(), cpu_us());
    start.set();
    let done: usize = green::joinall(workers)
        .into_iter()
        .map(Result::unwrap)
        .sum();
    report(done, started.elapsed().as_secs_f64(), cpu_us() - cpu_before);
}

fn child_threads(args: &Args) {
    let client = redis::Client::open(args.redis.as_str()).unwrap();
    let per_worker = args.ops / args.concurrency;
    let start = Arc::new(Barrier::new(args.concurrency + 1));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let (client, start) = (client.clone(), start.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut connection = client.get_connection().unwrap();
                    start.wait();
                    for i in 0..per_worker {
                        let value: Option<Vec<u8>> = redis::cmd("GET")
                            .arg(key(w, i))
                            .query(&mut connection)
                            .unwrap();
                        assert_eq!(value.map(|v| v.len()), Some(VALUE_BYTES));
                    }
                    per_worker
                })
                .unwrap()
        })
        .collect();
    start.wait();
    let (started, cpu_before) = (Instant::now(), cpu_us());
    let done: usize = workers.into_iter().map(|t| t.join().unwrap()).sum();
    report(done, started.elapsed().as_secs_f64(), cpu_us() - cpu_before);
}

/// tokio's current-thread runtime: one multiplexed connection shared by every task (the redis
/// crate's recommended use), or with `per_task` one connection per task, like the sync rows.
fn child_tokio(args: &Args, per_task: bool) {
    let client = redis::Client::open(args.redis.as_str()).unwrap();
    let per_worker = args.ops / args.concurrency;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut connections = Vec::new();
        for _ in 0..if per_task { args.concurrency } else { 1 } {
            connections.push(client.get_multiplexed_async_connection().await.unwrap());
        }
        let (started, cpu_before) = (Instant::now(), cpu_us());
        let tasks: Vec<_> = (0..args.concurrency)
            .map(|w| {
                let mut connection = connections[w % connections.len()].clone();
                tokio::spawn(async move {
                    for i in 0..per_worker {
                        let value: Option<Vec<u8>> = redis::cmd("GET")
                            .arg(key(w, i))
                            .query_async(&mut connection)
                            .await
                            .unwrap();
                        assert_eq!(value.map(|v| v.len()), Some(VALUE_BYTES));
                    }
                    per_worker
                })
            })
            .collect();
        let mut done = 0;
        for task in tasks {
            done += task.await.unwrap();
        }
        report(done, started.elapsed().as_secs_f64(), cpu_us() - cpu_before);
    });
}

const HOOK_ROUNDS: usize = 100;

/// Nanoseconds per call of `call`, over `calls` calls.
fn ns_per_call(calls: usize, mut call: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..calls {
        call();
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

/// The fastest round of each of `variants`, measured in turns ([`HOOK_ROUNDS`] rounds of `calls`
/// calls each) so that a busy moment of the machine hits them alike.
fn fastest_in_turns<const N: usize>(calls: usize, variants: [&dyn Fn(); N]) -> [f64; N] {
    let mut best = [f64::INFINITY; N];
    for _ in 0..HOOK_ROUNDS {
        for (best, variant) in best.iter_mut().zip(variants) {
            *best = best.min(ns_per_call(calls, variant));
        }
    }
    best
}

type WriteFn =
    unsafe extern "C" fn(libc::c_int, *const libc::c_void, libc::size_t) -> libc::ssize_t;
type GetaddrinfoFn = unsafe extern "C" fn(
    *const libc::c_char,
    *const libc::c_char,
    *const libc::addrinfo,
    *mut *mut libc::addrinfo,
) -> libc::c_int;

/// glibc's own definition of `name`, past the hooks (`dlsym(RTLD_NEXT)`).
fn glibc_symbol(name: &std::ffi::CStr) -> *mut libc::c_void {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
    let symbol = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    assert!(!symbol.is_null(), "dlsym(RTLD_NEXT, {name:?})");
    symbol
}

/// One numeric `getaddrinfo` + `freeaddrinfo` through `getaddrinfo`: no syscall, so the hook's
/// own cost is not lost in a syscall's noise.
fn numeric_lookup(getaddrinfo: GetaddrinfoFn) {
    // SAFETY: an all-zero addrinfo is a valid "no hints" value; the fields set are plain ints.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_NUMERICHOST | libc::AI_NUMERICSERV;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut list = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings, valid hints and a valid out pointer; the list is freed
    // once, with glibc's freeaddrinfo.
    unsafe {
        let code = getaddrinfo(c"127.0.0.1".as_ptr(), c"80".as_ptr(), &hints, &mut list);
        assert_eq!(code, 0, "numeric getaddrinfo");
        libc::freeaddrinfo(std::hint::black_box(list));
    }
}

fn child_hooks(args: &Args) {
    use std::os::fd::AsRawFd;
    let null = fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    let fd = null.as_raw_fd();
    static BYTE: [u8; 1] = [0];
    let buf = BYTE.as_ptr().cast::<libc::c_void>();
    // SAFETY: glibc's `write` and `getaddrinfo` have exactly these signatures.
    let glibc_write: WriteFn = unsafe { std::mem::transmute(glibc_symbol(c"write")) };
    let glibc_getaddrinfo: GetaddrinfoFn =
        unsafe { std::mem::transmute(glibc_symbol(c"getaddrinfo")) };
    let gai_glibc = move || numeric_lookup(glibc_getaddrinfo);
    let gai_hooked = move || numeric_lookup(libc::getaddrinfo);
    let calls = args.calls;
    // SAFETY (all the calls below): 1-byte writes from a static buffer to an fd held open until
    // the end of this function (the greenlet is joined before).
    let raw = move || unsafe {
        std::hint::black_box(libc::syscall(libc::SYS_write, fd, buf, 1usize));
    };
    let glibc = move || unsafe {
        std::hint::black_box(glibc_write(fd, buf, 1));
    };
    let hooked = move || unsafe {
        std::hint::black_box(libc::write(fd, buf, 1));
    };
    assert!(!green::patch::enabled());
    let [raw, glibc, off] = fastest_in_turns(calls, [&raw, &glibc, &hooked]);
    let [gai_glibc_ns, gai_off] = fastest_in_turns(calls, [&gai_glibc, &gai_hooked]);
    assert!(green::patch::all(), "GREEN_PATCH=0 is set");
    let [on] = fastest_in_turns(calls, [&hooked]);
    let [gai_on] = fastest_in_turns(calls, [&gai_hooked]);
    let (in_greenlet, gai_greenlet) = green::spawn(move || {
        let [write] = fastest_in_turns(calls, [&hooked]);
        let [lookup] = fastest_in_turns(calls, [&gai_hooked]);
        (write, lookup)
    })
    .join()
    .unwrap();
    for (name, ns) in [
        ("raw", raw),
        ("glibc", glibc),
        ("off", off),
        ("on", on),
        ("greenlet", in_greenlet),
        ("gai-glibc", gai_glibc_ns),
        ("gai-off", gai_off),
        ("gai-on", gai_on),
        ("gai-greenlet", gai_greenlet),
    ] {
        println!("HOOK {name} {ns}");
    }
}

/// redis-server on a free loopback port, no persistence, pinned to core 0 when `taskset` exists.
struct RedisServer {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl RedisServer {
    fn start(pin: bool) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("green-redis-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut command = if pin {
            let mut command = Command::new("taskset");
            command.args(["-c", "0", "redis-server"]);
            command
        } else {
            Command::new("redis-server")
        };
        let child = command
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--daemonize", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install -y redis-server)");
        let url = format!("redis://127.0.0.1:{port}/");
        let client = redis::Client::open(url.as_str()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut connection = loop {
            match client.get_connection() {
                Ok(connection) => break connection,
                Err(e) if Instant::now() > deadline => panic!("redis-server did not start: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let value = vec![b'v'; VALUE_BYTES];
        let mut pipe = redis::pipe();
        for k in 0..KEYS {
            pipe.set(format!("bench:{k}"), &value).ignore();
        }
        let () = pipe.query(&mut connection).unwrap();
        RedisServer { child, url, dir }
    }

    fn cpu_us(&self) -> Option<u64> {
        process_cpu_us(self.child.id())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs this binary as `--child mode`, pinned to core 1 when `pin`; returns its stdout lines.
fn run_child(args: &Args, mode: &str, pin: bool, server: &RedisServer) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut command = if pin {
        let mut command = Command::new("taskset");
        command.args(["-c", "1"]).arg(exe);
        command
    } else {
        Command::new(exe)
    };
    let output = command
        .args(["--child", mode, "--redis", &server.url])
        .args(["--ops", &args.ops.to_string()])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--calls", &args.calls.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("run the child");
    assert!(output.status.success(), "child {mode} failed");
    BufReader::new(&output.stdout[..])
        .lines()
        .map(Result::unwrap)
        .collect()
}

fn field(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        .parse()
        .unwrap()
}

struct Row {
    ops: f64,
    secs: f64,
    cpu_us: f64,
    server_cpu_us: Option<f64>,
}

fn main() {
    let args = parse_args();
    match args.child.as_deref() {
        Some("green") => return child_green(&args),
        Some("threads") => return child_threads(&args),
        Some("tokio") => return child_tokio(&args, false),
        Some("tokio-conns") => return child_tokio(&args, true),
        Some("hooks") => return child_hooks(&args),
        Some(other) => panic!("unknown child mode {other:?}"),
        None => {}
    }
    let load = loadavg();
    let pin = Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    if !pin {
        eprintln!("redis: taskset missing or one core: running unpinned");
    }
    let server = RedisServer::start(pin);

    let mut rows = Vec::new();
    for (mode, _) in MODES {
        let mut runs: Vec<Row> = (0..args.runs)
            .map(|_| {
                let server_before = server.cpu_us();
                let lines = run_child(&args, mode, pin, &server);
                let server_after = server.cpu_us();
                let line = lines
                    .iter()
                    .find(|l| l.starts_with("RESULT"))
                    .unwrap_or_else(|| panic!("no RESULT from {mode}: {lines:?}"));
                let row = Row {
                    ops: field(line, "ops"),
                    secs: field(line, "secs"),
                    cpu_us: field(line, "cpu_us"),
                    server_cpu_us: server_before
                        .zip(server_after)
                        .map(|(before, after)| (after - before) as f64),
                };
                eprintln!(
                    "{mode}: {:.0} ops/s, {:.1} µs CPU/op",
                    row.ops / row.secs,
                    row.cpu_us / row.ops
                );
                row
            })
            .collect();
        runs.sort_by(|a, b| (a.ops / a.secs).total_cmp(&(b.ops / b.secs)));
        rows.push(runs.swap_remove(runs.len() / 2));
    }

    let hook_runs: Vec<Vec<String>> = (0..args.runs)
        .map(|_| run_child(&args, "hooks", pin, &server))
        .collect();
    let hook_ns = |name: &str| -> f64 {
        median(
            hook_runs
                .iter()
                .map(|lines| {
                    let line = lines
                        .iter()
                        .find(|l| l.split_whitespace().nth(1) == Some(name))
                        .unwrap_or_else(|| panic!("no HOOK {name}"));
                    line.split_whitespace().nth(2).unwrap().parse().unwrap()
                })
                .collect(),
        )
    };
    drop(server);

    let tokio_rate = rows[TOKIO_ROW].ops / rows[TOKIO_ROW].secs;
    let tokio_cpu = rows[TOKIO_ROW].cpu_us / rows[TOKIO_ROW].ops;
    let mut table = String::new();
    writeln!(
        table,
        "| client | GETs | seconds | GETs/s | ÷ tokio's GETs/s | client CPU µs/GET | ÷ tokio's CPU/GET | redis-server CPU µs/GET |"
    )
    .unwrap();
    writeln!(table, "|---|---:|---:|---:|---:|---:|---:|---:|").unwrap();
    for ((_, label), row) in MODES.iter().zip(&rows) {
        let rate = row.ops / row.secs;
        let cpu = row.cpu_us / row.ops;
        writeln!(
            table,
            "| {label} | {:.0} | {:.2} | {rate:.0} | {:.2} | {cpu:.1} | {:.2} | {} |",
            row.ops,
            row.secs,
            rate / tokio_rate,
            cpu / tokio_cpu,
            row.server_cpu_us
                .map_or("?".into(), |us| format!("{:.1}", us / row.ops)),
        )
        .unwrap();
    }
    let mut hooks = String::new();
    writeln!(hooks, "| call | ns/call | over glibc's own |").unwrap();
    writeln!(hooks, "|---|---:|---:|").unwrap();
    for (name, label, baseline) in HOOK_ROWS {
        let ns = hook_ns(name);
        writeln!(
            hooks,
            "| {label} | {ns:.1} | {:+.1} |",
            ns - hook_ns(baseline)
        )
        .unwrap();
    }
    println!("{table}\n{hooks}");

    if args.write {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let command = format!(
            "cargo run --release -p green-bench --bin redis -- {}",
            args.raw.join(" ")
        );
        let pinning = if pin {
            "redis-server pinned to core 0 and each client process to core 1 (`taskset`)"
        } else {
            "unpinned (no `taskset` or one core)"
        };
        let report = format!(
            "# green::patch benchmark: the unchanged `redis` crate, green vs threads vs tokio\n\n\
             {} GETs of {VALUE_BYTES}-byte values ({KEYS} keys) at {} in flight against a local \
             redis-server (no persistence); {pinning}; median of {} runs by throughput; {cores} \
             cores, load average {load} when it started. The sync rows use one connection per \
             request stream; tokio shares one multiplexed connection between its tasks. CPU is \
             the client process's user + system time (all threads) during the timed part.\n\n\
             Command: `{}`\n\n{table}\n\
             tokio's multiplexed connection pipelines: its tasks share one socket, so one \
             `writev` and one `recvfrom` carry dozens of GETs, while a sync client makes a \
             `sendto` and a `recvfrom` per GET (under green ~2.3 syscalls per GET by `strace -c`, \
             the minimum for request/response). The last row gives tokio the sync API's pattern, \
             one connection per task.\n\n\
             ## Cost of a hooked call\n\n\
             1-byte `write`s to /dev/null (a syscall, hooked but passed through), and numeric \
             `getaddrinfo` + `freeaddrinfo` (no syscall, so the hook's own cost shows): fastest of \
             {HOOK_ROUNDS} rounds of {} calls taken in turns, median of {} runs. On a VM whose \
             syscalls vary by hundreds of ns between rounds, the `write` rows are noise beyond \
             their first digit; the `getaddrinfo` rows show the hook.\n\n\
             {hooks}",
            args.ops,
            args.concurrency,
            args.runs,
            command.trim_end(),
            args.calls,
            args.runs,
        );
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../RESULTS-patch.md");
        fs::write(&path, report).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
