//! `RequestBuilder` and request bodies.
//!
//! A builder collects the first error (a bad header value, a JSON body that does not serialise)
//! and returns it from `send()`, so calls chain without a `?` after each.

use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method};
use url::Url;

use super::error::{Error, Result};
use super::into_url;
use super::redirect::Policy;
use super::response::ClientResponse;
use super::retry::Retry;
use super::Client;

/// A request body: bytes (sent with `Content-Length`, and sent again if a redirect or a retry
/// needs it) or a streaming `Read` (sent chunked, once).
pub struct Body {
    pub(crate) kind: BodyKind,
}

pub(crate) enum BodyKind {
    Empty,
    Bytes(Vec<u8>),
    Reader(Box<dyn Read>),
    /// A reader that was sent: it cannot be sent again.
    Spent,
}

impl Body {
    /// No body.
    pub fn empty() -> Body {
        Body {
            kind: BodyKind::Empty,
        }
    }

    /// A body read from `reader` while sending, with `Transfer-Encoding: chunked`. It cannot be
    /// replayed: a 307/308 redirect of such a request is an error, and it is never retried.
    pub fn from_reader(reader: impl Read + 'static) -> Body {
        Body {
            kind: BodyKind::Reader(Box::new(reader)),
        }
    }

    /// The body's length, when it is known (not for a reader).
    pub fn len(&self) -> Option<u64> {
        match &self.kind {
            BodyKind::Empty => Some(0),
            BodyKind::Bytes(b) => Some(b.len() as u64),
            BodyKind::Reader(_) | BodyKind::Spent => None,
        }
    }

    /// Whether the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The bytes, unless the body is a reader.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            BodyKind::Empty => Some(&[]),
            BodyKind::Bytes(b) => Some(b),
            BodyKind::Reader(_) | BodyKind::Spent => None,
        }
    }

    /// Whether the body can be sent again (bytes can, a reader cannot).
    pub fn is_replayable(&self) -> bool {
        !matches!(self.kind, BodyKind::Reader(_) | BodyKind::Spent)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyKind::Empty => f.write_str("Body::Empty"),
            BodyKind::Bytes(b) => write!(f, "Body({} bytes)", b.len()),
            BodyKind::Reader(_) => f.write_str("Body(reader)"),
            BodyKind::Spent => f.write_str("Body(sent reader)"),
        }
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body {
            kind: BodyKind::Bytes(bytes),
        }
    }
}

impl From<&[u8]> for Body {
    fn from(bytes: &[u8]) -> Body {
        bytes.to_vec().into()
    }
}

impl<const N: usize> From<&[u8; N]> for Body {
    fn from(bytes: &[u8; N]) -> Body {
        bytes.to_vec().into()
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        text.into_bytes().into()
    }
}

impl From<&str> for Body {
    fn from(text: &str) -> Body {
        text.as_bytes().into()
    }
}

/// A request about to be sent: everything the builder collected.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: Method,
    /// Shared with the response and its body (for error messages), not copied for each.
    pub(crate) url: Arc<Url>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) timeout: Option<Duration>,
    /// The request's own connect and read timeouts (`Some(None)`: none), over the client's.
    pub(crate) connect_timeout: Option<Option<Duration>>,
    pub(crate) read_timeout: Option<Option<Duration>>,
    /// The request's own redirect policy, over the client's.
    pub(crate) redirect: Option<Policy>,
    /// The request's own retry policy, over the client's.
    pub(crate) retry: Option<Retry>,
}

impl Request {
    /// A copy to send again, unless the body is a reader.
    pub(crate) fn replay(&self) -> Option<Request> {
        let kind = match &self.body.kind {
            BodyKind::Empty => BodyKind::Empty,
            BodyKind::Bytes(bytes) => BodyKind::Bytes(bytes.clone()),
            BodyKind::Reader(_) | BodyKind::Spent => return None,
        };
        Some(Request {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: Body { kind },
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            redirect: self.redirect.clone(),
            retry: None,
        })
    }
}

/// Builds one request; made by [`Client::get`], [`Client::request`], [`post`](crate::post), …
/// and sent by [`send`](Self::send).
#[must_use = "a RequestBuilder does nothing until send() is called"]
pub struct RequestBuilder {
    client: Client,
    request: Result<Request>,
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.request {
            Ok(req) => f
                .debug_struct("RequestBuilder")
                .field("method", &req.method)
                .field("url", &req.url.as_str())
                .field("headers", &req.headers.keys().collect::<Vec<_>>())
                .field("body", &req.body)
                .finish(),
            Err(err) => f
                .debug_struct("RequestBuilder")
                .field("error", err)
                .finish(),
        }
    }
}

impl RequestBuilder {
    pub(crate) fn new(client: Client, method: Method, url: Result<Url>) -> RequestBuilder {
        let request = url.map(|mut url| {
            let mut headers = HeaderMap::new();
            if let Some((user, pass)) = into_url::take_credentials(&mut url) {
                headers.insert(AUTHORIZATION, basic_auth_value(&user, pass.as_deref()));
            }
            Request {
                method,
                url: Arc::new(url),
                headers,
                body: Body::empty(),
                timeout: None,
                connect_timeout: None,
                read_timeout: None,
                redirect: None,
                retry: None,
            }
        });
        RequestBuilder { client, request }
    }

    fn with(mut self, f: impl FnOnce(&mut Request) -> Result<()>) -> RequestBuilder {
        if let Ok(req) = &mut self.request {
            if let Err(err) = f(req) {
                self.request = Err(err);
            }
        }
        self
    }

    /// Adds a header (appended: an earlier one of the same name stays). Invalid names or values
    /// make `send()` fail with a builder error.
    pub fn header<K, V>(self, name: K, value: V) -> RequestBuilder
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: fmt::Display,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: fmt::Display,
    {
        self.with(|req| {
            let name = HeaderName::try_from(name).map_err(|e| builder(req, e))?;
            let value = HeaderValue::try_from(value).map_err(|e| builder(req, e))?;
            req.headers.append(name, value);
            Ok(())
        })
    }

    /// Adds every header of `headers`, replacing earlier ones of the same names.
    pub fn headers(self, headers: HeaderMap) -> RequestBuilder {
        self.with(|req| {
            let mut last = None;
            for (name, value) in headers {
                let name = match name {
                    Some(name) => {
                        req.headers.remove(&name);
                        last = Some(name.clone());
                        name
                    }
                    None => last.clone().expect("HeaderMap yields a name first"),
                };
                req.headers.append(name, value);
            }
            Ok(())
        })
    }

    /// Appends `key=value` pairs to the URL's query, form-urlencoded.
    pub fn query<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> RequestBuilder {
        self.with(|req| {
            if !pairs.is_empty() {
                let mut query = Arc::make_mut(&mut req.url).query_pairs_mut();
                for (k, v) in pairs {
                    query.append_pair(k.as_ref(), v.as_ref());
                }
            }
            Ok(())
        })
    }

    /// `Authorization: Basic base64(user:password)`.
    pub fn basic_auth(self, user: &str, password: Option<&str>) -> RequestBuilder {
        self.with(|req| {
            req.headers
                .insert(AUTHORIZATION, basic_auth_value(user, password));
            Ok(())
        })
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: &str) -> RequestBuilder {
        self.with(|req| {
            let mut value =
                HeaderValue::try_from(format!("Bearer {token}")).map_err(|e| builder(req, e))?;
            value.set_sensitive(true);
            req.headers.insert(AUTHORIZATION, value);
            Ok(())
        })
    }

    /// The body: bytes, text, or a [`Body::from_reader`] sent chunked.
    pub fn body(self, body: impl Into<Body>) -> RequestBuilder {
        let body = body.into();
        self.with(|req| {
            req.body = body;
            Ok(())
        })
    }

    /// A form body: the pairs `application/x-www-form-urlencoded`.
    pub fn form<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> RequestBuilder {
        self.with(|req| {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                form.append_pair(k.as_ref(), v.as_ref());
            }
            req.body = form.finish().into();
            req.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            Ok(())
        })
    }

    /// A `multipart/form-data` body (its `Content-Type` with the form's boundary).
    pub fn multipart(self, form: super::multipart::Form) -> RequestBuilder {
        self.with(|req| {
            let content_type =
                HeaderValue::try_from(form.content_type()).map_err(|e| builder(req, e))?;
            req.headers.insert(CONTENT_TYPE, content_type);
            req.body = form.into_body();
            Ok(())
        })
    }

    /// A JSON body (`Content-Type: application/json`).
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> RequestBuilder {
        self.with(|req| {
            let bytes = serde_json::to_vec(value).map_err(|e| builder(req, e))?;
            req.body = bytes.into();
            req.headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(())
        })
    }

    /// A total deadline for this request, replacing the client's
    /// [`timeout`](super::ClientBuilder::timeout): DNS, connect, TLS, sending, and receiving the
    /// head and the body.
    pub fn timeout(self, timeout: Duration) -> RequestBuilder {
        self.with(|req| {
            req.timeout = Some(timeout);
            Ok(())
        })
    }

    /// The connect timeout for this request, replacing the client's
    /// [`connect_timeout`](super::ClientBuilder::connect_timeout) (`None`: no bound but the total
    /// deadline). It applies when the request opens a connection; a pooled one is reused as is.
    pub fn connect_timeout(self, timeout: impl Into<Option<Duration>>) -> RequestBuilder {
        let timeout = timeout.into();
        self.with(|req| {
            req.connect_timeout = Some(timeout);
            Ok(())
        })
    }

    /// The per-read (and per-write) timeout for this request, replacing the client's
    /// [`read_timeout`](super::ClientBuilder::read_timeout); `None` for none.
    pub fn read_timeout(self, timeout: impl Into<Option<Duration>>) -> RequestBuilder {
        let timeout = timeout.into();
        self.with(|req| {
            req.read_timeout = Some(timeout);
            Ok(())
        })
    }

    /// The retry policy for this request, replacing the client's (it applies only to idempotent
    /// methods with a body that can be sent again).
    pub fn retry(self, retry: Retry) -> RequestBuilder {
        self.with(|req| {
            req.retry = Some(retry);
            Ok(())
        })
    }

    /// The redirect policy for this request, replacing the client's.
    pub fn redirect(self, policy: Policy) -> RequestBuilder {
        self.with(|req| {
            req.redirect = Some(policy);
            Ok(())
        })
    }

    /// Follows at most `max` redirects for this request (`redirects(0)` returns a redirect
    /// response as it is). Short for `redirect(Policy::limited(max))`.
    pub fn redirects(self, max: usize) -> RequestBuilder {
        self.redirect(Policy::limited(max))
    }

    /// Sends the request and returns the response once its head has arrived (redirects
    /// followed); the body is read from the [`ClientResponse`].
    #[inline]
    pub fn send(self) -> Result<ClientResponse> {
        // Inlined, and the request lent to the client rather than moved: it is not copied from
        // frame to frame on the greenlet's stack.
        let RequestBuilder {
            client,
            mut request,
        } = self;
        match request {
            Ok(ref mut request) => client.execute_built(request),
            Err(err) => Err(err),
        }
    }
}

fn builder(req: &Request, err: impl fmt::Display) -> Error {
    Error::Builder {
        url: Some(Url::clone(&req.url)),
        message: err.to_string(),
    }
}

/// `Basic base64(user:password)`, marked sensitive.
pub(crate) fn basic_auth_value(user: &str, password: Option<&str>) -> HeaderValue {
    use base64::Engine;
    let credentials = format!("{user}:{}", password.unwrap_or(""));
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value =
        HeaderValue::try_from(format!("Basic {encoded}")).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}
