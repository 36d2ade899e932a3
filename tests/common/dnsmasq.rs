//! dnsmasq as a real DNS peer on loopback, shared by the DNS tests and the DNS benchmark (which
//! includes this file by path).

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The dnsmasq binary, if installed (Debian's `dnsmasq-base`).
pub fn binary() -> Option<&'static str> {
    ["dnsmasq", "/usr/sbin/dnsmasq"].into_iter().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// dnsmasq in the foreground on 127.0.0.1:`port`, answering for `*.test` from the hosts file
/// `hosts` (TTL 60) and forwarding nothing; add arguments before spawning it.
pub fn command(bin: &str, port: u16, hosts: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--pid-file",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--local=/test/",
            "--local-ttl=60",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--addn-hosts={}", hosts.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Whether the DNS server at `addr` answers an A query for `name` within 50 ms.
pub fn answers(addr: SocketAddr, name: &str) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP probe");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("probe timeout");
    let mut query = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|label| !label.is_empty()) {
        query.push(label.len() as u8);
        query.extend(label.as_bytes());
    }
    query.extend([0, 0, 1, 0, 1]);
    let _ = socket.send_to(&query, addr);
    let mut buf = [0; 512];
    matches!(socket.recv_from(&mut buf), Ok((n, _)) if n > 12 && buf[..2] == [0x12, 0x34])
}
