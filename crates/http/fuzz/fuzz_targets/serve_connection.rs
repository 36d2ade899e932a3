//! The server's connection loop: arbitrary client bytes, delivered in pieces, through a real
//! `conn::serve` to handlers that read, echo, stream, fail and upgrade. It never panics (the
//! handlers assert that only valid Host values and target forms reach them), and what it writes
//! begins with a complete, parseable response head.
#![no_main]

use green_http::proto::{self, Limits, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let written = green_http::server::fuzz::serve_bytes(data);
    if written.is_empty() {
        return;
    }
    match proto::parse_response(&written, &Limits::default()) {
        Ok(Parsed::Complete(response, _)) => assert!(response.status().as_u16() >= 100),
        other => panic!(
            "the server wrote no valid head: {other:?}\n{:?}",
            String::from_utf8_lossy(&written)
        ),
    }
});
