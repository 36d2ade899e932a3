//! Idle connections: memory per connection of 100,000 concurrent idle TCP connections, each held
//! by a greenlet blocked in `read`, side by side with tokio (current-thread, a task per connection
//! blocked in `read`).
//!
//! Issue 3 §8; issue 11 §2 added `http`: green's HTTP `Server` with keep-alive connections
//! that each made one request (`GET /`, answered `hello`) and then wait for the next, so what
//! an idle keep-alive connection keeps after a request (buffers, stack) is measured. Each server runs in its own process (so its RSS is its own); a separate client
//! process opens the connections and keeps them open without sending anything. Reported: the
//! server's VmRSS growth divided by the number of connections, measured 1.5 s after every handler
//! is blocked in `read`, how long it took to open them all, and the server's RSS once the client
//! has closed them all again.
//!
//! ```text
//! cargo build --release -p green-bench
//! target/release/idle bench --conns 100000 --runs 3
//! target/release/idle server green --conns 1000 --ports 1     # one server, by hand
//! ```
//!
//! Both processes raise `RLIMIT_NOFILE` themselves (to `--conns` + 1,000, hard limit included
//! when running as root; otherwise as far as the hard limit allows, and say so). One destination
//! port gives at most one connection per ephemeral port (`net.ipv4.ip_local_port_range`, 28,232
//! ports by default), so the servers listen on several ports, each taking at most
//! [`PER_PORT`] connections.

use std::io::{self, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use green_bench::{loadavg, median, read_line};

/// Connections per listening port: below the default ephemeral port range of 28,232.
const PER_PORT: usize = 25_000;
/// The listen backlog (capped by `net.core.somaxconn`).
const BACKLOG: i32 = 4096;
/// Descriptors beyond the connections: listeners, epoll, stdio, the runtime's own.
const SPARE_FDS: u64 = 1_000;
/// How long the connections sit idle before the server's RSS is read.
const IDLE_SETTLE: Duration = Duration::from_millis(1500);
/// Bytes each handler asks `read` for: the runtime's overhead, not a buffer, is measured.
const READ_BUF: usize = 64;

/// Handlers that have reached their blocking `read`.
static HELD: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Green,
    Tokio,
    Http,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Green => "green",
            Server::Tokio => "tokio",
            Server::Http => "http",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Server::Green => "green (StreamServer, a greenlet per connection blocked in read)",
            Server::Tokio => "tokio current-thread (a task per connection blocked in read)",
            Server::Http => "green http::Server (idle keep-alive connections after one request)",
        }
    }

    fn parse(text: &str) -> Option<Server> {
        [Server::Green, Server::Tokio, Server::Http]
            .into_iter()
            .find(|s| s.name() == text)
    }
}

#[derive(Clone, Debug)]
struct Opts {
    conns: usize,
    ports: Option<usize>,
    addrs: Vec<SocketAddr>,
    runs: usize,
    servers: Vec<Server>,
    /// Client: send one HTTP request on each connection and read its response before idling.
    request: bool,
}

fn parse_opts(args: &[String]) -> Opts {
    let mut opts = Opts {
        conns: 100_000,
        ports: None,
        addrs: Vec::new(),
        runs: 3,
        servers: vec![Server::Green, Server::Tokio, Server::Http],
        request: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
                .clone()
        };
        match flag.as_str() {
            "--conns" => opts.conns = number(&value()),
            "--ports" => opts.ports = Some(number(&value())),
            "--addrs" => {
                opts.addrs = value()
                    .split(',')
                    .map(|a| {
                        a.parse()
                            .unwrap_or_else(|_| die(&format!("bad address {a}")))
                    })
                    .collect()
            }
            "--runs" => opts.runs = number(&value()),
            "--request" => opts.request = true,
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

impl Opts {
    fn ports(&self) -> usize {
        self.ports.unwrap_or(self.conns.div_ceil(PER_PORT)).max(1)
    }
}

fn number<T: std::str::FromStr>(text: &str) -> T {
    text.parse()
        .unwrap_or_else(|_| die(&format!("not a number: {text}")))
}

fn die(message: &str) -> ! {
    eprintln!("idle: {message}");
    eprintln!(
        "usage: idle bench [--conns N] [--runs R] [--servers green,tokio,http]\n       \
         idle server <green|tokio|http> [--conns N] [--ports P]\n       \
         idle client --addrs A,B,… [--conns N] [--request]"
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
            announce_rlimit(raise_nofile(opts.conns));
            let result = match kind {
                Server::Green => serve_green(opts.ports()),
                Server::Tokio => serve_tokio(opts.ports()),
                Server::Http => serve_http(opts.ports()),
            };
            if let Err(err) = result {
                die(&format!("server failed: {err}"));
            }
        }
        Some("client") => {
            let opts = parse_opts(&args[1..]);
            announce_rlimit(raise_nofile(opts.conns));
            if let Err(err) = client(&opts) {
                die(&format!("client failed: {err}"));
            }
        }
        _ => die("no mode given"),
    }
}

/// Raises `RLIMIT_NOFILE` to hold `conns` sockets; returns the (soft, hard) limits obtained.
fn raise_nofile(conns: usize) -> (u64, u64) {
    let want = conns as u64 + SPARE_FDS;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((0, 0));
    if soft >= want {
        return (soft, hard);
    }
    // Raising the hard limit needs CAP_SYS_RESOURCE (and stays under fs.nr_open).
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((soft, hard))
}

fn announce_rlimit((soft, hard): (u64, u64)) {
    println!("rlimit {soft} {hard}");
    let _ = io::stdout().flush();
}

fn announce_listening(addrs: &[SocketAddr]) {
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    println!("listening {}", list.join(","));
    let _ = io::stdout().flush();
}

/// Prints `held <n>` when the number of blocked handlers changed, and at least every 10 calls
/// (called every 100 ms), so the driver's wait for them can time out.
fn report_held(last: &mut (usize, u32)) {
    let held = HELD.load(Ordering::Relaxed);
    last.1 += 1;
    if held != last.0 || last.1 >= 10 {
        *last = (held, 0);
        println!("held {held}");
        let _ = io::stdout().flush();
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

fn serve_green(ports: usize) -> io::Result<()> {
    use green::net::{StreamServer, TcpStream};

    let mut handles = Vec::new();
    for _ in 0..ports {
        let server = StreamServer::new("127.0.0.1:0", |stream: TcpStream, _peer| {
            let mut buf = [0u8; READ_BUF];
            HELD.fetch_add(1, Ordering::Relaxed);
            let _ = (&stream).read(&mut buf);
            HELD.fetch_sub(1, Ordering::Relaxed);
        })
        .backlog(BACKLOG);
        handles.push(server.start()?);
    }
    let addrs: Vec<SocketAddr> = handles.iter().map(|h| h.local_addr()).collect();
    announce_listening(&addrs);
    let mut last = (0, 0);
    loop {
        green::sleep(Duration::from_millis(100));
        report_held(&mut last);
    }
}

/// green's HTTP server; `held` is the number of open connections (the client reports them
/// connected only once each has had its response, so they are all idle by then).
fn serve_http(ports: usize) -> io::Result<()> {
    use green::http::server::{Body, Server};
    use green::http::Response;
    use green::net::TcpListener;

    let mut handles = Vec::new();
    for _ in 0..ports {
        let listener = TcpListener::options()
            .backlog(BACKLOG)
            .bind("127.0.0.1:0")?;
        let server = Server::from_listener(listener)
            .keep_alive_timeout(Duration::from_secs(3600))
            .start(|_| Response::new(Body::from("hello")))?;
        handles.push(server);
    }
    let addrs: Vec<SocketAddr> = handles.iter().map(|h| h.local_addr()).collect();
    announce_listening(&addrs);
    let mut last = (0, 0);
    loop {
        green::sleep(Duration::from_millis(100));
        HELD.store(
            handles.iter().map(|h| h.connections()).sum(),
            Ordering::Relaxed,
        );
        report_held(&mut last);
    }
}

fn serve_tokio(ports: usize) -> io::Result<()> {
    use tokio::io::AsyncReadExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut addrs = Vec::new();
        for _ in 0..ports {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind("127.0.0.1:0".parse().expect("valid address"))?;
            let listener = socket.listen(BACKLOG as u32)?;
            addrs.push(listener.local_addr()?);
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let mut buf = [0u8; READ_BUF];
                        HELD.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.read(&mut buf).await;
                        HELD.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            });
        }
        announce_listening(&addrs);
        let mut last = (0, 0);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            report_held(&mut last);
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Client

/// Opens `--conns` connections round-robin over `--addrs`, prints `connected <n> <secs>`, then
/// holds them until stdin closes.
fn client(opts: &Opts) -> io::Result<()> {
    if opts.addrs.is_empty() {
        die("client needs --addrs");
    }
    let start = Instant::now();
    let mut streams = Vec::with_capacity(opts.conns);
    let mut failure = None;
    for i in 0..opts.conns {
        match std::net::TcpStream::connect(opts.addrs[i % opts.addrs.len()]) {
            Ok(mut stream) => {
                if opts.request {
                    exchange_one(&mut stream)?;
                }
                streams.push(stream)
            }
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    match &failure {
        None => println!("connected {} {secs:.3}", streams.len()),
        Some(err) => println!("connected {} {secs:.3} stopped by: {err}", streams.len()),
    }
    io::stdout().flush()?;
    let mut rest = Vec::new();
    io::stdin().read_to_end(&mut rest)?;
    drop(streams);
    Ok(())
}

/// Sends `GET /` and reads the response (the server answers `hello`), leaving the connection
/// open.
fn exchange_one(stream: &mut std::net::TcpStream) -> io::Result<()> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    while !reply.ends_with(b"\r\n\r\nhello") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other("the server closed before answering"));
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Ok(())
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

/// VmRSS of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

/// One measured run of one server.
#[derive(Clone, Debug)]
struct Sample {
    conns: usize,
    bytes_per_conn: f64,
    rss_before: u64,
    rss_after: u64,
    /// RSS once the client closed every connection and the server saw them close.
    rss_closed: u64,
    connect_secs: f64,
    server_rlimit: String,
    client_rlimit: String,
    note: Option<String>,
}

fn run_once(server: Server, exe: &std::path::Path, opts: &Opts) -> io::Result<Sample> {
    let mut server_proc = Reaper(
        Command::new(exe)
            .args(["server", server.name()])
            .args(["--conns", &opts.conns.to_string()])
            .args(["--ports", &opts.ports().to_string()])
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let pid = server_proc.0.id();
    let mut server_out = BufReader::new(server_proc.0.stdout.take().expect("piped"));
    let server_rlimit = read_line(&mut server_out, "the server")?;
    let listening = read_line(&mut server_out, "the server")?;
    let addrs = listening
        .strip_prefix("listening ")
        .ok_or_else(|| io::Error::other(format!("server said {listening:?}")))?
        .to_string();
    // Let the accept greenlets/tasks park and the runtime settle before the baseline.
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_bytes(pid)?;

    let mut client_proc = Reaper(
        Command::new(exe)
            .args(["client", "--addrs", &addrs])
            .args(["--conns", &opts.conns.to_string()])
            .args(if server == Server::Http {
                &["--request"][..]
            } else {
                &[]
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let mut client_out = BufReader::new(client_proc.0.stdout.take().expect("piped"));
    let client_rlimit = read_line(&mut client_out, "the client")?;
    let connected = read_line(&mut client_out, "the client")?;
    let mut words = connected.splitn(4, ' ');
    let (Some("connected"), Some(count), Some(secs)) = (words.next(), words.next(), words.next())
    else {
        return Err(io::Error::other(format!("client said {connected:?}")));
    };
    let conns: usize = count.parse().map_err(io::Error::other)?;
    let connect_secs: f64 = secs.parse().map_err(io::Error::other)?;
    let note = words.next().map(str::to_string);

    // Wait until every accepted connection's handler is blocked in read.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = read_line(&mut server_out, "the server")?;
        let held: usize = line
            .strip_prefix("held ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io::Error::other(format!("server said {line:?}")))?;
        if held >= conns {
            break;
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "only {held} of {conns} handlers blocked after 120 s"
            )));
        }
    }
    // Idle means idle for a while: an HTTP keep-alive connection gives back its deeper stack
    // pages after a second without a request (`http::Server`'s docs).
    std::thread::sleep(IDLE_SETTLE);
    let rss_after = rss_bytes(pid)?;
    drop(client_proc);
    // Wait until the server has seen every connection close.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = read_line(&mut server_out, "the server")?;
        if line == "held 0" || Instant::now() > deadline {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_closed = rss_bytes(pid)?;
    drop(server_proc);
    Ok(Sample {
        conns,
        bytes_per_conn: (rss_after.saturating_sub(rss_before)) as f64 / conns.max(1) as f64,
        rss_before,
        rss_after,
        rss_closed,
        connect_secs,
        server_rlimit,
        client_rlimit,
        note,
    })
}

fn bench(opts: &Opts) {
    let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("current_exe: {e}")));
    // The children inherit this process's limits and can raise them no further than it can.
    let (_, hard) = raise_nofile(opts.conns);
    let mut opts = opts.clone();
    let most = hard.saturating_sub(SPARE_FDS) as usize;
    if opts.conns > most {
        println!(
            "RLIMIT_NOFILE: the hard limit is {hard} and cannot be raised here (no CAP_SYS_RESOURCE), \
             so each process holds at most {most} connections: measuring {most} instead of {}.\n",
            opts.conns
        );
        opts.conns = most;
    }
    let opts = &opts;
    let ports = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join("–"))
        .unwrap_or_else(|_| "?".into());
    eprintln!(
        "idle: {} connections over {} server ports (ephemeral ports {ports}), {} runs; load {}",
        opts.conns,
        opts.ports(),
        opts.runs,
        loadavg()
    );
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); opts.servers.len()];
    for run in 1..=opts.runs {
        for (i, &server) in opts.servers.iter().enumerate() {
            match run_once(server, &exe, opts) {
                Ok(s) => {
                    eprintln!(
                        "idle: run {run} {:>5}: {} connections in {:.2} s, RSS {:.1} → {:.1} MiB, {:.0} B/connection, {:.1} MiB after they closed ({}; client {}){}; load {}",
                        server.name(),
                        s.conns,
                        s.connect_secs,
                        s.rss_before as f64 / 1048576.0,
                        s.rss_after as f64 / 1048576.0,
                        s.bytes_per_conn,
                        s.rss_closed as f64 / 1048576.0,
                        s.server_rlimit,
                        s.client_rlimit,
                        s.note.as_deref().map(|n| format!(", client {n}")).unwrap_or_default(),
                        loadavg()
                    );
                    samples[i].push(s);
                }
                Err(err) => eprintln!("idle: run {run} {} failed: {err}", server.name()),
            }
            // Let the kernel reap the closed connections before the next run.
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    println!(
        "| server | connections held | RSS per connection (median of {}) | server RSS before → after | after they closed | time to open all |",
        opts.runs
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, &server) in opts.servers.iter().enumerate() {
        let runs = &samples[i];
        if runs.is_empty() {
            println!("| {} | failed (see stderr) | | | | |", server.label());
            continue;
        }
        let pick = |f: fn(&Sample) -> f64| median(runs.iter().map(f).collect());
        println!(
            "| {} | {:.0} | {:.0} B ({:.2} KiB) | {:.1} → {:.1} MiB | {:.1} MiB | {:.2} s |",
            server.label(),
            pick(|s| s.conns as f64),
            pick(|s| s.bytes_per_conn),
            pick(|s| s.bytes_per_conn) / 1024.0,
            pick(|s| s.rss_before as f64) / 1048576.0,
            pick(|s| s.rss_after as f64) / 1048576.0,
            pick(|s| s.rss_closed as f64) / 1048576.0,
            pick(|s| s.connect_secs),
        );
    }
    println!("\nload average after: {}", loadavg());
}
