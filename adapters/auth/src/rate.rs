//! Per-key token buckets: the per-principal limits of the gateway and of
//! every service's auth layer, and the gateway's login limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use adapters_telemetry::sampled::Sampled;
use domain_kernel::{Principal, Role};
use futures::future::{Either, Ready, ready};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};
use tracing::{debug, warn};

/// Above this many tracked keys, full buckets (idle callers) are forgotten.
const MAX_TRACKED: usize = 10_000;

/// `rate` calls per second per key, with bursts of up to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        Self {
            rate: rate_per_second.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means another caller panicked mid-update; the
        // buckets are still usable numbers.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| refill(*b, now, rate, burst).tokens < burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        *bucket = refill(*bucket, now, self.rate, self.burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

fn refill(b: Bucket, now: Instant, rate: f64, burst: f64) -> Bucket {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    Bucket {
        tokens: (b.tokens + elapsed * rate).min(burst),
        at: now,
    }
}

/// Limits each caller (the [`Principal`] the auth layer put on the request)
/// to the limiter's rate: `RESOURCE_EXHAUSTED` (`RATE_LIMITED`) with a
/// `RetryInfo` of when the next call would pass. A request without a principal
/// (health, reflection) is not limited. Goes inside [`crate::AuthLayer`].
#[derive(Debug, Clone)]
pub struct PerPrincipalLayer {
    limiter: Arc<RateLimiter>,
    exempt_services: bool,
}

impl PerPrincipalLayer {
    pub fn new(limiter: RateLimiter) -> Self {
        Self {
            limiter: Arc::new(limiter),
            exempt_services: false,
        }
    }

    /// Services calling each other (role `service`) are not limited (their
    /// callers are), as behind a service port.
    #[must_use]
    pub fn exempt_services(mut self) -> Self {
        self.exempt_services = true;
        self
    }
}

impl<S> Layer<S> for PerPrincipalLayer {
    type Service = PerPrincipal<S>;

    fn layer(&self, inner: S) -> PerPrincipal<S> {
        PerPrincipal {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`PerPrincipalLayer`] makes.
#[derive(Debug, Clone)]
pub struct PerPrincipal<S> {
    inner: S,
    layer: PerPrincipalLayer,
}

/// `RESOURCE_EXHAUSTED` / `RATE_LIMITED` with a `RetryInfo` of `wait`.
pub fn rate_limited(wait: Duration) -> Status {
    let mut details =
        ErrorDetails::with_error_info(proto::reasons::RATE_LIMITED, proto::reasons::DOMAIN, []);
    details.set_retry_info(Some(wait));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "rate limit of this principal exceeded; retry in {} ms",
            wait.as_millis().max(1)
        ),
        details,
    )
}

impl<S, B> Service<http::Request<B>> for PerPrincipal<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(principal) = request.extensions().get::<Principal>()
            && !(self.layer.exempt_services && principal.has(Role::Service))
            && let Err(wait) = self.layer.limiter.check(principal.subject())
        {
            static REFUSED: Sampled = Sampled::new();
            if let Some(refused) = REFUSED.hit() {
                warn!(
                    subject = principal.subject(),
                    ?wait,
                    refused,
                    "call refused: rate limited"
                );
            } else {
                debug!(subject = principal.subject(), ?wait, "rate limited");
            }
            return Either::Right(ready(Ok(rate_limited(wait).into_http())));
        }
        Either::Left(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_key() {
        let limiter = RateLimiter::new(10.0, 3);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("alice", t).is_ok());
        }
        let wait = limiter.check_at("alice", t).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert!(limiter.check_at("bob", t).is_ok(), "keys are independent");
        assert!(
            limiter
                .check_at("alice", t + Duration::from_millis(100))
                .is_ok()
        );
        assert!(
            limiter
                .check_at("alice", t + Duration::from_millis(100))
                .is_err()
        );
    }

    #[test]
    fn idle_keys_are_forgotten_when_many() {
        let limiter = RateLimiter::new(1000.0, 1);
        let t = Instant::now();
        for i in 0..MAX_TRACKED {
            limiter.check_at(&format!("k{i}"), t).unwrap();
        }
        limiter.check_at("new", t + Duration::from_secs(1)).unwrap();
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1);
    }
}
