//! Tracing for the mesh (README, "Observability").
//!
//! - [`init`]: the process's subscriber: logs (plain or JSON, filtered by
//!   `RUST_LOG`) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans exported
//!   over OTLP/gRPC (`OTEL_SERVICE_NAME` names the service). Nothing is
//!   exported, and nothing fails, when it is not set. Each span goes out
//!   under its component's own `service.name` ([`export`]).
//! - [`propagation`]: W3C `traceparent`/`tracestate` into and out of gRPC
//!   metadata and event headers.
//! - [`TraceLayer`]: the tower layer that opens one span per RPC on a server,
//!   as the child of the caller's span.
//! - [`sampled`]: refusals logged at most once a second per class, with the
//!   count; [`protocol`] does the same to the refusals `h2` logs itself.

pub mod export;
pub mod layer;
pub mod metrics;
pub mod propagation;
pub mod protocol;
pub mod sampled;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use layer::TraceLayer;
pub use propagation::{current_trace_headers, extract_pairs, inject, set_parent_from_pairs};

/// Keeps the exporter alive; flushes pending spans when dropped.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// The default filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn";

/// Installs the global subscriber: logs to stdout (JSON lines when `json`),
/// and OTLP span export when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
/// `version` is the binary's (`service.version`).
pub fn init(default_service_name: &str, version: &str, json: bool) -> Telemetry {
    propagation::install();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let provider = otlp_provider(default_service_name, version);
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("roaming"))
            .with_error_records_to_exceptions(true)
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        // h2's own WARN lines (one per connection it refuses) are sampled.
        .with(protocol::ProtocolRefusals::new())
        .with(otel);
    // Colour only for a person at a terminal: a file or a log collector gets
    // plain text (and `NO_COLOR` is honoured).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(colour);
    let installed = if json {
        registry.with(fmt.json().flatten_event(true)).try_init()
    } else {
        registry.with(fmt).try_init()
    };
    if installed.is_err() {
        eprintln!("a tracing subscriber was already installed; keeping it");
    }
    Telemetry { provider }
}

fn otlp_provider(default_service_name: &str, version: &str) -> Option<SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .ok()
        .filter(|e| !e.is_empty())?;
    // One OTLP exporter per component (each sends under its own resource).
    let exporter = match export::ByComponent::new(|| {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
    }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("OTLP export to {endpoint} disabled: {e}");
            return None;
        }
    };
    let name =
        std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| default_service_name.to_owned());
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(name)
                    .with_attributes([
                        opentelemetry::KeyValue::new("service.namespace", "roaming"),
                        opentelemetry::KeyValue::new("service.version", version.to_owned()),
                        // One per process: the components of `roaming up`
                        // share it, as they share the process.
                        opentelemetry::KeyValue::new(
                            "service.instance.id",
                            uuid::Uuid::now_v7().to_string(),
                        ),
                    ])
                    .build(),
            )
            .build(),
    )
}
