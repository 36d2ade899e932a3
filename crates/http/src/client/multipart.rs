//! `multipart/form-data` request bodies (RFC 7578), as HTML forms upload files: text fields,
//! bytes, and files or any `Read` streamed as the request goes out.
//!
//! Written here rather than taken from a crate: the encoding is a few lines (a boundary, a head per
//! part, the data), and the crates for it are either unmaintained or tied to an async runtime.
//!
//! ```no_run
//! use green_http::client::multipart::{Form, Part};
//! let form = Form::new()
//!     .text("title", "holiday")
//!     .part("photo", Part::reader(std::fs::File::open("beach.jpg")?).file_name("beach.jpg"));
//! let response = green_http::client::Client::new()
//!     .post("http://example.com/upload")
//!     .multipart(form)
//!     .send()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Cursor, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::request::Body;

/// A `multipart/form-data` body: named parts, sent in the order added.
///
/// With only text and bytes parts the body is sent with a `Content-Length` (and can be sent again
/// on a 307/308 redirect); a part read from a `Read` makes the body stream, chunked, once.
pub struct Form {
    boundary: String,
    parts: Vec<(String, Part)>,
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Form")
            .field("boundary", &self.boundary)
            .field("parts", &self.parts)
            .finish()
    }
}

impl Default for Form {
    fn default() -> Form {
        Form::new()
    }
}

/// One part of a [`Form`]: its data, and optionally a file name and a content type.
pub struct Part {
    data: Data,
    file_name: Option<String>,
    mime: Option<String>,
}

enum Data {
    Bytes(Vec<u8>),
    Reader(Box<dyn Read>),
}

impl fmt::Debug for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = match &self.data {
            Data::Bytes(bytes) => format!("{} bytes", bytes.len()),
            Data::Reader(_) => "reader".to_string(),
        };
        f.debug_struct("Part")
            .field("data", &data)
            .field("file_name", &self.file_name)
            .field("mime", &self.mime)
            .finish()
    }
}

impl Part {
    /// A text value.
    pub fn text(value: impl Into<String>) -> Part {
        Part::bytes(value.into().into_bytes())
    }

    /// Bytes.
    pub fn bytes(data: impl Into<Vec<u8>>) -> Part {
        Part {
            data: Data::Bytes(data.into()),
            file_name: None,
            mime: None,
        }
    }

    /// Data read from `reader` while the request is sent (the body is then chunked and cannot be
    /// sent twice).
    pub fn reader(reader: impl Read + 'static) -> Part {
        Part {
            data: Data::Reader(Box::new(reader)),
            file_name: None,
            mime: None,
        }
    }

    /// The `filename` of the part's `Content-Disposition` (what a server saves the upload as).
    pub fn file_name(mut self, name: impl Into<String>) -> Part {
        self.file_name = Some(name.into());
        self
    }

    /// The part's `Content-Type` (`image/png`); line breaks are removed.
    pub fn mime_str(mut self, mime: &str) -> Part {
        self.mime = Some(mime.chars().filter(|c| !matches!(c, '\r' | '\n')).collect());
        self
    }
}

impl Form {
    /// An empty form with a fresh random boundary.
    pub fn new() -> Form {
        Form {
            boundary: new_boundary(),
            parts: Vec::new(),
        }
    }

    /// The boundary between parts (in the `Content-Type`).
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// Adds a text field.
    pub fn text(self, name: impl Into<String>, value: impl Into<String>) -> Form {
        self.part(name, Part::text(value))
    }

    /// Adds a part.
    pub fn part(mut self, name: impl Into<String>, part: Part) -> Form {
        self.parts.push((name.into(), part));
        self
    }

    /// Adds the file at `path`, streamed while sending, named by its file name and typed by its
    /// extension (`application/octet-stream` when unknown).
    pub fn file(self, name: impl Into<String>, path: impl AsRef<Path>) -> io::Result<Form> {
        let path = path.as_ref();
        let file = File::open(path)?;
        let mut part = Part::reader(file).mime_str(mime_for(path));
        if let Some(file_name) = path.file_name() {
            part = part.file_name(file_name.to_string_lossy());
        }
        Ok(self.part(name, part))
    }

    /// The `Content-Type` header's value.
    pub(crate) fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The encoded body: bytes when every part is in memory, a reader otherwise.
    pub(crate) fn into_body(self) -> Body {
        let mut pieces = VecDeque::new();
        let mut text = Vec::new();
        for (name, part) in self.parts {
            text.extend_from_slice(b"--");
            text.extend_from_slice(self.boundary.as_bytes());
            text.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
            text.extend_from_slice(escape(&name).as_bytes());
            text.push(b'"');
            if let Some(file_name) = &part.file_name {
                text.extend_from_slice(b"; filename=\"");
                text.extend_from_slice(escape(file_name).as_bytes());
                text.push(b'"');
            }
            if let Some(mime) = &part.mime {
                text.extend_from_slice(b"\r\nContent-Type: ");
                text.extend_from_slice(mime.as_bytes());
            }
            text.extend_from_slice(b"\r\n\r\n");
            match part.data {
                Data::Bytes(bytes) => text.extend_from_slice(&bytes),
                Data::Reader(reader) => {
                    pieces.push_back(Piece::Bytes(Cursor::new(std::mem::take(&mut text))));
                    pieces.push_back(Piece::Reader(reader));
                }
            }
            text.extend_from_slice(b"\r\n");
        }
        text.extend_from_slice(b"--");
        text.extend_from_slice(self.boundary.as_bytes());
        text.extend_from_slice(b"--\r\n");
        if pieces.is_empty() {
            return Body::from(text);
        }
        pieces.push_back(Piece::Bytes(Cursor::new(text)));
        Body::from_reader(Chain { pieces })
    }
}

enum Piece {
    Bytes(Cursor<Vec<u8>>),
    Reader(Box<dyn Read>),
}

/// The encoded pieces one after the other.
struct Chain {
    pieces: VecDeque<Piece>,
}

impl Read for Chain {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while let Some(piece) = self.pieces.front_mut() {
            let n = match piece {
                Piece::Bytes(cursor) => cursor.read(out)?,
                Piece::Reader(reader) => reader.read(out)?,
            };
            if n > 0 || out.is_empty() {
                return Ok(n);
            }
            self.pieces.pop_front();
        }
        Ok(0)
    }
}

/// A name or file name inside a quoted `Content-Disposition` parameter, escaped as browsers do
/// (WHATWG HTML's form encoding): `"` as `%22`, CR as `%0D`, LF as `%0A`.
fn escape(value: &str) -> String {
    value
        .replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// 32 hex digits from std's per-process random hash keys and a counter: unique per form, and
/// unlikely to occur in the data.
fn new_boundary() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut halves = [0u64; 2];
    for (i, half) in halves.iter_mut().enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(count);
        hasher.write_usize(i);
        *half = hasher.finish();
    }
    format!("green-{:016x}{:016x}", halves[0], halves[1])
}

/// A content type for a file by its extension.
fn mime_for(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "txt" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "js" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}
