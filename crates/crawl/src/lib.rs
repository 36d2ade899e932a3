//! A web crawler on green threads: plain blocking code in `concurrency` greenlets, with its
//! frontier in memory or in Redis, shared by any number of crawler processes on any machines.
//!
//! ```no_run
//! use green_crawl::{crawl, Config, RedisOptions};
//!
//! // One process, the frontier in memory.
//! let summary = crawl(Config {
//!     seeds: vec!["http://127.0.0.1:8080/".into()],
//!     same_host: true,
//!     ..Config::default()
//! })?;
//! println!("{summary}");
//!
//! // The same crawl worked by every process (on any machine) that runs this with the same id.
//! let summary = crawl(Config {
//!     seeds: vec!["http://127.0.0.1:8080/".into()],
//!     same_host: true,
//!     per_host: Some(4),
//!     shared: Some(RedisOptions::new("redis://127.0.0.1:6379/0", "docs")),
//!     ..Config::default()
//! })?;
//! println!("{summary}");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The command line is `examples/crawl.rs` of the `green` repository (`cargo run --release
//! --example crawl -- --help`) and this crate's `green-crawl` binary; both are [`cli::main`].
//!
//! # How it works
//!
//! `concurrency` worker greenlets loop on the [`Frontier`]: claim a URL, ask robots.txt
//! (fetched once per host per crawl; workers wanting the same host wait for that one fetch),
//! `GET` it, read the body, extract links, complete it with its outcome and its links (those not
//! seen before are queued). Redirects are not followed inside the client: the target enters the
//! frontier (at the same depth), so every URL is fetched once and counted once.
//!
//! [`MemoryFrontier`] (the default) is a green queue, a seen set and counters in this process.
//! [`RedisFrontier`] keeps the same state in Redis, reached with the unchanged `redis` crate
//! made green by `green_patch`: URLs are leased (a sorted set of in-flight URLs with their
//! expiry), so that a process that dies leaves URLs any other re-queues after the lease; each
//! URL's outcome is counted once; per-host limits and delays hold across processes; claims and
//! completions are batched into one Lua script call each.
//!
//! Bad URLs, refused connections, timeouts, TLS failures and error statuses are counted by kind
//! and reported, never fatal; bodies that are not HTML (by Content-Type) are counted, not parsed.
//!
//! # Caveats
//!
//! * See [`RedisFrontier`]'s caveats for the shared frontier (leases are not renewed; give every
//!   process the same seeds).
//! * Links are extracted by `tl`, which does not decode entities beyond those URLs contain.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

mod crawler;
mod frontier;
mod links;
mod progress;
mod report;
mod robots;
mod site;

#[cfg(feature = "cli")]
pub mod cli;

pub use crawler::{crawl, crawl_with, Config, DEFAULT_USER_AGENT};
pub use frontier::{
    host_key, CrawlState, Frontier, Item, MemoryFrontier, Outcome, RedisFrontier, RedisOptions,
    Totals,
};
pub use links::{extract_links, is_html, normalize, Links};
pub use report::{ErrorKind, Latency, Summary};
pub use robots::{robots_path, Robots};
pub use site::{
    serve_embedded_site, serve_embedded_site_at, Site, SiteHandle, SiteResponse, SiteStats,
};
