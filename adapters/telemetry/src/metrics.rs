//! RED metrics and the mesh's own counters, exported over OTLP (when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set) and rendered as Prometheus text for
//! the admin port's `/metrics`.
//!
//! Recording is a no-op until [`install`] ran (libraries and tests that do
//! not install pay nothing).

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, MeterProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};

/// Every instrument of the mesh.
#[derive(Debug)]
struct Instruments {
    rpc_requests: Counter<u64>,
    rpc_duration: Histogram<f64>,
    breaker_state: Gauge<u64>,
    breaker_transitions: Counter<u64>,
    outbox_backlog: Gauge<u64>,
    outbox_oldest_age: Gauge<f64>,
    redeliveries: Counter<u64>,
    dead_letters: Counter<u64>,
    reservations: Counter<u64>,
}

static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's meter provider and the reader behind `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
}

/// Lets the provider and the scrape handler share one manual reader.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Seconds; from 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process's metrics (first call wins) and returns them.
pub fn install(service_name: &str) -> &'static Metrics {
    METRICS.get_or_init(|| {
        let reader = Arc::new(ManualReader::builder().build());
        let mut builder = SdkMeterProvider::builder()
            .with_reader(SharedReader(Arc::clone(&reader)))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(
                        std::env::var("OTEL_SERVICE_NAME")
                            .unwrap_or_else(|_| service_name.to_owned()),
                    )
                    .build(),
            );
        if std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_ok_and(|e| !e.is_empty()) {
            match opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .build()
            {
                Ok(exporter) => builder = builder.with_periodic_exporter(exporter),
                Err(e) => eprintln!("OTLP metrics export disabled: {e}"),
            }
        }
        let provider = builder.build();
        let meter = provider.meter("roaming");
        let _ = INSTRUMENTS.set(Instruments {
            rpc_requests: meter
                .u64_counter("roaming_rpc_server_requests")
                .with_description("RPCs answered, by component, method and gRPC code")
                .build(),
            rpc_duration: meter
                .f64_histogram("roaming_rpc_server_duration_seconds")
                .with_description("Time to answer an RPC (to the response headers)")
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            breaker_state: meter
                .u64_gauge("roaming_breaker_state")
                .with_description("Circuit breaker state: 0 closed, 1 half-open, 2 open")
                .build(),
            breaker_transitions: meter
                .u64_counter("roaming_breaker_transitions")
                .with_description("Circuit breaker state changes, by target state")
                .build(),
            outbox_backlog: meter
                .u64_gauge("roaming_outbox_backlog")
                .with_description("Events written but not yet confirmed by the bus")
                .build(),
            outbox_oldest_age: meter
                .f64_gauge("roaming_outbox_oldest_age_seconds")
                .with_description("Age of the oldest unsent event")
                .with_unit("s")
                .build(),
            redeliveries: meter
                .u64_counter("roaming_consumer_redeliveries")
                .with_description("Events delivered again to a consumer")
                .build(),
            dead_letters: meter
                .u64_counter("roaming_consumer_dead_letters")
                .with_description("Events a consumer gave up on (moved to the DLQ)")
                .build(),
            reservations: meter
                .u64_counter("roaming_reservations")
                .with_description("Reservation outcomes: reserved, rejected (by reason), canceled")
                .build(),
        });
        Metrics { provider, reader }
    })
}

fn with(f: impl FnOnce(&Instruments)) {
    if let Some(i) = INSTRUMENTS.get() {
        f(i);
    }
}

/// One answered RPC.
pub fn rpc(component: &'static str, method: &str, code: &str, elapsed: Duration) {
    with(|i| {
        let attrs = [
            KeyValue::new("component", component),
            KeyValue::new("rpc_method", method.to_owned()),
            KeyValue::new("grpc_code", code.to_owned()),
        ];
        i.rpc_requests.add(1, &attrs);
        i.rpc_duration.record(elapsed.as_secs_f64(), &attrs);
    });
}

/// A breaker's new state (`closed`, `half_open`, `open`).
pub fn breaker(target: &str, state: &'static str) {
    with(|i| {
        let level = match state {
            "closed" => 0,
            "half_open" => 1,
            _ => 2,
        };
        i.breaker_state
            .record(level, &[KeyValue::new("target", target.to_owned())]);
        i.breaker_transitions.add(
            1,
            &[
                KeyValue::new("target", target.to_owned()),
                KeyValue::new("state", state),
            ],
        );
    });
}

/// The outbox of `database` after a relay step.
pub fn outbox(database: &str, backlog: u64, oldest_age: Duration) {
    with(|i| {
        let attrs = [KeyValue::new("database", database.to_owned())];
        i.outbox_backlog.record(backlog, &attrs);
        i.outbox_oldest_age.record(oldest_age.as_secs_f64(), &attrs);
    });
}

/// A delivery after the first, to `consumer`.
pub fn redelivered(consumer: &str) {
    with(|i| {
        i.redeliveries
            .add(1, &[KeyValue::new("consumer", consumer.to_owned())]);
    });
}

/// An event `consumer` dead-lettered.
pub fn dead_lettered(consumer: &str) {
    with(|i| {
        i.dead_letters
            .add(1, &[KeyValue::new("consumer", consumer.to_owned())]);
    });
}

/// A reservation outcome: `reserved`, `rejected` (with `reason`), `canceled`.
pub fn reservation(outcome: &'static str, kind: &'static str, reason: &str) {
    with(|i| {
        i.reservations.add(
            1,
            &[
                KeyValue::new("outcome", outcome),
                KeyValue::new("kind", kind),
                KeyValue::new("reason", reason.to_owned()),
            ],
        );
    });
}

impl Metrics {
    /// Every metric in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut rm = ResourceMetrics::default();
        if let Err(e) = self.reader.collect(&mut rm) {
            tracing::warn!(error = %e, "collecting metrics for /metrics failed");
            return String::new();
        }
        let mut out = String::new();
        for scope in rm.scope_metrics() {
            for metric in scope.metrics() {
                let name = metric.name();
                match metric.data() {
                    AggregatedMetrics::U64(d) => render(&mut out, name, metric.description(), d),
                    AggregatedMetrics::I64(d) => render(&mut out, name, metric.description(), d),
                    AggregatedMetrics::F64(d) => render(&mut out, name, metric.description(), d),
                }
            }
        }
        out
    }

    /// Flushes and stops the exporters.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = attrs
        .map(|kv| {
            let value = kv
                .value
                .to_string()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{}=\"{value}\"", kv.key.as_str())
        })
        .collect();
    // Label order is not guaranteed by the SDK; sorted output is stable.
    parts.sort();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn render<T: Copy + ToString>(out: &mut String, name: &str, help: &str, data: &MetricData<T>) {
    let fmt = |v: T| v.to_string();
    match data {
        MetricData::Sum(sum) => {
            let (kind, series) = if sum.is_monotonic() {
                ("counter", format!("{name}_total"))
            } else {
                ("gauge", name.to_owned())
            };
            let _ = writeln!(out, "# HELP {series} {help}\n# TYPE {series} {kind}");
            for p in sum.data_points() {
                let _ = writeln!(
                    out,
                    "{series}{} {}",
                    labels(p.attributes(), None),
                    fmt(p.value())
                );
            }
        }
        MetricData::Gauge(gauge) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for p in gauge.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(p.attributes(), None),
                    fmt(p.value())
                );
            }
        }
        MetricData::Histogram(h) => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for p in h.data_points() {
                let mut cumulative = 0u64;
                let counts: Vec<u64> = p.bucket_counts().collect();
                for (bound, count) in p.bounds().zip(&counts) {
                    cumulative += count;
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        labels(p.attributes(), Some(("le", bound.to_string())))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    labels(p.attributes(), Some(("le", "+Inf".to_owned()))),
                    p.count()
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    labels(p.attributes(), None),
                    fmt(p.sum())
                );
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    labels(p.attributes(), None),
                    p.count()
                );
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// The installed metrics, if any.
pub fn installed() -> Option<&'static Metrics> {
    METRICS.get()
}
