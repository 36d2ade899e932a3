//! A TCP port forwarder: every connection to the listen address is forwarded to the target, two
//! greenlets per connection copying each way (gevent's `examples/portforwarder.py`).
//!
//! Run: `cargo run --example portforwarder -- 127.0.0.1:8080 example.com:80`
//! Then: `curl -H 'Host: example.com' http://127.0.0.1:8080/`
//!
//! On SIGTERM or SIGINT it drains gracefully: it stops accepting at once, lets the open
//! connections finish for up to a grace period (`GRACE_SECS`, default 10), then closes the rest
//! and exits. A signal handler may not touch the hub (it runs at any instruction), so a helper
//! thread waits for the signal (signal-hook's `Signals` iterator) and hands it to the hub's thread
//! through a green cross-thread channel, whose receiver parks on the hub like any green call.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use green::net::{StreamServer, TcpStream};
use green::Greenlet;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How a forwarder run ended.
#[derive(Debug)]
pub struct Drained {
    /// The signal that stopped it.
    pub signal: i32,
    /// Connections still open when the signal arrived.
    pub open_at_signal: usize,
    /// Whether they all finished within the grace period (false: the rest were closed).
    pub finished_in_grace: bool,
}

/// Forwards `listen` to `target` until SIGTERM or SIGINT, then drains for up to `grace`.
/// `ready` is called with the bound address once the server accepts and signals are handled.
pub fn run(
    listen: &str,
    target: &str,
    grace: Duration,
    ready: impl FnOnce(SocketAddr),
) -> io::Result<Drained> {
    let (signal_tx, signal_rx) = green::xchan::channel::<i32>();
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let signals_handle = signals.handle();
    let watcher = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let _ = signal_tx.send(signal);
            }
        })?;

    let target = target.to_string();
    let server = StreamServer::new(listen, move |client: TcpStream, peer: SocketAddr| {
        if let Err(err) = forward(client, &target) {
            eprintln!("{peer}: {err}");
        }
    })
    .start()?;
    ready(server.local_addr());

    let signal = signal_rx
        .recv()
        .map_err(|_| io::Error::other("the signal thread ended"))?;
    let open_at_signal = server.connections();
    eprintln!("signal {signal}: draining {open_at_signal} connection(s) for up to {grace:?}");
    let finished_in_grace = server.stop(grace);
    signals_handle.close();
    let _ = watcher.join();
    Ok(Drained {
        signal,
        open_at_signal,
        finished_in_grace,
    })
}

/// Connects to `target` and copies both ways until each side has closed its half.
fn forward(client: TcpStream, target: &str) -> io::Result<()> {
    let server = TcpStream::connect(target)?;
    let mut upstream = Companion(Some({
        let (client, server) = (client.try_clone()?, server.try_clone()?);
        green::spawn(move || pipe(&client, &server))
    }));
    let downstream = pipe(&server, &client);
    if let Some(greenlet) = &upstream.0 {
        let _ = greenlet.wait(None);
    }
    let upstream = upstream
        .0
        .take()
        .map_or(Ok(0), |greenlet| greenlet.join().unwrap_or(Ok(0)));
    downstream.and(upstream).map(drop)
}

/// The greenlet copying the other way: killed with the handler when the grace period ends.
struct Companion(Option<Greenlet<io::Result<u64>>>);

impl Drop for Companion {
    fn drop(&mut self) {
        if let Some(greenlet) = &self.0 {
            greenlet.kill_nowait();
        }
    }
}

/// Copies `from` into `to`, then passes the end of input on as a half-close.
fn pipe(mut from: &TcpStream, mut to: &TcpStream) -> io::Result<u64> {
    let copied = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    copied
}

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(target)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: portforwarder LISTEN_ADDR TARGET_ADDR  (e.g. 127.0.0.1:8080 example.com:80)"
        );
        std::process::exit(2);
    };
    let grace = std::env::var("GRACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_secs);
    let drained = run(&listen, &target, grace, |addr| {
        println!("forwarding {addr} -> {target}");
    })?;
    println!(
        "stopped by signal {}: {} connection(s) open, {}",
        drained.signal,
        drained.open_at_signal,
        if drained.finished_in_grace {
            "all finished"
        } else {
            "the rest closed after the grace period"
        }
    );
    Ok(())
}
