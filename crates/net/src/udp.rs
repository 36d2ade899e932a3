//! Green UDP: `UdpSocket` with std's API; receives block only the greenlet.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::addr::{each_addr, resolve, ToSocketAddrs};
use crate::sock::Sock;

/// A green UDP socket: `std::net::UdpSocket`'s API; `recv_from` and `send_to` block only the
/// calling greenlet.
///
/// ```
/// use green_net::UdpSocket;
///
/// let server = UdpSocket::bind("127.0.0.1:0")?;
/// let server_addr = server.local_addr()?;
/// let echo = green_runtime::spawn(move || {
///     let mut buf = [0; 64];
///     let (len, peer) = server.recv_from(&mut buf)?;
///     server.send_to(&buf[..len], peer)
/// });
///
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"ping", server_addr)?;
/// let mut buf = [0; 64];
/// let (len, from) = client.recv_from(&mut buf)?;
/// assert_eq!((&buf[..len], from), (&b"ping"[..], server_addr));
/// echo.join().unwrap()?;
/// # std::io::Result::Ok(())
/// ```
pub struct UdpSocket {
    sock: Sock<std::net::UdpSocket>,
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl UdpSocket {
    /// Binds to the first address of `addr` that works.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        each_addr(addr, |addr| {
            let socket = Socket::new(
                Domain::for_address(*addr),
                Type::DGRAM.nonblocking().cloexec(),
                Some(Protocol::UDP),
            )?;
            socket.bind(&(*addr).into())?;
            Ok(UdpSocket {
                sock: Sock::new(std::net::UdpSocket::from(socket)),
            })
        })
    }

    /// Wraps a std socket.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket {
            sock: Sock::new(socket),
        })
    }

    /// Unwraps the std socket, made blocking again.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        let socket = self.sock.fd.into_inner();
        socket.set_nonblocking(false)?;
        Ok(socket)
    }

    /// Sets the default peer (the first address of `addr` that works).
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        each_addr(addr, |addr| self.sock.get().connect(addr))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write_op(|s| s.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read_op(|s| s.recv(buf))
    }

    /// Receives a datagram from the connected peer without consuming it.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read_op(|s| s.peek(buf))
    }

    /// Sends to `addr` (its first address; names resolve through green DNS).
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let target = resolve(addr)?[0];
        self.sock.write_op(|s| s.send_to(buf, target))
    }

    /// Receives a datagram and its source address.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.read_op(|s| s.recv_from(buf))
    }

    /// Receives with an explicit deadline (`ErrorKind::TimedOut` when it passes), whatever the
    /// read timeout.
    pub fn recv_from_until(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> io::Result<(usize, SocketAddr)> {
        self.sock.read_op_until(deadline, |s| s.recv_from(buf))
    }

    /// Receives a datagram without consuming it, with its source address.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.read_op(|s| s.peek_from(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.get().peer_addr()
    }

    /// Sets `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.sock.get().set_broadcast(on)
    }

    /// Reads `SO_BROADCAST`.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.sock.get().broadcast()
    }

    /// Sets `IP_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.sock.get().set_multicast_loop_v4(on)
    }

    /// Reads `IP_MULTICAST_LOOP`.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.sock.get().multicast_loop_v4()
    }

    /// Sets `IP_MULTICAST_TTL`.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.sock.get().set_multicast_ttl_v4(ttl)
    }

    /// Reads `IP_MULTICAST_TTL`.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.sock.get().multicast_ttl_v4()
    }

    /// Sets `IPV6_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.sock.get().set_multicast_loop_v6(on)
    }

    /// Reads `IPV6_MULTICAST_LOOP`.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.sock.get().multicast_loop_v6()
    }

    /// Joins an IPv4 multicast group.
    pub fn join_multicast_v4(&self, group: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.sock.get().join_multicast_v4(group, interface)
    }

    /// Joins an IPv6 multicast group.
    pub fn join_multicast_v6(&self, group: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.sock.get().join_multicast_v6(group, interface)
    }

    /// Leaves an IPv4 multicast group.
    pub fn leave_multicast_v4(&self, group: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.sock.get().leave_multicast_v4(group, interface)
    }

    /// Leaves an IPv6 multicast group.
    pub fn leave_multicast_v6(&self, group: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.sock.get().leave_multicast_v6(group, interface)
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.sock.get().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.sock.get().ttl()
    }

    /// Sets `SO_RCVBUF`.
    pub fn set_recv_buffer_size(&self, size: usize) -> io::Result<()> {
        SockRef::from(self.sock.get()).set_recv_buffer_size(size)
    }
}

crate::sock::impl_socket_common!(UdpSocket);
crate::sock::impl_socket_timeouts!(UdpSocket);
