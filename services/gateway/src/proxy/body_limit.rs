//! Reading the request's one message, bounded in size and time.

use std::task::{Context, Poll};
use std::time::Duration;

use adapters_grpc::status::reason;
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Limited};
use proto::reasons;
use tonic::{Code, Status};
use tower::{Layer, Service};

use super::call::{Collected, Response, answer, take_ready};

/// Reads the request's one message (no method of the API streams requests):
/// at most `max_message_bytes` (`RESOURCE_EXHAUSTED`, `MESSAGE_TOO_LARGE`),
/// within `within` (`DEADLINE_EXCEEDED`: a client that trickles its request
/// is cut off like a slow upstream).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    max_message_bytes: usize,
    within: Duration,
}

impl BodyLimitLayer {
    pub fn new(max_message_bytes: usize, within: Duration) -> Self {
        Self {
            max_message_bytes,
            within,
        }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            layer: *self,
        }
    }
}

/// The service [`BodyLimitLayer`] makes.
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    layer: BodyLimitLayer,
}

impl<S, B> Service<http::Request<B>> for BodyLimit<S>
where
    S: Service<Collected, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let BodyLimitLayer {
            max_message_bytes,
            within,
        } = self.layer;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // A 5-byte frame header and at most `max_message_bytes` of message.
            let limit = max_message_bytes + 5;
            let Ok(collected) =
                tokio::time::timeout(within, Limited::new(body, limit).collect()).await
            else {
                return Ok(answer(&Status::deadline_exceeded(
                    "the request body did not arrive in time",
                )));
            };
            match collected {
                Ok(body) => {
                    inner
                        .call(http::Request::from_parts(parts, body.to_bytes()))
                        .await
                }
                Err(e)
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some() =>
                {
                    Ok(answer(&reason(
                        Code::ResourceExhausted,
                        reasons::MESSAGE_TOO_LARGE,
                        format!("request message larger than {max_message_bytes} bytes"),
                        &[("limit", max_message_bytes.to_string())],
                    )))
                }
                Err(_) => Ok(answer(&Status::cancelled("request body interrupted"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tokio::time::Instant;
    use tower::ServiceExt as _;

    use super::*;
    use crate::proxy::testing::{UNARY, body_request, ok, over, reason_of, status, trickling};

    #[tokio::test]
    async fn the_body_limit_passes_one_message_and_refuses_a_larger_one() {
        let (svc, mut handle) = over(BodyLimitLayer::new(8, Duration::from_secs(5)));
        let small = vec![0u8; 5 + 8];
        let call = tokio::spawn({
            let svc = svc.clone();
            let body = axum::body::Body::from(small.clone());
            async move { svc.oneshot(body_request(body)).await }
        });
        let (seen, reply) = handle.next_request().await.unwrap();
        assert_eq!(seen.body().as_ref(), small.as_slice());
        assert_eq!(seen.uri().path(), UNARY, "the head travels with the body");
        reply.send_response(ok());
        assert!(status(&call.await.unwrap().unwrap()).is_none());

        let large = axum::body::Body::from(vec![0u8; 5 + 9]);
        let refused = svc.clone().oneshot(body_request(large)).await.unwrap();
        let s = status(&refused).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(reason_of(&s), proto::reasons::MESSAGE_TOO_LARGE);
        assert!(
            handle.poll_request().is_pending(),
            "refused before the inner service"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_is_cut_off_at_its_time() {
        let (svc, mut handle) = over(BodyLimitLayer::new(8, Duration::from_secs(5)));
        let started = Instant::now();
        let refused = svc
            .clone()
            .oneshot(body_request(trickling()))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(status(&refused).unwrap().code(), Code::DeadlineExceeded);
        assert!(
            handle.poll_request().is_pending(),
            "refused before the inner service"
        );
    }

    #[tokio::test]
    async fn an_interrupted_body_is_cancelled() {
        let (svc, mut handle) = over(BodyLimitLayer::new(8, Duration::from_secs(5)));
        let broken = axum::body::Body::from_stream(futures::stream::iter([Err::<Bytes, _>(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        )]));
        let refused = svc.clone().oneshot(body_request(broken)).await.unwrap();
        assert_eq!(status(&refused).unwrap().code(), Code::Cancelled);
        assert!(
            handle.poll_request().is_pending(),
            "refused before the inner service"
        );
    }
}
