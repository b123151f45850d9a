//! The gateway's public port speaks gRPC-web over HTTP/1.1 (what a browser
//! can do) and serves the console's files, on a real embedded mesh.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf as _, Bytes};
use http::{HeaderMap, Method, Request, StatusCode, Version, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message as _;
use proto::reservation::reservation_service_client::ReservationServiceClient;
use proto::view::view_service_client::ViewServiceClient;
use proto::{reservation as pb, view as pv};
use support::{ALICE, TestMesh, req, roaming_request};
use tonic_types::StatusExt as _;
use tonic_web::{GrpcWebClientLayer, GrpcWebClientService};

type WebChannel =
    GrpcWebClientService<Client<HttpConnector, tonic_web::GrpcWebCall<tonic::body::Body>>>;

/// A gRPC-web client over HTTP/1.1 only, as a browser without TLS has.
fn web_channel() -> WebChannel {
    let client = Client::builder(TokioExecutor::new()).build_http();
    tower::ServiceBuilder::new()
        .layer(GrpcWebClientLayer::new())
        .service(client)
}

fn origin(addr: SocketAddr) -> http::Uri {
    format!("http://{addr}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_web_unary_stream_and_refusal_details_pass_the_gateway() {
    let m = TestMesh::start_with(|s| {
        s.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let gw = m.mesh().gateway.addr;
    let mut reservation = ReservationServiceClient::with_origin(web_channel(), origin(gw));
    let mut view = ViewServiceClient::with_origin(web_channel(), origin(gw));

    // A unary call: reserve (authentication, limits, admission, forwarding).
    let reserved = reservation
        .reserve_roaming(req(ALICE, roaming_request("web-1", 3, 5)))
        .await
        .expect("reserve over gRPC-web")
        .into_inner()
        .reservation
        .unwrap();
    let id = reserved.reservation_id.clone();
    assert_eq!(reserved.status, pb::ReservationStatus::Reserved as i32);

    // A stream that delivers a change: watch (once the view has it), then
    // cancel, and the watch sees the cancellation arrive.
    support::view_reaches(&m, ALICE, &id, pb::ReservationStatus::Reserved).await;
    let mut watch = view
        .watch_reservation(req(
            ALICE,
            pv::WatchReservationRequest {
                reservation_id: id.clone(),
            },
        ))
        .await
        .expect("watch over gRPC-web")
        .into_inner();
    reservation
        .cancel_reservation(req(
            ALICE,
            pb::CancelReservationRequest {
                reservation_id: id.clone(),
                reason: "plans changed".into(),
            },
        ))
        .await
        .expect("cancel over gRPC-web");
    let canceled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let update = watch
                .message()
                .await
                .expect("the stream stays healthy")
                .expect("the stream stays open until the change");
            let v = update.reservation.unwrap();
            assert_eq!(v.reservation_id, id);
            if v.status == pb::ReservationStatus::Canceled as i32 {
                break v;
            }
        }
    })
    .await
    .expect("the cancellation reaches the watch");
    assert_eq!(canceled.status, pb::ReservationStatus::Canceled as i32);

    // Refusals keep their details: ErrorInfo's reason (a declined card) and
    // BadRequest's fields (bad input).
    let mut declined = roaming_request("web-3", 3, 5);
    declined.payment.as_mut().unwrap().card_number = "4000000000000002".into();
    let refused = reservation
        .reserve_roaming(req(ALICE, declined))
        .await
        .expect_err("a declined card is refused");
    let info = refused
        .get_details_error_info()
        .expect("ErrorInfo survives gRPC-web");
    assert_eq!(info.reason, proto::reasons::PAYMENT_DECLINED, "{refused:?}");
    let mut bad = roaming_request("web-2", 3, 5);
    bad.device_model = String::new();
    bad.country = "Japan".into();
    let refused = reservation
        .reserve_roaming(req(ALICE, bad))
        .await
        .expect_err("bad input is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let fields: Vec<String> = refused
        .get_details_bad_request()
        .expect("BadRequest survives gRPC-web")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert!(fields.contains(&"device_model".to_owned()), "{fields:?}");
    assert!(fields.contains(&"country".to_owned()), "{fields:?}");

    // Without a token: refused at the gateway, the same as gRPC.
    let anonymous = reservation
        .quote_roaming(tonic::Request::new(pb::QuoteRoamingRequest::default()))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    // Counted by the gateway under the gRPC method's own label (tonic-web
    // translates before the trace layer), refusals included. These methods
    // and codes are called over gRPC-web by this test only (the metrics are
    // per process), so the counts are exact.
    let admin = m.mesh().admin.as_ref().unwrap().addr;
    let series = |method: &str, code: tonic::Code| {
        format!(
            "roaming_rpc_server_requests_total{{component=\"gateway\",grpc_code=\"{}\",rpc_method=\"/{method}\"}} ",
            code as i32
        )
    };
    let expected = [
        (
            "roaming.reservation.v1.ReservationService/ReserveRoaming",
            tonic::Code::Ok,
        ),
        (
            "roaming.reservation.v1.ReservationService/ReserveRoaming",
            tonic::Code::FailedPrecondition,
        ),
        (
            "roaming.reservation.v1.ReservationService/ReserveRoaming",
            tonic::Code::InvalidArgument,
        ),
        (
            "roaming.reservation.v1.ReservationService/CancelReservation",
            tonic::Code::Ok,
        ),
        (
            "roaming.reservation.v1.ReservationService/QuoteRoaming",
            tonic::Code::Unauthenticated,
        ),
    ]
    .map(|(method, code)| series(method, code));
    let metrics = Request::builder()
        .uri("/metrics")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, text) = http1(admin, metrics).await;
    let text = String::from_utf8(text.to_vec()).unwrap();
    for series in &expected {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok());
        assert_eq!(value, Some(1.0), "{series}\n{text}");
    }
    m.stop().await;
}

/// One raw HTTP/1.1 request to the gateway.
async fn http1(addr: SocketAddr, request: Request<Full<Bytes>>) -> (http::response::Parts, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let (mut request, body) = request.into_parts();
    request.uri = format!("http://{addr}{}", request.uri).parse().unwrap();
    let response = client
        .request(Request::from_parts(request, body))
        .await
        .expect("the gateway answers HTTP/1.1");
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

/// Splits a gRPC-web body into its message frames and its trailers.
fn frames(mut body: Bytes) -> (Vec<Bytes>, HeaderMap) {
    let mut messages = Vec::new();
    let mut trailers = HeaderMap::new();
    while body.has_remaining() {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 == 0 {
            messages.push(payload);
        } else {
            for line in std::str::from_utf8(&payload).unwrap().split("\r\n") {
                if let Some((k, v)) = line.split_once(':') {
                    trailers.insert(
                        http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                        v.trim().parse().unwrap(),
                    );
                }
            }
        }
    }
    (messages, trailers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_web_text_mode_answers_in_base64_with_trailers_in_the_body() {
    let m = TestMesh::start().await;
    let gw = m.mesh().gateway.addr;
    let message = pb::ListDeviceOffersRequest::default().encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&message);
    let body = base64::engine::general_purpose::STANDARD.encode(&framed);
    let token = support::token(ALICE);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/roaming.reservation.v1.ReservationService/ListDeviceOffers")
        .header(header::CONTENT_TYPE, "application/grpc-web-text")
        .header(header::ACCEPT, "application/grpc-web-text")
        .header("x-grpc-web", "1")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (parts, body) = http1(gw, request).await;
    assert_eq!(parts.version, Version::HTTP_11);
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(
        parts.headers[header::CONTENT_TYPE],
        "application/grpc-web-text+proto"
    );
    // Each frame is encoded on its own (with padding), so the body is
    // several base64 runs: decode it four characters at a time.
    let decoded: Vec<u8> = body
        .chunks(4)
        .flat_map(|group| {
            base64::engine::general_purpose::STANDARD
                .decode(group)
                .expect("a base64 body")
        })
        .collect();
    let (messages, trailers) = frames(Bytes::from(decoded));
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    let offers = pb::ListDeviceOffersResponse::decode(messages[0].clone()).unwrap();
    assert!(
        offers.offers.iter().any(|o| o.device_model == "egg-lte"),
        "{offers:?}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_is_served_over_http1_with_its_security_headers() {
    let m = TestMesh::start().await;
    let gw = m.mesh().gateway.addr;
    let get = |path: &str| {
        Request::builder()
            .method(Method::GET)
            .uri(path)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (index, html) = http1(gw, get("/")).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(
        index.headers[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert_eq!(index.headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(index.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let csp = index.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    let html = std::str::from_utf8(&html).unwrap();
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("index.html names its script");
    let (asset, js) = http1(gw, get(script)).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert!(!js.is_empty());
    assert_eq!(
        asset.headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        asset.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    let (missing, _) = http1(gw, get("/nothing-here")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Not same-origin, no CORS: a preflight from elsewhere gets no grant.
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/roaming.reservation.v1.ReservationService/ListDeviceOffers")
        .header(header::ORIGIN, "https://elsewhere.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (denied, _) = http1(gw, preflight).await;
    assert!(
        denied
            .headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none(),
        "{denied:?}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_allowed_origin_gets_cors_that_exposes_the_grpc_status() {
    let m = TestMesh::start_with(|s| {
        s.gateway.allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let gw = m.mesh().gateway.addr;
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/roaming.view.v1.ViewService/ListMyReservations")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout",
            )
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (granted, _) = http1(gw, preflight("https://app.example")).await;
    assert_eq!(
        granted.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    let allowed = granted.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
    ] {
        assert!(allowed.contains(h), "{allowed}");
    }
    let (other, _) = http1(gw, preflight("https://evil.example")).await;
    assert!(
        other
            .headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );

    // The real call from the allowed origin exposes the gRPC status headers.
    let token = support::token(ALICE);
    let call = Request::builder()
        .method(Method::POST)
        .uri("/roaming.view.v1.ViewService/ListMyReservations")
        .header(header::ORIGIN, "https://app.example")
        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let (answer, body) = http1(gw, call).await;
    assert_eq!(answer.status, StatusCode::OK);
    let exposed = answer.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    let (_, trailers) = frames(body);
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    m.stop().await;
}
