//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, `roaming up` exports its spans over
//! OTLP/gRPC: a fake collector in this test receives them, with the service
//! name of `OTEL_SERVICE_NAME`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use support::*;

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// (service.name, span name) of every span received.
    fn spans(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for request in self.0.lock().unwrap().iter() {
            for rs in &request.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push((service.clone(), span.name.clone()));
                    }
                }
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_when_the_endpoint_is_set() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);

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
        .env("OTEL_SERVICE_NAME", "roaming-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "info")
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

    let reservations = eventually(Duration::from_secs(30), "the gateway", || async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{gateway}"))
            .ok()?
            .connect()
            .await
            .ok()?;
        Some(proto::reservation::reservation_service_client::ReservationServiceClient::new(channel))
    })
    .await;
    // The demo catalog is seeded a moment after the port opens.
    eventually(Duration::from_secs(30), "a reservation", || {
        let mut r = reservations.clone();
        async move {
            r.reserve_roaming(req(ALICE, roaming_request("otlp-1", 3, 4)))
                .await
                .ok()
        }
    })
    .await;

    let found = eventually(Duration::from_secs(20), "spans at the collector", || {
        let collector = collector.clone();
        async move {
            let spans = collector.spans();
            spans
                .iter()
                .any(|(service, name)| {
                    service == "roaming-under-test" && name.ends_with("/ReserveRoaming")
                })
                .then_some(spans.len())
        }
    })
    .await;
    assert!(found > 1);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}
