//! Keys of an external identity provider, fetched from its JWKS URL.
//!
//! [`JwksSource::run`] fetches the document at start, again every
//! `refresh_every`, and again when a token names a key id nobody knows (the
//! provider rotated its keys), but never more than once per `min_interval`
//! however many such tokens arrive: a flood of made-up `kid`s costs the
//! provider one request per interval. A failed fetch keeps the keys it had
//! (and retries with backoff); a document without any Ed25519 key is refused
//! the same way. Only `https` is fetched, except from a loopback address.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{info, warn};

use crate::{AuthError, TrustedKey, Verifier};

/// Largest JWKS document accepted.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Where and how often to fetch.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    pub url: http::Uri,
    /// Fetched again this long after the last success, unasked.
    pub refresh_every: Duration,
    /// The least time between two fetches, whatever asks for them.
    pub min_interval: Duration,
    /// One fetch, connect to last byte.
    pub timeout: Duration,
}

impl JwksConfig {
    /// `url` with the defaults: refreshed every 5 minutes, at most once per
    /// 10 seconds, 5 seconds per fetch. Refuses anything but `https`, except
    /// `http` to a loopback address (tests, a sidecar).
    pub fn new(url: &str) -> Result<Self, AuthError> {
        let url: http::Uri = url
            .parse()
            .map_err(|e| AuthError::Key(format!("JWKS URL {url:?}: {e}")))?;
        let host = url.host().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match url.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => {
                return Err(AuthError::Key(format!(
                    "JWKS URL {url}: must be https (http only to a loopback address)"
                )));
            }
        }
        Ok(Self {
            url,
            refresh_every: Duration::from_mins(5),
            min_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        })
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Fetches a provider's keys into a [`Verifier`].
#[derive(Debug)]
pub struct JwksSource {
    config: JwksConfig,
    verifier: Verifier,
    client: Client<Https, Empty<Bytes>>,
}

impl JwksSource {
    pub fn new(config: JwksConfig, verifier: Verifier) -> Result<Self, AuthError> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| AuthError::Key(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            config,
            verifier,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// One fetch: the Ed25519 keys of the document, or why there are none.
    pub async fn fetch(&self) -> Result<Vec<TrustedKey>, AuthError> {
        let fail = |what: String| AuthError::Key(format!("JWKS {}: {what}", self.config.url));
        let get = async {
            let request = http::Request::get(self.config.url.clone())
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::<Bytes>::new())
                .map_err(|e| fail(e.to_string()))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if response.status() != http::StatusCode::OK {
                return Err(fail(format!("answered {}", response.status())));
            }
            let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|e| fail(format!("body: {e}")))?
                .to_bytes();
            let text = std::str::from_utf8(&body).map_err(|e| fail(e.to_string()))?;
            let keys = TrustedKey::from_jwks(text)?;
            if keys.is_empty() {
                return Err(fail("no Ed25519 key in the document".to_owned()));
            }
            Ok(keys)
        };
        tokio::time::timeout(self.config.timeout, get)
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.config.timeout)))?
    }

    /// Keeps the verifier's fetched keys current until `stop` resolves.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut failures: u32 = 0;
        loop {
            let fetched_at = Instant::now();
            match self.fetch().await {
                Ok(keys) => {
                    if failures > 0 || self.verifier.fetched().is_empty() {
                        info!(url = %self.config.url, keys = keys.len(), "JWKS fetched");
                    }
                    self.verifier.install_fetched(keys);
                    failures = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    warn!(error = %e, failures, "JWKS fetch failed; keeping the keys we have");
                }
            }
            let next = if failures == 0 {
                self.config.refresh_every
            } else {
                // 1, 2, 4 ... times the minimum interval, up to the refresh period.
                (self.config.min_interval * 2u32.saturating_pow(failures - 1).min(64))
                    .min(self.config.refresh_every)
            };
            let earliest = fetched_at + self.config.min_interval;
            tokio::select! {
                () = &mut stop => return,
                () = sleep(next) => {}
                () = self.verifier.fetched().unknown_kid() => {
                    tokio::select! {
                        () = &mut stop => return,
                        () = sleep_until(earliest) => {}
                    }
                }
            }
        }
    }
}
