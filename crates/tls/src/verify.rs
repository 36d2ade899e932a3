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

/// WebPKI verification that notes self-signed rejections (see the module docs).
#[derive(Debug)]
pub(crate) struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl Verifier {
    pub(crate) fn new(inner: Arc<WebPkiServerVerifier>) -> Verifier {
        Verifier { inner }
    }
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
        if let Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) = &result {
            if is_self_signed(end_entity) {
                REJECTED_SELF_SIGNED.with(|flag| flag.set(true));
            }
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
    fn malformed_der_is_not_self_signed() {
        assert!(!is_self_signed(b""));
        assert!(!is_self_signed(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]));
        assert!(!is_self_signed(&[0x30, 0x03, 0x02, 0x01]));
    }
}
