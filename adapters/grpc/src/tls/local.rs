//! A local CA and the mesh's certificates, made in process (rcgen): for a
//! try-out (`roaming certs`, `roaming up --tls`) and the tests. Production
//! certificates come from cert-manager (deploy/), in the same layout.
//!
//! ```text
//! <dir>/ca.crt, ca.key                      the CA
//! <dir>/<identity>/tls.crt, tls.key, ca.crt one per identity (gateway, reservation, ...)
//! <dir>/public/tls.crt, tls.key, ca.crt     the gateway's public port
//! ```

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::TlsError;

/// The identities of the mesh: the gateway's client side and each service.
pub const IDENTITIES: [&str; 6] = [
    super::GATEWAY_IDENTITY,
    "reservation",
    "payment",
    "rental",
    "parking",
    "view",
];

/// The directory of the gateway's public certificate under a local CA's.
pub const PUBLIC: &str = "public";

fn err(e: impl std::fmt::Display) -> TlsError {
    TlsError(e.to_string())
}

/// What a certificate may be used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A server's (the gateway's public port).
    Server,
    /// A client's (the gateway's calls into the mesh).
    Client,
    /// Both (a service: it serves, and it calls others).
    Both,
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: String,
    pub key: String,
}

/// A CA that signs certificates, held in memory.
#[derive(Debug)]
pub struct LocalCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key: String,
}

impl LocalCa {
    /// A new CA named `name`, valid from an hour ago for ten years.
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn new(name: &str) -> Result<Self, TlsError> {
        let mut params = CertificateParams::new(Vec::new()).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate().map_err(err)?;
        let pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(err)?;
        Ok(Self { issuer, key: pem })
    }

    /// The CA's certificate, PEM (what peers trust).
    pub fn cert(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses; the first is
    /// its common name), good for servers and clients, valid from an hour
    /// ago until `not_after`.
    ///
    /// # Errors
    /// A name that is neither, or signing failed.
    pub fn issue_until(
        &self,
        names: &[&str],
        not_after: OffsetDateTime,
    ) -> Result<Issued, TlsError> {
        self.issue_for(names, Usage::Both, not_after)
    }

    /// A certificate for `names` used as `usage` says, valid from an hour
    /// ago until `not_after`.
    ///
    /// # Errors
    /// A name that is neither a DNS name nor an IP address, or signing failed.
    pub fn issue_for(
        &self,
        names: &[&str],
        usage: Usage,
        not_after: OffsetDateTime,
    ) -> Result<Issued, TlsError> {
        let mut params =
            CertificateParams::new(names.iter().map(|&n| n.to_owned()).collect::<Vec<_>>())
                .map_err(err)?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.not_before = (OffsetDateTime::now_utc() - Duration::hours(1)).min(not_after);
        params.not_after = not_after;
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// [`LocalCa::issue_until`] a year from now.
    ///
    /// # Errors
    /// As there.
    pub fn issue(&self, names: &[&str]) -> Result<Issued, TlsError> {
        self.issue_until(names, OffsetDateTime::now_utc() + Duration::days(365))
    }

    /// Writes `issued` as `<dir>/tls.crt`, `tls.key` (owner-only) and this
    /// CA as `ca.crt`, each file replaced whole (written aside, renamed), as
    /// a renewal does. A `dir` it creates is owner-only (0700).
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn write(&self, dir: &Path, issued: &Issued) -> Result<(), TlsError> {
        adapters_files::create_private_dir(dir).map_err(|e| TlsError::file(dir, e))?;
        write_file(&dir.join("tls.crt"), &issued.cert, false)?;
        write_file(&dir.join("tls.key"), &issued.key, true)?;
        write_file(&dir.join("ca.crt"), &self.cert(), false)
    }

    /// The CA (`ca.crt`, `ca.key`), a certificate per identity of the mesh
    /// naming only it (a service's for serving and calling, the gateway's
    /// for calling only), and the public port's (serving only) for
    /// `localhost`, the loopback addresses and `hosts`, under `dir`, each
    /// valid for a year.
    ///
    /// # Errors
    /// A host that is a service's name (whoever held the public port's key
    /// could then serve as that service), signing failed or a file cannot be
    /// written. The gateway's own name is a host of the public port (its
    /// Service in a cluster): the gateway's mesh certificate is for calling
    /// only, and the public one for serving only, so neither passes for the
    /// other.
    pub fn write_mesh(&self, dir: &Path, hosts: &[String]) -> Result<(), TlsError> {
        if let Some(host) = hosts
            .iter()
            .find(|h| IDENTITIES.contains(&h.as_str()) && *h != super::GATEWAY_IDENTITY)
        {
            return Err(TlsError(format!(
                "{host:?} is the name of a mesh identity, not a public host name"
            )));
        }
        adapters_files::create_private_dir(dir).map_err(|e| TlsError::file(dir, e))?;
        write_file(&dir.join("ca.crt"), &self.cert(), false)?;
        write_file(&dir.join("ca.key"), &self.key, true)?;
        let year = OffsetDateTime::now_utc() + Duration::days(365);
        for identity in IDENTITIES {
            let usage = if identity == super::GATEWAY_IDENTITY {
                Usage::Client
            } else {
                Usage::Both
            };
            let issued = self.issue_for(&[identity], usage, year)?;
            self.write(&dir.join(identity), &issued)?;
        }
        let mut public = vec!["localhost", "127.0.0.1", "::1"];
        public.extend(hosts.iter().map(String::as_str));
        let issued = self.issue_for(&public, Usage::Server, year)?;
        self.write(&dir.join(PUBLIC), &issued)
    }
}

/// Writes `text` to `path` through a file beside it and a rename, so a
/// reader sees the old file or the new one, never half of one; `secret`
/// files are readable by their owner only (0600), certificates by anyone
/// and writable by their owner only (0644, not 0666 under `umask 000`).
fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
    let aside = path.with_extension("new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(&aside)
        .map_err(|e| TlsError::file(&aside, e))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| TlsError::file(&aside, e))?;
    drop(file);
    std::fs::rename(&aside, path).map_err(|e| TlsError::file(path, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// The public certificate may name the gateway's Service (`gateway`,
    /// deploy/'s dnsNames), never another service.
    #[test]
    fn the_public_certificate_may_name_the_gateway_but_no_service() {
        let dir = std::env::temp_dir().join(format!("roaming-local-ca-{}", std::process::id()));
        let ca = LocalCa::new("test CA").unwrap();
        let refused = ca
            .write_mesh(&dir.join("a"), &["reservation".to_owned()])
            .unwrap_err();
        assert!(refused.to_string().contains("reservation"), "{refused}");
        ca.write_mesh(&dir.join("b"), &["gateway".to_owned()])
            .unwrap();
        assert!(dir.join("b/public/tls.crt").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
