//! DNS: resolve 10,000 distinct names served by dnsmasq at concurrency 500, with green's `native`
//! stub resolver and with `thread` (getaddrinfo on the thread pool), side by side (issue 3 §8).
//!
//! ```text
//! cargo run --release -p green-bench --bin dns                       # writes benches/RESULTS-dns.md
//! cargo run --release -p green-bench --bin dns -- --names 2000 --concurrency 100 --runs 1 --no-write
//! ```
//!
//! getaddrinfo only talks to port 53 of the servers in /etc/resolv.conf. So, when run as root
//! with `unshare` available, the benchmark re-executes itself in private mount and network
//! namespaces: loopback is brought up, dnsmasq listens on 127.0.0.1:53 and a resolv.conf naming
//! it is bind-mounted over /etc/resolv.conf (nothing outside the namespaces changes). Both
//! resolvers then read the same resolv.conf (`options timeout:1 attempts:5`). Without
//! namespaces only `native` is measured, through `GREEN_NAMESERVERS` on a free port.
//!
//! Each row is the median of `--runs` (default 3) runs, each in a child process (this binary
//! with `--child MODE`), so that caches and the thread pool start cold and
//! `GREEN_THREADPOOL_SIZE` can differ per row. Besides wall-clock throughput the table shows CPU
//! time per name of the resolving process and of dnsmasq (from /proc, so it holds on a busy
//! machine), and the kernel's UDP receive-buffer drops during the row (`/proc/net/snmp`
//! `RcvbufErrors`): a lookup whose query was dropped waits for the 1 s retransmission.

use std::cell::Cell;
use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

#[path = "../../../../tests/common/dnsmasq.rs"]
mod dnsmasq;

const NS_MARKER: &str = "GREEN_DNS_BENCH_NS";

struct Args {
    names: usize,
    concurrency: usize,
    overall: Duration,
    runs: usize,
    write: bool,
    netns: bool,
    child: Option<String>,
    max_in_flight: Option<usize>,
    raw: Vec<String>,
}

const USAGE: &str = "usage: dns [--names N] [--concurrency N] [--runs R] [--timeout SECS] \
[--max-in-flight N] [--no-write] [--no-netns]
  Resolves N distinct names served by dnsmasq with green's native resolver and with getaddrinfo
  on the thread pool (the latter only in private namespaces, as root); writes
  benches/RESULTS-dns.md unless --no-write.";

fn parse_args() -> Args {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args {
        names: 10_000,
        concurrency: 500,
        overall: Duration::from_secs(300),
        runs: 3,
        write: true,
        netns: true,
        child: None,
        max_in_flight: None,
        raw: raw.clone(),
    };
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--names" => args.names = value().parse().expect("--names N"),
            "--concurrency" => args.concurrency = value().parse().expect("--concurrency N"),
            "--timeout" => args.overall = Duration::from_secs(value().parse().expect("secs")),
            "--runs" => args.runs = value().parse::<usize>().expect("--runs N").max(1),
            "--no-write" => args.write = false,
            "--no-netns" => args.netns = false,
            "--child" => args.child = Some(value()),
            "--max-in-flight" => args.max_in_flight = Some(value().parse().expect("N")),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("dns: unknown argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    args
}

fn name(i: usize) -> String {
    format!("host{i}.bench.test")
}

/// One measured run in this process: resolves every name through `green::dns::resolve` (the
/// resolver chosen by `GREEN_RESOLVER`) with `concurrency` lookups in flight.
fn child(args: &Args) {
    if let Some(tries) = args.max_in_flight {
        green::dns::set_resolver(
            green::dns::NativeResolver::builder()
                .max_in_flight(tries)
                .build(),
        );
    }
    let pool = green::Pool::new(args.concurrency);
    let (ok, failed) = (Rc::new(Cell::new(0usize)), Rc::new(Cell::new(0usize)));
    let started = Instant::now();
    let _ = green::with_timeout(args.overall, || {
        for outcome in pool.imap_unordered(0..args.names, |i| green::dns::resolve(&name(i))) {
            match outcome {
                Ok(Ok(_)) => ok.set(ok.get() + 1),
                Ok(Err(err)) => {
                    if failed.get() == 0 {
                        eprintln!("first failure: {err}");
                    }
                    failed.set(failed.get() + 1)
                }
                Err(_) => failed.set(failed.get() + 1),
            }
        }
    });
    let secs = started.elapsed().as_secs_f64();
    pool.kill();
    println!(
        "RESULT ok={} failed={} secs={secs} pool_threads={} cpu_ms={}",
        ok.get(),
        failed.get(),
        green::threadpool::max_threads(),
        cpu_ms("self").unwrap_or(0)
    );
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// User + system CPU time of a process (`self` or a pid), in milliseconds, from /proc.
fn cpu_ms(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may contain spaces) start at state (field 3).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = 100; // USER_HZ is 100 on every Linux ABI
    Some(ticks * 1000 / hz)
}

fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (head, values) = (lines.next()?, lines.next()?);
    let column = head.split_whitespace().position(|c| c == "RcvbufErrors")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

struct Dnsmasq(Child);

impl Dnsmasq {
    fn cpu_ms(&self) -> Option<u64> {
        cpu_ms(&self.0.id().to_string())
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dnsmasq(port: u16, hosts: &Path) -> Dnsmasq {
    let bin =
        dnsmasq::binary().expect("dnsmasq is not installed (apt-get install -y dnsmasq-base)");
    let child = dnsmasq::command(bin, port, hosts)
        .spawn()
        .expect("spawn dnsmasq");
    let server_process = Dnsmasq(child);
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dnsmasq::answers(server, &name(0)) {
        assert!(Instant::now() < deadline, "dnsmasq did not answer");
    }
    server_process
}

struct Row {
    label: String,
    ok: usize,
    failed: usize,
    secs: f64,
    pool_threads: String,
    drops: Option<u64>,
    client_cpu_ms: u64,
    server_cpu_ms: Option<u64>,
}

/// Runs a row `args.runs` times and keeps the median by throughput.
fn measure(args: &Args, dnsmasq: &Dnsmasq, label: &str, envs: &[(&str, String)]) -> Row {
    let mut runs: Vec<Row> = (0..args.runs)
        .map(|_| measure_once(args, dnsmasq, label, envs))
        .collect();
    runs.sort_by(|a, b| (a.ok as f64 / a.secs).total_cmp(&(b.ok as f64 / b.secs)));
    runs.swap_remove(runs.len() / 2)
}

fn measure_once(args: &Args, dnsmasq: &Dnsmasq, label: &str, envs: &[(&str, String)]) -> Row {
    let before = udp_rcvbuf_errors();
    let server_before = dnsmasq.cpu_ms();
    let mode = envs
        .iter()
        .find(|(k, _)| *k == "GREEN_RESOLVER")
        .map_or("native".to_string(), |(_, v)| v.clone());
    let in_flight = envs.iter().find(|(k, _)| *k == "MAX_IN_FLIGHT");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--child", &mode, "--names", &args.names.to_string()])
        .args(
            in_flight
                .map(|(_, n)| ["--max-in-flight", n.as_str()])
                .into_iter()
                .flatten(),
        )
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--timeout", &args.overall.as_secs().to_string()])
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::inherit())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("{label}: no result:\n{stdout}"));
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or("0")
            .to_string()
    };
    let row = Row {
        label: label.to_string(),
        ok: field("ok").parse().unwrap(),
        failed: field("failed").parse().unwrap(),
        secs: field("secs").parse().unwrap(),
        pool_threads: if mode == "thread" {
            field("pool_threads")
        } else {
            "-".into()
        },
        drops: before.zip(udp_rcvbuf_errors()).map(|(b, a)| a - b),
        client_cpu_ms: field("cpu_ms").parse().unwrap(),
        server_cpu_ms: server_before.zip(dnsmasq.cpu_ms()).map(|(b, a)| a - b),
    };
    eprintln!(
        "{label}: {} ok, {} failed in {:.2} s",
        row.ok, row.failed, row.secs
    );
    row
}

fn main() {
    let args = parse_args();
    if let Some(mode) = &args.child {
        assert_eq!(std::env::var("GREEN_RESOLVER").unwrap_or_default(), *mode);
        return child(&args);
    }
    let in_ns = std::env::var_os(NS_MARKER).is_some();
    let is_root = fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if args.netns && !in_ns && is_root && run("unshare", &["--version"]) {
        let status = Command::new("unshare")
            .args(["--mount", "--net", "--fork", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(&args.raw)
            .env(NS_MARKER, "1")
            .status()
            .expect("unshare");
        std::process::exit(status.code().unwrap_or(1));
    }

    let load = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into());
    let dir = std::env::temp_dir().join(format!("green-dns-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let hosts = dir.join("hosts");
    let mut text = String::new();
    for i in 0..args.names {
        writeln!(
            text,
            "10.{}.{}.{} {}",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255,
            name(i)
        )
        .unwrap();
    }
    fs::write(&hosts, text).unwrap();

    let mut native_env = vec![("GREEN_RESOLVER", "native".to_string())];
    let getaddrinfo_ok = in_ns
        && run("ip", &["link", "set", "lo", "up"])
        && fs::write(
            dir.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:5\n",
        )
        .is_ok()
        && run(
            "mount",
            &[
                "--bind",
                &dir.join("resolv.conf").display().to_string(),
                "/etc/resolv.conf",
            ],
        );
    let port = if getaddrinfo_ok {
        53
    } else {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        native_env.push(("GREEN_NAMESERVERS", format!("127.0.0.1:{port}")));
        native_env.push(("RES_OPTIONS", "timeout:1 attempts:5".into()));
        port
    };
    let dnsmasq = start_dnsmasq(port, &hosts);

    let mut rows = vec![measure(&args, &dnsmasq, "native", &native_env)];
    let mut uncapped = native_env.clone();
    uncapped.push(("MAX_IN_FLIGHT", args.concurrency.to_string()));
    rows.push(measure(
        &args,
        &dnsmasq,
        &format!("native, max_in_flight({})", args.concurrency),
        &uncapped,
    ));
    if getaddrinfo_ok {
        rows.push(measure(
            &args,
            &dnsmasq,
            "thread (default pool)",
            &[("GREEN_RESOLVER", "thread".into())],
        ));
        rows.push(measure(
            &args,
            &dnsmasq,
            "thread (GREEN_THREADPOOL_SIZE=64)",
            &[
                ("GREEN_RESOLVER", "thread".into()),
                ("GREEN_THREADPOOL_SIZE", "64".into()),
            ],
        ));
    } else {
        eprintln!("thread: skipped (needs root and unshare to point getaddrinfo at dnsmasq)");
    }
    drop(dnsmasq);
    let _ = fs::remove_dir_all(&dir);

    let native_rate = rows[0].ok as f64 / rows[0].secs;
    let mut table = String::new();
    writeln!(
        table,
        "| resolver | names ok | failed | seconds | names/s | native ÷ this | client CPU µs/name | \
         dnsmasq CPU µs/name | pool threads | UDP rcvbuf drops |"
    )
    .unwrap();
    writeln!(table, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
    for row in &rows {
        let rate = row.ok as f64 / row.secs;
        writeln!(
            table,
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.0} | {} | {} | {} |",
            row.label,
            row.ok,
            row.failed,
            row.secs,
            rate,
            native_rate / rate,
            row.client_cpu_ms as f64 * 1000.0 / row.ok.max(1) as f64,
            row.server_cpu_ms.map_or("?".into(), |ms| format!(
                "{:.0}",
                ms as f64 * 1000.0 / row.ok.max(1) as f64
            )),
            row.pool_threads,
            row.drops.map_or("?".into(), |d| d.to_string())
        )
        .unwrap();
    }
    println!("{table}");
    if args.write {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let command = format!(
            "cargo run --release -p green-bench --bin dns -- {}",
            args.raw.join(" ")
        );
        let report = format!(
            "# DNS benchmark: native stub resolver vs getaddrinfo on the thread pool\n\n\
             {} distinct names served by dnsmasq (local `--addn-hosts`), {} lookups in flight \
             (`green::Pool`), each lookup A + AAAA; median of {} runs; {cores} cores, load \
             average {load} when it started.\n\n\
             Command: `{}`\n\n{table}\n\
             *native ÷ this* above 1 means native is that many times faster (wall clock: it \
             depends on how busy the machine is, the CPU columns do not). The native resolver runs \
             on the calling thread's hub alone and keeps at most 64 tries (A + AAAA on one \
             socket) in flight, so that dnsmasq's single socket does not overflow; getaddrinfo \
             runs on every pool thread at once, so with spare cores (or, on a busy machine, a \
             larger share of the CPU for its many threads) it can win on wall clock while \
             spending more CPU per name.\n",
            args.names,
            args.concurrency,
            args.runs,
            command.trim_end()
        );
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../RESULTS-dns.md");
        fs::write(&path, report).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
