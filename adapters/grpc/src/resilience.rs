//! The tower stack of a synchronous call, outermost first:
//!
//! 1. circuit breaker: while the callee is failing, refuse at once;
//! 2. load shedding: refuse at once instead of queueing when all permits are taken;
//! 3. concurrency limit: at most `max_in_flight` calls at a time;
//! 4. retry: only for idempotent calls, only on `UNAVAILABLE`, a broken
//!    connection or (where the call allows it) an attempt past its
//!    deadline, within a budget;
//! 5. deadline: every attempt is bounded.

use std::sync::Arc;
use std::time::Duration;

use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder};

use crate::breaker::{Breaker, BreakerConfig, BreakerLayer};

/// Settings of one synchronous call.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    pub deadline: Duration,
    pub max_in_flight: usize,
    pub idempotent: bool,
    pub max_retries: usize,
    /// Whether an idempotent call's attempt past its deadline is tried again.
    /// Not for a call whose total time something else bounds (`Pay`: a
    /// claim must outlive its payment call, see `pending_ttl_ms`).
    pub retry_timeouts: bool,
    pub breaker: BreakerConfig,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(2),
            max_in_flight: 256,
            idempotent: false,
            max_retries: 2,
            retry_timeouts: false,
            breaker: BreakerConfig::default(),
        }
    }
}

/// Retries `UNAVAILABLE` (the request did not reach a healthy server) for
/// idempotent calls, at most `max` times per call, and at most about 20% extra
/// load overall (the budget).
#[derive(Clone)]
pub struct RetryUnavailable {
    remaining: usize,
    timeouts: bool,
    budget: Arc<TpsBudget>,
}

impl std::fmt::Debug for RetryUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryUnavailable")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl<Req: Clone, Res> Policy<Req, Res, BoxError> for RetryUnavailable {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Req,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(e) => {
                // An attempt past its deadline is tried again as well when
                // the call asks for it (on whichever replica the balancer
                // picks): a replica stalled by a busy machine or a drain
                // under way must not fail a call another replica answers at
                // once. Idempotent calls only, which are the only ones retried.
                let retryable = (self.timeouts && e.is::<tower::timeout::error::Elapsed>())
                    || e.downcast_ref::<tonic::Status>().is_some_and(retryable);
                if retryable && self.remaining > 0 && self.budget.withdraw() {
                    self.remaining -= 1;
                    Some(tokio::time::sleep(Duration::from_millis(20)))
                } else {
                    None
                }
            }
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// Whether an idempotent call that failed with `status` may be sent again:
/// `UNAVAILABLE` (the server said so, or tonic mapped a refused connection),
/// or a connection that broke under the call (a replica that exited after its
/// drain as the call went out: tonic reports that as `UNKNOWN` with the
/// transport error as its source). A status the server sent itself has no
/// source, so an `UNKNOWN` from a handler is not retried.
fn retryable(status: &tonic::Status) -> bool {
    if status.code() == tonic::Code::Unavailable {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<h2::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// A cloneable, resilient call.
pub type Call<Req, Res> = BoxCloneSyncService<Req, Res, BoxError>;

/// Wraps `call` (one attempt of the RPC) in the stack described above. Returns
/// the stack and its breaker (for health and metrics).
pub fn resilient<S, Req, Res>(name: &str, policy: CallPolicy, call: S) -> (Call<Req, Res>, Breaker)
where
    S: Service<Req, Response = Res, Error = tonic::Status> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    Req: Clone + Send + Sync + 'static,
    Res: Send + 'static,
{
    let breaker = Breaker::new(name, policy.breaker);
    let retry = RetryUnavailable {
        remaining: if policy.idempotent {
            policy.max_retries
        } else {
            0
        },
        timeouts: policy.retry_timeouts,
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 5, 0.2)),
    };
    let stack = ServiceBuilder::new()
        .layer(BreakerLayer::new(breaker.clone()))
        .load_shed()
        .concurrency_limit(policy.max_in_flight)
        .retry(retry)
        .timeout(policy.deadline)
        .map_err(BoxError::from)
        .service(call);
    (BoxCloneSyncService::new(stack), breaker)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idempotent call whose first attempt stalls past the deadline is
    /// answered by its second.
    #[tokio::test(start_paused = true)]
    async fn an_attempt_past_its_deadline_is_tried_again() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tower::ServiceExt as _;
        let attempts = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&attempts);
        let call = tower::service_fn(move |(): ()| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_mins(1)).await;
                }
                Ok::<_, tonic::Status>("answered")
            }
        });
        let policy = CallPolicy {
            deadline: Duration::from_secs(1),
            idempotent: true,
            retry_timeouts: true,
            ..CallPolicy::default()
        };
        let (call, _) = resilient("test", policy, call);
        assert_eq!(
            call.oneshot(()).await.expect("the retry answers"),
            "answered"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn unavailable_and_broken_connections_are_retried_but_not_a_handlers_unknown() {
        assert!(retryable(&tonic::Status::unavailable("down")));
        let reset = tonic::Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(reset.code(), tonic::Code::Unknown);
        assert!(retryable(&reset));
        assert!(!retryable(&tonic::Status::unknown(
            "a handler's own failure"
        )));
        assert!(!retryable(&tonic::Status::internal("bug")));
        assert!(!retryable(&tonic::Status::failed_precondition("refused")));
    }
}
