//! Each layer of the gateway's stack on its own, in front of a `tower-test`
//! mock: what it refuses (and with which code and reason), what it lets
//! through and what it changes on the way.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use adapters_auth::AuthLayer;
use adapters_auth::rate::{PerPrincipalLayer, RateLimiter};
use adapters_grpc::balance::Upstream;
use bytes::Bytes;
use domain_kernel::Principal;
use tonic::Code;
use tonic_types::StatusExt;
use tower::Layer;
use tower_test::mock::{self, Mock};

use super::*;

type Req = http::Request<Bytes>;

const UNARY: &str = "/roaming.reservation.v1.ReservationService/Reserve";
const STREAMING: &str = "/roaming.view.v1.ViewService/WatchReservation";

fn request(path: &str) -> Req {
    http::Request::builder()
        .uri(format!("http://gateway{path}"))
        .body(Bytes::from_static(b"\0\0\0\0\0"))
        .unwrap()
}

fn routed(path: &str, streaming: bool) -> Req {
    let mut r = request(path);
    r.extensions_mut().insert(Route {
        service: "roaming.reservation.v1.ReservationService".into(),
        upstream: Upstream::new(
            "roaming.reservation.v1.ReservationService",
            &["http://127.0.0.1:9".to_owned()],
        )
        .unwrap(),
        streaming,
    });
    r
}

fn ok() -> Response {
    http::Response::new(tonic::body::Body::empty())
}

/// The status a layer answered with (`grpc-status` in the headers).
fn status(response: &Response) -> Option<Status> {
    Status::from_header_map(response.headers())
}

fn reason_of(s: &Status) -> String {
    s.get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// A layer over a mock, the mock's handle.
fn over<L>(layer: L) -> (L::Service, mock::Handle<Req, Response>)
where
    L: Layer<Mock<Req, Response>>,
{
    let (inner, handle) = mock::pair::<Req, Response>();
    (layer.layer(inner), handle)
}

#[test]
fn the_watch_is_the_streaming_method() {
    let streaming = streaming_methods(proto::FILE_DESCRIPTOR_SET);
    assert!(streaming.contains(STREAMING));
    assert!(!streaming.contains(UNARY));
}

#[tokio::test]
async fn route_refuses_unknown_services_and_marks_streaming_methods() {
    let service = "roaming.view.v1.ViewService";
    let upstreams = HashMap::from([(
        service.to_owned(),
        Upstream::new(service, &["http://127.0.0.1:9".to_owned()]).unwrap(),
    )]);
    let layer = RouteLayer::new(upstreams, HashSet::from([STREAMING.to_owned()]));
    let (svc, mut handle) = over(layer);

    let refused = svc
        .clone()
        .oneshot(request("/no.such.Service/Call"))
        .await
        .unwrap();
    assert_eq!(status(&refused).unwrap().code(), Code::Unimplemented);

    for (path, streaming) in [
        (STREAMING, true),
        ("/roaming.view.v1.ViewService/GetReservationView", false),
    ] {
        let call = tokio::spawn({
            let svc = svc.clone();
            async move { svc.oneshot(request(path)).await }
        });
        let (seen, reply) = handle.next_request().await.unwrap();
        let route = seen.extensions().get::<Route>().unwrap();
        assert_eq!(&*route.service, service);
        assert_eq!(route.streaming, streaming, "{path}");
        reply.send_response(ok());
        assert!(status(&call.await.unwrap().unwrap()).is_none());
    }
}

#[tokio::test]
async fn auth_refuses_a_call_without_a_token_before_the_upstream_sees_it() {
    let key = adapters_auth::SigningKey::generate().unwrap();
    let verifier = adapters_auth::Verifier::new(
        vec![adapters_auth::TrustedKey::of(&key)],
        &adapters_auth::Audience::default(),
    );
    let (svc, mut handle) = over(AuthLayer::new(verifier));
    let refused = svc.clone().oneshot(request(UNARY)).await.unwrap();
    let s = status(&refused).unwrap();
    assert_eq!(s.code(), Code::Unauthenticated);
    assert_eq!(reason_of(&s), proto::reasons::TOKEN_MISSING);
    // Nothing reached the inner service.
    assert!(
        tokio::time::timeout(Duration::from_millis(10), handle.next_request())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_rate_is_per_principal_with_a_retry_hint() {
    let (svc, mut handle) = over(PerPrincipalLayer::new(RateLimiter::new(0.001, 1)));
    let with = |who: &Principal| {
        let mut r = request(UNARY);
        r.extensions_mut().insert(who.clone());
        r
    };
    let id = |c: &str| domain_kernel::CustomerId::parse(c).unwrap();
    let (alice, bob) = (
        Principal::customer(&id("alice")),
        Principal::customer(&id("bob")),
    );

    let first = tokio::spawn({
        let svc = svc.clone();
        let r = with(&alice);
        async move { svc.oneshot(r).await }
    });
    handle.next_request().await.unwrap().1.send_response(ok());
    assert!(status(&first.await.unwrap().unwrap()).is_none());

    let refused = svc.clone().oneshot(with(&alice)).await.unwrap();
    let s = status(&refused).unwrap();
    assert_eq!(s.code(), Code::ResourceExhausted);
    assert_eq!(reason_of(&s), proto::reasons::RATE_LIMITED);
    assert!(s.get_error_details().retry_info().is_some());

    // Another caller has a bucket of their own.
    let other = tokio::spawn({
        let svc = svc.clone();
        let r = with(&bob);
        async move { svc.oneshot(r).await }
    });
    handle.next_request().await.unwrap().1.send_response(ok());
    assert!(status(&other.await.unwrap().unwrap()).is_none());
}

#[tokio::test]
async fn services_may_be_exempt_from_the_rate() {
    let layer = PerPrincipalLayer::new(RateLimiter::new(0.001, 1)).exempt_services();
    let (svc, mut handle) = over(layer);
    for _ in 0..3 {
        let mut r = request(UNARY);
        r.extensions_mut().insert(Principal::service("rental"));
        let call = tokio::spawn({
            let svc = svc.clone();
            async move { svc.oneshot(r).await }
        });
        handle.next_request().await.unwrap().1.send_response(ok());
        assert!(status(&call.await.unwrap().unwrap()).is_none());
    }
}

#[tokio::test]
async fn concurrency_refuses_at_once_over_the_limit_but_not_streams() {
    let (svc, mut handle) = over(ConcurrencyLayer::new(1));
    let held = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(routed(UNARY, false)).await }
    });
    let (_, first) = handle.next_request().await.unwrap();

    let refused = svc.clone().oneshot(routed(UNARY, false)).await.unwrap();
    let s = status(&refused).unwrap();
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(reason_of(&s), proto::reasons::OVERLOADED);
    assert!(s.get_error_details().retry_info().is_some());

    // A stream is not counted against the limit.
    let stream = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(routed(STREAMING, true)).await }
    });
    handle.next_request().await.unwrap().1.send_response(ok());
    assert!(status(&stream.await.unwrap().unwrap()).is_none());

    // The permit comes back with the answer.
    first.send_response(ok());
    assert!(status(&held.await.unwrap().unwrap()).is_none());
    let again = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(routed(UNARY, false)).await }
    });
    handle.next_request().await.unwrap().1.send_response(ok());
    assert!(status(&again.await.unwrap().unwrap()).is_none());
}

fn admission(slots: usize) -> AdmissionLayer {
    AdmissionLayer::new(
        [(
            "roaming.reservation.v1.ReservationService".to_owned(),
            slots,
        )],
        Duration::from_millis(100),
    )
}

fn call_in_background(
    svc: &Admission<Mock<Req, Response>>,
    r: Req,
) -> tokio::task::JoinHandle<Result<Response, Box<dyn std::error::Error + Send + Sync>>> {
    let svc = svc.clone();
    tokio::spawn(async move { svc.oneshot(r).await })
}

#[tokio::test(start_paused = true)]
async fn admission_queues_a_call_over_the_limit_for_its_wait_then_refuses() {
    let (svc, mut handle) = over(admission(1));
    let held = call_in_background(&svc, routed(UNARY, false));
    let (_, first) = handle.next_request().await.unwrap();

    // The second waits its turn and goes in when the first is answered
    // within the wait.
    let second = call_in_background(&svc, routed(UNARY, false));
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(!second.is_finished(), "a call over the limit waits");
    first.send_response(ok());
    assert!(status(&held.await.unwrap().unwrap()).is_none());
    let (_, second_upstream) = handle.next_request().await.unwrap();

    // A third waits the whole 100 ms while the second is held: refused,
    // with a reason and a RetryInfo, without reaching the service.
    let started = tokio::time::Instant::now();
    let refused = svc.clone().oneshot(routed(UNARY, false)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    let s = status(&refused).unwrap();
    assert_eq!(s.code(), Code::Unavailable);
    assert_eq!(reason_of(&s), proto::reasons::OVERLOADED);
    assert!(s.get_error_details().retry_info().is_some());

    // Streams are not counted, and the second still completes.
    let stream = call_in_background(&svc, routed(STREAMING, true));
    handle.next_request().await.unwrap().1.send_response(ok());
    assert!(status(&stream.await.unwrap().unwrap()).is_none());
    second_upstream.send_response(ok());
    assert!(status(&second.await.unwrap().unwrap()).is_none());
}

#[tokio::test(start_paused = true)]
async fn admission_leaves_services_without_a_limit_alone() {
    let (svc, mut handle) = over(AdmissionLayer::new([], Duration::from_millis(100)));
    let first = call_in_background(&svc, routed(UNARY, false));
    let second = call_in_background(&svc, routed(UNARY, false));
    let (_, a) = handle.next_request().await.unwrap();
    let (_, b) = handle.next_request().await.unwrap();
    a.send_response(ok());
    b.send_response(ok());
    assert!(status(&first.await.unwrap().unwrap()).is_none());
    assert!(status(&second.await.unwrap().unwrap()).is_none());
}

fn body_request(body: axum::body::Body) -> http::Request<axum::body::Body> {
    http::Request::builder()
        .uri(format!("http://gateway{UNARY}"))
        .body(body)
        .unwrap()
}

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
    reply.send_response(ok());
    assert!(status(&call.await.unwrap().unwrap()).is_none());

    let large = axum::body::Body::from(vec![0u8; 5 + 9]);
    let refused = svc.clone().oneshot(body_request(large)).await.unwrap();
    let s = status(&refused).unwrap();
    assert_eq!(s.code(), Code::ResourceExhausted);
    assert_eq!(reason_of(&s), proto::reasons::MESSAGE_TOO_LARGE);
}

#[tokio::test(start_paused = true)]
async fn a_trickling_body_is_cut_off() {
    let (svc, _handle) = over(BodyLimitLayer::new(8, Duration::from_secs(5)));
    // A body that never ends.
    let never =
        axum::body::Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
    let refused = svc.clone().oneshot(body_request(never)).await.unwrap();
    assert_eq!(status(&refused).unwrap().code(), Code::DeadlineExceeded);
}

#[tokio::test]
async fn a_trickling_body_holds_no_admission_slot() {
    // The stack's order: the body is read before a slot is taken.
    let (inner, mut handle) = mock::pair::<Req, Response>();
    let svc = ServiceBuilder::new()
        .layer(BodyLimitLayer::new(64, Duration::from_secs(5)))
        .layer(admission(1))
        .service(inner);
    let with_route = |body| {
        let mut r = body_request(body);
        r.extensions_mut().insert(
            routed(UNARY, false)
                .extensions()
                .get::<Route>()
                .cloned()
                .unwrap(),
        );
        r
    };
    let never =
        axum::body::Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
    let trickling = tokio::spawn(svc.clone().oneshot(with_route(never)));
    tokio::task::yield_now().await;
    // The one slot is free: a whole call goes in at once, not after a wait.
    let call = tokio::spawn(
        svc.clone()
            .oneshot(with_route(axum::body::Body::from(vec![0u8; 5 + 8]))),
    );
    let (_, reply) = tokio::time::timeout(Duration::from_millis(50), handle.next_request())
        .await
        .expect("a whole call was admitted while another trickled")
        .unwrap();
    reply.send_response(ok());
    assert!(status(&call.await.unwrap().unwrap()).is_none());
    trickling.abort();
}

#[tokio::test(start_paused = true)]
async fn unary_calls_without_a_deadline_get_the_default_one() {
    let (svc, mut handle) = over(DefaultDeadlineLayer::new(Duration::from_millis(1500)));
    let call = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(routed(UNARY, false)).await }
    });
    let (seen, _never_answered) = handle.next_request().await.unwrap();
    assert_eq!(seen.headers()["grpc-timeout"], "1500m");
    // The upstream does not answer: the gateway does, at the deadline.
    let answered = call.await.unwrap().unwrap();
    assert_eq!(status(&answered).unwrap().code(), Code::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn a_callers_deadline_and_streams_are_left_alone() {
    let (svc, mut handle) = over(DefaultDeadlineLayer::new(Duration::from_millis(1500)));
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

#[tokio::test]
async fn a_layer_is_ready_exactly_when_its_inner_service_is() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Response, _>(ConcurrencyLayer::new(1));
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
}

#[test]
fn an_upstream_deadline_expiry_answers_as_the_gateways_own() {
    // What a tonic server answers when the `grpc-timeout` it was given ran out.
    let expired = super::answer(&Status::cancelled(tonic::TimeoutExpired(()).to_string()));
    let mapped = super::deadline_passed_upstream(expired);
    assert_eq!(status(&mapped).unwrap().code(), Code::DeadlineExceeded);
    // A call the upstream cancelled for another reason, and any other
    // answer, pass unchanged.
    let cancelled = super::answer(&Status::cancelled("the client went away"));
    let passed = super::deadline_passed_upstream(cancelled);
    assert_eq!(status(&passed).unwrap().code(), Code::Cancelled);
    let unavailable = super::answer(&Status::unavailable("down"));
    assert_eq!(
        status(&super::deadline_passed_upstream(unavailable))
            .unwrap()
            .code(),
        Code::Unavailable
    );
    assert!(status(&super::deadline_passed_upstream(ok())).is_none());
}
