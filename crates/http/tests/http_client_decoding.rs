//! The client's body decoding against a real server on loopback (green's own `http::Server`):
//! every content coding compiled in (gzip, deflate, brotli, zstd) is advertised and undone, a
//! decompression bomb is a typed error for each of them, and `text()` decodes charsets as
//! browsers do (encoding_rs). Needs the features `brotli` and `zstd`.

use std::io::{Read, Write};
use std::sync::OnceLock;

use green::http::client::{Client, Error};
use green::http::server::{Body, Server, ServerHandle};
use green::http::{header, Request, Response};

/// The decompressed-size limit of the bomb test.
const LIMIT: u64 = 256 << 10;

const TEXT: &str = "green threads, gevent style. ";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = brotli::CompressorWriter::new(&mut out, 4096, 1, 22);
        encoder.write_all(data).unwrap();
    }
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).unwrap()
}

/// A small zstd frame that declares a 16 MiB window (streamed, so its size is unknown to the
/// encoder and the window stays as asked).
fn zstd_wide_window() -> Vec<u8> {
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    encoder.window_log(24).unwrap();
    encoder.write_all(TEXT.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

/// The size of a bomb's decoded body: far over the limit the tests set (256 KiB), small enough
/// to compress quickly in a debug build.
const BOMB: usize = 2 << 20;

/// One content coding's test bodies.
struct Coded {
    /// The `Content-Encoding` token.
    name: &'static str,
    /// TEXT×200, compressed.
    text: Vec<u8>,
    /// BOMB zero bytes, compressed.
    bomb: Vec<u8>,
}

type Encoder = fn(&[u8]) -> Vec<u8>;

/// Every coding's bodies, made once.
fn bodies() -> &'static [Coded] {
    static BODIES: OnceLock<Vec<Coded>> = OnceLock::new();
    BODIES.get_or_init(|| {
        let text = TEXT.repeat(200).into_bytes();
        let zeros = vec![0u8; BOMB];
        let codecs: [(&str, Encoder); 4] = [
            ("gzip", gzip),
            ("deflate", deflate),
            ("br", brotli),
            ("zstd", zstd),
        ];
        codecs
            .iter()
            .map(|&(name, encode)| Coded {
                name,
                text: encode(&text),
                bomb: encode(&zeros),
            })
            .collect()
    })
}

/// `/<coding>` and `/<coding>/bomb` serve the compressed bodies; `/charset?<content-type>`
/// serves the `x-bytes` request header's hex bytes with that Content-Type; every response
/// echoes the request's Accept-Encoding in `x-accept-encoding`.
fn handler(req: Request<Body>) -> Response<Body> {
    let accept = req.headers().get(header::ACCEPT_ENCODING).cloned();
    let path = req.uri().path().trim_start_matches('/');
    let mut response = if path == "charset" {
        let content_type = req
            .uri()
            .query()
            .unwrap_or_default()
            .replace("%20", " ")
            .replace("%22", "\"");
        let hex = req.headers()["x-bytes"].to_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut response = Response::new(Body::from(bytes));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_str(&content_type).unwrap(),
        );
        response
    } else if path == "zstd-wide" {
        let mut response = Response::new(Body::from(zstd_wide_window()));
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("zstd"),
        );
        response
    } else {
        let (coding, bomb) = match path.split_once('/') {
            Some((coding, "bomb")) => (coding, true),
            _ => (path, false),
        };
        let coded = bodies().iter().find(|c| c.name == coding).unwrap();
        let body = if bomb { &coded.bomb } else { &coded.text };
        let mut response = Response::new(Body::from(body.clone()));
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static(coded.name),
        );
        response
    };
    if let Some(accept) = accept {
        response.headers_mut().insert("x-accept-encoding", accept);
    }
    response
}

fn server() -> ServerHandle {
    Server::bind("127.0.0.1:0").unwrap().start(handler).unwrap()
}

fn url(server: &ServerHandle, path: &str) -> String {
    format!("http://{}/{path}", server.local_addr())
}

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

#[test]
fn every_compiled_coding_is_advertised_and_decoded() {
    let server = server();
    let client = client();
    for Coded { name: coding, .. } in bodies() {
        let response = client.get(url(&server, coding)).send().unwrap();
        assert_eq!(
            response.header("x-accept-encoding"),
            Some("gzip, deflate, br, zstd")
        );
        assert!(response.header("content-encoding").is_none(), "{coding}");
        assert_eq!(response.text().unwrap(), TEXT.repeat(200), "{coding}");
    }
    let only_gzip = Client::builder()
        .no_proxy()
        .deflate(false)
        .brotli(false)
        .zstd(false)
        .build()
        .unwrap();
    let response = only_gzip.get(url(&server, "br")).send().unwrap();
    assert_eq!(response.header("x-accept-encoding"), Some("gzip"));
    assert_eq!(
        response.header("content-encoding"),
        Some("br"),
        "not decoded"
    );
}

fn assert_bomb_stopped(err: &Error, coding: &str) {
    assert!(
        matches!(err, Error::DecodedTooLarge { limit, .. } if *limit == LIMIT),
        "{coding}: {err}"
    );
    assert!(err.is_decode(), "{coding}");
    assert!(err.to_string().contains("262144 bytes"), "{coding}: {err}");
}

#[test]
fn decompression_bomb_is_a_typed_error_for_every_codec() {
    let server = server();
    let client = Client::builder()
        .no_proxy()
        .body_limit(None)
        .decompressed_limit(LIMIT)
        .build()
        .unwrap();
    for Coded {
        name: coding, bomb, ..
    } in bodies()
    {
        assert!(bomb.len() < BOMB / 100, "{coding}: a real bomb");
        let path = format!("{coding}/bomb");
        let err = client
            .get(url(&server, &path))
            .send()
            .unwrap()
            .bytes()
            .unwrap_err();
        assert_bomb_stopped(&err, coding);

        let mut reader = client
            .get(url(&server, &path))
            .send()
            .unwrap()
            .into_reader();
        let mut sink = Vec::new();
        let err = reader.read_to_end(&mut sink).unwrap_err();
        assert!(
            sink.len() as u64 <= LIMIT,
            "{coding}: kept {} bytes",
            sink.len()
        );
        let err = err.into_inner().unwrap().downcast::<Error>().unwrap();
        assert_bomb_stopped(&err, coding);
    }
    // Under the limit, the same bodies decode.
    let roomy = Client::builder()
        .no_proxy()
        .body_limit(None)
        .decompressed_limit(BOMB as u64)
        .build()
        .unwrap();
    let zeros = roomy
        .get(url(&server, "zstd/bomb"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(zeros.len(), BOMB);
}

fn text_of(server: &ServerHandle, content_type: &str, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    client()
        .get(url(
            server,
            &format!("charset?{}", content_type.replace(' ', "%20")),
        ))
        .header("x-bytes", hex)
        .send()
        .unwrap()
        .text()
        .unwrap()
}

#[test]
fn windows_1252_high_bytes_are_typographic_characters_under_every_latin1_label() {
    let server = server();
    let bytes = [
        0x80, 0x91, 0x92, 0x93, 0x94, 0x96, b' ', b'c', b'a', b'f', 0xe9,
    ];
    for label in ["windows-1252", "iso-8859-1", "latin1", "us-ascii"] {
        assert_eq!(
            text_of(&server, &format!("text/html; charset={label}"), &bytes),
            "€‘’“”– café",
            "{label}"
        );
    }
}

#[test]
fn text_follows_the_charset_label_the_bom_and_defaults_to_lossy_utf8() {
    let server = server();
    // Other WHATWG encodings by label.
    assert_eq!(
        text_of(&server, "text/plain; charset=Shift_JIS", &[0x82, 0xa0]),
        "あ"
    );
    assert_eq!(
        text_of(&server, "text/plain; charset=\"koi8-r\"", &[0xc1]),
        "а"
    );
    // A byte-order mark wins over the label.
    assert_eq!(
        text_of(
            &server,
            "text/plain; charset=iso-8859-1",
            &[0xff, 0xfe, b'h', 0, b'i', 0]
        ),
        "hi"
    );
    assert_eq!(
        text_of(&server, "text/plain", &[0xef, 0xbb, 0xbf, b'o', b'k']),
        "ok"
    );
    // No or an unknown charset: UTF-8, malformed bytes replaced.
    assert_eq!(text_of(&server, "text/plain", "é".as_bytes()), "é");
    assert_eq!(
        text_of(
            &server,
            "text/plain; charset=x-unknown",
            &[b'a', 0xff, b'b']
        ),
        "a\u{fffd}b"
    );
}

#[test]
fn zstd_frame_with_a_window_over_8_mib_is_a_decode_error() {
    let server = server();
    let err = client()
        .get(url(&server, "zstd-wide"))
        .send()
        .unwrap()
        .bytes()
        .unwrap_err();
    assert!(err.is_decode(), "{err}");
    assert!(!matches!(err, Error::DecodedTooLarge { .. }), "{err}");
}
