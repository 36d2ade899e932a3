//! green::patch and name lookups: std's `ToSocketAddrs` (glibc's `getaddrinfo`) called in a
//! greenlet goes through green's resolver, proved by names that only green's configuration knows:
//! one from a hosts file given to green alone, one that only a dnsmasq on a loopback port (green's
//! only nameserver) answers, also reached as a short name through green's search list.
//!
//! `green::dns::set_resolver` is process-wide, so the tests here take turns. dnsmasq comes from
//! Debian's `dnsmasq-base` (scripts/test installs it); without it the dnsmasq test skips loudly,
//! or fails under CI / `GREEN_REQUIRE_SERVICES=1`.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use green::dns::{Hosts, NativeResolver};

mod common;
use common::services;

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(services::unique_key(what));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A loopback UDP port nothing listens on: a query sent there is refused at once.
fn closed_udp_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn lookup_in_a_greenlet(name: &'static str, port: u16) -> Result<Vec<SocketAddr>, String> {
    green::spawn(move || {
        (name, port)
            .to_socket_addrs()
            .map(|addrs| addrs.collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap()
}

#[test]
fn to_socket_addrs_in_a_greenlet_finds_a_name_only_greens_hosts_file_has() {
    let _serial = services::serial();
    assert!(
        green::patch::all(),
        "green::patch::all() must turn the hooks on"
    );
    let dir = temp_dir("hosts");
    let hosts = dir.join("hosts");
    fs::write(
        &hosts,
        "127.0.0.77 only-green-hosts.test\n127.0.0.1 only-green-listener.test\n",
    )
    .unwrap();
    green::dns::set_resolver(
        NativeResolver::builder()
            .hosts_file(&hosts)
            .nameservers([closed_udp_port()])
            .timeout(Duration::from_millis(200))
            .attempts(1)
            .build(),
    );

    let found = lookup_in_a_greenlet("only-green-hosts.test", 8080);
    assert_eq!(found, Ok(vec![SocketAddr::from(([127, 0, 0, 77], 8080))]));

    // std's connect by name, in a greenlet, through the same table.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = green::spawn(move || {
        let mut stream = TcpStream::connect(("only-green-listener.test", port))?;
        stream.write_all(b"found")?;
        Ok::<_, std::io::Error>(())
    });
    let server = green::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut greeting = String::new();
        stream.read_to_string(&mut greeting).unwrap();
        greeting
    });
    client
        .join()
        .unwrap()
        .expect("connect by a name from green's hosts file");
    assert_eq!(server.join().unwrap(), "found");

    green::dns::set_resolver(NativeResolver::from_system());
    let _ = fs::remove_dir_all(&dir);
}

struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq on a free loopback port answering `only-dnsmasq.test` (10.77.0.1) and NXDOMAIN for
/// every other `*.test` name.
fn start_dnsmasq(hosts: &std::path::Path) -> Option<Dnsmasq> {
    let Some(bin) = common::dnsmasq::binary() else {
        services::skip(
            "dnsmasq is not installed (apt-get install -y dnsmasq-base): the dnsmasq lookup test \
             did not run",
        );
        return None;
    };
    fs::write(hosts, "10.77.0.1 only-dnsmasq.test\n").unwrap();
    for _ in 0..5 {
        let port = closed_udp_port().port();
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut child = common::dnsmasq::command(bin, port, hosts)
            .spawn()
            .expect("spawn dnsmasq");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if common::dnsmasq::answers(addr, "only-dnsmasq.test") {
                return Some(Dnsmasq { child, addr });
            }
            if child.try_wait().unwrap().is_some() {
                break; // lost the port to someone else: try another
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("dnsmasq did not start");
}

#[test]
fn to_socket_addrs_in_a_greenlet_asks_greens_nameserver_with_its_search_list() {
    let _serial = services::serial();
    assert!(
        green::patch::all(),
        "green::patch::all() must turn the hooks on"
    );
    let dir = temp_dir("dnsmasq");
    let Some(dnsmasq) = start_dnsmasq(&dir.join("hosts")) else {
        return;
    };
    green::dns::set_resolver(
        NativeResolver::builder()
            .hosts(Hosts::default())
            .nameservers([dnsmasq.addr])
            .search(["test"])
            .ndots(1)
            .timeout(Duration::from_millis(500))
            .build(),
    );
    let only_dnsmasq = IpAddr::from([10, 77, 0, 1]);

    let found = lookup_in_a_greenlet("only-dnsmasq.test", 443);
    assert_eq!(found, Ok(vec![SocketAddr::new(only_dnsmasq, 443)]));

    // A short name: green's search list (not the system's) makes it only-dnsmasq.test.
    let found = lookup_in_a_greenlet("only-dnsmasq", 80);
    assert_eq!(found, Ok(vec![SocketAddr::new(only_dnsmasq, 80)]));

    // A name nobody knows fails the way glibc's getaddrinfo fails (std wraps its error code).
    let missing = lookup_in_a_greenlet("nobody-knows.test", 80).unwrap_err();
    assert!(
        missing.contains("failed to lookup address information"),
        "{missing}"
    );

    green::dns::set_resolver(NativeResolver::from_system());
    drop(dnsmasq);
    let _ = fs::remove_dir_all(&dir);
}
