//! A web crawler in plain blocking code: `concurrency` green workers fetch pages with the green
//! HTTP client, extract links with an HTML parser and feed them back into one frontier, kept in
//! this process or shared through Redis by any number of crawler processes on any machines.
//!
//! ```text
//! cargo run --release --example crawl                      # crawl an embedded 5,000-page site
//! cargo run --release --example crawl -- --site-pages 20000 --concurrency 200
//! cargo run --release --example crawl -- https://www.rust-lang.org/ --same-host \
//!     --max-pages 200 --depth 3 --output pages.jsonl
//! cargo run --release --example crawl -- --help
//!
//! # One crawl worked by every process started like this, on this machine or any other:
//! cargo run --release --example crawl -- https://docs.example/ --same-host --per-host 4 \
//!     --frontier redis://redis-host:6379/0 --crawl-id docs --output part-$(hostname)-$$.jsonl
//! cargo run --release --example crawl -- status --frontier redis://redis-host:6379/0 --crawl-id docs
//! ```
//!
//! With no URL it starts an embedded site on a loopback port, served by green's own HTTP server
//! on a second thread (several thousand linked pages of ~1.7 KB, links to missing pages, a few
//! redirects, JSON resources, a robots.txt with a `Disallow`), and crawls all of it.
//!
//! The crawler is the `green-crawl` crate (crates/crawl): its docs say how the workers, the
//! in-memory frontier and the Redis frontier (leases, count-once, politeness across processes,
//! robots.txt shared with a TTL) work. This file is its command line; `RUST_LOG` sets what the
//! logger prints (warnings by default).

fn main() {
    green_crawl::cli::main();
}
