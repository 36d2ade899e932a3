//! The client's cookie jar against a real server on loopback (green's own `http::Server`), with
//! host names pointed at it by `ClientBuilder::resolve`: what a hostile or careless server can
//! make the jar do (issue 15: overflowing `Max-Age`, public-suffix domains, unbounded growth).

use std::net::SocketAddr;

use green::http::client::Client;
use green::http::server::{Body, Server, ServerHandle};
use green::http::{header, Request, Response};

/// `/set?<n>` answers with the Set-Cookie values listed in the `x-set` request header (one per
/// line) or, with `?many=<n>`, `n` distinct cookies; anything else echoes the request's `Cookie`.
fn handler(req: Request<Body>) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    if req.uri().path() == "/set" {
        if let Some(n) = req.uri().query().and_then(|q| q.strip_prefix("many=")) {
            for i in 0..n.parse::<usize>().unwrap() {
                let value = header::HeaderValue::from_str(&format!("c{i}=v")).unwrap();
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        for line in req.headers().get_all("x-set") {
            response
                .headers_mut()
                .append(header::SET_COOKIE, line.clone());
        }
        return response;
    }
    let cookie = req
        .headers()
        .get(header::COOKIE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    *response.body_mut() = Body::from(cookie);
    response
}

fn server() -> ServerHandle {
    Server::bind("127.0.0.1:0").unwrap().start(handler).unwrap()
}

/// A client with a jar that reaches `addr` under every name used here.
fn client(addr: SocketAddr) -> Client {
    let mut builder = Client::builder().no_proxy().cookie_store(true);
    for host in ["www.example.com", "api.example.com", "other.com", "h.test"] {
        builder = builder.resolve(host, addr);
    }
    builder.build().unwrap()
}

fn set(client: &Client, url: String, set_cookie: &str) {
    client
        .get(url)
        .header("x-set", set_cookie)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
}

fn sent(client: &Client, url: String) -> String {
    client.get(url).send().unwrap().text().unwrap()
}

#[test]
fn max_age_beyond_the_clock_does_not_panic_the_requesting_greenlet() {
    let server = server();
    let port = server.local_addr().port();
    let client = client(server.local_addr());
    let requester = {
        let client = client.clone();
        green::spawn(move || {
            set(
                &client,
                format!("http://h.test:{port}/set"),
                "a=b; Max-Age=9223372036854775807",
            )
        })
    };
    requester.join().expect("the request survives the cookie");
    assert_eq!(sent(&client, format!("http://h.test:{port}/")), "a=b");
}

#[test]
fn domain_com_from_www_example_com_is_rejected() {
    let server = server();
    let port = server.local_addr().port();
    let client = client(server.local_addr());
    set(
        &client,
        format!("http://www.example.com:{port}/set"),
        "tld=1; Domain=com",
    );
    set(
        &client,
        format!("http://www.example.com:{port}/set"),
        "site=1; Domain=example.com",
    );
    assert_eq!(sent(&client, format!("http://other.com:{port}/")), "");
    assert_eq!(
        sent(&client, format!("http://api.example.com:{port}/")),
        "site=1",
        "a registrable domain is still accepted"
    );
    assert_eq!(client.cookie_jar().unwrap().len(), 1);
}

#[test]
fn jar_keeps_at_most_fifty_cookies_per_domain() {
    let server = server();
    let port = server.local_addr().port();
    let client = client(server.local_addr());
    let many = green::http::client::Jar::MAX_PER_DOMAIN + 20;
    client
        .get(format!("http://h.test:{port}/set?many={many}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(
        client.cookie_jar().unwrap().len(),
        green::http::client::Jar::MAX_PER_DOMAIN
    );
    let cookies = sent(&client, format!("http://h.test:{port}/"));
    assert!(cookies.contains(&format!("c{}=v", many - 1)), "{cookies}");
    assert!(
        !cookies.contains("c0=v"),
        "the oldest went first: {cookies}"
    );
}
