//! The stack as a whole (what its order guarantees, over a `tower-test`
//! channel), the layers it borrows from `adapters-auth` in front of a mock,
//! and what every layer of its own shares: readiness is the inner service's.
//! Each of the gateway's own layers is tested in its file.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::task::Poll;
use std::time::Duration;

use adapters_auth::rate::{PerPrincipalLayer, RateLimiter};
use adapters_auth::{Audience, AuthLayer, Issuer, SigningKey, TrustedKey, Verifier};
use domain_kernel::Principal;
use http_body_util::BodyExt as _;
use tokio::time::Instant;
use tonic::Code;
use tonic_types::StatusExt as _;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt as _};
use tower_test::mock::{self, Handle, Mock};

use super::testing::{
    Req, SERVICE, UNARY, body_request, ok, over, reason_of, request, status, trickling,
};
use super::{
    AdmissionLayer, BodyLimitLayer, Collected, ConcurrencyLayer, DefaultDeadlineLayer,
    FairShareLayer, Incoming, Outgoing, PropagateLayer, Response, RouteLayer, StackConfig, stack,
    streaming_methods,
};

// --- the stack -----------------------------------------------------------------

/// The gateway's stack in front of one service, [`SERVICE`], whose channel
/// is a mock; an issuer of tokens the stack accepts.
fn gateway() -> (
    BoxCloneSyncService<Incoming, Response, Infallible>,
    Handle<Outgoing, Response>,
    Issuer,
) {
    let key = SigningKey::generate().unwrap();
    let verifier = Verifier::new(vec![TrustedKey::of(&key)], &Audience::default());
    let (channel, handle) = mock::pair::<Outgoing, Response>();
    let stack = stack(StackConfig {
        upstreams: HashMap::from([(SERVICE.to_owned(), channel)]),
        streaming: streaming_methods(proto::FILE_DESCRIPTOR_SET),
        auth: AuthLayer::new(verifier),
        rate_per_second: 1000.0,
        burst: 1000,
        max_concurrent_calls: 16,
        max_calls_per_principal: 4,
        admission: AdmissionLayer::new([(SERVICE.to_owned(), 1)], Duration::from_millis(100)),
        max_message_bytes: 64,
        request_body_timeout: BODY_TIMEOUT,
        default_deadline: Duration::from_millis(1500),
        max_deadline: Duration::from_mins(1),
    });
    let issuer = Issuer::new(key, Audience::default(), Duration::from_mins(5));
    (stack, handle, issuer)
}

/// How long the stack waits for a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(1);

/// A call to [`UNARY`] with `body`, carrying a token of `issuer`'s for alice.
fn signed(issuer: &Issuer, body: axum::body::Body) -> Incoming {
    signed_as(issuer, "alice", body)
}

/// A call to [`UNARY`] with `body`, carrying a token of `issuer`'s for `who`.
fn signed_as(issuer: &Issuer, who: &str, body: axum::body::Body) -> Incoming {
    let id = domain_kernel::CustomerId::parse(who).unwrap();
    let token = issuer.issue(&Principal::customer(&id)).unwrap();
    let mut r = body_request(body);
    r.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// One gRPC frame: uncompressed, 8 bytes of message.
const MESSAGE: [u8; 13] = [0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];

fn message() -> axum::body::Body {
    axum::body::Body::from(MESSAGE.to_vec())
}

#[tokio::test]
async fn a_call_crosses_every_layer_to_its_services_channel() {
    let (gateway, mut handle, issuer) = gateway();
    let incoming = signed(&issuer, message());
    let authorization = incoming.headers()["authorization"].clone();
    let call = tokio::spawn(gateway.clone().oneshot(incoming));
    let (seen, reply) = handle.next_request().await.unwrap();
    assert_eq!(seen.uri().path(), UNARY);
    // The service checks the token again, and gets the default deadline.
    assert_eq!(seen.headers()["authorization"], authorization);
    assert_eq!(seen.headers()["grpc-timeout"], "1500m");
    let body = seen.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), MESSAGE.as_slice());
    reply.send_response(ok());
    assert!(status(&call.await.unwrap().unwrap()).is_none());
}

#[tokio::test]
async fn the_callers_deadline_reaches_the_service() {
    let (gateway, mut handle, issuer) = gateway();
    let mut incoming = signed(&issuer, message());
    incoming
        .headers_mut()
        .insert("grpc-timeout", "250m".parse().unwrap());
    let call = tokio::spawn(gateway.clone().oneshot(incoming));
    let (seen, reply) = handle.next_request().await.unwrap();
    assert_eq!(seen.headers()["grpc-timeout"], "250m");
    reply.send_response(ok());
    assert!(status(&call.await.unwrap().unwrap()).is_none());
}

#[tokio::test]
async fn an_unknown_service_is_unimplemented_whoever_asks() {
    let (gateway, mut handle, issuer) = gateway();
    let anonymous = |path: &str| {
        http::Request::builder()
            .uri(format!("http://gateway{path}"))
            .body(message())
            .unwrap()
    };
    // The route is found before the token is checked.
    let unknown = gateway
        .clone()
        .oneshot(anonymous("/no.such.Service/Call"))
        .await
        .unwrap();
    assert_eq!(status(&unknown).unwrap().code(), Code::Unimplemented);
    let unauthenticated = gateway.clone().oneshot(anonymous(UNARY)).await.unwrap();
    assert_eq!(
        status(&unauthenticated).unwrap().code(),
        Code::Unauthenticated
    );
    let mut signed_unknown = signed(&issuer, message());
    *signed_unknown.uri_mut() = "http://gateway/no.such.Service/Call".parse().unwrap();
    let unknown = gateway.clone().oneshot(signed_unknown).await.unwrap();
    assert_eq!(status(&unknown).unwrap().code(), Code::Unimplemented);
    assert!(
        handle.poll_request().is_pending(),
        "nothing reached the service"
    );
}

#[tokio::test(start_paused = true)]
async fn a_trickling_body_holds_no_admission_slot() {
    // The service admits one call at a time, and the body is read before a
    // slot is taken.
    let (gateway, mut handle, issuer) = gateway();
    let started = Instant::now();
    let trickled = tokio::spawn(gateway.clone().oneshot(signed(&issuer, trickling())));
    tokio::task::yield_now().await;
    // The one slot is free: a whole call goes in at once, not after a wait.
    let call = tokio::spawn(gateway.clone().oneshot(signed(&issuer, message())));
    let (_, reply) = tokio::time::timeout(Duration::from_millis(50), handle.next_request())
        .await
        .expect("a whole call was admitted while another trickled")
        .unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    reply.send_response(ok());
    assert!(status(&call.await.unwrap().unwrap()).is_none());
    // The trickling call is cut off when the body's time is up, well before
    // the deadline.
    let cut = trickled.await.unwrap().unwrap();
    let s = status(&cut).unwrap();
    assert_eq!(s.code(), Code::Cancelled);
    assert_eq!(reason_of(&s), proto::reasons::REQUEST_BODY_TIMEOUT);
    assert_eq!(started.elapsed(), BODY_TIMEOUT);
    assert!(
        handle.poll_request().is_pending(),
        "it never reached the service"
    );
}

#[tokio::test(start_paused = true)]
async fn one_principal_trickling_bodies_cannot_take_anothers_places() {
    // Alice holds her whole share (4) with bodies that never complete, and
    // tries more: refused at once with her limit. The gateway's 16 places
    // stay free: Bob's call goes through while hers hang.
    let (gateway, mut handle, issuer) = gateway();
    let hanging: Vec<_> = (0..4)
        .map(|_| tokio::spawn(gateway.clone().oneshot(signed(&issuer, trickling()))))
        .collect();
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    let refused = gateway
        .clone()
        .oneshot(signed(&issuer, message()))
        .await
        .unwrap();
    let s = status(&refused).unwrap();
    assert_eq!(s.code(), Code::ResourceExhausted);
    assert_eq!(reason_of(&s), proto::reasons::IN_FLIGHT_LIMIT);
    assert!(s.get_error_details().retry_info().is_some());

    let bob = tokio::spawn(
        gateway
            .clone()
            .oneshot(signed_as(&issuer, "bob", message())),
    );
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_response(ok());
    assert!(status(&bob.await.unwrap().unwrap()).is_none());

    // Her bodies are cut at the body timeout, and her share is hers again.
    for h in hanging {
        assert_eq!(
            status(&h.await.unwrap().unwrap()).unwrap().code(),
            Code::Cancelled
        );
    }
    let again = tokio::spawn(gateway.clone().oneshot(signed(&issuer, message())));
    handle.next_request().await.unwrap().1.send_response(ok());
    assert!(status(&again.await.unwrap().unwrap()).is_none());
}

#[tokio::test]
async fn a_malformed_frame_or_timeout_is_invalid_argument_before_the_service() {
    let (gateway, mut handle, issuer) = gateway();
    // The compressed flag without grpc-encoding.
    let flagged = gateway
        .clone()
        .oneshot(signed(
            &issuer,
            axum::body::Body::from(vec![1, 0, 0, 0, 1, 7]),
        ))
        .await
        .unwrap();
    let s = status(&flagged).unwrap();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(reason_of(&s), proto::reasons::MALFORMED_FRAME);
    // A negative grpc-timeout.
    let mut negative = signed(&issuer, message());
    negative
        .headers_mut()
        .insert("grpc-timeout", "-1S".parse().unwrap());
    let s = status(&gateway.clone().oneshot(negative).await.unwrap()).unwrap();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(reason_of(&s), proto::reasons::INVALID_TIMEOUT);
    assert!(
        handle.poll_request().is_pending(),
        "nothing reached the service"
    );
}

// --- the layers borrowed from adapters-auth -------------------------------------

#[tokio::test]
async fn auth_refuses_a_call_without_a_token_before_the_upstream_sees_it() {
    let key = SigningKey::generate().unwrap();
    let verifier = Verifier::new(vec![TrustedKey::of(&key)], &Audience::default());
    let (svc, mut handle) = over(AuthLayer::new(verifier));
    let refused = svc.clone().oneshot(request(UNARY)).await.unwrap();
    let s = status(&refused).unwrap();
    assert_eq!(s.code(), Code::Unauthenticated);
    assert_eq!(reason_of(&s), proto::reasons::TOKEN_MISSING);
    // Nothing reached the inner service.
    assert!(handle.poll_request().is_pending());
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
    assert!(
        handle.poll_request().is_pending(),
        "refused before the inner service"
    );

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

// --- what every layer shares ------------------------------------------------------

/// `layer` over a mock taking `T` is ready, as a service of `R`, exactly when
/// the mock is: none applies back-pressure of its own, none hides the inner
/// service's.
fn ready_exactly_when_inner<L, T, R>(layer: L)
where
    L: Layer<Mock<T, Response>>,
    L::Service: Service<R>,
    <L::Service as Service<R>>::Error: std::fmt::Debug,
{
    let (mut svc, mut handle) = mock::spawn_layer::<T, Response, _>(layer);
    handle.allow(0);
    assert!(svc.poll_ready::<R>().is_pending());
    handle.allow(1);
    assert!(matches!(svc.poll_ready::<R>(), Poll::Ready(Ok(()))));
}

#[tokio::test]
async fn a_layer_is_ready_exactly_when_its_inner_service_is() {
    let routes = RouteLayer::new(HashSet::from([SERVICE.to_owned()]), HashSet::new());
    ready_exactly_when_inner::<_, Req, Req>(routes);
    ready_exactly_when_inner::<_, Req, Req>(FairShareLayer::new(1));
    ready_exactly_when_inner::<_, Req, Req>(ConcurrencyLayer::new(1));
    ready_exactly_when_inner::<_, Collected, Incoming>(BodyLimitLayer::new(
        8,
        Duration::from_secs(5),
    ));
    ready_exactly_when_inner::<_, Req, Req>(AdmissionLayer::new([], Duration::from_millis(100)));
    ready_exactly_when_inner::<_, Req, Req>(DefaultDeadlineLayer::new(
        Duration::from_secs(1),
        Duration::from_mins(1),
    ));
    ready_exactly_when_inner::<_, Req, Req>(PropagateLayer);
}
