//! One `service.name` per mesh component, in every running mode.
//!
//! `roaming up` runs the gateway and the five services in one process, with
//! one tracer provider; a backend's service graph should still show six
//! boxes. Every span the mesh opens names its component (the `component`
//! attribute: the server span's, the client span's caller, the consumer's,
//! the relay's outbox owner). [`ByComponent`] sends each finished span
//! through an exporter whose resource is the process's own with
//! `service.name` set to that component; spans without one keep the
//! process's name (`OTEL_SERVICE_NAME`, else the default of the binary).

use std::future::Future;
use std::time::Duration;

use opentelemetry::{Key, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// The components of the mesh, each its own `service.name`.
pub const COMPONENTS: [&str; 6] = [
    "gateway",
    "reservation",
    "payment",
    "rental",
    "parking",
    "view",
];

/// The span attribute naming the component a span belongs to.
pub const COMPONENT: &str = "component";

/// Routes spans to one inner exporter per component (see the module docs).
#[derive(Debug)]
pub struct ByComponent<E> {
    /// `None`: the process's own name.
    parts: Vec<(Option<&'static str>, E)>,
}

impl<E: SpanExporter> ByComponent<E> {
    /// `make` builds one inner exporter (called once per component, and once
    /// for the process's own spans).
    ///
    /// # Errors
    /// The first error of `make`.
    pub fn new<Err>(mut make: impl FnMut() -> Result<E, Err>) -> Result<Self, Err> {
        let mut parts = vec![(None, make()?)];
        for c in COMPONENTS {
            parts.push((Some(c), make()?));
        }
        Ok(Self { parts })
    }

    /// The index of the part `span` goes to.
    fn part_of(&self, span: &SpanData) -> usize {
        let component = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == COMPONENT)
            .and_then(|kv| match &kv.value {
                Value::String(s) => Some(s.as_str()),
                _ => None,
            });
        component
            .and_then(|c| self.parts.iter().position(|(name, _)| *name == Some(c)))
            .unwrap_or(0)
    }
}

impl<E: SpanExporter> SpanExporter for ByComponent<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let mut groups: Vec<Vec<SpanData>> = self.parts.iter().map(|_| Vec::new()).collect();
        for span in batch {
            let i = self.part_of(&span);
            groups[i].push(span);
        }
        async move {
            let mut result = Ok(());
            for (group, (_, exporter)) in groups.into_iter().zip(&self.parts) {
                if group.is_empty() {
                    continue;
                }
                if let Err(e) = exporter.export(group).await {
                    result = Err(e);
                }
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let mut result = Ok(());
        for (_, exporter) in &self.parts {
            if let Err(e) = exporter.shutdown_with_timeout(timeout) {
                result = Err(e);
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut result = Ok(());
        for (_, exporter) in &self.parts {
            if let Err(e) = exporter.force_flush() {
                result = Err(e);
            }
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        for (name, exporter) in &mut self.parts {
            match name {
                None => exporter.set_resource(resource),
                Some(name) => exporter.set_resource(&named(resource, name)),
            }
        }
    }
}

/// `resource` with `service.name` set to `name`.
fn named(resource: &Resource, name: &'static str) -> Resource {
    let service_name = Key::from_static_str("service.name");
    Resource::builder_empty()
        .with_attributes(
            resource
                .iter()
                .filter(|(k, _)| **k != service_name)
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_service_name(name)
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    /// Records (service.name of its resource, span name) of what it exports.
    #[derive(Debug, Clone, Default)]
    struct Seen {
        resource: Option<String>,
        spans: Arc<Mutex<Vec<(String, String)>>>,
    }

    impl SpanExporter for Seen {
        fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
            let service = self.resource.clone().unwrap_or_default();
            self.spans.lock().unwrap().extend(
                batch
                    .into_iter()
                    .map(|s| (service.clone(), s.name.to_string())),
            );
            std::future::ready(Ok(()))
        }

        fn set_resource(&mut self, resource: &Resource) {
            self.resource = resource
                .get(&Key::from_static_str("service.name"))
                .map(|v| v.to_string());
        }
    }

    fn span(name: &'static str, component: Option<&'static str>) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1),
                SpanId::from(1),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: component
                .map(|c| KeyValue::new(COMPONENT, c))
                .into_iter()
                .collect(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: opentelemetry::InstrumentationScope::default(),
        }
    }

    #[tokio::test]
    async fn each_span_goes_out_under_its_components_service_name() {
        let seen = Seen::default();
        let mut routed = ByComponent::new(|| Ok::<_, ()>(seen.clone())).unwrap();
        routed.set_resource(
            &Resource::builder_empty()
                .with_service_name("roaming")
                .with_attribute(KeyValue::new("service.version", "1.2.3"))
                .build(),
        );
        routed
            .export(vec![
                span("a", Some("gateway")),
                span("b", Some("view")),
                span("c", None),
                span("d", Some("not-a-component")),
            ])
            .await
            .unwrap();
        let mut got = seen.spans.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            [
                ("gateway", "a"),
                ("roaming", "c"),
                ("roaming", "d"),
                ("view", "b"),
            ]
            .map(|(s, n)| (s.to_owned(), n.to_owned()))
        );
        // The other attributes of the process's resource stay.
        let named = named(
            &Resource::builder_empty()
                .with_service_name("roaming")
                .with_attribute(KeyValue::new("service.version", "1.2.3"))
                .build(),
            "view",
        );
        assert_eq!(
            named
                .get(&Key::from_static_str("service.version"))
                .map(|v| v.to_string()),
            Some("1.2.3".to_owned())
        );
    }
}
