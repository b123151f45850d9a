//! Trace context for the upstream.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Layer, Service};

use super::call::{Response, take_ready};

/// Puts the current span's trace context on the outgoing headers, so the
/// upstream's span is a child of the gateway's.
#[derive(Debug, Clone, Copy)]
pub struct PropagateLayer;

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Propagate<S> {
        Propagate { inner }
    }
}

/// The service [`PropagateLayer`] makes.
#[derive(Debug, Clone)]
pub struct Propagate<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Propagate<S>
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
        let mut inner = take_ready(&mut self.inner);
        // Inside the future: the server polls it within the call's span.
        Box::pin(async move {
            let mut request = request;
            adapters_telemetry::propagation::inject_headers(
                &tracing::Span::current(),
                request.headers_mut(),
            );
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tower::ServiceExt as _;

    use super::*;
    use crate::proxy::testing::{UNARY, ok, over, request, status};

    #[tokio::test]
    async fn the_upstream_call_carries_the_gateways_span_as_its_parent() {
        use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
        use tracing::Instrument as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        adapters_telemetry::propagation::install();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let _subscriber = tracing::subscriber::set_default(
            tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test"))),
        );
        let (svc, mut handle) = over(PropagateLayer);
        let span = tracing::info_span!("gateway call");
        let trace_id = span.context().span().span_context().trace_id();
        let call = tokio::spawn(svc.oneshot(request(UNARY)).instrument(span));
        let (seen, reply) = handle.next_request().await.unwrap();
        let traceparent = seen.headers()["traceparent"].to_str().unwrap().to_owned();
        assert!(
            traceparent.contains(&trace_id.to_string()),
            "{traceparent} carries trace {trace_id}"
        );
        reply.send_response(ok());
        assert!(status(&call.await.unwrap().unwrap()).is_none());
    }
}
