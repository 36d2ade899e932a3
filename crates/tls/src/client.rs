//! The client side: `TlsConnector`, its builder, trust roots and `connect("host:port")`.
//!
//! A connector wraps an `Arc<ClientConfig>`, and rustls keeps its session cache in the config, so
//! every connection made through clones of one connector can resume an earlier session. The
//! default connector is built once per process and shared by [`connect`] for the same reason.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use green_net::TcpStream;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::stream::TlsStream;
use crate::verify::Verifier;

/// The crypto provider of every config this crate builds: rustls's `ring` provider.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trust roots (rustls-native-certs: the OpenSSL-style files and directories,
/// honouring `SSL_CERT_FILE`/`SSL_CERT_DIR`), or the Mozilla roots compiled in from webpki-roots
/// when the system store is empty or unreadable. Loaded once per process, on the thread pool.
pub fn default_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    if let Some(roots) = ROOTS.get() {
        return roots.clone();
    }
    // Not inside `get_or_init`: the load parks this greenlet, and another greenlet of this thread
    // asking meanwhile must not wait on a `OnceLock` this thread holds. Two loads may race; the
    // first stored wins.
    let roots = green_runtime::spawn_blocking(load_roots)
        .join()
        .unwrap_or_else(|_| load_roots());
    ROOTS.get_or_init(|| Arc::new(roots)).clone()
}

fn load_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

fn client_config(roots: Arc<RootCertStore>, alpn: Vec<Vec<u8>>) -> io::Result<ClientConfig> {
    let provider = provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        .dangerous() // only to install `Verifier`: WebPKI verification plus a diagnostic
        .with_custom_certificate_verifier(Arc::new(Verifier::new(webpki)))
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    Ok(config)
}

/// Makes TLS client connections from one shared `ClientConfig` (and so one session cache).
///
/// Cheap to clone; clones share the config.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field(
                "alpn_protocols",
                &crate::stream::alpn_names(&self.config.alpn_protocols),
            )
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// The default connector: [`default_roots`], no ALPN, TLS 1.2 and 1.3. Built once per process,
    /// so all its users share one session cache.
    pub fn new() -> io::Result<TlsConnector> {
        static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        if let Some(config) = DEFAULT.get() {
            return Ok(TlsConnector::from_config(config.clone()));
        }
        let config = client_config(default_roots(), Vec::new())?;
        Ok(TlsConnector::from_config(
            DEFAULT.get_or_init(|| Arc::new(config)).clone(),
        ))
    }

    /// A builder for custom roots and ALPN.
    pub fn builder() -> ConnectorBuilder {
        ConnectorBuilder {
            roots: RootCertStore::empty(),
            system_roots: true,
            alpn: Vec::new(),
            error: None,
        }
    }

    /// A connector over a config of your own (client certificates, other verifiers, …).
    pub fn from_config(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector { config }
    }

    /// The shared config.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Runs a TLS handshake as a client over `stream`, verifying the server's certificate for
    /// `server_name` — a DNS name (also sent as SNI) or an IP address (`"127.0.0.1"`, `"::1"`,
    /// checked against the certificate's IP addresses; no SNI is sent). The handshake is bounded by
    /// the stream's own timeouts.
    ///
    /// A rejected certificate gives an `ErrorKind::InvalidData` error holding a
    /// [`TlsError`](crate::TlsError) that says why (wrong host, expired, self-signed, unknown CA).
    pub fn connect<S: Read + Write>(
        &self,
        server_name: &str,
        stream: S,
    ) -> io::Result<TlsStream<S>> {
        self.connect_until(server_name, stream, None)
    }

    /// [`connect`](Self::connect) with the handshake bounded by an absolute `deadline` (besides
    /// the stream's own timeouts), however slowly the server trickles its bytes: past it the
    /// handshake fails with `ErrorKind::TimedOut`, naming TLS and the server. The returned stream
    /// has no deadline (see [`TlsStream::set_deadline`]).
    pub fn connect_until<S: Read + Write>(
        &self,
        server_name: &str,
        stream: S,
        deadline: Option<Instant>,
    ) -> io::Result<TlsStream<S>> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid TLS server name {server_name:?}: expected a DNS name or an IP"),
            )
        })?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut tls = TlsStream::new(conn, stream, Some(server_name.to_owned()));
        tls.set_deadline(deadline);
        tls.handshake()?;
        tls.set_deadline(None);
        Ok(tls)
    }
}

impl From<Arc<ClientConfig>> for TlsConnector {
    fn from(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector::from_config(config)
    }
}

/// Builds a [`TlsConnector`]: `TlsConnector::builder().add_root_certificate(pem).alpn(["h2"])
/// .build()`.
///
/// Certificate parsing errors are kept and reported by [`build`](Self::build), so calls chain.
#[derive(Debug)]
pub struct ConnectorBuilder {
    roots: RootCertStore,
    system_roots: bool,
    alpn: Vec<Vec<u8>>,
    error: Option<io::Error>,
}

impl ConnectorBuilder {
    /// Trusts the certificate(s) in `cert`: PEM (every `CERTIFICATE` block) or one DER
    /// certificate.
    pub fn add_root_certificate(mut self, cert: impl AsRef<[u8]>) -> ConnectorBuilder {
        if self.error.is_some() {
            return self;
        }
        let added = parse_certificates(cert.as_ref()).and_then(|certs| {
            for cert in certs {
                self.roots
                    .add(cert)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            }
            Ok(())
        });
        self.error = added.err();
        self
    }

    /// Whether to trust [`default_roots`] too (yes by default). With `false`, only the added roots
    /// are trusted.
    pub fn system_roots(mut self, enable: bool) -> ConnectorBuilder {
        self.system_roots = enable;
        self
    }

    /// The ALPN protocols to offer, most preferred first (`["h2", "http/1.1"]`).
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// The connector, or the first error met while adding roots.
    pub fn build(self) -> io::Result<TlsConnector> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let mut roots = self.roots;
        if self.system_roots {
            roots.roots.extend(default_roots().roots.iter().cloned());
        }
        let config = client_config(Arc::new(roots), self.alpn)?;
        Ok(TlsConnector::from_config(Arc::new(config)))
    }
}

/// PEM (all `CERTIFICATE` blocks, at least one) or a single DER certificate.
pub(crate) fn parse_certificates(data: &[u8]) -> io::Result<Vec<CertificateDer<'static>>> {
    if !looks_like_pem(data) {
        return Ok(vec![CertificateDer::from(data.to_vec())]);
    }
    let certs = CertificateDer::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no CERTIFICATE block in the PEM data".into()));
    }
    Ok(certs)
}

pub(crate) fn looks_like_pem(data: &[u8]) -> bool {
    data.trim_ascii_start().starts_with(b"-----BEGIN")
}

pub(crate) fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Connects to `"host:port"` over green TCP (the name resolved by green DNS) and runs a TLS
/// handshake with the default [`TlsConnector`], verifying the certificate for `host` (a DNS name or
/// an IP address; `"[::1]:443"` for IPv6).
pub fn connect(addr: &str) -> io::Result<TlsStream<TcpStream>> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| invalid(format!("invalid address {addr:?}: expected host:port")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(format!("invalid port in {addr:?}")))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let tcp = TcpStream::connect((host, port))?;
    TlsConnector::new()?.connect(host, tcp)
}
