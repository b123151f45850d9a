//! The admin port's Prometheus text after some traffic: RPC counters and
//! latency histograms with their labels and exact counts, business counters,
//! the outbox gauges. This binary's only test (the metrics are per process).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::time::Duration;

use proto::reservation as pb;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

async fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the series whose line starts with `series` (name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_text_has_rpc_counters_and_histograms_with_their_labels() {
    let m = TestMesh::start_with(|s| {
        s.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let admin = m.mesh().admin.as_ref().unwrap().addr;
    let mut reservations = m.reservation().await;
    for i in 0..3 {
        reservations
            .reserve_roaming(req(ALICE, roaming_request(&format!("m-{i}"), 3, 4)))
            .await
            .unwrap();
    }
    let mut declined = roaming_request("m-declined", 5, 6);
    declined.payment = Some(card_number("4000000000000002"));
    let e = reservations
        .reserve_roaming(req(ALICE, declined))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "PAYMENT_DECLINED");
    let e = reservations
        .get_reservation(req(
            BOB,
            pb::GetReservationRequest {
                reservation_id: "nope".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // A watch that another customer may not see (answered at once, trailers
    // only), and one the client hangs up on after the first message.
    let first = m
        .view()
        .await
        .list_my_reservations(req(
            ALICE,
            proto::view::ListMyReservationsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .reservations
        .into_iter()
        .next()
        .unwrap()
        .reservation_id;
    let view = m.view().await;
    let watch = |who| {
        let id = first.clone();
        let mut view = view.clone();
        async move {
            view.watch_reservation(req(
                who,
                proto::view::WatchReservationRequest { reservation_id: id },
            ))
            .await
        }
    };
    assert_eq!(watch(BOB).await.unwrap_err().code(), Code::NotFound);
    let mut stream = watch(ALICE).await.unwrap().into_inner();
    stream.message().await.unwrap().unwrap();
    drop(stream);
    // The relay reports its gauges once a second, and the server counts the
    // stream once it saw it go away: scrape until both are there.
    let ended_watch = "roaming_rpc_server_requests_total{component=\"view\",grpc_code=\"1\",rpc_method=\"/roaming.view.v1.ViewService/WatchReservation\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(admin, "/metrics").await;
        let settled = value(&text, "roaming_outbox_backlog{database=\"reservation\"}").is_some()
            && value(&text, ended_watch).is_some();
        if settled || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reserve = "/roaming.reservation.v1.ReservationService/ReserveRoaming";
    for component in ["gateway", "reservation"] {
        let ok = format!(
            "roaming_rpc_server_requests_total{{component=\"{component}\",grpc_code=\"0\",rpc_method=\"{reserve}\"}}"
        );
        let failed = format!(
            "roaming_rpc_server_requests_total{{component=\"{component}\",grpc_code=\"9\",rpc_method=\"{reserve}\"}}"
        );
        assert_eq!(value(&text, &ok), Some(3.0), "{ok}\n{text}");
        assert_eq!(
            value(&text, &failed),
            Some(1.0),
            "{failed} (FAILED_PRECONDITION)\n{text}"
        );
        let count = format!(
            "roaming_rpc_server_duration_seconds_count{{component=\"{component}\",grpc_code=\"0\",rpc_method=\"{reserve}\"}}"
        );
        assert_eq!(value(&text, &count), Some(3.0), "{count}");
        let inf = format!(
            "roaming_rpc_server_duration_seconds_bucket{{component=\"{component}\",grpc_code=\"0\",rpc_method=\"{reserve}\",le=\"+Inf\"}}"
        );
        assert_eq!(value(&text, &inf), Some(3.0), "{inf}");
    }
    let invalid = "roaming_rpc_server_requests_total{component=\"reservation\",grpc_code=\"3\",rpc_method=\"/roaming.reservation.v1.ReservationService/GetReservation\"}";
    assert_eq!(value(&text, invalid), Some(1.0), "{invalid}");
    // Payment saw four Pay calls: three captured, one declined (answered OK).
    let pay = "roaming_rpc_server_requests_total{component=\"payment\",grpc_code=\"0\",rpc_method=\"/roaming.payment.v1.PaymentService/Pay\"}";
    assert_eq!(value(&text, pay), Some(4.0), "{pay}");
    assert!(text.contains("# TYPE roaming_rpc_server_duration_seconds histogram"));
    assert_eq!(
        value(
            &text,
            "roaming_reservations_total{kind=\"roaming\",outcome=\"reserved\",reason=\"\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            "roaming_reservations_total{kind=\"roaming\",outcome=\"rejected\",reason=\"PAYMENT_DECLINED\"}"
        ),
        Some(1.0)
    );
    assert!(
        value(&text, "roaming_outbox_backlog{database=\"reservation\"}").is_some(),
        "outbox gauge\n{text}"
    );
    // Streams are counted when they end, with the status they ended with.
    let watch = "rpc_method=\"/roaming.view.v1.ViewService/WatchReservation\"";
    for (code, expected) in [("5", 1.0), ("1", 1.0)] {
        let series = format!(
            "roaming_rpc_server_requests_total{{component=\"view\",grpc_code=\"{code}\",{watch}}}"
        );
        assert_eq!(value(&text, &series), Some(expected), "{series}\n{text}");
    }
    // Unknown paths (anyone may send them, no token needed to be refused)
    // are one series, never a series per raw path (issue 17, finding 4).
    let gateway =
        tonic::transport::Channel::from_shared(format!("http://{}", m.mesh().gateway.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
    for i in 0..30 {
        let mut grpc = tonic::client::Grpc::new(gateway.clone());
        grpc.ready().await.unwrap();
        let path = format!("/nope.v1.Attack/Path{i}").parse().unwrap();
        let refused = grpc
            .unary::<(), (), _>(
                tonic::Request::new(()),
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_ne!(refused.code(), Code::Ok);
    }
    let text = scrape(admin, "/metrics").await;
    assert!(
        !text.contains("/nope.v1"),
        "a raw path became a label\n{text}"
    );
    assert!(!text.contains("otel.metric.overflow"), "{text}");
    let unknown: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("roaming_rpc_server_requests_total{component=\"gateway\"")
                && l.contains("rpc_method=\"unknown\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(unknown, 30, "{text}");
    assert!(scrape(admin, "/healthz").await.ends_with("ok\n"));
    m.stop().await;
}
