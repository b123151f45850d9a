//! TLS on the mesh's ports: the gateway's public certificate, and mutual TLS
//! between the services, with certificates read from PEM files and swapped
//! in when the files change (no restart; connections open keep the
//! certificate they were made with).
//!
//! - [`ServerTls`]: what a listening port presents. [`ServerTls::public`] is
//!   the gateway's (no client certificates; ALPN `h2` and `http/1.1`, for
//!   gRPC-web); [`ServerTls::mesh`] is a service's: its own certificate, and
//!   a client certificate verified against the mesh CA *when one is
//!   presented* (whether one is required is the [`guard`]'s decision, per
//!   call: health and reflection stay open to probes that bring none).
//!   [`crate::incoming::limited`] tells TLS from plaintext by the first byte
//!   of a connection (a TLS handshake starts with `0x16`, HTTP/2 with `P`),
//!   so one port serves both.
//! - [`ClientTls`]: what a client presents and trusts: its identity's
//!   certificate, the mesh CA, and the name the server must prove, the bare
//!   service name (`reservation`) whatever address is dialled (a headless
//!   Service's pod IPs carry no name).
//! - identities: a mesh certificate names its holder by a DNS SAN equal to
//!   the service name (`rental`), or `gateway` for the gateway's client side.
//!   The files of identity `name` are `<dir>/<name>/tls.crt`, `tls.key` and
//!   `ca.crt`, the layout of a cert-manager `Certificate`'s Secret.
//!
//! Only TLS 1.2 and 1.3 are offered (rustls has nothing older), on the ring
//! provider. [`local`] makes a CA and every identity's certificates, for a
//! try-out (`roaming certs`) and the tests.

pub mod guard;
pub mod local;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{info, warn};

pub use guard::{ClientCerts, GuardLayer};

/// ALPN of a service port: gRPC is HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";
/// ALPN of the gateway's port: gRPC, and gRPC-web over HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The identity name of the gateway's client side in the mesh.
pub const GATEWAY_IDENTITY: &str = "gateway";

/// A certificate or key that cannot be used; says which file and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

impl TlsError {
    fn file(path: &Path, why: impl std::fmt::Display) -> Self {
        Self(format!("{}: {why}", path.display()))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The PEM files of one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA bundle peers are verified with (none for the gateway's public
    /// port, which verifies no one).
    pub ca: Option<PathBuf>,
}

impl PemFiles {
    /// `<dir>/<identity>/tls.crt`, `tls.key` and `ca.crt`.
    pub fn identity(dir: &Path, identity: &str) -> Self {
        let dir = dir.join(identity);
        Self {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: Some(dir.join("ca.crt")),
        }
    }

    /// Whether the files can be used as they are now: read and parsed, the
    /// key matching the certificate; nothing kept (`roaming check-config`).
    ///
    /// # Errors
    /// The first file that cannot be used, named.
    pub fn check(&self) -> Result<(), TlsError> {
        self.parse(&self.read()?).map(drop)
    }

    fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.cert.as_path(), self.key.as_path()];
        paths.extend(self.ca.as_deref());
        paths
    }

    /// Every file's bytes, in [`PemFiles::paths`] order.
    fn read(&self) -> Result<Vec<Vec<u8>>, TlsError> {
        self.paths()
            .into_iter()
            .map(|p| std::fs::read(p).map_err(|e| TlsError::file(p, e)))
            .collect()
    }

    /// The certificate, key and CA these bytes hold, checked: a chain, a
    /// key that belongs to its first certificate, at least one CA.
    fn parse(&self, bytes: &[Vec<u8>]) -> Result<Material, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&bytes[0])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::file(&self.cert, e))?;
        if chain.is_empty() {
            return Err(TlsError::file(&self.cert, "no certificate in it"));
        }
        let key =
            PrivateKeyDer::from_pem_slice(&bytes[1]).map_err(|e| TlsError::file(&self.key, e))?;
        let signing = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| TlsError::file(&self.key, e))?;
        CertifiedKey::new(chain.clone(), signing)
            .keys_match()
            .map_err(|e| {
                TlsError::file(
                    &self.key,
                    format!("not the key of {}: {e}", self.cert.display()),
                )
            })?;
        let roots = match &self.ca {
            Some(ca) => Some(roots(ca, &bytes[2])?),
            None => None,
        };
        Ok(Material { chain, key, roots })
    }
}

/// The CA certificates of a bundle (`path` only names it in errors).
fn roots(path: &Path, bytes: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bytes) {
        let cert = cert.map_err(|e| TlsError::file(path, e))?;
        roots.add(cert).map_err(|e| TlsError::file(path, e))?;
    }
    if roots.is_empty() {
        return Err(TlsError::file(path, "no certificate in it"));
    }
    Ok(Arc::new(roots))
}

/// One identity's certificate chain, key and trusted CAs, parsed.
struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Option<Arc<RootCertStore>>,
}

/// A value built from files, rebuilt when their bytes change.
type Shared<T> = Arc<RwLock<Arc<T>>>;

fn current<T>(shared: &Shared<T>) -> Arc<T> {
    Arc::clone(&shared.read().unwrap_or_else(PoisonError::into_inner))
}

/// Reads `files` and builds a value from them now (an error names the file),
/// then every `every` reads them again and, when their bytes changed,
/// builds anew and swaps it in. A build that fails (a renewal caught half
/// written, a key that does not match) keeps the old value, logged at WARN,
/// until the files change again. The task ends with the last clone.
fn reloading<T: Send + Sync + 'static>(
    what: &'static str,
    files: PemFiles,
    every: Duration,
    build: impl Fn(Material) -> Result<T, TlsError> + Send + Sync + 'static,
) -> Result<Shared<T>, TlsError> {
    let mut last = files.read()?;
    let shared = Arc::new(RwLock::new(Arc::new(build(files.parse(&last)?)?)));
    let weak: Weak<RwLock<Arc<T>>> = Arc::downgrade(&shared);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(shared) = weak.upgrade() else { return };
            let bytes = match files.read() {
                Ok(bytes) => bytes,
                Err(e) => {
                    warn!(%e, what, "TLS files unreadable; the current certificate stays");
                    continue;
                }
            };
            if bytes == last {
                continue;
            }
            match files.parse(&bytes).and_then(&build) {
                Ok(value) => {
                    *shared.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
                    info!(what, cert = %files.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    warn!(%e, what, "TLS files changed but cannot be used; the current certificate stays");
                }
            }
            last = bytes;
        }
    });
    Ok(shared)
}

/// TLS 1.3 and 1.2, nothing older.
static VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];

fn versions() -> &'static [&'static rustls::SupportedProtocolVersion] {
    &VERSIONS
}

/// What a listening port presents, kept up to date with its files. Cheap
/// to clone.
#[derive(Clone)]
pub struct ServerTls {
    config: Shared<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The gateway's public port: `cert` (chain) and `key`, no client
    /// certificates, ALPN `h2` and `http/1.1`. Must be called within a
    /// tokio runtime (the files are read again every `reload`).
    ///
    /// # Errors
    /// A file that cannot be read or used, named.
    pub fn public(cert: &Path, key: &Path, reload: Duration) -> Result<Self, TlsError> {
        let files = PemFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            ca: None,
        };
        let config = reloading("public port", files, reload, |m| {
            let mut config = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions())
                .map_err(|e| TlsError(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(m.chain, m.key)
                .map_err(|e| TlsError(e.to_string()))?;
            config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
            Ok(config)
        })?;
        Ok(Self { config })
    }

    /// A service port of identity `files`: its certificate, and a client
    /// certificate verified against its CA when the client presents one
    /// (an unknown CA or an expired certificate fails the handshake).
    ///
    /// # Errors
    /// A file that cannot be read or used, named.
    pub fn mesh(files: PemFiles, reload: Duration) -> Result<Self, TlsError> {
        let config = reloading("mesh server", files, reload, |m| {
            let roots = m
                .roots
                .ok_or_else(|| TlsError("a mesh identity needs its CA".to_owned()))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError(e.to_string()))?;
            let mut config = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions())
                .map_err(|e| TlsError(e.to_string()))?
                .with_client_cert_verifier(verifier)
                .with_single_cert(m.chain, m.key)
                .map_err(|e| TlsError(e.to_string()))?;
            config.alpn_protocols = vec![ALPN_H2.to_vec()];
            Ok(config)
        })?;
        Ok(Self { config })
    }

    /// What accepts the next connection (the certificate of now).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(current(&self.config))
    }
}

/// What a client of the mesh presents and trusts, kept up to date with its
/// files. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Shared<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// The identity of `files` (certificate, key, the CA servers are
    /// verified with). Must be called within a tokio runtime.
    ///
    /// # Errors
    /// A file that cannot be read or used, named.
    pub fn new(files: PemFiles, reload: Duration) -> Result<Self, TlsError> {
        let config = reloading("mesh client", files, reload, |m| {
            let roots = m
                .roots
                .ok_or_else(|| TlsError("a mesh identity needs its CA".to_owned()))?;
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(versions())
                .map_err(|e| TlsError(e.to_string()))?
                .with_root_certificates(roots)
                .with_client_auth_cert(m.chain, m.key)
                .map_err(|e| TlsError(e.to_string()))?;
            config.alpn_protocols = vec![ALPN_H2.to_vec()];
            Ok(config)
        })?;
        Ok(Self { config })
    }

    /// A client with no certificate of its own that trusts the CAs of `ca`
    /// (PEM), read once: what an operator's command uses to reach the
    /// gateway's public port (`roaming seed-demo https://... --cacert`).
    ///
    /// # Errors
    /// The file cannot be read or holds no certificate.
    pub fn trusting(ca: &Path) -> Result<Self, TlsError> {
        let bytes = std::fs::read(ca).map_err(|e| TlsError::file(ca, e))?;
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions())
            .map_err(|e| TlsError(e.to_string()))?
            .with_root_certificates(roots(ca, &bytes)?)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Self {
            config: Arc::new(RwLock::new(Arc::new(config))),
        })
    }

    /// What dials a replica of the service whose certificate must name
    /// `server` (the bare service name, e.g. `reservation`).
    ///
    /// # Errors
    /// `server` is no DNS name.
    pub fn connector(&self, server: &str) -> Result<TlsConnect, TlsError> {
        let server = ServerName::try_from(server.to_owned())
            .map_err(|e| TlsError(format!("server name {server:?}: {e}")))?;
        Ok(TlsConnect {
            config: Arc::clone(&self.config),
            server,
        })
    }
}

/// Dials a URI's host and port and speaks TLS over it, as [`ClientTls`]
/// says now; for `Endpoint::connect_with_connector_lazy`. A refused
/// connection stays an `io::Error` of kind `ConnectionRefused`
/// ([`crate::balance::never_reached`] looks for it).
#[derive(Clone)]
pub struct TlsConnect {
    config: Shared<ClientConfig>,
    server: ServerName<'static>,
}

impl std::fmt::Debug for TlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnect")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl tower::Service<Uri> for TlsConnect {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, std::io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = TlsConnector::from(current(&self.config));
        let server = self.server.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host to dial")
            })?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
