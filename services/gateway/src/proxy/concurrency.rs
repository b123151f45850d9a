//! The gateway's limit on unary calls in flight.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use adapters_telemetry::sampled::Sampled;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tower::{Layer, Service};
use tracing::warn;

use super::call::{Response, overloaded, take_ready};
use super::route::Route;

/// At most `max` unary calls in flight; one more is refused at once with
/// `UNAVAILABLE` (`OVERLOADED`) and a `RetryInfo`, instead of waiting.
/// Streaming calls are not counted. In the stack it comes after the request
/// body was read, and after each principal's share
/// ([`FairShareLayer`](super::FairShareLayer)), so neither a slow client nor
/// one busy caller can take all of its places.
#[derive(Debug, Clone)]
pub struct ConcurrencyLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLayer {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

impl<S> Layer<S> for ConcurrencyLayer {
    type Service = Concurrency<S>;

    fn layer(&self, inner: S) -> Concurrency<S> {
        Concurrency {
            inner,
            permits: Arc::clone(&self.permits),
        }
    }
}

/// The service [`ConcurrencyLayer`] makes.
#[derive(Debug, Clone)]
pub struct Concurrency<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, B> Service<http::Request<B>> for Concurrency<S>
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
        let permit = if streaming {
            None
        } else {
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                static SHED: Sampled = Sampled::new();
                if let Some(refused) = SHED.hit() {
                    warn!(
                        refused,
                        "call shed: the gateway is at its concurrency limit"
                    );
                }
                let refused = overloaded(
                    "the gateway is at its concurrency limit; retry shortly",
                    Duration::from_millis(50),
                );
                return Box::pin(async move { Ok(refused) });
            };
            Some(permit)
        };
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let response = inner.call(request).await;
            drop(permit);
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

    #[tokio::test]
    async fn concurrency_refuses_at_once_over_the_limit_but_not_streams() {
        let (svc, mut handle) = over(ConcurrencyLayer::new(1));
        let held = tokio::spawn({
            let svc = svc.clone();
            async move { svc.oneshot(routed(UNARY, false)).await }
        });
        let (_, first) = handle.next_request().await.unwrap();

        let refused = svc.clone().oneshot(routed(UNARY, false)).await.unwrap();
        let s = status(&refused).unwrap();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(reason_of(&s), proto::reasons::OVERLOADED);
        assert!(s.get_error_details().retry_info().is_some());
        assert!(
            handle.poll_request().is_pending(),
            "refused before the inner service"
        );

        // A stream is not counted against the limit.
        let stream = tokio::spawn({
            let svc = svc.clone();
            async move { svc.oneshot(routed(STREAMING, true)).await }
        });
        handle.next_request().await.unwrap().1.send_response(ok());
        assert!(status(&stream.await.unwrap().unwrap()).is_none());

        // The permit comes back with the answer.
        first.send_response(ok());
        assert!(status(&held.await.unwrap().unwrap()).is_none());
        let again = tokio::spawn({
            let svc = svc.clone();
            async move { svc.oneshot(routed(UNARY, false)).await }
        });
        handle.next_request().await.unwrap().1.send_response(ok());
        assert!(status(&again.await.unwrap().unwrap()).is_none());
    }
}
