//! The stub resolver: hosts file, search list, and the query exchange over green UDP and TCP.
//!
//! Written here rather than taken from hickory-resolver because that one is built on tokio; only
//! hickory-proto's types are used (`message.rs` encodes queries and reads replies itself). The
//! exchange follows glibc's resolver where users can see it (search order, `ndots`, rounds of
//! `attempts` over the servers, `rotate`, a name's time bounded by attempts × servers × timeout
//! at any concurrency) and the anti-spoofing rules of RFC 5452: a random ID per
//! query, a fresh socket (random kernel port) per try (shared by the A and AAAA queries of a
//! lookup, as glibc does), and a reply counts only if its source, ID and question all match;
//! anything else is dropped and the wait goes on until the try's deadline.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use green_runtime::GreenFd;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use socket2::{Domain, Protocol, Socket, Type};

use super::cache::{self, Cache, Cached};
use super::config::ResolvConf;
use super::hosts::{Hosts, HostsSource};
use super::limit;
use super::message::{build_query, message_id, parse_reply, random_u16, wire_name, Reply};
use super::{DnsError, DnsErrorKind, Resolver};
use crate::TcpStream;

/// Default number of (name, type) answers kept in the cache.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;

/// Default cap on the lookups asking at once (one socket each) per thread.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Bytes received per UDP reply: the largest UDP payload, so no reply is cut short, even one
/// larger than the EDNS0 payload advertised and without the TC bit (glibc reads those whole too).
const RECV_BUFFER: usize = 65_536;

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
///    to the next server; NOERROR and NXDOMAIN are final, the response code read before the
///    answer section (addresses in an NXDOMAIN reply are no answer). A truncated reply is asked
///    again over TCP; FORMERR to an EDNS0 query is asked again without EDNS0; a UDP reply is
///    read whole (up to 64 KiB) even when larger than advertised and not marked truncated. At
///    most [`max_in_flight`](NativeResolverBuilder::max_in_flight) tries are in flight per
///    thread; further lookups queue for a slot (so a burst does not overflow the server's
///    buffer), and a lookup keeps its slot through its retries and CNAME re-queries.
/// 5. CNAME chains are followed inside an answer, and with a new query when the chain leaves it
///    (for A and AAAA together, on one socket per try). Answers are cached for their smallest
///    TTL, negative ones (NXDOMAIN, no data) for the SOA's negative TTL.
///
/// Each name asked (each candidate of step 2) takes at most `attempts` × servers × `timeout`,
/// its CNAME re-queries included, however many lookups run at once: the bound glibc, Go and
/// c-ares keep. A lookup ends with a timeout at that deadline, even if a hop of its CNAME chain
/// or a slot for its next try is still to come.
///
/// # Caveats
///
/// - The wait for an in-flight slot is part of a try: a try that gets no slot within `timeout`
///   counts as unanswered and the lookup moves on to the next server, its next wait ahead of
///   new lookups. So thousands of lookups at once behind a silent server fail over after one
///   `timeout`, as glibc's would, but a burst far beyond what the hub can send and parse within
///   `timeout` ends some lookups with [`TimedOut`](DnsErrorKind::TimedOut) although the server
///   answers: raise [`max_in_flight`](NativeResolverBuilder::max_in_flight) or `timeout` for
///   such bursts.
/// - CNAME re-queries (glibc and Go leave chains to the recursive server) share the budget of
///   the name they started from.
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

    /// How long to wait for each server's reply (at least 1 ms); a name takes at most
    /// `attempts` × servers × `timeout`.
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

    /// At most this many lookups are asking at once per thread, each with one try (a socket
    /// with its A and AAAA queries) in flight at a time and keeping its slot through retries and
    /// CNAME re-queries; further lookups wait their turn, each try at most its `timeout`
    /// (default [`DEFAULT_MAX_IN_FLIGHT`], at least 1). Bursts beyond a server's receive buffer
    /// are dropped and cost a whole `timeout` each.
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
    NoSuchName(Detail),
    NoData(Detail),
    Temporary(Detail),
    TimedOut(Detail),
}

/// What a [`Failure`] says, formatted only if it ends up in the error a lookup returns: most
/// failures are discarded (the AAAA question of an IPv4-only name, the NXDOMAIN of a search
/// candidate), and formatting them was a good part of a lookup's cost.
#[derive(Debug)]
enum Detail {
    Text(String),
    /// An NXDOMAIN (no type) or "no data" answer from the cache.
    Cached(Name, Option<RecordType>),
    /// An NXDOMAIN for the name from the server.
    NxDomain(Name, SocketAddr),
    /// No record of the type for the name from the server.
    NoRecord(RecordType, Name, SocketAddr),
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::Text(text) => f.write_str(text),
            Detail::Cached(name, None) => write!(f, "NXDOMAIN for {} (cached)", name.to_ascii()),
            Detail::Cached(name, Some(rtype)) => {
                write!(f, "no {rtype} for {} (cached)", name.to_ascii())
            }
            Detail::NxDomain(name, server) => write!(f, "NXDOMAIN for {name} from {server}"),
            Detail::NoRecord(rtype, name, server) => {
                write!(f, "no {rtype} record for {name} from {server}")
            }
        }
    }
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
    let name = name.as_bytes();
    let suffix = b".localhost";
    name.eq_ignore_ascii_case(&suffix[1..])
        || (name.len() >= suffix.len()
            && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
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
                return Err(DnsError::new(
                    DnsErrorKind::TimedOut,
                    host,
                    detail.to_string(),
                ));
            }
            Err(failure) => failure,
        };
        let keep = matches!(&worst, Some(w) if search_rank(w) >= search_rank(&failure));
        if !keep {
            worst = Some(failure);
        }
    }
    let (kind, detail) = match worst {
        Some(Failure::NoSuchName(d)) => (DnsErrorKind::NoSuchName, d),
        Some(Failure::NoData(d)) => (DnsErrorKind::NoData, d),
        Some(Failure::Temporary(d)) => (DnsErrorKind::Temporary, d),
        Some(Failure::TimedOut(d)) => (DnsErrorKind::TimedOut, d),
        None => {
            return Err(DnsError::new(
                DnsErrorKind::InvalidName,
                host,
                "no name to query",
            ))
        }
    };
    Err(DnsError::new(kind, host, detail.to_string()))
}

/// The two questions of a lookup, in the order their addresses are returned.
const TYPES: [RecordType; 2] = [RecordType::AAAA, RecordType::A];

/// One question of an exchange: a name (and its wire form) and a type.
#[derive(Clone, Copy)]
struct Question<'a> {
    name: &'a Name,
    wire: &'a [u8],
    rtype: RecordType,
}

/// How far the question of one type has got: the name to ask next if a CNAME chain led out of
/// the answers so far (`None`: the name looked up), the smallest TTL along the chain, and how
/// many replies were read.
struct Chase {
    target: Option<(Name, Vec<u8>)>,
    ttl: u32,
    replies: usize,
}

impl Chase {
    const START: Chase = Chase {
        target: None,
        ttl: u32::MAX,
        replies: 0,
    };

    fn question<'a>(&'a self, name: &'a Name, wire: &'a [u8], rtype: RecordType) -> Question<'a> {
        match &self.target {
            Some((target, target_wire)) => Question {
                name: target,
                wire: target_wire,
                rtype,
            },
            None => Question { name, wire, rtype },
        }
    }
}

/// What a reply leads to: the question's outcome, or the next name of a CNAME chain to ask.
enum Step {
    Done(Result<Vec<IpAddr>, Failure>),
    Follow(Chase),
}

/// `after` from now, or as far ahead as an `Instant` goes (a huge timeout must not overflow).
fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 60 * 60)))
        .unwrap_or(now)
}

/// The deadline of a try starting now: `timeout` away, but not past the lookup's `deadline`.
fn try_deadline(timeout: Duration, deadline: Instant) -> Instant {
    Instant::now()
        .checked_add(timeout)
        .map_or(deadline, |end| end.min(deadline))
}

/// Asks A and AAAA for `name` at once (those not cached), both on one socket per try, CNAME
/// re-queries of both types too, all within one budget (see [`Inner::budget`]).
fn query_both(inner: &Inner, name: &Name) -> Result<Vec<IpAddr>, Failure> {
    let wire = wire_name(name);
    let keys = TYPES.map(|rtype| cache::key(&wire, rtype));
    let mut results: [Option<Result<Vec<IpAddr>, Failure>>; 2] = {
        let mut cache = inner.cache();
        [0, 1].map(|t| {
            cache
                .get(&keys[t])
                .map(|hit| from_cache(hit, name, TYPES[t]))
        })
    };
    let mut chases = [0, 1].map(|t| results[t].is_none().then_some(Chase::START));
    let deadline = deadline_after(inner.budget());
    // The in-flight slot, once taken, is kept to the last query (retries, CNAME re-queries).
    let mut slot = None;
    while chases.iter().any(Option::is_some) {
        let mut pending = [0; 2];
        let mut questions = [Question {
            name,
            wire: &wire,
            rtype: TYPES[0],
        }; 2];
        let mut count = 0;
        for (t, chase) in chases.iter().enumerate() {
            if let Some(chase) = chase {
                (pending[count], questions[count]) = (t, chase.question(name, &wire, TYPES[t]));
                count += 1;
            }
        }
        let replies = exchange(inner, &questions[..count], deadline, &mut slot);
        for (&t, reply) in pending[..count].iter().zip(replies) {
            let chase = chases[t].take().expect("a pending question");
            let step = match reply {
                Ok((reply, server)) => step(inner, name, &keys[t], TYPES[t], chase, reply, server),
                Err(failure) => Step::Done(Err(failure)),
            };
            match step {
                Step::Done(result) => results[t] = Some(result),
                Step::Follow(next) => chases[t] = Some(next),
            }
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

fn from_cache(hit: Cached, name: &Name, rtype: RecordType) -> Result<Vec<IpAddr>, Failure> {
    match hit {
        Cached::Addrs(ips) => Ok(ips),
        Cached::NoSuchName => Err(Failure::NoSuchName(Detail::Cached(name.clone(), None))),
        Cached::NoData => Err(Failure::NoData(Detail::Cached(name.clone(), Some(rtype)))),
    }
}

/// Reads `reply` (NOERROR or NXDOMAIN, from `server`) to the question `chase` stands at for
/// `name` and `rtype`: its addresses or failure, cached under `key`, or the CNAME target to ask
/// next when the chain leaves the answer (RFC 1034 §5.3.3).
fn step(
    inner: &Inner,
    name: &Name,
    key: &[u8],
    rtype: RecordType,
    chase: Chase,
    reply: Reply,
    server: SocketAddr,
) -> Step {
    let answer = reply.answer;
    let ttl = chase.ttl.min(answer.ttl);
    let asked = || {
        chase
            .target
            .map_or_else(|| name.clone(), |(target, _)| target)
    };
    // The rcode before the answer section: records in an NXDOMAIN reply are no answer (Go
    // reports "no such host", glibc returns nothing).
    if reply.rcode == ResponseCode::NXDomain {
        if let Some(negative) = answer.negative_ttl {
            inner
                .cache()
                .insert(key, Cached::NoSuchName, negative.min(ttl));
        }
        let canonical = answer.canonical.unwrap_or_else(asked);
        return Step::Done(Err(Failure::NoSuchName(Detail::NxDomain(
            canonical, server,
        ))));
    }
    if !answer.addrs.is_empty() {
        inner
            .cache()
            .insert(key, Cached::Addrs(answer.addrs.clone()), ttl);
        return Step::Done(Ok(answer.addrs));
    }
    let canonical = match answer.canonical {
        Some(canonical) if answer.negative_ttl.is_none() => canonical,
        canonical => {
            if let Some(negative) = answer.negative_ttl {
                inner.cache().insert(key, Cached::NoData, negative.min(ttl));
            }
            let canonical = canonical.unwrap_or_else(asked);
            return Step::Done(Err(Failure::NoData(Detail::NoRecord(
                rtype, canonical, server,
            ))));
        }
    };
    let replies = chase.replies + 1;
    if replies >= MAX_REQUERIES {
        return Step::Done(Err(Failure::Temporary(Detail::Text(format!(
            "CNAME chain from {name} longer than {MAX_REQUERIES} queries"
        )))));
    }
    let target_wire = wire_name(&canonical);
    Step::Follow(Chase {
        target: Some((canonical, target_wire)),
        ttl,
        replies,
    })
}

/// Asks `questions` of the servers until each has a final answer (NOERROR or NXDOMAIN) or
/// `deadline` passes: one result per question, in order. Tries are made holding `slot`, an
/// in-flight slot taken (and kept) at the first try without one; a try, its wait for the slot
/// included, lasts at most `timeout`.
fn exchange(
    inner: &Inner,
    questions: &[Question<'_>],
    deadline: Instant,
    slot: &mut Option<limit::Permit>,
) -> Vec<Result<(Reply, SocketAddr), Failure>> {
    let conf = &inner.conf;
    let servers = &conf.nameservers;
    if servers.is_empty() {
        return questions
            .iter()
            .map(|_| {
                Err(Failure::Temporary(Detail::Text(
                    "no name servers configured".into(),
                )))
            })
            .collect();
    }
    let start = if conf.rotate {
        inner.next_server.fetch_add(1, Ordering::Relaxed) % servers.len()
    } else {
        0
    };
    // At most the two questions of `TYPES`: fixed arrays, no allocation per exchange.
    assert!(
        questions.len() <= TYPES.len(),
        "at most {} questions",
        TYPES.len()
    );
    let mut done: [Option<(Reply, SocketAddr)>; 2] = [None, None];
    let mut errors: [Vec<String>; 2] = Default::default();
    let mut only_timeouts = [true; 2];
    // Whether a try already went by without a slot: the next waits ahead of new lookups.
    let mut retry = false;
    'rounds: for _ in 0..conf.attempts.max(1) {
        for i in 0..servers.len() {
            let mut pending = [0; 2];
            let mut asked = [questions[0]; 2];
            let mut count = 0;
            for t in (0..questions.len()).filter(|&t| done[t].is_none()) {
                (pending[count], asked[count]) = (t, questions[t]);
                count += 1;
            }
            if count == 0 {
                break 'rounds;
            }
            if Instant::now() >= deadline {
                for &t in &pending[..count] {
                    errors[t].push("out of time for the lookup".into());
                }
                break 'rounds;
            }
            let server = servers[(start + i) % servers.len()];
            let try_end = try_deadline(conf.timeout, deadline);
            if slot.is_none() {
                match limit::acquire(inner.max_in_flight, retry, try_end) {
                    Ok(Some(permit)) => *slot = Some(permit),
                    Ok(None) => {
                        for &t in &pending[..count] {
                            errors[t].push(format!(
                                "{server}: not asked within {:?}: {} lookups in flight",
                                conf.timeout, inner.max_in_flight
                            ));
                        }
                        retry = true;
                        continue;
                    }
                    Err(err) => {
                        for &t in &pending[..count] {
                            only_timeouts[t] = false;
                            errors[t].push(err.to_string());
                        }
                        retry = true;
                        continue;
                    }
                }
            }
            let replies = ask(inner, server, &asked[..count], try_end, deadline);
            for (&t, reply) in pending[..count].iter().zip(replies) {
                match reply {
                    Ok(reply) => match reply.rcode {
                        ResponseCode::NoError | ResponseCode::NXDomain => {
                            done[t] = Some((reply, server));
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
        .zip(questions)
        .map(|(((done, mut errors), only_timeouts), question)| {
            done.ok_or_else(|| {
                errors.dedup();
                let detail = Detail::Text(format!(
                    "{} query for {}: {}",
                    question.rtype,
                    question.name,
                    errors.join("; ")
                ));
                if only_timeouts {
                    Failure::TimedOut(detail)
                } else {
                    Failure::Temporary(detail)
                }
            })
        })
        .collect()
}

/// Asks one server until `try_end`: UDP with EDNS0, again without EDNS0 after a FORMERR, over
/// TCP if truncated (each of those a try of its own, within the lookup's `deadline`).
fn ask(
    inner: &Inner,
    server: SocketAddr,
    questions: &[Question<'_>],
    try_end: Instant,
    deadline: Instant,
) -> Vec<io::Result<Reply>> {
    let timeout = inner.conf.timeout;
    let mut replies = ask_udp(server, questions, true, try_end);
    let formerr: Vec<usize> = (0..questions.len())
        .filter(|&t| {
            matches!(&replies[t], Ok(reply) if reply.rcode == ResponseCode::FormErr
                && !reply.edns)
        })
        .collect();
    if !formerr.is_empty() {
        let again: Vec<Question<'_>> = formerr.iter().map(|&t| questions[t]).collect();
        let again_end = try_deadline(timeout, deadline);
        for (t, reply) in formerr
            .into_iter()
            .zip(ask_udp(server, &again, false, again_end))
        {
            replies[t] = reply;
        }
    }
    for (reply, question) in replies.iter_mut().zip(questions) {
        if matches!(reply, Ok(reply) if reply.truncated) {
            *reply = ask_tcp(server, question, try_deadline(timeout, deadline));
        }
    }
    replies
}

/// A copy of `err` (io::Error is not `Clone`) for each question it ended.
fn copy_error(err: &io::Error) -> io::Error {
    io::Error::new(err.kind(), err.to_string())
}

/// Sends one query per question on a fresh socket and collects the matching replies until all
/// are in or `deadline` passes.
fn ask_udp(
    server: SocketAddr,
    questions: &[Question<'_>],
    edns: bool,
    deadline: Instant,
) -> Vec<io::Result<Reply>> {
    let mut replies: Vec<Option<io::Result<Reply>>> = questions.iter().map(|_| None).collect();
    if let Err(err) = ask_udp_into(server, questions, edns, deadline, &mut replies) {
        for reply in replies.iter_mut().filter(|r| r.is_none()) {
            *reply = Some(Err(copy_error(&err)));
        }
    }
    replies
        .into_iter()
        .map(|r| r.expect("every question has a reply or an error"))
        .collect()
}

thread_local! {
    /// Where replies are received: a datagram is read and parsed before its greenlet can park
    /// again, so one buffer serves every lookup of the thread.
    static RECV_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; RECV_BUFFER]);
}

/// A new UDP socket connected to `server`. `connect` binds it to a port the kernel picks at
/// random, as `bind` to port 0 would, in one system call fewer.
fn connect_udp(server: SocketAddr) -> io::Result<GreenFd<std::net::UdpSocket>> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    socket.connect(&server.into())?;
    Ok(GreenFd::new(socket.into()))
}

fn ask_udp_into(
    server: SocketAddr,
    questions: &[Question<'_>],
    edns: bool,
    deadline: Instant,
    replies: &mut [Option<io::Result<Reply>>],
) -> io::Result<()> {
    let mut ids = [0; 2];
    for t in 0..questions.len() {
        ids[t] = random_u16()?;
        while ids[..t].contains(&ids[t]) {
            ids[t] = random_u16()?;
        }
    }
    // A new socket per try: the kernel picks a random source port for it.
    let socket = connect_udp(server)?;
    for (&id, question) in ids.iter().zip(questions) {
        let query = build_query(id, question.wire, question.rtype, edns);
        socket.write_with(Some(deadline), |s| s.send(&query))?;
    }
    while replies.iter().any(Option::is_none) {
        let (len, from) = socket.read_with(Some(deadline), |s| {
            RECV_BUF.with_borrow_mut(|buf| s.recv_from(buf))
        })?;
        if from.ip() != server.ip() || from.port() != server.port() {
            continue;
        }
        let matching = RECV_BUF.with_borrow(|buf| {
            let msg = &buf[..len];
            let id = message_id(msg)?;
            let t = (0..questions.len()).find(|&t| replies[t].is_none() && ids[t] == id)?;
            let question = &questions[t];
            Some((t, parse_reply(msg, id, question.wire, question.rtype)?))
        });
        if let Some((t, reply)) = matching {
            replies[t] = Some(Ok(reply));
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

fn ask_tcp(server: SocketAddr, question: &Question<'_>, deadline: Instant) -> io::Result<Reply> {
    let id = random_u16()?;
    let query = build_query(id, question.wire, question.rtype, true);
    let stream = TcpStream::connect_timeout(&server, remaining(deadline)?)?;
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
        if let Some(reply) = parse_reply(&body, id, question.wire, question.rtype) {
            return Ok(reply);
        }
    }
}

impl Inner {
    /// How long asking one name may take, CNAME re-queries included: `timeout` for each server
    /// in each of the `attempts` rounds (the bound glibc, Go and c-ares keep).
    fn budget(&self) -> Duration {
        let servers = u32::try_from(self.conf.nameservers.len()).unwrap_or(u32::MAX);
        let tries = self.conf.attempts.max(1).saturating_mul(servers.max(1));
        self.conf.timeout.saturating_mul(tries)
    }

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
