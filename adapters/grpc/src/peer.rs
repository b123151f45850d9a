//! What a request knows of the connection it came on: its TCP addresses
//! and, over TLS, the names its client certificate proves. Put on every
//! request by [`crate::incoming`]; read by [`crate::tls::guard`].

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tonic::transport::server::TcpConnectInfo;

/// What a request knows of the connection it came on (in its extensions).
#[derive(Debug, Clone)]
pub struct Peer {
    pub tcp: TcpConnectInfo,
    /// How the TLS handshake went; `None` on plaintext.
    pub tls: Option<Arc<PeerTls>>,
}

/// The facts of a connection a server accepted over TLS.
#[derive(Debug, Clone, Default)]
pub struct PeerTls {
    /// The client presented a certificate the CA verified.
    pub client_certificate: bool,
    /// Its DNS names (the identities it proves).
    pub names: Vec<String>,
}

impl PeerTls {
    /// From a finished server handshake.
    pub fn of(connection: &rustls::ServerConnection) -> Arc<Self> {
        let leaf = connection.peer_certificates().and_then(<[_]>::first);
        Arc::new(Self {
            client_certificate: leaf.is_some(),
            names: leaf.map(dns_names).unwrap_or_default(),
        })
    }
}

/// The DNS names a verified client certificate holds (its identities).
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(cert).map_or_else(
        |_| Vec::new(),
        |c| c.valid_dns_names().map(str::to_owned).collect(),
    )
}
