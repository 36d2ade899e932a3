//! ureq 3, unchanged, running green: a `Connector`/`Transport` over green `TcpStream` and a
//! `Resolver` over `green::dns` (ureq's `unversioned` transport API), so blocking ureq calls made
//! from greenlets overlap on one OS thread.
//!
//! Run: `cargo run --example ureq_green` starts a local HTTP server that answers each request
//! after 200 ms and makes 100 calls, each from its own greenlet: they take about 200 ms in all,
//! not 20 s. `cargo run --example ureq_green -- http://example.com/ http://example.org/` fetches
//! the given `http://` URLs concurrently instead (this connector does no TLS).

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use green::net::{ServerHandle, StreamServer, TcpStream};
use ureq::config::Config;
use ureq::http::uri::Scheme;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, ShutdownHandle, Transport,
};
use ureq::{Agent, Error, Timeout};

/// Opens green TCP connections for ureq (plain `http://` only).
#[derive(Debug, Default)]
pub struct GreenConnector;

impl Connector<()> for GreenConnector {
    type Out = GreenTransport;

    fn connect(
        &self,
        details: &ConnectionDetails<'_>,
        _chained: Option<()>,
    ) -> Result<Option<GreenTransport>, Error> {
        if details.needs_tls() {
            return Err(Error::TlsRequired);
        }
        let addrs = details.addrs.to_vec();
        let stream = match details.timeout.not_zero() {
            Some(timeout) => TcpStream::connect_with_timeout(addrs, *timeout),
            None => TcpStream::connect(addrs),
        }
        .map_err(|err| io_error(err, details.timeout))?;
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let stream = Arc::new(Shared(stream));
        (details.register_shutdown)(Arc::downgrade(&stream) as Weak<dyn ShutdownHandle>)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(GreenTransport { stream, buffers }))
    }
}

/// The socket, shared with the agent's shutdown handle.
#[derive(Debug)]
struct Shared(TcpStream);

impl ShutdownHandle for Shared {
    fn shutdown(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// A green TCP connection carrying HTTP/1.1 for ureq.
pub struct GreenTransport {
    stream: Arc<Shared>,
    buffers: LazyBuffers,
}

impl fmt::Debug for GreenTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenTransport")
            .field("peer", &self.stream.0.peer_addr().ok())
            .finish()
    }
}

/// ureq's timeouts are budgets; a green socket deadline expiring (`TimedOut`) spends it.
fn io_error(err: io::Error, timeout: NextTimeout) -> Error {
    if err.kind() == io::ErrorKind::TimedOut {
        Error::Timeout(timeout.reason)
    } else {
        Error::Io(err)
    }
}

/// The deadline for one read or write, or the timeout error if none is left.
fn deadline(timeout: NextTimeout) -> Result<Option<Duration>, Error> {
    if !timeout.after.is_not_happening() && timeout.after.is_zero() {
        return Err(Error::Timeout(timeout.reason));
    }
    Ok(timeout.not_zero().map(|t| *t))
}

impl Transport for GreenTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = timeout.for_write();
        self.stream.0.set_write_timeout(deadline(timeout)?)?;
        let output = &self.buffers.output()[..amount];
        (&self.stream.0)
            .write_all(output)
            .map_err(|err| io_error(err, timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = timeout.for_read();
        self.stream.0.set_read_timeout(deadline(timeout)?)?;
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&self.stream.0).read(input) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                result => break result.map_err(|err| io_error(err, timeout))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        // A pooled connection is reusable if reading would block: no EOF, no stray bytes.
        let stream = &self.stream.0;
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let open = matches!(
            (&*stream).read(&mut [0u8]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock
        );
        stream.set_nonblocking(false).is_ok() && open
    }
}

/// Resolves host names through `green::dns` (no thread per lookup, unlike ureq's default).
#[derive(Debug, Default)]
pub struct GreenResolver;

impl Resolver for GreenResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let authority = uri
            .authority()
            .ok_or_else(|| Error::BadUri(format!("{uri}: no host")))?;
        let port = match authority.port_u16() {
            Some(port) => port,
            None if uri.scheme() == Some(&Scheme::HTTPS) => 443,
            None => 80,
        };
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let addrs = match timeout.not_zero() {
            Some(limit) => green::with_timeout(*limit, || green::dns::lookup(host, port))
                .map_err(|_| Error::Timeout(Timeout::Resolve))?,
            None => green::dns::lookup(host, port),
        }
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => Error::HostNotFound,
            _ => Error::Io(err),
        })?;
        let mut resolved = self.empty();
        for addr in config.ip_family().keep_wanted(addrs.into_iter()).take(16) {
            resolved.push(addr);
        }
        if resolved.is_empty() {
            return Err(Error::HostNotFound);
        }
        Ok(resolved)
    }
}

/// A ureq agent whose connections and lookups are green.
pub fn agent(config: Config) -> Agent {
    Agent::with_parts(config, GreenConnector, GreenResolver)
}

/// What the slow server has seen.
#[derive(Debug, Default)]
pub struct Stats {
    in_flight: Cell<usize>,
    /// The most requests being answered at once.
    pub max_in_flight: Cell<usize>,
    /// Requests answered.
    pub served: Cell<usize>,
}

/// Counts a request in flight until dropped (also when its greenlet is killed).
struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn enter(stats: &'a Stats) -> InFlight<'a> {
        stats.in_flight.set(stats.in_flight.get() + 1);
        stats
            .max_in_flight
            .set(stats.max_in_flight.get().max(stats.in_flight.get()));
        InFlight(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
    }
}

/// A tiny green HTTP/1.1 server (keep-alive, GET only) that waits `delay` (a green sleep)
/// before answering each request with `you asked for <path>`.
pub fn start_slow_server(addr: &str, delay: Duration) -> io::Result<(ServerHandle, Rc<Stats>)> {
    let stats = Rc::new(Stats::default());
    let server = StreamServer::new(addr, {
        let stats = stats.clone();
        move |stream: TcpStream, _peer| {
            let _ = serve_slowly(&stream, delay, &stats);
        }
    })
    .start()?;
    Ok((server, stats))
}

fn serve_slowly(stream: &TcpStream, delay: Duration, stats: &Stats) -> io::Result<()> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let (path, head_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            let parsed = request
                .parse(&received)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
            if let httparse::Status::Complete(len) = parsed {
                break (request.path.unwrap_or("/").to_string(), len);
            }
            let n = (&*stream).read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            received.extend_from_slice(&chunk[..n]);
        };
        received.drain(..head_len);
        let _in_flight = InFlight::enter(stats);
        green::sleep(delay);
        let body = format!("you asked for {path}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        (&*stream).write_all(response.as_bytes())?;
        stats.served.set(stats.served.get() + 1);
    }
}

/// What [`demo`] saw.
#[derive(Debug)]
pub struct DemoReport {
    /// Wall time for all calls.
    pub elapsed: Duration,
    /// Calls whose body named the path they asked for.
    pub correct: usize,
    /// Failed calls, as text.
    pub errors: Vec<String>,
    /// The most requests the server answered at once.
    pub max_in_flight: usize,
    /// Requests the server answered.
    pub served: usize,
}

/// Starts the slow server on a free loopback port and makes `calls` ureq calls to it, each from
/// its own greenlet, through `http://localhost:PORT/` (so the green resolver runs too).
pub fn demo(calls: usize, delay: Duration) -> io::Result<DemoReport> {
    let (server, stats) = start_slow_server("127.0.0.1:0", delay)?;
    let port = server.local_addr().port();
    let agent = agent(
        Config::builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .max_idle_connections_per_host(calls)
            .build(),
    );
    let started = Instant::now();
    let greenlets: Vec<_> = (0..calls)
        .map(|i| {
            let agent = agent.clone();
            green::spawn(move || -> Result<bool, Error> {
                let path = format!("/item/{i}");
                let mut response = agent.get(format!("http://localhost:{port}{path}")).call()?;
                let body = response.body_mut().read_to_string()?;
                Ok(body == format!("you asked for {path}"))
            })
        })
        .collect();
    let mut report = DemoReport {
        elapsed: Duration::ZERO,
        correct: 0,
        errors: Vec::new(),
        max_in_flight: 0,
        served: 0,
    };
    for result in green::joinall(greenlets) {
        match result {
            Ok(Ok(true)) => report.correct += 1,
            Ok(Ok(false)) => report.errors.push("wrong body".into()),
            Ok(Err(err)) => report.errors.push(err.to_string()),
            Err(err) => report.errors.push(err.to_string()),
        }
    }
    report.elapsed = started.elapsed();
    server.stop(Duration::ZERO);
    report.max_in_flight = stats.max_in_flight.get();
    report.served = stats.served.get();
    Ok(report)
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        let report = demo(100, Duration::from_millis(200))?;
        println!(
            "{} calls answered correctly in {:?} (each waits 200 ms at the server); \
             at most {} in flight at once; errors: {:?}",
            report.correct, report.elapsed, report.max_in_flight, report.errors
        );
        return Ok(());
    }
    let agent = agent(Config::default());
    let greenlets: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let agent = agent.clone();
            green::spawn(move || {
                let started = Instant::now();
                let result = agent.get(&url).call().and_then(|mut response| {
                    let status = response.status();
                    let body = response.body_mut().read_to_vec()?;
                    Ok((status, body.len()))
                });
                match result {
                    Ok((status, len)) => {
                        println!("{url}: {status}, {len} bytes in {:?}", started.elapsed())
                    }
                    Err(err) => println!("{url}: {err}"),
                }
            })
        })
        .collect();
    green::joinall(greenlets);
    Ok(())
}
