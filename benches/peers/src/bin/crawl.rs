//! Crawl: 10,000 static pages (~1.7 KB each) from a local nginx at concurrency 100, with green's
//! HTTP client side by side with tokio + reqwest, ureq on 100 threads, and (when installed) Go's
//! net/http and Python gevent + urllib3 (issue 4 §6).
//!
//! ```text
//! cargo run --release -p green-bench --bin crawl                 # writes benches/RESULTS-crawl.md
//! cargo run --release -p green-bench --bin crawl -- --runs 1 --peers green,reqwest --no-write
//! cargo run --release -p green-bench --bin crawl -- --serve 300   # nginx only, to profile a peer:
//! perf record -g taskset -c 1 target/release/crawl --child green --url URL --concurrency 100
//! # another build of this benchmark (say, of the base commit) side by side, as PEER@base:
//! cargo run --release -p green-bench --bin crawl -- --peers green-plain,green-plain@base,reqwest \
//!     --baseline /tmp/crawl-base --no-write
//! # two builds of one peer against the `--serve` nginx: instructions and simulated cache misses
//! # per page (callgrind), and CPU per page run by run in alternation:
//! benches/scripts/callgrind-crawl.sh target/release/crawl green-plain URL
//! benches/scripts/ab-crawl.py target/release/crawl /tmp/crawl-base green-plain URL 40
//! ```
//!
//! The site is generated into a temp dir and served by nginx (`apt-get install nginx-light`)
//! with a config there (`daemon off`, one process, `open_file_cache`, access log off, and Debian's
//! stock `sendfile on; tcp_nopush on`, so each response leaves as one TCP segment), pinned to
//! core 0 with `taskset`; each crawler runs in a child process pinned to core 1, so the client
//! has one core, like a green hub. Every peer does the same work: start at `/page/0.html`, `GET`
//! each page, find every `href="/…"` in the body with a plain substring search (no HTML parser,
//! so the table compares HTTP stacks and runtimes), dedup, queue, until the frontier is empty;
//! 100 requests in flight; keep-alive with up to 100 idle connections. Each child measures its
//! own wall time and CPU time from its first request to its last body (process start, Go's
//! runtime and Python's imports excluded) and must fetch every page without error.
//!
//! Peers: green (`green::http::client::Client`, a `Pool` of 100 workers on a `Queue`, like
//! `examples/crawl.rs`), reqwest 0.12 on a current-thread tokio runtime (a `JoinSet` of 100
//! requests), ureq 3 on 100 threads (a `Mutex` + `Condvar` frontier), Go's net/http with 100
//! goroutines (`benches/peers/go/crawl.go`, `GOMAXPROCS=1`), gevent with urllib3
//! (`benches/peers/py/crawl_gevent.py`). Runs are interleaved (run 1 of every peer, then run 2…)
//! so that load from elsewhere on the machine spreads over all peers, after one uncounted warm-up
//! run of each (the very first crawl of a fresh nginx is up to 2x slower for every peer); the
//! table shows the median. CPU per page is shown as the median and range over the runs, and as
//! a ratio to reqwest's taken within each round (the two runs next to each other), whose median
//! and range are less at the mercy of load from elsewhere than the ratio of two medians.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const FILLER: &str = "Green threads let plain blocking code wait on thousands of sockets at \
                      once: each greenlet parks on the hub while its request is in flight, and \
                      the hub resumes it when the socket is ready. ";

/// The heading of the part of RESULTS-crawl.md that a re-run keeps.
const HAND_WRITTEN: &str = "## Where the time goes";

const ALL_PEERS: [&str; 6] = ["green", "green-plain", "reqwest", "ureq", "go", "gevent"];

struct Args {
    pages: usize,
    concurrency: usize,
    runs: usize,
    peers: Vec<String>,
    write: bool,
    child: Option<String>,
    url: String,
    serve: Option<u64>,
    /// Another build of this benchmark, which runs the peers named `PEER@base`.
    baseline: Option<String>,
    raw: Vec<String>,
}

fn parse_args() -> Args {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args {
        pages: 10_000,
        concurrency: 100,
        runs: 5,
        peers: ALL_PEERS.iter().map(|p| p.to_string()).collect(),
        write: true,
        child: None,
        url: String::new(),
        serve: None,
        baseline: None,
        raw: raw.clone(),
    };
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--pages" => args.pages = value().parse().expect("--pages N"),
            "--concurrency" => args.concurrency = value().parse().expect("--concurrency N"),
            "--runs" => args.runs = value().parse().expect("--runs N"),
            "--peers" => args.peers = value().split(',').map(str::to_string).collect(),
            "--no-write" => args.write = false,
            "--child" => args.child = Some(value()),
            "--url" => args.url = value(),
            "--serve" => args.serve = Some(value().parse().expect("--serve SECONDS")),
            "--baseline" => args.baseline = Some(value()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("crawl: unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    args
}

const USAGE: &str = "usage: crawl [--pages N] [--concurrency N] [--runs N] \
     [--peers green,green-plain,reqwest,ureq,go,gevent] [--no-write] [--serve SECONDS] \
     [--baseline OTHER_BUILD_OF_CRAWL (runs peers named PEER@base, e.g. green-plain@base)]";

/// What one crawl did, as a child prints it: `RESULT pages=N bytes=N secs=S cpu=S errors=N`.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    pages: u64,
    bytes: u64,
    secs: f64,
    /// User + system CPU seconds.
    cpu: f64,
    /// User CPU seconds (0 when the peer does not report them).
    user: f64,
    errors: u64,
}

impl Outcome {
    fn line(&self) -> String {
        format!(
            "RESULT pages={} bytes={} secs={:.6} cpu={:.6} user={:.6} errors={}",
            self.pages, self.bytes, self.secs, self.cpu, self.user, self.errors
        )
    }

    /// Sets `secs` and the CPU fields to what was spent since `start`.
    fn measured_since(mut self, start: (Instant, CpuTime)) -> Outcome {
        let now = CpuTime::now();
        self.secs = start.0.elapsed().as_secs_f64();
        self.cpu = now.total() - start.1.total();
        self.user = now.user - start.1.user;
        self
    }

    fn parse(text: &str) -> Option<Outcome> {
        let line = text.lines().find(|l| l.starts_with("RESULT "))?;
        let mut out = Outcome::default();
        for field in line.split_whitespace().skip(1) {
            let (key, value) = field.split_once('=')?;
            match key {
                "pages" => out.pages = value.parse().ok()?,
                "bytes" => out.bytes = value.parse().ok()?,
                "secs" => out.secs = value.parse().ok()?,
                "cpu" => out.cpu = value.parse().ok()?,
                "user" => out.user = value.parse().ok()?,
                "errors" => out.errors = value.parse().ok()?,
                _ => {}
            }
        }
        Some(out)
    }
}

/// This process's CPU time so far (getrusage), in seconds.
#[derive(Debug, Clone, Copy)]
struct CpuTime {
    user: f64,
    system: f64,
}

impl CpuTime {
    fn now() -> CpuTime {
        let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
            .expect("getrusage");
        let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        CpuTime {
            user: tv(usage.user_time()),
            system: tv(usage.system_time()),
        }
    }

    fn total(&self) -> f64 {
        self.user + self.system
    }
}

/// When a crawl starts: wall clock and CPU time.
fn started() -> (Instant, CpuTime) {
    (Instant::now(), CpuTime::now())
}

/// The set of paths already seen, the same type in every Rust peer: hashed with FxHash (the
/// rustc hasher: a rotate, a xor and a multiply per 8 bytes) rather than SipHash, which took ~4 %
/// of the green peer's user-space instructions (10,000 pages × 8–9 links looked up); the keys are
/// the bench's own paths, so HashDoS resistance buys nothing here.
type Seen = HashSet<String, BuildHasherDefault<FxHasher>>;

fn seen_with(path: String) -> Seen {
    let mut seen = Seen::default();
    seen.insert(path);
    seen
}

/// FxHash, as in `rustc-hash` 1.x.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Every `href="/…"` of a page (the substring search all peers use).
fn for_each_link(body: &[u8], mut f: impl FnMut(&str)) {
    let finder = memchr::memmem::Finder::new(b"href=\"");
    let mut rest = body;
    while let Some(at) = finder.find(rest) {
        rest = &rest[at + 6..];
        let Some(end) = memchr::memchr(b'"', rest) else {
            break;
        };
        if end > 0 && rest[0] == b'/' {
            if let Ok(link) = std::str::from_utf8(&rest[..end]) {
                f(link);
            }
        }
        rest = &rest[end + 1..];
    }
}

/// `(origin, path)` of the seed URL.
fn split_seed(url: &str) -> (String, String) {
    let after = url.find("://").map_or(0, |i| i + 3);
    let slash = url[after..].find('/').map_or(url.len(), |i| after + i);
    (url[..slash].to_string(), url[slash..].to_string())
}

// ---------------------------------------------------------------------------------------------
// The peers (each runs in its own child process).

fn crawl_green(seed: &str, concurrency: usize) -> Outcome {
    use green::http::client::Client;
    let (origin, path) = split_seed(seed);
    let client = Client::builder()
        .pool_max_idle_per_host(concurrency)
        .gzip(false)
        .deflate(false)
        .build()
        .expect("client");
    let frontier = green::sync::Queue::new();
    let seen = Rc::new(RefCell::new(seen_with(path.clone())));
    let outcome = Rc::new(Cell::new(Outcome::default()));
    frontier.put(path);
    let start = started();
    let pool = green::Pool::new(concurrency);
    for _ in 0..concurrency {
        let (client, frontier, seen, outcome, origin) = (
            client.clone(),
            frontier.clone(),
            seen.clone(),
            outcome.clone(),
            origin.clone(),
        );
        pool.spawn(move || loop {
            let path: String = frontier.get();
            let mut o = Outcome::default();
            match client
                .get(format!("{origin}{path}"))
                .send()
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.bytes())
            {
                Ok(body) => {
                    o.bytes = body.len() as u64;
                    let mut seen = seen.borrow_mut();
                    for_each_link(&body, |link| {
                        if !seen.contains(link) {
                            seen.insert(link.to_string());
                            frontier.put(link.to_string());
                        }
                    });
                }
                Err(_) => o.errors = 1,
            }
            let mut total = outcome.get();
            total.pages += 1;
            total.bytes += o.bytes;
            total.errors += o.errors;
            outcome.set(total);
            let _ = frontier.task_done();
        });
    }
    frontier.join();
    // Measured at the last body, like every peer: the workers' shutdown (unwinding 100 parked
    // greenlets, ~2 % of the crawl's instructions) is not the crawl.
    let total = outcome.get().measured_since(start);
    pool.kill();
    total
}

/// The path a user writes first, as in the README: `green::http::get(url)?.bytes()` from each
/// greenlet, no `Client` set up (the thread's default client: its pool keeps 32 idle connections
/// per host, gzip and deflate asked for, proxies from the environment).
fn crawl_green_plain(seed: &str, concurrency: usize) -> Outcome {
    let (origin, path) = split_seed(seed);
    let frontier = green::sync::Queue::new();
    let seen = Rc::new(RefCell::new(seen_with(path.clone())));
    let outcome = Rc::new(Cell::new(Outcome::default()));
    frontier.put(path);
    let start = started();
    let pool = green::Pool::new(concurrency);
    for _ in 0..concurrency {
        let (frontier, seen, outcome, origin) = (
            frontier.clone(),
            seen.clone(),
            outcome.clone(),
            origin.clone(),
        );
        pool.spawn(move || loop {
            let path: String = frontier.get();
            let mut o = Outcome::default();
            match green::http::get(format!("{origin}{path}")).and_then(|r| r.bytes()) {
                Ok(body) => {
                    o.bytes = body.len() as u64;
                    let mut seen = seen.borrow_mut();
                    for_each_link(&body, |link| {
                        if !seen.contains(link) {
                            seen.insert(link.to_string());
                            frontier.put(link.to_string());
                        }
                    });
                }
                Err(_) => o.errors = 1,
            }
            let mut total = outcome.get();
            total.pages += 1;
            total.bytes += o.bytes;
            total.errors += o.errors;
            outcome.set(total);
            let _ = frontier.task_done();
        });
    }
    frontier.join();
    // Measured at the last body, like every peer: the workers' shutdown (unwinding 100 parked
    // greenlets, ~2 % of the crawl's instructions) is not the crawl.
    let total = outcome.get().measured_since(start);
    pool.kill();
    total
}

fn crawl_reqwest(seed: &str, concurrency: usize) -> Outcome {
    let (origin, path) = split_seed(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .expect("client");
        let mut seen = seen_with(path.clone());
        let mut queue = VecDeque::from([path]);
        let mut tasks = tokio::task::JoinSet::new();
        let mut total = Outcome::default();
        let start = started();
        loop {
            while tasks.len() < concurrency {
                let Some(path) = queue.pop_front() else { break };
                let (client, url) = (client.clone(), format!("{origin}{path}"));
                tasks.spawn(async move {
                    let response = client.get(url).send().await?.error_for_status()?;
                    response.bytes().await
                });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            total.pages += 1;
            match done.expect("task") {
                Ok(body) => {
                    total.bytes += body.len() as u64;
                    for_each_link(&body, |link| {
                        if !seen.contains(link) {
                            seen.insert(link.to_string());
                            queue.push_back(link.to_string());
                        }
                    });
                }
                Err(_) => total.errors += 1,
            }
        }
        total.measured_since(start)
    })
}

fn crawl_ureq(seed: &str, concurrency: usize) -> Outcome {
    struct Frontier {
        queue: VecDeque<String>,
        seen: Seen,
        busy: usize,
        total: Outcome,
    }
    let (origin, path) = split_seed(seed);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_idle_connections(concurrency)
        .max_idle_connections_per_host(concurrency)
        .http_status_as_error(true)
        .build()
        .into();
    let shared = Arc::new((
        Mutex::new(Frontier {
            queue: VecDeque::from([path.clone()]),
            seen: seen_with(path),
            busy: 0,
            total: Outcome::default(),
        }),
        Condvar::new(),
    ));
    let start = started();
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (shared, agent, origin) = (shared.clone(), agent.clone(), origin.clone());
            std::thread::spawn(move || {
                let (lock, cond) = &*shared;
                loop {
                    let path = {
                        let mut f = lock.lock().unwrap();
                        while f.queue.is_empty() && f.busy > 0 {
                            f = cond.wait(f).unwrap();
                        }
                        let Some(path) = f.queue.pop_front() else {
                            cond.notify_all();
                            return;
                        };
                        f.busy += 1;
                        path
                    };
                    let body = agent
                        .get(format!("{origin}{path}"))
                        .call()
                        .and_then(|mut r| r.body_mut().read_to_vec());
                    let mut links = Vec::new();
                    if let Ok(body) = &body {
                        for_each_link(body, |link| links.push(link.to_string()));
                    }
                    let mut f = lock.lock().unwrap();
                    f.total.pages += 1;
                    match &body {
                        Ok(body) => f.total.bytes += body.len() as u64,
                        Err(_) => f.total.errors += 1,
                    }
                    for link in links {
                        if f.seen.insert(link.clone()) {
                            f.queue.push_back(link);
                        }
                    }
                    f.busy -= 1;
                    drop(f);
                    cond.notify_all();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("worker");
    }
    let total = shared.0.lock().unwrap().total;
    total.measured_since(start)
}

// ---------------------------------------------------------------------------------------------
// The site and nginx.

/// The hrefs of page `i`: page 0 links to pages 1..=100; every page links to its two children
/// in a binary tree (so all are reachable), its parent and three pseudo-random pages.
fn links(i: usize, n: usize) -> Vec<usize> {
    let mut out: Vec<usize> = if i == 0 {
        (1..=100.min(n - 1)).collect()
    } else {
        vec![]
    };
    out.extend([2 * i + 1, 2 * i + 2].into_iter().filter(|&c| c < n));
    if i > 0 {
        out.push((i - 1) / 2);
    }
    out.extend([(i * 31 + 7) % n, (i * 97 + 13) % n, (i * 7 + 3) % n]);
    out
}

fn page(i: usize, n: usize) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Page {i}</title>\
         </head>\n<body><h1>Page {i}</h1>\n"
    );
    for p in 0..8 {
        html.push_str("<p>");
        html.push_str(&FILLER[p * 7 % 40..]);
        html.push_str("</p>\n");
    }
    html.push_str("<ul>\n");
    for (k, target) in links(i, n).iter().enumerate() {
        let _ = writeln!(
            html,
            "<li><a href=\"/page/{target}.html\">link {k}</a></li>"
        );
    }
    html.push_str("</ul></body></html>\n");
    html
}

/// nginx serving `dir/site`, stopped (and the dir removed) on drop. It runs under
/// `timeout 1800`, so a benchmark killed before its drop leaves no nginx behind for long.
struct Nginx {
    child: Child,
    pid: Option<u32>,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        match self.pid {
            Some(pid) => {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
            None => {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Nginx {
    /// CPU seconds nginx has used (from /proc).
    fn cpu_seconds(&self) -> f64 {
        let Some(pid) = self.pid else { return 0.0 };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&k| fields.get(k).and_then(|v| v.parse::<f64>().ok()))
            .sum();
        ticks / 100.0
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn pinned(core: usize, program: &str) -> Command {
    if have("taskset") {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &core.to_string(), program]);
        cmd
    } else {
        Command::new(program)
    }
}

fn start_nginx(pages: usize) -> Nginx {
    let nginx = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|p| have(p) || Path::new(p).exists())
        .expect("nginx is not installed: apt-get install -y nginx-light");
    let dir = std::env::temp_dir().join(format!("green-crawl-bench-{}", std::process::id()));
    let site = dir.join("site/page");
    fs::create_dir_all(&site).unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    for i in 0..pages {
        fs::write(site.join(format!("{i}.html")), page(i, pages)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.display().to_string();
    let root =
        fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    let user = if root { "user root;" } else { "" };
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n{user}\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n\
           keepalive_requests 1000000;\n  keepalive_timeout 60s;\n\
           open_file_cache max=20000 inactive=60s;\n\
           client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
           fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n\
           scgi_temp_path {d}/tmp/scgi;\n  types {{ text/html html; }}\n\
           server {{ listen 127.0.0.1:{port}; root {d}/site; }}\n}}\n"
    );
    fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut command = Command::new("timeout");
    command.args(["-s", "TERM", "1800"]);
    if have("taskset") {
        command.args(["taskset", "-c", "0"]);
    }
    let child = command
        .arg(nginx)
        .args(["-p", &format!("{d}/"), "-c", &format!("{d}/nginx.conf")])
        .args(["-e", &format!("{d}/error.log")])
        .stdin(Stdio::null())
        .spawn()
        .expect("start nginx");
    let mut nginx = Nginx {
        child,
        pid: None,
        dir,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut conn) = TcpStream::connect(addr) {
            conn.write_all(b"GET /page/0.html HTTP/1.0\r\n\r\n")
                .unwrap();
            let mut reply = String::new();
            let _ = conn.read_to_string(&mut reply);
            assert!(reply.starts_with("HTTP/1.1 200"), "nginx: {reply}");
            let pid = fs::read_to_string(nginx.dir.join("nginx.pid")).unwrap_or_default();
            nginx.pid = pid.trim().parse().ok();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not start: see {d}/error.log"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nginx
}

// ---------------------------------------------------------------------------------------------
// The driver.

/// How to run `peer` as a child, or why it cannot run here.
fn peer_command(peer: &str, args: &Args, url: &str, scratch: &Path) -> Result<Command, String> {
    let concurrency = args.concurrency.to_string();
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(peer) = peer.strip_suffix("@base") {
        let Some(exe) = &args.baseline else {
            return Err("no --baseline build given".into());
        };
        let mut cmd = pinned(1, exe);
        cmd.args(["--child", peer, "--url", url, "--concurrency", &concurrency]);
        return Ok(cmd);
    }
    match peer {
        "green" | "green-plain" | "reqwest" | "ureq" => {
            let exe = std::env::current_exe().unwrap();
            let mut cmd = pinned(1, exe.to_str().unwrap());
            cmd.args(["--child", peer, "--url", url, "--concurrency", &concurrency]);
            Ok(cmd)
        }
        "go" => {
            if !have("go") {
                return Err("go not installed (apt-get install -y golang-go)".into());
            }
            let binary = scratch.join("crawl-go");
            if !binary.exists() {
                let status = Command::new("go")
                    .args(["build", "-o", binary.to_str().unwrap()])
                    .arg(here.join("go/crawl.go"))
                    .status()
                    .map_err(|e| e.to_string())?;
                if !status.success() {
                    return Err("go build failed".into());
                }
            }
            let mut cmd = pinned(1, binary.to_str().unwrap());
            cmd.args([url, &concurrency]).env("GOMAXPROCS", "1");
            Ok(cmd)
        }
        "gevent" => {
            let ok = Command::new("python3")
                .args(["-c", "import gevent, urllib3"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(
                    "python3 with gevent and urllib3 not found (pip install gevent urllib3)".into(),
                );
            }
            let mut cmd = pinned(1, "python3");
            cmd.arg(here.join("py/crawl_gevent.py"))
                .args([url, &concurrency]);
            Ok(cmd)
        }
        other => Err(format!("unknown peer {other}")),
    }
}

/// The median and range of some runs' figures.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        Spread {
            median: median(&mut values),
            min: values[0],
            max: values[values.len() - 1],
        }
    }

    /// `median (min–max)` with `digits` decimals.
    fn show(&self, digits: usize) -> String {
        format!(
            "{:.digits$} ({:.digits$}–{:.digits$})",
            self.median, self.min, self.max
        )
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let args = parse_args();
    if let Some(peer) = &args.child {
        let outcome = match peer.as_str() {
            "green" => crawl_green(&args.url, args.concurrency),
            "green-plain" => crawl_green_plain(&args.url, args.concurrency),
            "reqwest" => crawl_reqwest(&args.url, args.concurrency),
            "ureq" => crawl_ureq(&args.url, args.concurrency),
            other => panic!("unknown child {other}"),
        };
        println!("{}", outcome.line());
        return;
    }

    let nginx = start_nginx(args.pages);
    let port = fs::read_to_string(nginx.dir.join("nginx.conf"))
        .unwrap()
        .split("listen 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(';').next().map(str::to_string))
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/page/0.html");
    let scratch = nginx.dir.clone();
    eprintln!(
        "{} pages of ~{} bytes served by nginx at {url}; {} runs; concurrency {}",
        args.pages,
        page(args.pages / 2, args.pages).len(),
        args.runs,
        args.concurrency
    );
    if let Some(secs) = args.serve {
        eprintln!("serving for {secs} s; crawl it with e.g.");
        eprintln!(
            "  taskset -c 1 {} --child green --url {url} --concurrency {}",
            std::env::current_exe().unwrap().display(),
            args.concurrency
        );
        std::thread::sleep(Duration::from_secs(secs));
        return;
    }
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let mut commands = Vec::new();
    let mut skipped = Vec::new();
    for peer in &args.peers {
        match peer_command(peer, &args, &url, &scratch) {
            Ok(_) => commands.push(peer.clone()),
            Err(why) => {
                eprintln!("skipping {peer}: {why}");
                skipped.push(format!("{peer}: {why}"));
            }
        }
    }
    let mut results: Vec<(String, Vec<Outcome>, Vec<f64>)> = commands
        .iter()
        .map(|p| (p.clone(), vec![], vec![]))
        .collect();
    // Round 0 warms nginx's file cache and the kernel's socket state for every peer; only the
    // rounds after it are counted.
    for run in 0..=args.runs {
        for (peer, outcomes, nginx_cpu) in &mut results {
            let mut cmd = peer_command(peer, &args, &url, &scratch).unwrap();
            let cpu0 = nginx.cpu_seconds();
            let output = cmd.stderr(Stdio::inherit()).output().expect("run peer");
            let nginx_seconds = nginx.cpu_seconds() - cpu0;
            let text = String::from_utf8_lossy(&output.stdout);
            let outcome = Outcome::parse(&text).unwrap_or_else(|| {
                panic!("{peer} printed no result: {text} ({:?})", output.status)
            });
            assert_eq!(
                (outcome.pages, outcome.errors),
                (args.pages as u64, 0),
                "{peer} run {run}: {text}"
            );
            if run == 0 {
                eprintln!("warm-up: {peer:8} {:.3} s (not counted)", outcome.secs);
                continue;
            }
            eprintln!("run {run}: {peer:8} {:.3} s", outcome.secs);
            nginx_cpu.push(nginx_seconds);
            outcomes.push(outcome);
        }
    }

    let secs_of =
        |outcomes: &[Outcome]| median(&mut outcomes.iter().map(|o| o.secs).collect::<Vec<_>>());
    let reqwest = results
        .iter()
        .find(|r| r.0 == "reqwest")
        .map(|r| secs_of(&r.1));
    let gevent = results
        .iter()
        .find(|r| r.0 == "gevent")
        .map(|r| secs_of(&r.1));
    // CPU per page of each run; a peer's CPU ÷ reqwest's is taken within each round (the runs
    // that followed each other), so that load from elsewhere cancels out of the ratio.
    let reqwest_cpu: Option<Vec<f64>> = results
        .iter()
        .find(|r| r.0 == "reqwest")
        .map(|r| r.1.iter().map(|o| o.cpu).collect());
    let mut table = String::from(
        "| crawler | pages | median s | best s | pages/s | ÷ reqwest | gevent ÷ this | client CPU µs/page, median (range) | of it user | client CPU ÷ reqwest's, median (range) | nginx CPU µs/page |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (peer, outcomes, nginx_cpu) in &mut results {
        let secs = secs_of(outcomes);
        let best = outcomes
            .iter()
            .map(|o| o.secs)
            .fold(f64::INFINITY, f64::min);
        let pages = outcomes[0].pages as f64;
        let per_page = |cpu: Vec<f64>| Spread::of(cpu.iter().map(|c| c * 1e6 / pages).collect());
        let cpu = per_page(outcomes.iter().map(|o| o.cpu).collect());
        let user = per_page(outcomes.iter().map(|o| o.user).collect());
        let ratio = reqwest_cpu.as_ref().map(|theirs| {
            Spread::of(
                outcomes
                    .iter()
                    .zip(theirs)
                    .map(|(o, r)| o.cpu / r)
                    .collect(),
            )
        });
        let name = match peer.as_str() {
            "green" => "green (green::http, Pool of 100 greenlets)",
            "green-plain" => "green, plain `green::http::get(url)?.bytes()`, no Client set up",
            "reqwest" => "reqwest 0.12 + tokio current-thread",
            "ureq" => "ureq 3, 100 threads",
            "go" => "Go net/http, 100 goroutines, GOMAXPROCS=1",
            "gevent" => "Python gevent + urllib3, 100 greenlets",
            other => other,
        };
        let _ = writeln!(
            table,
            "| {name} | {} | {secs:.3} | {best:.3} | {:.0} | {} | {} | {} | {} | {} | {:.0} |",
            outcomes[0].pages,
            pages / secs,
            reqwest.map_or("-".into(), |r| format!("{:.2}", secs / r)),
            gevent.map_or("-".into(), |g| format!("{:.1}", g / secs)),
            cpu.show(1),
            if user.median > 0.0 {
                format!("{:.1}", user.median)
            } else {
                "-".into()
            },
            ratio.map_or("-".into(), |r| r.show(2)),
            median(nginx_cpu) * 1e6 / pages,
        );
    }
    println!("{table}");

    if args.write {
        let command = if args.raw.is_empty() {
            "cargo run --release -p green-bench --bin crawl".to_string()
        } else {
            format!(
                "cargo run --release -p green-bench --bin crawl -- {}",
                args.raw.join(" ")
            )
        };
        let mut md = format!(
            "# Crawl benchmark: green vs reqwest, ureq, Go and gevent\n\n\
             {} static pages (~1.7 KB) from a local nginx (one process) pinned to core 0, each \
             crawler in its own process pinned to core 1, {} requests in flight, keep-alive; \
             median of {} interleaved runs after one warm-up run of each; 2 cores, load average {} \
             when it started.\n\n\
             Command: `{command}`\n\n{table}\n",
            args.pages,
            args.concurrency,
            args.runs,
            load.split_whitespace().next().unwrap_or("?"),
        );
        md.push_str(
            "*÷ reqwest* below 1 means faster than reqwest; *gevent ÷ this* is how many times \
             faster than gevent. Seconds are wall time from the first request to the last body \
             (process start excluded); CPU columns come from getrusage (client, user + system; \
             *of it user* is the user part's median) and /proc (nginx). *client CPU ÷ \
             reqwest's* is taken within each round (a peer's run and reqwest's run next to it), \
             then the median and range over the rounds, so that load from elsewhere on the \
             machine cancels out of the ratio. Every peer finds links by the same substring search \
             for `href=\"/`, so the table compares HTTP stacks and runtimes, not HTML parsers.\n",
        );
        if !skipped.is_empty() {
            let _ = writeln!(md, "\nNot run: {}.", skipped.join("; "));
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../RESULTS-crawl.md");
        // A hand-written section (profiles, analysis) survives re-runs.
        let kept = fs::read_to_string(&path).unwrap_or_default();
        if let Some(at) = kept.find(HAND_WRITTEN) {
            md.push('\n');
            md.push_str(&kept[at..]);
        }
        fs::write(&path, md).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
