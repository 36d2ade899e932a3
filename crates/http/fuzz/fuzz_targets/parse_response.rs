//! Response heads: parsing never panics, and a complete head's body decodes (with any framing the
//! rules pick) without panicking, whatever follows it.
#![no_main]

use green_http::proto::{self, BodyDecoder, Decoded, Limits, Parsed};
use green_http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_header_bytes: 4096,
        max_headers: 32,
        max_uri_len: 1024,
        max_body: Some(1 << 20),
    };
    let Ok(Parsed::Complete(res, used)) = proto::parse_response(data, &limits) else {
        return;
    };
    assert!(used <= data.len());
    let method = if data.len() % 2 == 0 { Method::GET } else { Method::HEAD };
    let Ok(framing) =
        proto::response_framing(&method, res.status(), res.version(), res.headers())
    else {
        return;
    };
    let mut decoder = BodyDecoder::with_limits(framing, &limits);
    let mut rest = &data[used..];
    loop {
        match decoder.decode(rest) {
            Ok((Decoded::Data(d), n)) => {
                assert!(!d.is_empty() && n <= rest.len());
                rest = &rest[n..];
            }
            Ok((Decoded::End, n)) => {
                assert!(n <= rest.len());
                break;
            }
            Ok((Decoded::NeedMore, n)) => {
                assert_eq!(n, rest.len());
                let _ = decoder.eof();
                break;
            }
            Err(_) => break,
        }
    }
});
