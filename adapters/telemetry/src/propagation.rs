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

/// The W3C `traceparent` of the current span, when it is sampled (spans
/// are being recorded).
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    let cx = tracing::Span::current().context();
    let span = cx.span().span_context().clone();
    (span.is_valid() && span.is_sampled()).then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span.trace_id(),
            span.span_id(),
            span.trace_flags().to_u8()
        )
    })
}

/// Adds a span link from the current span to the span `traceparent` names,
/// when that is in another trace (a trace's own later spans need none).
pub fn link_current(traceparent: &str) {
    use opentelemetry::trace::TraceContextExt as _;
    let here = tracing::Span::current();
    let in_trace = here.context().span().span_context().trace_id();
    if let Some(origin) = parse_traceparent(traceparent)
        && origin.trace_id() != in_trace
    {
        here.add_link(origin);
    }
}

/// A version-00 `traceparent` (`00-<trace>-<span>-<flags>`).
fn parse_traceparent(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let mut parts = traceparent.split('-');
    let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_traceparent_reads_back_and_anything_else_is_none() {
        let context = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert!(context.is_some_and(|c| c.is_sampled() && c.is_remote()));
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-zz-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
