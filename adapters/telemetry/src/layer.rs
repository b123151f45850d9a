//! One span per RPC on the server side, child of the caller's span.

use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::propagation::extract_headers;

/// Opens the `rpc.server` span of every call; `component` names the process
/// part (`gateway`, `reservation`, ...). Handlers may record `reservation_id`.
#[derive(Debug, Clone, Copy)]
pub struct TraceLayer {
    component: &'static str,
}

impl TraceLayer {
    pub fn new(component: &'static str) -> Self {
        Self { component }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced {
            inner,
            component: self.component,
        }
    }
}

/// The service [`TraceLayer`] makes.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    component: &'static str,
}

impl<S, B, R> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let path = path.as_str();
        let anonymous = path.starts_with("/grpc.");
        let span = if anonymous {
            // Health probes and reflection: no span of their own.
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "rpc.server",
                otel.name = %path,
                otel.kind = "server",
                component = self.component,
                rpc.method = %path,
                rpc.grpc.status_code = tracing::field::Empty,
                reservation_id = tracing::field::Empty,
            )
        };
        if !anonymous {
            let _ = span.set_parent(extract_headers(request.headers()));
        }
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let recorder = span.clone();
        let component = self.component;
        let method = (!anonymous).then(|| path.to_owned());
        let started = std::time::Instant::now();
        async move {
            let result = future.await;
            if let (Ok(response), Some(method)) = (&result, method) {
                // Errors are answered trailers-only, so their status is a
                // header; a response with a body reports OK here (a stream
                // that fails later is not counted as an error: known gap).
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned();
                recorder.record("rpc.grpc.status_code", code.as_str());
                crate::metrics::rpc(component, &method, &code, started.elapsed());
            }
            result
        }
        .instrument(span)
        .boxed()
    }
}
