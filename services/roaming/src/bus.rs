//! The event bus a process uses: embedded (in process) or NATS JetStream.

use std::future::Future;
use std::sync::Arc;

use adapters_bus::Handler;
use adapters_bus::embedded::EmbeddedBus;
use adapters_bus::nats::{self, ConsumerSpec, JetStreamPublisher};
use domain_kernel::{EventPublisher, OutgoingEvent, PublishError};

/// Which broker events go through.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "one per process, cloned rarely")]
pub enum Bus {
    Embedded(EmbeddedBus),
    Nats {
        js: nats::Context,
        prefix: String,
        /// How far behind this process's consumers are (`roaming.bus` health).
        lag: nats::ConsumeLag,
    },
}

/// A publisher for the outbox relay.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "one per relay")]
pub enum Publisher {
    Embedded(EmbeddedBus),
    Nats(JetStreamPublisher),
}

impl EventPublisher for Publisher {
    async fn publish(&self, events: &[OutgoingEvent]) -> Result<(), PublishError> {
        match self {
            Self::Embedded(b) => b.publish(events).await,
            Self::Nats(p) => p.publish(events).await,
        }
    }
}

impl Bus {
    pub async fn connect(
        nats_url: Option<&str>,
        prefix: &str,
        stream_replicas: usize,
    ) -> Result<Self, anyhow::Error> {
        match nats_url {
            // One reservation's events stay in order; different reservations'
            // are handled concurrently, so their transactions commit together.
            None => Ok(Self::Embedded(EmbeddedBus::default().ordered_by(|e| {
                adapters_codec::reservation_of(&e.subject, &e.payload)
            }))),
            Some(url) => {
                // Printed without its user part (credentials or a token).
                let shown = adapters_settings::redacted(url);
                // The client retries forever (the connection, then the
                // streams' creation over it); say so while it does.
                let setup = async {
                    let js = nats::connect(url).await?;
                    nats::ensure_streams(&js, prefix, stream_replicas)
                        .await
                        .map_err(|e| anyhow::anyhow!("creating streams on {shown}: {e}"))?;
                    Ok::<_, anyhow::Error>(js)
                };
                tokio::pin!(setup);
                let js = loop {
                    tokio::select! {
                        js = &mut setup => break js?,
                        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {
                            tracing::warn!(url = %shown, "still connecting to NATS; the service serves once it is reached");
                        }
                    }
                };
                Ok(Self::Nats {
                    js,
                    prefix: prefix.to_owned(),
                    lag: nats::ConsumeLag::default(),
                })
            }
        }
    }

    pub fn publisher(&self) -> Publisher {
        match self {
            Self::Embedded(b) => Publisher::Embedded(b.clone()),
            Self::Nats { js, prefix, .. } => {
                Publisher::Nats(JetStreamPublisher::new(js.clone()).with_subject_prefix(prefix))
            }
        }
    }

    /// Starts the durable `durable` on `stream` (e.g. `ROAMING_RENTAL`) with
    /// `handler`; returns a task to run until `shutdown` (nothing to run for the
    /// embedded bus, which calls the handler from the producer's relay).
    pub fn subscribe(
        &self,
        durable: &str,
        stream: &str,
        handler: Arc<dyn Handler>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        match self {
            Self::Embedded(b) => {
                let prefix = nats::STREAMS
                    .iter()
                    .find(|(name, _)| *name == stream)
                    .map_or_else(
                        || format!("{stream}."),
                        |(_, subjects)| subjects.trim_end_matches('>').to_owned(),
                    );
                b.subscribe(durable, &prefix, handler);
                None
            }
            Self::Nats { js, prefix, lag } => {
                // As on the embedded bus: one reservation's events in order,
                // different reservations' concurrently.
                let spec = ConsumerSpec::new(prefix, stream, durable)
                    .ordered_by(adapters_codec::reservation_of)
                    .watched_by(lag.clone());
                Some(nats::run_consumer(js.clone(), spec, handler, shutdown))
            }
        }
    }

    /// Starts the part of the replay stream that is `durable`'s (dead letters
    /// an operator replays to it, `adapters_bus::dlq`) with `handler`; nothing
    /// to run for the embedded bus, which replays in process.
    pub fn subscribe_replays(
        &self,
        durable: &str,
        handler: Arc<dyn Handler>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        match self {
            Self::Embedded(_) => None,
            Self::Nats { js, prefix, lag } => Some(nats::run_consumer(
                js.clone(),
                ConsumerSpec::replay(prefix, durable).watched_by(lag.clone()),
                handler,
                shutdown,
            )),
        }
    }

    /// The consumer of this process furthest behind its stream, and by how
    /// much (never, for the embedded bus: its relay calls the handlers).
    pub fn consume_behind(&self) -> Option<(String, std::time::Duration)> {
        match self {
            Self::Embedded(_) => None,
            Self::Nats { lag, .. } => lag.worst(),
        }
    }

    /// `messaging.system` of the spans of events on this bus.
    pub fn messaging_system(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "roaming.embedded",
            Self::Nats { .. } => "nats",
        }
    }

    /// Whether the broker connection is up (always, for the embedded bus).
    pub fn is_connected(&self) -> bool {
        match self {
            Self::Embedded(_) => true,
            Self::Nats { js, .. } => nats::is_connected(js),
        }
    }
}
