//! HTTP server throughput: green's `Server` side by side with hyper 1.x (the http1 builder on a
//! tokio current-thread runtime), driven by `wrk`.
//!
//! Issue 11 §1. Two responses, each built by the handler per request: `Hello, World!` with
//! `Content-Type: text/plain` (`/`), and a 1 KB JSON document with `Content-Type:
//! application/json` (`/json`, a static string: the server is measured, not a serialiser).
//! Keep-alive, `wrk -t1 -c100`, then the same with 16 requests pipelined per connection (a wrk
//! Lua script). Each server runs in its own process pinned to core 0 and wrk to core 1
//! (`taskset`, both under `SCHED_FIFO` as in `echo`, so the other jobs on this shared machine
//! delay their wake-ups less). Reported: requests per second, the server's CPU time per request
//! (utime + stime from `/proc/<pid>/stat`) and the ratios green / hyper. Runs are interleaved
//! (every server once per round) and the ratios are medians of same-round ratios.
//!
//! ```text
//! apt-get install -y wrk
//! cargo build --release -p green-bench
//! target/release/http bench --secs 5 --runs 3
//! target/release/http server green       # one server, by hand: prints `listening ADDR`
//! target/release/http instructions        # user-space instructions per request (callgrind)
//! target/release/http drive ADDR / 10000 1  # 10,000 requests on one connection, 1 at a time
//! ```
//!
//! `instructions` runs each server under `valgrind --tool=callgrind` twice per load, serving
//! 2,000 and then 12,000 requests from one keep-alive connection (one at a time, or 16
//! pipelined), and reports the difference in instructions over the 10,000 requests between:
//! deterministic, so it can compare two builds on a loaded machine where timings cannot.
//!
//! hyper is given `pipeline_flush(true)` (its option for pipelined clients, as in its own
//! benchmarks) and `TCP_NODELAY`, as green's server sets it.

use std::io::{self, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use green_bench::{loadavg, median, read_line};

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, fixed at 100 on Linux.
const TICKS_PER_SEC: f64 = 100.0;
/// Requests wrk sends back to back on a connection in the pipelined runs.
const PIPELINE_DEPTH: usize = 16;
const HELLO: &str = "Hello, World!";

/// A JSON document of exactly 1,024 bytes.
fn json_body() -> String {
    let mut items = Vec::new();
    let mut text = String::new();
    for i in 0.. {
        items.push(format!("{{\"id\":{i},\"name\":\"item {i}\",\"ok\":true}}"));
        text = format!("{{\"items\":[{}]}}", items.join(","));
        if text.len() > 1000 {
            break;
        }
    }
    let pad = 1024usize.saturating_sub(text.len() + ",\"pad\":\"\"".len());
    text.pop();
    text.push_str(&format!(",\"pad\":\"{}\"}}", "x".repeat(pad)));
    text
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Green,
    Hyper,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Green => "green",
            Server::Hyper => "hyper",
        }
    }

    fn parse(text: &str) -> Option<Server> {
        [Server::Green, Server::Hyper]
            .into_iter()
            .find(|s| s.name() == text)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    Plain,
    Json,
    PlainPipelined,
    JsonPipelined,
}

impl Load {
    const ALL: [Load; 4] = [
        Load::Plain,
        Load::Json,
        Load::PlainPipelined,
        Load::JsonPipelined,
    ];

    fn label(self) -> &'static str {
        match self {
            Load::Plain => "plaintext",
            Load::Json => "JSON 1 KB",
            Load::PlainPipelined => "plaintext, pipelined ×16",
            Load::JsonPipelined => "JSON 1 KB, pipelined ×16",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Load::Plain | Load::PlainPipelined => "/",
            Load::Json | Load::JsonPipelined => "/json",
        }
    }

    fn pipelined(self) -> bool {
        matches!(self, Load::PlainPipelined | Load::JsonPipelined)
    }
}

#[derive(Clone, Debug)]
struct Opts {
    secs: u64,
    runs: usize,
    conns: usize,
    servers: Vec<Server>,
}

fn parse_opts(args: &[String]) -> Opts {
    let mut opts = Opts {
        secs: 5,
        runs: 3,
        conns: 100,
        servers: vec![Server::Green, Server::Hyper],
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
                .clone()
        };
        match flag.as_str() {
            "--secs" => opts.secs = number(&value()),
            "--runs" => opts.runs = number(&value()),
            "--conns" => opts.conns = number(&value()),
            "--servers" => {
                opts.servers = value()
                    .split(',')
                    .map(|s| Server::parse(s).unwrap_or_else(|| die(&format!("no server {s}"))))
                    .collect()
            }
            other => die(&format!("unknown option {other}")),
        }
    }
    opts
}

fn number<T: std::str::FromStr>(text: &str) -> T {
    text.parse()
        .unwrap_or_else(|_| die(&format!("not a number: {text}")))
}

fn die(message: &str) -> ! {
    eprintln!("http: {message}");
    eprintln!(
        "usage: http bench [--secs S] [--runs R] [--conns C] [--servers green,hyper]\n       \
         http instructions [--servers green,hyper]\n       \
         http drive ADDR PATH COUNT DEPTH   (COUNT requests on one connection)\n       \
         http server <green|hyper> [--addr A]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench(&parse_opts(&args[1..])),
        Some("instructions") => instructions(&parse_opts(&args[1..])),
        Some("drive") => {
            let (Some(addr), Some(path), Some(count), Some(depth)) = (
                args.get(1).and_then(|a| a.parse().ok()),
                args.get(2),
                args.get(3).map(|n| number(n)),
                args.get(4).map(|n| number(n)),
            ) else {
                die("drive needs ADDR PATH COUNT DEPTH")
            };
            if let Err(err) = drive(addr, path, count, depth) {
                die(&format!("drive: {err}"));
            }
        }
        Some("server") => {
            let kind = args
                .get(1)
                .and_then(|k| Server::parse(k))
                .unwrap_or_else(|| die("server needs a kind"));
            let addr = match args.get(2..4) {
                Some([flag, addr]) if flag == "--addr" => addr.clone(),
                _ => "127.0.0.1:0".to_string(),
            };
            let result = match kind {
                Server::Green => serve_green(&addr),
                Server::Hyper => serve_hyper(&addr),
            };
            if let Err(err) = result {
                die(&format!("server failed: {err}"));
            }
        }
        _ => die("no mode given"),
    }
}

fn announce_listening(addr: SocketAddr) {
    println!("listening {addr}");
    let _ = io::stdout().flush();
}

/// Ends the process when the driver closes our stdin (a plain thread, off the server's core
/// work: it blocks in `read` until then).
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut rest = Vec::new();
        let _ = io::stdin().read_to_end(&mut rest);
        std::process::exit(0);
    });
}

// ---------------------------------------------------------------------------------------------
// Servers

fn serve_green(addr: &str) -> io::Result<()> {
    use green::http::server::{Body, Server};
    use green::http::Response;

    let json: &'static str = Box::leak(json_body().into_boxed_str());
    // hyper hands its service no peer address; green's per-request `SocketAddr` extension
    // (three allocations) is turned off to compare the same work.
    let server =
        Server::bind(addr)?.peer_addr_extension(std::env::var_os("HTTP_PEER_ADDR").is_some());
    let handle = server.start(move |request| {
        let (content_type, body) = if request.uri().path() == "/json" {
            ("application/json", json)
        } else {
            ("text/plain", HELLO)
        };
        Response::builder()
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("a valid response")
    })?;
    announce_listening(handle.local_addr());
    exit_when_stdin_closes();
    handle.wait();
    Ok(())
}

fn serve_hyper(addr: &str) -> io::Result<()> {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let json: &'static str = Box::leak(json_body().into_boxed_str());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        announce_listening(listener.local_addr()?);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (content_type, body) = if request.uri().path() == "/json" {
                                ("application/json", json)
                            } else {
                                ("text/plain", HELLO)
                            };
                            let response = hyper::Response::builder()
                                .header("content-type", content_type)
                                .body(Full::new(Bytes::from_static(body.as_bytes())))
                                .expect("a valid response");
                            async move { Ok::<_, std::convert::Infallible>(response) }
                        });
                    let _ = http1::Builder::new()
                        .pipeline_flush(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        exit_when_stdin_closes();
        std::future::pending::<io::Result<()>>().await
    })
}

// ---------------------------------------------------------------------------------------------
// Driver

/// Kills a child process when dropped, so a failed run leaves no process behind.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds (utime + stime, every thread) used by process `pid`.
fn proc_cpu_secs(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces: count fields after its closing paren.
    let rest = &stat[stat
        .rfind(')')
        .ok_or_else(|| io::Error::other("malformed stat"))?
        + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> io::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| io::Error::other("malformed stat"))
    };
    // Fields 14 and 15 of stat(5) are the 12th and 13th after the name.
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SEC)
}

/// `program` pinned to `core` under `SCHED_FIFO` (`chrt -f 10`, see `echo`).
fn pinned(core: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("chrt");
    cmd.args(["-f", "10", "taskset", "-c"])
        .arg(core.to_string())
        .arg(program);
    cmd
}

/// The wrk script that sends [`PIPELINE_DEPTH`] requests at a time.
fn pipeline_script(dir: &Path) -> io::Result<std::path::PathBuf> {
    let path = dir.join(format!("http-bench-pipeline-{}.lua", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "init = function(args)\n  local r = {{}}\n  for i = 1, {PIPELINE_DEPTH} do\n    \
             r[i] = wrk.format(nil)\n  end\n  req = table.concat(r)\nend\n\
             request = function()\n  return req\nend\n"
        ),
    )?;
    Ok(path)
}

/// One wrk run's outcome.
#[derive(Clone, Copy, Debug)]
struct Sample {
    requests_per_sec: f64,
    server_us_per_request: f64,
    errors: u64,
}

/// Runs wrk against `addr` for `secs` and returns (requests, seconds, errors).
fn run_wrk(
    addr: SocketAddr,
    load: Load,
    secs: u64,
    conns: usize,
    script: &Path,
) -> io::Result<(u64, f64, u64)> {
    let mut cmd = pinned(1, "wrk");
    cmd.args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s")]);
    if load.pipelined() {
        cmd.arg("-s").arg(script);
    }
    cmd.arg(format!("http://{addr}{}", load.path()));
    let out = cmd.stderr(Stdio::inherit()).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(io::Error::other(format!("wrk failed: {text}")));
    }
    // "  123456 requests in 5.00s, 14.10MB read"
    let (requests, secs) = text
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let (count, rest) = l.split_once(" requests in ")?;
            let secs = rest.split(',').next()?.trim().strip_suffix('s')?;
            Some((count.parse::<u64>().ok()?, secs.parse::<f64>().ok()?))
        })
        .ok_or_else(|| io::Error::other(format!("no request count in wrk's output: {text}")))?;
    // "  Socket errors: connect 0, read 0, write 0, timeout 0" and "  Non-2xx or 3xx responses: 5"
    let errors = text
        .lines()
        .filter(|l| l.contains("errors:") || l.contains("Non-2xx"))
        .flat_map(|l| l.split(|c: char| !c.is_ascii_digit()))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    Ok((requests, secs, errors))
}

fn run_server(
    server: Server,
    exe: &Path,
    opts: &Opts,
    script: &Path,
) -> io::Result<Vec<(Load, Sample)>> {
    let mut proc = Reaper(
        pinned(0, exe)
            .args(["server", server.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let pid = proc.0.id();
    let mut out = BufReader::new(proc.0.stdout.take().expect("piped"));
    let line = read_line(&mut out, "the server")?;
    let addr: SocketAddr = line
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| io::Error::other(format!("server said {line:?}")))?;
    // Warm up: connections, allocator and caches.
    run_wrk(addr, Load::Plain, 1, opts.conns, script)?;
    let mut samples = Vec::new();
    for load in Load::ALL {
        let cpu_before = proc_cpu_secs(pid)?;
        let (requests, secs, errors) = run_wrk(addr, load, opts.secs, opts.conns, script)?;
        let cpu = proc_cpu_secs(pid)? - cpu_before;
        samples.push((
            load,
            Sample {
                requests_per_sec: requests as f64 / secs,
                server_us_per_request: cpu * 1e6 / requests.max(1) as f64,
                errors,
            },
        ));
    }
    drop(proc.0.stdin.take());
    Ok(samples)
}

fn bench(opts: &Opts) {
    let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("current_exe: {e}")));
    let script = pipeline_script(&std::env::temp_dir())
        .unwrap_or_else(|e| die(&format!("writing the pipeline script: {e}")));
    eprintln!(
        "http: wrk -t1 -c{} -d{}s, {} rounds, servers on core 0, wrk on core 1; load {}",
        opts.conns,
        opts.secs,
        opts.runs,
        loadavg()
    );
    // samples[server][load] = one sample per round.
    let mut samples = vec![vec![Vec::<Sample>::new(); Load::ALL.len()]; opts.servers.len()];
    for run in 1..=opts.runs {
        for (i, &server) in opts.servers.iter().enumerate() {
            match run_server(server, &exe, opts, &script) {
                Ok(results) => {
                    for (j, (load, s)) in results.into_iter().enumerate() {
                        eprintln!(
                            "http: run {run} {:>5} {:<26} {:>9.0} req/s {:>6.2} µs CPU/req{}; load {}",
                            server.name(),
                            load.label(),
                            s.requests_per_sec,
                            s.server_us_per_request,
                            if s.errors > 0 {
                                format!(" ({} errors)", s.errors)
                            } else {
                                String::new()
                            },
                            loadavg()
                        );
                        samples[i][j].push(s);
                    }
                }
                Err(err) => eprintln!("http: run {run} {} failed: {err}", server.name()),
            }
        }
    }
    let _ = std::fs::remove_file(&script);
    println!(
        "| load | server | requests/s (median of {}) | server CPU µs/request | vs hyper: requests/s | vs hyper: CPU/request |",
        opts.runs
    );
    println!("|---|---|---:|---:|---:|---:|");
    let hyper = opts.servers.iter().position(|&s| s == Server::Hyper);
    for (j, load) in Load::ALL.iter().enumerate() {
        for (i, &server) in opts.servers.iter().enumerate() {
            let runs = &samples[i][j];
            if runs.is_empty() {
                println!("| {} | {} | failed | | | |", load.label(), server.name());
                continue;
            }
            let rps = median(runs.iter().map(|s| s.requests_per_sec).collect());
            let cpu = median(runs.iter().map(|s| s.server_us_per_request).collect());
            let (rps_ratio, cpu_ratio) = match hyper {
                Some(h) if h != i && samples[h][j].len() == runs.len() => {
                    let pairs = runs.iter().zip(&samples[h][j]);
                    (
                        format!(
                            "{:.2}×",
                            median(
                                pairs
                                    .clone()
                                    .map(|(a, b)| a.requests_per_sec / b.requests_per_sec)
                                    .collect()
                            )
                        ),
                        format!(
                            "{:.2}×",
                            median(
                                pairs
                                    .map(|(a, b)| a.server_us_per_request / b.server_us_per_request)
                                    .collect()
                            )
                        ),
                    )
                }
                _ => (String::new(), String::new()),
            };
            println!(
                "| {} | {} | {:.0} | {:.2} | {} | {} |",
                load.label(),
                server.name(),
                rps,
                cpu,
                rps_ratio,
                cpu_ratio
            );
        }
    }
    println!("\nload average after: {}", loadavg());
}

// ---------------------------------------------------------------------------------------------
// Instructions per request (callgrind)

/// Requests served in the short and the long callgrind run; the difference is what is counted.
const SHORT_RUN: usize = 2_000;
const LONG_RUN: usize = 12_000;

/// Sends `count` requests for `path` on one connection, `depth` at a time, and reads every
/// response (framed by its Content-Length).
fn drive(addr: SocketAddr, path: &str, count: usize, depth: usize) -> io::Result<()> {
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let batch = request.repeat(depth);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < count {
        conn.write_all(batch.as_bytes())?;
        sent += depth;
        let mut answered = 0;
        while answered < depth {
            match response_len(&buf) {
                Some(len) => {
                    buf.drain(..len);
                    answered += 1;
                }
                None => {
                    let n = conn.read(&mut chunk)?;
                    if n == 0 {
                        return Err(io::Error::other("the server closed the connection"));
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
    Ok(())
}

/// The length of the complete response at the start of `buf`, if it is all there.
fn response_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let body: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + body).then_some(head_end + body)
}

/// Total instructions callgrind counted for `server` serving `count` requests of `load`.
fn callgrind_total(exe: &Path, server: Server, load: Load, count: usize) -> io::Result<u64> {
    let out_file = std::env::temp_dir().join(format!(
        "http-callgrind-{}-{}.out",
        std::process::id(),
        server.name()
    ));
    let mut proc = Reaper(
        Command::new("valgrind")
            .args(["--tool=callgrind", "--quiet"])
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg(exe)
            .args(["server", server.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // valgrind warns of syscalls it does not know (process_madvise); the count is all
            // that is read here.
            .stderr(Stdio::null())
            .spawn()?,
    );
    let mut out = BufReader::new(proc.0.stdout.take().expect("piped"));
    let line = read_line(&mut out, "the server")?;
    let addr: SocketAddr = line
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| io::Error::other(format!("server said {line:?}")))?;
    let depth = if load.pipelined() { PIPELINE_DEPTH } else { 1 };
    drive(addr, load.path(), count, depth)?;
    drop(proc.0.stdin.take());
    proc.0.wait()?;
    let text = std::fs::read_to_string(&out_file)?;
    let _ = std::fs::remove_file(&out_file);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals: ")
                .or_else(|| l.strip_prefix("summary: "))
        })
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("no totals in callgrind's output"))
}

fn instructions(opts: &Opts) {
    let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("current_exe: {e}")));
    println!("| load | server | user-space instructions per request |");
    println!("|---|---|---:|");
    for load in Load::ALL {
        for &server in &opts.servers {
            let per_request = callgrind_total(&exe, server, load, SHORT_RUN).and_then(|short| {
                let long = callgrind_total(&exe, server, load, LONG_RUN)?;
                Ok(long.saturating_sub(short) as f64 / (LONG_RUN - SHORT_RUN) as f64)
            });
            match per_request {
                Ok(n) => println!("| {} | {} | {n:.0} |", load.label(), server.name()),
                Err(err) => println!("| {} | {} | failed: {err} |", load.label(), server.name()),
            }
        }
    }
}
