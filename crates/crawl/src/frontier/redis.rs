//! The frontier in Redis: one crawl shared by any number of crawler processes on any machines.
//!
//! Reached with the unchanged `redis` crate (its blocking API), made green by `green_patch`: a
//! Redis call parks only the greenlet that makes it.
//!
//! # Keys (all under `green-crawl:{crawl id}:`)
//!
//! * `q:{host}` — a list per host of entries `"depth host url"` waiting to be fetched; `hosts` —
//!   a sorted set of the hosts with queued URLs, scored by the time (ms) their next request may
//!   start (`--delay`); `next` — that time per host, kept while the host's queue is empty.
//! * `leases` — a sorted set of the entries claimed by some process, scored by the lease's
//!   expiry; `inflight` — leases per host (`--per-host`).
//! * `seen` — every URL ever queued; `done` — every URL completed (its outcome counted).
//! * `counts` — the totals (`pages`, `html`, `status:200`, `error:timeout`, …, `queued`,
//!   `started`, `first_ms`, `last_ms`, `finished_ms`).
//! * `robots:{origin}` — robots.txt bodies, with a TTL; `robots:{origin}:lock` — held by the one
//!   process fetching it.
//!
//! Each step is one Lua script run with EVALSHA, so it is atomic across processes: *claim*
//! (re-queue expired leases, take URLs from hosts whose politeness allows, lease them), *complete*
//! (drop the leases, count each URL once, queue its unseen links), *push* (seeds), *robots*.
//!
//! # Round trips
//!
//! Workers never talk to Redis themselves. One claimer greenlet claims as many URLs as workers
//! are waiting for plus `prefetch` more, in one script call, and hands them out through a local
//! queue (refilled when it is half empty, so a worker rarely waits for Redis); completions
//! are buffered and one committer greenlet sends all that piled up while its previous call was
//! in flight, in one script call. Under load a round trip carries tens of pages.
//!
//! Redis's own CPU is what a page costs there (the crawler, the site and Redis share the cores),
//! so the scripts call Redis per batch and per host, with many members per command (`LPOP` with a
//! count, `SMISMEMBER`, multi-member `ZADD`/`ZREM`/`SADD`/`RPUSH`), not per URL, and the counters
//! of a batch are summed by the client (the script subtracts the few URLs counted before).
//!
//! # Caveats
//!
//! * A lease is not renewed: a fetch slower than `--lease` (keep it well above `--timeout`) is
//!   handed to another process, fetched twice, and counted once.
//! * `--same-host` compares against the seeds of each process's own command line (give every
//!   process the same seeds); a seed redirecting to another host adds it in that process only.
//! * Redis must keep its data across a restart (AOF or RDB) for a crawl to survive one; a Redis
//!   that comes back empty starts the crawl over.
//! * One Redis server (no cluster): the scripts touch keys they compute. Redis 6.2 or later
//!   (`LPOP` with a count, `SMISMEMBER`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use green_http::client::Url;
use green_runtime::sync::{Event, Queue};
use green_runtime::Greenlet;
use redis::{Connection, RedisResult, Script};

use super::{host_key, CrawlState, Frontier, Item, Outcome, Totals};
use crate::report::ErrorKind;

/// How to reach the shared frontier and how to share the work.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:6379/0`.
    pub url: String,
    /// The crawl's name: every process given the same one works the same crawl.
    pub crawl_id: String,
    /// A claimed URL not completed in this time is handed to another process.
    pub lease: Duration,
    /// Requests in flight per host, across all processes.
    pub per_host: Option<usize>,
    /// Time between the starts of two requests to one host, across all processes.
    pub delay: Option<Duration>,
    /// Fetches for the whole crawl, across all processes.
    pub max_pages: Option<u64>,
    /// How long a robots.txt body is kept in Redis.
    pub robots_ttl: Duration,
    /// URLs claimed ahead of the workers asking (leased while they wait in this process), so
    /// that a worker rarely waits for a round trip; the crawler sets it to its concurrency.
    pub prefetch: usize,
}

impl RedisOptions {
    /// Options for `url` and `crawl_id` with a 30 s lease, no politeness limits, no page budget,
    /// robots.txt kept a day.
    pub fn new(url: &str, crawl_id: &str) -> RedisOptions {
        RedisOptions {
            url: url.to_string(),
            crawl_id: crawl_id.to_string(),
            lease: Duration::from_secs(30),
            per_host: None,
            delay: None,
            max_pages: None,
            robots_ttl: Duration::from_secs(24 * 3600),
            prefetch: 0,
        }
    }

    fn prefix(&self) -> String {
        format!("green-crawl:{}:", self.crawl_id)
    }
}

/// Most URLs claimed, or completions sent, in one script call.
const BATCH: usize = 256;

/// Most links of one host in one run of the complete script's arguments (the script hands a run
/// to Redis with Lua's `unpack`, which takes at most about 8,000 values).
const LINK_RUN: usize = 1000;

/// The frontier in Redis (see the [module docs](self)).
pub struct RedisFrontier {
    inner: Rc<Inner>,
    background: RefCell<Vec<Greenlet<()>>>,
}

impl fmt::Debug for RedisFrontier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFrontier")
            .field("url", &self.inner.options.url)
            .field("crawl_id", &self.inner.options.crawl_id)
            .finish_non_exhaustive()
    }
}

struct Scripts {
    claim: Script,
    complete: Script,
    push: Script,
    robots: Script,
}

struct Inner {
    client: redis::Client,
    options: RedisOptions,
    prefix: String,
    scripts: Scripts,
    /// Idle connections (each greenlet talking to Redis takes one).
    connections: RefCell<Vec<Connection>>,
    /// Claimed URLs waiting for a worker.
    ready: Queue<Item>,
    /// Set when a worker waits for a URL, or a completion may have made the crawl finish.
    wake_claimer: Event,
    /// Completions not sent yet.
    pending: RefCell<Vec<Completion>>,
    wake_committer: Event,
    /// Completions being sent now.
    committing: Cell<usize>,
    /// Set when `pending` is empty and nothing is being sent.
    flushed: Event,
    /// Since when Redis has been failing.
    down_since: Cell<Option<Instant>>,
    /// Why the crawl had to stop (Redis gone for longer than the lease).
    fatal: RefCell<Option<String>>,
    /// Links this process already sent: a page is linked from several, and each URL needs to
    /// reach Redis once per process, not once per link (Redis's `seen` decides across processes).
    sent: RefCell<HashSet<String>>,
    round_trips: Cell<u64>,
}

impl RedisFrontier {
    /// Connects (a `PING`), loads the scripts and starts the claimer and committer greenlets.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or Redis does not answer: a message naming the URL.
    pub fn connect(options: RedisOptions) -> io::Result<RedisFrontier> {
        let inner = Rc::new(Inner::connect(options)?);
        let claimer = {
            let inner = inner.clone();
            green_runtime::spawn(move || inner.claim_loop())
        };
        let committer = {
            let inner = inner.clone();
            green_runtime::spawn(move || inner.commit_loop())
        };
        Ok(RedisFrontier {
            inner,
            background: RefCell::new(vec![claimer, committer]),
        })
    }

    /// The totals of crawl `crawl_id` at `url`, for `--status`.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached.
    pub fn status(url: &str, crawl_id: &str) -> io::Result<Totals> {
        Inner::connect(RedisOptions::new(url, crawl_id))?.totals()
    }
}

impl Drop for RedisFrontier {
    fn drop(&mut self) {
        for greenlet in self.background.take() {
            greenlet.kill_nowait();
        }
    }
}

/// Whether `err` may go away by itself: the connection failed or timed out, or the server is
/// loading its data or failing over. Anything else (a script error, a wrong-type key, out of
/// memory, no permission) would fail the same way on every retry, so the crawl stops at once.
fn is_transient(err: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
            )
        )
}

fn redis_error(url: &str, err: redis::RedisError) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("cannot reach the Redis frontier at {url}: {err}"),
    )
}

/// `"depth host url"`, the form URLs take in Redis.
fn entry_of(item: &Item) -> String {
    format!(
        "{} {} {}",
        item.depth,
        host_key(&item.url),
        item.url.as_str()
    )
}

/// A completion waiting to be sent: the URL's entry, URL and host (sent apart so that the
/// script does not parse them out of the entry), the `counts` deltas of its outcome, and its
/// links not sent before as (host, URL, entry).
struct Completion {
    entry: String,
    url: String,
    host: String,
    stats: Vec<(String, u64)>,
    links: Vec<(String, String, String)>,
}

impl Completion {
    fn new(item: &Item, outcome: &Outcome, links: Vec<(String, String, String)>) -> Completion {
        Completion {
            entry: entry_of(item),
            url: item.url.as_str().to_string(),
            host: host_key(&item.url),
            stats: stats_of(outcome),
            links,
        }
    }
}

/// `"field=delta field=delta"`, as the complete script reads stats.
fn stats_text<'a>(stats: impl IntoIterator<Item = (&'a String, &'a u64)>) -> String {
    let mut text = String::new();
    for (field, delta) in stats {
        text.push_str(field);
        text.push('=');
        text.push_str(&delta.to_string());
        text.push(' ');
    }
    text
}

fn item_of(entry: &str) -> Option<Item> {
    let mut parts = entry.splitn(3, ' ');
    let depth = parts.next()?.parse().ok()?;
    let _host = parts.next()?;
    let url = Url::parse(parts.next()?).ok()?;
    Some(Item { url, depth })
}

/// The `counts` fields an outcome adds.
fn stats_of(outcome: &Outcome) -> Vec<(String, u64)> {
    let mut stats = Vec::new();
    let mut add = |field: &str, delta: u64| {
        if delta > 0 {
            stats.push((field.to_string(), delta));
        }
    };
    add("pages", u64::from(outcome.fetched));
    add("bytes", outcome.bytes);
    add("html", u64::from(outcome.html));
    add("non_html", u64::from(outcome.non_html));
    add("redirects", u64::from(outcome.redirect));
    add("links", outcome.links);
    add("bad_links", outcome.bad_links);
    add("robots_disallowed", u64::from(outcome.disallowed));
    if let Some(status) = outcome.status {
        add(&format!("status:{status}"), 1);
    }
    if let Some(kind) = outcome.error {
        add(&format!("error:{}", kind.as_str().replace(' ', "_")), 1);
    }
    stats
}

impl Inner {
    fn connect(options: RedisOptions) -> io::Result<Inner> {
        let client =
            redis::Client::open(options.url.as_str()).map_err(|e| redis_error(&options.url, e))?;
        let inner = Inner {
            client,
            prefix: options.prefix(),
            scripts: Scripts {
                claim: Script::new(include_str!("claim.lua")),
                complete: Script::new(include_str!("complete.lua")),
                push: Script::new(include_str!("push.lua")),
                robots: Script::new(include_str!("robots.lua")),
            },
            options,
            connections: RefCell::default(),
            ready: Queue::new(),
            wake_claimer: Event::new(),
            pending: RefCell::default(),
            wake_committer: Event::new(),
            committing: Cell::new(0),
            flushed: Event::new(),
            down_since: Cell::new(None),
            fatal: RefCell::default(),
            sent: RefCell::default(),
            round_trips: Cell::new(0),
        };
        inner
            .with_connection(|c| redis::cmd("PING").query::<String>(c))
            .map_err(|e| redis_error(&inner.options.url, e))?;
        Ok(inner)
    }

    /// Runs `f` on an idle connection (a new one if none is idle); a connection that failed is
    /// dropped. Counts one round trip.
    fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let popped = self.connections.borrow_mut().pop();
        let mut connection = match popped {
            Some(connection) => connection,
            None => {
                let timeout = self
                    .options
                    .lease
                    .clamp(Duration::from_millis(100), Duration::from_secs(5));
                let connection = self.client.get_connection_with_timeout(timeout)?;
                connection.set_read_timeout(Some(timeout))?;
                connection.set_write_timeout(Some(timeout))?;
                connection
            }
        };
        self.round_trips.set(self.round_trips.get() + 1);
        let result = f(&mut connection);
        if result.is_ok() {
            self.connections.borrow_mut().push(connection);
        }
        result
    }

    /// After a failed call: says so once, and whether to go on retrying (false once Redis has
    /// been failing for longer than the lease: then the crawl stops with an error).
    fn outage(&self, err: &redis::RedisError) -> bool {
        if !is_transient(err) {
            let message = format!(
                "the Redis frontier at {} answered with an error: {err}",
                self.options.url
            );
            return self.stop_with(message);
        }
        let now = Instant::now();
        let since = match self.down_since.get() {
            Some(since) => since,
            None => {
                log::warn!(
                    "crawl: lost the Redis frontier at {} ({err}); taking no new URLs, retrying \
                     for up to {:?} (--lease)",
                    self.options.url,
                    self.options.lease
                );
                self.down_since.set(Some(now));
                now
            }
        };
        if now - since > self.options.lease {
            let message = format!(
                "the Redis frontier at {} was unreachable for longer than the lease ({:?}): {err}",
                self.options.url, self.options.lease
            );
            return self.stop_with(message);
        }
        green_runtime::sleep(Duration::from_millis(100));
        true
    }

    /// Ends the crawl with `message` as its error; returns false (no more retries).
    fn stop_with(&self, message: String) -> bool {
        log::error!("crawl: {message}; stopping");
        *self.fatal.borrow_mut() = Some(message);
        self.ready.shutdown(true);
        self.flushed.set();
        false
    }

    fn recovered(&self) {
        if let Some(since) = self.down_since.take() {
            log::warn!(
                "crawl: the Redis frontier at {} is back after {:.1} s; resuming",
                self.options.url,
                since.elapsed().as_secs_f64()
            );
        }
    }

    fn fatal_error(&self) -> Option<io::Error> {
        self.fatal
            .borrow()
            .as_ref()
            .map(|m| io::Error::new(io::ErrorKind::ConnectionAborted, m.clone()))
    }

    fn claim_loop(&self) {
        let mut idle = Duration::from_millis(1);
        loop {
            let waiting = self.ready.getters_waiting();
            let hungry = (waiting + self.options.prefetch).saturating_sub(self.ready.len());
            if waiting == 0 && self.ready.len() * 2 >= self.options.prefetch {
                self.wake_claimer.clear();
                self.wake_claimer.wait();
                continue;
            }
            let options = &self.options;
            let claimed = self.with_connection(|c| {
                self.scripts
                    .claim
                    .arg(&self.prefix)
                    .arg(hungry.min(BATCH))
                    .arg(options.per_host.unwrap_or(0))
                    .arg(options.delay.map_or(0, |d| d.as_millis() as u64))
                    .arg(options.lease.as_millis() as u64)
                    .arg(options.max_pages.unwrap_or(0))
                    .invoke::<(Vec<String>, u64, u64, u64, u64)>(c)
            });
            let (entries, _queued, _leased, finished, _now) = match claimed {
                Ok(claimed) => {
                    self.recovered();
                    claimed
                }
                Err(err) => {
                    if self.outage(&err) {
                        continue;
                    }
                    return;
                }
            };
            if !entries.is_empty() {
                idle = Duration::from_millis(1);
                for entry in entries {
                    match item_of(&entry) {
                        Some(item) => self.ready.put(item),
                        None => log::warn!("crawl: ignoring a malformed frontier entry {entry:?}"),
                    }
                }
                continue;
            }
            let local_work = !self.pending.borrow().is_empty() || self.committing.get() > 0;
            if finished == 1 && !local_work {
                self.ready.shutdown(false);
                return;
            }
            // Nothing claimable now: other processes' leases, politeness, or our own
            // completions on their way. Retry soon, sooner when a completion lands.
            self.wake_claimer.clear();
            self.wake_claimer.wait_timeout(idle);
            idle = (idle * 2).min(Duration::from_millis(100));
        }
    }

    fn commit_loop(&self) {
        loop {
            let batch: Vec<Completion> = {
                let mut pending = self.pending.borrow_mut();
                let n = pending.len().min(BATCH);
                pending.drain(..n).collect()
            };
            if batch.is_empty() {
                self.flushed.set();
                self.wake_committer.clear();
                self.wake_committer.wait();
                continue;
            }
            self.committing.set(batch.len());
            loop {
                let sent = self.with_connection(|c| {
                    let mut call = self.scripts.complete.prepare_invoke();
                    let mut sums: BTreeMap<&String, u64> = BTreeMap::new();
                    for completion in &batch {
                        for (field, delta) in &completion.stats {
                            *sums.entry(field).or_default() += delta;
                        }
                    }
                    // The layout complete.lua reads: runs of arguments it hands to Redis as
                    // they are (entries by host, URLs, links by host).
                    let mut by_host: BTreeMap<&str, Vec<&Completion>> = BTreeMap::new();
                    for completion in &batch {
                        by_host
                            .entry(&completion.host)
                            .or_default()
                            .push(completion);
                    }
                    call.arg(&self.prefix)
                        .arg(batch.len())
                        .arg(stats_text(sums.iter().map(|(f, d)| (*f, d))))
                        .arg(by_host.len());
                    for (host, completions) in &by_host {
                        call.arg(*host).arg(completions.len());
                    }
                    let ordered: Vec<&Completion> = by_host.values().flatten().copied().collect();
                    for completion in &ordered {
                        call.arg(&completion.entry);
                    }
                    for completion in &ordered {
                        call.arg(&completion.url);
                    }
                    for completion in &ordered {
                        call.arg(stats_text(completion.stats.iter().map(|(f, d)| (f, d))));
                    }
                    let mut links_by_host: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
                    for completion in &batch {
                        for (host, url, entry) in &completion.links {
                            links_by_host.entry(host).or_default().push((url, entry));
                        }
                    }
                    let runs: Vec<(&str, &[(&str, &str)])> = links_by_host
                        .iter()
                        .flat_map(|(host, links)| {
                            links.chunks(LINK_RUN).map(move |run| (*host, run))
                        })
                        .collect();
                    call.arg(runs.len());
                    for (host, run) in &runs {
                        call.arg(*host).arg(run.len());
                        for (url, _) in run.iter() {
                            call.arg(*url);
                        }
                        for (_, entry) in run.iter() {
                            call.arg(*entry);
                        }
                    }
                    call.invoke::<u64>(c)
                });
                match sent {
                    Ok(_) => {
                        self.recovered();
                        break;
                    }
                    Err(err) => {
                        if !self.outage(&err) {
                            return;
                        }
                    }
                }
            }
            self.committing.set(0);
            self.wake_claimer.set();
        }
    }

    fn totals(&self) -> io::Result<Totals> {
        let key = |k: &str| format!("{}{k}", self.prefix);
        let (counts, leased): (BTreeMap<String, String>, u64) = self
            .with_connection(|c| {
                redis::pipe()
                    .cmd("HGETALL")
                    .arg(key("counts"))
                    .cmd("ZCARD")
                    .arg(key("leases"))
                    .query(c)
            })
            .map_err(|e| redis_error(&self.options.url, e))?;
        let num = |k: &str| {
            counts
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut totals = Totals {
            queued: num("queued"),
            in_flight: leased,
            pages: num("pages"),
            html: num("html"),
            non_html: num("non_html"),
            redirects: num("redirects"),
            bytes: num("bytes"),
            links: num("links"),
            robots_disallowed: num("robots_disallowed"),
            robots_fetched: num("robots_fetched"),
            requeued: num("requeued"),
            ..Totals::default()
        };
        for (field, value) in &counts {
            let value = value.parse::<u64>().unwrap_or(0);
            if let Some(status) = field.strip_prefix("status:").and_then(|s| s.parse().ok()) {
                totals.statuses.insert(status, value);
            } else if let Some(kind) = field.strip_prefix("error:") {
                if let Some(kind) = ErrorKind::ALL
                    .into_iter()
                    .find(|k| k.as_str().replace(' ', "_") == kind)
                {
                    totals.errors.insert(kind, value);
                }
            }
        }
        let first = num("first_ms");
        let last = num("last_ms").max(first);
        totals.elapsed = Duration::from_millis(last - first);
        totals.state = Some(if counts.is_empty() {
            CrawlState::NotStarted
        } else if counts.contains_key("finished_ms") {
            CrawlState::Finished
        } else {
            CrawlState::Running
        });
        Ok(totals)
    }
}

impl Frontier for RedisFrontier {
    fn push(&self, items: Vec<Item>) -> io::Result<u64> {
        let inner = &self.inner;
        inner
            .with_connection(|c| {
                let mut call = inner.scripts.push.prepare_invoke();
                call.arg(&inner.prefix);
                for item in &items {
                    call.arg(entry_of(item));
                }
                call.invoke::<u64>(c)
            })
            .map_err(|e| redis_error(&inner.options.url, e))
    }

    fn claim(&self) -> io::Result<Option<Item>> {
        let inner = &self.inner;
        if let Some(err) = inner.fatal_error() {
            return Err(err);
        }
        inner.wake_claimer.set();
        match inner.ready.get_checked() {
            Ok(item) => Ok(Some(item)),
            Err(_) => match inner.fatal_error() {
                Some(err) => Err(err),
                None => Ok(None),
            },
        }
    }

    fn complete(&self, item: &Item, outcome: &Outcome, links: Vec<Item>) -> io::Result<u64> {
        let inner = &self.inner;
        let links = {
            let mut sent = inner.sent.borrow_mut();
            links
                .iter()
                .filter(|link| sent.insert(link.url.as_str().to_string()))
                .map(|link| {
                    (
                        host_key(&link.url),
                        link.url.as_str().to_string(),
                        entry_of(link),
                    )
                })
                .collect()
        };
        inner
            .pending
            .borrow_mut()
            .push(Completion::new(item, outcome, links));
        inner.flushed.clear();
        inner.wake_committer.set();
        Ok(0)
    }

    fn abandon(&self, _item: &Item) {}

    fn robots_txt(&self, origin: &str, fetch: &mut dyn FnMut() -> String) -> io::Result<String> {
        let inner = &self.inner;
        let key = format!("{}robots:{origin}", inner.prefix);
        let lock = inner.options.lease.max(Duration::from_secs(1)).as_millis() as u64;
        let started = Instant::now();
        loop {
            let asked = inner.with_connection(|c| {
                inner
                    .scripts
                    .robots
                    .arg(&key)
                    .arg(lock)
                    .invoke::<(u8, String)>(c)
            });
            match asked {
                Ok((1, body)) => return Ok(body),
                Ok((2, _)) => {
                    let body = fetch();
                    let ttl = inner.options.robots_ttl.as_secs().max(1);
                    inner
                        .with_connection(|c| {
                            redis::pipe()
                                .atomic()
                                .cmd("SET")
                                .arg(&key)
                                .arg(&body)
                                .arg("EX")
                                .arg(ttl)
                                .ignore()
                                .cmd("DEL")
                                .arg(format!("{key}:lock"))
                                .ignore()
                                .cmd("HINCRBY")
                                .arg(format!("{}counts", inner.prefix))
                                .arg("robots_fetched")
                                .arg(1)
                                .ignore()
                                .query::<()>(c)
                        })
                        .map_err(|e| redis_error(&inner.options.url, e))?;
                    return Ok(body);
                }
                Ok(_) => green_runtime::sleep(Duration::from_millis(20)),
                Err(err) => {
                    if started.elapsed() > inner.options.lease {
                        return Err(redis_error(&inner.options.url, err));
                    }
                    green_runtime::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn counts_page_budget(&self) -> bool {
        true
    }

    fn finish(&self) -> io::Result<()> {
        let inner = &self.inner;
        while inner.fatal_error().is_none()
            && (!inner.pending.borrow().is_empty() || inner.committing.get() > 0)
        {
            inner.wake_committer.set();
            inner.flushed.wait_timeout(Duration::from_millis(100));
        }
        for greenlet in self.background.take() {
            greenlet.kill();
        }
        match inner.fatal_error() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn totals(&self) -> io::Result<Option<Totals>> {
        self.inner.totals().map(Some)
    }

    fn round_trips(&self) -> u64 {
        self.inner.round_trips.get()
    }
}
