//! The server side: `TlsAcceptor` and its builder.
//!
//! Like the connector, an acceptor wraps one `Arc<ServerConfig>` shared by every connection it
//! accepts, so rustls's server session cache (in the config) lets returning clients resume.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::{ServerConfig, ServerConnection};

use crate::client::{invalid, looks_like_pem, parse_certificates, provider};
use crate::stream::TlsStream;

/// Accepts TLS connections on streams a server already accepted (green `TcpStream`s, …).
///
/// Cheap to clone; clones share the config.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field(
                "alpn_protocols",
                &crate::stream::alpn_names(&self.config.alpn_protocols),
            )
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// An acceptor presenting `cert_chain` (PEM with the leaf first then its intermediates, or one
    /// DER certificate) with its private `key` (PEM or DER: PKCS#8, PKCS#1 or SEC1).
    pub fn new(cert_chain: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> io::Result<TlsAcceptor> {
        TlsAcceptor::builder(cert_chain, key).build()
    }

    /// A builder, for ALPN.
    pub fn builder(cert_chain: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> AcceptorBuilder {
        AcceptorBuilder {
            cert_chain: cert_chain.as_ref().to_vec(),
            key: key.as_ref().to_vec(),
            alpn: Vec::new(),
        }
    }

    /// An acceptor over a config of your own (client certificate verification, several
    /// certificates chosen by SNI, …).
    pub fn from_config(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor { config }
    }

    /// The shared config.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Runs a TLS handshake as a server over `stream`, bounded by the stream's own timeouts.
    /// A client that rejects the certificate makes this fail with a
    /// [`TlsError`](crate::TlsError) holding the alert it sent (`AlertReceived(UnknownCA)`, …).
    pub fn accept<S: Read + Write>(&self, stream: S) -> io::Result<TlsStream<S>> {
        self.accept_until(stream, None)
    }

    /// [`accept`](Self::accept) with the handshake bounded by an absolute `deadline` (besides the
    /// stream's own timeouts), however slowly the client trickles its hello: past it the
    /// handshake fails with `ErrorKind::TimedOut`, naming TLS and the client's SNI name if it
    /// sent one. The returned stream has no deadline (see [`TlsStream::set_deadline`]).
    pub fn accept_until<S: Read + Write>(
        &self,
        stream: S,
        deadline: Option<Instant>,
    ) -> io::Result<TlsStream<S>> {
        let conn = ServerConnection::new(self.config.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut tls = TlsStream::new(conn, stream, None);
        tls.set_deadline(deadline);
        tls.handshake()?;
        tls.set_deadline(None);
        Ok(tls)
    }
}

impl From<Arc<ServerConfig>> for TlsAcceptor {
    fn from(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor::from_config(config)
    }
}

/// Builds a [`TlsAcceptor`]: `TlsAcceptor::builder(cert_pem, key_pem).alpn(["h2", "http/1.1"])
/// .build()`.
pub struct AcceptorBuilder {
    cert_chain: Vec<u8>,
    key: Vec<u8>,
    alpn: Vec<Vec<u8>>,
}

impl fmt::Debug for AcceptorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptorBuilder")
            .field("alpn", &self.alpn)
            .finish_non_exhaustive()
    }
}

impl AcceptorBuilder {
    /// The ALPN protocols this server speaks, most preferred first. A client offering ALPN with
    /// none of them is refused (`no_application_protocol`), as RFC 7301 says.
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// The acceptor, or an error if the certificate or key cannot be parsed or do not match.
    pub fn build(self) -> io::Result<TlsAcceptor> {
        let chain = parse_certificates(&self.cert_chain)?;
        let key = if looks_like_pem(&self.key) {
            PrivateKeyDer::from_pem_slice(&self.key)
                .map_err(|e| invalid(format!("invalid PEM private key: {e}")))?
        } else {
            PrivateKeyDer::try_from(self.key)
                .map_err(|e| invalid(format!("invalid DER private key: {e}")))?
        };
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        config.alpn_protocols = self.alpn;
        Ok(TlsAcceptor::from_config(Arc::new(config)))
    }
}
