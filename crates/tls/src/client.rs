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
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::stream::TlsStream;
use crate::verify::{Checks, Verifier};

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

fn client_config(
    roots: Arc<RootCertStore>,
    alpn: Vec<Vec<u8>>,
    checks: Checks,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> io::Result<ClientConfig> {
    let provider = provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        .dangerous() // only to install `Verifier`: WebPKI verification plus a diagnostic
        .with_custom_certificate_verifier(Arc::new(Verifier::new(webpki, checks)));
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| invalid(format!("invalid client certificate or key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    Ok(config)
}

/// A private key, PEM (any of PKCS#8, PKCS#1, SEC1) or DER (PKCS#8).
pub(crate) fn parse_private_key(key: &[u8]) -> io::Result<PrivateKeyDer<'static>> {
    if looks_like_pem(key) {
        PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| invalid(format!("invalid PEM private key: {e}")))
    } else {
        PrivateKeyDer::try_from(key.to_vec())
            .map_err(|e| invalid(format!("invalid DER private key: {e}")))
    }
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
        let config = client_config(default_roots(), Vec::new(), Checks::default(), None)?;
        Ok(TlsConnector::from_config(
            DEFAULT.get_or_init(|| Arc::new(config)).clone(),
        ))
    }

    /// A builder for custom roots and ALPN.
    pub fn builder() -> ConnectorBuilder {
        ConnectorBuilder {
            roots: RootCertStore::empty(),
            pinned: Vec::new(),
            accept_invalid_certs: false,
            accept_invalid_hostnames: false,
            identity: None,
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
    /// The self-signed roots added, also accepted as a server's own certificate.
    pinned: Vec<CertificateDer<'static>>,
    accept_invalid_certs: bool,
    accept_invalid_hostnames: bool,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    system_roots: bool,
    alpn: Vec<Vec<u8>>,
    error: Option<io::Error>,
}

impl ConnectorBuilder {
    /// Trusts the certificate(s) in `cert`: PEM (every `CERTIFICATE` block) or one DER
    /// certificate. A self-signed one is also trusted as the server's own certificate, even when
    /// it says `CA:TRUE` as `openssl req -x509` makes it (its names and dates are still checked).
    pub fn add_root_certificate(mut self, cert: impl AsRef<[u8]>) -> ConnectorBuilder {
        if self.error.is_some() {
            return self;
        }
        let added = parse_certificates(cert.as_ref()).and_then(|certs| {
            for cert in certs {
                if crate::verify::is_self_signed(&cert) {
                    self.pinned.push(cert.clone());
                }
                self.roots
                    .add(cert)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            }
            Ok(())
        });
        self.error = added.err();
        self
    }

    /// Trusts the certificates of the PEM (or DER) file at `path`.
    pub fn add_root_certificate_file(self, path: impl AsRef<std::path::Path>) -> ConnectorBuilder {
        let path = path.as_ref();
        match std::fs::read(path) {
            Ok(data) => self.add_root_certificate(data),
            Err(err) => self.fail(io::Error::new(
                err.kind(),
                format!("reading root certificates from {}: {err}", path.display()),
            )),
        }
    }

    /// Presents this certificate chain (PEM, the leaf first, or one DER certificate) and its
    /// private key (PEM or DER PKCS#8) when the server asks for a client certificate (mutual
    /// TLS).
    pub fn identity(
        mut self,
        cert_chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> ConnectorBuilder {
        match parse_certificates(cert_chain.as_ref())
            .and_then(|chain| Ok((chain, parse_private_key(key.as_ref())?)))
        {
            Ok(identity) => self.identity = Some(identity),
            Err(err) => return self.fail(err),
        }
        self
    }

    /// **Dangerous**: accepts any server certificate, expired, self-signed, for another name
    /// (the handshake's signature is still checked against it). For tests against servers with
    /// throwaway certificates; a man in the middle is then undetectable.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> ConnectorBuilder {
        self.accept_invalid_certs = accept;
        self
    }

    /// **Dangerous**: accepts a certificate that chains to a trusted root but names another host.
    pub fn danger_accept_invalid_hostnames(mut self, accept: bool) -> ConnectorBuilder {
        self.accept_invalid_hostnames = accept;
        self
    }

    fn fail(mut self, err: io::Error) -> ConnectorBuilder {
        if self.error.is_none() {
            self.error = Some(err);
        }
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
        let checks = Checks {
            pinned: self.pinned.into(),
            accept_invalid_certs: self.accept_invalid_certs,
            accept_invalid_hostnames: self.accept_invalid_hostnames,
        };
        let config = client_config(Arc::new(roots), self.alpn, checks, self.identity)?;
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
