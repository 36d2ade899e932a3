//! Request targets and Host values, checked as RFC 9112 §3.2 and RFC 3986 §3.2.2 define them:
//! a server that accepts `Host: a/b` or `GET echo` hands its handler (and any proxy or cache
//! keyed on them) values no client could have meant, so both are 400 (as nginx answers).
//!
//! Written by hand because the `http` crate's `Uri`/`Authority` parsers accept more than a
//! request may carry (userinfo, a target in the wrong form for its method).

use http::{Method, Uri};

use super::ProtoError;

/// Whether `value` is a valid Host field value: `uri-host [ ":" port ]`, where the host is an
/// IP literal in brackets, or a reg-name (IPv4 addresses are reg-names too) of unreserved,
/// percent-encoded and sub-delim characters, and the port is digits. An empty value is valid
/// (RFC 9110 §7.2: what a client sends for a target without an authority).
pub fn valid_host(value: &[u8]) -> bool {
    // The usual value (`example.com`, `127.0.0.1:8080`) in one pass: reg-name bytes up to an
    // optional `:` and digits. Anything else (an IP literal, a `%` escape, an invalid byte) is
    // judged by the full rules below.
    let reg_len = value
        .iter()
        .position(|&b| !REG_NAME_CHAR[b as usize])
        .unwrap_or(value.len());
    match &value[reg_len..] {
        [] => return true,
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => return true,
        _ => {}
    }
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        if !valid_ip_literal(&value[1..close]) {
            return false;
        }
        match &value[close + 1..] {
            [] => return true,
            [b':', port @ ..] => (&[][..], port),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon + 1..]),
            None => (value, &[][..]),
        }
    };
    valid_reg_name(host) && port.iter().all(u8::is_ascii_digit)
}

/// RFC 3986 `IP-literal` without its brackets: an IPv6 address (hex digits, colons, and a dotted
/// IPv4 tail) or `IPvFuture` (`v` hex `.` unreserved / sub-delims / `:`).
fn valid_ip_literal(inner: &[u8]) -> bool {
    match inner {
        [] => false,
        [b'v' | b'V', rest @ ..] => {
            let dot = rest.iter().position(|&b| b == b'.');
            match dot {
                Some(dot) if dot > 0 && dot + 1 < rest.len() => {
                    rest[..dot].iter().all(u8::is_ascii_hexdigit)
                        && rest[dot + 1..]
                            .iter()
                            .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':')
                }
                _ => false,
            }
        }
        _ => std::str::from_utf8(inner)
            .ok()
            .and_then(|text| text.parse::<std::net::Ipv6Addr>().ok())
            .is_some(),
    }
}

fn valid_reg_name(host: &[u8]) -> bool {
    // The common host (letters, digits, dots) in one branch-free pass; `%` escapes the slow way.
    if host.iter().all(|&b| REG_NAME_CHAR[b as usize]) {
        return true;
    }
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                let escaped = host.get(i + 1..i + 3);
                if !escaped.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if REG_NAME_CHAR[b as usize] => i += 1,
            _ => return false,
        }
    }
    true
}

/// The bytes a reg-name has unescaped: unreserved and sub-delims.
static REG_NAME_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_unreserved(b as u8) || is_sub_delim(b as u8);
        b += 1;
    }
    table
};

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// Checks that a request's target has a form its method allows (RFC 9112 §3.2): CONNECT takes
/// only authority-form (`host:port`), `*` (asterisk-form) only OPTIONS, every other method
/// origin-form (`/path?query`) or absolute-form (`http://host/path`). A target with userinfo
/// (`http://user:pass@host/`) is rejected too (RFC 9110 §4.2.4). Errors are
/// [`ProtoError::InvalidUri`].
pub fn check_request_target(method: &Method, target: &Uri) -> Result<(), ProtoError> {
    let authority = target.authority();
    if authority.is_some_and(|a| a.as_str().contains('@')) {
        return Err(ProtoError::InvalidUri);
    }
    let valid = if *method == Method::CONNECT {
        // Authority-form: a host and a port, nothing else.
        target.scheme().is_none()
            && target
                .path_and_query()
                .is_none_or(|pq| pq.as_str().is_empty())
            && authority.is_some_and(|a| a.port().is_some() && valid_host(a.as_str().as_bytes()))
    } else if target.scheme().is_some() {
        authority.is_some_and(|a| valid_host(a.as_str().as_bytes()))
    } else if authority.is_some() {
        false
    } else if target.path() == "*" {
        *method == Method::OPTIONS
    } else {
        target.path().starts_with('/')
    };
    if valid {
        Ok(())
    } else {
        Err(ProtoError::InvalidUri)
    }
}
