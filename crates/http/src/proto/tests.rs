//! Unit tests of the protocol core, on byte slices.

use http::header::{HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Version};

use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn request(wire: &[u8]) -> (http::Request<()>, usize) {
    parse_request(wire, &limits())
        .unwrap()
        .complete()
        .expect("complete head")
}

fn response(wire: &[u8]) -> (http::Response<()>, usize) {
    parse_response(wire, &limits())
        .unwrap()
        .complete()
        .expect("complete head")
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

/// Decodes all of `wire`, feeding it in pieces of `step` bytes; returns the body, the bytes
/// after the body, and the decoder.
fn decode_in_steps(
    mut decoder: BodyDecoder,
    wire: &[u8],
    step: usize,
) -> Result<(Vec<u8>, Vec<u8>, BodyDecoder), ProtoError> {
    let mut body = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        let (event, used) = decoder.decode(&pending)?;
        match event {
            Decoded::Data(data) => {
                body.extend_from_slice(data);
                pending.drain(..used);
            }
            Decoded::End => {
                pending.drain(..used);
                pending.extend_from_slice(&wire[fed..]);
                return Ok((body, pending, decoder));
            }
            Decoded::NeedMore => {
                pending.drain(..used);
                if fed == wire.len() {
                    decoder.eof()?;
                    return Ok((body, pending, decoder));
                }
                let end = (fed + step).min(wire.len());
                pending.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    }
}

fn chunked(wire: &[u8]) -> Result<(Vec<u8>, Vec<u8>, BodyDecoder), ProtoError> {
    decode_in_steps(BodyDecoder::new(Framing::Chunked), wire, wire.len().max(1))
}

// ---- request heads ----

#[test]
fn parses_a_simple_get() {
    let wire = b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n";
    let (req, used) = request(wire);
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), "/a/b");
    assert_eq!(req.uri().query(), Some("c=d"));
    assert_eq!(req.version(), Version::HTTP_11);
    assert_eq!(req.headers()["host"], "example.com");
    assert_eq!(req.headers()["x-a"], "1");
    assert_eq!(used, wire.len());
}

#[test]
fn request_head_is_partial_until_the_empty_line_at_every_split() {
    let wire = b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
    for cut in 0..wire.len() {
        assert!(
            !parse_request(&wire[..cut], &limits())
                .unwrap()
                .is_complete(),
            "cut at {cut}"
        );
    }
    assert_eq!(request(wire).1, wire.len());
}

#[test]
fn pipelined_requests_parse_one_after_another() {
    let wire = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTT";
    let (first, used1) = request(wire);
    let (second, used2) = request(&wire[used1..]);
    assert_eq!(first.uri().path(), "/1");
    assert_eq!(second.uri().path(), "/2");
    assert!(!parse_request(&wire[used1 + used2..], &limits())
        .unwrap()
        .is_complete());
}

#[test]
fn leading_empty_lines_before_a_request_are_skipped() {
    let (req, _) = request(b"\r\n\r\nGET /x HTTP/1.0\r\n\r\n");
    assert_eq!(req.uri().path(), "/x");
    assert_eq!(req.version(), Version::HTTP_10);
}

#[test]
fn options_star_and_connect_authority_targets_parse() {
    let (options, _) = request(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(options.method(), Method::OPTIONS);
    assert_eq!(options.uri(), "*");
    let (connect, _) = request(b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(connect.uri().authority().unwrap(), "example.com:443");
}

#[test]
fn malformed_request_lines_are_rejected() {
    for wire in [
        &b"GET\r\n\r\n"[..],
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"G@T / HTTP/1.1\r\n\r\n",
        b"GET / FTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty-name\r\n\r\n",
    ] {
        let err = parse_request(wire, &limits()).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{wire:?}: {err}");
    }
}

#[test]
fn http_2_request_line_is_unsupported_version() {
    let err = parse_request(b"GET / HTTP/2.0\r\n\r\n", &limits()).unwrap_err();
    assert_eq!(err, ProtoError::UnsupportedVersion);
    assert_eq!(err.status(), StatusCode::HTTP_VERSION_NOT_SUPPORTED);
}

#[test]
fn later_http_1_minor_versions_are_read_as_1_1() {
    let (req, used) = request(b"GET /x HTTP/1.2\r\nHost: a\r\n\r\nrest");
    assert_eq!(req.version(), Version::HTTP_11);
    assert_eq!(req.uri().path(), "/x");
    assert_eq!(used, 28);
    let (req, _) = request(b"\r\nGET / HTTP/1.9\r\n\r\n");
    assert_eq!(req.version(), Version::HTTP_11);
    assert!(!parse_request(b"GET / HTTP/1.2\r\nHost: a\r\n", &limits())
        .unwrap()
        .is_complete());
    assert_eq!(
        parse_request(b"GET / HTTP/3.0\r\n\r\n", &limits()).unwrap_err(),
        ProtoError::UnsupportedVersion
    );
}

#[test]
fn host_values_must_be_host_and_port() {
    for valid in [
        "",
        "example.com",
        "example.com:8080",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:443",
        "[v1.x:y]",
        "a-b_c~d.e",
        "host:",
        "%41bc",
        "a!$&'()*+,;=",
    ] {
        assert!(valid_host(valid.as_bytes()), "{valid:?} is valid");
    }
    for invalid in [
        "a b", "a/b", "[::1", "u@h", "[::1]x", "[zz]", "h:8x", "a:b:c", "%4", "%zz", "a\\b", "h?q",
        "h#f", "[]", "[v.x]", "a\"b",
    ] {
        assert!(!valid_host(invalid.as_bytes()), "{invalid:?} is invalid");
    }
}

#[test]
fn request_targets_must_have_their_methods_form() {
    let check = |method: &str, target: &str| {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let uri = http::Uri::try_from(target).unwrap();
        check_request_target(&method, &uri)
    };
    for (method, target) in [
        ("GET", "/"),
        ("GET", "/a?b=c"),
        ("GET", "http://example.com/a"),
        ("POST", "https://example.com:8443"),
        ("OPTIONS", "*"),
        ("OPTIONS", "/a"),
        ("CONNECT", "example.com:443"),
        ("CONNECT", "[::1]:22"),
    ] {
        assert_eq!(check(method, target), Ok(()), "{method} {target}");
    }
    for (method, target) in [
        ("GET", "echo"),
        ("GET", "*"),
        ("POST", "*"),
        ("GET", "example.com:80"),
        ("GET", "http://u:p@host/"),
        ("GET", "http://u@host/"),
        ("CONNECT", "/"),
        ("CONNECT", "example.com"),
        ("CONNECT", "u@example.com:443"),
        ("CONNECT", "http://example.com:443/"),
    ] {
        assert_eq!(
            check(method, target),
            Err(ProtoError::InvalidUri),
            "{method} {target}"
        );
    }
}

#[test]
fn oversized_head_is_rejected_while_still_partial() {
    let limits = Limits {
        max_header_bytes: 100,
        ..Limits::default()
    };
    let mut wire = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    wire.resize(101, b'a');
    assert_eq!(
        parse_request(&wire, &limits).unwrap_err(),
        ProtoError::HeadersTooLarge
    );
    assert_eq!(
        ProtoError::HeadersTooLarge.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}

#[test]
fn complete_head_over_the_limit_is_rejected() {
    let limits = Limits {
        max_header_bytes: 30,
        ..Limits::default()
    };
    let wire = b"GET / HTTP/1.1\r\nX-Big: aaaaaaaaaaaaaaa\r\n\r\n";
    assert_eq!(
        parse_request(wire, &limits).unwrap_err(),
        ProtoError::HeadersTooLarge
    );
}

#[test]
fn too_many_headers_is_a_typed_error() {
    let limits = Limits {
        max_headers: 3,
        ..Limits::default()
    };
    let wire = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n";
    assert_eq!(
        parse_request(wire, &limits).unwrap_err(),
        ProtoError::TooManyHeaders
    );
    let ok = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
    assert!(parse_request(ok, &limits).unwrap().is_complete());
}

#[test]
fn more_header_slots_than_the_stack_holds_use_the_heap() {
    let limits = Limits {
        max_headers: 200,
        ..Limits::default()
    };
    let mut wire = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..150 {
        wire.extend_from_slice(format!("x-h{i}: {i}\r\n").as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    let (req, _) = parse_request(&wire, &limits).unwrap().complete().unwrap();
    assert_eq!(req.headers().len(), 150);
}

#[test]
fn heads_with_more_fields_than_the_first_stack_try_parse_whole_or_partial() {
    let limits = Limits::default();
    let head = |fields: usize| {
        let mut wire = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..fields {
            wire.extend_from_slice(format!("x-h{i}: {i}\r\n").as_bytes());
        }
        wire
    };
    let mut partial = head(60);
    assert!(!parse_request(&partial, &limits).unwrap().is_complete());
    partial.extend_from_slice(b"\r\n");
    let (req, _) = parse_request(&partial, &limits)
        .unwrap()
        .complete()
        .unwrap();
    assert_eq!(req.headers().len(), 60);
    let mut over = head(limits.max_headers + 1);
    over.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_request(&over, &limits).unwrap_err(),
        ProtoError::TooManyHeaders
    );
}

#[test]
fn long_uri_gives_414_complete_or_partial() {
    let limits = Limits {
        max_uri_len: 50,
        ..Limits::default()
    };
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(60));
    assert_eq!(
        parse_request(long.as_bytes(), &limits).unwrap_err(),
        ProtoError::UriTooLong
    );
    let unfinished = format!("GET /{}", "a".repeat(200));
    assert_eq!(
        parse_request(unfinished.as_bytes(), &limits).unwrap_err(),
        ProtoError::UriTooLong
    );
    assert_eq!(ProtoError::UriTooLong.status(), StatusCode::URI_TOO_LONG);
}

#[test]
fn repeated_headers_are_all_kept_in_order() {
    let (req, _) = request(b"GET / HTTP/1.1\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n");
    let all: Vec<_> = req.headers().get_all("cookie").iter().collect();
    assert_eq!(all, ["a=1", "b=2"]);
}

// ---- response heads ----

#[test]
fn parses_a_response_with_reason_and_headers() {
    let (res, used) = response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\nrest");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.version(), Version::HTTP_11);
    assert_eq!(used, 45);
}

#[test]
fn response_without_reason_phrase_parses() {
    let (res, _) = response(b"HTTP/1.0 200 \r\n\r\n");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), Version::HTTP_10);
}

#[test]
fn lenient_response_parsing_tolerates_spaces_and_bad_lines() {
    let (res, _) = response(b"HTTP/1.1  200  OK\r\nServer : x\r\nbad line\r\nA: b\r\n\r\n");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["server"], "x");
    assert_eq!(res.headers()["a"], "b");
}

#[test]
fn interim_responses_are_returned_and_skippable() {
    let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                 HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut pos = 0;
    let mut seen = Vec::new();
    let final_res = loop {
        let (res, used) = response(&wire[pos..]);
        pos += used;
        seen.push(res.status().as_u16());
        if !is_interim(res.status()) {
            break res;
        }
        let framing = response_framing(&Method::GET, res.status(), res.version(), res.headers());
        assert_eq!(framing.unwrap(), Framing::Empty);
    };
    assert_eq!(seen, [100, 103, 200]);
    assert_eq!(final_res.status(), StatusCode::OK);
    assert_eq!(&wire[pos..], b"ok");
    assert!(!is_interim(StatusCode::SWITCHING_PROTOCOLS));
}

#[test]
fn invalid_status_codes_are_rejected() {
    for wire in [
        &b"HTTP/1.1 20 OK\r\n\r\n"[..],
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 099 X\r\n\r\n",
    ] {
        assert!(parse_response(wire, &limits()).is_err(), "{wire:?}");
    }
}

#[test]
fn oversized_response_head_is_rejected() {
    let limits = Limits {
        max_header_bytes: 64,
        ..Limits::default()
    };
    let wire = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "v".repeat(100));
    assert_eq!(
        parse_response(wire.as_bytes(), &limits).unwrap_err(),
        ProtoError::HeadersTooLarge
    );
}

// ---- serialisation ----

#[test]
fn request_head_serialises_and_parses_back() {
    let mut out = Vec::new();
    let h = headers(&[("host", "example.com"), ("x-a", "1"), ("x-a", "2")]);
    let uri: http::Uri = "http://example.com/p?q=1".parse().unwrap();
    write_request_head(
        &mut out,
        &Method::PUT,
        request_target(&uri),
        Version::HTTP_11,
        &h,
    );
    assert_eq!(
        out,
        b"PUT /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
    );
    let (req, used) = request(&out);
    assert_eq!(used, out.len());
    assert_eq!(req.method(), Method::PUT);
    assert_eq!(req.headers(), &h);
}

#[test]
fn request_target_of_a_bare_authority_is_slash() {
    let uri: http::Uri = "http://example.com".parse().unwrap();
    assert_eq!(request_target(&uri), "/");
}

#[test]
fn response_head_uses_the_canonical_reason() {
    let mut out = Vec::new();
    write_response_head(
        &mut out,
        Version::HTTP_10,
        StatusCode::NOT_FOUND,
        &headers(&[("content-length", "0")]),
    );
    assert_eq!(out, b"HTTP/1.0 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    let mut custom = Vec::new();
    write_response_head(
        &mut custom,
        Version::HTTP_11,
        StatusCode::from_u16(599).unwrap(),
        &HeaderMap::new(),
    );
    assert_eq!(custom, b"HTTP/1.1 599 \r\n\r\n");
    assert_eq!(response(&custom).0.status().as_u16(), 599);
}

// ---- framing ----

#[test]
fn request_framing_follows_rfc_9112() {
    let v11 = Version::HTTP_11;
    assert_eq!(
        request_framing(v11, &HeaderMap::new()).unwrap(),
        Framing::Empty
    );
    assert_eq!(
        request_framing(v11, &headers(&[("content-length", "12")])).unwrap(),
        Framing::Length(12)
    );
    assert_eq!(
        request_framing(v11, &headers(&[("transfer-encoding", "Chunked")])).unwrap(),
        Framing::Chunked
    );
}

#[test]
fn request_with_te_and_cl_is_rejected_as_smuggling() {
    let h = headers(&[("transfer-encoding", "chunked"), ("content-length", "5")]);
    assert_eq!(
        request_framing(Version::HTTP_11, &h).unwrap_err(),
        ProtoError::InvalidTransferEncoding
    );
}

#[test]
fn request_te_other_than_lone_chunked_is_rejected() {
    for te in [
        &["gzip"][..],
        &["gzip, chunked"],
        &["chunked, chunked"],
        &["chunked", "gzip"],
    ] {
        let mut h = HeaderMap::new();
        for v in te {
            h.append(TRANSFER_ENCODING, HeaderValue::from_static(v));
        }
        assert_eq!(
            request_framing(Version::HTTP_11, &h).unwrap_err(),
            ProtoError::InvalidTransferEncoding,
            "{te:?}"
        );
    }
    let chunked = headers(&[("transfer-encoding", "chunked")]);
    assert!(request_framing(Version::HTTP_10, &chunked).is_err());
}

#[test]
fn content_length_must_be_plain_digits_without_overflow() {
    for bad in [
        "",
        "-1",
        "+5",
        "0x10",
        "1 2",
        "5a",
        "18446744073709551616",
        "1e3",
    ] {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_str(bad).unwrap());
        assert_eq!(
            content_length(&h).unwrap_err(),
            ProtoError::InvalidContentLength,
            "{bad:?}"
        );
    }
    let max = headers(&[("content-length", "18446744073709551615")]);
    assert_eq!(content_length(&max).unwrap(), Some(u64::MAX));
    let padded = headers(&[("content-length", " 007 ")]);
    assert_eq!(content_length(&padded).unwrap(), Some(7));
}

#[test]
fn conflicting_content_lengths_are_rejected_identical_ones_merged() {
    let same = headers(&[("content-length", "5"), ("content-length", "5, 5")]);
    assert_eq!(content_length(&same).unwrap(), Some(5));
    let differ = headers(&[("content-length", "5"), ("content-length", "6")]);
    assert_eq!(
        content_length(&differ).unwrap_err(),
        ProtoError::ConflictingContentLength
    );
    let list = headers(&[("content-length", "5, 7")]);
    assert_eq!(
        content_length(&list).unwrap_err(),
        ProtoError::ConflictingContentLength
    );
    let empty_item = headers(&[("content-length", "5,")]);
    assert!(content_length(&empty_item).is_err());
}

#[test]
fn head_204_304_1xx_and_connect_responses_have_no_body() {
    let cl = headers(&[("content-length", "10")]);
    let v = Version::HTTP_11;
    let get = Method::GET;
    assert_eq!(
        response_framing(&Method::HEAD, StatusCode::OK, v, &cl).unwrap(),
        Framing::Empty
    );
    for status in [204, 304, 100, 101, 103] {
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(
            response_framing(&get, status, v, &cl).unwrap(),
            Framing::Empty,
            "{status}"
        );
    }
    assert_eq!(
        response_framing(&Method::CONNECT, StatusCode::OK, v, &cl).unwrap(),
        Framing::Empty
    );
    assert_eq!(
        response_framing(&Method::CONNECT, StatusCode::FORBIDDEN, v, &cl).unwrap(),
        Framing::Length(10)
    );
}

#[test]
fn response_framing_prefers_chunked_then_length_then_close() {
    let v = Version::HTTP_11;
    let get = Method::GET;
    let ok = StatusCode::OK;
    let both = headers(&[("transfer-encoding", "chunked"), ("content-length", "3")]);
    assert_eq!(
        response_framing(&get, ok, v, &both).unwrap(),
        Framing::Chunked
    );
    assert!(!reusable(v, &both, Framing::Chunked));
    let gzip_only = headers(&[("transfer-encoding", "gzip")]);
    assert_eq!(
        response_framing(&get, ok, v, &gzip_only).unwrap(),
        Framing::CloseDelimited
    );
    let chunked_10 = headers(&[("transfer-encoding", "chunked")]);
    assert_eq!(
        response_framing(&get, ok, Version::HTTP_10, &chunked_10).unwrap(),
        Framing::CloseDelimited
    );
    assert_eq!(
        response_framing(&get, ok, v, &headers(&[("content-length", "3")])).unwrap(),
        Framing::Length(3)
    );
    assert_eq!(
        response_framing(&get, ok, v, &HeaderMap::new()).unwrap(),
        Framing::CloseDelimited
    );
    assert!(response_framing(&get, ok, v, &headers(&[("content-length", "x")])).is_err());
}

#[test]
fn keep_alive_defaults_differ_between_http_10_and_11() {
    assert!(keep_alive(Version::HTTP_11, &HeaderMap::new()));
    assert!(!keep_alive(
        Version::HTTP_11,
        &headers(&[("connection", "Upgrade, Close")])
    ));
    assert!(!keep_alive(Version::HTTP_10, &HeaderMap::new()));
    assert!(keep_alive(
        Version::HTTP_10,
        &headers(&[("connection", "Keep-Alive")])
    ));
    assert!(!reusable(
        Version::HTTP_11,
        &HeaderMap::new(),
        Framing::CloseDelimited
    ));
}

#[test]
fn expect_100_continue_is_recognised_only_in_http_11() {
    let h = headers(&[("expect", "100-Continue")]);
    assert!(expects_continue(Version::HTTP_11, &h));
    assert!(!expects_continue(Version::HTTP_10, &h));
    assert!(!expects_continue(Version::HTTP_11, &HeaderMap::new()));
}

// ---- body decoding ----

#[test]
fn content_length_body_stops_at_its_length() {
    let (body, rest, decoder) =
        decode_in_steps(BodyDecoder::new(Framing::Length(5)), b"helloGET /", 3).unwrap();
    assert_eq!(body, b"hello");
    assert_eq!(rest, b"GET /");
    assert!(decoder.is_done());
    assert_eq!(decoder.received(), 5);
}

#[test]
fn truncated_content_length_body_is_unexpected_eof() {
    let err = decode_in_steps(BodyDecoder::new(Framing::Length(10)), b"short", 2).unwrap_err();
    assert_eq!(err, ProtoError::UnexpectedEof);
}

#[test]
fn empty_and_zero_length_bodies_end_at_once() {
    for framing in [Framing::Empty, Framing::Length(0)] {
        let mut decoder = BodyDecoder::new(framing);
        assert_eq!(decoder.decode(b"next").unwrap(), (Decoded::End, 0));
        assert!(decoder.is_done());
    }
}

#[test]
fn close_delimited_body_ends_at_eof() {
    let (body, _, decoder) =
        decode_in_steps(BodyDecoder::new(Framing::CloseDelimited), b"all of it", 4).unwrap();
    assert_eq!(body, b"all of it");
    assert!(decoder.is_done());
}

#[test]
fn chunked_body_decodes_at_every_feed_size() {
    let wire = b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\nNEXT";
    for step in 1..=wire.len() {
        let (body, rest, decoder) =
            decode_in_steps(BodyDecoder::new(Framing::Chunked), wire, step).unwrap();
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.", "step {step}");
        assert_eq!(rest, b"NEXT", "step {step}");
        assert!(decoder.is_done());
        assert!(decoder.trailers().is_none());
    }
}

#[test]
fn chunk_sizes_accept_upper_and_lower_hex_and_leading_zeros() {
    let (body, _, _) = chunked(b"000a\r\n0123456789\r\nA\r\n0123456789\r\n00\r\n\r\n").unwrap();
    assert_eq!(body.len(), 20);
}

#[test]
fn chunk_extensions_and_whitespace_before_them_are_tolerated() {
    let (body, rest, _) =
        chunked(b"3;name=value;x=\"q s\"\r\nabc\r\n2 \t;ext\r\nde\r\n1  \r\nf\r\n0;end\r\n\r\n!")
            .unwrap();
    assert_eq!(body, b"abcdef");
    assert_eq!(rest, b"!");
}

#[test]
fn invalid_chunk_sizes_are_rejected() {
    for wire in [
        &b"\r\nabc\r\n0\r\n\r\n"[..],
        b"x\r\n",
        b"0x3\r\nabc\r\n0\r\n\r\n",
        b"-3\r\nabc\r\n",
        b"+3\r\nabc\r\n",
        b" 3\r\nabc\r\n",
        b"3 3\r\nabc\r\n",
        b"3\nabc\r\n0\r\n\r\n",
        b"3\r\rabc",
        b"3;ext\nabc",
        b"3;e\x01xt\r\nabc\r\n",
        b";ext\r\n",
    ] {
        assert_eq!(
            chunked(wire).unwrap_err(),
            ProtoError::InvalidChunkSize,
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn chunk_size_overflow_is_detected() {
    assert_eq!(
        chunked(b"10000000000000000\r\n").unwrap_err(),
        ProtoError::ChunkSizeOverflow
    );
    // The largest u64 parses (and then runs into the body limit or EOF, not an overflow).
    let err = chunked(b"ffffffffffffffff\r\nab").unwrap_err();
    assert_eq!(err, ProtoError::UnexpectedEof);
    let leading_zeros = format!("{}1\r\na\r\n0\r\n\r\n", "0".repeat(40));
    assert_eq!(chunked(leading_zeros.as_bytes()).unwrap().0, b"a");
}

#[test]
fn missing_crlf_after_chunk_data_is_rejected() {
    for wire in [
        &b"3\r\nabcd\r\n0\r\n\r\n"[..],
        b"3\r\nabc\n0\r\n\r\n",
        b"3\r\nabc\rX",
    ] {
        assert_eq!(chunked(wire).unwrap_err(), ProtoError::InvalidChunkEnd);
    }
}

#[test]
fn overlong_chunk_extension_is_rejected() {
    let mut wire = b"1;".to_vec();
    wire.extend(std::iter::repeat_n(b'e', 5000));
    wire.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
    assert_eq!(chunked(&wire).unwrap_err(), ProtoError::InvalidChunkSize);
}

#[test]
fn trailers_are_parsed_at_every_feed_size() {
    let wire = b"3\r\nabc\r\n0\r\nChecksum: 123\r\nX-More: yes\r\n\r\nNEXT";
    for step in 1..=wire.len() {
        let (body, rest, mut decoder) =
            decode_in_steps(BodyDecoder::new(Framing::Chunked), wire, step).unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(rest, b"NEXT");
        let trailers = decoder.take_trailers().expect("trailers");
        assert_eq!(trailers["checksum"], "123");
        assert_eq!(trailers["x-more"], "yes");
    }
}

#[test]
fn malformed_or_oversized_trailers_are_rejected() {
    assert_eq!(
        chunked(b"0\r\nBad Name: x\r\n\r\n").unwrap_err(),
        ProtoError::InvalidTrailers
    );
    assert_eq!(
        chunked(b"0\r\n\n").unwrap_err(),
        ProtoError::InvalidChunkEnd
    );
    let mut wire = b"0\r\nX: ".to_vec();
    wire.extend(std::iter::repeat_n(b'a', 200));
    let decoder = BodyDecoder::new(Framing::Chunked).max_trailer_bytes(100);
    assert_eq!(
        decode_in_steps(decoder, &wire, 7).unwrap_err(),
        ProtoError::TrailersTooLarge
    );
}

#[test]
fn truncated_chunked_body_is_unexpected_eof_at_every_cut() {
    let wire = b"4\r\nWiki\r\n0\r\nT: 1\r\n\r\n";
    for cut in 0..wire.len() {
        assert_eq!(
            chunked(&wire[..cut]).unwrap_err(),
            ProtoError::UnexpectedEof,
            "cut {cut}"
        );
    }
}

#[test]
fn body_limit_applies_to_declared_and_received_sizes() {
    let limited = |framing| BodyDecoder::new(framing).max_body(Some(10));
    let mut declared = limited(Framing::Length(11));
    assert_eq!(declared.decode(b"").unwrap_err(), ProtoError::BodyTooLarge);
    assert!(declared.is_failed());
    let (body, _, _) = decode_in_steps(limited(Framing::Length(10)), &[b'a'; 10], 3).unwrap();
    assert_eq!(body.len(), 10);
    // A chunk whose declared size passes the limit fails before its data arrives.
    assert_eq!(
        decode_in_steps(limited(Framing::Chunked), b"6\r\nabcdef\r\n5\r\n", 100).unwrap_err(),
        ProtoError::BodyTooLarge
    );
    assert!(decode_in_steps(
        limited(Framing::Chunked),
        b"5\r\nabcde\r\n5\r\nabcde\r\n0\r\n\r\n",
        4
    )
    .is_ok());
    assert_eq!(
        decode_in_steps(limited(Framing::CloseDelimited), &[b'a'; 11], 4).unwrap_err(),
        ProtoError::BodyTooLarge
    );
    assert_eq!(
        ProtoError::BodyTooLarge.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[test]
fn decoder_stays_failed_after_an_error() {
    let mut decoder = BodyDecoder::new(Framing::Chunked);
    assert!(decoder.decode(b"zz").is_err());
    assert_eq!(
        decoder.decode(b"3\r\nabc\r\n").unwrap_err(),
        ProtoError::InvalidChunkSize
    );
    assert_eq!(decoder.eof().unwrap_err(), ProtoError::InvalidChunkSize);
}

#[test]
fn pipelined_chunked_bodies_decode_back_to_back() {
    let wire = b"2\r\nab\r\n0\r\n\r\n3\r\ncde\r\n0\r\n\r\n";
    let (first, rest, _) = chunked(wire).unwrap();
    let (second, rest2, _) = chunked(&rest).unwrap();
    assert_eq!(
        (first.as_slice(), second.as_slice()),
        (&b"ab"[..], &b"cde"[..])
    );
    assert!(rest2.is_empty());
}

// ---- encoding ----

#[test]
fn chunk_header_is_lowercase_hex() {
    for (size, text) in [
        (0, "0\r\n"),
        (10, "a\r\n"),
        (4096, "1000\r\n"),
        (usize::MAX, "ffffffffffffffff\r\n"),
    ] {
        assert_eq!(ChunkHeader::new(size).as_ref(), text.as_bytes());
    }
}

#[test]
fn chunked_encoder_round_trips_through_the_decoder() {
    let mut enc = ChunkedEncoder::new();
    let mut out = Vec::new();
    enc.encode(b"hello ", &mut out);
    enc.encode(b"", &mut out);
    enc.encode(&[b'x'; 300], &mut out);
    let trailers = headers(&[("x-sum", "42")]);
    enc.finish(Some(&trailers), &mut out);
    enc.finish(None, &mut out);
    assert!(enc.is_finished());
    let (body, rest, mut decoder) = chunked(&out).unwrap();
    assert_eq!(&body[..6], b"hello ");
    assert_eq!(body.len(), 306);
    assert!(rest.is_empty());
    assert_eq!(decoder.take_trailers().unwrap()["x-sum"], "42");
}

#[test]
fn body_encoder_enforces_content_length() {
    let mut out = Vec::new();
    let mut enc = BodyEncoder::new(Framing::Length(5));
    enc.encode(b"abc", &mut out).unwrap();
    assert_eq!(enc.remaining(), Some(2));
    assert_eq!(
        enc.encode(b"def", &mut out).unwrap_err(),
        ProtoError::BodyLengthExceeded
    );
    assert_eq!(
        enc.finish(&mut out).unwrap_err(),
        ProtoError::BodyLengthShort
    );
    enc.encode(b"de", &mut out).unwrap();
    enc.finish(&mut out).unwrap();
    assert_eq!(out, b"abcde");
    let mut empty = BodyEncoder::new(Framing::Empty);
    assert!(empty.encode(b"x", &mut out).is_err());
    let mut chunked_enc = BodyEncoder::new(Framing::Chunked);
    let mut wire = Vec::new();
    chunked_enc.encode(b"abc", &mut wire).unwrap();
    chunked_enc.finish(&mut wire).unwrap();
    assert_eq!(wire, b"3\r\nabc\r\n0\r\n\r\n");
}

#[test]
fn proto_errors_convert_to_io_errors_with_fitting_kinds() {
    let eof: std::io::Error = ProtoError::UnexpectedEof.into();
    assert_eq!(eof.kind(), std::io::ErrorKind::UnexpectedEof);
    let bad: std::io::Error = ProtoError::InvalidChunkSize.into();
    assert_eq!(bad.kind(), std::io::ErrorKind::InvalidData);
    assert!(ProtoError::TooManyHeaders.is_limit());
    assert!(!ProtoError::InvalidUri.is_limit());
}

/// xorshift64*: a fixed-seed generator, so the randomized tests are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_chunked_bodies_decode_the_same_at_any_split() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"0123456789abcdefABCDEFxX; \t\r\n=\"zZ:";
    for _ in 0..3000 {
        let mut wire = Vec::new();
        let mut enc = ChunkedEncoder::new();
        for _ in 0..rng.below(4) {
            let len = rng.below(40);
            let data: Vec<u8> = (0..len).map(|_| b'a' + rng.below(26) as u8).collect();
            enc.encode(&data, &mut wire);
        }
        let trailers = headers(&[("x-t", "v")]);
        enc.finish(rng.below(2).eq(&0).then_some(&trailers), &mut wire);
        for _ in 0..rng.below(4) {
            let at = rng.below(wire.len() + 1);
            match rng.below(3) {
                0 if at < wire.len() => wire[at] = alphabet[rng.below(alphabet.len())],
                1 => wire.insert(at, alphabet[rng.below(alphabet.len())]),
                _ if at < wire.len() => drop(wire.remove(at)),
                _ => {}
            }
        }
        let whole = chunked(&wire).map(|(body, rest, _)| (body, rest));
        let step = 1 + rng.below(7);
        let pieces = decode_in_steps(BodyDecoder::new(Framing::Chunked), &wire, step)
            .map(|(body, rest, _)| (body, rest));
        assert_eq!(
            whole,
            pieces,
            "{:?} step {step}",
            String::from_utf8_lossy(&wire)
        );
    }
}

#[test]
fn random_bytes_never_panic_the_head_parsers() {
    let mut rng = Rng(42);
    let seeds: [&[u8]; 2] = [
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    let small = Limits {
        max_header_bytes: 64,
        max_headers: 2,
        max_uri_len: 8,
        max_body: Some(10),
    };
    for i in 0..5000 {
        let mut wire = seeds[i % 2].to_vec();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(wire.len());
            wire[at] = rng.next() as u8;
        }
        for limits in [&limits(), &small] {
            if let Ok(Parsed::Complete(req, used)) = parse_request(&wire, limits) {
                assert!(used <= wire.len());
                let _ = request_framing(req.version(), req.headers());
            }
            if let Ok(Parsed::Complete(res, used)) = parse_response(&wire, limits) {
                assert!(used <= wire.len());
                let _ = response_framing(&Method::GET, res.status(), res.version(), res.headers());
            }
        }
    }
}

/// The client's lazy response heads (`parse_response_raw`) parse, fail and frame exactly like
/// `parse_response`, and build the same `HeaderMap` on demand.
#[test]
fn raw_response_heads_match_parse_response() {
    fn pairs(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        map.iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect()
    }
    let seeds: [&[u8]; 7] = [
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 19:45:39 GMT\r\n\
          Content-Type: text/html\r\nContent-Length: 1778\r\nLast-Modified: Wed, 25 Nov 2026 \
          19:45:00 GMT\r\nConnection: keep-alive\r\nETag: \"6925\"\r\nAccept-Ranges: bytes\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive, x\r\ncontent-length: 3, 3\r\n\r\n",
        b"HTTP/1.1  302  Found\r\nLocation : /next\r\nbad line\r\nSet-Cookie: a=1\r\n\
          Set-Cookie: b=2\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9 \xff\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\nTe: \t chunked\r\n\r\n",
    ];
    let small = Limits {
        max_header_bytes: 96,
        max_headers: 3,
        max_uri_len: 8,
        max_body: Some(10),
    };
    let mut rng = Rng(7);
    let mut checked = 0;
    for i in 0..20_000 {
        let mut wire = seeds[i % seeds.len()].to_vec();
        if i >= seeds.len() {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(wire.len());
                wire[at] = rng.next() as u8;
            }
            if rng.below(4) == 0 {
                wire.truncate(rng.below(wire.len()));
            }
        }
        for limits in [&limits(), &small] {
            let eager = parse_response(&wire, limits);
            let raw = parse_response_raw(&wire, limits);
            match (eager, raw) {
                (Ok(Parsed::Partial), Ok(Parsed::Partial)) => {}
                (Err(a), Err(b)) => assert_eq!(a, b, "{wire:?}"),
                (Ok(Parsed::Complete(res, used)), Ok(Parsed::Complete(raw, raw_used))) => {
                    checked += 1;
                    assert_eq!(used, raw_used, "{wire:?}");
                    assert_eq!((res.status(), res.version()), (raw.status, raw.version));
                    assert_eq!(pairs(res.headers()), pairs(&raw.header_map()), "{wire:?}");
                    let map = res.headers();
                    for method in [Method::GET, Method::HEAD] {
                        let framing = response_framing(&method, res.status(), res.version(), map);
                        assert_eq!(
                            framing,
                            response_framing_in(&method, raw.status, raw.version, &raw),
                            "{wire:?}"
                        );
                        if let Ok(framing) = framing {
                            assert_eq!(
                                reusable(res.version(), map, framing),
                                reusable_in(raw.version, &raw, framing),
                                "{wire:?}"
                            );
                        }
                    }
                    assert_eq!(content_length(map), content_length_in(&raw), "{wire:?}");
                    for name in Known::ALL {
                        let want: Vec<&[u8]> = map
                            .get_all(name.name())
                            .iter()
                            .map(|v| v.as_bytes())
                            .collect();
                        let got: Vec<&[u8]> = raw.values(name).collect();
                        assert_eq!(want, got, "{wire:?}");
                        assert_eq!(map.contains_key(name.name()), raw.contains(name));
                        assert_eq!(name.lowercase(), name.name().as_str());
                    }
                }
                (eager, raw) => panic!(
                    "{wire:?}: {eager:?} but raw {:?}",
                    raw.map(|p| p.is_complete())
                ),
            }
        }
    }
    assert!(checked > 5_000, "only {checked} complete heads compared");
}

#[test]
fn every_known_name_is_recognised_in_any_case() {
    for name in Known::ALL {
        let upper = name.lowercase().to_ascii_uppercase();
        let wire = format!("HTTP/1.1 200 OK\r\n{upper}: v\r\n\r\n");
        let (raw, _) = parse_response_raw(wire.as_bytes(), &limits())
            .unwrap()
            .complete()
            .unwrap();
        assert!(raw.contains(name), "{upper}");
        assert_eq!(raw.values(name).collect::<Vec<_>>(), [b"v"]);
    }
}

#[test]
fn known_names_match_token_names_exactly_ignoring_case() {
    // Every token character in every position of every known name: the fast comparison agrees
    // with `eq_ignore_ascii_case`.
    let tchars: Vec<u8> = (0u8..=255)
        .filter(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        .collect();
    for name in Known::ALL {
        let lower = name.lowercase().as_bytes();
        for at in 0..lower.len() {
            for &b in &tchars {
                let mut field = lower.to_vec();
                field[at] = b;
                let wire = [b"HTTP/1.1 200 OK\r\n".as_slice(), &field, b": v\r\n\r\n"].concat();
                let (raw, _) = parse_response_raw(&wire, &limits())
                    .unwrap()
                    .complete()
                    .unwrap();
                assert_eq!(
                    raw.contains(name),
                    field.eq_ignore_ascii_case(lower),
                    "{:?}",
                    String::from_utf8_lossy(&field)
                );
            }
        }
    }
}

#[test]
fn raw_response_keeps_known_fields_beyond_the_inline_ones_in_order() {
    let wire = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nDate: x\r\nSet-Cookie: b=2\r\n\
                 Set-Cookie: c=3\r\nSet-Cookie: d=4\r\nSet-Cookie: e=5\r\n\
                 Content-Length: 7\r\nConnection: keep-alive\r\n\r\n";
    let (raw, used) = parse_response_raw(wire, &limits())
        .unwrap()
        .complete()
        .unwrap();
    assert_eq!(used, wire.len());
    let cookies: Vec<&[u8]> = raw.values(Known::SetCookie).collect();
    assert_eq!(cookies, [b"a=1", b"b=2", b"c=3", b"d=4", b"e=5"]);
    assert_eq!(content_length_in(&raw), Ok(Some(7)));
    assert!(reusable_in(raw.version, &raw, Framing::Length(7)));
    let (eager, _) = parse_response(wire, &limits()).unwrap().complete().unwrap();
    assert_eq!(raw.header_map(), *eager.headers());
}

/// Heads are copied into a per-thread arena that is reused once the heads before are dropped:
/// requests kept across many arena chunks, and ones dropped in between, keep their own bytes.
#[test]
fn request_heads_keep_their_bytes_while_the_arena_turns_over() {
    let mut kept = Vec::new();
    for i in 0..500 {
        let wire = format!("GET /item/{i}?q={i} HTTP/1.1\r\nHost: h{i}\r\nX-N: {i}\r\n\r\n");
        let Parsed::Complete(req, used) =
            parse_request(wire.as_bytes(), &Limits::default()).unwrap()
        else {
            panic!("incomplete")
        };
        assert_eq!(used, wire.len());
        if i % 3 == 0 {
            kept.push((i, req));
        }
    }
    for (i, req) in &kept {
        assert_eq!(req.uri().to_string(), format!("/item/{i}?q={i}"));
        assert_eq!(req.headers()["host"], format!("h{i}").as_str());
        assert_eq!(req.headers()["x-n"], i.to_string().as_str());
    }
}

/// A connection's requests share the target and Host value of the request before when they
/// repeat it, and different ones (valid or not, short or long) are parsed and judged afresh: the
/// cache changes no outcome.
#[test]
fn repeated_targets_and_hosts_are_shared_and_new_ones_are_checked() {
    let long = format!("/{}", "x".repeat(100));
    let mut cache = HeadCache::default();
    let mut parse = |target: &str, host: &str| {
        let wire = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let mut map = HeaderMap::new();
        let head = parse_request_head(wire.as_bytes(), &limits(), &mut map, &mut cache)
            .unwrap()
            .complete()
            .unwrap()
            .0;
        let value = head.request.headers()["host"].to_str().unwrap().to_string();
        (
            head.request.uri().to_string(),
            value,
            head.hosts(),
            head.host_valid(),
        )
    };
    for (target, host, valid) in [
        ("/", "example.com:8080", true),
        ("/", "example.com:8080", true),
        ("/", "example.com:8080", true),
        ("/a?b=c", "a/b", false),
        ("/a?b=c", "a/b", false),
        ("/a?b=c", "a/b", false),
        (long.as_str(), "example.com:8080", true),
        (long.as_str(), "example.com:8080", true),
        ("/", "example.org", true),
        ("*", "example.org", true),
    ] {
        assert_eq!(
            parse(target, host),
            (target.to_string(), host.to_string(), 1, valid),
            "{target} {host}"
        );
    }
}
