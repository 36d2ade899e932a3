//! What a crawl reports: failures by kind, latency percentiles, the summary.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::time::Duration;

use green_http::client::Error as HttpError;

use crate::frontier::Totals;

/// Why a fetch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The URL did not parse or is not http(s).
    BadUrl,
    /// The host name did not resolve.
    Dns,
    /// The TCP connection failed (refused, unreachable, reset while connecting).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// A connect, read or total deadline fired.
    Timeout,
    /// The server answered 4xx.
    Status4xx,
    /// The server answered 5xx.
    Status5xx,
    /// The body was truncated, too large, or did not decode.
    Body,
    /// Anything else (a malformed response, a reset after the request was sent, …).
    Other,
}

impl ErrorKind {
    /// All kinds, in report order.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::BadUrl,
        ErrorKind::Dns,
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Status4xx,
        ErrorKind::Status5xx,
        ErrorKind::Body,
        ErrorKind::Other,
    ];

    /// A short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadUrl => "bad url",
            ErrorKind::Dns => "dns",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Status4xx => "status 4xx",
            ErrorKind::Status5xx => "status 5xx",
            ErrorKind::Body => "body",
            ErrorKind::Other => "other",
        }
    }

    /// Classifies a client error by walking its cause chain.
    pub fn of(err: &HttpError) -> ErrorKind {
        if err.is_timeout() {
            return ErrorKind::Timeout;
        }
        match err {
            HttpError::Url { .. } | HttpError::Builder { .. } => ErrorKind::BadUrl,
            HttpError::Connect { source, .. } => {
                if chain_has::<green_net::dns::DnsError>(source) {
                    ErrorKind::Dns
                } else if chain_has::<green_tls::TlsError>(source) {
                    ErrorKind::Tls
                } else {
                    ErrorKind::Connect
                }
            }
            HttpError::Request { source, .. } if chain_has::<green_tls::TlsError>(source) => {
                ErrorKind::Tls
            }
            HttpError::Body { .. } | HttpError::Decode { .. } => ErrorKind::Body,
            HttpError::Status { status, .. } if status.is_client_error() => ErrorKind::Status4xx,
            HttpError::Status { status, .. } if status.is_server_error() => ErrorKind::Status5xx,
            _ => ErrorKind::Other,
        }
    }
}

/// Whether `err` or any error in its `source()` chain is an `E`.
fn chain_has<E: std::error::Error + 'static>(err: &io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<E>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(inner) = io.get_ref() {
                if inner.is::<E>() {
                    return true;
                }
            }
        }
        cur = e.source();
    }
    false
}

/// Latency percentiles of the fetches (request sent to body read).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Latency {
    pub(crate) fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |pct: usize| samples[(samples.len() * pct).div_ceil(100).max(1) - 1];
        Latency {
            p50: at(50),
            p95: at(95),
            p99: at(99),
            max: samples[samples.len() - 1],
        }
    }
}

/// What a crawl did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// URLs fetched: a response or an error (robots.txt fetches not included).
    pub pages: u64,
    /// HTML responses whose links were extracted.
    pub html: u64,
    /// Responses not parsed because their Content-Type is not HTML.
    pub non_html: u64,
    /// 3xx responses whose target was queued.
    pub redirects: u64,
    /// Body bytes received (after decompression).
    pub bytes: u64,
    /// Links found in HTML pages (before deduplication).
    pub links: u64,
    /// Links that were not valid URLs.
    pub bad_links: u64,
    /// robots.txt files fetched.
    pub robots_fetched: u64,
    /// URLs skipped because robots.txt disallows them.
    pub robots_disallowed: u64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Failures by kind (4xx and 5xx responses included).
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Fetch latencies.
    pub latency: Latency,
    /// Wall time of the crawl.
    pub elapsed: Duration,
    /// The totals of the whole crawl, every process's work counted once (shared frontier only).
    pub shared: Option<Totals>,
    /// Requests this process made to the shared frontier.
    pub round_trips: u64,
}

impl Summary {
    /// Failures of `kind`.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.get(&kind).copied().unwrap_or(0)
    }

    /// Responses with `status`.
    pub fn status(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Pages per second.
    pub fn rate(&self) -> f64 {
        self.pages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "crawled {} pages in {:.2} s: {:.0} pages/s, {:.1} MB",
            self.pages,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.bytes as f64 / 1e6
        )?;
        writeln!(
            f,
            "  html {}, not html {}, redirects {}, links found {} ({} invalid)",
            self.html, self.non_html, self.redirects, self.links, self.bad_links
        )?;
        writeln!(
            f,
            "  robots.txt: {} fetched, {} URLs disallowed",
            self.robots_fetched, self.robots_disallowed
        )?;
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        writeln!(f, "  status: {}", or_none(&statuses))?;
        let errors: Vec<String> = ErrorKind::ALL
            .iter()
            .filter(|k| self.errors_of(**k) > 0)
            .map(|k| format!("{}: {}", k.as_str(), self.errors_of(*k)))
            .collect();
        writeln!(f, "  errors: {}", or_none(&errors))?;
        write!(
            f,
            "  latency: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(self.latency.p50),
            ms(self.latency.p95),
            ms(self.latency.p99),
            ms(self.latency.max)
        )?;
        if let Some(shared) = &self.shared {
            write!(
                f,
                "\n  frontier: {} Redis round trips, {:.3} per page",
                self.round_trips,
                self.round_trips as f64 / self.pages.max(1) as f64
            )?;
            write!(f, "\nshared crawl, all processes:")?;
            for line in shared.to_string().lines() {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

pub(crate) fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}
