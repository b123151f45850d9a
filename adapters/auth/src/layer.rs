//! The tower layer in front of every gRPC service, and the tokens services
//! carry when they call each other.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use adapters_telemetry::layer::known_method;
use adapters_telemetry::sampled::Sampled;
use domain_kernel::Principal;
use futures::future::{Either, Ready, ready};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};
use tracing::{debug, warn};

use crate::{AuthError, Issuer, Refusal, Verifier};

/// Paths anyone may call: health (probes) and reflection (the schema is public).
const ANONYMOUS: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Verifies the bearer token of every call except health and reflection, and
/// puts the caller's [`Principal`] into the request's extensions (where
/// tonic handlers find it). Anything that was there before is dropped first.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    verifier: Arc<Verifier>,
    anonymous: Arc<[&'static str]>,
}

impl AuthLayer {
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier: Arc::new(verifier),
            anonymous: ANONYMOUS.into(),
        }
    }

    /// Also lets calls under `path_prefix` through without a token (the
    /// gateway's `AuthService`, which is how one gets a token).
    #[must_use]
    pub fn allow_anonymous(mut self, path_prefix: &'static str) -> Self {
        let mut paths = self.anonymous.to_vec();
        paths.push(path_prefix);
        self.anonymous = paths.into();
        self
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The principal of a request with these headers, or the status to answer.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, Box<Status>> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty());
        let result = match token {
            Some(token) => self.verifier.verify(token),
            None => Err(AuthError::Refused(Refusal::Missing)),
        };
        result.map_err(|e| Box::new(unauthenticated(&e)))
    }

    fn is_anonymous(&self, path: &str) -> bool {
        self.anonymous.iter().any(|p| path.starts_with(p))
    }
}

/// `UNAUTHENTICATED` with an `ErrorInfo` whose reason says what was wrong.
pub fn unauthenticated(e: &AuthError) -> Status {
    let reason = match e {
        AuthError::Refused(r) => r.reason(),
        AuthError::Key(_) => proto::reasons::TOKEN_KEY,
    };
    let message = match e {
        AuthError::Refused(r) => r.to_string(),
        AuthError::Key(_) => "token could not be checked".to_owned(),
    };
    Status::with_error_details(
        Code::Unauthenticated,
        message,
        ErrorDetails::with_error_info(reason, proto::reasons::DOMAIN, []),
    )
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, B> Service<http::Request<B>> for Authenticate<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().remove::<Principal>();
        if self.layer.is_anonymous(request.uri().path()) {
            return Either::Left(self.inner.call(request));
        }
        match self.layer.authenticate(request.headers()) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Either::Left(self.inner.call(request))
            }
            Err(status) => {
                static REFUSED: Sampled = Sampled::new();
                let method = known_method(request.uri().path());
                if let Some(refused) = REFUSED.hit() {
                    warn!(method, reason = %status.message(), refused, "call refused: unauthenticated");
                } else {
                    debug!(method, reason = %status.message(), "call refused");
                }
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

/// `Bearer <token>` as gRPC metadata.
pub fn bearer(token: &str) -> Result<MetadataValue<Ascii>, Status> {
    format!("Bearer {token}")
        .parse()
        .map_err(|_| Status::internal("token is not valid metadata"))
}

/// The token a service carries when it calls another service: signed with its
/// own key, for its own name, role `service`, renewed when half its life is gone.
#[derive(Debug, Clone)]
pub struct ServiceToken {
    issuer: Arc<Issuer>,
    principal: Principal,
    cached: Arc<Mutex<Option<Cached>>>,
}

/// A signed header value and when to sign a new one.
type Cached = (MetadataValue<Ascii>, Instant);

impl ServiceToken {
    pub fn new(issuer: Issuer, service: &str) -> Self {
        Self {
            issuer: Arc::new(issuer),
            principal: Principal::service(service),
            cached: Arc::default(),
        }
    }

    /// Adds the `authorization` metadata to an outgoing request.
    pub fn authorize<T>(&self, request: &mut tonic::Request<T>) -> Result<(), Status> {
        let value = self.current()?;
        request.metadata_mut().insert("authorization", value);
        Ok(())
    }

    /// The `authorization` value to send now (`Bearer <token>`), signed anew
    /// when half the cached one's life is gone.
    pub fn current(&self) -> Result<MetadataValue<Ascii>, Status> {
        let mut cached = self
            .cached
            .lock()
            .map_err(|_| Status::internal("service token cache poisoned"))?;
        if let Some((value, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(value.clone());
        }
        let token = self
            .issuer
            .issue(&self.principal)
            .map_err(|e| Status::internal(format!("signing the service token: {e}")))?;
        let value = bearer(&token)?;
        let half = self.issuer.ttl() / 2;
        *cached = Some((
            value.clone(),
            Instant::now() + half.max(Duration::from_secs(1)),
        ));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Audience, SigningKey, TrustedKey};

    fn layer() -> (AuthLayer, Issuer) {
        let key = SigningKey::generate().unwrap();
        let verifier = Verifier::new(vec![TrustedKey::of(&key)], &Audience::default());
        (
            AuthLayer::new(verifier),
            Issuer::new(key, Audience::default(), Duration::from_mins(5)),
        )
    }

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", value.parse().unwrap());
        h
    }

    #[test]
    fn only_a_bearer_token_is_read() {
        let (layer, issuer) = layer();
        let token = issuer.issue(&Principal::operator("ops")).unwrap();
        assert!(
            layer
                .authenticate(&headers(&format!("bearer {token}")))
                .is_ok()
        );
        let basic = layer
            .authenticate(&headers(&format!("Basic {token}")))
            .unwrap_err();
        assert_eq!(basic.code(), Code::Unauthenticated);
        assert_eq!(
            basic.get_details_error_info().unwrap().reason,
            proto::reasons::TOKEN_MISSING
        );
        assert!(layer.authenticate(&http::HeaderMap::new()).is_err());
        assert!(layer.is_anonymous("/grpc.health.v1.Health/Check"));
        assert!(!layer.is_anonymous("/roaming.auth.v1.AuthService/IssueToken"));
        let layer = layer.allow_anonymous("/roaming.auth.v1.AuthService/");
        assert!(layer.is_anonymous("/roaming.auth.v1.AuthService/IssueToken"));
    }

    #[test]
    fn a_service_token_is_reused_until_renewal() {
        let (layer, issuer) = layer();
        let tokens = ServiceToken::new(issuer, "reservation");
        let mut a = tonic::Request::new(());
        let mut b = tonic::Request::new(());
        tokens.authorize(&mut a).unwrap();
        tokens.authorize(&mut b).unwrap();
        let value = a.metadata().get("authorization").unwrap();
        assert_eq!(Some(value), b.metadata().get("authorization"));
        let mut h = http::HeaderMap::new();
        h.insert("authorization", value.to_str().unwrap().parse().unwrap());
        assert_eq!(
            layer.authenticate(&h).unwrap(),
            Principal::service("reservation")
        );
    }
}
