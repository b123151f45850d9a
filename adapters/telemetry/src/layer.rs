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
        if let Ok(n) = code.parse::<i32>() {
            record_server_status(&self.span, n);
        }
        crate::metrics::rpc(self.component, &self.method, code, self.started.elapsed());
    }
}

/// The gRPC codes OpenTelemetry's RPC conventions count as a server's own
/// error (`UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`,
/// `UNAVAILABLE`, `DATA_LOSS`): a refusal of the caller's request
/// (`INVALID_ARGUMENT`, `NOT_FOUND`, `FAILED_PRECONDITION`, ...) is the server
/// working, and leaves the status unset.
fn server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// `rpc.grpc.status_code` (an integer, as the conventions have it) on a
/// server span, and status ERROR for the codes the conventions count as
/// the server's own error (see `server_error`).
pub fn record_server_status(span: &tracing::Span, code: i32) {
    span.record("rpc.grpc.status_code", i64::from(code));
    if server_error(code) {
        span.record("otel.status_code", "ERROR");
    }
}

/// `rpc.grpc.status_code` on a client span, and status ERROR for every code
/// but OK (the conventions: to the caller, any refusal is a failed call).
pub fn record_client_status(span: &tracing::Span, code: i32) {
    span.record("rpc.grpc.status_code", i64::from(code));
    if code != 0 {
        span.record("otel.status_code", "ERROR");
    }
}

/// Records a client span's status once: [`Self::answered`] with the call's
/// code, or, when dropped unanswered (the attempt was cancelled or timed
/// out around it), the code given at creation.
#[derive(Debug)]
pub struct ClientStatus {
    span: Option<tracing::Span>,
    unanswered: i32,
}

impl ClientStatus {
    pub fn new(span: tracing::Span, unanswered: i32) -> Self {
        Self {
            span: Some(span),
            unanswered,
        }
    }

    /// The call ended with `code`.
    pub fn answered(mut self, code: i32) {
        if let Some(span) = self.span.take() {
            record_client_status(&span, code);
        }
    }
}

impl Drop for ClientStatus {
    fn drop(&mut self) {
        if let Some(span) = self.span.take() {
            record_client_status(&span, self.unanswered);
        }
    }
}

/// The `rpc.client` span of one attempt of a call to `path` made by
/// `component`; `rpc.grpc.status_code` and `reservation_id` are recorded
/// on it later ([`record_client_status`]).
pub fn client_span(component: &'static str, path: &str) -> tracing::Span {
    let (service, method) = rpc_parts(known_method(path));
    tracing::info_span!(
        "rpc.client",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        component,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        reservation_id = tracing::field::Empty,
    )
}

/// What a [`RecordedBody`] calls once with the call's gRPC status code (as
/// the text of `grpc-status`).
pub type OnEnd = Box<dyn FnOnce(&str) + Send + Sync>;

/// `response` with `on_end` called once its status is known: from its
/// trailers (or its end), or from the headers of a trailers-only answer;
/// `CANCELLED` when the body is dropped before (the caller went away).
pub fn recorded<B>(response: http::Response<B>, on_end: OnEnd) -> http::Response<RecordedBody<B>> {
    let header_code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    response.map(|inner| RecordedBody {
        inner,
        header_code,
        finish: Some(on_end),
    })
}

pin_project_lite::pin_project! {
    /// A response body that reports the call's status when its trailers (or
    /// its end) pass, or when dropped: with the status of a trailers-only
    /// answer, else as `CANCELLED` (the client went away first).
    pub struct RecordedBody<B> {
        #[pin]
        inner: B,
        // The status a trailers-only response carried in its headers.
        header_code: Option<String>,
        finish: Option<OnEnd>,
    }

    impl<B> PinnedDrop for RecordedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(finish) = this.finish.take() {
                // A trailers-only answer is never polled (its body is empty
                // from the start): its status is in the headers. Otherwise the
                // stream was dropped before its trailers: the client left.
                finish(this.header_code.as_deref().unwrap_or("1"));
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
                    finish(code);
                }
            }
            Some(Err(_)) => {
                if let Some(finish) = this.finish.take() {
                    finish("2");
                }
            }
            None => {
                if let Some(finish) = this.finish.take() {
                    finish(this.header_code.as_deref().unwrap_or("0"));
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
                otel.status_code = tracing::field::Empty,
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
            Ok(recorded(
                response,
                Box::new(move |code| {
                    if let Some(finish) = finish {
                        finish.record(code);
                    }
                }),
            ))
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

/// The `reservation_id` a request to `path` names: the top-level string
/// field of that name in the method's input message, read straight from the
/// encoded `message` (the gateway forwards bytes; it never decodes them).
/// `None` when the method's request has no such field, or it is absent,
/// empty, not UTF-8 or not a reservation id's shape.
pub fn reservation_in(path: &str, message: &[u8]) -> Option<String> {
    let field = reservation_fields().get(path).copied()?;
    let raw = string_field(message, field)?;
    // Only an id's shape goes on a span, never arbitrary caller input.
    let ok = raw.len() == 36 && raw.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then(|| raw.to_owned())
}

/// Method path -> the number of its request's top-level `reservation_id`.
fn reservation_fields() -> &'static std::collections::HashMap<String, u32> {
    static FIELDS: std::sync::OnceLock<std::collections::HashMap<String, u32>> =
        std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        use prost::Message as _;
        let set =
            prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
        let mut numbers = std::collections::HashMap::new();
        for f in &set.file {
            for m in &f.message_type {
                if let Some(field) = m.field.iter().find(|x| {
                    x.name() == "reservation_id"
                        && x.r#type() == prost_types::field_descriptor_proto::Type::String
                }) {
                    numbers.insert(format!(".{}.{}", f.package(), m.name()), field.number());
                }
            }
        }
        let mut out = std::collections::HashMap::new();
        for f in &set.file {
            for s in &f.service {
                for m in &s.method {
                    if let Some(n) = numbers.get(m.input_type())
                        && let Ok(n) = u32::try_from(*n)
                    {
                        out.insert(format!("/{}.{}/{}", f.package(), s.name(), m.name()), n);
                    }
                }
            }
        }
        out
    })
}

/// The last value of top-level length-delimited field `number` in the
/// protobuf encoding `buf`, as UTF-8; `None` on any malformed input.
fn string_field(mut buf: &[u8], number: u32) -> Option<&str> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut found = None;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (tag, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(&mut buf)?;
            }
            1 => buf = buf.get(8..)?,
            5 => buf = buf.get(4..)?,
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let value = buf.get(..len)?;
                buf = buf.get(len..)?;
                if tag == u64::from(number) {
                    found = Some(value);
                }
            }
            _ => return None,
        }
    }
    std::str::from_utf8(found?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_span_ends_with_its_answer_or_the_code_of_an_unanswered_call() {
        use opentelemetry::trace::{Status, TracerProvider as _};
        use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
        use tracing_subscriber::layer::SubscriberExt as _;

        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let pay = "/roaming.payment.v1.PaymentService/Pay";
        tracing::subscriber::with_default(subscriber, || {
            // Timed out around it: dropped unanswered.
            let span = client_span("reservation", pay);
            drop(ClientStatus::new(span.clone(), 4));
            drop(span);
            let span = client_span("reservation", pay);
            ClientStatus::new(span.clone(), 4).answered(0);
            drop(span);
            let span = client_span("reservation", pay);
            ClientStatus::new(span.clone(), 4).answered(9);
            drop(span);
        });
        let spans = exporter.get_finished_spans().unwrap();
        let seen: Vec<(Option<i64>, bool)> = spans
            .iter()
            .map(|s| {
                let code = s
                    .attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == "rpc.grpc.status_code")
                    .and_then(|kv| match kv.value {
                        opentelemetry::Value::I64(n) => Some(n),
                        _ => None,
                    });
                (code, matches!(s.status, Status::Error { .. }))
            })
            .collect();
        assert_eq!(seen, [(Some(4), true), (Some(0), false), (Some(9), true)]);
    }

    #[test]
    fn the_servers_own_errors_are_errors_and_refusals_are_not() {
        for code in [2, 4, 12, 13, 14, 15] {
            assert!(server_error(code), "{code}");
        }
        for code in [0, 1, 3, 5, 6, 7, 8, 9, 10, 11, 16] {
            assert!(!server_error(code), "{code}");
        }
    }

    #[test]
    fn the_reservation_a_request_names_is_read_from_its_bytes() {
        use prost::Message as _;
        let id = "0190f5e2-7c1a-7cc0-8d3e-1f2a3b4c5d6e";
        let hand_over = proto::rental::HandOverDeviceRequest {
            reservation_id: id.to_owned(),
            serial: "SN-1".to_owned(),
        }
        .encode_to_vec();
        let path = "/roaming.rental.v1.RentalService/HandOverDevice";
        assert_eq!(reservation_in(path, &hand_over).as_deref(), Some(id));
        // A method whose request names none; an unknown path; bad bytes.
        assert_eq!(
            reservation_in(
                "/roaming.reservation.v1.ReservationService/ReserveRoaming",
                &hand_over
            ),
            None
        );
        assert_eq!(reservation_in("/x/y", &hand_over), None);
        assert_eq!(reservation_in(path, &[0x0a, 0x40, b'a']), None);
        assert_eq!(reservation_in(path, &[0xff; 12]), None);
        // Caller input that is not an id's shape stays off the span.
        let odd = proto::rental::HandOverDeviceRequest {
            reservation_id: "<script>alert(1)</script>-----------".to_owned(),
            serial: String::new(),
        }
        .encode_to_vec();
        assert_eq!(reservation_in(path, &odd), None);
    }

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
