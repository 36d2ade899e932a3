//! The crawl's shared state behind one small interface: the frontier (URLs to fetch), the seen
//! set, per-host politeness, robots.txt bodies and the totals.
//!
//! [`MemoryFrontier`] keeps them in this process (one hub, plain `RefCell`s and a green
//! [`Queue`](green_runtime::sync::Queue)); [`RedisFrontier`] keeps them in Redis so that any
//! number of crawler processes, on any number of machines, work one crawl together.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::time::Duration;

use green_http::client::Url;

use crate::report::ErrorKind;

mod memory;
mod redis;

pub use self::memory::MemoryFrontier;
pub use self::redis::{RedisFrontier, RedisOptions};

/// One URL of the frontier and how many links away from a seed it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The URL (no fragment).
    pub url: Url,
    /// Links followed from a seed (0 for a seed; a redirect keeps its source's depth).
    pub depth: u32,
}

/// What handling one claimed URL added to the crawl's totals; a URL's outcome is counted once
/// even when the URL was handled twice (its first handler died before completing it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The URL was requested (a response or a failure); false when it was skipped.
    pub fetched: bool,
    /// The response's status code.
    pub status: Option<u16>,
    /// Why the fetch failed.
    pub error: Option<ErrorKind>,
    /// Body bytes received.
    pub bytes: u64,
    /// An HTML page whose links were extracted.
    pub html: bool,
    /// A body not parsed because it is not HTML.
    pub non_html: bool,
    /// A 3xx whose target was queued.
    pub redirect: bool,
    /// Links found in the page.
    pub links: u64,
    /// Links that were not valid URLs.
    pub bad_links: u64,
    /// robots.txt disallows the URL: it was not fetched.
    pub disallowed: bool,
}

/// The state of a crawl in a shared frontier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlState {
    /// Nothing was ever queued under this crawl id.
    NotStarted,
    /// URLs are queued or in flight.
    Running,
    /// Nothing is queued or in flight (or the page budget is spent).
    Finished,
}

/// The totals of a crawl, as every process sees them (each URL counted once).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Whether the crawl is running or finished.
    pub state: Option<CrawlState>,
    /// URLs waiting to be fetched.
    pub queued: u64,
    /// URLs claimed by a process and not completed yet (leases).
    pub in_flight: u64,
    /// URLs fetched (a response or a failure).
    pub pages: u64,
    /// HTML pages whose links were extracted.
    pub html: u64,
    /// Bodies that are not HTML.
    pub non_html: u64,
    /// Redirects followed.
    pub redirects: u64,
    /// Body bytes.
    pub bytes: u64,
    /// Links found.
    pub links: u64,
    /// URLs robots.txt disallowed.
    pub robots_disallowed: u64,
    /// robots.txt files fetched.
    pub robots_fetched: u64,
    /// Leases that expired (their process died or stalled) and were queued again.
    pub requeued: u64,
    /// Responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Failures by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// From the first claim to the last completion.
    pub elapsed: Duration,
}

impl Totals {
    /// Pages per second from the first claim to the last completion.
    pub fn rate(&self) -> f64 {
        self.pages as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            Some(CrawlState::Running) => "running",
            Some(CrawlState::Finished) => "finished",
            Some(CrawlState::NotStarted) | None => "not started",
        };
        writeln!(f, "state: {state}")?;
        writeln!(f, "queued: {}", self.queued)?;
        writeln!(f, "in flight: {}", self.in_flight)?;
        writeln!(f, "done: {}", self.pages)?;
        writeln!(
            f,
            "html: {}, not html: {}, redirects: {}, bytes: {}, links: {}",
            self.html, self.non_html, self.redirects, self.bytes, self.links
        )?;
        writeln!(
            f,
            "robots.txt: {} fetched, {} URLs disallowed",
            self.robots_fetched, self.robots_disallowed
        )?;
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        writeln!(f, "status: {}", crate::report::or_none(&statuses))?;
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{}: {n}", k.as_str()))
            .collect();
        writeln!(f, "errors: {}", crate::report::or_none(&errors))?;
        writeln!(f, "requeued after an expired lease: {}", self.requeued)?;
        write!(
            f,
            "pages/s: {:.0} ({} pages in {:.2} s)",
            self.rate(),
            self.pages,
            self.elapsed.as_secs_f64()
        )
    }
}

/// The crawl's shared state: what to fetch next, what was seen, politeness, robots.txt, totals.
///
/// Workers (greenlets of one hub) loop on [`claim`](Frontier::claim) and
/// [`complete`](Frontier::complete); every call may park the calling greenlet.
pub trait Frontier {
    /// Queues the items whose URL this crawl has not seen; returns how many were new when the
    /// frontier knows at once (0 otherwise).
    fn push(&self, items: Vec<Item>) -> io::Result<u64>;

    /// The next URL to fetch, once politeness allows; waits while other fetches may still queue
    /// links. `None` when the crawl is finished (nothing queued, nothing in flight, or the page
    /// budget is spent).
    fn claim(&self) -> io::Result<Option<Item>>;

    /// Marks a claimed item done: its outcome joins the totals (once per URL) and its `links`
    /// are queued (those not seen before). Returns how many links were new when the frontier
    /// knows at once (0 otherwise).
    fn complete(&self, item: &Item, outcome: &Outcome, links: Vec<Item>) -> io::Result<u64>;

    /// Gives a claimed item up without an outcome (its handling failed or was killed): the
    /// in-memory frontier drops it; a shared frontier leaves it leased, so that it is queued
    /// again when the lease expires.
    fn abandon(&self, item: &Item) {
        let _ = self.complete(item, &Outcome::default(), Vec::new());
    }

    /// The robots.txt body of `origin` for this crawl: `fetch` runs once per origin for the
    /// whole crawl (other callers, in any process, wait for its result).
    fn robots_txt(&self, origin: &str, fetch: &mut dyn FnMut() -> String) -> io::Result<String>;

    /// Whether the frontier enforces `max_pages` itself (across processes).
    fn counts_page_budget(&self) -> bool {
        false
    }

    /// Sends what is still buffered (completions) and stops background work.
    fn finish(&self) -> io::Result<()> {
        Ok(())
    }

    /// The shared totals, for frontiers shared by several processes.
    fn totals(&self) -> io::Result<Option<Totals>> {
        Ok(None)
    }

    /// Requests this process made to a shared store so far.
    fn round_trips(&self) -> u64 {
        0
    }
}

/// `host:port`, the key of per-host politeness and of `--same-host`.
pub fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}
