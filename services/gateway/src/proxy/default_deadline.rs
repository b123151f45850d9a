//! A deadline for unary calls that came without one.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Status;
use tower::{Layer, Service};

use super::call::{Response, answer, take_ready};
use super::route::Route;

/// A unary call without a deadline (`grpc-timeout`) gets `deadline`: the
/// header is set for the upstream, and the gateway answers
/// `DEADLINE_EXCEEDED` itself when it passes. Streaming calls get none.
#[derive(Debug, Clone, Copy)]
pub struct DefaultDeadlineLayer {
    deadline: Duration,
}

impl DefaultDeadlineLayer {
    pub fn new(deadline: Duration) -> Self {
        Self { deadline }
    }
}

impl<S> Layer<S> for DefaultDeadlineLayer {
    type Service = DefaultDeadline<S>;

    fn layer(&self, inner: S) -> DefaultDeadline<S> {
        DefaultDeadline {
            inner,
            deadline: self.deadline,
        }
    }
}

/// The service [`DefaultDeadlineLayer`] makes.
#[derive(Debug, Clone)]
pub struct DefaultDeadline<S> {
    inner: S,
    deadline: Duration,
}

impl<S, B> Service<http::Request<B>> for DefaultDeadline<S>
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let streaming = request
            .extensions()
            .get::<Route>()
            .is_some_and(|r| r.streaming);
        if streaming || request.headers().contains_key("grpc-timeout") {
            return Box::pin(async move { inner.call(request).await });
        }
        let deadline = self.deadline;
        if let Ok(v) = format!("{}m", deadline.as_millis()).parse() {
            request.headers_mut().insert("grpc-timeout", v);
        }
        Box::pin(async move {
            tokio::time::timeout(deadline, inner.call(request))
                .await
                .unwrap_or_else(|_| {
                    Ok(answer(&Status::deadline_exceeded(
                        "the call exceeded the gateway's default deadline",
                    )))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tokio::time::Instant;
    use tonic::Code;
    use tower::ServiceExt as _;

    use super::*;
    use crate::proxy::testing::{STREAMING, UNARY, ok, over, routed, status};

    #[tokio::test(start_paused = true)]
    async fn unary_calls_without_a_deadline_get_the_default_one() {
        let (svc, mut handle) = over(DefaultDeadlineLayer::new(Duration::from_millis(1500)));
        let started = Instant::now();
        let call = tokio::spawn({
            let svc = svc.clone();
            async move { svc.oneshot(routed(UNARY, false)).await }
        });
        let (seen, _never_answered) = handle.next_request().await.unwrap();
        assert_eq!(seen.headers()["grpc-timeout"], "1500m");
        // The upstream does not answer: the gateway does, at the deadline.
        let answered = call.await.unwrap().unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
        assert_eq!(status(&answered).unwrap().code(), Code::DeadlineExceeded);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_within_the_default_deadline_passes() {
        let (svc, mut handle) = over(DefaultDeadlineLayer::new(Duration::from_millis(1500)));
        let call = tokio::spawn({
            let svc = svc.clone();
            async move { svc.oneshot(routed(UNARY, false)).await }
        });
        let (_, reply) = handle.next_request().await.unwrap();
        tokio::time::advance(Duration::from_millis(1499)).await;
        reply.send_response(ok());
        assert!(status(&call.await.unwrap().unwrap()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_callers_deadline_and_streams_are_left_alone() {
        let (svc, mut handle) = over(DefaultDeadlineLayer::new(Duration::from_millis(1500)));
        let mut own = routed(UNARY, false);
        own.headers_mut()
            .insert("grpc-timeout", "30S".parse().unwrap());
        for (r, header) in [(own, Some("30S")), (routed(STREAMING, true), None)] {
            let call = tokio::spawn({
                let svc = svc.clone();
                async move { svc.oneshot(r).await }
            });
            let (seen, reply) = handle.next_request().await.unwrap();
            assert_eq!(
                seen.headers()
                    .get("grpc-timeout")
                    .map(|v| v.to_str().unwrap()),
                header
            );
            // Long after the default deadline the call is still the upstream's.
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert!(!call.is_finished());
            reply.send_response(ok());
            assert!(status(&call.await.unwrap().unwrap()).is_none());
        }
    }
}
