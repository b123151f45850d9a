//! The call's deadline: a malformed `grpc-timeout` refused, a long one
//! capped, a unary call without one given the default.

use std::task::{Context, Poll};
use std::time::Duration;

use adapters_grpc::status::reason;
use adapters_telemetry::layer::known_method;
use adapters_telemetry::sampled::Sampled;
use futures::future::BoxFuture;
use proto::reasons;
use tonic::{Code, Status};
use tower::{Layer, Service};
use tracing::warn;

use super::call::{Response, answer, grpc_timeout, parse_grpc_timeout, take_ready};
use super::route::Route;

const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The deadline of every call:
///
/// - a `grpc-timeout` that is not 1 to 8 digits and a unit (`-1S`, `abc`,
///   `10`, `123456789S`) is refused with `INVALID_ARGUMENT`
///   (`INVALID_TIMEOUT`): passed on, the upstream's tonic would ignore it,
///   and the call would run without any deadline;
/// - a unary call's deadline longer than `max` (`99999999H`) is cut to
///   `max`, so no caller keeps a call, and the places it holds, for longer;
/// - a unary call without a deadline gets `default`: the header is set for
///   the upstream, and the gateway answers `DEADLINE_EXCEEDED` itself when it
///   passes.
///
/// Streaming calls (a watch) keep the deadline they came with, or none:
/// a watch lives as long as its page is open, and what it holds is bounded by
/// the view's watch limits per caller and per process, not by time (a cap
/// would end every console's live view each `max`).
#[derive(Debug, Clone, Copy)]
pub struct DefaultDeadlineLayer {
    deadline: Duration,
    max: Duration,
}

impl DefaultDeadlineLayer {
    /// `deadline` for unary calls without one, at most `max` for any unary
    /// call (a `deadline` above `max` is `max`).
    pub fn new(deadline: Duration, max: Duration) -> Self {
        Self {
            deadline: deadline.min(max),
            max,
        }
    }
}

impl<S> Layer<S> for DefaultDeadlineLayer {
    type Service = DefaultDeadline<S>;

    fn layer(&self, inner: S) -> DefaultDeadline<S> {
        DefaultDeadline {
            inner,
            layer: *self,
        }
    }
}

/// The service [`DefaultDeadlineLayer`] makes.
#[derive(Debug, Clone)]
pub struct DefaultDeadline<S> {
    inner: S,
    layer: DefaultDeadlineLayer,
}

/// The answer to a malformed `grpc-timeout`.
fn invalid_timeout(path: &str) -> Response {
    static REFUSED: Sampled = Sampled::new();
    if let Some(refused) = REFUSED.hit() {
        warn!(
            method = known_method(path),
            refused, "call refused: malformed grpc-timeout"
        );
    }
    answer(&reason(
        Code::InvalidArgument,
        reasons::INVALID_TIMEOUT,
        "grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u or n)",
        &[],
    ))
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
        let streaming = request
            .extensions()
            .get::<Route>()
            .is_some_and(|r| r.streaming);
        let given = match request.headers().get(GRPC_TIMEOUT).map(parse_grpc_timeout) {
            None => None,
            Some(Some(given)) => Some(given),
            Some(None) => {
                let refused = invalid_timeout(request.uri().path());
                return Box::pin(async move { Ok(refused) });
            }
        };
        let mut inner = take_ready(&mut self.inner);
        match given {
            _ if streaming => Box::pin(async move { inner.call(request).await }),
            Some(given) => {
                if given > self.layer.max
                    && let Some(capped) = grpc_timeout(self.layer.max)
                {
                    request.headers_mut().insert(GRPC_TIMEOUT, capped);
                }
                Box::pin(async move { inner.call(request).await })
            }
            None => {
                let deadline = self.layer.deadline;
                if let Some(v) = grpc_timeout(deadline) {
                    request.headers_mut().insert(GRPC_TIMEOUT, v);
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
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tokio::time::Instant;
    use tonic::Code;
    use tower::ServiceExt as _;

    use super::*;
    use crate::proxy::testing::{STREAMING, UNARY, ok, over, reason_of, routed, status};

    const MAX: Duration = Duration::from_mins(1);

    #[tokio::test(start_paused = true)]
    async fn unary_calls_without_a_deadline_get_the_default_one() {
        let (svc, mut handle) = over(DefaultDeadlineLayer::new(Duration::from_millis(1500), MAX));
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
        let (svc, mut handle) = over(DefaultDeadlineLayer::new(Duration::from_millis(1500), MAX));
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
        let (svc, mut handle) = over(DefaultDeadlineLayer::new(Duration::from_millis(1500), MAX));
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

    #[tokio::test]
    async fn a_malformed_grpc_timeout_is_refused_for_any_call() {
        let (svc, mut handle) = over(DefaultDeadlineLayer::new(Duration::from_millis(1500), MAX));
        for (path, streaming) in [(UNARY, false), (STREAMING, true)] {
            for bad in [
                "-1S",
                "abc",
                "10",
                "S",
                "123456789S",
                "1.5S",
                "10s",
                "1 S",
                "",
            ] {
                let mut r = routed(path, streaming);
                r.headers_mut().insert("grpc-timeout", bad.parse().unwrap());
                let refused = svc.clone().oneshot(r).await.unwrap();
                let s = status(&refused).unwrap();
                assert_eq!(s.code(), Code::InvalidArgument, "{bad:?}");
                assert_eq!(reason_of(&s), proto::reasons::INVALID_TIMEOUT);
            }
        }
        assert!(
            handle.poll_request().is_pending(),
            "refused before the inner service"
        );
    }

    #[tokio::test]
    async fn a_unary_deadline_above_the_cap_is_cut_and_a_streams_is_kept() {
        let (svc, mut handle) = over(DefaultDeadlineLayer::new(Duration::from_millis(1500), MAX));
        for (path, streaming, given, sent) in [
            (UNARY, false, "99999999H", "60000m"),
            (UNARY, false, "61S", "60000m"),
            (UNARY, false, "60S", "60S"),
            (UNARY, false, "0n", "0n"),
            (STREAMING, true, "99999999H", "99999999H"),
        ] {
            let mut r = routed(path, streaming);
            r.headers_mut()
                .insert("grpc-timeout", given.parse().unwrap());
            let call = tokio::spawn(svc.clone().oneshot(r));
            let (seen, reply) = handle.next_request().await.unwrap();
            assert_eq!(seen.headers()["grpc-timeout"], sent, "{given}");
            reply.send_response(ok());
            assert!(status(&call.await.unwrap().unwrap()).is_none());
        }
    }
}
