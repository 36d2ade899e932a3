//! Echo throughput: green side by side with tokio (current-thread), may (1 worker), a
//! thread-per-connection std server, and Go (GOMAXPROCS=1) and gevent when installed.
//!
//! Issue 3 §8: 100 connections × 64-byte ping-pong in lock step for a few seconds, the server
//! pinned to core 0 and the load generator to core 1 (`taskset`, both `SCHED_FIFO` so that other
//! jobs on this shared machine cannot delay their wake-ups). Reported: messages per second, the
//! server's CPU time per message (utime + stime from `/proc/<pid>/stat`, all threads) and ratios
//! to tokio; first as fast as the client goes, then at a fixed offered load (`--fixed-rate`,
//! default 50,000 msg/s) where no server is saturated, so CPU per message compares the servers'
//! cost rather than how busy-waiting on a saturated peer batches. Runs are interleaved in rounds
//! (every server once per round) and ratios are medians of same-round ratios, so drifting
//! background load hits every server alike.
//!
//! ```text
//! cargo build --release -p green-bench
//! target/release/echo bench --conns 100 --secs 5 --size 64 --runs 3
//! target/release/echo server green --addr 127.0.0.1:7000              # one server, by hand
//! taskset -c 1 target/release/echo client --addr 127.0.0.1:7000 --conns 100 --secs 5 [--rate 50000]
//! ```
//!
//! The load generator is a bare mio loop, not an async runtime, so that it costs no more per
//! message than any server it measures: per echoed message it makes exactly one `write` and one
//! `read` (it knows a reply is 64 bytes, so it never reads until `EAGAIN`), plus its share of one
//! `epoll_wait` per batch of ready sockets. It reports its own CPU use, so a saturated generator
//! shows in the table instead of silently capping every server.

use std::io::{self, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use green_bench::{loadavg, median, read_line};

/// Bytes read per `read` call by every server.
const SERVER_BUF: usize = 4096;
/// Stack of each std server thread: an echo loop needs little.
const STD_THREAD_STACK: usize = 64 * 1024;
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, fixed at 100 on Linux.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Green,
    Tokio,
    May,
    Std,
    Go,
    Gevent,
}

const SERVERS: [Server; 6] = [
    Server::Green,
    Server::Tokio,
    Server::May,
    Server::Std,
    Server::Go,
    Server::Gevent,
];

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Green => "green",
            Server::Tokio => "tokio",
            Server::May => "may",
            Server::Std => "std",
            Server::Go => "go",
            Server::Gevent => "gevent",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Server::Green => "green (StreamServer, greenlet per connection)",
            Server::Tokio => "tokio current-thread (task per connection)",
            Server::May => "may, 1 worker (coroutine per connection)",
            Server::Std => "std (thread per connection)",
            Server::Go => "Go, GOMAXPROCS=1 (goroutine per connection)",
            Server::Gevent => "gevent StreamServer",
        }
    }

    fn parse(text: &str) -> Option<Server> {
        SERVERS.into_iter().find(|s| s.name() == text)
    }
}

/// Command-line options shared by every mode.
#[derive(Clone, Debug)]
struct Opts {
    addr: String,
    conns: usize,
    secs: f64,
    warmup: f64,
    size: usize,
    runs: usize,
    servers: Vec<Server>,
    /// Client: messages per second to send at most (0: as fast as replies come).
    rate: f64,
    /// Bench: the offered load of the second table (0: no second table).
    fixed_rate: f64,
}

fn parse_opts(args: &[String]) -> Opts {
    let mut opts = Opts {
        addr: "127.0.0.1:0".into(),
        conns: 100,
        secs: 5.0,
        warmup: 1.0,
        size: 64,
        runs: 3,
        servers: SERVERS.to_vec(),
        rate: 0.0,
        fixed_rate: 50_000.0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
                .clone()
        };
        match flag.as_str() {
            "--addr" => opts.addr = value(),
            "--conns" => opts.conns = number(&value()),
            "--secs" => opts.secs = number(&value()),
            "--warmup" => opts.warmup = number(&value()),
            "--size" => opts.size = number(&value()),
            "--runs" => opts.runs = number(&value()),
            "--rate" => opts.rate = number(&value()),
            "--fixed-rate" => opts.fixed_rate = number(&value()),
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
    eprintln!("echo: {message}");
    eprintln!(
        "usage: echo bench [--conns N] [--secs S] [--warmup S] [--size B] [--runs R] [--fixed-rate M] [--servers green,tokio,…]\n       \
         echo server <green|tokio|may|std> [--addr A]\n       \
         echo client --addr A [--conns N] [--secs S] [--warmup S] [--size B] [--rate M]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench(&parse_opts(&args[1..])),
        Some("server") => {
            let kind = args
                .get(1)
                .and_then(|k| Server::parse(k))
                .unwrap_or_else(|| die("server needs a kind"));
            let opts = parse_opts(&args[2..]);
            let result = match kind {
                Server::Green => serve_green(&opts.addr),
                Server::Tokio => serve_tokio(&opts.addr),
                Server::May => serve_may(&opts.addr),
                Server::Std => serve_std(&opts.addr),
                Server::Go | Server::Gevent => die("go and gevent servers are separate programs"),
            };
            if let Err(err) = result {
                die(&format!("server failed: {err}"));
            }
        }
        Some("client") => {
            if let Err(err) = client(&parse_opts(&args[1..])) {
                die(&format!("client failed: {err}"));
            }
        }
        _ => die("no mode given"),
    }
}

/// Tells the driver where the server listens (the first line a server prints).
fn announce(addr: SocketAddr) {
    println!("listening {addr}");
    let _ = io::stdout().flush();
}

// ---------------------------------------------------------------------------------------------
// Servers

fn serve_green(addr: &str) -> io::Result<()> {
    use green::net::{StreamServer, TcpStream};

    let server = StreamServer::new(addr, |stream: TcpStream, _peer| {
        let _ = stream.set_nodelay(true);
        let mut buf = [0u8; SERVER_BUF];
        loop {
            let n = match (&stream).read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if (&stream).write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let handle = server.start()?;
    announce(handle.local_addr());
    handle.wait();
    Ok(())
}

fn serve_tokio(addr: &str) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        announce(listener.local_addr()?);
        loop {
            let (mut stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(_) => continue,
            };
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; SERVER_BUF];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

fn serve_may(addr: &str) -> io::Result<()> {
    may::config().set_workers(1);
    let listener = may::net::TcpListener::bind(addr)?;
    announce(listener.local_addr()?);
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        may::go!(move || {
            let _ = stream.set_nodelay(true);
            let mut buf = [0u8; SERVER_BUF];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

fn serve_std(addr: &str) -> io::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
    announce(listener.local_addr()?);
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::Builder::new()
            .stack_size(STD_THREAD_STACK)
            .spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; SERVER_BUF];
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Load generator

struct Conn {
    stream: mio::net::TcpStream,
    /// Bytes of the current reply received so far.
    received: usize,
}

/// CPU seconds (user + system) this process has used so far.
fn self_cpu_secs() -> f64 {
    proc_cpu_secs(std::process::id()).unwrap_or(0.0)
}

fn client(opts: &Opts) -> io::Result<()> {
    use mio::{Events, Interest, Poll, Token};

    let addr: SocketAddr = opts
        .addr
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "--addr must be ip:port"))?;
    let payload: Vec<u8> = (0..opts.size).map(|i| (i % 251) as u8).collect();
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(opts.conns);
    for i in 0..opts.conns {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        conns.push(Conn {
            stream,
            received: 0,
        });
    }
    for conn in &mut conns {
        send(&mut conn.stream, &payload)?;
    }
    // With `--rate`, a reply that arrives ahead of the schedule waits here for its send slot.
    let pacing = (opts.rate > 0.0).then(|| Pacer::new(opts.rate, opts.conns as u64));
    let mut deferred: Vec<usize> = Vec::new();

    let mut events = Events::with_capacity(opts.conns.max(16));
    let mut buf = vec![0u8; opts.size];
    let mut messages: u64 = 0;
    let mut measuring = false;
    let mut start = Instant::now();
    let mut cpu_start = 0.0;
    let warmup_end = start + Duration::from_secs_f64(opts.warmup);
    let mut end = warmup_end + Duration::from_secs_f64(opts.secs);
    loop {
        let now = Instant::now();
        if !measuring && now >= warmup_end {
            measuring = true;
            messages = 0;
            println!("begin");
            io::stdout().flush()?;
            start = Instant::now();
            end = start + Duration::from_secs_f64(opts.secs);
            cpu_start = self_cpu_secs();
        }
        if measuring && now >= end {
            break;
        }
        let mut timeout = Duration::from_millis(100);
        if let Some(pacer) = &pacing {
            while !deferred.is_empty() && pacer.may_send(now) {
                let i = deferred.pop().expect("not empty");
                send(&mut conns[i].stream, &payload)?;
                pacer.sent();
            }
            if !deferred.is_empty() {
                timeout = timeout.min(pacer.until_next(now));
            }
        }
        poll.poll(&mut events, Some(timeout))?;
        for event in events.iter() {
            let i = event.token().0;
            let conn = &mut conns[i];
            loop {
                match conn.stream.read(&mut buf[conn.received..]) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed a connection",
                        ))
                    }
                    Ok(n) => {
                        conn.received += n;
                        if conn.received < opts.size {
                            continue;
                        }
                        if buf != payload {
                            return Err(io::Error::other("the server echoed different bytes"));
                        }
                        conn.received = 0;
                        messages += 1;
                        match &pacing {
                            Some(pacer) if !pacer.may_send(Instant::now()) => deferred.push(i),
                            Some(pacer) => {
                                send(&mut conn.stream, &payload)?;
                                pacer.sent();
                            }
                            None => send(&mut conn.stream, &payload)?,
                        }
                        // Lock step: nothing more can be pending on this socket, so the edge
                        // is fully consumed without reading until EAGAIN.
                        break;
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = self_cpu_secs() - cpu_start;
    println!("end {messages} {elapsed:.6} {cpu:.6}");
    io::stdout().flush()?;
    Ok(())
}

/// Caps the client's send rate: the n-th message may go at `n / rate` seconds after the start.
struct Pacer {
    start: Instant,
    rate: f64,
    sent: std::cell::Cell<u64>,
}

impl Pacer {
    fn new(rate: f64, already_sent: u64) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate,
            sent: std::cell::Cell::new(already_sent),
        }
    }

    fn may_send(&self, now: Instant) -> bool {
        (self.sent.get() as f64) < (now - self.start).as_secs_f64() * self.rate
    }

    fn sent(&self) {
        self.sent.set(self.sent.get() + 1);
    }

    fn until_next(&self, now: Instant) -> Duration {
        let due = self.start + Duration::from_secs_f64((self.sent.get() + 1) as f64 / self.rate);
        due.saturating_duration_since(now)
    }
}

/// Sends one message; in lock step the socket's send buffer is empty, so it always fits.
fn send(stream: &mut mio::net::TcpStream, payload: &[u8]) -> io::Result<()> {
    match stream.write(payload) {
        Ok(n) if n == payload.len() => Ok(()),
        Ok(n) => Err(io::Error::other(format!(
            "short write of {n} bytes in lock step"
        ))),
        Err(err) => Err(err),
    }
}

// ---------------------------------------------------------------------------------------------
// Driver

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

/// One measured run of one server.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Which round of runs this sample belongs to (pairs it with the other servers' samples).
    run: usize,
    msgs_per_sec: f64,
    server_us_per_msg: f64,
    server_util: f64,
    client_util: f64,
}

/// How to start a server, or why it cannot be.
enum Launch {
    Command(Command),
    Missing(String),
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `program` pinned to `core` under `SCHED_FIFO` (`chrt -f 10`): the compile jobs sharing this
/// machine then cannot delay its wake-ups (at nice -20 under the normal scheduler they still
/// did, and servers and client idled half the time). The kernel's RT throttle
/// (`kernel.sched_rt_runtime_us`, 95 % by default) still leaves the other tasks some time.
fn pinned(core: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("chrt");
    cmd.args(["-f", "10", "taskset", "-c"])
        .arg(core.to_string())
        .arg(program);
    cmd
}

fn find_go() -> Option<PathBuf> {
    let candidates = ["go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go"];
    candidates.into_iter().map(PathBuf::from).find(|go| {
        Command::new(go)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Builds the Go echo server next to this binary; `Err` says why Go is skipped.
fn build_go(exe_dir: &Path) -> Result<PathBuf, String> {
    let go = find_go().ok_or("no `go` toolchain (apt-get install -y golang-go)")?;
    let out = exe_dir.join("echo-go");
    let source = manifest_dir().join("go/echo.go");
    let status = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .env("GOCACHE", exe_dir.join("go-cache"))
        .env("GOPATH", exe_dir.join("go-path"))
        .env("GO111MODULE", "off")
        .status()
        .map_err(|e| format!("go build failed: {e}"))?;
    if !status.success() {
        return Err(format!("go build {} failed", source.display()));
    }
    Ok(out)
}

/// The real Python interpreter that can import gevent; `Err` says why gevent is skipped.
fn find_gevent_python() -> Result<PathBuf, String> {
    let output = Command::new("python3")
        .args(["-c", "import gevent, sys; print(sys.executable)"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("no python3: {e}"))?;
    if !output.status.success() {
        return Err("python3 cannot import gevent (pip install gevent)".into());
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
    ))
}

fn launcher(server: Server, exe: &Path, go: &Result<PathBuf, String>) -> Launch {
    match server {
        Server::Green | Server::Tokio | Server::May | Server::Std => {
            let mut cmd = pinned(0, exe);
            cmd.args(["server", server.name(), "--addr", "127.0.0.1:0"]);
            Launch::Command(cmd)
        }
        Server::Go => match go {
            Ok(binary) => {
                let mut cmd = pinned(0, binary);
                cmd.arg("127.0.0.1:0").env("GOMAXPROCS", "1");
                Launch::Command(cmd)
            }
            Err(why) => Launch::Missing(why.clone()),
        },
        Server::Gevent => match find_gevent_python() {
            Ok(python) => {
                let mut cmd = pinned(0, python);
                cmd.arg(manifest_dir().join("py/echo_gevent.py"))
                    .arg("127.0.0.1:0");
                Launch::Command(cmd)
            }
            Err(why) => Launch::Missing(why),
        },
    }
}

/// Kills a child process when dropped, so a failed run leaves no server behind.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_once(mut server_cmd: Command, exe: &Path, opts: &Opts, rate: f64) -> io::Result<Sample> {
    let mut server = Reaper(server_cmd.stdout(Stdio::piped()).spawn()?);
    let pid = server.0.id();
    let mut server_out = BufReader::new(server.0.stdout.take().expect("piped"));
    let line = read_line(&mut server_out, "the server")?;
    let addr = line
        .strip_prefix("listening ")
        .ok_or_else(|| io::Error::other(format!("server said {line:?}")))?
        .to_string();

    let mut client_cmd = pinned(1, exe);
    client_cmd
        .args(["client", "--addr", &addr])
        .args(["--conns", &opts.conns.to_string()])
        .args(["--secs", &opts.secs.to_string()])
        .args(["--warmup", &opts.warmup.to_string()])
        .args(["--size", &opts.size.to_string()])
        .args(["--rate", &rate.to_string()])
        .stdout(Stdio::piped());
    let mut client = Reaper(client_cmd.spawn()?);
    let mut client_out = BufReader::new(client.0.stdout.take().expect("piped"));
    let begin = read_line(&mut client_out, "the client")?;
    if begin != "begin" {
        return Err(io::Error::other(format!("client said {begin:?}")));
    }
    let cpu_before = proc_cpu_secs(pid)?;
    let end = read_line(&mut client_out, "the client")?;
    let cpu_after = proc_cpu_secs(pid)?;
    let fields: Vec<f64> = end
        .strip_prefix("end ")
        .ok_or_else(|| io::Error::other(format!("client said {end:?}")))?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [messages, elapsed, client_cpu] = fields[..] else {
        return Err(io::Error::other(format!("client said {end:?}")));
    };
    let server_cpu = cpu_after - cpu_before;
    Ok(Sample {
        run: 0,
        msgs_per_sec: messages / elapsed,
        server_us_per_msg: server_cpu * 1e6 / messages.max(1.0),
        server_util: server_cpu / elapsed,
        client_util: client_cpu / elapsed,
    })
}

fn bench(opts: &Opts) {
    let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("current_exe: {e}")));
    let exe_dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    let go = if opts.servers.contains(&Server::Go) {
        build_go(&exe_dir)
    } else {
        Err("not selected".into())
    };
    eprintln!(
        "echo: {} connections × {}-byte ping-pong, {} s per run after {} s warm-up, {} runs; load before: {}",
        opts.conns,
        opts.size,
        opts.secs,
        opts.warmup,
        opts.runs,
        loadavg()
    );
    // Phase 0: as fast as the client can go; phase 1: a fixed offered load.
    let mut rates = vec![0.0];
    if opts.fixed_rate > 0.0 {
        rates.push(opts.fixed_rate);
    }
    let mut samples: Vec<Vec<Vec<Sample>>> =
        vec![vec![Vec::new(); opts.servers.len()]; rates.len()];
    let mut skipped: Vec<Option<String>> = vec![None; opts.servers.len()];
    for run in 1..=opts.runs {
        for (phase, &rate) in rates.iter().enumerate() {
            for (i, &server) in opts.servers.iter().enumerate() {
                if skipped[i].is_some() {
                    continue;
                }
                let cmd = match launcher(server, &exe, &go) {
                    Launch::Command(cmd) => cmd,
                    Launch::Missing(why) => {
                        eprintln!("echo: skipping {}: {why}", server.name());
                        skipped[i] = Some(why);
                        continue;
                    }
                };
                let what = if rate > 0.0 {
                    format!("run {run} at {rate:.0}/s")
                } else {
                    format!("run {run} max")
                };
                match run_once(cmd, &exe, opts, rate) {
                    Ok(mut sample) => {
                        sample.run = run;
                        eprintln!(
                            "echo: {what} {:>6}: {:>9.0} msg/s, {:.2} µs CPU/msg, server CPU {:.0}%, client CPU {:.0}%, load {}",
                            server.name(),
                            sample.msgs_per_sec,
                            sample.server_us_per_msg,
                            sample.server_util * 100.0,
                            sample.client_util * 100.0,
                            loadavg()
                        );
                        samples[phase][i].push(sample);
                    }
                    Err(err) => eprintln!("echo: {what} {} failed: {err}", server.name()),
                }
            }
        }
    }
    for (phase, &rate) in rates.iter().enumerate() {
        if rate > 0.0 {
            println!(
                "\nOffered load capped at {rate:.0} msg/s (the client waits for its send slot):\n"
            );
        } else {
            println!("\nAs fast as the client goes:\n");
        }
        print_table(opts, &samples[phase], &skipped);
    }
    println!("\nload average after: {}", loadavg());
}

/// The median over rounds of `f(sample) / f(tokio's sample of the same round)`: pairing runs
/// made seconds apart cancels most of the drift in background load between rounds.
fn paired_ratio(samples: &[Sample], tokio: &[Sample], f: fn(&Sample) -> f64) -> Option<f64> {
    let ratios: Vec<f64> = samples
        .iter()
        .filter_map(|s| {
            let t = tokio.iter().find(|t| t.run == s.run)?;
            Some(f(s) / f(t))
        })
        .collect();
    (!ratios.is_empty()).then(|| median(ratios))
}

fn print_table(opts: &Opts, samples: &[Vec<Sample>], skipped: &[Option<String>]) {
    let tokio = opts
        .servers
        .iter()
        .position(|&s| s == Server::Tokio)
        .map(|i| samples[i].as_slice())
        .unwrap_or(&[]);
    println!(
        "| server | msgs/s (median of {}) | vs tokio | server CPU µs/msg | vs tokio | server CPU use | client CPU use |",
        opts.runs
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, &server) in opts.servers.iter().enumerate() {
        if let Some(why) = &skipped[i] {
            println!("| {} | skipped: {why} | | | | | |", server.label());
            continue;
        }
        if samples[i].is_empty() {
            println!("| {} | failed (see stderr) | | | | | |", server.label());
            continue;
        }
        let pick = |f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
        let ratio = |f: fn(&Sample) -> f64| {
            paired_ratio(&samples[i], tokio, f)
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "–".into())
        };
        println!(
            "| {} | {:.0} | {} | {:.2} | {} | {:.0}% | {:.0}% |",
            server.label(),
            pick(|s| s.msgs_per_sec),
            ratio(|s| s.msgs_per_sec),
            pick(|s| s.server_us_per_msg),
            ratio(|s| s.server_us_per_msg),
            pick(|s| s.server_util) * 100.0,
            pick(|s| s.client_util) * 100.0,
        );
    }
    println!(
        "\n(\"vs tokio\": the median over rounds of the ratio to tokio's run in the same round.)"
    );
}
