//! The workers: claim a URL, ask robots.txt, fetch it, extract its links, complete it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use green_http::client::{Client, ClientResponse, Error as HttpError, Url};
use green_runtime::sync::Event;

use crate::frontier::{
    host_key, Frontier, Item, MemoryFrontier, Outcome, RedisFrontier, RedisOptions,
};
use crate::links::{extract_links, is_followable_scheme, is_html, normalize};
use crate::progress::Progress;
use crate::report::{ErrorKind, Latency, Summary};
use crate::robots::Robots;

/// The `User-Agent` sent by default (its first word is also the robots.txt token).
pub const DEFAULT_USER_AGENT: &str = concat!("green-crawl/", env!("CARGO_PKG_VERSION"));

/// The most body bytes read from one response; a longer body is cut there (and counted so).
const BODY_CAP: u64 = 10 * 1024 * 1024;

/// The most robots.txt bytes read (Google reads 500 KiB).
const ROBOTS_CAP: u64 = 500 * 1024;

/// What to crawl and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// Start URLs (depth 0).
    pub seeds: Vec<String>,
    /// Worker greenlets, hence requests in flight at most (in this process).
    pub concurrency: usize,
    /// Stop after this many fetches (across all processes with a shared frontier).
    pub max_pages: Option<u64>,
    /// Largest link depth followed.
    pub max_depth: Option<u32>,
    /// Only follow links to the seeds' hosts (and hosts a seed redirected to).
    pub same_host: bool,
    /// Per-request deadline (connect, send, head and body).
    pub timeout: Duration,
    /// The User-Agent header.
    pub user_agent: String,
    /// A JSON-lines file with one record per URL this process fetched.
    pub output: Option<PathBuf>,
    /// Draw a progress bar on stderr (when it is a terminal and the `cli` feature is on).
    pub progress: bool,
    /// Fetch and obey robots.txt.
    pub robots: bool,
    /// Requests in flight per host at most (across all processes with a shared frontier).
    pub per_host: Option<usize>,
    /// Time between the starts of two requests to one host.
    pub delay: Option<Duration>,
    /// Share the crawl through Redis (`None`: the frontier is in this process).
    pub shared: Option<RedisOptions>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seeds: Vec::new(),
            concurrency: 100,
            max_pages: None,
            max_depth: None,
            same_host: false,
            timeout: Duration::from_secs(10),
            user_agent: DEFAULT_USER_AGENT.to_string(),
            output: None,
            progress: false,
            robots: true,
            per_host: None,
            delay: None,
            shared: None,
        }
    }
}

/// What one fetch produced (one output line).
struct Record {
    status: Option<u16>,
    bytes: u64,
    links: usize,
    error: Option<(ErrorKind, String)>,
    elapsed: Duration,
}

/// A host's robots.txt: being fetched by one worker, or known.
enum RobotsEntry {
    Pending(Event),
    Ready(Rc<Robots>),
}

/// Crawl state of this process (all on one thread).
struct Crawler {
    config: Config,
    client: Client,
    frontier: Rc<dyn Frontier>,
    agent: String,
    hosts: RefCell<HashSet<String>>,
    robots: RefCell<HashMap<String, RobotsEntry>>,
    started: Cell<u64>,
    summary: RefCell<Summary>,
    latencies: RefCell<Vec<Duration>>,
    output: RefCell<Option<BufWriter<File>>>,
    progress: Progress,
}

/// Crawls from `config.seeds` until the frontier is empty or `max_pages` were fetched: in this
/// process, or together with every other process given the same [`Config::shared`] frontier.
///
/// Returns the summary of this process (with the shared totals when the frontier is shared).
///
/// # Errors
///
/// Failing to create the output file; with a shared frontier, Redis unreachable at the start,
/// or gone for longer than the lease. Fetch failures are counted, never errors. Blocks the calling
/// greenlet (or runs the hub, from a thread's main code) until done.
pub fn crawl(config: Config) -> io::Result<Summary> {
    let frontier: Rc<dyn Frontier> = match &config.shared {
        None => Rc::new(MemoryFrontier::new(config.per_host, config.delay)),
        Some(options) => {
            // The redis crate's blocking sockets park only the calling greenlet.
            green_patch::all();
            let options = RedisOptions {
                per_host: config.per_host,
                delay: config.delay,
                max_pages: config.max_pages,
                prefetch: config.concurrency.max(1),
                ..options.clone()
            };
            Rc::new(RedisFrontier::connect(options)?)
        }
    };
    crawl_with(config, frontier)
}

/// [`crawl`] with a frontier of the caller's making (`config.shared` is ignored).
///
/// # Errors
///
/// As [`crawl`].
pub fn crawl_with(config: Config, frontier: Rc<dyn Frontier>) -> io::Result<Summary> {
    let output = match &config.output {
        Some(path) => Some(BufWriter::new(File::create(path)?)),
        None => None,
    };
    let client = Client::builder()
        .user_agent(config.user_agent.as_str())
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .max_redirects(0)
        .pool_max_idle_per_host(config.concurrency)
        .body_limit(BODY_CAP)
        .build()
        .map_err(io::Error::other)?;
    let progress = Progress::new(config.progress, config.shared.is_some());
    let agent = config
        .user_agent
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let crawler = Rc::new(Crawler {
        client,
        frontier,
        agent,
        hosts: RefCell::default(),
        robots: RefCell::default(),
        started: Cell::new(0),
        summary: RefCell::default(),
        latencies: RefCell::default(),
        output: RefCell::new(output),
        progress,
        config,
    });
    let start = Instant::now();
    let mut seeds = Vec::new();
    for seed in &crawler.config.seeds {
        crawler.add_seed(seed, &mut seeds);
    }
    let new = crawler.frontier.push(seeds)?;
    crawler.progress.queued(new);
    let workers: Vec<_> = (0..crawler.config.concurrency.max(1))
        .map(|_| {
            let crawler = crawler.clone();
            green_runtime::spawn(move || crawler.work())
        })
        .collect();
    let mut failed = None;
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => failed = failed.or(Some(err)),
            Err(err) => failed = failed.or(Some(io::Error::other(err.to_string()))),
        }
    }
    let finished = crawler.frontier.finish();
    crawler.progress.finish();
    if let Some(out) = crawler.output.borrow_mut().as_mut() {
        out.flush()?;
    }
    if let Some(err) = failed {
        return Err(err);
    }
    finished?;
    let mut summary = crawler.summary.borrow().clone();
    summary.elapsed = start.elapsed();
    summary.latency = Latency::of(crawler.latencies.take());
    summary.shared = crawler.frontier.totals()?;
    summary.round_trips = crawler.frontier.round_trips();
    Ok(summary)
}

/// Abandons a claimed item if its handling fails or unwinds (an error, a panic or a kill), so
/// that the frontier never waits for it.
struct Claimed<'a> {
    frontier: &'a dyn Frontier,
    item: Option<Item>,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.frontier.abandon(&item);
        }
    }
}

impl Crawler {
    fn add_seed(&self, seed: &str, seeds: &mut Vec<Item>) {
        match Url::parse(seed.trim()) {
            Ok(mut url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                self.hosts.borrow_mut().insert(host_key(&url));
                url.set_fragment(None);
                seeds.push(Item { url, depth: 0 });
            }
            Ok(_) => self.record_bad_seed(seed, "not an http(s) URL with a host"),
            Err(err) => self.record_bad_seed(seed, &err.to_string()),
        }
    }

    fn record_bad_seed(&self, seed: &str, why: &str) {
        self.started.set(self.started.get() + 1);
        let record = Record {
            status: None,
            bytes: 0,
            links: 0,
            error: Some((ErrorKind::BadUrl, format!("invalid URL {seed:?}: {why}"))),
            elapsed: Duration::ZERO,
        };
        let outcome = Outcome {
            fetched: true,
            error: Some(ErrorKind::BadUrl),
            ..Outcome::default()
        };
        self.finish(seed, 0, &record, &outcome);
    }

    /// Adds `url` to `links` unless it is too deep, off-host or past the page limit.
    fn admit(&self, mut url: Url, depth: u32, links: &mut Vec<Item>) {
        url.set_fragment(None);
        if self.config.max_depth.is_some_and(|max| depth > max)
            || (!self.frontier.counts_page_budget() && self.limit_reached())
            || (self.config.same_host && !self.hosts.borrow().contains(&host_key(&url)))
        {
            return;
        }
        links.push(Item { url, depth });
    }

    fn work(&self) -> io::Result<()> {
        while let Some(item) = self.frontier.claim()? {
            let mut claimed = Claimed {
                frontier: &*self.frontier,
                item: Some(item),
            };
            let (outcome, links) = self.process(claimed.item.as_ref().expect("claimed"))?;
            let item = claimed.item.take().expect("claimed");
            let new = self.frontier.complete(&item, &outcome, links)?;
            self.progress.queued(new);
        }
        Ok(())
    }

    fn limit_reached(&self) -> bool {
        self.config
            .max_pages
            .is_some_and(|max| self.started.get() >= max)
    }

    fn process(&self, item: &Item) -> io::Result<(Outcome, Vec<Item>)> {
        let local_budget = !self.frontier.counts_page_budget();
        if local_budget && self.limit_reached() {
            self.progress.dropped();
            return Ok((Outcome::default(), Vec::new()));
        }
        if self.config.robots && !self.robots_allow(&item.url)? {
            self.summary.borrow_mut().robots_disallowed += 1;
            self.progress.dropped();
            let outcome = Outcome {
                disallowed: true,
                ..Outcome::default()
            };
            return Ok((outcome, Vec::new()));
        }
        // The robots.txt fetch may have let other workers reach the limit meanwhile.
        if local_budget && self.limit_reached() {
            self.progress.dropped();
            return Ok((Outcome::default(), Vec::new()));
        }
        self.started.set(self.started.get() + 1);
        let mut outcome = Outcome {
            fetched: true,
            ..Outcome::default()
        };
        let mut links = Vec::new();
        let record = self.fetch(item, &mut outcome, &mut links);
        self.finish(item.url.as_str(), item.depth, &record, &outcome);
        Ok((outcome, links))
    }

    /// Fetches one URL, collects its links (or its redirect target) and says what happened.
    fn fetch(&self, item: &Item, outcome: &mut Outcome, links: &mut Vec<Item>) -> Record {
        let start = Instant::now();
        let mut record = Record {
            status: None,
            bytes: 0,
            links: 0,
            error: None,
            elapsed: Duration::ZERO,
        };
        match self.client.get(&item.url).send() {
            Err(err) => record.error = Some((ErrorKind::of(&err), err.to_string())),
            Ok(response) => self.read_response(item, response, &mut record, outcome, links),
        }
        record.elapsed = start.elapsed();
        outcome.status = record.status;
        outcome.bytes = record.bytes;
        outcome.error = record.error.as_ref().map(|e| e.0);
        record
    }

    fn read_response(
        &self,
        item: &Item,
        mut response: ClientResponse,
        record: &mut Record,
        outcome: &mut Outcome,
        links: &mut Vec<Item>,
    ) {
        let status = response.status();
        record.status = Some(status.as_u16());
        if status.is_redirection() {
            if let Some(target) = response
                .header("location")
                .and_then(|loc| response.url().join(loc).ok())
                .filter(|t| matches!(t.scheme(), "http" | "https"))
            {
                // A seed that redirects to another host (example.com → www.example.com) adds
                // that host to the crawl; the target keeps the redirecting URL's depth.
                if item.depth == 0 && self.config.same_host {
                    self.hosts.borrow_mut().insert(host_key(&target));
                }
                outcome.redirect = true;
                self.admit(target, item.depth, links);
            }
        }
        let content_type = response.header("content-type").map(str::to_ascii_lowercase);
        let mut body = Vec::new();
        let read = (&mut response).take(BODY_CAP).read_to_end(&mut body);
        record.bytes = body.len() as u64;
        if let Err(err) = read {
            let err = io_to_http(err, response.url());
            record.error = Some((ErrorKind::of(&err), err.to_string()));
            return;
        }
        if status.is_client_error() || status.is_server_error() {
            let kind = if status.is_client_error() {
                ErrorKind::Status4xx
            } else {
                ErrorKind::Status5xx
            };
            record.error = Some((kind, format!("{status} for {}", response.url())));
            return;
        }
        if !status.is_success() {
            return;
        }
        if !is_html(content_type.as_deref(), &body) {
            outcome.non_html = true;
            return;
        }
        outcome.html = true;
        let found = extract_links(&body);
        record.links = found.hrefs.len();
        let base = found
            .base
            .as_deref()
            .and_then(|b| response.url().join(b).ok())
            .unwrap_or_else(|| response.url().clone());
        let next_depth = item.depth + 1;
        for href in &found.hrefs {
            match normalize(&base, href) {
                Some(url) => self.admit(url, next_depth, links),
                None if is_followable_scheme(href) => outcome.bad_links += 1,
                None => {}
            }
        }
        outcome.links = found.hrefs.len() as u64;
    }

    fn finish(&self, url: &str, depth: u32, record: &Record, outcome: &Outcome) {
        let mut summary = self.summary.borrow_mut();
        summary.pages += 1;
        summary.bytes += record.bytes;
        summary.html += u64::from(outcome.html);
        summary.non_html += u64::from(outcome.non_html);
        summary.redirects += u64::from(outcome.redirect);
        summary.links += outcome.links;
        summary.bad_links += outcome.bad_links;
        if let Some(status) = record.status {
            *summary.statuses.entry(status).or_default() += 1;
        }
        if let Some((kind, _)) = &record.error {
            *summary.errors.entry(*kind).or_default() += 1;
        }
        if record.status.is_some()
            || record
                .error
                .as_ref()
                .is_some_and(|e| e.0 != ErrorKind::BadUrl)
        {
            self.latencies.borrow_mut().push(record.elapsed);
        }
        let errors: u64 = summary.errors.values().sum();
        drop(summary);
        if let Some(out) = self.output.borrow_mut().as_mut() {
            let line = serde_json::json!({
                "url": url,
                "status": record.status,
                "bytes": record.bytes,
                "ms": (record.elapsed.as_secs_f64() * 1e6).round() / 1e3,
                "links": record.links,
                "error": record.error.as_ref().map(|e| e.1.as_str()),
                "kind": record.error.as_ref().map(|e| e.0.as_str()),
                "depth": depth,
            });
            let _ = writeln!(out, "{line}");
        }
        self.progress.fetched(errors);
    }

    /// Whether robots.txt of `url`'s origin allows fetching it (fetching that file the first
    /// time a host is seen; other workers asking meanwhile wait for that fetch).
    fn robots_allow(&self, url: &Url) -> io::Result<bool> {
        let key = url.origin().ascii_serialization();
        loop {
            let pending = match self.robots.borrow().get(&key) {
                Some(RobotsEntry::Ready(robots)) => return Ok(robots.allows_url(url)),
                Some(RobotsEntry::Pending(event)) => Some(event.clone()),
                None => None,
            };
            match pending {
                Some(event) => {
                    event.wait();
                }
                None => break,
            }
        }
        let event = Event::new();
        self.robots
            .borrow_mut()
            .insert(key.clone(), RobotsEntry::Pending(event.clone()));
        // Whatever happens (a kill or an error included), the entry leaves the pending state.
        struct Publish<'a> {
            crawler: &'a Crawler,
            key: &'a str,
            event: Event,
            robots: Option<Robots>,
        }
        impl Drop for Publish<'_> {
            fn drop(&mut self) {
                let robots = Rc::new(self.robots.take().unwrap_or_default());
                self.crawler
                    .robots
                    .borrow_mut()
                    .insert(self.key.to_string(), RobotsEntry::Ready(robots));
                self.event.set();
            }
        }
        let mut publish = Publish {
            crawler: self,
            key: &key,
            event,
            robots: None,
        };
        let body = self
            .frontier
            .robots_txt(&key, &mut || self.fetch_robots(url))?;
        let robots = Robots::parse(&body, &self.agent);
        let allowed = robots.allows_url(url);
        publish.robots = Some(robots);
        drop(publish);
        Ok(allowed)
    }

    /// The body of `url`'s robots.txt; empty (no rules) when it is missing or unreachable.
    fn fetch_robots(&self, url: &Url) -> String {
        let Ok(robots_url) = url.join("/robots.txt") else {
            return String::new();
        };
        self.summary.borrow_mut().robots_fetched += 1;
        match self.client.get(robots_url).send() {
            Ok(response) if response.status().is_success() => {
                let mut body = Vec::new();
                match response.take(ROBOTS_CAP).read_to_end(&mut body) {
                    Ok(_) => String::from_utf8_lossy(&body).into_owned(),
                    Err(_) => String::new(),
                }
            }
            // 4xx: no rules; 5xx or unreachable: assume none rather than stop the crawl.
            _ => String::new(),
        }
    }
}

fn io_to_http(err: io::Error, url: &Url) -> HttpError {
    if err.get_ref().is_some_and(|e| e.is::<HttpError>()) {
        *err.into_inner()
            .expect("checked")
            .downcast::<HttpError>()
            .expect("checked")
    } else {
        HttpError::Body {
            url: url.clone(),
            source: err,
        }
    }
}
