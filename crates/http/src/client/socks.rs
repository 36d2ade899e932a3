//! The SOCKS5 handshake (RFC 1928, with RFC 1929's user/password): after it, the TCP connection
//! to the proxy leads to the origin, and HTTP (or TLS, then HTTP) runs over it as if direct.
//!
//! `socks5h://` sends the host name for the proxy to resolve (curl's convention, for names only
//! the proxy can resolve, and so local DNS does not leak them); `socks5://` resolves it here
//! and sends the address.

use std::io;
use std::net::IpAddr;

use super::conn::Conn;

/// How to reach the origin through a SOCKS5 proxy.
#[derive(Debug, Clone)]
pub(crate) struct Socks {
    /// The proxy resolves the host name (`socks5h://`).
    pub(crate) remote_dns: bool,
    /// User and password (RFC 1929), from the proxy URL.
    pub(crate) credentials: Option<(String, String)>,
}

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xff;
const CONNECT: u8 = 1;

/// Asks the proxy at the other end of `conn` to connect to `host:port`.
pub(crate) fn handshake(conn: &mut Conn, socks: &Socks, host: &str, port: u16) -> io::Result<()> {
    let method = if socks.credentials.is_some() {
        USER_PASSWORD
    } else {
        NO_AUTH
    };
    conn.write_all(&[VERSION, 1, method])?;
    let reply = read_exact(conn, 2)?;
    if reply[0] != VERSION {
        return Err(protocol("the proxy does not speak SOCKS5"));
    }
    match reply[1] {
        NO_AUTH => {}
        USER_PASSWORD => {
            let (user, password) = socks
                .credentials
                .as_ref()
                .ok_or_else(|| protocol("the proxy chose an authentication it was not offered"))?;
            let (user, password) = (user.as_bytes(), password.as_bytes());
            let (Ok(user_len), Ok(password_len)) =
                (u8::try_from(user.len()), u8::try_from(password.len()))
            else {
                return Err(invalid("SOCKS5 user and password are at most 255 bytes"));
            };
            let mut message = vec![1, user_len];
            message.extend_from_slice(user);
            message.push(password_len);
            message.extend_from_slice(password);
            conn.write_all(&message)?;
            let status = read_exact(conn, 2)?;
            if status[1] != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the SOCKS5 proxy refused the user and password",
                ));
            }
        }
        NO_ACCEPTABLE => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                if socks.credentials.is_some() {
                    "the SOCKS5 proxy accepts no user/password authentication"
                } else {
                    "the SOCKS5 proxy requires authentication"
                },
            ))
        }
        _ => {
            return Err(protocol(
                "the proxy chose an authentication it was not offered",
            ))
        }
    }

    let mut request = vec![VERSION, CONNECT, 0];
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    let ip = match literal {
        Some(ip) => Some(ip),
        None if socks.remote_dns => None,
        None => Some(
            *green_net::dns::resolve(host)?
                .first()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?,
        ),
    };
    match ip {
        Some(IpAddr::V4(v4)) => {
            request.push(1);
            request.extend_from_slice(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            request.push(4);
            request.extend_from_slice(&v6.octets());
        }
        None => {
            let name = u8::try_from(host.len())
                .map_err(|_| invalid("a SOCKS5 host name is at most 255 bytes"))?;
            request.push(3);
            request.push(name);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    conn.write_all(&request)?;
    let reply = read_exact(conn, 4)?;
    if reply[0] != VERSION {
        return Err(protocol("a malformed SOCKS5 reply"));
    }
    if reply[1] != 0 {
        let (kind, why) = match reply[1] {
            2 => (io::ErrorKind::PermissionDenied, "not allowed by its rules"),
            3 => (io::ErrorKind::NetworkUnreachable, "network unreachable"),
            4 => (io::ErrorKind::HostUnreachable, "host unreachable"),
            5 => (io::ErrorKind::ConnectionRefused, "connection refused"),
            6 => (io::ErrorKind::TimedOut, "TTL expired"),
            7 => (io::ErrorKind::Unsupported, "command not supported"),
            8 => (io::ErrorKind::Unsupported, "address type not supported"),
            _ => (io::ErrorKind::Other, "general failure"),
        };
        return Err(io::Error::new(
            kind,
            format!("the SOCKS5 proxy could not connect to {host}:{port}: {why}"),
        ));
    }
    // The address the proxy bound, which HTTP has no use for.
    let rest = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => usize::from(read_exact(conn, 1)?[0]) + 2,
        _ => return Err(protocol("a malformed SOCKS5 reply")),
    };
    read_exact(conn, rest)?;
    Ok(())
}

fn read_exact(conn: &mut Conn, n: usize) -> io::Result<Vec<u8>> {
    while conn.buffered().len() < n {
        if conn.fill()? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the SOCKS5 proxy closed the connection",
            ));
        }
    }
    let bytes = conn.buffered()[..n].to_vec();
    conn.consume(n);
    Ok(bytes)
}

fn protocol(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_string())
}
