//! Connection buffers lent from a per-thread pool, so that an idle keep-alive connection holds
//! none.
//!
//! A connection takes a read and a write buffer when bytes arrive and gives them back when it
//! has answered everything and waits for its next request (nginx frees its buffers there;
//! hyper's shrink). On one hub only the greenlets between a wake-up and their next wait hold
//! buffers, so a small pool serves thousands of connections without a `malloc` per request, and
//! what it keeps is bounded ([`POOL_MAX`] of each).

use std::cell::RefCell;

use http::HeaderMap;

/// Bytes asked of the socket per read: the size of a read buffer.
pub(crate) const READ_SIZE: usize = 16 * 1024;
/// The initial capacity of a write buffer.
const WRITE_SIZE: usize = 16 * 1024;
/// A write buffer grown past this (a large response) is freed rather than pooled.
const WRITE_KEEP_MAX: usize = 64 * 1024;
/// A header map that can hold more fields than this is freed rather than reused.
pub(crate) const HEADERS_KEEP_MAX: usize = 64;
/// Buffers of each kind the pool keeps for reuse.
const POOL_MAX: usize = 16;

struct Pool {
    read: Vec<Vec<u8>>,
    write: Vec<Vec<u8>>,
    /// Emptied header maps, whose allocations request heads are parsed into.
    headers: Vec<HeaderMap>,
    /// Buffers lent and not given back yet.
    lent: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool { read: Vec::new(), write: Vec::new(), headers: Vec::new(), lent: 0 })
    };
}

/// Lends a connection its buffers, in one visit to the pool: `read` becomes a read buffer of
/// [`READ_SIZE`] bytes (contents unspecified), `write` an empty write buffer followed by what it
/// held, and `headers`, empty, the pool's emptied map if it has one (its allocation is reused).
pub(crate) fn take(read: &mut Vec<u8>, write: &mut Vec<u8>, headers: &mut HeaderMap) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.lent += 2;
        *read = pool.read.pop().unwrap_or_else(|| vec![0; READ_SIZE]);
        let fresh = pool
            .write
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(WRITE_SIZE));
        let unsent = std::mem::replace(write, fresh);
        write.extend_from_slice(&unsent);
        if let Some(map) = pool.headers.pop() {
            *headers = map;
        }
    });
}

/// Gives back what [`take`] lent, leaving the three empty: each is kept for reuse unless the
/// pool has enough of its kind, or it grew (a read buffer for a long head, a write buffer past
/// 64 KiB, a map for many fields), or it is a map that never allocated.
pub(crate) fn give(read: &mut Vec<u8>, write: &mut Vec<u8>, headers: &mut HeaderMap) {
    let read = std::mem::take(read);
    let mut write = std::mem::take(write);
    let headers = std::mem::take(headers);
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.lent = pool.lent.saturating_sub(2);
        if read.len() == READ_SIZE && pool.read.len() < POOL_MAX {
            pool.read.push(read);
        }
        if write.capacity() <= WRITE_KEEP_MAX && pool.write.len() < POOL_MAX {
            write.clear();
            pool.write.push(write);
        }
        let capacity = headers.capacity();
        if capacity != 0 && capacity <= HEADERS_KEEP_MAX && pool.headers.len() < POOL_MAX {
            let mut headers = headers;
            // A connection's spare map is empty already (cleared before it was kept): the
            // clear, a pass over its slots, is only a guard.
            if !headers.is_empty() {
                headers.clear();
            }
            pool.headers.push(headers);
        }
    });
}

/// Buffers of this thread's connections not given back: the ones in use.
#[cfg(test)]
fn lent() -> usize {
    POOL.with(|pool| pool.borrow().lent)
}

/// Buffers waiting in this thread's pool: (read, write).
#[cfg(test)]
fn pooled() -> (usize, usize) {
    POOL.with(|pool| {
        let pool = pool.borrow();
        (pool.read.len(), pool.write.len())
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use green_net::TcpStream;

    use super::{lent, pooled, POOL_MAX};
    use crate::server::{Body, Response, Server};

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /// Reads `count` responses whose body is `hello`.
    fn read_hellos(conn: &mut TcpStream, count: usize) {
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        let answered = |reply: &[u8]| reply.windows(9).filter(|w| w == b"\r\n\r\nhello").count();
        while answered(&reply) < count {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&reply));
            reply.extend_from_slice(&buf[..n]);
        }
        assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }

    fn read_hello(conn: &mut TcpStream) {
        read_hellos(conn, 1);
    }

    #[test]
    fn idle_keep_alive_connection_holds_no_buffers() {
        let server = Server::bind("127.0.0.1:0")
            .unwrap()
            .start(|_| Response::new(Body::from("hello")))
            .unwrap();
        let mut conn = TcpStream::connect(server.local_addr()).unwrap();
        for _ in 0..3 {
            conn.write_all(REQUEST).unwrap();
            read_hello(&mut conn);
            // One hub: the server's greenlet ran from writing the response to its wait for the
            // next request before this one was woken to read it.
            assert_eq!(server.connections(), 1);
            assert_eq!(lent(), 0, "buffers held by an idle keep-alive connection");
        }
        // Pipelined requests are answered from the same buffers, then given back as well.
        conn.write_all(&REQUEST.repeat(3)).unwrap();
        read_hellos(&mut conn, 3);
        assert_eq!(lent(), 0);
        assert!(server.stop(Duration::from_secs(1)));
    }

    #[test]
    fn many_idle_connections_share_a_bounded_pool() {
        let server = Server::bind("127.0.0.1:0")
            .unwrap()
            .start(|_| Response::new(Body::from("hello")))
            .unwrap();
        let mut conns: Vec<TcpStream> = (0..3 * POOL_MAX)
            .map(|_| TcpStream::connect(server.local_addr()).unwrap())
            .collect();
        for conn in &mut conns {
            conn.write_all(REQUEST).unwrap();
        }

        for conn in &mut conns {
            read_hello(conn);
        }
        assert_eq!(server.connections(), conns.len());
        assert_eq!(lent(), 0);
        let (read, write) = pooled();
        assert!(
            read <= POOL_MAX && write <= POOL_MAX,
            "pool kept {read} + {write}"
        );
        assert!(read >= 1, "buffers are kept for reuse");
        drop(conns);
        assert!(server.stop(Duration::from_secs(1)));
        assert_eq!(lent(), 0);
    }
}
