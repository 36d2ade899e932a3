//! The crawler's command line (`examples/crawl.rs`, the `green-crawl` binary).
//!
//! ```text
//! crawl                                         # crawl an embedded 5,000-page site
//! crawl --site-pages 20000 --concurrency 200
//! crawl https://www.rust-lang.org/ --same-host --max-pages 200 --depth 3 --output pages.jsonl
//! # one crawl worked by every process started like this, on any machine:
//! crawl https://docs.example/ --same-host --frontier redis://redis-host:6379/0 --crawl-id docs
//! crawl status --frontier redis://redis-host:6379/0 --crawl-id docs     # or --status
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::frontier::{RedisFrontier, RedisOptions};
use crate::site::{serve_embedded_site_at, Site};
use crate::{crawl, Config, DEFAULT_USER_AGENT};

/// Command line of the crawler.
#[derive(Parser, Debug)]
#[command(
    name = "crawl",
    about = "Crawl web pages concurrently with green threads (no URL: an embedded site)"
)]
pub struct Args {
    /// URLs to start from. None: serve an embedded site on a loopback port and crawl it.
    /// `status` alone: print the totals of a shared crawl (as `--status`).
    pub urls: Vec<String>,
    /// Pages fetched at once (the number of worker greenlets).
    #[arg(short, long, default_value_t = 100)]
    pub concurrency: usize,
    /// Stop after fetching this many pages (in all, with a shared frontier).
    #[arg(short, long)]
    pub max_pages: Option<u64>,
    /// Follow links at most this many hops from the start URLs (0: only the start URLs).
    #[arg(short, long)]
    pub depth: Option<u32>,
    /// Only follow links to the start URLs' hosts (always on for the embedded site).
    #[arg(long)]
    pub same_host: bool,
    /// Seconds allowed for each request: connect, send, and the whole body.
    #[arg(short, long, default_value_t = 10.0)]
    pub timeout: f64,
    /// The User-Agent header; its first word is matched against robots.txt groups.
    #[arg(long, default_value = DEFAULT_USER_AGENT)]
    pub user_agent: String,
    /// Write one JSON line per URL this process fetched: url, status, bytes, ms, links, error,
    /// depth.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(short, long)]
    pub quiet: bool,
    /// Number of pages of the embedded site.
    #[arg(long, default_value_t = 5000)]
    pub site_pages: usize,
    /// Where the embedded site listens (default: a free loopback port).
    #[arg(long, value_name = "ADDR")]
    pub site_addr: Option<String>,
    /// Only serve the embedded site (at --site-addr) until killed; crawl nothing.
    #[arg(long)]
    pub serve_only: bool,
    /// Where the frontier lives: `memory` (this process) or `redis://host:6379/0`, shared by every
    /// process given the same --crawl-id.
    #[arg(long, default_value = "memory", value_name = "memory|URL")]
    pub frontier: String,
    /// The name of a shared crawl.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub crawl_id: String,
    /// Seconds after which a URL claimed by a process that died (or stalled) is handed to
    /// another; also how long a Redis outage is waited out.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub lease: f64,
    /// Requests in flight per host at most (across all processes of a shared crawl).
    #[arg(long, value_name = "N")]
    pub per_host: Option<usize>,
    /// Seconds between the starts of two requests to one host (across all processes).
    #[arg(long, value_name = "SECS")]
    pub delay: Option<f64>,
    /// Seconds a robots.txt stays in the shared frontier.
    #[arg(long, default_value_t = 86400.0, value_name = "SECS")]
    pub robots_ttl: f64,
    /// Print the totals of the shared crawl (queued, in flight, done, errors, pages/s) and exit.
    #[arg(long)]
    pub status: bool,
}

fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.001))
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("crawl: {message}");
    std::process::exit(1);
}

/// Parses the command line, installs a logger (`RUST_LOG`, warnings by default) and runs the
/// crawl, the status query or the site; exits non-zero on a fatal error.
pub fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let shared = (args.frontier != "memory").then(|| RedisOptions {
        lease: secs(args.lease),
        robots_ttl: secs(args.robots_ttl),
        ..RedisOptions::new(&args.frontier, &args.crawl_id)
    });
    if args.status || args.urls == ["status"] {
        let Some(options) = shared else {
            fail(
                "--status needs a shared frontier: --frontier redis://HOST:PORT/DB --crawl-id NAME",
            );
        };
        green_patch::all();
        match RedisFrontier::status(&options.url, &options.crawl_id) {
            Ok(totals) => {
                println!("crawl {} at {}", options.crawl_id, options.url);
                println!("{totals}");
                return;
            }
            Err(err) => fail(err),
        }
    }
    let mut config = Config {
        seeds: args.urls.clone(),
        concurrency: args.concurrency.max(1),
        max_pages: args.max_pages,
        max_depth: args.depth,
        same_host: args.same_host,
        timeout: secs(args.timeout),
        user_agent: args.user_agent.clone(),
        output: args.output.clone(),
        progress: !args.quiet,
        robots: true,
        per_host: args.per_host.map(|n| n.max(1)),
        delay: args.delay.map(secs),
        shared,
    };
    let _site = if config.seeds.is_empty() || args.serve_only {
        let addr = args.site_addr.as_deref().unwrap_or("127.0.0.1:0");
        let site = match serve_embedded_site_at(Site::new(args.site_pages), addr) {
            Ok(site) => site,
            Err(err) => fail(format_args!("cannot start the embedded site: {err}")),
        };
        eprintln!(
            "serving an embedded site of {} pages at {} (green::http::server::Server, own thread)",
            args.site_pages,
            site.url()
        );
        if args.serve_only {
            loop {
                std::thread::park();
            }
        }
        config.seeds.push(site.url());
        config.same_host = true;
        Some(site)
    } else {
        None
    };
    match &config.shared {
        Some(options) => eprintln!(
            "crawling {} start URL(s) with {} green workers, frontier {} crawl {:?}",
            config.seeds.len(),
            config.concurrency,
            options.url,
            options.crawl_id
        ),
        None => eprintln!(
            "crawling {} start URL(s) with {} green workers",
            config.seeds.len(),
            config.concurrency
        ),
    }
    let crawl_id = config.shared.as_ref().map(|o| o.crawl_id.clone());
    match crawl(config) {
        Ok(summary) => {
            println!("{summary}");
            let finished = summary
                .shared
                .as_ref()
                .is_some_and(|t| t.state == Some(crate::frontier::CrawlState::Finished));
            if let (true, 0, Some(id)) = (finished, summary.pages, crawl_id) {
                eprintln!("crawl {id:?} is finished: nothing was left to fetch");
            }
        }
        Err(err) => fail(err),
    }
}
