//! Refresh tokens: how a user's tokens are revoked before they expire.
//!
//! Access tokens are short-lived (15 minutes by default) and verified by every
//! service on its own, with no shared state. A login also returns a refresh
//! token (24 hours at most), which only the gateway accepts
//! (`AuthService/RefreshToken`): a different audience, so no service ever
//! takes it for an access token. It names the login's credentials by a
//! fingerprint (a digest of the password hash and the roles, never the hash
//! itself), and the gateway hands out a new access token only while the
//! configured principal still has that fingerprint. Removing a principal or
//! changing its password or roles therefore revokes its refresh tokens at
//! once, and its access tokens within their lifetime. Stateless: gateway
//! replicas need nothing but the same key and principals.

use std::time::Duration;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{ALGORITHM, SigningKey, TrustedKey};
use crate::token::{now, refusal_of};
use crate::{AuthError, Refusal};

/// The audience of refresh tokens; access tokens never carry it.
pub const REFRESH_AUDIENCE: &str = "roaming-refresh";

/// What a refresh token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RefreshClaims {
    iss: String,
    aud: String,
    sub: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    /// [`fingerprint`] of the credentials the login used.
    cred: String,
}

/// A digest of a principal's configured credentials: changes when its
/// password hash or anything about its roles changes.
pub fn fingerprint(phc_hash: &str, principal: &domain_kernel::Principal) -> String {
    let mut h = Sha256::new();
    h.update(phc_hash.as_bytes());
    h.update([0]);
    h.update(format!("{principal:?}").as_bytes());
    let digest = h.finalize();
    digest.iter().take(16).fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Signs and checks refresh tokens with the gateway's key.
#[derive(Debug, Clone)]
pub struct RefreshTokens {
    key: SigningKey,
    trusted: TrustedKey,
    issuer: String,
    ttl: Duration,
    validation: Validation,
}

/// A refresh token's subject and credential fingerprint, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub username: String,
    pub fingerprint: String,
    /// Seconds the refresh token has left.
    pub expires_in: u64,
}

impl RefreshTokens {
    /// `ttl` is capped at 24 hours (the longest any token here lives).
    pub fn new(key: SigningKey, issuer: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[REFRESH_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            trusted: TrustedKey::of(&key),
            key,
            issuer: issuer.to_owned(),
            ttl: ttl.min(Duration::from_secs(crate::token::MAX_TOKEN_LIFETIME_SECS)),
            validation,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, username: &str, fingerprint: &str) -> Result<String, AuthError> {
        let now = now();
        let claims = RefreshClaims {
            iss: self.issuer.clone(),
            aud: REFRESH_AUDIENCE.to_owned(),
            sub: username.to_owned(),
            exp: now + self.ttl.as_secs(),
            nbf: now,
            iat: now,
            cred: fingerprint.to_owned(),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.key.kid().to_owned());
        jsonwebtoken::encode(&header, &claims, self.key.encoding())
            .map_err(|e| AuthError::Key(e.to_string()))
    }

    /// The refresh token's claims, if it is one of ours and still valid.
    pub fn check(&self, token: &str) -> Result<Refresh, AuthError> {
        let refused = AuthError::Refused;
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused(Refusal::Malformed))?;
        if header.alg != ALGORITHM {
            return Err(refused(Refusal::Algorithm));
        }
        if header.kid.as_deref() != Some(self.trusted.kid()) {
            return Err(refused(Refusal::UnknownKey));
        }
        let data =
            jsonwebtoken::decode::<RefreshClaims>(token, &self.trusted.decoding, &self.validation)
                .map_err(|e| refused(refusal_of(&e)))?;
        let c = data.claims;
        Ok(Refresh {
            expires_in: c.exp.saturating_sub(now()),
            username: c.sub,
            fingerprint: c.cred,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Audience, Issuer, Verifier};
    use domain_kernel::Principal;

    #[test]
    fn a_refresh_token_is_no_access_token_and_names_the_credentials() {
        let key = SigningKey::generate().unwrap();
        let tokens = RefreshTokens::new(key.clone(), "roaming-gateway", Duration::from_hours(24));
        let alice = Principal::customer(&domain_kernel::CustomerId::parse("alice").unwrap());
        let fp = fingerprint("$argon2id$hash-1", &alice);
        let refresh = tokens.issue("alice", &fp).unwrap();
        let checked = tokens.check(&refresh).unwrap();
        assert_eq!(
            (checked.username.as_str(), checked.fingerprint),
            ("alice", fp.clone())
        );
        // A service refuses it as a bearer token.
        let services = Verifier::new(vec![TrustedKey::of(&key)], &Audience::default());
        assert!(services.verify(&refresh).is_err());
        // And an access token is no refresh token.
        let access = Issuer::new(key, Audience::default(), Duration::from_mins(5))
            .issue(&alice)
            .unwrap();
        assert!(matches!(
            tokens.check(&access),
            Err(AuthError::Refused(
                Refusal::WrongAudience | Refusal::Malformed | Refusal::MissingClaim
            ))
        ));
        // Another password, or other roles, is another fingerprint.
        assert_ne!(fingerprint("$argon2id$hash-2", &alice), fp);
        assert_ne!(
            fingerprint("$argon2id$hash-1", &Principal::operator("alice")),
            fp
        );
        // Another key's refresh token is refused.
        let other = RefreshTokens::new(
            SigningKey::generate().unwrap(),
            "roaming-gateway",
            Duration::from_hours(1),
        );
        assert!(tokens.check(&other.issue("alice", &fp).unwrap()).is_err());
    }
}
