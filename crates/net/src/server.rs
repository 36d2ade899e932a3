//! `StreamServer` and `DatagramServer`: gevent's servers, one greenlet per connection or datagram.
//!
//! The accept loop is a greenlet. With a connection limit it spawns handlers into a
//! [`Pool`], whose `spawn` blocks while the pool is full, so the server
//! simply stops accepting (the kernel backlog absorbs the burst) instead of queueing unboundedly.
//! Accept errors that mean "out of resources" (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) are reported
//! once per episode and retried with a growing pause, so descriptor exhaustion neither spins the
//! CPU nor stops the server. [`serve_workers`] runs n threads, each with its own hub and its own
//! `SO_REUSEPORT` listener on the same port: the kernel spreads connections over them.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use green_runtime::pool::{Group, Pool};
use green_runtime::{xchan, Greenlet};

use crate::addr::{resolve, ToSocketAddrs};
use crate::tcp::{ListenerOptions, TcpListener, TcpStream, DEFAULT_BACKLOG};
use crate::udp::UdpSocket;

/// Pause after the first resource-exhaustion accept error; doubles up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// How long a stop waits for killed handlers to finish unwinding before it gives up on them
/// (gevent's `stop` kills its pool with `timeout=1` too).
pub const STOP_KILL_WAIT: Duration = Duration::from_secs(1);

/// The greenlets handling connections: bounded by a pool or not.
#[derive(Clone, Debug)]
enum Handlers {
    Bounded(Pool),
    Unbounded(Group),
}

impl Handlers {
    fn new(limit: Option<usize>) -> Handlers {
        match limit {
            Some(size) => Handlers::Bounded(Pool::new(size)),
            None => Handlers::Unbounded(Group::new()),
        }
    }

    fn spawn(&self, f: impl FnOnce() + 'static) {
        match self {
            Handlers::Bounded(pool) => drop(pool.spawn(f)),
            Handlers::Unbounded(group) => drop(group.spawn(f)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Handlers::Bounded(pool) => pool.len(),
            Handlers::Unbounded(group) => group.len(),
        }
    }

    fn join_timeout(&self, grace: Duration) -> bool {
        match self {
            Handlers::Bounded(pool) => pool.join_timeout(grace),
            Handlers::Unbounded(group) => group.join_timeout(grace),
        }
    }

    fn kill_timeout(&self, timeout: Duration) -> bool {
        match self {
            Handlers::Bounded(pool) => pool.kill_timeout(timeout),
            Handlers::Unbounded(group) => group.kill_timeout(timeout),
        }
    }

    /// A stop's second half: waits up to `grace` for the handlers, then kills the rest and
    /// waits [`STOP_KILL_WAIT`] for them to unwind. Handlers still unwinding then (a destructor
    /// blocked in I/O: a `BufWriter` flushing to a client that never reads) are abandoned and
    /// logged, never waited for. Returns whether all finished within `grace`.
    fn stop(&self, grace: Duration, server: &str) -> bool {
        if self.join_timeout(grace) {
            return true;
        }
        if !self.kill_timeout(STOP_KILL_WAIT) {
            log::warn!(
                "{server}: stop abandoned {} handler(s) still unwinding {STOP_KILL_WAIT:?} after \
                 being killed at the end of the {grace:?} grace period (a destructor blocked in \
                 I/O?); their greenlets stay parked",
                self.len()
            );
        }
        false
    }
}

fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Closes connections to make room when accept runs out of descriptors; returns how many.
type Reclaim = Rc<dyn Fn() -> usize>;

/// A TCP server calling `handler(stream, peer)` in a new greenlet per connection.
pub struct StreamServer<H> {
    addr: io::Result<Vec<SocketAddr>>,
    listener: Option<TcpListener>,
    handler: H,
    max_connections: Option<usize>,
    backlog: i32,
    reclaim: Option<Reclaim>,
}

impl<H> fmt::Debug for StreamServer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamServer")
            .field("addr", &self.addr.as_ref().ok())
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl<H: Fn(TcpStream, SocketAddr) + 'static> StreamServer<H> {
    /// A server for `addr` (bound by [`start`](Self::start) or
    /// [`serve_forever`](Self::serve_forever)).
    pub fn new(addr: impl ToSocketAddrs, handler: H) -> StreamServer<H> {
        StreamServer {
            addr: resolve(addr),
            listener: None,
            handler,
            max_connections: None,
            backlog: DEFAULT_BACKLOG,
            reclaim: None,
        }
    }

    /// A server accepting on an existing listener.
    pub fn from_listener(listener: TcpListener, handler: H) -> StreamServer<H> {
        StreamServer {
            addr: listener.local_addr().map(|a| vec![a]),
            listener: Some(listener),
            handler,
            max_connections: None,
            backlog: DEFAULT_BACKLOG,
            reclaim: None,
        }
    }

    /// Caps concurrent connections: while `n` handlers run, the server stops accepting.
    pub fn max_connections(mut self, n: usize) -> StreamServer<H> {
        self.max_connections = Some(n);
        self
    }

    /// The listen backlog.
    pub fn backlog(mut self, backlog: i32) -> StreamServer<H> {
        self.backlog = backlog;
        self
    }

    /// What to do when accept fails for want of descriptors or memory (`EMFILE`, `ENFILE`,
    /// `ENOBUFS`, `ENOMEM`): `reclaim` closes connections it can spare (idle keep-alive ones, as
    /// nginx does) and returns how many; when it closed any, the accept is retried at once
    /// instead of after the pause. Runs on the accept loop's greenlet; it may block (to wait
    /// for the connections it killed to close). Not carried to [`workers`](Self::workers).
    pub fn on_exhaustion(mut self, reclaim: impl Fn() -> usize + 'static) -> StreamServer<H> {
        self.reclaim = Some(Rc::new(reclaim));
        self
    }

    fn bind(&mut self, reuse_port: bool) -> io::Result<TcpListener> {
        if let Some(listener) = self.listener.take() {
            return Ok(listener);
        }
        let addrs = match &self.addr {
            Ok(addrs) => addrs.clone(),
            Err(err) => return Err(io::Error::new(err.kind(), err.to_string())),
        };
        ListenerOptions::new()
            .backlog(self.backlog)
            .reuse_port(reuse_port)
            .bind(&addrs[..])
    }

    /// Binds and starts accepting in a greenlet; returns at once.
    pub fn start(mut self) -> io::Result<ServerHandle> {
        let listener = self.bind(false)?;
        Ok(self.start_on(listener))
    }

    fn start_on(self, listener: TcpListener) -> ServerHandle {
        let local_addr = listener.local_addr().ok();
        let handlers = Handlers::new(self.max_connections);
        let accepted = Rc::new(Cell::new(0u64));
        let handler = Rc::new(self.handler);
        let reclaim = self.reclaim;
        let accept = {
            let (handlers, accepted) = (handlers.clone(), accepted.clone());
            green_runtime::Builder::new()
                .name(format!("StreamServer accept {}", fmt_addr(local_addr)))
                .spawn(move || {
                    accept_loop(
                        &listener,
                        &handlers,
                        &accepted,
                        &handler,
                        reclaim.as_deref(),
                    )
                })
        };
        ServerHandle {
            local_addr,
            accept,
            handlers,
            accepted,
        }
    }

    /// Binds and serves until the calling greenlet is killed (gevent's `serve_forever`): the
    /// kill stops accepting and closes the listener; running handlers are left to finish.
    pub fn serve_forever(self) -> io::Result<()> {
        let handle = self.start()?;
        let _stop = KillOnDrop(&handle.accept);
        handle.wait();
        Ok(())
    }

    /// Starts `n` worker threads, each with its own hub and `SO_REUSEPORT` listener on this
    /// server's address and a clone of the handler (see [`serve_workers`]); the connection cap
    /// applies per worker. Returns once every worker listens.
    pub fn workers(self, n: usize) -> io::Result<WorkersHandle>
    where
        H: Clone + Send + Sync,
    {
        let addrs = match (&self.listener, &self.addr) {
            (Some(listener), _) => vec![listener.local_addr()?],
            (None, Ok(addrs)) => addrs.clone(),
            (None, Err(err)) => return Err(io::Error::new(err.kind(), err.to_string())),
        };
        drop(self.listener);
        let handler = self.handler;
        serve_workers(&addrs[..], n, self.max_connections, move || handler.clone())
    }
}

/// Kills a server's accept or receive loop when dropped, also while the owner unwinds from a
/// kill (`kill_nowait` never blocks, so it is safe in a destructor).
struct KillOnDrop<'a>(&'a Greenlet<()>);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        self.0.kill_nowait();
    }
}

fn fmt_addr(addr: Option<SocketAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_else(|| "?".into())
}

fn accept_loop<H: Fn(TcpStream, SocketAddr) + 'static>(
    listener: &TcpListener,
    handlers: &Handlers,
    accepted: &Cell<u64>,
    handler: &Rc<H>,
    reclaim: Option<&dyn Fn() -> usize>,
) {
    let mut backoff = MIN_ACCEPT_BACKOFF;
    let mut exhausted = false;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                if exhausted {
                    log::info!("StreamServer accepting again");
                    exhausted = false;
                }
                backoff = MIN_ACCEPT_BACKOFF;
                accepted.set(accepted.get() + 1);
                let handler = handler.clone();
                handlers.spawn(move || handler(stream, peer));
            }
            Err(err) if is_resource_exhaustion(&err) => {
                if reclaim.is_some_and(|reclaim| reclaim() > 0) {
                    continue;
                }
                if !exhausted {
                    log::warn!("StreamServer accept failed ({err}); pausing accepts and retrying");
                    exhausted = true;
                }
                green_runtime::sleep(backoff);
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
            Err(err) => {
                // Aborted handshakes and the like concern one client only.
                if !matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) {
                    log::warn!("StreamServer accept failed: {err}");
                    green_runtime::sleep(MIN_ACCEPT_BACKOFF);
                }
            }
        }
    }
}

/// A running [`StreamServer`] on this thread's hub.
pub struct ServerHandle {
    local_addr: Option<SocketAddr>,
    accept: Greenlet<()>,
    handlers: Handlers,
    accepted: Rc<Cell<u64>>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.connections())
            .finish()
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
            .expect("a started server has a bound listener")
    }

    /// Handlers running now.
    pub fn connections(&self) -> usize {
        self.handlers.len()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.get()
    }

    /// Stops accepting (the listener closes), waits up to `grace` for running handlers to
    /// finish, then kills the rest. Returns whether all finished within the grace period.
    ///
    /// Always returns, by `grace` plus [`STOP_KILL_WAIT`] at most: a killed handler still
    /// unwinding after that (its destructor blocked in I/O, like a `BufWriter` flushing to a
    /// client that never reads) is abandoned and reported through `log` (gevent kills its pool
    /// with a timeout the same way; Go's `Shutdown` returns at its deadline). An abandoned
    /// greenlet stays parked, holding its socket, until its blocking call ends.
    pub fn stop(&self, grace: Duration) -> bool {
        self.accept.kill();
        let server = format!("StreamServer {}", fmt_addr(self.local_addr));
        self.handlers.stop(grace, &server)
    }

    /// Blocks until the server is stopped.
    pub fn wait(&self) {
        let _ = self.accept.wait(None);
    }
}

/// A server running `workers` threads, each with its own hub and `SO_REUSEPORT` listener.
pub struct WorkersHandle {
    local_addr: SocketAddr,
    stops: Vec<xchan::Sender<Duration>>,
    threads: Vec<std::thread::JoinHandle<bool>>,
}

impl fmt::Debug for WorkersHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkersHandle")
            .field("local_addr", &self.local_addr)
            .field("workers", &self.threads.len())
            .finish()
    }
}

impl WorkersHandle {
    /// The shared listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops every worker as [`ServerHandle::stop`] does and joins their threads; returns
    /// whether every handler finished within `grace`. Like that stop it returns by `grace` plus
    /// [`STOP_KILL_WAIT`]; a worker's abandoned handlers are left behind with its hub when its
    /// thread ends.
    pub fn stop(self, grace: Duration) -> bool {
        for stop in &self.stops {
            let _ = stop.send(grace);
        }
        let finished: Vec<bool> = self
            .threads
            .into_iter()
            .map(|t| t.join().unwrap_or(false))
            .collect();
        finished.into_iter().all(|ok| ok)
    }

    /// Blocks for as long as the workers serve (until the process ends: `stop` takes the
    /// handle): for a `main` that only serves.
    pub fn wait(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }

    /// Starts `workers` threads named `{name}-{index}`, each with its own hub: `start(index,
    /// first)` starts worker `index`'s server on that thread (`first`: the address the first
    /// worker bound, for the later ones to share) and returns its address and how to stop it
    /// (called with the grace period; returns whether everything finished within it). Returns
    /// once every worker started, or with the first one's error. The thread plumbing behind
    /// [`serve_workers`] and `green_http::server::Server::workers`.
    pub fn spawn<S, F>(workers: usize, name: &str, start: S) -> io::Result<WorkersHandle>
    where
        S: Fn(usize, Option<SocketAddr>) -> io::Result<(SocketAddr, F)> + Send + Sync + 'static,
        F: FnOnce(Duration) -> bool,
    {
        let start = Arc::new(start);
        let mut stops = Vec::new();
        let mut threads = Vec::new();
        let mut first = None;
        for index in 0..workers.max(1) {
            let (ready_tx, ready_rx) =
                std::sync::mpsc::channel::<io::Result<(SocketAddr, xchan::Sender<Duration>)>>();
            let start = start.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    let (local, stop) = match start(index, first) {
                        Ok(started) => started,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return false;
                        }
                    };
                    let (stop_tx, stop_rx) = xchan::channel::<Duration>();
                    let _ = ready_tx.send(Ok((local, stop_tx)));
                    let grace = stop_rx.recv().unwrap_or(Duration::ZERO);
                    stop(grace)
                })?;
            let (local, stop) = ready_rx
                .recv()
                .map_err(|_| io::Error::other(format!("{name}-{index} died while starting")))??;
            first.get_or_insert(local);
            stops.push(stop);
            threads.push(thread);
        }
        Ok(WorkersHandle {
            local_addr: first.expect("at least one worker"),
            stops,
            threads,
        })
    }
}

/// Starts `workers` threads serving `addr`; each builds its handler with `make_handler` and runs
/// a [`StreamServer`] on its own hub with an `SO_REUSEPORT` listener on the same port (port 0 is
/// resolved by the first worker and shared). `max_connections` applies per worker.
pub fn serve_workers<M, H>(
    addr: impl ToSocketAddrs,
    workers: usize,
    max_connections: Option<usize>,
    make_handler: M,
) -> io::Result<WorkersHandle>
where
    M: Fn() -> H + Send + Sync + 'static,
    H: Fn(TcpStream, SocketAddr) + 'static,
{
    let addrs = resolve(addr)?;
    WorkersHandle::spawn(workers, "green-worker", move |_, first| {
        let listener = match first {
            Some(first) => ListenerOptions::new().reuse_port(true).bind(first)?,
            None => ListenerOptions::new().reuse_port(true).bind(&addrs[..])?,
        };
        let local = listener.local_addr()?;
        let server = StreamServer::from_listener(listener, make_handler());
        let server = match max_connections {
            Some(n) => server.max_connections(n),
            None => server,
        };
        let handle = server.start_on_listener();
        Ok((local, move |grace| handle.stop(grace)))
    })
}

impl<H: Fn(TcpStream, SocketAddr) + 'static> StreamServer<H> {
    fn start_on_listener(mut self) -> ServerHandle {
        let listener = self.listener.take().expect("built from a listener");
        self.start_on(listener)
    }
}

/// One datagram received by a [`DatagramServer`].
#[derive(Debug)]
pub struct Datagram {
    /// The payload.
    pub data: Vec<u8>,
    /// The sender.
    pub peer: SocketAddr,
    socket: Rc<UdpSocket>,
}

impl Datagram {
    /// Sends `data` back to the sender from the server's socket.
    pub fn reply(&self, data: &[u8]) -> io::Result<usize> {
        self.socket.send_to(data, self.peer)
    }

    /// The server's socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }
}

/// A UDP server calling `handler(datagram)` in a new greenlet per datagram (gevent's
/// `DatagramServer`).
pub struct DatagramServer<H> {
    addr: io::Result<Vec<SocketAddr>>,
    handler: H,
    max_datagram: usize,
    max_concurrency: Option<usize>,
}

impl<H> fmt::Debug for DatagramServer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramServer")
            .field("addr", &self.addr.as_ref().ok())
            .finish()
    }
}

impl<H: Fn(Datagram) + 'static> DatagramServer<H> {
    /// A server for `addr`.
    pub fn new(addr: impl ToSocketAddrs, handler: H) -> DatagramServer<H> {
        DatagramServer {
            addr: resolve(addr),
            handler,
            max_datagram: 65_536,
            max_concurrency: None,
        }
    }

    /// Caps concurrent handlers; while full the server stops reading (the socket buffer fills).
    pub fn max_concurrency(mut self, n: usize) -> DatagramServer<H> {
        self.max_concurrency = Some(n);
        self
    }

    /// Binds and starts receiving in a greenlet.
    pub fn start(self) -> io::Result<DatagramHandle> {
        let addrs = self.addr?;
        let socket = Rc::new(UdpSocket::bind(&addrs[..])?);
        let local_addr = socket.local_addr()?;
        let handlers = Handlers::new(self.max_concurrency);
        let handler = Rc::new(self.handler);
        let max_datagram = self.max_datagram;
        let receive = {
            let handlers = handlers.clone();
            green_runtime::Builder::new()
                .name(format!("DatagramServer {local_addr}"))
                .spawn(move || {
                    let mut buf = vec![0u8; max_datagram];
                    loop {
                        match socket.recv_from(&mut buf) {
                            Ok((n, peer)) => {
                                let datagram = Datagram {
                                    data: buf[..n].to_vec(),
                                    peer,
                                    socket: socket.clone(),
                                };
                                let handler = handler.clone();
                                handlers.spawn(move || handler(datagram));
                            }
                            Err(err) => {
                                log::warn!("DatagramServer receive failed: {err}");
                                green_runtime::sleep(MIN_ACCEPT_BACKOFF);
                            }
                        }
                    }
                })
        };
        Ok(DatagramHandle {
            local_addr,
            receive,
            handlers,
        })
    }

    /// Binds and serves until the calling greenlet is killed: the kill stops receiving and
    /// closes the socket; running handlers are left to finish.
    pub fn serve_forever(self) -> io::Result<()> {
        let handle = self.start()?;
        let _stop = KillOnDrop(&handle.receive);
        let _ = handle.receive.wait(None);
        Ok(())
    }
}

/// A running [`DatagramServer`].
pub struct DatagramHandle {
    local_addr: SocketAddr,
    receive: Greenlet<()>,
    handlers: Handlers,
}

impl fmt::Debug for DatagramHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramHandle")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl DatagramHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops receiving, waits up to `grace` for handlers, then kills the rest. Returns whether
    /// all finished within `grace`, and always returns, by `grace` plus [`STOP_KILL_WAIT`] at
    /// most (see [`ServerHandle::stop`]).
    pub fn stop(&self, grace: Duration) -> bool {
        self.receive.kill();
        let server = format!("DatagramServer {}", self.local_addr);
        self.handlers.stop(grace, &server)
    }
}
