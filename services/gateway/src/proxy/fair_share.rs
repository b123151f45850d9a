//! Each principal's share of the gateway's unary calls in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use adapters_grpc::status::retry_later;
use adapters_telemetry::sampled::Sampled;
use domain_kernel::Principal;
use futures::future::BoxFuture;
use proto::reasons;
use tonic::Code;
use tower::{Layer, Service};
use tracing::warn;

use super::call::{Response, answer, take_ready};
use super::route::Route;

/// How long a caller at its share is told to wait: a call of its own
/// usually ends within that.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// At most `max` unary calls of one principal in flight at once, from its
/// token check to its answer (reading its body, waiting for admission and
/// the upstream included); one more is refused at once with
/// `RESOURCE_EXHAUSTED` (`IN_FLIGHT_LIMIT`, the limit in its metadata) and a
/// `RetryInfo`. Without it, a caller whose calls never end (a body that never
/// completes, a slow method called in a loop) takes the gateway's places
/// ([`ConcurrencyLayer`](super::ConcurrencyLayer)) from everyone; with it,
/// filling the gateway takes `max_concurrent_calls / max` principals.
/// Streaming calls are not counted (the view limits watches per caller). A
/// call without a principal (none after the token check) is not counted.
#[derive(Debug, Clone)]
pub struct FairShareLayer {
    max: usize,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl FairShareLayer {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            in_flight: Arc::default(),
        }
    }

    /// A place for `subject`, or `None` when it holds `max` already.
    fn enter(&self, subject: &str) -> Option<Place> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = in_flight.entry(subject.to_owned()).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Place {
            in_flight: Arc::clone(&self.in_flight),
            subject: subject.to_owned(),
        })
    }

    /// The calls `subject` has in flight.
    #[cfg(test)]
    fn held(&self, subject: &str) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(subject)
            .copied()
            .unwrap_or_default()
    }
}

/// One call's place in its principal's share, given back when the call ends
/// (answered, or dropped because the client went away). A principal
/// without calls in flight is forgotten, so the map holds only callers with
/// calls in flight.
#[derive(Debug)]
struct Place {
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    subject: String,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = in_flight.get_mut(&self.subject) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                in_flight.remove(&self.subject);
            }
        }
    }
}

impl<S> Layer<S> for FairShareLayer {
    type Service = FairShare<S>;

    fn layer(&self, inner: S) -> FairShare<S> {
        FairShare {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`FairShareLayer`] makes.
#[derive(Debug, Clone)]
pub struct FairShare<S> {
    inner: S,
    layer: FairShareLayer,
}

impl<S, B> Service<http::Request<B>> for FairShare<S>
where
    S: Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let streaming = request
            .extensions()
            .get::<Route>()
            .is_some_and(|r| r.streaming);
        let principal = request.extensions().get::<Principal>();
        let place = match principal {
            Some(principal) if !streaming => {
                let Some(place) = self.layer.enter(principal.subject()) else {
                    static REFUSED: Sampled = Sampled::new();
                    let max = self.layer.max;
                    if let Some(refused) = REFUSED.hit() {
                        warn!(
                            subject = principal.subject(),
                            limit = max,
                            refused,
                            "call refused: the principal has its share of the gateway's calls in flight"
                        );
                    }
                    let refusal = answer(&retry_later(
                        Code::ResourceExhausted,
                        reasons::IN_FLIGHT_LIMIT,
                        format!(
                            "this principal already has {max} calls in flight at the gateway; \
                             retry when one has ended"
                        ),
                        RETRY_AFTER,
                        &[("limit", max.to_string())],
                    ));
                    return Box::pin(async move { Ok(refusal) });
                };
                Some(place)
            }
            _ => None,
        };
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let response = inner.call(request).await;
            drop(place);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tonic::Code;
    use tonic_types::StatusExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::proxy::testing::{STREAMING, UNARY, ok, over, reason_of, routed, status};

    fn as_(who: &str, mut request: crate::proxy::testing::Req) -> crate::proxy::testing::Req {
        let id = domain_kernel::CustomerId::parse(who).unwrap();
        request.extensions_mut().insert(Principal::customer(&id));
        request
    }

    #[tokio::test]
    async fn one_principal_holds_at_most_its_share_and_others_still_pass() {
        let layer = FairShareLayer::new(2);
        let (svc, mut handle) = over(layer.clone());
        // Alice's two calls are held by the upstream.
        let mut held = Vec::new();
        for _ in 0..2 {
            let svc = svc.clone();
            let call = tokio::spawn(svc.oneshot(as_("alice", routed(UNARY, false))));
            held.push((call, handle.next_request().await.unwrap().1));
        }
        assert_eq!(layer.held("alice"), 2);

        // Her third is refused at once, with the limit and when to retry.
        let refused = svc
            .clone()
            .oneshot(as_("alice", routed(UNARY, false)))
            .await
            .unwrap();
        let s = status(&refused).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(reason_of(&s), proto::reasons::IN_FLIGHT_LIMIT);
        let details = s.get_error_details();
        assert_eq!(details.error_info().unwrap().metadata["limit"], "2");
        assert!(details.retry_info().is_some());
        assert!(
            handle.poll_request().is_pending(),
            "refused before the inner service"
        );

        // Bob has a share of his own, and Alice's streams are not counted.
        for r in [
            as_("bob", routed(UNARY, false)),
            as_("alice", routed(STREAMING, true)),
        ] {
            let call = tokio::spawn(svc.clone().oneshot(r));
            handle.next_request().await.unwrap().1.send_response(ok());
            assert!(status(&call.await.unwrap().unwrap()).is_none());
        }

        // A call that ends, answered or dropped, gives its place back.
        let (answered, reply) = held.pop().unwrap();
        reply.send_response(ok());
        assert!(status(&answered.await.unwrap().unwrap()).is_none());
        let (dropped, _never_answered) = held.pop().unwrap();
        dropped.abort();
        let _ = dropped.await;
        assert_eq!(
            layer.held("alice"),
            0,
            "forgotten once nothing is in flight"
        );
        let again = tokio::spawn(svc.clone().oneshot(as_("alice", routed(UNARY, false))));
        handle.next_request().await.unwrap().1.send_response(ok());
        assert!(status(&again.await.unwrap().unwrap()).is_none());
    }
}
