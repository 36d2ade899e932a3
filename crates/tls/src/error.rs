//! `TlsError`: a rustls failure put into an `io::Error` with a message that names the cause.
//!
//! Everything in this crate returns `io::Result` like std's streams, so TLS failures travel as an
//! `io::Error` (kind `InvalidData`) whose inner error is a [`TlsError`]. rustls's own messages
//! ("invalid peer certificate: UnknownIssuer") do not say which host failed or what the user can
//! do; `TlsError`'s do, and it keeps the rustls error for code that matches on it.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use rustls::{CertificateError, Error};

/// A TLS failure: the rustls error, the server name it concerned, and whether an untrusted
/// certificate was self-signed.
///
/// Found inside the `io::Error` returned by a handshake, read or write (see
/// [`TlsError::from_io`]); its `source()` is the rustls error.
#[derive(Debug, Clone)]
pub struct TlsError {
    error: Error,
    server_name: Option<String>,
    self_signed: bool,
}

impl TlsError {
    pub(crate) fn new(error: Error, server_name: Option<String>, self_signed: bool) -> TlsError {
        TlsError {
            error,
            server_name,
            self_signed,
        }
    }

    /// The `TlsError` inside an `io::Error` returned by this crate, if it holds one.
    pub fn from_io(err: &io::Error) -> Option<&TlsError> {
        err.get_ref()?.downcast_ref::<TlsError>()
    }

    /// The underlying rustls error.
    pub fn rustls_error(&self) -> &Error {
        &self.error
    }

    /// The certificate problem, when the peer's certificate was rejected by this side:
    /// `NotValidForName(Context)` (wrong host), `Expired(Context)`, `UnknownIssuer` (self-signed
    /// or an unknown CA; see [`is_self_signed`](Self::is_self_signed)), …
    pub fn certificate_error(&self) -> Option<&CertificateError> {
        match &self.error {
            Error::InvalidCertificate(err) => Some(err),
            _ => None,
        }
    }

    /// Whether the certificate was rejected as `UnknownIssuer` because it is self-signed (its
    /// issuer is its own subject) rather than issued by an unknown CA. Only known for configs this
    /// crate built (see the crate docs).
    pub fn is_self_signed(&self) -> bool {
        self.self_signed
    }

    /// The server name the client verified (client side), or the SNI the client sent (server side).
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.server_name.as_deref();
        match &self.error {
            Error::InvalidCertificate(err) => {
                match name {
                    Some(name) => write!(f, "certificate verification failed for '{name}': ")?,
                    None => write!(f, "certificate verification failed: ")?,
                }
                describe_certificate_error(f, err, name.unwrap_or("?"), self.self_signed)
            }
            error => {
                match name {
                    Some(name) => write!(f, "TLS with '{name}' failed: ")?,
                    None => write!(f, "TLS failed: ")?,
                }
                match error {
                    Error::AlertReceived(alert) => write!(
                        f,
                        "the peer sent the fatal alert {alert:?} (it rejected this side's \
                         handshake or certificate)"
                    ),
                    Error::NoApplicationProtocol => {
                        write!(f, "no ALPN protocol in common with the peer")
                    }
                    other => write!(f, "{other}"),
                }
            }
        }
    }
}

fn describe_certificate_error(
    f: &mut fmt::Formatter<'_>,
    err: &CertificateError,
    name: &str,
    self_signed: bool,
) -> fmt::Result {
    match err {
        CertificateError::NotValidForName => {
            write!(
                f,
                "certificate not valid for name '{name}' (NotValidForName)"
            )
        }
        CertificateError::NotValidForNameContext { .. } => write!(f, "{err} (NotValidForName)"),
        CertificateError::Expired => write!(f, "certificate expired (Expired)"),
        CertificateError::ExpiredContext { .. } => write!(f, "{err} (Expired)"),
        CertificateError::NotValidYet => write!(f, "certificate not valid yet (NotValidYet)"),
        CertificateError::UnknownIssuer if self_signed => write!(
            f,
            "self-signed certificate, not among the trusted roots (UnknownIssuer)"
        ),
        CertificateError::UnknownIssuer => write!(
            f,
            "certificate issued by an unknown certificate authority: its chain does not lead to \
             a trusted root (UnknownIssuer)"
        ),
        CertificateError::BadSignature => {
            write!(f, "certificate signature does not verify (BadSignature)")
        }
        CertificateError::Revoked => write!(f, "certificate revoked (Revoked)"),
        other if crate::verify::is_ca_used_as_end_entity(other) && self_signed => write!(
            f,
            "self-signed certificate (CA used as end entity), not among the trusted roots"
        ),
        other if crate::verify::is_ca_used_as_end_entity(other) => write!(
            f,
            "a CA certificate used as the server's own certificate (CaUsedAsEndEntity)"
        ),
        other => write!(f, "{other}"),
    }
}

impl StdError for TlsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.error)
    }
}
