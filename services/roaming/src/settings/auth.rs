//! The tokens' section, `[auth]`: who issues them, for whom, and which keys
//! sign and verify them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checks::not_empty;

adapters_settings::section! {
    /// Tokens: who issues them, for whom, and which keys sign and verify them.
    #[derive(Debug, Clone)]
    pub struct AuthSettings {
        /// `iss` of issued tokens, and the only issuer accepted.
        pub issuer: String = adapters_auth::Audience::default().issuer, check not_empty;
        /// `aud` of issued tokens, and the only audience accepted.
        pub audience: String = adapters_auth::Audience::default().audience, check not_empty;
        /// Lifetime of the tokens the gateway issues, in seconds.
        pub token_ttl_secs: u64 = 900, check 60..=86_400;
        /// This process's Ed25519 key (PKCS#8 PEM): the gateway signs user
        /// tokens with it, a service its own service tokens. `roaming up`
        /// keeps one under `data_dir/keys/` (created on first start) when
        /// this is unset.
        pub signing_key_file: Option<PathBuf> = None;
        /// Public keys trusted besides this process's own key; in the
        /// environment `x` or `subject=x`, comma-separated.
        pub trusted_keys: Vec<TrustedKeySetting> = Vec::new(),
            env trusted_keys_from_env,
            check trusted_keys_decode;
        /// A JWKS document of an external identity provider, read at start.
        pub jwks_file: Option<PathBuf> = None;
        /// An external identity provider's JWKS URL (`https`, or `http` to a
        /// loopback address): fetched at start, every 5 minutes, and when a
        /// token names an unknown key (at most once per 10 seconds).
        pub jwks_url: Option<String> = None;
    }
}

/// A trusted public key: the base64url `x` of its JWK (`roaming keygen`
/// prints it); with `subject`, only that service's own tokens are accepted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeySetting {
    pub x: String,
    #[serde(default)]
    pub subject: Option<String>,
}

/// `x` or `subject=x`, comma-separated.
#[allow(clippy::unnecessary_wraps)] // the shape of an environment parser
fn trusted_keys_from_env(value: &str) -> Result<Vec<TrustedKeySetting>, String> {
    Ok(adapters_settings::list(value)
        .into_iter()
        .map(|entry| match entry.split_once('=') {
            Some((subject, x)) => TrustedKeySetting {
                x: x.to_owned(),
                subject: Some(subject.to_owned()),
            },
            None => TrustedKeySetting {
                x: entry,
                subject: None,
            },
        })
        .collect())
}

/// Each key decodes.
#[allow(clippy::ptr_arg)] // a check takes the setting's own type
fn trusted_keys_decode(keys: &Vec<TrustedKeySetting>) -> Result<(), String> {
    for k in keys {
        adapters_auth::TrustedKey::from_x(&k.x).map_err(|e| e.to_string())?;
    }
    Ok(())
}
