//! Retrying idempotent requests: how many times, how long to wait between tries, and on which
//! statuses and errors (off by default, as in requests, where urllib3's `Retry` is opt-in).

use std::time::Duration;

use http::StatusCode;

use super::error::{Error, TimeoutKind};

/// When and how often to send an idempotent request again (GET, HEAD, PUT, DELETE, OPTIONS,
/// TRACE, with a body that can be sent again). Off by default; set it on the client
/// ([`ClientBuilder::retry`](super::ClientBuilder::retry)) or a request
/// ([`RequestBuilder::retry`](super::RequestBuilder::retry)).
///
/// A try is repeated after a retryable status (by default 429, 502, 503, 504) or error (by
/// default: a failed connect, a connection that broke, a connect or read timeout; never the
/// request's total deadline), waiting `backoff`, doubled each time up to `max_backoff`, or the
/// server's `Retry-After` (in seconds) when it is not longer than `max_backoff`. Waits never
/// pass the request's total deadline: the last result is returned instead.
///
/// # Caveats
/// The whole request (its redirects included) is retried, from its first URL. Unlike the
/// client's single silent retry of a reused connection the server closed (which stays), these
/// retries happen only when configured.
#[derive(Debug, Clone)]
pub struct Retry {
    pub(crate) retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    statuses: Vec<StatusCode>,
    on_errors: bool,
}

impl Retry {
    /// Up to `retries` more tries, after 100 ms, then 200 ms, … (at most 10 s).
    pub fn new(retries: u32) -> Retry {
        Retry {
            retries,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            statuses: vec![
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT,
            ],
            on_errors: true,
        }
    }

    /// The first wait (doubled for each later one).
    pub fn backoff(mut self, backoff: Duration) -> Retry {
        self.backoff = backoff;
        self
    }

    /// The longest wait, and the longest `Retry-After` honoured.
    pub fn max_backoff(mut self, max: Duration) -> Retry {
        self.max_backoff = max;
        self
    }

    /// The statuses that are tried again (replacing the default list).
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Retry {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// Whether connect errors, broken connections and connect/read timeouts are tried again
    /// (default yes).
    pub fn on_errors(mut self, enable: bool) -> Retry {
        self.on_errors = enable;
        self
    }

    pub(crate) fn retries_status(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status)
    }

    pub(crate) fn retries_error(&self, err: &Error) -> bool {
        self.on_errors
            && match err {
                Error::Connect { .. } | Error::Request { .. } => true,
                Error::Timeout { kind, .. } => *kind != TimeoutKind::Total,
                _ => false,
            }
    }

    /// The wait before try `retry` (0 for the first retry), or the server's `Retry-After`.
    pub(crate) fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after.filter(|a| *a <= self.max_backoff) {
            return after;
        }
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}
