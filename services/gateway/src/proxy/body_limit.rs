//! Reading the request's one message, bounded in size and time, and framed
//! as one gRPC message.

use std::task::{Context, Poll};
use std::time::Duration;

use adapters_grpc::request_body::{BodyLimits, read_one_message};
use bytes::Bytes;
use futures::future::BoxFuture;
use tower::{Layer, Service};

use super::call::{Collected, Response, answer, take_ready};

/// Reads the request's one message (no method of the API streams requests)
/// with [`read_one_message`], the same reader every service port uses: at
/// most `max_message_bytes` (`RESOURCE_EXHAUSTED`, `MESSAGE_TOO_LARGE`),
/// within `within` of the headers (`CANCELLED`, `REQUEST_BODY_TIMEOUT`: a
/// client that trickles its request is cut off, and holds its places no
/// longer), one whole gRPC frame (`INVALID_ARGUMENT`, `MALFORMED_FRAME`,
/// before any upstream sees it).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    limits: BodyLimits,
}

impl BodyLimitLayer {
    pub fn new(max_message_bytes: usize, within: Duration) -> Self {
        Self {
            limits: BodyLimits {
                max_message_bytes,
                within,
            },
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
        let limits = self.layer.limits;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            match read_one_message(&parts.headers, body, limits).await {
                Ok(bytes) => inner.call(http::Request::from_parts(parts, bytes)).await,
                Err(refusal) => Ok(answer(&refusal.refuse("gateway", parts.uri.path()))),
            }
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
    use crate::proxy::testing::{UNARY, body_request, ok, over, reason_of, status, trickling};

    #[tokio::test]
    async fn the_body_limit_passes_one_message_and_refuses_a_larger_one() {
        let (svc, mut handle) = over(BodyLimitLayer::new(8, Duration::from_secs(5)));
        // One frame: not compressed, 8 bytes of message.
        let small = [&[0u8, 0, 0, 0, 8][..], &[7u8; 8]].concat();
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
        let s = status(&refused).unwrap();
        assert_eq!(s.code(), Code::Cancelled);
        assert_eq!(reason_of(&s), proto::reasons::REQUEST_BODY_TIMEOUT);
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

    #[tokio::test]
    async fn a_body_that_is_not_one_grpc_frame_is_invalid_before_any_upstream() {
        let (svc, mut handle) = over(BodyLimitLayer::new(8, Duration::from_secs(5)));
        for (body, what) in [
            (vec![], "empty body"),
            (vec![1, 0, 0, 0, 1, 9], "no grpc-encoding"),
            (vec![0, 0, 0, 0, 4, 9], "4 bytes, 1 arrived"),
            (vec![0, 0], "2 of the 5"),
        ] {
            let refused = svc
                .clone()
                .oneshot(body_request(axum::body::Body::from(body)))
                .await
                .unwrap();
            let s = status(&refused).unwrap();
            assert_eq!(s.code(), Code::InvalidArgument, "{what}");
            assert_eq!(reason_of(&s), proto::reasons::MALFORMED_FRAME);
            assert!(s.message().contains(what), "{s:?}");
        }
        assert!(
            handle.poll_request().is_pending(),
            "refused before the inner service"
        );
    }
}
