//! One reservation, one trace: spans from the gateway, reservation, payment,
//! the outbox relay, rental and view share a trace id, with the consumer spans
//! children of the relay's publish spans across the bus hop, on the embedded
//! bus and on NATS JetStream (a nats-server this test starts). Spans go to an
//! in-memory exporter (this test binary's only test: the subscriber is global).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::time::Duration;

use adapters_bus::testing::NatsServer;
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use proto::reservation::ReservationStatus as S;
use support::*;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_reservation_is_one_trace_across_grpc_and_the_bus() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    adapters_telemetry::propagation::install();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .init();

    let m = TestMesh::start().await;
    one_trace(
        &m,
        &provider,
        &exporter,
        "traced-embedded",
        "roaming.embedded",
    )
    .await;
    m.stop().await;

    let nats = NatsServer::start().expect("nats-server");
    let m = TestMesh::start_with(|s| {
        s.nats_url = Some(nats.url());
    })
    .await;
    one_trace(&m, &provider, &exporter, "traced-nats", "nats").await;
    m.stop().await;
}

async fn one_trace(
    m: &TestMesh,
    provider: &SdkTracerProvider,
    exporter: &InMemorySpanExporter,
    request_id: &str,
    messaging_system: &str,
) {
    let reservation = m
        .reservation()
        .await
        .reserve_roaming(req(ALICE, roaming_request(request_id, 3, 4)))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let id = reservation.reservation_id;
    view_reaches(m, ALICE, &id, S::RentalAccepted).await;
    // The view's span of the last event ends a moment after its commit is
    // visible: wait for that span, the last one this test looks at.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let spans = loop {
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let view_applied_rental = spans.iter().any(|s| {
            s.name.starts_with("roaming.rental.") && attr(s, "consumer").as_deref() == Some("view")
        });
        if view_applied_rental || tokio::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    exporter.reset();

    let root = spans
        .iter()
        .find(|s| {
            attr(s, "component").as_deref() == Some("gateway")
                && s.span_kind == opentelemetry::trace::SpanKind::Server
                && s.name.ends_with("/ReserveRoaming")
        })
        .expect("the gateway's span of ReserveRoaming");
    let trace = root.span_context.trace_id();
    let in_trace: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect();
    let find = |what: &str, pred: &dyn Fn(&SpanData) -> bool| -> &SpanData {
        in_trace
            .iter()
            .copied()
            .find(|s| pred(s))
            .unwrap_or_else(|| {
                let names: Vec<_> = in_trace
                    .iter()
                    .map(|s| {
                        (
                            s.name.to_string(),
                            attr(s, "component"),
                            attr(s, "consumer"),
                        )
                    })
                    .collect();
                panic!("no {what} in the trace; it has {names:#?}")
            })
    };

    assert_eq!(
        root.parent_span_id,
        SpanId::INVALID,
        "the gateway starts the trace"
    );
    let reserve = find("reservation's server span", &|s| {
        attr(s, "component").as_deref() == Some("reservation")
            && s.name.ends_with("/ReserveRoaming")
    });
    // The gateway's forwarding hop: a client span between the two servers.
    let forward = find("the gateway's client span", &|s| {
        attr(s, "component").as_deref() == Some("gateway")
            && s.span_kind == opentelemetry::trace::SpanKind::Client
            && s.parent_span_id == root.span_context.span_id()
    });
    assert_eq!(reserve.parent_span_id, forward.span_context.span_id());
    // OpenTelemetry's RPC conventions; the status code an integer.
    assert_eq!(attr(reserve, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attr(reserve, "rpc.service").as_deref(),
        Some("roaming.reservation.v1.ReservationService")
    );
    assert_eq!(
        attr(reserve, "rpc.method").as_deref(),
        Some("ReserveRoaming")
    );
    assert!(
        reserve
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "rpc.grpc.status_code"
                && kv.value == opentelemetry::Value::I64(0)),
        "rpc.grpc.status_code 0 as an integer: {:?}",
        reserve.attributes
    );
    assert_eq!(
        attr(reserve, "reservation_id").as_deref(),
        Some(id.as_str())
    );
    let client = find("reservation's call to Pay", &|s| {
        s.name.ends_with("/Pay")
            && attr(s, "otel.kind").is_none()
            && s.span_kind == opentelemetry::trace::SpanKind::Client
    });
    assert_eq!(client.parent_span_id, reserve.span_context.span_id());
    assert_eq!(attr(client, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(attr(client, "rpc.method").as_deref(), Some("Pay"));
    assert_eq!(
        attr(client, "rpc.service").as_deref(),
        Some("roaming.payment.v1.PaymentService")
    );
    let pay = find("payment's server span", &|s| {
        attr(s, "component").as_deref() == Some("payment") && s.name.ends_with("/Pay")
    });
    assert_eq!(pay.parent_span_id, client.span_context.span_id());

    let published = find("the relay's publish of reservation.reserved", &|s| {
        s.name == "roaming.reservation.reserved"
            && s.span_kind == opentelemetry::trace::SpanKind::Producer
    });
    assert_eq!(
        published.parent_span_id,
        reserve.span_context.span_id(),
        "the outbox kept the writing call's context"
    );
    // OpenTelemetry's messaging conventions.
    assert_eq!(
        attr(published, "messaging.system").as_deref(),
        Some(messaging_system)
    );
    assert_eq!(
        attr(published, "messaging.destination.name").as_deref(),
        Some("roaming.reservation.reserved")
    );
    assert_eq!(
        attr(published, "messaging.operation.type").as_deref(),
        Some("send")
    );
    for consumer in ["rental", "view"] {
        let handled = find(&format!("{consumer} handling reservation.reserved"), &|s| {
            s.name == "roaming.reservation.reserved"
                && attr(s, "consumer").as_deref() == Some(consumer)
        });
        assert_eq!(
            handled.parent_span_id,
            published.span_context.span_id(),
            "{consumer}'s span is a child of the publish, across the bus"
        );
        assert_eq!(
            attr(handled, "reservation_id").as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            attr(handled, "messaging.operation.type").as_deref(),
            Some("process")
        );
        assert_eq!(
            attr(handled, "messaging.system").as_deref(),
            Some(messaging_system)
        );
    }
    // Rental's acceptance continues the same trace, and the view applies it.
    let rental_handled = find("rental handling", &|s| {
        s.name == "roaming.reservation.reserved" && attr(s, "consumer").as_deref() == Some("rental")
    });
    let accepted = find("the publish of rental.accepted", &|s| {
        s.name.starts_with("roaming.rental.")
            && s.span_kind == opentelemetry::trace::SpanKind::Producer
    });
    assert_eq!(
        accepted.parent_span_id,
        rental_handled.span_context.span_id()
    );
    find("the view applying the rental event", &|s| {
        s.name == accepted.name && attr(s, "consumer").as_deref() == Some("view")
    });
}
