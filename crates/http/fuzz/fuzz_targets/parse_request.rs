//! Request heads: parsing never panics, a complete head re-serialises to a head that parses to
//! the same request, and framing either succeeds or gives a typed error.
#![no_main]

use green_http::proto::{self, Limits, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_header_bytes: 4096,
        max_headers: 32,
        max_uri_len: 1024,
        max_body: Some(1 << 20),
    };
    let Ok(Parsed::Complete(req, used)) = proto::parse_request(data, &limits) else {
        return;
    };
    assert!(used <= data.len());
    let _ = proto::request_framing(req.version(), req.headers());
    let mut out = Vec::new();
    proto::write_request_head(
        &mut out,
        req.method(),
        &req.uri().to_string(),
        req.version(),
        req.headers(),
    );
    let big = Limits::default();
    let (again, again_used) = proto::parse_request(&out, &big)
        .expect("a serialised head parses")
        .complete()
        .expect("a serialised head is complete");
    assert_eq!(again_used, out.len());
    assert_eq!(again.method(), req.method());
    assert_eq!(again.headers(), req.headers());
});
