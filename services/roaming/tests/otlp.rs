//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the mesh exports its spans over
//! OTLP/gRPC to a receiver this test runs (the `opentelemetry-proto` service
//! definitions over tonic, nothing of the mesh's own). A reservation, a
//! declined card, a hand-over and the return are driven through the gateway of
//! `roaming up` and of the distributed mode (five `roaming serve` processes on
//! PostgreSQL and NATS, and a gateway process), and the tree is checked: each
//! component under its own `service.name`, parents and kinds across every
//! hop, OpenTelemetry's RPC and messaging attributes, `reservation_id`, span
//! status ERROR where the conventions put it, the hand-over's link back to
//! the reservation's trace (and the return's), no orphan span, and no secret in any span.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adapters_store::testing::postgres_admin_url;
use mesh::{Distributed, Layout};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use proto::reservation::ReservationStatus as S;
use proto::{rental as pr, reservation as pb};
use support::*;

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// One received span with the resource it came under.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    resource: Vec<KeyValue>,
    span: Span,
}

fn text(v: Option<&AnyValue>) -> Option<String> {
    match v?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn find<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

impl Got {
    fn attr(&self, key: &str) -> Option<String> {
        text(find(&self.span.attributes, key))
    }

    fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }

    fn status(&self) -> StatusCode {
        self.span
            .status
            .as_ref()
            .and_then(|s| StatusCode::try_from(s.code).ok())
            .unwrap_or(StatusCode::Unset)
    }

    fn describe(&self) -> String {
        format!(
            "{} {} {:?} parent={} id={}",
            self.service,
            self.span.name,
            self.kind(),
            hex(&self.span.parent_span_id),
            hex(&self.span.span_id)
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Receiver {
    async fn start() -> (Self, SocketAddr) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(server);
        (receiver, addr)
    }

    fn spans(&self) -> Vec<Got> {
        let mut out = Vec::new();
        for request in self.0.lock().unwrap().iter() {
            for rs in &request.resource_spans {
                let resource = rs
                    .resource
                    .clone()
                    .map(|r| r.attributes)
                    .unwrap_or_default();
                let service = text(find(&resource, "service.name")).unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push(Got {
                            service: service.clone(),
                            resource: resource.clone(),
                            span: span.clone(),
                        });
                    }
                }
            }
        }
        out
    }
}

/// The settings both modes export with (a short batch delay: the test
/// waits for the spans).
const OTEL_ENV: [(&str, &str); 2] = [("OTEL_BSP_SCHEDULE_DELAY", "100"), ("RUST_LOG", "info")];

/// What the test did, to find in the spans.
struct Driven {
    reserved: String,
    declined: String,
    secrets: Vec<String>,
}

/// A reservation paid, one declined, and the first handed over at ICN-T1;
/// every call through the gateway at `gateway`.
async fn drive(gateway: SocketAddr) -> Driven {
    let c = Cluster {
        reservation: gateway,
        payment: gateway,
        rental: gateway,
        parking: gateway,
        view: gateway,
        tls: None,
    };
    let serial = "OTLP-EGG-1";
    let mut rental = c.rental().await;
    // One at the pickup booth, one where it is returned (a booth exists for
    // the catalog once a device is registered there).
    for (serial, booth) in [(serial, "ICN-T1"), ("OTLP-EGG-2", "GMP")] {
        rental
            .register_device(req(
                OPS,
                pr::RegisterDeviceRequest {
                    serial: serial.into(),
                    device_model: "egg-lte".into(),
                    booth: booth.into(),
                },
            ))
            .await
            .unwrap();
    }
    // The catalog learns of the device from an event: try until it has.
    let reservations = c.reservation().await;
    let mut attempt = 0;
    let reserved = eventually(Duration::from_secs(30), "a reservation", || {
        attempt += 1;
        let mut r = reservations.clone();
        let request_id = format!("otlp-{attempt}");
        async move {
            r.reserve_roaming(req(ALICE, roaming_request(&request_id, 0, 1)))
                .await
                .ok()
        }
    })
    .await
    .into_inner()
    .reservation
    .unwrap()
    .reservation_id;
    let declined = reservations
        .clone()
        .reserve_roaming(req(
            ALICE,
            pb::ReserveRoamingRequest {
                payment: Some(card_number("4000000000000002")),
                ..roaming_request("otlp-declined", 5, 6)
            },
        ))
        .await
        .expect_err("the test card declines");
    assert_eq!(reason(&declined), proto::reasons::PAYMENT_DECLINED);
    let declined = {
        use tonic_types::StatusExt as _;
        declined.get_details_error_info().unwrap().metadata["reservation_id"].clone()
    };

    view_reaches(&c, ALICE, &reserved, S::RentalAccepted).await;
    rental
        .hand_over_device(req(
            STAFF_T1,
            pr::HandOverDeviceRequest {
                reservation_id: reserved.clone(),
                serial: serial.into(),
            },
        ))
        .await
        .unwrap();
    view_reaches(&c, ALICE, &reserved, S::InUse).await;
    rental
        .return_device(req(
            STAFF_GMP,
            pr::ReturnDeviceRequest {
                reservation_id: reserved.clone(),
                booth: "GMP".into(),
            },
        ))
        .await
        .unwrap();
    Driven {
        reserved,
        declined,
        secrets: vec![
            card().card_number,
            "4000000000000002".to_owned(),
            token(ALICE),
            token(STAFF_T1),
            token(OPS),
        ],
    }
}

/// Waits until the spans of everything [`drive`] did have arrived.
async fn received(receiver: &Receiver, driven: &Driven) -> Vec<Got> {
    eventually(Duration::from_secs(30), "the hand-over's spans", || {
        let spans = receiver.spans();
        // Each process exports on its own schedule: wait for the last span
        // of every hop of the hand-over.
        let of = |service: &str, kind: SpanKind, name: &str| {
            spans.iter().any(|g| {
                g.service == service
                    && g.kind() == kind
                    && g.span.name.ends_with(name)
                    && g.attr("reservation_id").as_deref() == Some(driven.reserved.as_str())
            })
        };
        let done = of("view", SpanKind::Consumer, "roaming.rental.handed_over")
            && of("gateway", SpanKind::Server, "/HandOverDevice")
            && of("rental", SpanKind::Server, "/HandOverDevice")
            && of("reservation", SpanKind::Server, "/BeginUse")
            && of("rental", SpanKind::Server, "/ReturnDevice")
            && of("gateway", SpanKind::Server, "/ReturnDevice")
            && settled(&spans, driven);
        async move { done.then_some(spans) }
    })
    .await
}

/// Whether every span of every trace that names one of the driven
/// reservations has its parent among `spans` (a parent ends after its
/// children, and another process may export it a moment later). A parent
/// that never comes keeps this false: [`received`] then times out, and the
/// orphan is reported by [`assert_tree`] on the last look.
fn settled(spans: &[Got], driven: &Driven) -> bool {
    let ids = [driven.reserved.as_str(), driven.declined.as_str()];
    let traces: BTreeSet<&[u8]> = spans
        .iter()
        .filter(|g| {
            g.attr("reservation_id")
                .is_some_and(|r| ids.contains(&r.as_str()))
        })
        .map(|g| g.span.trace_id.as_slice())
        .collect();
    let known: BTreeSet<&[u8]> = spans.iter().map(|g| g.span.span_id.as_slice()).collect();
    spans
        .iter()
        .filter(|g| traces.contains(g.span.trace_id.as_slice()))
        .all(|g| {
            g.span.parent_span_id.is_empty() || known.contains(g.span.parent_span_id.as_slice())
        })
}

/// Everything the module docs promise, on `spans`.
fn assert_tree(spans: &[Got], driven: &Driven) {
    let id = driven.reserved.as_str();
    let by_id: HashMap<Vec<u8>, &Got> = spans.iter().map(|g| (g.span.span_id.clone(), g)).collect();
    let pick = |what: &str, pred: &dyn Fn(&Got) -> bool| -> &Got {
        spans.iter().find(|g| pred(g)).unwrap_or_else(|| {
            let all: Vec<String> = spans.iter().map(Got::describe).collect();
            panic!("no {what} among {all:#?}")
        })
    };
    let parent_of = |g: &Got| -> &Got {
        by_id
            .get(&g.span.parent_span_id)
            .copied()
            .unwrap_or_else(|| panic!("the parent of {} did not arrive", g.describe()))
    };
    let server = |service: &'static str, method: &'static str| {
        move |g: &Got| {
            g.service == service
                && g.kind() == SpanKind::Server
                && g.span.name.ends_with(&format!("/{method}"))
                && g.attr("reservation_id").as_deref() == Some(id)
        }
    };

    // Each component under its own name, with the resource's identity.
    let services: BTreeSet<&str> = spans.iter().map(|g| g.service.as_str()).collect();
    for s in ["gateway", "reservation", "payment", "rental", "view"] {
        assert!(services.contains(s), "{s} among {services:?}");
    }
    for g in spans {
        for key in [
            "service.version",
            "service.instance.id",
            "service.namespace",
        ] {
            assert!(
                find(&g.resource, key).is_some(),
                "{key} on the resource of {}",
                g.describe()
            );
        }
    }

    // The reservation: gateway server -> gateway client -> reservation
    // server -> its client Pay -> payment server; the relay's publish and
    // every consumer.
    let reserve_at_gateway = pick("the gateway's ReserveRoaming", &|g| {
        g.service == "gateway"
            && g.kind() == SpanKind::Server
            && g.span.name == "roaming.reservation.v1.ReservationService/ReserveRoaming"
            && g.attr("rpc.grpc.status_code").as_deref() == Some("0")
    });
    assert!(
        reserve_at_gateway.span.parent_span_id.is_empty(),
        "the gateway starts the reservation's trace"
    );
    let trace = reserve_at_gateway.span.trace_id.clone();
    let forward = pick("the gateway's client span", &|g| {
        g.service == "gateway"
            && g.kind() == SpanKind::Client
            && g.span.parent_span_id == reserve_at_gateway.span.span_id
    });
    assert_eq!(forward.attr("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        forward.attr("rpc.method").as_deref(),
        Some("ReserveRoaming")
    );
    assert_eq!(
        forward.attr("rpc.service").as_deref(),
        Some("roaming.reservation.v1.ReservationService")
    );
    let reserve = pick(
        "reservation's ReserveRoaming",
        &server("reservation", "ReserveRoaming"),
    );
    assert_eq!(reserve.span.parent_span_id, forward.span.span_id);
    assert!(
        matches!(
            find(&reserve.span.attributes, "rpc.grpc.status_code").and_then(|v| v.value.as_ref()),
            Some(Value::IntValue(0))
        ),
        "rpc.grpc.status_code is an integer"
    );
    let pay_call = pick("reservation's call to Pay", &|g| {
        g.service == "reservation"
            && g.kind() == SpanKind::Client
            && g.span.name.ends_with("/Pay")
            && g.attr("reservation_id").as_deref() == Some(id)
    });
    assert_eq!(pay_call.span.parent_span_id, reserve.span.span_id);
    let pay = pick("payment's Pay", &server("payment", "Pay"));
    assert_eq!(pay.span.parent_span_id, pay_call.span.span_id);
    let published = pick("the publish of reservation.reserved", &|g| {
        g.service == "reservation"
            && g.kind() == SpanKind::Producer
            && g.span.name == "roaming.reservation.reserved"
            && g.attr("reservation_id").as_deref() == Some(id)
    });
    assert_eq!(published.span.trace_id, trace);
    assert_eq!(
        published.attr("messaging.destination.name").as_deref(),
        Some("roaming.reservation.reserved")
    );
    assert_eq!(
        published.attr("messaging.operation.type").as_deref(),
        Some("send")
    );
    assert!(published.attr("messaging.system").is_some());
    for consumer in ["rental", "view"] {
        let handled = pick(&format!("{consumer} handling reservation.reserved"), &|g| {
            g.service == consumer
                && g.kind() == SpanKind::Consumer
                && g.span.name == "roaming.reservation.reserved"
                && g.attr("reservation_id").as_deref() == Some(id)
        });
        assert_eq!(handled.span.parent_span_id, published.span.span_id);
        assert_eq!(
            handled.attr("messaging.operation.type").as_deref(),
            Some("process")
        );
    }

    // The declined card: its reservation named on reservation's span, status
    // left unset there (a refusal of the caller's request), ERROR on the
    // client spans (to a caller, any refusal is a failed call).
    let declined = driven.declined.as_str();
    let refused = pick("reservation's span of the declined card", &|g| {
        g.service == "reservation"
            && g.kind() == SpanKind::Server
            && g.attr("reservation_id").as_deref() == Some(declined)
    });
    assert_eq!(refused.attr("rpc.grpc.status_code").as_deref(), Some("9"));
    assert_eq!(refused.status(), StatusCode::Unset);
    let refused_call = pick("the gateway's call of the declined card", &|g| {
        g.service == "gateway"
            && g.kind() == SpanKind::Client
            && g.span.span_id == refused.span.parent_span_id
    });
    assert_eq!(refused_call.status(), StatusCode::Error);
    assert_eq!(
        refused_call.attr("rpc.grpc.status_code").as_deref(),
        Some("9")
    );

    // The hand-over: its own trace, the reservation named from the gateway
    // on, linked back to the reservation's trace.
    let hand_over_at_gateway = pick(
        "the gateway's HandOverDevice",
        &server("gateway", "HandOverDevice"),
    );
    assert!(hand_over_at_gateway.span.parent_span_id.is_empty());
    assert_ne!(
        hand_over_at_gateway.span.trace_id, trace,
        "a trace of its own"
    );
    let hand_over = pick(
        "rental's HandOverDevice",
        &server("rental", "HandOverDevice"),
    );
    let via = parent_of(hand_over);
    assert_eq!(
        (via.service.as_str(), via.kind()),
        ("gateway", SpanKind::Client)
    );
    assert_eq!(via.attr("reservation_id").as_deref(), Some(id));
    assert_eq!(via.span.parent_span_id, hand_over_at_gateway.span.span_id);
    assert!(
        hand_over.span.links.iter().any(|l| l.trace_id == trace),
        "the hand-over links to the reservation's trace: {:?}",
        hand_over.span.links
    );
    let begin_use = pick("reservation's BeginUse", &server("reservation", "BeginUse"));
    assert_eq!(begin_use.span.trace_id, hand_over.span.trace_id);
    assert_eq!(parent_of(begin_use).service, "rental");
    assert!(begin_use.span.links.iter().any(|l| l.trace_id == trace));

    // The return, days later in life: a trace of its own, linked too.
    let returned = pick("rental's ReturnDevice", &server("rental", "ReturnDevice"));
    assert_ne!(returned.span.trace_id, trace);
    assert!(returned.span.links.iter().any(|l| l.trace_id == trace));

    // No orphans in any trace of the reservation's steps (the reservation,
    // the hand-over, the return): every parent arrived. The declined card's
    // trace ends at the refusal; its spans are checked the same way.
    let steps: BTreeSet<&[u8]> = [
        trace.as_slice(),
        &hand_over.span.trace_id,
        &returned.span.trace_id,
        &refused.span.trace_id,
    ]
    .into_iter()
    .collect();
    for g in spans
        .iter()
        .filter(|g| steps.contains(g.span.trace_id.as_slice()))
    {
        if !g.span.parent_span_id.is_empty() {
            parent_of(g);
        }
    }

    // No secret anywhere: card numbers, bearer tokens, passwords.
    for g in spans {
        let mut values: Vec<String> = g
            .span
            .attributes
            .iter()
            .filter_map(|kv| text(kv.value.as_ref()))
            .collect();
        values.push(g.span.name.clone());
        for e in &g.span.events {
            values.push(e.name.clone());
            values.extend(e.attributes.iter().filter_map(|kv| text(kv.value.as_ref())));
        }
        for v in &values {
            for secret in &driven.secrets {
                assert!(
                    !v.contains(secret.as_str()),
                    "a secret in {}: {v}",
                    g.describe()
                );
            }
            assert!(
                !v.to_lowercase().contains("password"),
                "{}: {v}",
                g.describe()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roaming_up_sends_one_tree_per_reservation_with_a_service_per_component() {
    let (receiver, otlp) = Receiver::start().await;
    let dir = std::env::temp_dir().join(format!("roaming-otlp-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    // Every listener on port 0; the child reports the ports it got.
    let log = dir.join("up.log");
    let output = mesh::listening::Output::from_end_of(&log);
    let mut child = Command::new(env!("CARGO_BIN_EXE_roaming"))
        .arg("up")
        // A data directory of its own: `up` seeds the demo catalog only
        // into a new one, and the log lives beside it.
        .env("ROAMING_DATA_DIR", dir.join("data"))
        .env("ROAMING_REPORT_LISTEN", "1")
        .env("ROAMING_GATEWAY_LISTEN", mesh::listening::ANY_PORT)
        .env("ROAMING_ADMIN_LISTEN", "off")
        .env("ROAMING_AUTH_SIGNING_KEY_FILE", &test_key().0)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        .envs(OTEL_ENV)
        .envs(
            ["RESERVATION", "PAYMENT", "RENTAL", "PARKING", "VIEW"]
                .map(|s| (format!("ROAMING_{s}_LISTEN"), mesh::listening::ANY_PORT)),
        )
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let gateway = output
        .addrs(&["gateway"], &mut child, Duration::from_secs(30))
        .await
        .expect("the gateway reports its port")[0];
    let _up = Stopped(child, dir);

    let driven = drive(gateway).await;
    let spans = received(&receiver, &driven).await;
    if std::env::var_os("TRACE_TREE").is_some() {
        print_tree(&spans, &driven.reserved);
    }
    assert_tree(&spans, &driven);
}

/// Prints the children of `parent` in `trace`, and theirs.
fn walk(spans: &[Got], parent: &[u8], trace: &[u8], depth: usize) {
    let mut children: Vec<&Got> = spans
        .iter()
        .filter(|g| g.span.trace_id == trace && g.span.parent_span_id == parent)
        .collect();
    children.sort_by_key(|g| g.span.start_time_unix_nano);
    for g in children {
        let kind = format!("{:?}", g.kind()).to_lowercase();
        let links = if g.span.links.is_empty() {
            ""
        } else {
            "  (link -> reservation's trace)"
        };
        #[allow(clippy::cast_precision_loss, reason = "a span's nanoseconds")]
        let ms = g
            .span
            .end_time_unix_nano
            .saturating_sub(g.span.start_time_unix_nano) as f64
            / 1e6;
        println!(
            "{:indent$}{:<12} {:<9} {}{links}  [{ms:.2} ms]",
            "",
            g.service,
            kind,
            g.span.name,
            indent = depth * 2
        );
        walk(spans, &g.span.span_id, trace, depth + 1);
    }
}

/// The traces naming `id`, as an indented tree with each span's duration
/// (`TRACE_TREE=1`, with `--no-capture`: the README's picture of a trace
/// comes from it).
fn print_tree(spans: &[Got], id: &str) {
    let traces: BTreeSet<Vec<u8>> = spans
        .iter()
        .filter(|g| g.attr("reservation_id").as_deref() == Some(id))
        .map(|g| g.span.trace_id.clone())
        .collect();
    for trace in traces {
        println!("trace {}", hex(&trace));
        walk(spans, &[], &trace, 1);
    }
}

/// `roaming up`, stopped (and its directory removed) when the test ends,
/// also when it fails.
struct Stopped(std::process::Child, std::path::PathBuf);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributed_mode_sends_the_same_tree() {
    let (receiver, otlp) = Receiver::start().await;
    let mut layout = Layout {
        gateway_key: Some(test_key().clone()),
        ..Layout::one_each()
    }
    .with("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{otlp}"));
    for (k, v) in OTEL_ENV {
        layout = layout.with(k, v);
    }
    let d = Distributed::start(
        Path::new(env!("CARGO_BIN_EXE_roaming")),
        &postgres_admin_url(),
        &uuid::Uuid::now_v7().simple().to_string(),
        &layout,
    )
    .await
    .expect("the distributed mesh starts");
    let driven = drive(d.gateway).await;
    let spans = received(&receiver, &driven).await;
    if std::env::var_os("TRACE_TREE").is_some() {
        print_tree(&spans, &driven.reserved);
    }
    assert_tree(&spans, &driven);
    d.shutdown().await;
}
