//! The crawler (`green_crawl`, what `examples/crawl.rs` runs) on its embedded 5,000-page site:
//! 1 process with the in-memory frontier, 1 process with the Redis frontier, 2 processes sharing
//! one Redis frontier (issue 16). Pages/s and Redis round trips per page.
//!
//! ```text
//! cargo run --release -p green-bench --bin crawl_redis     # writes benches/RESULTS-crawl-redis.md
//! cargo run --release -p green-bench --bin crawl_redis -- --runs 3 --pages 2000 --no-write
//! cargo run --release -p green-bench --bin crawl_redis -- --no-pin --no-write   # no taskset
//! ```
//!
//! This process serves the site (green's HTTP server on a thread of its own) and starts its own
//! redis-server (no persistence) on a free loopback port; each crawler is a child process (this
//! binary with `--child`), 100 workers, timed from its first claim to its last completion. With
//! `taskset`, the site and Redis share core 0, a single crawler runs on core 1, and two crawlers
//! run one on each core. Modes are interleaved (run 1 of every mode, then run 2…) after one
//! uncounted warm-up round; each Redis run is a fresh crawl id. Round trips are counted by the
//! crawler (script calls and commands it sent, summed over the processes) and checked against
//! the server's `INFO commandstats` (EVALSHA calls and the rest, top-level only).

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use green_crawl::{crawl, serve_embedded_site_at, Config, RedisOptions, Site};

const MODES: [&str; 3] = ["memory", "redis-1", "redis-2"];

struct Args {
    pages: usize,
    runs: usize,
    write: bool,
    child: Option<String>,
    url: String,
    redis: String,
    crawl_id: String,
    pin: bool,
    raw: Vec<String>,
}

fn parse_args() -> Args {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args {
        pages: 5000,
        runs: 5,
        write: true,
        child: None,
        url: String::new(),
        redis: String::new(),
        crawl_id: String::new(),
        pin: true,
        raw: raw.clone(),
    };
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--pages" => args.pages = value().parse().expect("--pages N"),
            "--runs" => args.runs = value().parse().expect("--runs N"),
            "--no-write" => args.write = false,
            "--no-pin" => args.pin = false,
            "--child" => args.child = Some(value()),
            "--url" => args.url = value(),
            "--redis" => args.redis = value(),
            "--crawl-id" => args.crawl_id = value(),
            other => panic!(
                "unknown argument {other}; usage: crawl_redis [--pages N] [--runs N] [--no-write]"
            ),
        }
    }
    args
}

/// One crawler process: `RESULT pages=N secs=S round_trips=N`.
fn child(args: &Args, mode: &str) {
    let shared = (mode != "memory").then(|| RedisOptions::new(&args.redis, &args.crawl_id));
    let summary = crawl(Config {
        seeds: vec![args.url.clone()],
        same_host: true,
        concurrency: 100,
        shared,
        ..Config::default()
    })
    .expect("crawl");
    assert!(
        summary.errors.values().sum::<u64>() < summary.pages.max(1),
        "{summary}"
    );
    println!(
        "RESULT pages={} secs={:.6} round_trips={} shared_pages={} shared_secs={:.6}",
        summary.pages,
        summary.elapsed.as_secs_f64(),
        summary.round_trips,
        summary.shared.as_ref().map_or(summary.pages, |t| t.pages),
        summary
            .shared
            .as_ref()
            .map_or(summary.elapsed, |t| t.elapsed)
            .as_secs_f64(),
    );
}

fn field(text: &str, key: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT in {text}"));
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn pinned(core: Option<usize>, program: &str) -> Command {
    let pin = !std::env::args().any(|a| a == "--no-pin");
    match core.filter(|_| pin) {
        Some(core) if have("taskset") => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &core.to_string(), program]);
            cmd
        }
        _ => Command::new(program),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Redis {
    child: Child,
    url: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis() -> Redis {
    let port = free_port();
    let dir = std::env::temp_dir();
    let child = pinned(Some(0), "redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis {
        child,
        url: format!("redis://127.0.0.1:{port}/0"),
    }
}

/// Top-level commands the server ran (`INFO commandstats` counts the commands scripts call
/// too; those are left out by counting EVALSHA/EVAL and the commands clients send directly).
fn server_calls(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut connection)
        .unwrap();
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| {
            matches!(
                *name,
                "evalsha" | "eval" | "ping" | "script|load" | "hgetall" | "zcard"
            )
        })
        .filter_map(|(_, stats)| {
            stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

/// CPU seconds redis-server used so far (`INFO cpu`, user + system).
fn server_cpu(url: &str) -> f64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query(&mut connection)
        .unwrap();
    ["used_cpu_user:", "used_cpu_sys:"]
        .iter()
        .filter_map(|key| {
            info.lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .sum()
}

struct Run {
    pages_per_sec: f64,
    server_cpu_per_page: f64,
    trips_per_page: f64,
    server_trips_per_page: f64,
}

fn run_mode(mode: &str, site_url: &str, redis: &Redis, run: usize, pages: usize) -> Run {
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    let processes = if mode == "redis-2" { 2 } else { 1 };
    let crawl_id = format!("bench-{}-{mode}-{run}", std::process::id());
    let calls0 = server_calls(&redis.url);
    let cpu0 = server_cpu(&redis.url);
    let start = Instant::now();
    let children: Vec<Child> = (0..processes)
        .map(|i| {
            let core = if processes == 1 { 1 } else { i };
            pinned(Some(core), exe)
                .args(["--child", mode, "--url", site_url, "--redis", &redis.url])
                .args(["--crawl-id", &crawl_id])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap())
        .collect();
    let wall = start.elapsed().as_secs_f64();
    let calls = server_calls(&redis.url) - calls0;
    let cpu = server_cpu(&redis.url) - cpu0;
    let fetched: f64 = outputs.iter().map(|o| field(o, "pages")).sum();
    let trips: f64 = outputs.iter().map(|o| field(o, "round_trips")).sum();
    let shared_pages = field(&outputs[0], "shared_pages");
    // Crawl time: first claim to last completion as Redis recorded them (for the in-memory
    // crawl, the crawl call's own time); process start excluded.
    let secs = outputs
        .iter()
        .map(|o| field(o, "shared_secs"))
        .fold(0.0, f64::max);
    assert!(
        shared_pages as usize > pages,
        "{mode}: {shared_pages} pages counted for a {pages}-page site"
    );
    eprintln!(
        "run {run}: {mode:8} {shared_pages} pages ({fetched} fetched) in {secs:.3} s (wall {wall:.3} s), \
         {trips} round trips, {calls} server calls, {:.0} µs redis-server CPU",
        cpu * 1e6
    );
    Run {
        pages_per_sec: shared_pages / secs,
        server_cpu_per_page: cpu / shared_pages,
        trips_per_page: trips / shared_pages,
        server_trips_per_page: if mode == "memory" {
            0.0
        } else {
            calls as f64 / shared_pages
        },
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let args = parse_args();
    if let Some(mode) = &args.child {
        child(&args, mode);
        return;
    }
    // The site on this process's own thread, pinned with the process to core 0.
    if args.pin && have("taskset") {
        let _ = Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
    }
    let site = serve_embedded_site_at(Site::new(args.pages), "127.0.0.1:0").expect("site");
    let redis = start_redis();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "embedded site of {} pages at {}; redis at {}; {} runs",
        args.pages,
        site.url(),
        redis.url,
        args.runs
    );
    let mut results: Vec<(&str, Vec<Run>)> = MODES.iter().map(|m| (*m, Vec::new())).collect();
    for run in 0..=args.runs {
        for (mode, runs) in &mut results {
            let outcome = run_mode(mode, &site.url(), &redis, run, args.pages);
            if run > 0 {
                runs.push(outcome);
            }
        }
    }
    let memory = median(
        &mut results[0]
            .1
            .iter()
            .map(|r| r.pages_per_sec)
            .collect::<Vec<_>>(),
    );
    let mut table = String::from(
        "| crawl | median pages/s | range pages/s | ÷ in-memory | Redis round trips per page (crawler) | (server) | redis-server CPU µs per page |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (mode, runs) in &results {
        let mut rates: Vec<f64> = runs.iter().map(|r| r.pages_per_sec).collect();
        let rate = median(&mut rates);
        let (lo, hi) = (rates[0], rates[rates.len() - 1]);
        let trips = median(&mut runs.iter().map(|r| r.trips_per_page).collect::<Vec<_>>());
        let server = median(
            &mut runs
                .iter()
                .map(|r| r.server_trips_per_page)
                .collect::<Vec<_>>(),
        );
        let cpu = median(
            &mut runs
                .iter()
                .map(|r| r.server_cpu_per_page * 1e6)
                .collect::<Vec<_>>(),
        );
        let name = match *mode {
            "memory" => "1 process, in-memory frontier",
            "redis-1" => "1 process, Redis frontier",
            _ => "2 processes, one Redis frontier",
        };
        let _ = writeln!(
            table,
            "| {name} | {rate:.0} | {lo:.0}–{hi:.0} | {:.2} | {trips:.3} | {server:.3} | {cpu:.1} |",
            rate / memory
        );
    }
    println!("{table}");
    if args.write {
        let command = if args.raw.is_empty() {
            "cargo run --release -p green-bench --bin crawl_redis".to_string()
        } else {
            format!(
                "cargo run --release -p green-bench --bin crawl_redis -- {}",
                args.raw.join(" ")
            )
        };
        let md = format!(
            "# Crawl with a shared Redis frontier (issue 16)\n\n\
             The embedded site of {} pages (~1.7 KB, green's HTTP server on its own thread) and a \
             redis-server without persistence, both on core 0; each crawler a process of 100 \
             green workers (one crawler on core 1; two crawlers one per core); median and range \
             of {} interleaved runs after one warm-up round, pages/s from the first claim to the \
             last completion. 2 cores, shared with other people building at the time (load \
             average {} when it started), so absolute numbers move between invocations; the \
             ratios within one invocation are what to read.\n\n\
             Command: `{command}`\n\n{table}\n\
             Round trips (crawler) are the script calls and commands a crawler sent, summed over \
             the processes, per page counted; (server) is the same from `INFO commandstats` \
             (EVALSHA, EVAL, PING, HGETALL, ZCARD calls). The in-memory frontier makes none. \
             redis-server CPU is the `INFO cpu` (user + system) delta over the run, per page \
             (for the in-memory crawl, Redis idling).\n",
            args.pages,
            args.runs,
            load.split_whitespace().next().unwrap_or("?"),
        );
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../RESULTS-crawl-redis.md");
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        let mut md = md;
        if let Some(at) = kept.find("## Notes") {
            md.push('\n');
            md.push_str(&kept[at..]);
        }
        std::fs::write(&path, md).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
