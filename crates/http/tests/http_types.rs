//! The `http` crate's types through the client: `Client::execute` sends an `http::Request`, and
//! a `ClientResponse` converts into an `http::Response`, against green's own server on loopback.

use std::io::{Read, Write};
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use green_http::client::{BodyReader, Client, Error, Url};
use green_http::server::{Body, Server, ServerHandle};
use green_http::{header, Method, Request, Response, StatusCode, Version};

/// A server that answers every request with its method, path, `x-probe` header and body.
fn echo_server() -> ServerHandle {
    Server::bind("127.0.0.1:0")
        .unwrap()
        .start(|req: Request<Body>| -> std::io::Result<Response<Body>> {
            let probe = req
                .headers()
                .get("x-probe")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let line = format!("{} {} {probe} ", req.method(), req.uri().path());
            let body = req.into_body().into_string()?;
            Ok(Response::builder()
                .status(StatusCode::CREATED)
                .header("x-server", "green")
                .body(Body::from(line + &body))
                .unwrap())
        })
        .unwrap()
}

#[test]
fn execute_sends_method_uri_headers_and_body_of_an_http_request() {
    let server = echo_server();
    let request = Request::builder()
        .method(Method::PUT)
        .uri(format!("http://{}/items/7", server.local_addr()))
        .header("x-probe", "yes")
        .body("payload")
        .unwrap();
    let response = Client::new().execute(request).unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.text().unwrap(), "PUT /items/7 yes payload");
    server.stop(Duration::from_secs(1));
}

#[test]
fn execute_takes_any_body_that_converts_into_a_client_body() {
    let server = echo_server();
    let url = format!("http://{}/bytes", server.local_addr());
    let client = Client::new();
    let bytes = Request::post(&url).body(b"raw".to_vec()).unwrap();
    assert_eq!(
        client.execute(bytes).unwrap().text().unwrap(),
        "POST /bytes  raw"
    );
    let empty = Request::get(&url).body("").unwrap();
    assert_eq!(
        client.execute(empty).unwrap().text().unwrap(),
        "GET /bytes  "
    );
    server.stop(Duration::from_secs(1));
}

#[test]
fn execute_rejects_a_uri_without_scheme_and_host() {
    let request = Request::get("/only/a/path").body("").unwrap();
    let err = Client::new().execute(request).unwrap_err();
    assert!(matches!(err, Error::Url { .. }), "{err:?}");
}

#[test]
fn client_response_converts_into_http_response_with_status_headers_url_and_body() {
    let server = echo_server();
    let url = format!("http://{}/convert", server.local_addr());
    let response: Response<BodyReader> = green_http::post(&url).body("x").send().unwrap().into();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(response.headers()["x-server"], "green");
    assert_eq!(response.extensions().get::<Url>().unwrap().as_str(), url);
    let mut body = String::new();
    response.into_body().read_to_string(&mut body).unwrap();
    assert_eq!(body, "POST /convert  x");
    server.stop(Duration::from_secs(1));
}

#[test]
fn converted_response_of_a_gzip_body_reads_decoded_without_encoding_headers() {
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(b"unzipped text").unwrap();
    let compressed = gzip.finish().unwrap();
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .start(move |_req: Request<Body>| {
            Response::builder()
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::from(compressed.clone()))
                .unwrap()
        })
        .unwrap();
    let url = format!("http://{}/", server.local_addr());
    let response: Response<BodyReader> = green_http::get(&url).unwrap().into();
    assert!(!response.headers().contains_key(header::CONTENT_ENCODING));
    assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
    let mut body = String::new();
    response.into_body().read_to_string(&mut body).unwrap();
    assert_eq!(body, "unzipped text");
    server.stop(Duration::from_secs(1));
}
