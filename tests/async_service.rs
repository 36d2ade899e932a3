//! An async service (hyper on the application's own tokio runtime) whose handler awaits green
//! code — blocking-style HTTP and sleeps on a `HubPool` — with 200 requests in flight.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use green::http::server::{Body, Server};
use green::http::Response;
use green::HubPool;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

type Full = http_body_util::Full<Bytes>;

/// What the handler's green code calls: a green server answering after 50 ms.
fn backend() -> (green::HubThread, SocketAddr) {
    let listener = green::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = green::spawn_hub();
    hub.spawn(move || {
        Server::from_listener(listener).serve(|req| {
            green::sleep(Duration::from_millis(50));
            Response::new(Body::from(format!("backend saw {}", req.uri().path())))
        })
    });
    (hub, addr)
}

struct Service {
    hubs: HubPool,
    backend: SocketAddr,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl Service {
    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full>, Infallible> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let url = format!("http://{}{}", self.backend, req.uri().path());
        // Blocking-style green code on a hub thread, awaited here.
        let answer = self
            .hubs
            .spawn(move || {
                green::sleep(Duration::from_millis(100));
                let body = green::http::get(url.as_str())?.text()?;
                Ok::<_, green::http::client::Error>(body.to_uppercase())
            })
            .await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let body = match answer {
            Ok(Ok(body)) => body,
            Ok(Err(err)) => format!("backend error: {err}"),
            Err(err) => format!("greenlet failed: {err}"),
        };
        Ok(hyper::Response::new(Full::new(Bytes::from(body))))
    }
}

/// Serves `service` with hyper on `runtime`; returns the address.
fn serve(runtime: &tokio::runtime::Runtime, service: Arc<Service>) -> SocketAddr {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let handler = service_fn(move |req| service.clone().handle(req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), handler)
                    .await;
            });
        }
    });
    addr
}

#[test]
fn a_hyper_handler_awaits_green_http_and_sleeps_with_200_requests_in_flight() {
    const REQUESTS: usize = 200;
    let (backend_hub, backend) = backend();
    let service = Arc::new(Service {
        hubs: HubPool::new(2),
        backend,
        in_flight: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = serve(&runtime, service.clone());
    let start = Instant::now();
    // The clients: 200 greenlets here, each one request.
    let clients: Vec<_> = (0..REQUESTS)
        .map(|i| {
            green::spawn(move || {
                green::http::get(format!("http://{addr}/item/{i}").as_str())?.text()
            })
        })
        .collect();
    for (i, body) in green::joinall(clients).into_iter().enumerate() {
        assert_eq!(body.unwrap().unwrap(), format!("BACKEND SAW /ITEM/{i}"));
    }
    let elapsed = start.elapsed();
    // One after another: 200 × 150 ms = 30 s.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let peak = service.peak.load(Ordering::SeqCst);
    println!("{REQUESTS} requests in {elapsed:?}, at most {peak} in flight in the handler");
    assert!(
        peak >= REQUESTS / 2,
        "at most {peak} requests were in flight"
    );
    assert_eq!(service.in_flight.load(Ordering::SeqCst), 0);
    runtime.shutdown_timeout(Duration::from_secs(1));
    match Arc::try_unwrap(service) {
        Ok(service) => service.hubs.shutdown(),
        Err(_) => panic!("the service outlived its runtime"),
    }
    backend_hub.stop();
}
