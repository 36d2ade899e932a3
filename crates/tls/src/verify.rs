//! The server-certificate verifier of the client configs this crate builds: rustls's WebPKI
//! verifier, plus a note of *why* an `UnknownIssuer` certificate was untrusted.
//!
//! WebPKI reports a self-signed certificate and one from an unknown CA alike, as `UnknownIssuer`;
//! users asked "which?" deserve an answer. rustls's verifier API returns only a `rustls::Error`, so
//! this wrapper leaves that error untouched (code matching on `UnknownIssuer` keeps working) and
//! records "the rejected certificate was self-signed" in a thread-local flag. Verification runs
//! synchronously inside `process_new_packets`, with no greenlet switch in between, so the stream
//! that called it reads the flag right after (see `stream.rs`) and can put it in its
//! [`TlsError`](crate::TlsError).
//!
//! It also accepts a self-signed certificate that is itself a trusted root, as the usual
//! `openssl req -x509` makes them: such a certificate says `CA:TRUE`, which WebPKI refuses at the
//! end of a chain (`CaUsedAsEndEntity`) even when that very certificate is trusted. OpenSSL,
//! Python and curl accept it once trusted; so does this verifier, when the server's certificate is
//! byte for byte one of the roots added to the connector, still checking its names and validity
//! period (the handshake signature is checked with its key as for any certificate).

use std::cell::Cell;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

thread_local! {
    static REJECTED_SELF_SIGNED: Cell<bool> = const { Cell::new(false) };
}

/// Clears the flag before a call that may verify a certificate.
pub(crate) fn reset_self_signed() {
    REJECTED_SELF_SIGNED.with(|flag| flag.set(false));
}

/// Takes the flag after such a call: whether a certificate was just rejected as self-signed.
pub(crate) fn take_self_signed() -> bool {
    REJECTED_SELF_SIGNED.with(|flag| flag.replace(false))
}

/// WebPKI verification that notes self-signed rejections and accepts trusted self-signed CA
/// certificates (see the module docs).
#[derive(Debug)]
pub(crate) struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    checks: Checks,
}

/// What the verifier relaxes, beyond WebPKI.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checks {
    /// The self-signed roots added to the connector, accepted as the server's own certificate.
    pub(crate) pinned: Arc<[CertificateDer<'static>]>,
    /// Any certificate is accepted.
    pub(crate) accept_invalid_certs: bool,
    /// A certificate for another name is accepted (its chain is still verified).
    pub(crate) accept_invalid_hostnames: bool,
}

impl Verifier {
    pub(crate) fn new(inner: Arc<WebPkiServerVerifier>, checks: Checks) -> Verifier {
        Verifier { inner, checks }
    }
}

/// Whether `err` is WebPKI's `CaUsedAsEndEntity`.
pub(crate) fn is_ca_used_as_end_entity(err: &CertificateError) -> bool {
    matches!(err, CertificateError::Other(other)
        if other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity))
}

/// A trusted self-signed certificate as the server's: its names and validity period.
fn verify_pinned(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
    any_name: bool,
) -> Result<ServerCertVerified, Error> {
    let bad = |err| Error::InvalidCertificate(err);
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|_| bad(CertificateError::BadEncoding))?;
    if !any_name {
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| bad(CertificateError::NotValidForName))?;
    }
    let (not_before, not_after) = validity(end_entity).ok_or(bad(CertificateError::BadEncoding))?;
    let now = now.as_secs();
    if now < not_before {
        return Err(bad(CertificateError::NotValidYet));
    }
    if now > not_after {
        return Err(bad(CertificateError::Expired));
    }
    Ok(ServerCertVerified::assertion())
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if self.checks.accept_invalid_certs {
            return Ok(ServerCertVerified::assertion());
        }
        match &result {
            // WebPKI checks the name last: the chain was verified.
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.checks.accept_invalid_hostnames => {
                return Ok(ServerCertVerified::assertion());
            }
            Err(Error::InvalidCertificate(err)) if is_ca_used_as_end_entity(err) => {
                if self
                    .checks
                    .pinned
                    .iter()
                    .any(|root| root[..] == end_entity[..])
                {
                    return verify_pinned(
                        end_entity,
                        server_name,
                        now,
                        self.checks.accept_invalid_hostnames,
                    );
                }
                if is_self_signed(end_entity) {
                    REJECTED_SELF_SIGNED.with(|flag| flag.set(true));
                }
            }
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if is_self_signed(end_entity) =>
            {
                REJECTED_SELF_SIGNED.with(|flag| flag.set(true));
            }
            _ => {}
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// Whether a DER certificate names itself as its issuer. Walks just enough of X.509's
/// `TBSCertificate` (version, serial, signature, issuer, validity, subject) to compare the issuer
/// and subject names; anything malformed is "not self-signed".
pub(crate) fn is_self_signed(cert: &[u8]) -> bool {
    fn names(cert: &[u8]) -> Option<(&[u8], &[u8])> {
        let (_, certificate, _) = der_tlv(cert)?;
        let (_, mut tbs, _) = der_tlv(certificate)?;
        let (first, _, rest) = der_tlv(tbs)?;
        if first.first() == Some(&0xa0) {
            tbs = rest; // the explicit [0] version
        }
        let (_, _, rest) = der_tlv(tbs)?; // serialNumber
        let (_, _, rest) = der_tlv(rest)?; // signature algorithm
        let (issuer, _, rest) = der_tlv(rest)?;
        let (_, _, rest) = der_tlv(rest)?; // validity
        let (subject, _, _) = der_tlv(rest)?;
        Some((issuer, subject))
    }
    matches!(names(cert), Some((issuer, subject)) if issuer == subject)
}

/// The validity period of a DER certificate, in seconds since the Unix epoch (notBefore,
/// notAfter).
fn validity(cert: &[u8]) -> Option<(u64, u64)> {
    let (_, certificate, _) = der_tlv(cert)?;
    let (_, mut tbs, _) = der_tlv(certificate)?;
    let (first, _, rest) = der_tlv(tbs)?;
    if first.first() == Some(&0xa0) {
        tbs = rest;
    }
    let (_, _, rest) = der_tlv(tbs)?; // serialNumber
    let (_, _, rest) = der_tlv(rest)?; // signature algorithm
    let (_, _, rest) = der_tlv(rest)?; // issuer
    let (_, validity, _) = der_tlv(rest)?;
    let (not_before, _, rest) = der_tlv(validity)?;
    let (not_after, _, _) = der_tlv(rest)?;
    Some((der_time(not_before)?, der_time(not_after)?))
}

/// A DER `UTCTime` (`YYMMDDHHMMSSZ`, years 1950–2049) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`)
/// element as seconds since the Unix epoch.
fn der_time(element: &[u8]) -> Option<u64> {
    let (_, text, _) = der_tlv(element)?;
    let digits = text.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        digits
            .get(range)?
            .iter()
            .try_fold(0u64, |n, &d| Some(n * 10 + u64::from(d - b'0')))
    };
    let (year, rest) = match (element.first()?, digits.len()) {
        (0x17, 12) => {
            let yy = number(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let field = |i: usize| number(rest + 2 * i..rest + 2 * i + 2);
    let (month, day) = (field(0)?, field(1)?);
    let (hour, minute, second) = (field(2)?, field(3)?, field(4)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), for years from 1970.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Splits one DER element off `input`: (the whole element, its contents, what follows).
fn der_tlv(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let first_len = *input.get(1)?;
    let (header, len) = if first_len < 0x80 {
        (2, usize::from(first_len))
    } else {
        let count = usize::from(first_len & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = input.get(2..2 + count)?;
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (2 + count, len)
    };
    let end = header.checked_add(len)?;
    let element = input.get(..end)?;
    Some((element, &element[header..], &input[end..]))
}

#[cfg(test)]
mod tests {
    use super::is_self_signed;
    use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

    fn params(common_name: &str) -> CertificateParams {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
    }

    #[test]
    fn self_signed_certificate_is_recognised() {
        let key = KeyPair::generate().unwrap();
        let cert = params("me").self_signed(&key).unwrap();
        assert!(is_self_signed(cert.der()));
    }

    #[test]
    fn certificate_signed_by_a_ca_is_not_self_signed() {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = params("a CA");
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = params("a leaf").signed_by(&key, &ca, &ca_key).unwrap();
        assert!(!is_self_signed(leaf.der()));
    }

    #[test]
    fn validity_period_is_read_from_the_certificate() {
        let key = KeyPair::generate().unwrap();
        let mut p = params("dated");
        p.not_before = rcgen::date_time_ymd(2001, 2, 3);
        p.not_after = rcgen::date_time_ymd(2061, 12, 31);
        let cert = p.self_signed(&key).unwrap();
        // 2001-02-03 and 2061-12-31 (GeneralizedTime past 2049), midnight UTC.
        assert_eq!(
            super::validity(cert.der()),
            Some((981_158_400, 2_903_212_800))
        );
    }

    #[test]
    fn malformed_der_is_not_self_signed() {
        assert!(!is_self_signed(b""));
        assert!(!is_self_signed(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]));
        assert!(!is_self_signed(&[0x30, 0x03, 0x02, 0x01]));
    }
}
