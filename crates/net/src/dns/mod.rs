//! Name resolution for green sockets.
//!
//! `resolve` and `lookup` answer IP literals directly and otherwise run the system's
//! `getaddrinfo` on a helper thread, waking the calling greenlet through its hub when the answer
//! arrives, so a lookup never blocks the hub's thread.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::sync::{Arc, Mutex};

use green_runtime::hub;
use green_runtime::ThreadsafeWaker;

/// Resolves `host` to its addresses.
pub fn resolve(host: &str) -> io::Result<Vec<IpAddr>> {
    Ok(lookup(host, 0)?.into_iter().map(|a| a.ip()).collect())
}

/// Resolves `host` and pairs each address with `port`.
pub fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    getaddrinfo_on_thread(host, port)
}

fn getaddrinfo_on_thread(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    type Answer = Option<io::Result<Vec<SocketAddr>>>;
    let answer: Arc<Mutex<Answer>> = Arc::new(Mutex::new(None));
    let waker = ThreadsafeWaker::for_current();
    let (shared, name) = (answer.clone(), host.to_string());
    std::thread::Builder::new()
        .name("green-getaddrinfo".into())
        .spawn(move || {
            let result = (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect);
            *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            waker.wake();
        })?;
    loop {
        if let Some(result) = answer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return result;
        }
        hub::park().map_err(|e| io::Error::other(e.to_string()))?;
    }
}
