//! One crawl shared by several `green-crawl` processes through a real redis-server on loopback:
//! the site is served by this test process (the site's server counts every request), the
//! crawlers are separate processes, and some tests kill crawlers or Redis itself with SIGKILL.
//!
//! The shared server comes from scripts/services (`GREEN_TEST_REDIS`); the tests that kill Redis
//! start their own redis-server on a free port. Without redis-server the tests print a loud
//! `SKIPPED:` line (and fail under CI or `GREEN_REQUIRE_SERVICES=1`).

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use green_crawl::{
    crawl, serve_embedded_site, Config, CrawlState, Frontier, Item, Outcome, RedisFrontier,
    RedisOptions, Site, SiteHandle, Summary, Totals,
};
use green_http::client::Url;

fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
        || std::env::var("GREEN_REQUIRE_SERVICES").as_deref() == Ok("1")
}

fn skip(reason: &str) {
    assert!(
        !required(),
        "{reason}; CI / GREEN_REQUIRE_SERVICES=1 require it"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n***** SKIPPED: {reason} *****\n");
}

/// The shared redis-server of scripts/services, as `redis://127.0.0.1:PORT/`.
fn shared_redis(test: &str) -> Option<String> {
    match std::env::var("GREEN_TEST_REDIS") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip(&format!(
                "GREEN_TEST_REDIS is not set (run through scripts/test or scripts/services): \
                 {test} did not run"
            ));
            None
        }
    }
}

/// A crawl id no other test, process or earlier run uses.
fn crawl_id(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{test}-{}-{nanos}", std::process::id())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("green-crawl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A redis-server of this test's own (so that it can be killed), persisting every write to its
/// append-only file so that a restart finds the crawl where it was.
struct OwnRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(test: &str) -> Option<OwnRedis> {
        let mut redis = OwnRedis {
            port: free_port(),
            dir: scratch(&format!("{test}-redis")),
            child: None,
        };
        if !redis.spawn() {
            skip(&format!(
                "redis-server could not be started: {test} did not run"
            ));
            return None;
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        assert!(self.spawn(), "redis-server did not restart");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One crawler process.
struct Crawler {
    child: Child,
    output: PathBuf,
    log: PathBuf,
}

fn start_crawler(
    site: &SiteHandle,
    redis: &str,
    id: &str,
    dir: &Path,
    name: &str,
    extra: &[&str],
) -> Crawler {
    let output = dir.join(format!("{name}.jsonl"));
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_green-crawl"))
        .arg(site.url())
        .args([
            "--same-host",
            "--quiet",
            "--frontier",
            redis,
            "--crawl-id",
            id,
        ])
        .arg("--output")
        .arg(&output)
        .args(extra)
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start green-crawl");
    Crawler { child, output, log }
}

impl Crawler {
    /// Waits for the process to exit (killing it after `limit`).
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("a crawler ran longer than {limit:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    /// The URLs of its `--output` lines.
    fn fetched(&self) -> Vec<String> {
        std::fs::read_to_string(&self.output)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                value["url"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

/// What a single in-memory crawl of `site` counts.
fn single_process(site: Site) -> Summary {
    let server = serve_embedded_site(site).unwrap();
    crawl(Config {
        seeds: vec![server.url()],
        same_host: true,
        concurrency: 20,
        ..Config::default()
    })
    .unwrap()
}

fn assert_same_totals(totals: &Totals, single: &Summary) {
    let got = (
        totals.pages,
        totals.html,
        totals.non_html,
        totals.redirects,
        totals.robots_disallowed,
        &totals.statuses,
        totals.errors.values().sum::<u64>(),
    );
    let want = (
        single.pages,
        single.html,
        single.non_html,
        single.redirects,
        single.robots_disallowed,
        &single.statuses,
        single.errors.values().sum::<u64>(),
    );
    assert_eq!(
        got, want,
        "shared totals:\n{totals}\nsingle process:\n{single}"
    );
}

fn status(redis: &str, id: &str) -> Totals {
    RedisFrontier::status(redis, id).unwrap()
}

/// Waits until the shared crawl has counted at least `pages`.
fn wait_for_pages(redis: &str, id: &str, pages: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while status(redis, id).pages < pages {
        assert!(Instant::now() < deadline, "the crawl made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Paths the site's server saw more than once (robots.txt aside).
fn fetched_twice(server: &SiteHandle) -> HashMap<String, u32> {
    server
        .stats()
        .requests_by_path()
        .into_iter()
        .filter(|(path, n)| *n > 1 && path != "/robots.txt")
        .collect()
}

/// The complete script sends many completions in one call: the same URL twice in one call (its
/// lease expired, it was claimed again and both fetches ended before the call) counts once,
/// releases its lease once, and the links of the batch are queued once each.
#[test]
fn a_url_completed_twice_in_one_batch_counts_once() {
    let test = "a_url_completed_twice_in_one_batch_counts_once";
    let Some(redis) = shared_redis(test) else {
        return;
    };
    green_patch::all();
    let frontier = RedisFrontier::connect(RedisOptions::new(&redis, &crawl_id(test))).unwrap();
    let item = |path: &str| Item {
        url: Url::parse(&format!("http://127.0.0.1:9{path}")).unwrap(),
        depth: 0,
    };
    assert_eq!(frontier.push(vec![item("/")]).unwrap(), 1);
    let claimed = frontier.claim().unwrap().expect("the seed");
    let outcome = Outcome {
        fetched: true,
        status: Some(200),
        bytes: 10,
        html: true,
        links: 2,
        ..Outcome::default()
    };
    // No yield between the two: the committer sends both in one script call.
    frontier
        .complete(&claimed, &outcome, vec![item("/a"), item("/b")])
        .unwrap();
    frontier
        .complete(&claimed, &outcome, vec![item("/a"), item("/b"), item("/")])
        .unwrap();
    frontier.finish().unwrap();
    let totals = frontier.totals().unwrap().unwrap();
    assert_eq!(totals.pages, 1, "{totals}");
    assert_eq!(totals.bytes, 10, "{totals}");
    assert_eq!(totals.links, 2, "{totals}");
    assert_eq!(totals.statuses.get(&200), Some(&1), "{totals}");
    assert_eq!(totals.in_flight, 0, "{totals}");
    assert_eq!(totals.queued, 2, "{totals}");
}

/// The complete script hands a host's links to Redis in runs: a batch with more links to one host
/// than Lua's `unpack` takes at once (about 8,000) still queues every one.
#[test]
fn a_batch_with_ten_thousand_links_to_one_host_queues_them_all() {
    let test = "a_batch_with_ten_thousand_links_to_one_host_queues_them_all";
    let Some(redis) = shared_redis(test) else {
        return;
    };
    green_patch::all();
    let frontier = RedisFrontier::connect(RedisOptions::new(&redis, &crawl_id(test))).unwrap();
    let item = |path: &str| Item {
        url: Url::parse(&format!("http://127.0.0.1:9{path}")).unwrap(),
        depth: 0,
    };
    frontier.push(vec![item("/")]).unwrap();
    let claimed = frontier.claim().unwrap().expect("the seed");
    let links: Vec<Item> = (0..10_000).map(|i| item(&format!("/p/{i}"))).collect();
    let outcome = Outcome {
        fetched: true,
        status: Some(200),
        links: links.len() as u64,
        ..Outcome::default()
    };
    frontier.complete(&claimed, &outcome, links).unwrap();
    frontier.finish().unwrap();
    let totals = frontier.totals().unwrap().unwrap();
    assert_eq!(totals.pages, 1, "{totals}");
    assert_eq!(totals.queued, 10_000, "{totals}");
}

#[test]
fn three_processes_share_one_crawl_and_count_each_page_once() {
    let test = "three_processes_share_one_crawl_and_count_each_page_once";
    let Some(redis) = shared_redis(test) else {
        return;
    };
    let site = Site::new(800).with_delay(Duration::from_millis(5));
    let single = single_process(site.clone());
    let server = serve_embedded_site(site).unwrap();
    let (id, dir) = (crawl_id(test), scratch(test));
    let mut crawlers: Vec<Crawler> = (0..3)
        .map(|i| {
            let name = format!("crawler{i}");
            start_crawler(&server, &redis, &id, &dir, &name, &["-c", "10"])
        })
        .collect();
    for crawler in &mut crawlers {
        let status = crawler.wait(Duration::from_secs(60));
        assert!(status.success(), "{status}: {}", crawler.stderr());
    }
    let totals = status(&redis, &id);
    assert_eq!(totals.state, Some(CrawlState::Finished), "{totals}");
    assert_eq!((totals.queued, totals.in_flight), (0, 0), "{totals}");
    assert_same_totals(&totals, &single);
    // The union of what the three fetched is every page, each fetched by exactly one of them.
    let mut union = HashSet::new();
    for crawler in &crawlers {
        let fetched = crawler.fetched();
        assert!(
            !fetched.is_empty(),
            "one process fetched nothing: {}",
            crawler.stdout()
        );
        for url in fetched {
            assert!(union.insert(url.clone()), "{url} fetched twice");
        }
    }
    assert_eq!(union.len() as u64, single.pages);
    assert!(
        fetched_twice(&server).is_empty(),
        "{:?}",
        fetched_twice(&server)
    );
    assert_eq!(
        server.stats().requests.load(Ordering::SeqCst),
        single.pages + 1
    );
    assert_eq!(
        server.stats().robots_requests.load(Ordering::SeqCst),
        1,
        "robots.txt is fetched once per crawl"
    );
    assert_eq!(totals.robots_fetched, 1);

    // `crawl status` prints the same totals; a process joining the finished crawl says so and
    // fetches nothing.
    let printed = Command::new(env!("CARGO_BIN_EXE_green-crawl"))
        .args(["status", "--frontier", &redis, "--crawl-id", &id])
        .output()
        .unwrap();
    assert!(printed.status.success());
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(printed.contains("state: finished"), "{printed}");
    assert!(
        printed.contains(&format!("done: {}", single.pages)),
        "{printed}"
    );
    assert!(
        printed.contains("in flight: 0") && printed.contains("pages/s: "),
        "{printed}"
    );
    let mut late = start_crawler(&server, &redis, &id, &dir, "late", &[]);
    assert!(
        late.wait(Duration::from_secs(20)).success(),
        "{}",
        late.stderr()
    );
    assert!(
        late.stdout().contains("state: finished"),
        "{}",
        late.stdout()
    );
    assert!(late.fetched().is_empty());
    assert_eq!(
        server.stats().requests.load(Ordering::SeqCst),
        single.pages + 1
    );
}

#[test]
fn a_crawler_killed_mid_crawl_leaves_its_leased_pages_to_the_others() {
    let test = "a_crawler_killed_mid_crawl_leaves_its_leased_pages_to_the_others";
    let Some(redis) = shared_redis(test) else {
        return;
    };
    let site = Site::new(600).with_delay(Duration::from_millis(20));
    let single = single_process(site.clone());
    let server = serve_embedded_site(site).unwrap();
    let (id, dir) = (crawl_id(test), scratch(test));
    // A lease long enough that the live processes' leases do not expire on a loaded machine.
    let args = ["-c", "8", "--lease", "3"];
    let mut crawlers: Vec<Crawler> = (0..3)
        .map(|i| start_crawler(&server, &redis, &id, &dir, &format!("crawler{i}"), &args))
        .collect();
    wait_for_pages(&redis, &id, 100, Duration::from_secs(30));
    crawlers[0].kill();
    for crawler in &mut crawlers[1..] {
        let status = crawler.wait(Duration::from_secs(60));
        assert!(status.success(), "{status}: {}", crawler.stderr());
    }
    let totals = status(&redis, &id);
    assert_eq!(totals.state, Some(CrawlState::Finished), "{totals}");
    assert_same_totals(&totals, &single);
    // Nothing lost: every page was requested; the killed process's leases (8 workers and 8
    // prefetched URLs at most) were handed out again, each fetched once more at most.
    let by_path = server.stats().requests_by_path();
    assert_eq!(
        by_path.keys().filter(|p| *p != "/robots.txt").count() as u64,
        single.pages
    );
    let twice = fetched_twice(&server);
    assert!(twice.values().all(|&n| n == 2), "{twice:?}");
    assert!(
        twice.len() <= 16 && twice.len() as u64 <= totals.requeued,
        "{} fetched twice, {} leases re-queued: {twice:?}",
        twice.len(),
        totals.requeued
    );
}

#[test]
fn stopping_every_crawler_and_starting_again_completes_without_refetching() {
    let test = "stopping_every_crawler_and_starting_again_completes_without_refetching";
    let Some(redis) = shared_redis(test) else {
        return;
    };
    let site = Site::new(600).with_delay(Duration::from_millis(20));
    let single = single_process(site.clone());
    let server = serve_embedded_site(site).unwrap();
    let (id, dir) = (crawl_id(test), scratch(test));
    let args = ["-c", "8", "--lease", "2"];
    let mut first: Vec<Crawler> = (0..2)
        .map(|i| start_crawler(&server, &redis, &id, &dir, &format!("first{i}"), &args))
        .collect();
    wait_for_pages(&redis, &id, 150, Duration::from_secs(30));
    for crawler in &mut first {
        crawler.kill();
    }
    let done_before: HashSet<String> = {
        let client = redis::Client::open(redis.as_str()).unwrap();
        let mut connection = client.get_connection().unwrap();
        redis::cmd("SMEMBERS")
            .arg(format!("green-crawl:{id}:done"))
            .query(&mut connection)
            .unwrap()
    };
    let stopped = status(&redis, &id);
    assert_eq!(stopped.state, Some(CrawlState::Running), "{stopped}");
    assert!(
        stopped.pages >= 150 && stopped.pages < single.pages,
        "{stopped}"
    );
    let mut second: Vec<Crawler> = (0..2)
        .map(|i| start_crawler(&server, &redis, &id, &dir, &format!("second{i}"), &args))
        .collect();
    for crawler in &mut second {
        let status = crawler.wait(Duration::from_secs(60));
        assert!(status.success(), "{status}: {}", crawler.stderr());
    }
    let totals = status(&redis, &id);
    assert_eq!(totals.state, Some(CrawlState::Finished), "{totals}");
    assert_same_totals(&totals, &single);
    let refetched: Vec<String> = second
        .iter()
        .flat_map(Crawler::fetched)
        .filter(|url| done_before.contains(url))
        .collect();
    assert!(
        refetched.is_empty(),
        "finished pages fetched again: {refetched:?}"
    );
    // Only the pages leased when everything stopped (2 × (8 workers + 8 prefetched) at most)
    // were fetched twice.
    let twice = fetched_twice(&server);
    assert!(
        twice.len() <= 32 && twice.values().all(|&n| n == 2),
        "{twice:?}"
    );
}

#[test]
fn per_host_limit_holds_across_three_processes() {
    let test = "per_host_limit_holds_across_three_processes";
    let Some(redis) = shared_redis(test) else {
        return;
    };
    let site = Site::new(150).with_delay(Duration::from_millis(5));
    let single = single_process(site.clone());
    let server = serve_embedded_site(site).unwrap();
    let (id, dir) = (crawl_id(test), scratch(test));
    let args = ["-c", "10", "--per-host", "2"];
    let mut crawlers: Vec<Crawler> = (0..3)
        .map(|i| start_crawler(&server, &redis, &id, &dir, &format!("crawler{i}"), &args))
        .collect();
    for crawler in &mut crawlers {
        let status = crawler.wait(Duration::from_secs(60));
        assert!(status.success(), "{status}: {}", crawler.stderr());
    }
    assert_same_totals(&status(&redis, &id), &single);
    let max = server.stats().max_in_flight.load(Ordering::SeqCst);
    assert!(
        max <= 2,
        "{max} requests in flight at the site with --per-host 2"
    );
    assert_eq!(max, 2, "the crawl never used its 2 requests per host");
}

#[test]
fn delay_spaces_the_requests_to_a_host_across_processes() {
    let test = "delay_spaces_the_requests_to_a_host_across_processes";
    let Some(redis) = shared_redis(test) else {
        return;
    };
    let server = serve_embedded_site(Site::new(100)).unwrap();
    let (id, dir) = (crawl_id(test), scratch(test));
    let args = ["-c", "10", "--delay", "0.05", "--max-pages", "12"];
    let start = Instant::now();
    let mut crawlers: Vec<Crawler> = (0..2)
        .map(|i| start_crawler(&server, &redis, &id, &dir, &format!("crawler{i}"), &args))
        .collect();
    for crawler in &mut crawlers {
        let status = crawler.wait(Duration::from_secs(60));
        assert!(status.success(), "{status}: {}", crawler.stderr());
    }
    let totals = status(&redis, &id);
    assert_eq!(totals.pages, 12, "{totals}");
    // 12 request starts 50 ms apart span at least 550 ms, whichever process made them.
    assert!(
        totals.elapsed >= Duration::from_millis(500),
        "{:?} for 12 pages with --delay 0.05",
        totals.elapsed
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn redis_down_at_start_is_a_clear_error_and_a_failing_exit() {
    let dir = scratch("redis_down_at_start");
    let server = serve_embedded_site(Site::new(10)).unwrap();
    let redis = format!("redis://127.0.0.1:{}/0", free_port());
    let mut crawler = start_crawler(&server, &redis, "down", &dir, "crawler", &[]);
    let status = crawler.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{}", crawler.stderr());
    assert!(
        crawler
            .stderr()
            .contains(&format!("cannot reach the Redis frontier at {redis}")),
        "{}",
        crawler.stderr()
    );
    assert_eq!(server.stats().requests.load(Ordering::SeqCst), 0);
}

#[test]
fn redis_restarted_within_the_lease_lets_the_crawl_resume_and_finish() {
    let test = "redis_restarted_within_the_lease";
    let Some(mut redis) = OwnRedis::start(test) else {
        return;
    };
    let site = Site::new(500).with_delay(Duration::from_millis(10));
    let single = single_process(site.clone());
    let server = serve_embedded_site(site).unwrap();
    let (id, dir) = (crawl_id(test), scratch(test));
    let args = ["-c", "8", "--lease", "8"];
    let mut crawlers: Vec<Crawler> = (0..2)
        .map(|i| {
            start_crawler(
                &server,
                &redis.url(),
                &id,
                &dir,
                &format!("crawler{i}"),
                &args,
            )
        })
        .collect();
    wait_for_pages(&redis.url(), &id, 60, Duration::from_secs(30));
    redis.kill();
    std::thread::sleep(Duration::from_millis(1500));
    redis.restart();
    for crawler in &mut crawlers {
        let status = crawler.wait(Duration::from_secs(60));
        assert!(status.success(), "{status}: {}", crawler.stderr());
        let log = crawler.stderr();
        assert!(log.contains("lost the Redis frontier"), "{log}");
        assert!(log.contains("is back after"), "{log}");
    }
    let totals = status(&redis.url(), &id);
    assert_eq!(totals.state, Some(CrawlState::Finished), "{totals}");
    assert_same_totals(&totals, &single);
}

#[test]
fn redis_gone_for_longer_than_the_lease_ends_the_crawl_with_a_clear_error() {
    let test = "redis_gone_for_longer_than_the_lease";
    let Some(mut redis) = OwnRedis::start(test) else {
        return;
    };
    let server = serve_embedded_site(Site::new(500).with_delay(Duration::from_millis(10))).unwrap();
    let (id, dir) = (crawl_id(test), scratch(test));
    let args = ["-c", "8", "--lease", "1.5"];
    let mut crawlers: Vec<Crawler> = (0..2)
        .map(|i| {
            start_crawler(
                &server,
                &redis.url(),
                &id,
                &dir,
                &format!("crawler{i}"),
                &args,
            )
        })
        .collect();
    wait_for_pages(&redis.url(), &id, 60, Duration::from_secs(30));
    redis.kill();
    let killed = Instant::now();
    for crawler in &mut crawlers {
        let status = crawler.wait(Duration::from_secs(30));
        assert_eq!(status.code(), Some(1), "{}", crawler.stderr());
        let log = crawler.stderr();
        assert!(log.contains("lost the Redis frontier"), "{log}");
        assert!(
            log.contains("unreachable for longer than the lease"),
            "{log}"
        );
    }
    let waited = killed.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(15),
        "the crawlers gave up after {waited:?} with a 1.5 s lease"
    );
}

/// An error reply from Redis (here WRONGTYPE, from a key something else overwrote) would fail the
/// same way on every retry: the crawl stops at once with the server's message, not after
/// retrying for the whole lease as if Redis were down.
#[test]
fn an_error_reply_from_redis_ends_the_crawl_at_once_naming_it() {
    let test = "an_error_reply_from_redis";
    let Some(redis) = shared_redis(test) else {
        return;
    };
    let server = serve_embedded_site(Site::new(500).with_delay(Duration::from_millis(10))).unwrap();
    let (id, dir) = (crawl_id(test), scratch(test));
    let mut crawler = start_crawler(
        &server,
        &redis,
        &id,
        &dir,
        "crawler",
        &["-c", "8", "--lease", "30"],
    );
    wait_for_pages(&redis, &id, 30, Duration::from_secs(30));
    let mut connection = redis::Client::open(redis.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let done = format!("green-crawl:{id}:done");
    redis::pipe()
        .cmd("DEL")
        .arg(&done)
        .ignore()
        .cmd("SET")
        .arg(&done)
        .arg("not a set")
        .ignore()
        .query::<()>(&mut connection)
        .unwrap();
    let broken = Instant::now();
    let status = crawler.wait(Duration::from_secs(25));
    let log = crawler.stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("answered with an error"), "{log}");
    assert!(log.contains("WRONGTYPE"), "{log}");
    assert!(
        broken.elapsed() < Duration::from_secs(15),
        "the crawler stopped {:?} after the error, not at once (lease 30 s)",
        broken.elapsed()
    );
}
