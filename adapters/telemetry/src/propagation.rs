//! W3C trace context (`traceparent`, `tracestate`) in gRPC metadata and in the
//! headers events carry (stored with the outbox row, published with the event).

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes W3C trace context the process's propagation format.
pub fn install() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct PairsInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for PairsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        self.0.push((key.to_owned(), value));
    }
}

struct PairsExtractor<'a>(&'a [(String, String)]);

impl Extractor for PairsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// The caller's trace context in request headers.
pub fn extract_headers(headers: &http::HeaderMap) -> Context {
    propagator().extract(&HeaderExtractor(headers))
}

/// Writes `span`'s trace context into request headers (replacing any).
pub fn inject_headers(span: &tracing::Span, headers: &mut http::HeaderMap) {
    propagator().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// The trace context in event headers.
pub fn extract_pairs(pairs: &[(String, String)]) -> Context {
    propagator().extract(&PairsExtractor(pairs))
}

/// Writes `span`'s trace context into event headers (replacing any).
pub fn inject_pairs(span: &tracing::Span, pairs: &mut Vec<(String, String)>) {
    propagator().inject_context(&span.context(), &mut PairsInjector(pairs));
}

/// Makes `span` a child of the trace context in event headers, if any.
pub fn set_parent_from_pairs(span: &tracing::Span, pairs: &[(String, String)]) {
    let cx = extract_pairs(pairs);
    if opentelemetry::trace::TraceContextExt::span(&cx)
        .span_context()
        .is_valid()
    {
        let _ = span.set_parent(cx);
    }
}

/// The current span's trace context as event headers: what the outbox stores
/// with each event, so the relay and the consumers continue the trace.
pub fn current_trace_headers() -> Vec<(String, String)> {
    let mut out = Vec::new();
    inject_pairs(&tracing::Span::current(), &mut out);
    out
}

/// A tonic client interceptor: the current span's context into the outgoing
/// request's metadata.
pub fn inject(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let mut headers = std::mem::take(request.metadata_mut()).into_headers();
    inject_headers(&tracing::Span::current(), &mut headers);
    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
    Ok(request)
}
