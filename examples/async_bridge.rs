//! A crawler pool whose pages are stored through an async client: blocking-style green HTTP
//! fetches the pages, reqwest's async client (through `green::tokio::block_on`) stores them. Both
//! run in the same greenlets, overlapping on one thread.
//!
//! Run: `cargo run --release --features tokio --example async_bridge -- [PAGES] [CONCURRENCY]`
//! starts two local servers on their own hub threads — a site of PAGES linked pages (default 500)
//! and a page store taking `PUT /pages/<n>` — then crawls the site from `/0` with a pool of
//! CONCURRENCY greenlets (default 50), storing each page as it is fetched. Each server answers
//! after 5 ms, so one request at a time would take PAGES × 10 ms.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use green::http::server::{Body, Server};
use green::http::Response;
use green::HubThread;

/// How long each local server takes to answer.
const SERVER_DELAY: Duration = Duration::from_millis(5);

/// What a crawl did.
#[derive(Debug)]
pub struct Report {
    /// Pages fetched from the site.
    pub fetched: usize,
    /// Pages the store acknowledged.
    pub stored: usize,
    /// Fetches or stores that failed, with why.
    pub errors: Vec<String>,
    /// Wall time of the crawl.
    pub elapsed: Duration,
}

/// Starts a green HTTP server running `handler` on a hub thread of its own.
fn serve_on_hub<H>(handler: H) -> (HubThread, SocketAddr)
where
    H: Fn(green::http::Request<Body>) -> Response<Body> + Send + 'static,
{
    let listener = green::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    let hub = green::spawn_hub();
    hub.spawn(move || Server::from_listener(listener).serve(handler));
    (hub, addr)
}

/// A site of `pages` pages: page `n` links to `2n + 1`, `2n + 2` and `7n mod pages`.
pub fn start_site(pages: usize) -> (HubThread, SocketAddr) {
    serve_on_hub(move |req| {
        green::sleep(SERVER_DELAY);
        let n: usize = req.uri().path()[1..].parse().unwrap_or(usize::MAX);
        if n >= pages {
            let mut response = Response::new(Body::from("no such page"));
            *response.status_mut() = green::http::StatusCode::NOT_FOUND;
            return response;
        }
        let links: String = [2 * n + 1, 2 * n + 2, 7 * n % pages]
            .into_iter()
            .filter(|&link| link < pages)
            .map(|link| format!("<a href=\"/{link}\">page {link}</a>\n"))
            .collect();
        Response::new(Body::from(format!(
            "<html><h1>page {n}</h1>\n{links}</html>"
        )))
    })
}

/// A page store: `PUT /pages/<n>` keeps the body's length under the path.
pub fn start_store() -> (HubThread, SocketAddr, Arc<Mutex<HashMap<String, usize>>>) {
    let stored = Arc::new(Mutex::new(HashMap::new()));
    let map = stored.clone();
    let (hub, addr) = serve_on_hub(move |req| {
        green::sleep(SERVER_DELAY);
        let path = req.uri().path().to_string();
        let mut body = Vec::new();
        if req.into_body().read_to_end(&mut body).is_err() {
            let mut response = Response::new(Body::from("bad body"));
            *response.status_mut() = green::http::StatusCode::BAD_REQUEST;
            return response;
        }
        map.lock().unwrap().insert(path, body.len());
        let mut response = Response::new(Body::empty());
        *response.status_mut() = green::http::StatusCode::CREATED;
        response
    });
    (hub, addr, stored)
}

/// The `href="/..."` targets in `html`.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// Fetches one page (green, blocking-style) and stores it (async reqwest); returns its links.
fn fetch_and_store(
    site: SocketAddr,
    store: SocketAddr,
    client: &reqwest::Client,
    path: &str,
) -> Result<Vec<String>, String> {
    let page = green::http::get(format!("http://{site}{path}").as_str())
        .and_then(|response| response.text())
        .map_err(|e| format!("fetch {path}: {e}"))?;
    let found = links(&page);
    let put = client.put(format!("http://{store}/pages{path}")).body(page);
    green::tokio::block_on(async move { put.send().await?.error_for_status() })
        .map_err(|e| format!("store {path}: {e}"))?;
    Ok(found)
}

/// Crawls `site` from `/0`, breadth first, `concurrency` pages at a time, storing every page.
pub fn crawl(site: SocketAddr, store: SocketAddr, concurrency: usize) -> Report {
    let start = Instant::now();
    let client = reqwest::Client::new();
    let pool = green::Pool::new(concurrency);
    let mut seen: HashSet<String> = HashSet::from(["/0".to_string()]);
    let mut level = vec!["/0".to_string()];
    let (mut fetched, mut errors) = (0, Vec::new());
    while !level.is_empty() {
        let client = client.clone();
        let results = pool.map(level, move |path| {
            fetch_and_store(site, store, &client, &path)
        });
        let mut next = Vec::new();
        for result in results {
            match result {
                Ok(Ok(found)) => {
                    fetched += 1;
                    next.extend(found.into_iter().filter(|link| seen.insert(link.clone())));
                }
                Ok(Err(err)) => errors.push(err),
                Err(err) => errors.push(format!("greenlet: {err}")),
            }
        }
        level = next;
    }
    Report {
        fetched,
        stored: 0,
        errors,
        elapsed: start.elapsed(),
    }
}

/// Starts both servers, crawls, and counts what the store holds.
pub fn run(pages: usize, concurrency: usize) -> Report {
    let (site_hub, site) = start_site(pages);
    let (store_hub, store, stored) = start_store();
    let mut report = crawl(site, store, concurrency);
    report.stored = stored.lock().unwrap().len();
    site_hub.stop();
    store_hub.stop();
    report
}

#[allow(dead_code)]
fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let pages = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let concurrency = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let report = run(pages, concurrency);
    println!(
        "crawled {} pages, stored {}, {} errors, in {:.2?} ({} greenlets; one at a time: ~{:.1?})",
        report.fetched,
        report.stored,
        report.errors.len(),
        report.elapsed,
        concurrency,
        SERVER_DELAY * 2 * pages as u32,
    );
    for error in report.errors.iter().take(10) {
        println!("  {error}");
    }
}
