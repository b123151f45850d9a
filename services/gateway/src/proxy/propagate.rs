//! The gateway's client span of each forwarded call, and its trace context
//! for the upstream.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::call::{Collected, Response, take_ready};

/// Opens the `rpc.client` span of the forwarded call (a child of the
/// gateway's server span, open until the upstream's answer ended, with its
/// status) and puts its trace context on the outgoing headers, so the
/// upstream's server span is the client span's child: a span on both sides
/// of the hop. The reservation the request names (read from its bytes) goes
/// on both the gateway's spans.
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

impl<S> Service<Collected> for Propagate<S>
where
    S: Service<Collected, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Collected) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        // Inside the future: the server polls it within the call's span.
        Box::pin(async move {
            let mut request = request;
            let path = request.uri().path().to_owned();
            let client = adapters_telemetry::layer::client_span("gateway", &path);
            // The one message, after its 5-byte gRPC frame header, unless
            // it is compressed (flag 1): then it is not read at all.
            if let Some(id) = request
                .body()
                .split_first()
                .filter(|(flag, _)| **flag == 0)
                .and_then(|(_, rest)| rest.get(4..))
                .and_then(|m| adapters_telemetry::layer::reservation_in(&path, m))
            {
                tracing::Span::current().record("reservation_id", id.as_str());
                client.record("reservation_id", id.as_str());
            }
            adapters_telemetry::propagation::inject_headers(&client, request.headers_mut());
            // Dropped before an answer (the caller went away): CANCELLED.
            let status = adapters_telemetry::layer::ClientStatus::new(
                client.clone(),
                tonic::Code::Cancelled as i32,
            );
            let response = inner.call(request).instrument(client).await?;
            Ok(adapters_telemetry::layer::recorded(
                response,
                Box::new(move |code| status.answered(code.parse().unwrap_or(2))),
            )
            .map(tonic::body::Body::new))
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
