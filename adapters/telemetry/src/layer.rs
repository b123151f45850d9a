//! One span per RPC on the server side, child of the caller's span, and the
//! RPC metrics, recorded when the response ends (so a stream is counted with
//! the status of its trailers, and its duration is its lifetime).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt};
use http_body::{Body, Frame, SizeHint};
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

/// What to record once the response is over.
#[derive(Debug)]
struct Finish {
    component: &'static str,
    method: String,
    started: Instant,
    span: tracing::Span,
}

impl Finish {
    fn record(self, code: &str) {
        // An integer, as OpenTelemetry's RPC conventions have it.
        if let Ok(n) = code.parse::<i64>() {
            self.span.record("rpc.grpc.status_code", n);
        }
        crate::metrics::rpc(self.component, &self.method, code, self.started.elapsed());
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the call when its trailers (or its end)
    /// pass, or when dropped: with the status of a trailers-only answer, else
    /// as `CANCELLED` (the client went away first).
    pub struct RecordedBody<B> {
        #[pin]
        inner: B,
        // The status a trailers-only response carried in its headers.
        header_code: Option<String>,
        finish: Option<Finish>,
    }

    impl<B> PinnedDrop for RecordedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(finish) = this.finish.take() {
                // A trailers-only answer is never polled (its body is empty
                // from the start): its status is in the headers. Otherwise the
                // stream was dropped before its trailers: the client left.
                finish.record(this.header_code.as_deref().unwrap_or("1"));
            }
        }
    }
}

impl<B: Body> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref()
                    && let Some(finish) = this.finish.take()
                {
                    let code = trailers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("0");
                    finish.record(code);
                }
            }
            Some(Err(_)) => {
                if let Some(finish) = this.finish.take() {
                    finish.record("2");
                }
            }
            None => {
                if let Some(finish) = this.finish.take() {
                    finish.record(this.header_code.as_deref().unwrap_or("0"));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<S, B, R> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Body,
{
    type Response = http::Response<RecordedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Health probes and reflection: no span, no metrics.
        let anonymous = request.uri().path().starts_with("/grpc.");
        // Metric labels and span names come from the contract's method set,
        // never from raw input: any other path is one `unknown` series.
        let path = known_method(request.uri().path()).to_owned();
        let span = if anonymous {
            tracing::Span::none()
        } else {
            let (service, method) = rpc_parts(&path);
            let span = tracing::info_span!(
                "rpc.server",
                otel.name = %format_args!("{service}/{method}"),
                otel.kind = "server",
                component = self.component,
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = tracing::field::Empty,
                reservation_id = tracing::field::Empty,
            );
            let _ = span.set_parent(extract_headers(request.headers()));
            span
        };
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let finish = (!anonymous).then(|| Finish {
            component: self.component,
            method: path,
            started: Instant::now(),
            span: span.clone(),
        });
        async move {
            let response = future.await?;
            let header_code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok(response.map(|inner| RecordedBody {
                inner,
                header_code,
                finish,
            }))
        }
        .instrument(span)
        .boxed()
    }
}

/// `rpc.service` and `rpc.method` of a gRPC path
/// (`/roaming.payment.v1.PaymentService/Pay` -> `roaming.payment.v1.PaymentService`,
/// `Pay`); [`UNKNOWN_METHOD`] for both when it is not one.
pub fn rpc_parts(path: &str) -> (&str, &str) {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(service, method)| !service.is_empty() && !method.is_empty())
        .unwrap_or((UNKNOWN_METHOD, UNKNOWN_METHOD))
}

/// The label of an unknown path.
pub const UNKNOWN_METHOD: &str = "unknown";

/// `path` when it is a method of the contract (`/roaming.x.v1.Service/Method`),
/// else [`UNKNOWN_METHOD`].
pub fn known_method(path: &str) -> &str {
    static METHODS: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    let methods = METHODS.get_or_init(|| {
        use prost::Message as _;
        let set =
            prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
        set.file
            .iter()
            .flat_map(|f| {
                f.service.iter().flat_map(move |s| {
                    s.method
                        .iter()
                        .map(move |m| format!("/{}.{}/{}", f.package(), s.name(), m.name()))
                })
            })
            .collect()
    });
    if methods.contains(path) {
        path
    } else {
        UNKNOWN_METHOD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_splits_into_service_and_method() {
        assert_eq!(
            rpc_parts("/roaming.payment.v1.PaymentService/Pay"),
            ("roaming.payment.v1.PaymentService", "Pay")
        );
        assert_eq!(rpc_parts(UNKNOWN_METHOD), (UNKNOWN_METHOD, UNKNOWN_METHOD));
        assert_eq!(rpc_parts("/x/"), (UNKNOWN_METHOD, UNKNOWN_METHOD));
        assert_eq!(rpc_parts("//Pay"), (UNKNOWN_METHOD, UNKNOWN_METHOD));
    }
}
