//! The keys of one process: what it verifies tokens with (every service and
//! the gateway) and what it signs with (the gateway: user tokens; a service:
//! its own service tokens for calls to other services).

use std::time::Duration;

use adapters_auth::rate::{PerPrincipalLayer, RateLimiter};
use adapters_auth::{
    Audience, AuthLayer, Issuer, JwksConfig, JwksSource, ServiceToken, SigningKey, TrustedKey,
    Verifier,
};
use adapters_grpc::clients::CallerToken;
use adapters_settings::{SettingsError, bad};

use crate::Settings;

/// Lifetime of the tokens services sign for their own calls.
const SERVICE_TOKEN_TTL: Duration = Duration::from_mins(10);

/// What happens to a configured signing key file that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFiles {
    /// Created (`roaming up`: the mesh in one process keeps its key).
    Create,
    /// An error (`roaming serve`: a service of a distributed mesh is given
    /// its key; it never makes one, its pod's file system is read-only).
    MustExist,
    /// Stood for by a key made in memory, nothing written (`roaming
    /// check-config up`: the key `roaming up` would create).
    InMemory,
}

/// The keys the settings name, read and parsed; nothing fetched or started
/// yet. A problem names the setting's variable.
#[derive(Debug, Clone)]
pub struct Keys {
    key: Option<SigningKey>,
    trusted: Vec<TrustedKey>,
    jwks: Option<JwksConfig>,
}

fn auth_error(e: adapters_auth::AuthError) -> String {
    match e {
        adapters_auth::AuthError::Key(why) => why,
        other @ adapters_auth::AuthError::Refused(_) => other.to_string(),
    }
}

impl Keys {
    /// Reads this process's signing key (missing files handled as `files`
    /// says; with no file configured, `roaming up` keeps one under the data
    /// directory), the trusted keys and the JWKS file, and parses the JWKS
    /// URL.
    ///
    /// # Errors
    /// A key that cannot be read or parsed, or no key to verify tokens with.
    pub fn read(settings: &Settings, files: KeyFiles) -> Result<Self, SettingsError> {
        let a = &settings.auth;
        let named = |key: &str| Settings::variable(key);
        let own = |path: &std::path::Path| match files {
            KeyFiles::Create => SigningKey::load_or_create(path),
            KeyFiles::MustExist => SigningKey::load(path),
            KeyFiles::InMemory => {
                SigningKey::load_if_present(path)?.map_or_else(SigningKey::generate, Ok)
            }
        };
        let key = match (&a.signing_key_file, files) {
            (Some(path), _) => {
                Some(own(path).map_err(|e| bad(&named("auth.signing_key_file"), auth_error(e)))?)
            }
            (None, KeyFiles::MustExist) => None,
            (None, _) => Some(
                own(&settings.data_dir.join("keys").join("issuer.pem"))
                    .map_err(|e| bad(&named("data_dir"), auth_error(e)))?,
            ),
        };
        let mut trusted = Vec::new();
        for k in &a.trusted_keys {
            let key = TrustedKey::from_x(&k.x)
                .map_err(|e| bad(&named("auth.trusted_keys"), auth_error(e)))?;
            trusted.push(match &k.subject {
                Some(subject) => key.only_for(subject.clone()),
                None => key,
            });
        }
        // This process's own key, unless listed (then with the listed limit).
        if let Some(own) = &key
            && !trusted.iter().any(|t| t.kid() == own.kid())
        {
            trusted.push(TrustedKey::of(own));
        }
        if let Some(path) = &a.jwks_file {
            let jwks_file = named("auth.jwks_file");
            let json = std::fs::read_to_string(path)
                .map_err(|e| bad(&jwks_file, format!("{}: {e}", path.display())))?;
            trusted
                .extend(TrustedKey::from_jwks(&json).map_err(|e| bad(&jwks_file, auth_error(e)))?);
        }
        let jwks = a
            .jwks_url
            .as_deref()
            .map(JwksConfig::new)
            .transpose()
            .map_err(|e| bad(&named("auth.jwks_url"), auth_error(e)))?;
        if trusted.is_empty() && jwks.is_none() {
            return Err(bad(
                "auth",
                format!(
                    "no key to verify tokens with; set {}, {}, {} or {}",
                    named("auth.signing_key_file"),
                    named("auth.trusted_keys"),
                    named("auth.jwks_file"),
                    named("auth.jwks_url")
                ),
            ));
        }
        Ok(Self { key, trusted, jwks })
    }

    /// This process's signing key, if it has one.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.key.as_ref()
    }

    /// The public keys tokens are verified with (besides a JWKS URL's).
    pub fn trusted(&self) -> usize {
        self.trusted.len()
    }

    /// The key `service` signs its calls to other services with.
    ///
    /// # Errors
    /// When this process has none.
    pub fn caller_key(&self, service: &str) -> Result<&SigningKey, SettingsError> {
        caller_key(self.key.as_ref(), service)
    }
}

fn caller_key<'k>(
    key: Option<&'k SigningKey>,
    service: &str,
) -> Result<&'k SigningKey, SettingsError> {
    key.ok_or_else(|| {
        bad(
            &Settings::variable("auth.signing_key_file"),
            format!("not set: {service} calls other services with its own token"),
        )
    })
}

/// Verification for every service of this process, and its signing key.
#[derive(Debug, Clone)]
pub struct MeshAuth {
    layer: AuthLayer,
    rate: PerPrincipalLayer,
    key: Option<SigningKey>,
    audience: Audience,
    ttl: Duration,
}

impl MeshAuth {
    /// Verification with `keys`; starts fetching `auth.jwks_url` when set
    /// (so it needs a tokio runtime then).
    pub fn new(settings: &Settings, keys: Keys) -> anyhow::Result<Self> {
        let a = &settings.auth;
        let Keys { key, trusted, jwks } = keys;
        let audience = Audience {
            issuer: a.issuer.clone(),
            audience: a.audience.clone(),
        };
        let verifier = Verifier::new(trusted, &audience);
        if let Some(config) = jwks {
            // Keeps the provider's keys current for the life of the process
            // (every layer of it shares this verifier's key set).
            let source = JwksSource::new(config, verifier.clone())?;
            tokio::spawn(source.run(std::future::pending()));
        }
        Ok(Self {
            layer: AuthLayer::new(verifier),
            // The gateway's per-principal rate holds on the service ports too;
            // services calling each other are not limited (their callers are).
            rate: PerPrincipalLayer::new(RateLimiter::new(
                f64::from(settings.gateway.rate_per_second),
                settings.gateway.burst,
            ))
            .exempt_services(),
            key,
            audience,
            ttl: Duration::from_secs(a.token_ttl_secs),
        })
    }

    /// The token check every gRPC server of this process runs behind.
    pub fn layer(&self) -> AuthLayer {
        self.layer.clone()
    }

    /// The per-principal rate limit inside [`MeshAuth::layer`] on every
    /// service port (one limiter for the whole process).
    pub fn rate_layer(&self) -> PerPrincipalLayer {
        self.rate.clone()
    }

    /// Signs user tokens (the gateway), if this process has a key.
    pub fn issuer(&self) -> Option<Issuer> {
        self.key
            .clone()
            .map(|k| Issuer::new(k, self.audience.clone(), self.ttl))
    }

    /// The token `service` carries when it calls another service.
    pub fn service_token(&self, service: &str) -> anyhow::Result<CallerToken> {
        let key = caller_key(self.key.as_ref(), service)?.clone();
        let token = ServiceToken::new(
            Issuer::new(key, self.audience.clone(), SERVICE_TOKEN_TTL),
            service,
        );
        Ok(std::sync::Arc::new(move || token.current()))
    }
}
