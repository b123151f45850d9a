//! Ed25519 keys: the one a process signs with, and the public keys it trusts.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::AuthError;

/// A private Ed25519 key with its key id (the RFC 7638 thumbprint of its JWK).
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private half.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn key_error(what: impl std::fmt::Display) -> AuthError {
    AuthError::Key(what.to_string())
}

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, AuthError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(key_error)?;
        Self::from_dalek(&ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// A PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as `openssl genpkey
    /// -algorithm ed25519` writes it.
    pub fn from_pem(pem: &str) -> Result<Self, AuthError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| key_error(format!("not an Ed25519 PKCS#8 PEM key: {e}")))?;
        Self::from_dalek(&key)
    }

    fn from_dalek(key: &ed25519_dalek::SigningKey) -> Result<Self, AuthError> {
        let der = key.to_pkcs8_der().map_err(key_error)?;
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let public = key.verifying_key().to_bytes();
        let jwk = public_jwk(&public, None)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(key_error)?;
        Ok(Self {
            kid,
            encoding,
            public,
        })
    }

    /// Reads the key at `path`, or creates one there (mode 0600) when the file
    /// does not exist: embedded mode keeps its issuer key across restarts.
    pub fn load_or_create(path: &Path) -> Result<Self, AuthError> {
        if let Some(key) = Self::load_if_present(path)? {
            return Ok(key);
        }
        let key = Self::generate()?;
        key.write_pem(path)?;
        Ok(key)
    }

    /// The key at `path`, or `None` when the file does not exist (what
    /// [`Self::load_or_create`] would create); writes nothing.
    pub fn load_if_present(path: &Path) -> Result<Option<Self>, AuthError> {
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(key_error(format!("{}: {e}", path.display()))),
        }
    }

    /// Reads the key at `path`; a missing file is an error.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| key_error(format!("{}: {e}", path.display())))?;
        Self::from_pem(&pem)
    }

    /// Writes the private key as PKCS#8 PEM, readable only by the owner (0600),
    /// creating its directory owner-only (0700) when missing.
    pub fn write_pem(&self, path: &Path) -> Result<(), AuthError> {
        let der = self.encoding.as_bytes();
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(key_error)?;
        let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(key_error)?;
        let io = |e: std::io::Error| key_error(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            adapters_files::create_private_dir(dir).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(io)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The public half, as a JWK (`kty: OKP`, `crv: Ed25519`, `alg: EdDSA`).
    pub fn public_jwk(&self) -> Result<Jwk, AuthError> {
        public_jwk(&self.public, Some(&self.kid))
    }

    /// The public half as the base64url `x` of its JWK.
    pub fn public_x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public)
    }
}

fn public_jwk(public: &[u8; 32], kid: Option<&str>) -> Result<Jwk, AuthError> {
    let mut jwk: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(public),
    }))
    .map_err(key_error)?;
    jwk.common.key_algorithm = Some(jsonwebtoken::jwk::KeyAlgorithm::EdDSA);
    jwk.common.key_id = kid.map(str::to_owned);
    Ok(jwk)
}

/// A public key a verifier accepts, optionally only for one subject: a
/// service's own key may sign that service's tokens and nothing else.
#[derive(Clone)]
pub struct TrustedKey {
    pub(crate) kid: String,
    pub(crate) decoding: DecodingKey,
    pub(crate) only_subject: Option<String>,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey")
            .field("kid", &self.kid)
            .field("only_subject", &self.only_subject)
            .finish_non_exhaustive()
    }
}

impl TrustedKey {
    /// The public half of `key`, for any subject.
    pub fn of(key: &SigningKey) -> Self {
        Self {
            kid: key.kid.clone(),
            decoding: DecodingKey::from_ed_der(&key.public),
            only_subject: None,
        }
    }

    /// A public key given as the base64url `x` of its JWK; its key id is its
    /// thumbprint, as [`SigningKey::kid`] computes it.
    pub fn from_x(x: &str) -> Result<Self, AuthError> {
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(x.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| key_error("an Ed25519 public key is 32 bytes, base64url"))?;
        let kid = public_jwk(&bytes, None)?
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(key_error)?;
        Ok(Self {
            kid,
            decoding: DecodingKey::from_ed_der(&bytes),
            only_subject: None,
        })
    }

    /// Restricts this key to tokens whose subject is `subject`.
    #[must_use]
    pub fn only_for(mut self, subject: impl Into<String>) -> Self {
        self.only_subject = Some(subject.into());
        self
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The Ed25519 keys of a JWKS document (an external identity provider's);
    /// keys of other types or algorithms are skipped, keys without `kid` refused.
    pub fn from_jwks(json: &str) -> Result<Vec<Self>, AuthError> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| key_error(format!("JWKS: {e}")))?;
        set.keys
            .iter()
            .filter(|k| {
                matches!(
                    &k.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p)
                        if p.curve == jsonwebtoken::jwk::EllipticCurve::Ed25519
                ) && k
                    .common
                    .key_algorithm
                    .is_none_or(|a| a == jsonwebtoken::jwk::KeyAlgorithm::EdDSA)
            })
            .map(|k| {
                let kid = k
                    .common
                    .key_id
                    .clone()
                    .ok_or_else(|| key_error("JWKS key without kid"))?;
                let decoding = DecodingKey::from_jwk(k).map_err(key_error)?;
                Ok(Self {
                    kid,
                    decoding,
                    only_subject: None,
                })
            })
            .collect()
    }
}

/// The only algorithm any key here is used with (RFC 8725: one per key).
pub(crate) const ALGORITHM: Algorithm = Algorithm::EdDSA;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_pem_and_keeps_its_id() {
        let dir = std::env::temp_dir().join(format!("roaming-key-{}", std::process::id()));
        let path = dir.join("k.pem");
        let _ = std::fs::remove_dir_all(&dir);
        let a = SigningKey::load_or_create(&path).unwrap();
        let b = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_eq!(TrustedKey::from_x(&a.public_x()).unwrap().kid(), a.kid());
        let other = SigningKey::generate().unwrap();
        assert_ne!(other.kid(), a.kid());
        assert!(!format!("{a:?}").contains("PRIVATE"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(SigningKey::from_pem("nope").is_err());
        assert!(TrustedKey::from_x("AAAA").is_err());
        assert!(TrustedKey::from_jwks("{}").is_err());
    }

    #[test]
    fn jwks_keeps_only_ed25519_keys() {
        let key = SigningKey::generate().unwrap();
        let jwk = serde_json::to_value(key.public_jwk().unwrap()).unwrap();
        let doc = serde_json::json!({"keys": [jwk, {
            "kty": "oct", "kid": "h", "k": "c2VjcmV0"
        }]});
        let keys = TrustedKey::from_jwks(&doc.to_string()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid(), key.kid());
    }
}
