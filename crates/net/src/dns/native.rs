//! The stub resolver: hosts file, search list, and the query exchange over green UDP and TCP.
//!
//! Written here rather than taken from hickory-resolver because that one is built on tokio; only
//! hickory-proto's message codec is used. The exchange follows glibc's resolver where users can
//! see it (search order, `ndots`, rounds of `attempts` over the servers, `rotate`) and the
//! anti-spoofing rules of RFC 5452: a random ID per query, a fresh socket (random kernel port)
//! per try (shared by the A and AAAA queries of a lookup, as glibc does), and a reply counts only
//! if its source, ID and question all match; anything else is dropped and the wait goes on until
//! the try's deadline.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::cache::{Cache, Cached};
use super::config::ResolvConf;
use super::hosts::{Hosts, HostsSource};
use super::limit;
use super::message::{build_query, is_reply_to, random_u16, read_answer};
use super::{DnsError, DnsErrorKind, Resolver};
use crate::{TcpStream, UdpSocket};

/// Default number of (name, type) answers kept in the cache.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;

/// Default cap on the tries (one socket each) in flight per thread.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Bytes received per UDP reply: more than the EDNS0 payload advertised.
const RECV_BUFFER: usize = 4096;

/// How many times a CNAME chain leading out of an answer is followed with a new query.
const MAX_REQUERIES: usize = 8;

/// The native stub resolver: `/etc/hosts`, then DNS over green UDP (TCP for truncated replies).
///
/// ```no_run
/// use std::time::Duration;
/// use green_net::dns::{NativeResolver, Resolver};
///
/// let resolver = NativeResolver::builder()
///     .nameservers(["127.0.0.1:5353".parse().unwrap()])
///     .timeout(Duration::from_millis(500))
///     .build();
/// let ips = resolver.resolve("example.test").unwrap();
/// green_net::dns::set_resolver(resolver); // or make it the process's resolver
/// # drop(ips);
/// ```
///
/// A cheap handle: clones share configuration and cache. `Send + Sync`: a lookup runs on the
/// calling thread's hub, whichever thread that is.
///
/// # Resolution
///
/// 1. An IP literal is its own answer; a name in the hosts table gets the table's addresses;
///    `localhost` and `*.localhost` not in the table get 127.0.0.1 and ::1 (RFC 6761).
/// 2. The candidate names: the name itself, and the name with each search domain appended. The
///    name itself goes first if it has at least `ndots` dots, last otherwise; a name ending in
///    `.` is only tried as is.
/// 3. For each candidate, A and AAAA are asked in parallel, on one socket (as glibc does). The
///    first candidate with an address wins. NXDOMAIN or no data moves on to the
///    next candidate; so does a server failure, remembered for the final error; a timeout ends
///    the search at once.
/// 4. Each question asks the servers in order (from the next one each time with `rotate`), for
///    `attempts` rounds, waiting `timeout` for each. SERVFAIL, REFUSED and other errors move on
///    to the next server; NOERROR and NXDOMAIN are final. A truncated reply is asked again
///    over TCP; FORMERR to an EDNS0 query is asked again without EDNS0. At most
///    [`max_in_flight`](NativeResolverBuilder::max_in_flight) tries are in flight per thread;
///    further lookups queue for a slot (so a burst does not overflow the server's buffer).
/// 5. CNAME chains are followed inside an answer, and with a new query when the chain leaves it.
///    Answers are cached for their smallest TTL, negative ones for the SOA's negative TTL.
#[derive(Clone)]
pub struct NativeResolver {
    inner: Arc<Inner>,
}

struct Inner {
    conf: ResolvConf,
    hosts: HostsSource,
    cache: Mutex<Cache>,
    next_server: AtomicUsize,
    max_in_flight: usize,
}

impl fmt::Debug for NativeResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeResolver")
            .field("conf", &self.inner.conf)
            .field("hosts", &self.inner.hosts)
            .finish_non_exhaustive()
    }
}

/// Where a builder takes the hosts table from.
#[derive(Debug, Clone)]
enum HostsChoice {
    System,
    File(PathBuf),
    Fixed(Hosts),
    None,
}

/// Builds a [`NativeResolver`], starting from the system's configuration
/// ([`ResolvConf::from_system`], hosts from `GREEN_HOSTS` or `/etc/hosts`).
#[derive(Debug, Clone)]
pub struct NativeResolverBuilder {
    conf: ResolvConf,
    hosts: HostsChoice,
    cache_size: usize,
    max_in_flight: usize,
}

impl Default for NativeResolverBuilder {
    fn default() -> NativeResolverBuilder {
        NativeResolverBuilder::new()
    }
}

impl NativeResolverBuilder {
    /// A builder holding the system's configuration.
    pub fn new() -> NativeResolverBuilder {
        NativeResolverBuilder {
            conf: ResolvConf::from_system(),
            hosts: HostsChoice::System,
            cache_size: DEFAULT_CACHE_SIZE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, conf: ResolvConf) -> NativeResolverBuilder {
        self.conf = conf;
        self
    }

    /// The servers to ask, in order (any port).
    pub fn nameservers(
        mut self,
        servers: impl IntoIterator<Item = SocketAddr>,
    ) -> NativeResolverBuilder {
        self.conf.nameservers = servers.into_iter().collect();
        self
    }

    /// The search list (domains appended to short names).
    pub fn search<S: Into<String>>(
        mut self,
        domains: impl IntoIterator<Item = S>,
    ) -> NativeResolverBuilder {
        self.conf.search = domains
            .into_iter()
            .map(|d| d.into().trim_end_matches('.').to_string())
            .filter(|d| !d.is_empty())
            .collect();
        self
    }

    /// Names with at least `ndots` dots are tried as is before the search list.
    pub fn ndots(mut self, ndots: u32) -> NativeResolverBuilder {
        self.conf.ndots = ndots;
        self
    }

    /// How long to wait for each server's reply (at least 1 ms).
    pub fn timeout(mut self, timeout: Duration) -> NativeResolverBuilder {
        self.conf.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Rounds over the server list (at least 1).
    pub fn attempts(mut self, attempts: u32) -> NativeResolverBuilder {
        self.conf.attempts = attempts.max(1);
        self
    }

    /// Whether each query starts at the next server.
    pub fn rotate(mut self, rotate: bool) -> NativeResolverBuilder {
        self.conf.rotate = rotate;
        self
    }

    /// Uses this hosts table instead of a file.
    pub fn hosts(mut self, hosts: Hosts) -> NativeResolverBuilder {
        self.hosts = HostsChoice::Fixed(hosts);
        self
    }

    /// Reads the hosts table from `path` (re-read when it changes).
    pub fn hosts_file(mut self, path: impl Into<PathBuf>) -> NativeResolverBuilder {
        self.hosts = HostsChoice::File(path.into());
        self
    }

    /// Uses no hosts table: every name goes to DNS.
    pub fn no_hosts(mut self) -> NativeResolverBuilder {
        self.hosts = HostsChoice::None;
        self
    }

    /// How many (name, type) answers the cache keeps; 0 turns caching off.
    pub fn cache_size(mut self, entries: usize) -> NativeResolverBuilder {
        self.cache_size = entries;
        self
    }

    /// At most this many tries (each a socket with the A and AAAA queries of one lookup) are in
    /// flight at once per thread; further lookups wait their turn (default
    /// [`DEFAULT_MAX_IN_FLIGHT`], at least 1). Bursts beyond a server's receive buffer are
    /// dropped and cost a whole `timeout` each.
    pub fn max_in_flight(mut self, tries: usize) -> NativeResolverBuilder {
        self.max_in_flight = tries.max(1);
        self
    }

    /// The resolver.
    pub fn build(self) -> NativeResolver {
        let hosts = match self.hosts {
            HostsChoice::System => HostsSource::system(),
            HostsChoice::File(path) => HostsSource::file(path),
            HostsChoice::Fixed(hosts) => HostsSource::Fixed(Arc::new(hosts)),
            HostsChoice::None => HostsSource::None,
        };
        NativeResolver {
            inner: Arc::new(Inner {
                conf: self.conf,
                hosts,
                cache: Mutex::new(Cache::new(self.cache_size)),
                next_server: AtomicUsize::new(0),
                max_in_flight: self.max_in_flight,
            }),
        }
    }
}

impl NativeResolver {
    /// A builder starting from the system's configuration.
    pub fn builder() -> NativeResolverBuilder {
        NativeResolverBuilder::new()
    }

    /// The resolver the system's configuration describes (resolv.conf, hosts, environment).
    pub fn from_system() -> NativeResolver {
        NativeResolverBuilder::new().build()
    }

    /// The configuration in use.
    pub fn config(&self) -> &ResolvConf {
        &self.inner.conf
    }

    /// Empties the cache.
    pub fn clear_cache(&self) {
        self.inner.cache().clear();
    }

    /// How many (name, type) answers are cached (expired ones included until evicted).
    pub fn cache_len(&self) -> usize {
        self.inner.cache().len()
    }
}

impl Resolver for NativeResolver {
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        resolve(&self.inner, host).map_err(io::Error::from)
    }
}

/// Why one question got no address.
#[derive(Debug)]
enum Failure {
    NoSuchName(String),
    NoData(String),
    Temporary(String),
    TimedOut(String),
}

impl Failure {
    /// Which of two failures of the same name to report: NXDOMAIN applies to the whole name,
    /// then a server failure, then a timeout, then "no data" (the other type might have had it).
    fn rank(&self) -> u8 {
        match self {
            Failure::NoSuchName(_) => 3,
            Failure::Temporary(_) => 2,
            Failure::TimedOut(_) => 1,
            Failure::NoData(_) => 0,
        }
    }
}

/// Across search candidates a server failure outranks any "not found": the name we were after
/// might be the one that failed.
fn search_rank(failure: &Failure) -> u8 {
    match failure {
        Failure::Temporary(_) => 4,
        other => other.rank(),
    }
}

fn is_localhost(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "localhost" || lower.ends_with(".localhost")
}

fn parse_name(candidate: &str) -> Result<Name, String> {
    if candidate.is_ascii() {
        if candidate.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err("contains spaces or control characters".into());
        }
        Name::from_ascii(candidate)
    } else {
        Name::from_utf8(candidate)
    }
    .map_err(|e| e.to_string())
}

fn resolve(inner: &Inner, host: &str) -> Result<Vec<IpAddr>, DnsError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let bare = host.strip_suffix('.').unwrap_or(host);
    if bare.is_empty() || bare.starts_with('.') || bare.contains("..") {
        return Err(DnsError::new(
            DnsErrorKind::InvalidName,
            host,
            "empty label",
        ));
    }
    if let Some(hosts) = inner.hosts.hosts() {
        if let Some(ips) = hosts.lookup(bare).filter(|ips| !ips.is_empty()) {
            return Ok(ips.to_vec());
        }
    }
    if is_localhost(bare) {
        return Ok(vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]);
    }
    let mut worst: Option<Failure> = None;
    for candidate in inner.candidates(host) {
        let name = parse_name(&candidate)
            .map_err(|e| DnsError::new(DnsErrorKind::InvalidName, host, e))?;
        let failure = match query_both(inner, &name) {
            Ok(ips) => return Ok(ips),
            Err(Failure::TimedOut(detail)) => {
                return Err(DnsError::new(DnsErrorKind::TimedOut, host, detail));
            }
            Err(failure) => failure,
        };
        let keep = matches!(&worst, Some(w) if search_rank(w) >= search_rank(&failure));
        if !keep {
            worst = Some(failure);
        }
    }
    Err(match worst {
        Some(Failure::NoSuchName(d)) => DnsError::new(DnsErrorKind::NoSuchName, host, d),
        Some(Failure::NoData(d)) => DnsError::new(DnsErrorKind::NoData, host, d),
        Some(Failure::Temporary(d)) => DnsError::new(DnsErrorKind::Temporary, host, d),
        Some(Failure::TimedOut(d)) => DnsError::new(DnsErrorKind::TimedOut, host, d),
        None => DnsError::new(DnsErrorKind::InvalidName, host, "no name to query"),
    })
}

/// The two questions of a lookup, in the order their addresses are returned.
const TYPES: [RecordType; 2] = [RecordType::AAAA, RecordType::A];

/// Asks A and AAAA for `name` at once (those not cached), both on one socket per try.
fn query_both(inner: &Inner, name: &Name) -> Result<Vec<IpAddr>, Failure> {
    let key = name.to_ascii();
    let mut results: Vec<Option<Result<Vec<IpAddr>, Failure>>> = TYPES
        .iter()
        .map(|&rtype| {
            inner
                .cache()
                .get(&key, rtype)
                .map(|hit| from_cache(hit, &key, rtype))
        })
        .collect();
    let pending: Vec<RecordType> = TYPES
        .iter()
        .zip(&results)
        .filter(|(_, result)| result.is_none())
        .map(|(&rtype, _)| rtype)
        .collect();
    if !pending.is_empty() {
        let replies = exchange(inner, name, &pending);
        for (rtype, reply) in pending.into_iter().zip(replies) {
            let slot = TYPES
                .iter()
                .position(|&t| t == rtype)
                .expect("a known type");
            results[slot] = Some(
                reply.and_then(|(msg, server)| read_addresses(inner, name, rtype, msg, server)),
            );
        }
    }
    let mut addrs = Vec::new();
    let mut failure: Option<Failure> = None;
    for result in results.into_iter().flatten() {
        match result {
            Ok(ips) => addrs.extend(ips),
            Err(f) => {
                if !matches!(&failure, Some(current) if current.rank() >= f.rank()) {
                    failure = Some(f);
                }
            }
        }
    }
    match failure {
        Some(failure) if addrs.is_empty() => Err(failure),
        _ => Ok(addrs),
    }
}

fn from_cache(hit: Cached, key: &str, rtype: RecordType) -> Result<Vec<IpAddr>, Failure> {
    match hit {
        Cached::Addrs(ips) => Ok(ips),
        Cached::NoSuchName => Err(Failure::NoSuchName(format!("NXDOMAIN for {key} (cached)"))),
        Cached::NoData => Err(Failure::NoData(format!("no {rtype} for {key} (cached)"))),
    }
}

/// The addresses of type `rtype` that `msg` (a NOERROR or NXDOMAIN reply for `name`) gives,
/// cached; a CNAME chain leaving the answer is followed with new queries (RFC 1034 §5.3.3).
fn read_addresses(
    inner: &Inner,
    name: &Name,
    rtype: RecordType,
    mut msg: Message,
    mut server: SocketAddr,
) -> Result<Vec<IpAddr>, Failure> {
    let key = name.to_ascii();
    let mut current = name.clone();
    let mut chain_ttl = u32::MAX;
    for _ in 0..MAX_REQUERIES {
        let answer = read_answer(&msg, &current, rtype);
        let ttl = chain_ttl.min(answer.ttl);
        if !answer.addrs.is_empty() {
            inner
                .cache()
                .insert(&key, rtype, Cached::Addrs(answer.addrs.clone()), ttl);
            return Ok(answer.addrs);
        }
        if msg.response_code == ResponseCode::NXDomain {
            if let Some(negative) = answer.negative_ttl {
                inner
                    .cache()
                    .insert(&key, rtype, Cached::NoSuchName, negative.min(ttl));
            }
            return Err(Failure::NoSuchName(format!(
                "NXDOMAIN for {} from {server}",
                answer.canonical
            )));
        }
        if answer.canonical == current || answer.negative_ttl.is_some() {
            if let Some(negative) = answer.negative_ttl {
                inner
                    .cache()
                    .insert(&key, rtype, Cached::NoData, negative.min(ttl));
            }
            return Err(Failure::NoData(format!(
                "no {rtype} record for {} from {server}",
                answer.canonical
            )));
        }
        chain_ttl = ttl;
        current = answer.canonical;
        (msg, server) = exchange(inner, &current, &[rtype])
            .pop()
            .expect("one reply per question")?;
    }
    Err(Failure::Temporary(format!(
        "CNAME chain from {name} longer than {MAX_REQUERIES} queries"
    )))
}

/// Asks `types` for `name` of the servers until each has a final answer (NOERROR or NXDOMAIN):
/// one result per type, in order.
fn exchange(
    inner: &Inner,
    name: &Name,
    types: &[RecordType],
) -> Vec<Result<(Message, SocketAddr), Failure>> {
    let conf = &inner.conf;
    let servers = &conf.nameservers;
    if servers.is_empty() {
        return types
            .iter()
            .map(|_| Err(Failure::Temporary("no name servers configured".into())))
            .collect();
    }
    let start = if conf.rotate {
        inner.next_server.fetch_add(1, Ordering::Relaxed) % servers.len()
    } else {
        0
    };
    let mut done: Vec<Option<(Message, SocketAddr)>> = types.iter().map(|_| None).collect();
    let mut errors: Vec<Vec<String>> = types.iter().map(|_| Vec::new()).collect();
    let mut only_timeouts = vec![true; types.len()];
    'rounds: for _ in 0..conf.attempts.max(1) {
        for i in 0..servers.len() {
            let pending: Vec<usize> = (0..types.len()).filter(|&t| done[t].is_none()).collect();
            if pending.is_empty() {
                break 'rounds;
            }
            let server = servers[(start + i) % servers.len()];
            let asked: Vec<RecordType> = pending.iter().map(|&t| types[t]).collect();
            for (t, reply) in pending.into_iter().zip(ask(inner, server, name, &asked)) {
                match reply {
                    Ok(msg) => match msg.response_code {
                        ResponseCode::NoError | ResponseCode::NXDomain => {
                            done[t] = Some((msg, server));
                        }
                        code => {
                            only_timeouts[t] = false;
                            errors[t].push(format!("{server}: {code}"));
                        }
                    },
                    Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                        errors[t].push(format!("{server}: no reply within {:?}", conf.timeout));
                    }
                    Err(err) => {
                        only_timeouts[t] = false;
                        errors[t].push(format!("{server}: {err}"));
                    }
                }
            }
        }
    }
    done.into_iter()
        .zip(errors)
        .zip(only_timeouts)
        .zip(types)
        .map(|(((done, mut errors), only_timeouts), rtype)| {
            done.ok_or_else(|| {
                errors.dedup();
                let detail = format!("{rtype} query for {name}: {}", errors.join("; "));
                if only_timeouts {
                    Failure::TimedOut(detail)
                } else {
                    Failure::Temporary(detail)
                }
            })
        })
        .collect()
}

/// Asks one server: UDP with EDNS0, again without EDNS0 after a FORMERR, over TCP if truncated.
fn ask(
    inner: &Inner,
    server: SocketAddr,
    name: &Name,
    types: &[RecordType],
) -> Vec<io::Result<Message>> {
    let timeout = inner.conf.timeout;
    let _permit = match limit::acquire(inner.max_in_flight) {
        Ok(permit) => permit,
        Err(err) => return types.iter().map(|_| Err(copy_error(&err))).collect(),
    };
    let mut replies = ask_udp(server, name, types, true, timeout);
    let formerr: Vec<usize> = (0..types.len())
        .filter(|&t| {
            matches!(&replies[t], Ok(msg) if msg.response_code == ResponseCode::FormErr
                && msg.edns.is_none())
        })
        .collect();
    if !formerr.is_empty() {
        let again: Vec<RecordType> = formerr.iter().map(|&t| types[t]).collect();
        for (t, reply) in formerr
            .into_iter()
            .zip(ask_udp(server, name, &again, false, timeout))
        {
            replies[t] = reply;
        }
    }
    for (t, reply) in replies.iter_mut().enumerate() {
        if matches!(reply, Ok(msg) if msg.truncation) {
            *reply = ask_tcp(server, name, types[t], timeout);
        }
    }
    replies
}

/// A copy of `err` (io::Error is not `Clone`) for each question it ended.
fn copy_error(err: &io::Error) -> io::Error {
    io::Error::new(err.kind(), err.to_string())
}

/// Sends one query per type on a fresh socket and collects the matching replies until all are
/// in or the deadline passes.
fn ask_udp(
    server: SocketAddr,
    name: &Name,
    types: &[RecordType],
    edns: bool,
    timeout: Duration,
) -> Vec<io::Result<Message>> {
    let mut replies: Vec<Option<io::Result<Message>>> = types.iter().map(|_| None).collect();
    if let Err(err) = ask_udp_into(server, name, types, edns, timeout, &mut replies) {
        for reply in replies.iter_mut().filter(|r| r.is_none()) {
            *reply = Some(Err(copy_error(&err)));
        }
    }
    replies
        .into_iter()
        .map(|r| r.expect("every question has a reply or an error"))
        .collect()
}

fn ask_udp_into(
    server: SocketAddr,
    name: &Name,
    types: &[RecordType],
    edns: bool,
    timeout: Duration,
    replies: &mut [Option<io::Result<Message>>],
) -> io::Result<()> {
    let mut ids: Vec<u16> = Vec::with_capacity(types.len());
    while ids.len() < types.len() {
        let id = random_u16()?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A new socket per try: the kernel picks a random source port for it.
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    let deadline = Instant::now() + timeout;
    for (&id, &rtype) in ids.iter().zip(types) {
        socket.send(&build_query(id, name, rtype, edns)?)?;
    }
    let mut buf = vec![0; RECV_BUFFER];
    while replies.iter().any(Option::is_none) {
        let (len, from) = socket.recv_from_until(&mut buf, Some(deadline))?;
        if from.ip() != server.ip() || from.port() != server.port() {
            continue;
        }
        let Ok(msg) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let matching = (0..types.len())
            .find(|&t| replies[t].is_none() && is_reply_to(&msg, ids[t], name, types[t]));
        if let Some(t) = matching {
            replies[t] = Some(Ok(msg));
        }
    }
    Ok(())
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "DNS over TCP timed out",
        ));
    }
    Ok(left)
}

fn read_exact_until(stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match (&*stream).read(&mut buf[filled..])? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(())
}

fn ask_tcp(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> io::Result<Message> {
    let deadline = Instant::now() + timeout;
    let id = random_u16()?;
    let query = build_query(id, name, rtype, true)?;
    let stream = TcpStream::connect_timeout(&server, timeout)?;
    let len = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&query);
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    (&stream).write_all(&framed)?;
    loop {
        let mut len = [0; 2];
        read_exact_until(&stream, &mut len, deadline)?;
        let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
        read_exact_until(&stream, &mut body, deadline)?;
        match Message::from_vec(&body) {
            Ok(msg) if is_reply_to(&msg, id, name, rtype) => return Ok(msg),
            _ => continue,
        }
    }
}

impl Inner {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fully qualified names to try for `host`, in order.
    fn candidates(&self, host: &str) -> Vec<String> {
        if host.ends_with('.') {
            return vec![host.to_string()];
        }
        let dots = host.matches('.').count();
        let ndots = usize::try_from(self.conf.ndots).unwrap_or(usize::MAX);
        let bare = format!("{host}.");
        let mut out = Vec::with_capacity(self.conf.search.len() + 1);
        if dots >= ndots {
            out.push(bare.clone());
        }
        for domain in &self.conf.search {
            let candidate = format!("{host}.{domain}.");
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
        if !out.contains(&bare) {
            out.push(bare);
        }
        out
    }
}
