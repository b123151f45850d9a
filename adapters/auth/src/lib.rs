//! Authentication for the mesh (DOMAIN.md, "Roles and what each may do").
//!
//! - [`keys`]: Ed25519 signing keys (PKCS#8 PEM) and the public keys a verifier
//!   trusts (own issuer, per-service keys limited to their subject, JWKS).
//! - [`token`]: [`Issuer`] signs, [`Verifier`] checks (`EdDSA` only; `iss`, `aud`,
//!   `exp`, `nbf`, `sub` required).
//! - [`jwks`]: an identity provider's keys fetched from its JWKS URL (cached,
//!   refreshed on an unknown `kid`, at a bounded rate).
//! - [`credentials`]: username/password principals with argon2 hashes.
//! - [`refresh`]: refresh tokens, how a login is revoked before its access
//!   tokens expire.
//! - [`layer`]: the tower layer every service and the gateway put in front of
//!   their gRPC services, and [`ServiceToken`] for calls between services.

pub mod credentials;
pub mod jwks;
pub mod keys;
pub mod layer;
pub mod rate;
pub mod refresh;
pub mod token;

pub use credentials::{Credentials, hash_password};
pub use jwks::{JwksConfig, JwksSource};
pub use keys::{SigningKey, TrustedKey};
pub use layer::{AuthLayer, Authenticate, ServiceToken, bearer};
pub use refresh::{
    REFRESH_AUDIENCE, REPEAT_GRACE_SECS, Refresh, RefreshFamilies, RefreshTokens, Reused, Spent,
};
pub use token::{Audience, Claims, FetchedKeys, Issuer, Verifier};

/// Why a token was not accepted. The text is safe to return to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    Algorithm,
    UnknownKey,
    BadSignature,
    Expired,
    /// Valid for longer than any issuer here hands out (a stolen signing key
    /// or a misconfigured provider minting near-eternal tokens).
    TooLong,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    KeyScope,
    NoRole,
    BadBooth,
    NoBooth,
    BadLot,
    NoLot,
}

impl Refusal {
    /// The `ErrorInfo.reason` sent with `UNAUTHENTICATED`.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Missing => proto::reasons::TOKEN_MISSING,
            Self::Malformed => proto::reasons::TOKEN_MALFORMED,
            Self::Algorithm => proto::reasons::TOKEN_ALGORITHM,
            Self::UnknownKey => proto::reasons::TOKEN_UNKNOWN_KEY,
            Self::BadSignature => proto::reasons::TOKEN_SIGNATURE,
            Self::Expired => proto::reasons::TOKEN_EXPIRED,
            Self::TooLong => proto::reasons::TOKEN_LIFETIME,
            Self::NotYetValid => proto::reasons::TOKEN_NOT_YET_VALID,
            Self::WrongIssuer => proto::reasons::TOKEN_ISSUER,
            Self::WrongAudience => proto::reasons::TOKEN_AUDIENCE,
            Self::MissingClaim => proto::reasons::TOKEN_CLAIM_MISSING,
            Self::KeyScope => proto::reasons::TOKEN_KEY_SCOPE,
            Self::NoRole => proto::reasons::TOKEN_NO_ROLE,
            Self::BadBooth => proto::reasons::TOKEN_BOOTH,
            Self::NoBooth => proto::reasons::TOKEN_BOOTH_MISSING,
            Self::BadLot => proto::reasons::TOKEN_LOT,
            Self::NoLot => proto::reasons::TOKEN_LOT_MISSING,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Missing => "no bearer token: send `authorization: Bearer <token>`",
            Self::Malformed => "malformed token",
            Self::Algorithm => "token algorithm not accepted (EdDSA only)",
            Self::UnknownKey => "token signed by an unknown key",
            Self::BadSignature => "token signature does not verify",
            Self::Expired => "token expired",
            Self::TooLong => "token valid for longer than 24 hours",
            Self::NotYetValid => "token not valid yet (nbf)",
            Self::WrongIssuer => "token from another issuer",
            Self::WrongAudience => "token for another audience",
            Self::MissingClaim => "token lacks a required claim",
            Self::KeyScope => "this key may only sign its own service's tokens",
            Self::NoRole => "token carries no known role",
            Self::BadBooth => "token booth is invalid",
            Self::NoBooth => "booth staff token without a booth",
            Self::BadLot => "token lot is invalid",
            Self::NoLot => "gate token without a lot",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The caller's token is not accepted.
    #[error("{0}")]
    Refused(Refusal),
    /// A key could not be read, written or used (configuration, not the caller).
    #[error("key: {0}")]
    Key(String),
}
