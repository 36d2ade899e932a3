//! The embedded site the crawler serves when it is given no URL, and that tests and benchmarks
//! crawl: a deterministic link graph with every case a crawler must handle, served by green's
//! own HTTP server on a thread of its own.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use green_http::server::{Body, Server};
use green_http::Request;

/// A deterministic site of `pages` linked pages of ~1.7 KB.
///
/// * `/` links to `/page/0.html` and to things a crawler must skip: `mailto:`, `javascript:`, a
///   fragment, another host.
/// * `/page/{i}.html` links to pages `2i+1` and `2i+2` (so every page is reachable), its parent,
///   three pseudo-random pages written absolute, relative (`../page/…`) and with a fragment, and:
///   every 37th page (i % 37 == 5) to `/missing/{i}.html` (404), every 101st (i % 101 == 3) to
///   `/r/{i}` (301 to `/moved/{i}.html`, a page linked from nowhere else), every 53rd
///   (i % 53 == 11) to `/data/{i}.json` (JSON), every 71st (i % 71 == 2) to `/private/{i}.html`
///   (disallowed by robots.txt), every 89th (i % 89 == 0) to another host.
/// * `/slow/{ms}` answers after `ms` milliseconds; anything else is a 404.
#[derive(Debug, Clone)]
pub struct Site {
    pages: usize,
    delay: Duration,
}

/// A response of the site, before it becomes an HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteResponse {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Location of a redirect.
    pub location: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

const ROBOTS_TXT: &str = "# green's embedded site\nUser-agent: *\nDisallow: /private/\n\n\
                          User-agent: BadBot\nDisallow: /\n";

const FILLER: &str = "Green threads let plain blocking code wait on thousands of sockets at \
                      once: each greenlet parks on the hub while its request is in flight, and \
                      the hub resumes it when the socket is ready. ";

impl Site {
    /// A site of `pages` pages (at least 1).
    pub fn new(pages: usize) -> Site {
        Site {
            pages: pages.max(1),
            delay: Duration::ZERO,
        }
    }

    /// Every page answers after `delay` (to make requests overlap in tests).
    pub fn with_delay(mut self, delay: Duration) -> Site {
        self.delay = delay;
        self
    }

    /// The number of pages.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// The hrefs of page `i`, as written in its HTML.
    pub fn links(&self, i: usize) -> Vec<String> {
        let n = self.pages;
        let mut links = Vec::new();
        for child in [2 * i + 1, 2 * i + 2] {
            if child < n {
                links.push(format!("/page/{child}.html"));
            }
        }
        if i > 0 {
            links.push(format!("/page/{}.html", (i - 1) / 2));
        }
        links.push(format!("/page/{}.html", (i * 31 + 7) % n));
        links.push(format!("../page/{}.html", (i * 97 + 13) % n));
        links.push(format!("{}.html#section-2", (i + 1) % n));
        if i % 37 == 5 {
            links.push(format!("/missing/{i}.html"));
        }
        if i % 101 == 3 {
            links.push(format!("/r/{i}"));
        }
        if i % 53 == 11 {
            links.push(format!("/data/{i}.json"));
        }
        if i % 71 == 2 {
            links.push(format!("/private/{i}.html"));
        }
        if i.is_multiple_of(89) {
            links.push(format!("http://elsewhere.invalid/{i}.html"));
        }
        links
    }

    fn html(title: &str, links: &[String], filler: usize) -> Vec<u8> {
        let mut html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{title}</title></head>\n<body><h1 id=\"top\">{title}</h1>\n"
        );
        for p in 0..filler {
            html.push_str("<p>");
            html.push_str(&FILLER[p * 7 % 40..]);
            html.push_str("</p>\n");
        }
        html.push_str("<ul id=\"section-2\">\n");
        for (k, href) in links.iter().enumerate() {
            html.push_str(&format!("<li><a href=\"{href}\">link {k}</a></li>\n"));
        }
        html.push_str("</ul></body></html>\n");
        html.into_bytes()
    }

    /// The page body of page `i`.
    pub fn page(&self, i: usize) -> Vec<u8> {
        Site::html(&format!("Page {i}"), &self.links(i), 7)
    }

    fn page_number(path: &str, prefix: &str, suffix: &str) -> Option<usize> {
        path.strip_prefix(prefix)?
            .strip_suffix(suffix)?
            .parse()
            .ok()
    }

    /// The answer to a GET of `path`.
    pub fn respond(&self, path: &str) -> SiteResponse {
        let ok = |content_type, body: Vec<u8>| SiteResponse {
            status: 200,
            content_type,
            location: None,
            body,
        };
        const HTML: &str = "text/html; charset=utf-8";
        let n = self.pages;
        if path == "/" {
            let links = [
                "/page/0.html",
                "#top",
                "mailto:webmaster@example.invalid",
                "javascript:void(0)",
                "http://elsewhere.invalid/",
            ]
            .map(String::from);
            return ok(HTML, Site::html("Index", &links, 1));
        }
        if path == "/robots.txt" {
            return ok("text/plain", ROBOTS_TXT.as_bytes().to_vec());
        }
        if let Some(i) = Site::page_number(path, "/page/", ".html").filter(|&i| i < n) {
            return ok(HTML, self.page(i));
        }
        if Site::page_number(path, "/private/", ".html")
            .filter(|&i| i < n)
            .is_some()
        {
            return ok(HTML, Site::html("Private", &[], 1));
        }
        let redirected = |i: usize| i < n && i % 101 == 3;
        if let Some(i) = Site::page_number(path, "/r/", "").filter(|&i| redirected(i)) {
            return SiteResponse {
                status: 301,
                content_type: HTML,
                location: Some(format!("/moved/{i}.html")),
                body: b"<a href=\"/moved\">moved</a>".to_vec(),
            };
        }
        if let Some(i) = Site::page_number(path, "/moved/", ".html").filter(|&i| redirected(i)) {
            let links = [format!("/page/{i}.html"), "../page/0.html".to_string()];
            return ok(HTML, Site::html(&format!("Moved {i}"), &links, 2));
        }
        if let Some(i) = Site::page_number(path, "/data/", ".json").filter(|&i| i < n) {
            return ok(
                "application/json",
                format!("{{\"page\": {i}, \"href\": \"/page/0.html\"}}").into_bytes(),
            );
        }
        if let Some(ms) = Site::page_number(path, "/slow/", "") {
            green_runtime::sleep(Duration::from_millis(ms as u64));
            return ok(HTML, Site::html("Slow", &[], 1));
        }
        SiteResponse {
            status: 404,
            content_type: HTML,
            location: None,
            body: b"<!DOCTYPE html><title>Not found</title><h1>404 Not Found</h1>\n".to_vec(),
        }
    }
}

/// Counters kept by the embedded site's server (shared with the crawling thread).
#[derive(Debug, Default)]
pub struct SiteStats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Requests being answered now.
    pub in_flight: AtomicU64,
    /// The most requests answered at once.
    pub max_in_flight: AtomicU64,
    /// Requests for `/private/…` (robots.txt disallows them).
    pub private_requests: AtomicU64,
    /// Requests for `/robots.txt`.
    pub robots_requests: AtomicU64,
    /// Requests by path (and query), to tell which URLs were fetched more than once.
    pub by_path: Mutex<HashMap<String, u32>>,
}

impl SiteStats {
    /// How many times each path was requested.
    pub fn requests_by_path(&self) -> HashMap<String, u32> {
        self.by_path
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The running embedded site: its address and counters. Dropping it stops the server.
#[derive(Debug)]
pub struct SiteHandle {
    addr: SocketAddr,
    stats: Arc<SiteStats>,
    stop: Option<green_runtime::xchan::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SiteHandle {
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The server's counters.
    pub fn stats(&self) -> &SiteStats {
        &self.stats
    }
}

impl Drop for SiteHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `site` with green's HTTP server on 127.0.0.1 (a free port), on a thread of its own
/// (its own hub), until the handle is dropped.
pub fn serve_embedded_site(site: Site) -> io::Result<SiteHandle> {
    serve_embedded_site_at(site, "127.0.0.1:0")
}

/// [`serve_embedded_site`] on a given address (`127.0.0.1:8080`), so that crawlers in other
/// processes or on other machines can be pointed at it.
pub fn serve_embedded_site_at(site: Site, addr: &str) -> io::Result<SiteHandle> {
    let stats = Arc::new(SiteStats::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = green_runtime::xchan::channel::<()>();
    let thread_stats = stats.clone();
    let addr = addr.to_string();
    let thread = thread::Builder::new()
        .name("embedded-site".into())
        .spawn(move || {
            let started = Server::bind(addr.as_str()).and_then(|server| {
                server
                    .keep_alive_timeout(Duration::from_secs(5))
                    .start(move |request| site_handler(&site, &thread_stats, &request))
            });
            match started {
                Ok(server) => {
                    let _ = ready_tx.send(Ok(server.local_addr()));
                    let _ = stop_rx.recv();
                    server.stop(Duration::from_millis(200));
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                }
            }
        })?;
    let addr = ready_rx
        .recv()
        .map_err(|_| io::Error::other("the site's thread died"))??;
    Ok(SiteHandle {
        addr,
        stats,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

fn site_handler(
    site: &Site,
    stats: &SiteStats,
    request: &Request<Body>,
) -> green_http::Response<Body> {
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let path = request.uri().path();
    if path.starts_with("/private/") {
        stats.private_requests.fetch_add(1, Ordering::SeqCst);
    }
    if path == "/robots.txt" {
        stats.robots_requests.fetch_add(1, Ordering::SeqCst);
    }
    if let Ok(mut by_path) = stats.by_path.lock() {
        *by_path.entry(path.to_string()).or_default() += 1;
    }
    if !site.delay.is_zero() {
        green_runtime::sleep(site.delay);
    }
    let answer = site.respond(path);
    let mut response = green_http::Response::builder()
        .status(answer.status)
        .header("content-type", answer.content_type);
    if let Some(location) = &answer.location {
        response = response.header("location", location.as_str());
    }
    stats.requests.fetch_add(1, Ordering::SeqCst);
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
        .body(Body::from(answer.body))
        .expect("valid response parts")
}
