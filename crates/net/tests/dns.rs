//! green::dns against real peers: dnsmasq on a loopback port (A, AAAA, CNAME, NXDOMAIN, thousands
//! of names) and misbehaving DNS servers written here (wrong IDs, wrong ports, truncation,
//! silence, SERVFAIL), plus resolv.conf / hosts parsing and the environment switches. The
//! failure tests (silent servers, NXDOMAIN carrying addresses, oversized replies, slow or silent
//! CNAME chains) run at 1 and at 1,000 lookups at once against a scripted server.
//!
//! dnsmasq comes from Debian's `dnsmasq-base`; without it the dnsmasq tests print a loud SKIPPED
//! line and pass. The environment tests re-run this binary as a child process, because the
//! default resolver reads the environment once per process.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use green::dns::{
    self, DnsError, DnsErrorKind, Hosts, NativeResolver, NativeResolverBuilder, ResolvConf,
    Resolver, ThreadResolver,
};

mod common;

// ---------------------------------------------------------------------------------------------
// Temp files

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "green-dns-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// DNS wire format, by hand (the tests deliberately share no code with the resolver)

const A: u16 = 1;
const AAAA: u16 = 28;
const NOERROR: u8 = 0;
const FORMERR: u8 = 1;
const SERVFAIL: u8 = 2;
const NXDOMAIN: u8 = 3;

#[derive(Debug, Clone)]
struct Question {
    id: u16,
    name: String,
    qtype: u16,
    opt_payload: Option<u16>,
    source: SocketAddr,
    tcp: bool,
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]))
}

fn parse_query(buf: &[u8], source: SocketAddr, tcp: bool) -> Option<Question> {
    let id = be16(buf, 0)?;
    let flags = be16(buf, 2)?;
    if flags & 0x8000 != 0 || be16(buf, 4)? != 1 {
        return None;
    }
    let mut labels = Vec::new();
    let mut pos = 12;
    loop {
        let len = usize::from(*buf.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(buf.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = be16(buf, pos)?;
    pos += 4;
    let mut opt_payload = None;
    if be16(buf, 10)? >= 1 && buf.get(pos) == Some(&0) && be16(buf, pos + 1) == Some(41) {
        opt_payload = be16(buf, pos + 3);
    }
    Some(Question {
        id,
        name: labels.join("."),
        qtype,
        opt_payload,
        source,
        tcp,
    })
}

#[derive(Debug, Clone)]
enum Rr {
    A(String, u32, Ipv4Addr),
    Aaaa(String, u32, Ipv6Addr),
    Cname(String, u32, String),
    /// Zone, record TTL, SOA MINIMUM.
    Soa(String, u32, u32),
}

#[derive(Debug, Clone)]
struct Reply {
    rcode: u8,
    truncated: bool,
    response: bool,
    id: Option<u16>,
    question: Option<(String, u16)>,
    /// Owner names equal to the question's are written as a pointer to it (as servers do).
    compressed: bool,
    answers: Vec<Rr>,
    authority: Vec<Rr>,
}

impl Reply {
    fn new(rcode: u8) -> Reply {
        Reply {
            rcode,
            truncated: false,
            response: true,
            id: None,
            question: None,
            compressed: false,
            answers: Vec::new(),
            authority: Vec::new(),
        }
    }

    fn answer(mut self, rr: Rr) -> Reply {
        self.answers.push(rr);
        self
    }

    fn soa(mut self, ttl: u32, minimum: u32) -> Reply {
        self.authority.push(Rr::Soa("test".into(), ttl, minimum));
        self
    }

    fn encode(&self, q: &Question) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(self.id.unwrap_or(q.id).to_be_bytes());
        let mut flags: u16 = 0x0100 | 0x0080 | u16::from(self.rcode);
        if self.response {
            flags |= 0x8000;
        }
        if self.truncated {
            flags |= 0x0200;
        }
        out.extend(flags.to_be_bytes());
        out.extend(1u16.to_be_bytes());
        out.extend((self.answers.len() as u16).to_be_bytes());
        out.extend((self.authority.len() as u16).to_be_bytes());
        out.extend(0u16.to_be_bytes());
        let (name, qtype) = self.question.clone().unwrap_or((q.name.clone(), q.qtype));
        put_name(&mut out, &name);
        out.extend(qtype.to_be_bytes());
        out.extend(1u16.to_be_bytes());
        let question = self.compressed.then_some(name.as_str());
        for rr in self.answers.iter().chain(&self.authority) {
            put_rr(&mut out, rr, question);
        }
        out
    }
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend(label.as_bytes());
    }
    out.push(0);
}

/// Writes `rr`, its owner name as a pointer to the question's name if it is `question`.
fn put_rr(out: &mut Vec<u8>, rr: &Rr, question: Option<&str>) {
    let (name, rtype, ttl, rdata) = match rr {
        Rr::A(name, ttl, ip) => (name, A, *ttl, ip.octets().to_vec()),
        Rr::Aaaa(name, ttl, ip) => (name, AAAA, *ttl, ip.octets().to_vec()),
        Rr::Cname(name, ttl, target) => {
            let mut rdata = Vec::new();
            put_name(&mut rdata, target);
            (name, 5, *ttl, rdata)
        }
        Rr::Soa(zone, ttl, minimum) => {
            let mut rdata = Vec::new();
            put_name(&mut rdata, &format!("ns.{zone}"));
            put_name(&mut rdata, &format!("admin.{zone}"));
            for value in [1u32, 3600, 600, 86400, *minimum] {
                rdata.extend(value.to_be_bytes());
            }
            (zone, 6, *ttl, rdata)
        }
    };
    if question == Some(name.as_str()) {
        out.extend([0xc0, 12]);
    } else {
        put_name(out, name);
    }
    out.extend(rtype.to_be_bytes());
    out.extend(1u16.to_be_bytes());
    out.extend(ttl.to_be_bytes());
    out.extend((rdata.len() as u16).to_be_bytes());
    out.extend(rdata);
}

/// The reply of a zone holding `entries` (name → addresses): the addresses of the asked family,
/// NOERROR + SOA when the name has none of that family, NXDOMAIN + SOA for other names.
fn zone(q: &Question, entries: &[(&str, &[&str])], ttl: u32) -> Reply {
    let Some((_, addrs)) = entries.iter().find(|(name, _)| *name == q.name) else {
        return Reply::new(NXDOMAIN).soa(60, 60);
    };
    let mut reply = Reply::new(NOERROR);
    for addr in addrs.iter().map(|a| a.parse::<IpAddr>().unwrap()) {
        match (addr, q.qtype) {
            (IpAddr::V4(ip), A) => reply = reply.answer(Rr::A(q.name.clone(), ttl, ip)),
            (IpAddr::V6(ip), AAAA) => reply = reply.answer(Rr::Aaaa(q.name.clone(), ttl, ip)),
            _ => {}
        }
    }
    if reply.answers.is_empty() {
        reply = reply.soa(60, 60);
    }
    reply
}

// ---------------------------------------------------------------------------------------------
// A scriptable DNS server on loopback (UDP and TCP on the same port)

enum Action {
    /// Send a reply to the querier.
    Send(Reply),
    /// Send raw bytes to the querier.
    Raw(Vec<u8>),
    /// Send a reply from another socket (a different source port).
    SendFromOtherPort(Reply),
}

type Handler = dyn Fn(&Question) -> Vec<Action> + Send + Sync;

struct FakeServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Question>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeServer {
    fn start(handler: impl Fn(&Question) -> Vec<Action> + Send + Sync + 'static) -> FakeServer {
        let handler: Arc<Handler> = Arc::new(handler);
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp_thread = {
            let (handler, log, stop) = (handler.clone(), log.clone(), stop.clone());
            thread::spawn(move || {
                let other = UdpSocket::bind("127.0.0.1:0").unwrap();
                let mut buf = [0; 4096];
                let mut workers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some(q) = parse_query(&buf[..len], from, false) else {
                        continue;
                    };
                    log.lock().unwrap().push(q.clone());
                    let (handler, udp, other) = (
                        handler.clone(),
                        udp.try_clone().unwrap(),
                        other.try_clone().unwrap(),
                    );
                    // One thread per query, so a handler may wait for another query.
                    workers.push(thread::spawn(move || {
                        for action in handler(&q) {
                            let _ = match action {
                                Action::Send(reply) => udp.send_to(&reply.encode(&q), from),
                                Action::Raw(bytes) => udp.send_to(&bytes, from),
                                Action::SendFromOtherPort(reply) => {
                                    other.send_to(&reply.encode(&q), from)
                                }
                            };
                        }
                    }));
                }
                for worker in workers {
                    let _ = worker.join();
                }
            })
        };
        let tcp_thread = {
            let (handler, log, stop) = (handler, log.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut conn, from)) = tcp.accept() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut len = [0; 2];
                    if conn.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut body).is_err() {
                        continue;
                    }
                    let Some(q) = parse_query(&body, from, true) else {
                        continue;
                    };
                    log.lock().unwrap().push(q.clone());
                    for action in handler(&q) {
                        let bytes = match action {
                            Action::Send(reply) | Action::SendFromOtherPort(reply) => {
                                reply.encode(&q)
                            }
                            Action::Raw(bytes) => bytes,
                        };
                        let _ = conn.write_all(&(bytes.len() as u16).to_be_bytes());
                        let _ = conn.write_all(&bytes);
                    }
                }
            })
        };
        FakeServer {
            addr,
            log,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn queries(&self) -> Vec<Question> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The names asked, in order of first appearance.
    fn names(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for q in self.queries() {
            if !seen.contains(&q.name) {
                seen.push(q.name);
            }
        }
        seen
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A resolver isolated from the system: only `servers`, no hosts, no search list, 300 ms per
/// try, one round.
fn resolver_for(servers: &[SocketAddr]) -> NativeResolverBuilder {
    NativeResolver::builder()
        .config(ResolvConf::default())
        .nameservers(servers.iter().copied())
        .hosts(Hosts::default())
        .timeout(Duration::from_millis(300))
        .attempts(1)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v
}

fn dns_kind(err: &io::Error) -> DnsErrorKind {
    dns::error_kind(err).unwrap_or_else(|| panic!("not a DNS error: {err:?}"))
}

/// A closed UDP port on loopback.
fn closed_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// dnsmasq

struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts dnsmasq on a free loopback port serving `hosts` (an addn-hosts file) and `args`;
/// `None` (with a loud message) if dnsmasq is not installed.
fn dnsmasq(hosts: &str, args: &[&str]) -> Option<Dnsmasq> {
    let Some(bin) = common::dnsmasq::binary() else {
        eprintln!(
            "\n***** SKIPPED: dnsmasq is not installed (apt-get install -y dnsmasq-base); \
             the tests against a real DNS server did not run *****\n"
        );
        return None;
    };
    let dir = TempDir::new();
    let hosts_path = dir.file("hosts", hosts);
    for _ in 0..5 {
        let port = {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            port
        };
        let mut child = common::dnsmasq::command(bin, port, &hosts_path)
            .arg("--host-record=ready.test,10.255.0.1")
            .args(args)
            .spawn()
            .expect("spawn dnsmasq");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if common::dnsmasq::answers(addr, "ready.test") {
                return Some(Dnsmasq {
                    child,
                    addr,
                    _dir: dir,
                });
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

fn dnsmasq_standard() -> Option<Dnsmasq> {
    dnsmasq(
        "10.0.0.2 v4only.test\nfd00::3 v6only.test\n",
        &[
            "--host-record=alpha.test,10.0.0.1,fd00::1",
            "--cname=www.test,alpha.test",
            "--cname=w2.test,www.test",
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// Child processes for the environment tests

fn in_child() -> bool {
    std::env::var_os("GREEN_DNS_CHILD").is_some()
}

fn run_child(test: &str, envs: &[(&str, String)]) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("GREEN_DNS_CHILD", "1");
    for var in [
        "GREEN_RESOLVER",
        "GREEN_RESOLV_CONF",
        "GREEN_HOSTS",
        "GREEN_NAMESERVERS",
        "LOCALDOMAIN",
        "RES_OPTIONS",
    ] {
        cmd.env_remove(var);
    }
    for (key, value) in envs {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// resolv.conf, hosts, environment

#[test]
fn resolv_conf_file_gives_servers_search_and_options() {
    let dir = TempDir::new();
    let path = dir.file(
        "resolv.conf",
        "# generated\n\
         nameserver 10.0.0.1\n\
         nameserver fd00::53\n\
         domain ignored.example\n\
         search corp.example lab.example.\n\
         options ndots:3 timeout:2 attempts:4 rotate edns0 some-future-option\n",
    );
    let conf = ResolvConf::from_file(&path).unwrap();
    assert_eq!(
        conf.nameservers,
        [
            "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
            "[fd00::53]:53".parse().unwrap()
        ]
    );
    assert_eq!(conf.search, ["corp.example", "lab.example"]);
    assert_eq!(conf.ndots, 3);
    assert_eq!(conf.timeout, Duration::from_secs(2));
    assert_eq!(conf.attempts, 4);
    assert!(conf.rotate);
}

#[test]
fn resolv_conf_without_servers_means_localhost_and_options_are_clamped() {
    let dir = TempDir::new();
    let path = dir.file(
        "resolv.conf",
        "search first.example\ndomain only.example\noptions ndots:40 attempts:0 timeout:99\n",
    );
    let conf = ResolvConf::from_file(&path).unwrap();
    assert_eq!(
        conf.nameservers,
        [
            "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
    assert_eq!(
        conf.search,
        ["only.example"],
        "the last search/domain line wins"
    );
    assert_eq!(conf.ndots, 15);
    assert_eq!(conf.attempts, 1);
    assert_eq!(conf.timeout, Duration::from_secs(30));
    assert!(!conf.rotate);
    let missing = ResolvConf::from_file(dir.0.join("missing")).unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);
}

#[test]
fn environment_overrides_search_options_and_servers() {
    let env: HashMap<&str, &str> = [
        ("LOCALDOMAIN", "a.example  b.example."),
        ("RES_OPTIONS", "ndots:2 rotate timeout:1 bogus attempts:x"),
        ("GREEN_NAMESERVERS", "127.0.0.1:5353, [::1]:5354,10.0.0.9"),
    ]
    .into();
    let mut conf = ResolvConf::parse("nameserver 10.1.1.1\nsearch z.example\noptions attempts:3");
    conf.apply_env(|name| env.get(name).map(|v| v.to_string()));
    assert_eq!(conf.search, ["a.example", "b.example"]);
    assert_eq!(conf.ndots, 2);
    assert!(conf.rotate);
    assert_eq!(conf.timeout, Duration::from_secs(1));
    assert_eq!(
        conf.attempts, 3,
        "a malformed option leaves the value alone"
    );
    assert_eq!(
        conf.nameservers,
        [
            "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
            "[::1]:5354".parse().unwrap(),
            "10.0.0.9:53".parse().unwrap()
        ]
    );
    let mut unchanged = ResolvConf::parse("nameserver 10.1.1.1");
    unchanged.apply_env(|name| (name == "GREEN_NAMESERVERS").then(|| "not-an-ip:53".into()));
    assert_eq!(unchanged.nameservers, ["10.1.1.1:53".parse().unwrap()]);
    assert!(ResolvConf::parse_nameservers(" , ").is_err());
}

#[test]
fn hosts_file_parsing_handles_comments_aliases_and_case() {
    let dir = TempDir::new();
    let path = dir.file(
        "hosts",
        "127.0.0.1 localhost\n\
         # 10.0.0.1 commented.test\n\
         10.0.0.2\tWeb.Test web-alias   # trailing comment\n\
         fd00::2 web.test\n\
         fe80::1%eth0 linklocal.test\n\
         not-an-ip bogus.test\n\
         10.0.0.3 web.test\n\
         10.0.0.2 web.test\n",
    );
    let hosts = Hosts::from_file(&path).unwrap();
    assert_eq!(
        hosts.lookup("WEB.test."),
        Some(&ips(&["10.0.0.2", "fd00::2", "10.0.0.3"])[..])
    );
    assert_eq!(hosts.lookup("web-alias"), Some(&ips(&["10.0.0.2"])[..]));
    assert_eq!(hosts.lookup("linklocal.test"), Some(&ips(&["fe80::1"])[..]));
    assert_eq!(hosts.lookup("commented.test"), None);
    assert_eq!(hosts.lookup("bogus.test"), None);
    assert_eq!(hosts.len(), 4);
}

#[test]
fn hosts_entries_answer_before_dns() {
    let server = FakeServer::start(|q| vec![Action::Send(zone(q, &[], 60))]);
    let dir = TempDir::new();
    let path = dir.file("hosts", "10.7.7.7 pinned.test\n");
    let resolver = resolver_for(&[server.addr]).hosts_file(&path).build();
    assert_eq!(resolver.resolve("pinned.test").unwrap(), ips(&["10.7.7.7"]));
    assert_eq!(
        sorted(resolver.resolve("localhost").unwrap()),
        ips(&["127.0.0.1", "::1"]),
        "localhost resolves without a hosts entry (RFC 6761)"
    );
    assert_eq!(server.count(), 0);
}

#[test]
fn invalid_names_fail_with_invalid_input_without_a_query() {
    let server = FakeServer::start(|q| vec![Action::Send(zone(q, &[], 60))]);
    let resolver = resolver_for(&[server.addr]).build();
    let long_label = format!("{}.test", "x".repeat(64));
    for name in [
        "",
        ".",
        "a..b",
        ".lead",
        "has space.test",
        long_label.as_str(),
    ] {
        let err = resolver.resolve(name).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}: {err}");
        assert_eq!(dns_kind(&err), DnsErrorKind::InvalidName, "{name:?}");
    }
    assert_eq!(server.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// dnsmasq

#[test]
fn dnsmasq_answers_a_and_aaaa_in_one_lookup() {
    let Some(dnsmasq) = dnsmasq_standard() else {
        return;
    };
    let resolver = resolver_for(&[dnsmasq.addr]).build();
    assert_eq!(
        sorted(resolver.resolve("alpha.test").unwrap()),
        ips(&["10.0.0.1", "fd00::1"])
    );
    assert_eq!(resolver.resolve("v4only.test").unwrap(), ips(&["10.0.0.2"]));
    assert_eq!(resolver.resolve("v6only.test").unwrap(), ips(&["fd00::3"]));
    let addrs = resolver.lookup("alpha.test", 443).unwrap();
    assert_eq!(addrs.len(), 2);
    assert!(addrs.iter().all(|a| a.port() == 443));
}

#[test]
fn dnsmasq_cname_chain_resolves_to_the_target() {
    let Some(dnsmasq) = dnsmasq_standard() else {
        return;
    };
    let resolver = resolver_for(&[dnsmasq.addr]).build();
    for name in ["www.test", "w2.test", "W2.Test."] {
        assert_eq!(
            sorted(resolver.resolve(name).unwrap()),
            ips(&["10.0.0.1", "fd00::1"]),
            "{name}"
        );
    }
}

#[test]
fn dnsmasq_nxdomain_is_not_found_and_refused_is_temporary() {
    let Some(dnsmasq) = dnsmasq_standard() else {
        return;
    };
    let resolver = resolver_for(&[dnsmasq.addr]).build();
    let err = resolver.resolve("missing.test").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert_eq!(dns_kind(&err), DnsErrorKind::NoSuchName);
    assert_eq!(DnsError::from_io(&err).unwrap().name(), "missing.test");
    // Outside its local domain and without upstream servers, dnsmasq answers REFUSED.
    let err = resolver.resolve("elsewhere.example").unwrap_err();
    assert_eq!(dns_kind(&err), DnsErrorKind::Temporary);
    assert_eq!(err.kind(), io::ErrorKind::Other);
    assert!(err.to_string().contains("Refused"), "{err}");
}

#[test]
fn dnsmasq_serves_thousands_of_names_through_a_pool() {
    const NAMES: usize = 5000;
    let hosts: String = (0..NAMES)
        .map(|i| format!("10.1.{}.{} host{i}.test\n", i / 250, i % 250 + 1))
        .collect();
    let Some(dnsmasq) = dnsmasq(&hosts, &[]) else {
        return;
    };
    let resolver = resolver_for(&[dnsmasq.addr])
        .timeout(Duration::from_secs(2))
        .attempts(3)
        .build();
    let pool = green::Pool::new(200);
    let good = Arc::new(AtomicUsize::new(0));
    let results = pool.map(0..NAMES, {
        let (resolver, good) = (resolver.clone(), good.clone());
        move |i| {
            let want = ip(&format!("10.1.{}.{}", i / 250, i % 250 + 1));
            let got = resolver.resolve(&format!("host{i}.test"));
            if matches!(&got, Ok(v) if *v == [want]) {
                good.fetch_add(1, Ordering::Relaxed);
            }
            got.map_err(|e| e.to_string())
        }
    });
    let failures: Vec<_> = results
        .iter()
        .filter(|r| !matches!(r, Ok(Ok(_))))
        .take(3)
        .collect();
    assert_eq!(
        good.load(Ordering::Relaxed),
        NAMES,
        "failures: {failures:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Search list and ndots

#[test]
fn short_name_tries_the_search_list_before_itself() {
    let server = FakeServer::start(|q| {
        vec![Action::Send(zone(
            q,
            &[("host.corp.test", &["10.0.0.7"])],
            60,
        ))]
    });
    let resolver = resolver_for(&[server.addr])
        .search(["lab.test", "corp.test"])
        .build();
    assert_eq!(resolver.resolve("host").unwrap(), ips(&["10.0.0.7"]));
    assert_eq!(server.names(), ["host.lab.test", "host.corp.test"]);
}

#[test]
fn name_with_ndots_dots_is_tried_as_is_first_and_a_trailing_dot_skips_the_search() {
    let server = FakeServer::start(|q| {
        vec![Action::Send(zone(
            q,
            &[("www.example.lab.test", &["10.0.0.8"])],
            0,
        ))]
    });
    let resolver = resolver_for(&[server.addr])
        .search(["lab.test"])
        .cache_size(0);
    let one = resolver.clone().ndots(1).build();
    assert_eq!(one.resolve("www.example").unwrap(), ips(&["10.0.0.8"]));
    assert_eq!(server.names(), ["www.example", "www.example.lab.test"]);

    server.log.lock().unwrap().clear();
    let two = resolver.clone().ndots(2).build();
    assert_eq!(two.resolve("www.example").unwrap(), ips(&["10.0.0.8"]));
    assert_eq!(server.names(), ["www.example.lab.test"]);

    server.log.lock().unwrap().clear();
    let err = one.resolve("www.example.").unwrap_err();
    assert_eq!(dns_kind(&err), DnsErrorKind::NoSuchName);
    assert_eq!(server.names(), ["www.example"]);
}

// ---------------------------------------------------------------------------------------------
// Cache

#[test]
fn repeated_lookups_are_answered_from_the_cache() {
    let server = FakeServer::start(|q| {
        vec![Action::Send(zone(
            q,
            &[("cached.test", &["10.0.0.9"])],
            300,
        ))]
    });
    let resolver = resolver_for(&[server.addr]).build();
    for _ in 0..3 {
        assert_eq!(resolver.resolve("cached.test").unwrap(), ips(&["10.0.0.9"]));
    }
    // One A and one AAAA (no data, negatively cached through the SOA).
    assert_eq!(server.count(), 2);
    resolver.clear_cache();
    resolver.resolve("cached.test").unwrap();
    assert_eq!(server.count(), 4);
}

#[test]
fn nxdomain_with_soa_is_cached_negatively_and_without_soa_is_not() {
    let server = FakeServer::start(|q| {
        vec![Action::Send(match q.name.as_str() {
            "nosoa.test" => Reply::new(NXDOMAIN),
            _ => Reply::new(NXDOMAIN).soa(60, 30),
        })]
    });
    let resolver = resolver_for(&[server.addr]).build();
    for _ in 0..3 {
        let err = resolver.resolve("gone.test").unwrap_err();
        assert_eq!(dns_kind(&err), DnsErrorKind::NoSuchName);
    }
    assert_eq!(server.count(), 2);
    for _ in 0..2 {
        let err = resolver.resolve("nosoa.test").unwrap_err();
        assert_eq!(dns_kind(&err), DnsErrorKind::NoSuchName);
    }
    assert_eq!(server.count(), 2 + 4);
}

#[test]
fn zero_ttl_answers_are_not_cached() {
    let server = FakeServer::start(|q| {
        vec![Action::Send(match q.qtype {
            A => Reply::new(NOERROR).answer(Rr::A(q.name.clone(), 0, Ipv4Addr::new(10, 0, 0, 10))),
            _ => Reply::new(NOERROR),
        })]
    });
    let resolver = resolver_for(&[server.addr]).build();
    for _ in 0..3 {
        assert_eq!(
            resolver.resolve("fleeting.test").unwrap(),
            ips(&["10.0.0.10"])
        );
    }
    assert_eq!(server.count(), 6);
}

#[test]
fn duration_max_timeout_means_no_deadline() {
    let server =
        FakeServer::start(|q| vec![Action::Send(zone(q, &[("huge.test", &["10.0.0.7"])], 60))]);
    let resolver = resolver_for(&[server.addr]).timeout(Duration::MAX).build();
    assert_eq!(resolver.resolve("huge.test").unwrap(), ips(&["10.0.0.7"]));
}

// ---------------------------------------------------------------------------------------------
// Misbehaving servers

#[test]
fn silent_server_times_out_with_the_timed_out_kind() {
    let server = FakeServer::start(|_| vec![]);
    let resolver = resolver_for(&[server.addr])
        .timeout(Duration::from_millis(200))
        .attempts(2)
        .build();
    let started = Instant::now();
    let err = resolver.resolve("silence.test").unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(dns_kind(&err), DnsErrorKind::TimedOut);
    // A and AAAA, two rounds each.
    assert_eq!(server.count(), 4);
}

/// Replies that must all be dropped: wrong ID, wrong source port, wrong question, not a response,
/// garbage.
fn forgeries(q: &Question) -> Vec<Action> {
    let forged = || match q.qtype {
        A => Reply::new(NOERROR).answer(Rr::A(q.name.clone(), 60, Ipv4Addr::new(6, 6, 6, 6))),
        _ => Reply::new(NOERROR).answer(Rr::Aaaa(q.name.clone(), 60, "fd66::6".parse().unwrap())),
    };
    let mut wrong_id = forged();
    wrong_id.id = Some(q.id.wrapping_add(1));
    let mut wrong_name = forged();
    wrong_name.question = Some(("other.test".into(), q.qtype));
    let mut wrong_type = forged();
    wrong_type.question = Some((q.name.clone(), if q.qtype == A { AAAA } else { A }));
    let mut not_response = forged();
    not_response.response = false;
    vec![
        Action::Send(wrong_id),
        Action::SendFromOtherPort(forged()),
        Action::Send(wrong_name),
        Action::Send(wrong_type),
        Action::Send(not_response),
        Action::Raw(vec![0xde, 0xad]),
        Action::Raw(
            q.id.to_be_bytes()
                .iter()
                .chain(&[0x81, 0x80, 0, 9])
                .copied()
                .collect(),
        ),
    ]
}

#[test]
fn forged_replies_are_dropped_and_the_genuine_one_accepted() {
    let server = FakeServer::start(|q| {
        let mut actions = forgeries(q);
        actions.push(Action::Send(zone(q, &[("real.test", &["10.0.0.11"])], 60)));
        actions
    });
    let resolver = resolver_for(&[server.addr])
        .timeout(Duration::from_secs(2))
        .build();
    assert_eq!(resolver.resolve("real.test").unwrap(), ips(&["10.0.0.11"]));
}

#[test]
fn only_forged_replies_end_in_a_timeout_not_an_answer() {
    let server = FakeServer::start(forgeries);
    let resolver = resolver_for(&[server.addr])
        .timeout(Duration::from_millis(250))
        .build();
    let err = resolver.resolve("victim.test").unwrap_err();
    assert_eq!(dns_kind(&err), DnsErrorKind::TimedOut, "{err}");
}

#[test]
fn truncated_reply_is_retried_over_tcp() {
    let server = FakeServer::start(|q| {
        if q.tcp {
            return vec![Action::Send(zone(q, &[("big.test", &["10.0.0.12"])], 60))];
        }
        let mut truncated = Reply::new(NOERROR);
        truncated.truncated = true;
        vec![Action::Send(truncated)]
    });
    let resolver = resolver_for(&[server.addr]).build();
    assert_eq!(resolver.resolve("big.test").unwrap(), ips(&["10.0.0.12"]));
    let queries = server.queries();
    let over_tcp: HashSet<u16> = queries.iter().filter(|q| q.tcp).map(|q| q.qtype).collect();
    assert_eq!(over_tcp, [A, AAAA].into());
    assert_eq!(queries.iter().filter(|q| !q.tcp).count(), 2);
}

#[test]
fn servfail_moves_on_to_the_next_server() {
    let failing = FakeServer::start(|_| vec![Action::Send(Reply::new(SERVFAIL))]);
    let working =
        FakeServer::start(|q| vec![Action::Send(zone(q, &[("ok.test", &["10.0.0.13"])], 60))]);
    let resolver = resolver_for(&[failing.addr, working.addr]).build();
    assert_eq!(resolver.resolve("ok.test").unwrap(), ips(&["10.0.0.13"]));
    assert_eq!(failing.count(), 2);
    assert_eq!(working.count(), 2);
}

#[test]
fn servfail_everywhere_is_a_temporary_failure() {
    let failing = FakeServer::start(|_| vec![Action::Send(Reply::new(SERVFAIL))]);
    let resolver = resolver_for(&[failing.addr]).attempts(2).build();
    let err = resolver.resolve("broken.test").unwrap_err();
    assert_eq!(dns_kind(&err), DnsErrorKind::Temporary);
    assert!(dns_kind(&err).is_transient());
    assert_eq!(err.kind(), io::ErrorKind::Other);
    assert!(err.to_string().contains("SERVFAIL") || err.to_string().contains("Server Failure"));
    assert_eq!(failing.count(), 4, "two rounds for A and AAAA");
    // SERVFAIL is not cached.
    resolver.resolve("broken.test").unwrap_err();
    assert_eq!(failing.count(), 8);
}

#[test]
fn closed_port_server_is_skipped_without_waiting_for_the_timeout() {
    let working =
        FakeServer::start(|q| vec![Action::Send(zone(q, &[("up.test", &["10.0.0.14"])], 60))]);
    let resolver = resolver_for(&[closed_port(), working.addr])
        .timeout(Duration::from_secs(5))
        .build();
    let started = Instant::now();
    assert_eq!(resolver.resolve("up.test").unwrap(), ips(&["10.0.0.14"]));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn formerr_to_edns0_is_asked_again_without_it() {
    let server = FakeServer::start(|q| {
        if q.opt_payload.is_some() {
            return vec![Action::Send(Reply::new(FORMERR))];
        }
        vec![Action::Send(zone(q, &[("old.test", &["10.0.0.15"])], 60))]
    });
    let resolver = resolver_for(&[server.addr]).build();
    assert_eq!(resolver.resolve("old.test").unwrap(), ips(&["10.0.0.15"]));
    assert_eq!(server.count(), 4);
}

// ---------------------------------------------------------------------------------------------
// The exchange

#[test]
fn rotate_spreads_queries_over_the_servers() {
    let answer = |q: &Question| vec![Action::Send(zone(q, &[("r.test", &["10.0.0.16"])], 0))];
    let (first, second) = (FakeServer::start(answer), FakeServer::start(answer));
    let servers = [first.addr, second.addr];
    let plain = resolver_for(&servers).cache_size(0).build();
    for _ in 0..4 {
        plain.resolve("r.test").unwrap();
    }
    assert_eq!((first.count(), second.count()), (8, 0));
    let rotating = resolver_for(&servers).cache_size(0).rotate(true).build();
    for _ in 0..4 {
        rotating.resolve("r.test").unwrap();
    }
    assert_eq!((first.count(), second.count()), (8 + 4, 4));
}

#[test]
fn a_and_aaaa_queries_are_in_flight_together() {
    let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
    let waited_alone = Arc::new(AtomicBool::new(false));
    let server = {
        let (arrived, waited_alone) = (arrived.clone(), waited_alone.clone());
        FakeServer::start(move |q| {
            let (count, cond) = &*arrived;
            let mut count = count.lock().unwrap();
            *count += 1;
            cond.notify_all();
            let (count, wait) = cond
                .wait_timeout_while(count, Duration::from_secs(2), |c| *c < 2)
                .unwrap();
            if wait.timed_out() {
                waited_alone.store(true, Ordering::Relaxed);
            }
            drop(count);
            vec![Action::Send(zone(
                q,
                &[("both.test", &["10.0.0.17", "fd00::17"])],
                60,
            ))]
        })
    };
    let resolver = resolver_for(&[server.addr])
        .timeout(Duration::from_secs(4))
        .build();
    assert_eq!(
        sorted(resolver.resolve("both.test").unwrap()),
        ips(&["10.0.0.17", "fd00::17"])
    );
    assert!(
        !waited_alone.load(Ordering::Relaxed),
        "the second query was sent only after the first was answered"
    );
}

#[test]
fn queries_carry_edns0_fresh_ids_and_a_fresh_source_port_per_lookup() {
    let server =
        FakeServer::start(|q| vec![Action::Send(zone(q, &[("e.test", &["10.0.0.18"])], 60))]);
    let resolver = resolver_for(&[server.addr]).cache_size(0).build();
    for _ in 0..10 {
        resolver.resolve("e.test").unwrap();
    }
    let queries = server.queries();
    assert_eq!(queries.len(), 20);
    assert!(queries.iter().all(|q| q.opt_payload == Some(1232)));
    let ids: HashSet<u16> = queries.iter().map(|q| q.id).collect();
    assert!(ids.len() >= 15, "ids repeat: {ids:?}");
    // A and AAAA of one lookup share a socket (as glibc's); each lookup gets a new one.
    let mut by_port: HashMap<u16, Vec<u16>> = HashMap::new();
    for q in &queries {
        by_port.entry(q.source.port()).or_default().push(q.qtype);
    }
    assert!(by_port.len() >= 8, "source ports repeat: {by_port:?}");
    assert!(by_port.values().all(|types| types.len() % 2 == 0));
}

#[test]
fn max_in_flight_caps_concurrent_tries_and_queues_the_rest() {
    let outstanding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let server = {
        let (outstanding, most) = (outstanding.clone(), most.clone());
        FakeServer::start(move |q| {
            let now = outstanding.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(30));
            outstanding.fetch_sub(1, Ordering::SeqCst);
            vec![Action::Send(zone(
                q,
                &[(q.name.as_str(), &["10.0.0.23"])],
                60,
            ))]
        })
    };
    let resolver = resolver_for(&[server.addr])
        .timeout(Duration::from_secs(3))
        .max_in_flight(2)
        .build();
    let lookups: Vec<_> = (0..6)
        .map(|i| {
            let r = resolver.clone();
            green::spawn(move || r.resolve(&format!("n{i}.test")))
        })
        .collect();
    green::yield_now();
    // The last one is queued behind the cap: killing it must not lose a slot.
    lookups[5].kill();
    let results = green::joinall(lookups);
    assert!(results[5].as_ref().unwrap_err().is_killed());
    for result in &results[..5] {
        assert_eq!(
            *result.as_ref().unwrap().as_ref().unwrap(),
            ips(&["10.0.0.23"])
        );
    }
    // Two tries at a time, each with its A and AAAA query.
    assert!(
        most.load(Ordering::SeqCst) <= 4,
        "{}",
        most.load(Ordering::SeqCst)
    );
    assert_eq!(server.count(), 10);
    // The slots all came back: a new lookup goes straight through.
    assert_eq!(resolver.resolve("late.test").unwrap(), ips(&["10.0.0.23"]));
}

#[test]
fn cname_leaving_the_answer_is_followed_with_a_new_query() {
    let server = FakeServer::start(|q| {
        vec![Action::Send(match q.name.as_str() {
            "alias.test" => {
                Reply::new(NOERROR).answer(Rr::Cname(q.name.clone(), 60, "target.test".into()))
            }
            _ => zone(q, &[("target.test", &["10.0.0.19"])], 60),
        })]
    });
    let resolver = resolver_for(&[server.addr]).build();
    assert_eq!(resolver.resolve("alias.test").unwrap(), ips(&["10.0.0.19"]));
    assert_eq!(server.names(), ["alias.test", "target.test"]);
}

#[test]
fn with_timeout_and_kill_abort_a_lookup_in_progress() {
    let server = FakeServer::start(|_| vec![]);
    let resolver = resolver_for(&[server.addr])
        .timeout(Duration::from_secs(10))
        .build();
    let started = Instant::now();
    let r = resolver.clone();
    let outcome = green::with_timeout(Duration::from_millis(100), move || r.resolve("slow.test"));
    assert!(outcome.is_err());
    let r = resolver.clone();
    let lookup = green::spawn(move || r.resolve("slow.test"));
    green::sleep(Duration::from_millis(50));
    lookup.kill();
    assert!(lookup.join().unwrap_err().is_killed());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Under failure, at 1 and at 1,000 lookups at once

/// A DNS server on loopback for many lookups at once: one thread reads every UDP query and sends
/// the reply its script gives after the delay the script gives (`None`: no reply), so a thousand
/// lookups need no thread each (as `FakeServer`'s would).
struct ScriptedServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Question>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A reply due at a time: (when, a sequence number, to whom, the bytes).
type Due = Reverse<(Instant, u64, SocketAddr, Vec<u8>)>;

impl ScriptedServer {
    fn start(
        script: impl Fn(&Question) -> Option<(Duration, Reply)> + Send + 'static,
    ) -> ScriptedServer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            thread::spawn(move || {
                let mut later: BinaryHeap<Due> = BinaryHeap::new();
                let mut sequence = 0;
                let mut buf = vec![0; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    while later.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
                        let Reverse((_, _, to, bytes)) = later.pop().unwrap();
                        let _ = socket.send_to(&bytes, to);
                    }
                    let wait = later
                        .peek()
                        .map_or(Duration::from_millis(20), |Reverse(due)| {
                            due.0.saturating_duration_since(now)
                        });
                    socket
                        .set_read_timeout(Some(
                            wait.clamp(Duration::from_millis(1), Duration::from_millis(20)),
                        ))
                        .unwrap();
                    let Ok((len, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some(q) = parse_query(&buf[..len], from, false) else {
                        continue;
                    };
                    log.lock().unwrap().push(q.clone());
                    let Some((delay, reply)) = script(&q) else {
                        continue;
                    };
                    if delay.is_zero() {
                        let _ = socket.send_to(&reply.encode(&q), from);
                    } else {
                        sequence += 1;
                        later.push(Reverse((
                            Instant::now() + delay,
                            sequence,
                            from,
                            reply.encode(&q),
                        )));
                    }
                }
            })
        };
        ScriptedServer {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// A server that reads every query and answers none.
    fn silent() -> ScriptedServer {
        ScriptedServer::start(|_| None)
    }

    fn queries(&self) -> Vec<Question> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The wait for one server's reply in the failure tests: short, but long enough that a thousand
/// lookups in a debug build on a loaded machine are timed by it, not by the CPU.
const TRY: Duration = Duration::from_millis(500);

/// The lookups at once each failure test runs with.
const CONCURRENCY: [usize; 2] = [1, 1000];

/// A resolver asking `servers`, `timeout` per try, two rounds: each lookup is bounded by
/// 2 × servers × `timeout`.
fn failing_resolver(servers: &[SocketAddr], timeout: Duration) -> NativeResolver {
    resolver_for(servers).timeout(timeout).attempts(2).build()
}

/// Resolves `name(i)` for each `i` below `n`, all at once (a greenlet each): each lookup's
/// outcome and how long it took.
fn resolve_at_once(
    resolver: &NativeResolver,
    n: usize,
    name: impl Fn(usize) -> String,
) -> Vec<(io::Result<Vec<IpAddr>>, Duration)> {
    let lookups: Vec<_> = (0..n)
        .map(|i| {
            let (resolver, name) = (resolver.clone(), name(i));
            green::spawn(move || {
                let started = Instant::now();
                let outcome = resolver.resolve(&name);
                (outcome, started.elapsed())
            })
        })
        .collect();
    green::joinall(lookups)
        .into_iter()
        .map(|joined| joined.expect("a lookup greenlet died"))
        .collect()
}

fn slowest(outcomes: &[(io::Result<Vec<IpAddr>>, Duration)]) -> Duration {
    outcomes.iter().map(|(_, took)| *took).max().unwrap()
}

fn fastest(outcomes: &[(io::Result<Vec<IpAddr>>, Duration)]) -> Duration {
    outcomes.iter().map(|(_, took)| *took).min().unwrap()
}

#[test]
fn silent_first_server_fails_over_after_one_timeout_at_any_concurrency() {
    // After the first server's timeout, a thousand lookups must all get through the second
    // server within one try: a second is ample even for a debug build on a loaded machine.
    let timeout = Duration::from_secs(1);
    for n in CONCURRENCY {
        let silent = ScriptedServer::silent();
        let working = ScriptedServer::start(|q| {
            Some((
                Duration::ZERO,
                zone(q, &[(q.name.as_str(), &["10.0.0.40"])], 60),
            ))
        });
        let resolver = failing_resolver(&[silent.addr, working.addr], timeout);
        let outcomes = resolve_at_once(&resolver, n, |i| format!("n{i}.test"));
        for (outcome, _) in &outcomes {
            assert_eq!(*outcome.as_ref().unwrap(), ips(&["10.0.0.40"]), "n = {n}");
        }
        // The first server's timeout, then a prompt answer from the second.
        assert!(
            fastest(&outcomes) < 2 * timeout,
            "n = {n}: {:?}",
            fastest(&outcomes)
        );
        // Within the budget of two rounds over two servers.
        assert!(
            slowest(&outcomes) < 4 * timeout,
            "n = {n}: {:?}",
            slowest(&outcomes)
        );
    }
}

#[test]
fn every_server_silent_times_out_within_attempts_times_servers_times_timeout() {
    let timeout = Duration::from_millis(300);
    let budget = 2 * 2 * timeout;
    for n in CONCURRENCY {
        let (first, second) = (ScriptedServer::silent(), ScriptedServer::silent());
        let resolver = failing_resolver(&[first.addr, second.addr], timeout);
        let outcomes = resolve_at_once(&resolver, n, |i| format!("n{i}.test"));
        for (outcome, _) in &outcomes {
            let err = outcome.as_ref().unwrap_err();
            assert_eq!(dns_kind(err), DnsErrorKind::TimedOut, "n = {n}: {err}");
        }
        assert!(
            slowest(&outcomes) < budget * 3 / 2,
            "n = {n}: {:?}",
            slowest(&outcomes)
        );
        if n == 1 {
            // All four tries were made, each waited out.
            assert!(fastest(&outcomes) >= budget - timeout / 2, "{outcomes:?}");
            assert_eq!((first.count(), second.count()), (4, 4));
        }
    }
}

#[test]
fn nxdomain_carrying_addresses_is_no_such_name_and_cached_as_such() {
    for n in CONCURRENCY {
        let server = ScriptedServer::start(|q| {
            let reply = Reply::new(NXDOMAIN)
                .answer(Rr::A(q.name.clone(), 60, Ipv4Addr::new(10, 0, 0, 41)))
                .answer(Rr::Aaaa(q.name.clone(), 60, "fd00::41".parse().unwrap()))
                .soa(60, 60);
            Some((Duration::ZERO, reply))
        });
        let resolver = failing_resolver(&[server.addr], Duration::from_secs(5));
        for round in ["asked", "cached"] {
            let outcomes = resolve_at_once(&resolver, n, |i| format!("gone{i}.test"));
            for (outcome, _) in &outcomes {
                let err = outcome.as_ref().unwrap_err();
                assert_eq!(dns_kind(err), DnsErrorKind::NoSuchName, "{round}, n = {n}");
            }
            // The second round is answered from the negative cache.
            assert_eq!(server.count(), 2 * n, "{round}, n = {n}");
        }
    }
}

#[test]
fn oversized_udp_reply_without_tc_is_read_whole_at_once() {
    // Generous: a thousand 600-address replies take seconds to encode and parse in a debug build
    // on a loaded machine; a reply cut short would cost the whole of it and fail the lookup.
    let timeout = Duration::from_secs(10);
    let many: Vec<Ipv4Addr> = (0..600u32)
        .map(|i| Ipv4Addr::from(0x0a01_0000 + i))
        .collect();
    for n in CONCURRENCY {
        let server = {
            let many = many.clone();
            // No TCP listener: the whole answer has to come over UDP.
            ScriptedServer::start(move |q| {
                let mut reply = Reply::new(NOERROR);
                reply.compressed = true;
                if q.qtype == A {
                    for &ip in &many {
                        reply = reply.answer(Rr::A(q.name.clone(), 60, ip));
                    }
                } else {
                    reply = reply.soa(60, 60);
                }
                Some((Duration::ZERO, reply))
            })
        };
        let resolver = resolver_for(&[server.addr])
            .timeout(timeout)
            .attempts(1)
            .build();
        let outcomes = resolve_at_once(&resolver, n, |i| format!("big{i}.test"));
        let expected: Vec<IpAddr> = many.iter().map(|&ip| IpAddr::V4(ip)).collect();
        for (outcome, _) in &outcomes {
            assert_eq!(*outcome.as_ref().unwrap(), expected, "n = {n}");
        }
        // Each in its only try: none waited out the timeout.
        assert_eq!(server.count(), 2 * n);
        if n == 1 {
            assert!(slowest(&outcomes) < timeout / 10, "{outcomes:?}");
        }
    }
}

#[test]
fn cname_into_a_silent_zone_ends_within_the_lookup_budget() {
    let budget = 2 * TRY;
    for n in CONCURRENCY {
        let server = ScriptedServer::start(|q| {
            if q.name.ends_with(".silent.test") {
                return None;
            }
            let target = format!("{}.silent.test", q.name.trim_end_matches(".test"));
            Some((
                Duration::ZERO,
                Reply::new(NOERROR).answer(Rr::Cname(q.name.clone(), 60, target)),
            ))
        });
        let resolver = failing_resolver(&[server.addr], TRY);
        let outcomes = resolve_at_once(&resolver, n, |i| format!("alias{i}.test"));
        for (outcome, _) in &outcomes {
            let err = outcome.as_ref().unwrap_err();
            assert_eq!(dns_kind(err), DnsErrorKind::TimedOut, "n = {n}: {err}");
        }
        assert!(
            slowest(&outcomes) < budget + TRY,
            "n = {n}: {:?}",
            slowest(&outcomes)
        );
    }
}

#[test]
fn huge_timeout_saturates_instead_of_overflowing_the_deadline() {
    let server = ScriptedServer::start(|q| {
        Some((Duration::ZERO, zone(q, &[("far.test", &["10.0.0.43"])], 60)))
    });
    let silent = ScriptedServer::silent();
    let resolver = resolver_for(&[silent.addr, server.addr])
        .timeout(Duration::MAX)
        .attempts(5)
        .max_in_flight(1)
        .build();
    // Busy the only slot with a lookup waiting on the silent server, so the next one queues for
    // it with a deadline as far away as an `Instant` goes.
    let r = resolver.clone();
    let waiting = green::spawn(move || r.resolve("far.test"));
    green::yield_now();
    let r = resolver.clone();
    let outcome = green::with_timeout(Duration::from_millis(100), move || r.resolve("x.test"));
    assert!(outcome.is_err(), "{outcome:?}");
    waiting.kill();
    // A lookup answered at once is unaffected.
    let answering = resolver_for(&[server.addr])
        .timeout(Duration::MAX)
        .attempts(5)
        .build();
    assert_eq!(answering.resolve("far.test").unwrap(), ips(&["10.0.0.43"]));
}

/// A server whose `hop{k}.{lookup}.test` is a CNAME to `hop{k+1}.{lookup}.test` up to
/// `hop{hops}`, which has an address; each reply `delay` late.
fn cname_chain_server(hops: usize, delay: Duration) -> ScriptedServer {
    ScriptedServer::start(move |q| {
        let (hop, rest) = q.name.strip_prefix("hop")?.split_once('.')?;
        let hop: usize = hop.parse().ok()?;
        let reply = if hop < hops {
            let next = format!("hop{}.{rest}", hop + 1);
            Reply::new(NOERROR).answer(Rr::Cname(q.name.clone(), 60, next))
        } else {
            zone(q, &[(q.name.as_str(), &["10.0.0.42", "fd00::42"])], 60)
        };
        Some((delay, reply))
    })
}

#[test]
fn cname_chain_of_slow_hops_ends_within_the_lookup_budget() {
    let budget = 2 * TRY;
    for n in CONCURRENCY {
        // Every hop answers within a try's timeout, but seven of them take longer than the budget.
        let server = cname_chain_server(7, TRY * 9 / 10);
        let resolver = failing_resolver(&[server.addr], TRY);
        let outcomes = resolve_at_once(&resolver, n, |i| format!("hop0.l{i}.test"));
        for (outcome, _) in &outcomes {
            let err = outcome.as_ref().unwrap_err();
            assert_eq!(dns_kind(err), DnsErrorKind::TimedOut, "n = {n}: {err}");
        }
        assert!(
            slowest(&outcomes) < budget + TRY,
            "n = {n}: {:?}",
            slowest(&outcomes)
        );
    }
}

#[test]
fn cname_requeries_for_a_and_aaaa_go_out_together() {
    for n in CONCURRENCY {
        let server = cname_chain_server(3, Duration::ZERO);
        // Generous: four exchanges for each of a thousand lookups take a while in a debug build.
        let resolver = resolver_for(&[server.addr])
            .timeout(Duration::from_secs(5))
            .build();
        let outcomes = resolve_at_once(&resolver, n, |i| format!("hop0.l{i}.test"));
        for (outcome, _) in &outcomes {
            assert_eq!(
                sorted(outcome.as_ref().unwrap().clone()),
                ips(&["10.0.0.42", "fd00::42"]),
                "n = {n}"
            );
        }
        // Each name of each chain was asked A and AAAA in one try: from one socket.
        let mut types_by_try: HashMap<(String, u16), Vec<u16>> = HashMap::new();
        for q in server.queries() {
            types_by_try
                .entry((q.name, q.source.port()))
                .or_default()
                .push(q.qtype);
        }
        assert_eq!(types_by_try.len(), 4 * n, "n = {n}");
        assert!(
            types_by_try
                .values()
                .all(|types| sorted_types(types) == [A, AAAA]),
            "n = {n}: {types_by_try:?}"
        );
    }
}

fn sorted_types(types: &[u16]) -> Vec<u16> {
    let mut types = types.to_vec();
    types.sort_unstable();
    types
}

// ---------------------------------------------------------------------------------------------
// Resolver selection

#[test]
fn thread_resolver_resolves_localhost_through_getaddrinfo() {
    let resolver = ThreadResolver::new();
    assert!(resolver
        .resolve("localhost")
        .unwrap()
        .contains(&ip("127.0.0.1")));
    assert_eq!(resolver.resolve("192.0.2.5").unwrap(), ips(&["192.0.2.5"]));
    let addrs = resolver.lookup("localhost", 8080).unwrap();
    assert!(addrs.iter().all(|a| a.port() == 8080));
}

#[test]
fn green_resolver_thread_selects_getaddrinfo() {
    if !in_child() {
        return run_child(
            "green_resolver_thread_selects_getaddrinfo",
            &[("GREEN_RESOLVER", "thread".into())],
        );
    }
    assert!(format!("{:?}", dns::resolver()).contains("ThreadResolver"));
    assert!(dns::resolve("localhost")
        .unwrap()
        .contains(&ip("127.0.0.1")));
    let listener = green::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = green::spawn(move || listener.accept().map(|_| ()));
    green::net::TcpStream::connect(format!("localhost:{port}")).unwrap();
    accept.join().unwrap().unwrap();
}

#[test]
fn environment_paths_and_servers_configure_the_default_resolver() {
    if !in_child() {
        let server = FakeServer::start(|q| {
            vec![Action::Send(zone(
                q,
                &[("host.corp.test", &["10.0.0.20"])],
                60,
            ))]
        });
        let dir = TempDir::new();
        let conf = dir.file("resolv.conf", "nameserver 192.0.2.1\nsearch corp.test\n");
        let hosts = dir.file("hosts", "10.9.9.9 fromfile.test\n");
        run_child(
            "environment_paths_and_servers_configure_the_default_resolver",
            &[
                ("GREEN_RESOLV_CONF", conf.display().to_string()),
                ("GREEN_HOSTS", hosts.display().to_string()),
                ("GREEN_NAMESERVERS", server.addr.to_string()),
                ("RES_OPTIONS", "timeout:1 attempts:1".into()),
            ],
        );
        assert_eq!(server.names(), ["host.corp.test"]);
        return;
    }
    assert!(format!("{:?}", dns::resolver()).contains("NativeResolver"));
    assert_eq!(dns::resolve("fromfile.test").unwrap(), ips(&["10.9.9.9"]));
    assert_eq!(dns::resolve("host").unwrap(), ips(&["10.0.0.20"]));
}

#[derive(Debug)]
struct TableResolver {
    calls: Arc<AtomicUsize>,
}

impl Resolver for TableResolver {
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match host {
            "custom.test" => Ok(ips(&["127.0.0.1"])),
            _ => Err(DnsError::new(DnsErrorKind::NoSuchName, host, "not in the table").into()),
        }
    }
}

#[test]
fn set_resolver_plugs_a_custom_resolver_into_lookup_and_connect() {
    let calls = Arc::new(AtomicUsize::new(0));
    dns::set_resolver(TableResolver {
        calls: calls.clone(),
    });
    let listener = green::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = green::spawn(move || listener.accept().map(|(_, peer)| peer));
    let stream = green::net::TcpStream::connect(format!("custom.test:{port}")).unwrap();
    assert_eq!(
        accept.join().unwrap().unwrap(),
        stream.local_addr().unwrap()
    );
    assert_eq!(dns::resolve("custom.test").unwrap(), ips(&["127.0.0.1"]));
    let err = dns::lookup("other.test", 80).unwrap_err();
    assert_eq!(dns_kind(&err), DnsErrorKind::NoSuchName);
    assert_eq!(dns::resolve("192.0.2.7").unwrap(), ips(&["192.0.2.7"]));
    assert_eq!(
        calls.load(Ordering::Relaxed),
        3,
        "IP literals skip the resolver"
    );
}

#[test]
fn hosts_file_in_the_system_path_is_reread_after_it_changes() {
    let dir = TempDir::new();
    let path = dir.file("hosts", "10.0.0.21 moving.test\n");
    let resolver = resolver_for(&[closed_port()]).hosts_file(&path).build();
    assert_eq!(
        resolver.resolve("moving.test").unwrap(),
        ips(&["10.0.0.21"])
    );
    // The modification time must differ: some filesystems keep whole seconds.
    thread::sleep(Duration::from_millis(1100));
    fs::write(&path, "10.0.0.22 moving.test\n").unwrap();
    assert_eq!(
        resolver.resolve("moving.test").unwrap(),
        ips(&["10.0.0.22"])
    );
}
