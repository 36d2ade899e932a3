//! The crawler (`green_crawl`, what `examples/crawl.rs` runs) with its in-memory frontier
//! against its embedded site, served by green's HTTP server on a thread of its own: exact page
//! counts from an independent walk of the same link graph, the limits, the concurrency bound,
//! per-host politeness, failures counted, JSON-lines output, robots.txt.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use green_crawl::{
    crawl, extract_links, normalize, robots_path, serve_embedded_site, Config, ErrorKind, Robots,
    Site, SiteHandle, Summary,
};
use green_http::client::Url;

/// What a crawl of `site` from `/` must find, walked without sockets or the crawler's code: the
/// same FIFO order a single worker takes, hrefs found by plain string search.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    pages: u64,
    html: u64,
    non_html: u64,
    redirects: u64,
    disallowed: u64,
    statuses: BTreeMap<u16, u64>,
}

fn walk(site: &Site, max_depth: Option<u32>) -> Expected {
    let root = Url::parse("http://127.0.0.1:9/").unwrap();
    let mut expected = Expected::default();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::new();
    let mut push = |url: Url, depth: u32, queue: &mut VecDeque<(Url, u32)>| {
        let mut url = url;
        url.set_fragment(None);
        let same_host = url.host_str() == root.host_str() && url.port() == root.port();
        let http = url.scheme() == "http";
        if http && same_host && max_depth.is_none_or(|max| depth <= max) && seen.insert(url.clone())
        {
            queue.push_back((url, depth));
        }
    };
    push(root.clone(), 0, &mut queue);
    while let Some((url, depth)) = queue.pop_front() {
        if url.path().starts_with("/private/") {
            expected.disallowed += 1;
            continue;
        }
        let answer = site.respond(url.path());
        expected.pages += 1;
        *expected.statuses.entry(answer.status).or_default() += 1;
        if let Some(location) = &answer.location {
            expected.redirects += 1;
            push(url.join(location).unwrap(), depth, &mut queue);
        }
        if answer.status != 200 {
            continue;
        }
        if !answer.content_type.starts_with("text/html") {
            expected.non_html += 1;
            continue;
        }
        expected.html += 1;
        let body = String::from_utf8(answer.body).unwrap();
        for chunk in body.split("href=\"").skip(1) {
            let href = &chunk[..chunk.find('"').unwrap()];
            if let Ok(next) = url.join(href) {
                push(next, depth + 1, &mut queue);
            }
        }
    }
    expected
}

fn got(summary: &Summary) -> Expected {
    Expected {
        pages: summary.pages,
        html: summary.html,
        non_html: summary.non_html,
        redirects: summary.redirects,
        disallowed: summary.robots_disallowed,
        statuses: summary.statuses.clone(),
    }
}

fn config(site: &SiteHandle, concurrency: usize) -> Config {
    Config {
        seeds: vec![site.url()],
        concurrency,
        same_host: true,
        timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("green-crawl-{}-{name}", std::process::id()))
}

#[test]
fn crawls_every_reachable_page_of_the_embedded_site_exactly_once() {
    let site = Site::new(2000);
    let expected = walk(&site, None);
    assert!(expected.pages > 2000 && expected.statuses[&404] > 10 && expected.redirects > 10);
    let server = serve_embedded_site(site).unwrap();
    let summary = crawl(config(&server, 50)).unwrap();
    assert_eq!(got(&summary), expected, "{summary}");
    // Every URL fetched once: the server saw each page and robots.txt once, nothing more.
    assert_eq!(
        server.stats().requests.load(Ordering::SeqCst),
        expected.pages + 1
    );
    assert_eq!(
        summary.errors_of(ErrorKind::Status4xx),
        expected.statuses[&404]
    );
    assert_eq!(
        summary.errors.values().sum::<u64>(),
        expected.statuses[&404]
    );
    assert!(summary.bytes > 2000 * 1600, "{} bytes", summary.bytes);
    assert!(summary.latency.p50 <= summary.latency.p99);
}

#[test]
fn max_pages_stops_after_exactly_that_many_fetches() {
    let server = serve_embedded_site(Site::new(500)).unwrap();
    let summary = crawl(Config {
        max_pages: Some(100),
        ..config(&server, 10)
    })
    .unwrap();
    assert_eq!(summary.pages, 100, "{summary}");
    assert_eq!(server.stats().requests.load(Ordering::SeqCst), 101);
}

#[test]
fn depth_limits_how_many_hops_are_followed() {
    let site = Site::new(1000);
    let expected = walk(&site, Some(3));
    let server = serve_embedded_site(site).unwrap();
    // One worker takes the frontier in order, so the walk is exactly the expected one.
    let summary = crawl(Config {
        max_depth: Some(3),
        ..config(&server, 1)
    })
    .unwrap();
    assert_eq!(got(&summary), expected, "{summary}");
    assert!(
        expected.pages < 100,
        "depth 3 reaches only part of the site"
    );

    let output = temp_path("depth.jsonl");
    let summary = crawl(Config {
        max_depth: Some(0),
        output: Some(output.clone()),
        ..config(&server, 20)
    })
    .unwrap();
    assert_eq!(summary.pages, 1, "{summary}");
    let text = std::fs::read_to_string(&output).unwrap();
    std::fs::remove_file(&output).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["depth"], 0);
    assert_eq!(line["links"], 5);
}

#[test]
fn requests_in_flight_never_exceed_the_concurrency() {
    let server = serve_embedded_site(Site::new(150).with_delay(Duration::from_millis(3))).unwrap();
    let summary = crawl(config(&server, 8)).unwrap();
    let max = server.stats().max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 8, "{max} requests at once with 8 workers");
    assert!(max >= 2, "the workers never overlapped");
    assert!(summary.pages > 150, "{summary}");
}

#[test]
fn refused_connections_tls_failures_bad_urls_and_non_html_bodies_are_counted_not_fatal() {
    let server = serve_embedded_site(Site::new(100)).unwrap();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let summary = crawl(Config {
        seeds: vec![
            format!("http://{closed}/"),
            format!("{}data/11.json", server.url()),
            "not a url".to_string(),
            "ftp://example.invalid/file".to_string(),
            format!("{}missing/5.html", server.url()),
            // TLS to a plain-HTTP server: the handshake fails.
            format!("https://{}/", server.addr()),
        ],
        max_depth: Some(0),
        ..config(&server, 4)
    })
    .unwrap();
    assert_eq!(summary.pages, 6, "{summary}");
    assert_eq!(summary.errors_of(ErrorKind::Connect), 1, "{summary}");
    assert_eq!(summary.errors_of(ErrorKind::Tls), 1, "{summary}");
    assert_eq!(summary.errors_of(ErrorKind::BadUrl), 2, "{summary}");
    assert_eq!(summary.errors_of(ErrorKind::Status4xx), 1, "{summary}");
    assert_eq!(summary.non_html, 1, "{summary}");
    assert_eq!(summary.html, 0, "{summary}");
    assert_eq!(summary.status(200), 1);
    assert_eq!(summary.status(404), 1);
    let report = summary.to_string();
    assert!(
        report.contains("connect: 1") && report.contains("bad url: 2"),
        "{report}"
    );
}

#[test]
fn a_stalled_response_is_counted_as_a_timeout() {
    let server = serve_embedded_site(Site::new(10)).unwrap();
    let summary = crawl(Config {
        seeds: vec![format!("{}slow/3000", server.url())],
        timeout: Duration::from_millis(200),
        ..config(&server, 2)
    })
    .unwrap();
    assert_eq!(summary.pages, 1, "{summary}");
    assert_eq!(summary.errors_of(ErrorKind::Timeout), 1, "{summary}");
}

#[test]
fn output_has_one_json_line_per_fetched_url() {
    let site = Site::new(300);
    let expected = walk(&site, None);
    let server = serve_embedded_site(site).unwrap();
    let output = temp_path("output.jsonl");
    let summary = crawl(Config {
        output: Some(output.clone()),
        ..config(&server, 16)
    })
    .unwrap();
    let text = std::fs::read_to_string(&output).unwrap();
    std::fs::remove_file(&output).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, summary.pages);
    assert_eq!(lines.len() as u64, expected.pages);
    let urls: HashSet<&str> = lines.iter().map(|l| l["url"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), lines.len(), "a URL was fetched twice");
    let mut statuses = BTreeMap::new();
    for line in &lines {
        let status = line["status"].as_u64().unwrap() as u16;
        *statuses.entry(status).or_insert(0) += 1;
        assert!(line["ms"].as_f64().unwrap() >= 0.0);
        assert!(line["bytes"].as_u64().unwrap() > 0);
        assert_eq!(line["error"].is_null(), status < 400, "{line}");
        if line["url"].as_str().unwrap().contains("/page/") {
            assert!(line["links"].as_u64().unwrap() >= 4, "{line}");
        }
    }
    assert_eq!(statuses, expected.statuses);
    let bytes: u64 = lines.iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
    assert_eq!(bytes, summary.bytes);
}

#[test]
fn robots_txt_disallow_is_honoured_and_fetched_once_per_host() {
    let site = Site::new(1000);
    let expected = walk(&site, None);
    assert!(expected.disallowed > 5);
    let server = serve_embedded_site(site).unwrap();
    let summary = crawl(config(&server, 100)).unwrap();
    assert_eq!(server.stats().private_requests.load(Ordering::SeqCst), 0);
    assert_eq!(summary.robots_disallowed, expected.disallowed, "{summary}");
    assert_eq!(server.stats().robots_requests.load(Ordering::SeqCst), 1);
    assert_eq!(summary.robots_fetched, 1);

    // The site's robots.txt shuts out BadBot entirely.
    let summary = crawl(Config {
        user_agent: "BadBot/1.0".to_string(),
        ..config(&server, 4)
    })
    .unwrap();
    assert_eq!(summary.pages, 0, "{summary}");
    assert_eq!(summary.robots_disallowed, 1);
}

#[test]
fn robots_rules_take_the_longest_match_and_the_agents_own_group() {
    let text = "User-agent: *\nDisallow: /private/\nAllow: /private/open$\n\
                Disallow: /*.pdf$\n\nUser-agent: green-crawl\nUser-agent: other\n\
                Disallow: /green-only\n";
    let star = Robots::parse(text, "somebot");
    assert!(!star.allows("/private/x"));
    assert!(star.allows("/private/open"));
    assert!(!star.allows("/private/open/more"));
    assert!(!star.allows("/docs/a.pdf"));
    assert!(star.allows("/docs/a.pdf?x=1"));
    assert!(star.allows("/green-only"));
    let mine = Robots::parse(text, "green-crawl");
    assert!(mine.allows("/private/x"));
    assert!(!mine.allows("/green-only/page"));
    assert!(Robots::parse("User-agent: *\nDisallow:\n", "x").allows("/anything"));
}

#[test]
fn links_are_extracted_with_base_entities_and_fragments_resolved() {
    let html = br#"<html><head><base href="/docs/"></head><body>
        <a href="a.html#part">a</a> <A HREF="/b?x=1&amp;y=2">b</A>
        <area href="c.html"> <a name="no-href">x</a> <a href="mailto:x@y.z">m</a>
        <a href=" http://other.example/d ">d</a></body></html>"#;
    let links = extract_links(html);
    assert_eq!(links.base.as_deref(), Some("/docs/"));
    let page = Url::parse("http://site.example/index.html").unwrap();
    let base = page.join(links.base.as_deref().unwrap()).unwrap();
    let urls: Vec<String> = links
        .hrefs
        .iter()
        .filter_map(|h| normalize(&base, h))
        .map(String::from)
        .collect();
    assert_eq!(
        urls,
        [
            "http://site.example/docs/a.html",
            "http://site.example/b?x=1&y=2",
            "http://site.example/docs/c.html",
            "http://other.example/d",
        ]
    );
}

#[test]
fn robots_wildcard_pattern_against_a_long_path_is_fast() {
    // Backtracking over every `*` took ~55 s for this pair, on the hub, stalling every worker.
    let robots = Robots::parse("User-agent: *\nDisallow: /*a*a*a*a*a*b\n", "green-crawl");
    let path = format!("/{}", "a".repeat(199));
    let start = std::time::Instant::now();
    assert!(robots.allows(&path));
    assert!(!robots.allows(&format!("{path}b")));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn robots_empty_user_agent_line_does_not_match_every_agent() {
    let robots = Robots::parse("User-agent:\nDisallow: /\n", "green-crawl");
    assert!(robots.allows("/page/1.html"));
}

#[test]
fn robots_path_of_a_seed_with_a_fragment_is_its_path_and_query() {
    let url = Url::parse("http://site.example/private/1.html?x=1#frag").unwrap();
    assert_eq!(robots_path(&url), "/private/1.html?x=1");
}

#[test]
fn per_host_limit_bounds_the_requests_in_flight_to_a_host() {
    let server = serve_embedded_site(Site::new(100).with_delay(Duration::from_millis(3))).unwrap();
    let summary = crawl(Config {
        per_host: Some(3),
        ..config(&server, 20)
    })
    .unwrap();
    let max = server.stats().max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} requests at once with --per-host 3");
    assert_eq!(max, 3, "20 workers never used the 3 requests allowed");
    assert!(summary.pages > 100, "{summary}");
}

#[test]
fn delay_spaces_the_starts_of_requests_to_a_host() {
    let server = serve_embedded_site(Site::new(100)).unwrap();
    let summary = crawl(Config {
        delay: Some(Duration::from_millis(30)),
        max_pages: Some(10),
        ..config(&server, 20)
    })
    .unwrap();
    assert_eq!(summary.pages, 10, "{summary}");
    // robots.txt, then 10 pages, each start 30 ms after the one before.
    assert!(
        summary.elapsed >= Duration::from_millis(270),
        "{:?}",
        summary.elapsed
    );
}
