//! Connection buffers lent from a per-thread pool, so that an idle keep-alive connection holds
//! none.
//!
//! A connection takes a read and a write buffer when bytes arrive and gives them back when it
//! has answered everything and waits for its next request (nginx frees its buffers there;
//! hyper's shrink). On one hub only the greenlets between a wake-up and their next wait hold
//! buffers, so a small pool serves thousands of connections without a `malloc` per request, and
//! what it keeps is bounded ([`POOL_MAX`] of each).

use std::cell::{Cell, RefCell};

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
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool { read: Vec::new(), write: Vec::new(), headers: Vec::new() })
    };
    static LENT: Cell<usize> = const { Cell::new(0) };
}

/// A read buffer of [`READ_SIZE`] bytes (contents unspecified).
pub(crate) fn take_read() -> Vec<u8> {
    LENT.with(|lent| lent.set(lent.get() + 1));
    POOL.with(|pool| pool.borrow_mut().read.pop())
        .unwrap_or_else(|| vec![0; READ_SIZE])
}

/// An empty write buffer.
pub(crate) fn take_write() -> Vec<u8> {
    LENT.with(|lent| lent.set(lent.get() + 1));
    POOL.with(|pool| pool.borrow_mut().write.pop())
        .unwrap_or_else(|| Vec::with_capacity(WRITE_SIZE))
}

/// Gives back a buffer from [`take_read`] (one grown for a long head is freed).
pub(crate) fn give_read(buf: Vec<u8>) {
    LENT.with(|lent| lent.set(lent.get().saturating_sub(1)));
    if buf.len() == READ_SIZE {
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.read.len() < POOL_MAX {
                pool.read.push(buf);
            }
        });
    }
}

/// Gives back a buffer from [`take_write`].
pub(crate) fn give_write(mut buf: Vec<u8>) {
    LENT.with(|lent| lent.set(lent.get().saturating_sub(1)));
    if buf.capacity() <= WRITE_KEEP_MAX {
        buf.clear();
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.write.len() < POOL_MAX {
                pool.write.push(buf);
            }
        });
    }
}

/// An empty header map (from the pool when it has one: its allocation is reused).
pub(crate) fn take_headers() -> HeaderMap {
    POOL.with(|pool| pool.borrow_mut().headers.pop())
        .unwrap_or_default()
}

/// Gives back a header map from [`take_headers`] (emptied here) or a written response's.
pub(crate) fn give_headers(mut headers: HeaderMap) {
    if headers.capacity() == 0 || headers.capacity() > HEADERS_KEEP_MAX {
        return;
    }
    headers.clear();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.headers.len() < POOL_MAX {
            pool.headers.push(headers);
        }
    });
}

/// Buffers of this thread's connections not given back: the ones in use.
#[cfg(test)]
fn lent() -> usize {
    LENT.with(Cell::get)
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
