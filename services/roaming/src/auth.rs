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
use anyhow::Context as _;

use crate::Settings;

/// Lifetime of the tokens services sign for their own calls.
const SERVICE_TOKEN_TTL: Duration = Duration::from_mins(10);

/// Verification for every service of this process, and its signing key.
/// Whether missing key files are created (one process) or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFiles {
    Create,
    MustExist,
}

#[derive(Debug, Clone)]
pub struct MeshAuth {
    layer: AuthLayer,
    rate: PerPrincipalLayer,
    key: Option<SigningKey>,
    audience: Audience,
    ttl: Duration,
}

impl MeshAuth {
    /// The keys of `roaming up`, the whole mesh in one process: as
    /// [`MeshAuth::distributed`], but the signing key is created under the
    /// data directory when none is configured, and a configured key file that
    /// does not exist yet is created.
    pub fn one_process(settings: &Settings) -> anyhow::Result<Self> {
        Self::load(settings, KeyFiles::Create)
    }

    /// Reads the keys the settings name (and starts fetching `auth.jwks_url`,
    /// so it needs a tokio runtime then); a configured signing key file must
    /// exist.
    pub fn distributed(settings: &Settings) -> anyhow::Result<Self> {
        Self::load(settings, KeyFiles::MustExist)
    }

    fn load(settings: &Settings, files: KeyFiles) -> anyhow::Result<Self> {
        let embedded = files == KeyFiles::Create;
        let a = &settings.auth;
        let key = match (&a.signing_key_file, embedded) {
            (Some(path), true) => Some(SigningKey::load_or_create(path)?),
            (Some(path), false) => Some(SigningKey::load(path)?),
            (None, true) => Some(SigningKey::load_or_create(
                &settings.data_dir.join("keys").join("issuer.pem"),
            )?),
            (None, false) => None,
        };
        let mut trusted = Vec::new();
        for k in &a.trusted_keys {
            let key = TrustedKey::from_x(&k.x)?;
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
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("auth.jwks_file {}", path.display()))?;
            trusted.extend(TrustedKey::from_jwks(&json)?);
        }
        let jwks = a
            .jwks_url
            .as_deref()
            .map(JwksConfig::new)
            .transpose()
            .context("auth.jwks_url")?;
        anyhow::ensure!(
            !trusted.is_empty() || jwks.is_some(),
            "auth: no key to verify tokens with; set auth.signing_key_file, auth.trusted_keys, auth.jwks_file or auth.jwks_url"
        );
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
        let key = self.key.clone().with_context(|| {
            format!(
                "auth.signing_key_file is needed: {service} calls other services with its own token"
            )
        })?;
        let token = ServiceToken::new(
            Issuer::new(key, self.audience.clone(), SERVICE_TOKEN_TTL),
            service,
        );
        Ok(std::sync::Arc::new(move || token.current()))
    }
}
