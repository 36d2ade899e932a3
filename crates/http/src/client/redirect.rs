//! Redirect policies: how many hops to follow, or a callback that sees each hop and decides,
//! like reqwest's `redirect::Policy` and requests' `allow_redirects`.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use url::Url;

/// One response that redirected, kept in [`ClientResponse::history`](super::ClientResponse::history).
#[derive(Debug, Clone)]
pub struct Hop {
    pub(crate) url: Url,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

impl Hop {
    /// The URL that answered with the redirect.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The redirect's status (301, 302, 303, 307 or 308).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The redirect's header fields (its `Location`, `Set-Cookie`, …).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// A redirect about to be followed, as a [`Policy::custom`] callback sees it.
#[derive(Debug)]
pub struct Attempt<'a> {
    pub(crate) status: StatusCode,
    pub(crate) next: &'a Url,
    pub(crate) previous: &'a [Hop],
    pub(crate) current: &'a Url,
}

impl Attempt<'_> {
    /// The redirect's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Where the redirect points.
    pub fn url(&self) -> &Url {
        self.next
    }

    /// The URL that redirected.
    pub fn from(&self) -> &Url {
        self.current
    }

    /// The redirects already followed, in order.
    pub fn previous(&self) -> &[Hop] {
        self.previous
    }

    /// Follow it.
    pub fn follow(self) -> Action {
        Action::Follow
    }

    /// Do not follow: the redirect response is returned as it is.
    pub fn stop(self) -> Action {
        Action::Stop
    }

    /// Fail the request with an [`Error::Redirect`](super::Error::Redirect) saying `message`.
    pub fn error(self, message: impl fmt::Display) -> Action {
        Action::Error(message.to_string())
    }
}

/// What a [`Policy::custom`] callback decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Follow the redirect.
    Follow,
    /// Return the redirect response.
    Stop,
    /// Fail with this message.
    Error(String),
}

type Callback = dyn Fn(Attempt<'_>) -> Action + Send + Sync;

/// Which redirects a client or a request follows (default: [`Policy::limited`]`(10)`).
#[derive(Clone)]
pub struct Policy {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Limited(usize),
    Custom(Arc<Callback>),
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Limited(max) => write!(f, "Policy::limited({max})"),
            Kind::Custom(_) => f.write_str("Policy::custom(..)"),
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::limited(10)
    }
}

impl Policy {
    /// Follows up to `max` redirects; one more is an [`Error::Redirect`](super::Error::Redirect)
    /// ("too many redirects"). `limited(0)` is [`none`](Self::none).
    pub fn limited(max: usize) -> Policy {
        Policy {
            kind: Kind::Limited(max),
        }
    }

    /// Follows no redirect: redirect responses are returned as they are.
    pub fn none() -> Policy {
        Policy::limited(0)
    }

    /// Asks `decide` about each redirect (after the `Location` is checked to be an http(s) URL).
    /// No limit applies but the callback's: `attempt.previous().len()` counts the hops.
    pub fn custom(decide: impl Fn(Attempt<'_>) -> Action + Send + Sync + 'static) -> Policy {
        Policy {
            kind: Kind::Custom(Arc::new(decide)),
        }
    }

    /// Whether redirects are returned without looking at them.
    pub(crate) fn follows_none(&self) -> bool {
        matches!(self.kind, Kind::Limited(0))
    }

    pub(crate) fn decide(&self, attempt: Attempt<'_>) -> Action {
        match &self.kind {
            Kind::Limited(max) if attempt.previous.len() >= *max => {
                Action::Error(format!("too many redirects (limit {max})"))
            }
            Kind::Limited(_) => Action::Follow,
            Kind::Custom(decide) => decide(attempt),
        }
    }
}
