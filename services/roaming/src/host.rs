//! What every service of this crate is built on: its port, its database, the
//! outbox relay, readiness that follows the database (the broker has its own
//! health entry), event consumers inside an `event.handle` span, and a gRPC
//! router with health, reflection and token verification already on. Each
//! service module ([`crate::reservation`], [`crate::payment`], ...) opens a
//! [`Host`], adds its own parts and serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adapters_auth::AuthLayer;
use adapters_auth::rate::PerPrincipalLayer;
use adapters_bus::{Delivery, HandleError, Handler};
use adapters_grpc::breaker::BreakerConfig;
use adapters_grpc::incoming::ConnectionLimits;
use adapters_grpc::request_body::{BodyLimits, RequestBodyLayer};
use adapters_grpc::resilience::CallPolicy;
use adapters_grpc::runtime::{Follow, Runtime};
use adapters_grpc::tls::{GuardLayer, ServerTls};
use adapters_store::migrations::MigratorTrait;
use adapters_store::{Db, Relay, RelayConfig};
use adapters_telemetry::TraceLayer;
use futures::future::BoxFuture;
use proto::service_names::BUS;
use tokio::net::TcpListener;
use tonic::transport::server::Router;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;
use tower::layer::util::{Identity, Stack};
use tracing::Instrument;

pub use adapters_grpc::runtime::Running;

use crate::auth::MeshAuth;
use crate::bus::Bus;
use crate::settings::{ServerOptions, Settings};

/// Largest request message a service accepts (the gateway's limit is the
/// same by default; this holds for direct calls too).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A router whose every call passes the token check and the caller's rate
/// limit first, and whose request body is read in time and checked.
pub type Guarded = Router<
    Stack<
        RequestBodyLayer,
        Stack<PerPrincipalLayer, Stack<GuardLayer, Stack<AuthLayer, Stack<TraceLayer, Identity>>>>,
    >,
>;

/// What the process does once, before any service starts: metrics for
/// `component`, and every event written in a traced call carries that call's
/// trace context.
pub fn process_init(component: &str) {
    adapters_telemetry::metrics::install(component);
    adapters_store::outbox::set_header_hook(adapters_telemetry::current_trace_headers);
}

/// The deadline and breaker of calls to another service.
pub fn call_policy(settings: &Settings) -> CallPolicy {
    CallPolicy {
        deadline: settings.call_deadline(),
        breaker: BreakerConfig {
            cool_down: settings.breaker_cool_down(),
            ..BreakerConfig::default()
        },
        ..CallPolicy::default()
    }
}

/// The replicas of `server` (its bare name; `service` its health name) that
/// `caller` dials at `addrs`: `https://` ones with mutual TLS as `caller`.
///
/// # Errors
/// An address refused, or certificate files that cannot be used.
pub fn upstream(
    settings: &Settings,
    caller: &str,
    server: &str,
    service: &str,
    addrs: &[String],
) -> anyhow::Result<adapters_grpc::balance::Upstream> {
    // Certificates are read only for an https:// address, as check-config
    // (plan::check_tls) checks them.
    let tls = if addrs.iter().any(|a| adapters_grpc::balance::is_https(a)) {
        settings.mesh_client_tls(caller, server)?
    } else {
        None
    };
    Ok(adapters_grpc::balance::Upstream::with_tls(
        service,
        addrs,
        &settings.discovery(),
        tls,
    )?)
}

/// Tells whoever started this process where `listener` of `service` listens,
/// when `report_listen` is set: one line on stdout, `listening
/// service=<service> addr=<ip:port>`, as soon as the port is bound. Given port
/// 0, the system picks the port; a harness (`tools/mesh`) sets
/// `ROAMING_REPORT_LISTEN` and reads this line instead of guessing a free port
/// beforehand. Off by default, so stdout stays logs only (JSON lines for a
/// collector in production).
pub fn report_bound(
    settings: &Settings,
    service: &str,
    listener: &TcpListener,
) -> anyhow::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    if settings.report_listen {
        println!("listening service={service} addr={addr}");
    }
    Ok(addr)
}

/// A service being started: bound, migrated, relaying its outbox.
#[derive(Debug)]
pub struct Host {
    runtime: Runtime,
    health: HealthServer<HealthService>,
    grpc_service: &'static str,
    listener: TcpListener,
    /// The port's TLS (`mesh_tls` not `off`).
    tls: Option<ServerTls>,
    db: Db,
    bus: Bus,
    /// See [`ConsumerSpan::poison`].
    poison_subject: Option<Arc<str>>,
    /// The component this host runs (`reservation`, ...).
    component: &'static str,
}

/// How long the oldest event may wait in the outbox before the broker's
/// health (`roaming.bus`) says it is stalled: the no-fault lag is well under
/// a second, a stream leader's election a few seconds.
const BUS_STALL: Duration = Duration::from_secs(10);

/// `roaming.bus` is `SERVING` while the broker is connected, events leave
/// the outbox and the process's consumers keep up with their streams: a
/// broker that is reachable but takes nothing (no stream leader, no quorum)
/// or delivers nothing (a consumer without a leader, a lost pull) shows too.
/// Readiness (`""`) does not follow it: calls are served while events wait.
fn bus_healthy(
    connected: bool,
    oldest_unsent: Option<Duration>,
    consume_behind: Option<Duration>,
) -> bool {
    connected
        && oldest_unsent.is_none_or(|waited| waited < BUS_STALL)
        && consume_behind.is_none_or(|behind| behind < BUS_STALL)
}

impl Host {
    /// Binds `listen`, opens and migrates the database (`url`, or the data
    /// directory's file for `name`), relays the outbox to `bus`, and keeps
    /// readiness (`""` and `grpc_service`) in step with the database.
    pub async fn open<M: MigratorTrait>(
        settings: &Settings,
        name: &'static str,
        grpc_service: &'static str,
        listen: SocketAddr,
        url: Option<&String>,
        bus: &Bus,
    ) -> anyhow::Result<Self> {
        let url = settings.database_url(name, url);
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
        report_bound(settings, name, &listener)?;
        let tls = settings.mesh_server_tls(name)?;
        let db = Db::connect_pooled::<M>(&url, settings.database_pool)
            .await
            .map_err(|e| anyhow::anyhow!("database {}: {e}", adapters_settings::redacted(&url)))?;
        let (mut runtime, health) = Runtime::new(name, &["", grpc_service]);
        let relay = Relay::new(
            db.clone(),
            bus.publisher(),
            RelayConfig {
                lease: name.to_owned(),
                messaging_system: bus.messaging_system(),
                component: name,
                ..RelayConfig::default()
            },
        );
        let oldest_unsent = relay.oldest_unsent();
        runtime.spawn(|stop| relay.run(stop));
        let ready = db.clone();
        runtime.follow(
            Follow {
                entries: vec![String::new(), grpc_service.to_owned()],
                up: Some("ready"),
                down: Some("not ready: the database does not answer"),
            },
            move || {
                let db = ready.clone();
                async move { db.writer().ping().await.is_ok() }
            },
        );
        let broker = bus.clone();
        runtime.follow(
            Follow {
                entries: vec![BUS.to_owned()],
                up: Some("broker connected, events leaving the outbox"),
                down: Some(
                    "events are stuck (the broker unreachable, the outbox's oldest event or a consumer over 10 s behind): they wait, calls are still served",
                ),
            },
            move || {
                std::future::ready(bus_healthy(
                    broker.is_connected(),
                    oldest_unsent.age(),
                    broker.consume_behind().map(|(_, behind)| behind),
                ))
            },
        );
        let poison_subject = settings
            .consumer_fault_poison_subject
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(Arc::from);
        if let Some(subject) = &poison_subject {
            tracing::error!(
                %subject,
                service = name,
                "CONSUMER FAULT INJECTION IS ON: every event whose subject ends with this is poison (dead-lettered)"
            );
        }
        Ok(Self {
            runtime,
            health,
            grpc_service,
            listener,
            tls,
            db,
            bus: bus.clone(),
            poison_subject,
            component: name,
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Applies every event of `streams` with `handler`, as the durable
    /// consumer `durable`, each inside an `event.handle` span; and the dead
    /// letters an operator replays to `durable` (`roaming dlq replay`, see
    /// `adapters_bus::dlq`).
    pub fn consume(&mut self, durable: &str, streams: &[&str], handler: impl Handler + 'static) {
        let handler: Arc<dyn Handler> = Arc::new(ConsumerSpan {
            component: self.component,
            consumer: Arc::from(durable),
            messaging_system: self.bus.messaging_system(),
            poison: self.poison_subject.clone(),
            inner: handler,
        });
        for stream in streams {
            let bus = self.bus.clone();
            let stop = self.runtime.stop_signal();
            if let Some(task) = bus.subscribe(durable, stream, Arc::clone(&handler), stop) {
                self.runtime.spawn(|_| task);
            }
        }
        let stop = self.runtime.stop_signal();
        if let Some(task) = self.bus.subscribe_replays(durable, handler, stop) {
            self.runtime.spawn(|_| task);
        }
    }

    /// Runs `task` until it ends; it is handed the stop signal, and the
    /// stop waits for it (up to the grace period).
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(adapters_grpc::runtime::StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.runtime.spawn(task);
    }

    /// Runs `tick` every `period` until the service stops.
    pub fn every<F, Fut>(&mut self, period: Duration, tick: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.runtime.every(period, tick);
    }

    /// The router with health and reflection already on, behind a span per
    /// call, the token check, the caller's rate (health and reflection
    /// need no token) and the request body's checks. Reflection
    /// lists the service, health and reflection itself.
    ///
    /// `max_connection_age` (when set) closes each client connection gracefully
    /// after that long (HTTP/2 GOAWAY: new calls go to a new connection, calls
    /// and streams in flight run to their end), so clients reconnect and spread
    /// over replicas added since. No grace period is set on purpose: tonic 0.14
    /// then closes the connection abruptly at age + grace without any GOAWAY,
    /// failing the calls in flight.
    ///
    /// # Errors
    /// When the reflection service cannot be built (a broken descriptor set).
    pub fn router(&self, auth: &MeshAuth, options: &ServerOptions) -> anyhow::Result<Guarded> {
        let listed = [self.grpc_service, "grpc.health.v1.Health"];
        let v1 = adapters_grpc::reflection(&listed).build_v1()?;
        let v1alpha = adapters_grpc::reflection(&listed).build_v1alpha()?;
        let mut server = tonic::transport::Server::builder()
            .max_concurrent_streams(options.max_concurrent_streams);
        if let Some(age) = options.max_connection_age {
            server = server.max_connection_age(age);
        }
        Ok(server
            .layer(TraceLayer::new(self.runtime.name()))
            .layer(auth.layer())
            // The client certificate must name the token's caller (and, with
            // `mesh_tls = required`, be there).
            .layer(GuardLayer::mesh(options.client_certs))
            .layer(auth.rate_layer())
            // The body arrives within `request_body_timeout` of the headers,
            // as one gRPC frame of at most MAX_MESSAGE_BYTES, before any
            // handler runs. After the token check: without a valid token only
            // a health or reflection call's body is ever read.
            .layer(RequestBodyLayer::new(
                self.runtime.name(),
                BodyLimits {
                    max_message_bytes: MAX_MESSAGE_BYTES,
                    within: options.request_body_timeout,
                },
            ))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .tcp_nodelay(true)
            .add_service(self.health.clone())
            .add_service(v1)
            .add_service(v1alpha))
    }

    /// Serves `router` on the connections that pass `limits`.
    pub async fn serve(self, router: Guarded, limits: ConnectionLimits) -> Running {
        self.runtime
            .serve(self.listener, limits, self.tls, move |incoming, stop| {
                router.serve_with_incoming_shutdown(incoming, stop)
            })
            .await
    }
}

/// Runs `H` inside an `event.handle` span, the child of the span that
/// published the event (its trace context travels in the event's headers).
struct ConsumerSpan<H> {
    /// The component consuming (`service.name` of its spans).
    component: &'static str,
    consumer: Arc<str>,
    /// `messaging.system`: `nats`, or the embedded bus.
    messaging_system: &'static str,
    /// The fault knob `consumer_fault_poison_subject`: events whose subject
    /// ends with it are poison.
    poison: Option<Arc<str>>,
    inner: H,
}

impl<H> std::fmt::Debug for ConsumerSpan<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSpan")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Handler for ConsumerSpan<H> {
    fn handle<'a>(&'a self, d: Delivery<'a>) -> BoxFuture<'a, Result<(), HandleError>> {
        let span = tracing::info_span!(
            "event.handle",
            otel.name = %d.subject,
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            component = self.component,
            consumer = &*self.consumer,
            messaging.system = self.messaging_system,
            messaging.destination.name = %d.subject,
            messaging.operation.type = "process",
            attempt = d.attempt,
            reservation_id = tracing::field::Empty,
        );
        if let Some(id) = adapters_codec::reservation_of(d.subject, d.payload) {
            span.record("reservation_id", id.as_str());
        }
        adapters_telemetry::set_parent_from_pairs(&span, d.headers);
        if d.attempt > 1 {
            adapters_telemetry::metrics::redelivered(&self.consumer);
        }
        if let Some(poison) = &self.poison
            && d.subject.ends_with(&**poison)
        {
            return Box::pin(std::future::ready(Err(HandleError::poison(format!(
                "fault injection: {poison} is poison (consumer_fault_poison_subject)"
            )))));
        }
        let recorded = span.clone();
        Box::pin(
            async move {
                let result = self.inner.handle(d).await;
                if result.is_err() {
                    // Delivered again (or dead-lettered): this attempt failed.
                    recorded.record("otel.status_code", "ERROR");
                }
                result
            }
            .instrument(span),
        )
    }
}

/// The event as the codec reads it.
pub fn inbound<'a>(d: &Delivery<'a>) -> adapters_codec::Inbound<'a> {
    adapters_codec::Inbound {
        subject: d.subject,
        payload: d.payload,
    }
}

#[cfg(test)]
mod bus_health {
    use super::*;

    #[test]
    fn the_bus_is_healthy_while_connected_and_events_leave() {
        assert!(bus_healthy(true, None, None));
        assert!(bus_healthy(
            true,
            Some(Duration::from_millis(300)),
            Some(Duration::from_millis(300))
        ));
        assert!(
            !bus_healthy(true, Some(Duration::from_secs(11)), None),
            "publish stalled"
        );
        assert!(
            !bus_healthy(true, None, Some(Duration::from_secs(11))),
            "consume stalled"
        );
        assert!(!bus_healthy(false, None, None), "unreachable");
    }
}
