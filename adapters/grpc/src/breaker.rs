//! A circuit breaker that understands gRPC: transport failures, timeouts,
//! overload and `UNAVAILABLE` / `DEADLINE_EXCEEDED` / `RESOURCE_EXHAUSTED` count
//! as failures; business answers (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`,
//! a declined card in a successful response, ...) do not.
//!
//! Closed: calls pass; the last `window` outcomes are kept. When at least
//! `min_calls` were seen and the failure rate reaches `failure_rate`, it opens.
//! Open: calls fail at once with [`BreakerOpen`] (carrying when to retry) for
//! `cool_down`. Half-open: one probe call passes; success closes, failure opens
//! again.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

// tokio's clock: the same as std's in production, and one tests can pause
// and advance (`tokio::time::pause`) instead of sleeping.
use tokio::time::Instant;

use tonic::Code;
use tower::{BoxError, Layer, Service};
use tracing::warn;

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub window: usize,
    pub min_calls: usize,
    pub failure_rate: f64,
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: 20,
            min_calls: 5,
            failure_rate: 0.5,
            cool_down: Duration::from_secs(5),
        }
    }
}

/// The breaker refused the call without trying.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("circuit breaker open; retry in {retry_after:?}")]
pub struct BreakerOpen {
    pub retry_after: Duration,
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum Inner {
    Closed { outcomes: VecDeque<bool> },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Shared breaker state (clones of the layer's service share it).
#[derive(Debug, Clone)]
pub struct Breaker {
    name: Arc<str>,
    config: BreakerConfig,
    inner: Arc<Mutex<Inner>>,
}

/// Whether an error says the callee is unhealthy (rather than "no"): what a
/// caller experiences as an outage. `CANCELLED` is how tonic reports its own
/// client-side timeout ("Timeout expired"); a callee never answers a business
/// refusal with it.
pub fn is_failure(e: &BoxError) -> bool {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        return matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::ResourceExhausted
                | Code::Unknown
                | Code::Internal
        );
    }
    // Timeouts, load shedding, transport errors, anything else.
    true
}

enum Admission {
    Pass,
    Probe,
    Refuse(Duration),
}

impl Breaker {
    pub fn new(name: &str, config: BreakerConfig) -> Self {
        Self {
            name: name.into(),
            config,
            inner: Arc::new(Mutex::new(Inner::Closed {
                outcomes: VecDeque::new(),
            })),
        }
    }

    pub fn state(&self) -> BreakerState {
        match &*self.inner.lock().unwrap_or_else(PoisonError::into_inner) {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if Instant::now() >= *until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn admit(&self) -> Admission {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *inner {
            Inner::Closed { .. } => Admission::Pass,
            Inner::Open { until } => {
                let now = Instant::now();
                if now >= *until {
                    *inner = Inner::HalfOpen { probing: true };
                    adapters_telemetry::metrics::breaker(&self.name, "half_open");
                    Admission::Probe
                } else {
                    Admission::Refuse(*until - now)
                }
            }
            Inner::HalfOpen { probing } => {
                if *probing {
                    Admission::Refuse(self.config.cool_down)
                } else {
                    *probing = true;
                    Admission::Probe
                }
            }
        }
    }

    fn record(&self, failed: bool, probe: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let open = |inner: &mut Inner, name: &str| {
            warn!(breaker = name, "circuit breaker opened");
            adapters_telemetry::metrics::breaker(name, "open");
            *inner = Inner::Open {
                until: Instant::now() + self.config.cool_down,
            };
        };
        match &mut *inner {
            Inner::HalfOpen { .. } if probe => {
                if failed {
                    open(&mut inner, &self.name);
                } else {
                    tracing::info!(breaker = %self.name, "circuit breaker closed");
                    adapters_telemetry::metrics::breaker(&self.name, "closed");
                    *inner = Inner::Closed {
                        outcomes: VecDeque::new(),
                    };
                }
            }
            Inner::Closed { outcomes } => {
                outcomes.push_back(failed);
                while outcomes.len() > self.config.window {
                    outcomes.pop_front();
                }
                let failures = outcomes.iter().filter(|f| **f).count();
                #[allow(clippy::cast_precision_loss, reason = "window sizes are small")]
                let rate = failures as f64 / outcomes.len() as f64;
                if outcomes.len() >= self.config.min_calls && rate >= self.config.failure_rate {
                    open(&mut inner, &self.name);
                }
            }
            // A late answer from before the breaker opened: ignore.
            _ => {}
        }
    }
}

/// The layer that puts a [`Breaker`] in front of a service.
#[derive(Debug, Clone)]
pub struct BreakerLayer {
    breaker: Breaker,
}

impl BreakerLayer {
    pub fn new(breaker: Breaker) -> Self {
        Self { breaker }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct BreakerService<S> {
    inner: S,
    breaker: Breaker,
}

impl<S, Req> Service<Req> for BreakerService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let probe = match self.breaker.admit() {
            Admission::Refuse(retry_after) => {
                return Box::pin(async move { Err(BoxError::from(BreakerOpen { retry_after })) });
            }
            Admission::Probe => true,
            Admission::Pass => false,
        };
        let breaker = self.breaker.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await.map_err(Into::into);
            let failed = result.as_ref().err().is_some_and(is_failure);
            breaker.record(failed, probe);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: 10,
            min_calls: 4,
            failure_rate: 0.5,
            cool_down: Duration::from_millis(50),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_the_failure_rate_and_refuses_at_once() {
        let b = Breaker::new("t", config());
        for _ in 0..3 {
            assert!(matches!(b.admit(), Admission::Pass));
            b.record(true, false);
        }
        assert_eq!(b.state(), BreakerState::Closed, "below min_calls");
        b.record(true, false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(matches!(b.admit(), Admission::Refuse(d) if d <= Duration::from_millis(50)));
    }

    #[tokio::test(start_paused = true)]
    async fn half_opens_after_the_cool_down_and_one_probe_decides() {
        let b = Breaker::new("t", config());
        for _ in 0..4 {
            b.record(true, false);
        }
        tokio::time::advance(Duration::from_millis(49)).await;
        assert!(
            matches!(b.admit(), Admission::Refuse(_)),
            "still cooling down"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(matches!(b.admit(), Admission::Probe));
        assert!(
            matches!(b.admit(), Admission::Refuse(_)),
            "one probe at a time"
        );
        b.record(true, true);
        assert_eq!(b.state(), BreakerState::Open, "failed probe opens again");
        tokio::time::advance(Duration::from_millis(50)).await;
        assert!(matches!(b.admit(), Admission::Probe));
        b.record(false, true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn business_refusals_are_not_failures() {
        let declined: BoxError = Box::new(tonic::Status::failed_precondition("declined"));
        let invalid: BoxError = Box::new(tonic::Status::invalid_argument("bad"));
        let down: BoxError = Box::new(tonic::Status::unavailable("down"));
        let slow: BoxError = Box::new(tonic::Status::deadline_exceeded("slow"));
        assert!(!is_failure(&declined) && !is_failure(&invalid));
        assert!(is_failure(&down) && is_failure(&slow));
        // tonic's own client-side timeout.
        let timed_out: BoxError = Box::new(tonic::Status::cancelled("Timeout expired"));
        let shed: BoxError = Box::new(tonic::Status::resource_exhausted("busy"));
        assert!(is_failure(&timed_out) && is_failure(&shed));
        for refusal in [
            tonic::Status::not_found("x"),
            tonic::Status::permission_denied("x"),
            tonic::Status::already_exists("x"),
            tonic::Status::unauthenticated("x"),
        ] {
            assert!(!is_failure(&(Box::new(refusal) as BoxError)));
        }
    }

    #[test]
    fn successes_keep_it_closed() {
        let b = Breaker::new("t", config());
        for i in 0..20 {
            b.record(i % 3 == 2, false);
        }
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "a third failing is below 50%"
        );
    }
}
