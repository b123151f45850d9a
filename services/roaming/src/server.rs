//! What every service process shares: health (readiness follows the database;
//! the broker has its own entry), reflection v1 and v1alpha, token
//! verification, graceful stop.

use std::net::SocketAddr;
use std::time::Duration;

use adapters_auth::AuthLayer;
use adapters_grpc::incoming::ConnectionLimits;
use adapters_store::Db;
use adapters_telemetry::TraceLayer;
use proto::service_names::{BUS, LIVENESS};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};
use tracing::{info, warn};

use crate::bus::Bus;

/// A future that resolves when `stop` is set.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A started service: where it listens and how to stop it.
#[derive(Debug)]
pub struct Running {
    pub name: &'static str,
    pub addr: SocketAddr,
    grpc_service: &'static str,
    health: HealthReporter,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Readiness (`""`, which probes check by default, and the service's
    /// name) to `NOT_SERVING`, while still serving: load balancers stop sending
    /// new calls. [`Running::stop`] does this too; calling it first lets the
    /// process wait for endpoints to be updated before it stops accepting.
    pub async fn announce_stop(&self) {
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.health
            .set_service_status(self.grpc_service, ServingStatus::NotServing)
            .await;
    }

    /// Readiness to `NOT_SERVING`, then stop accepting, drain in-flight calls
    /// for at most `grace`, stop the relay and consumers.
    pub async fn stop(mut self, grace: Duration) {
        self.announce_stop().await;
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                service = self.name,
                "in-flight work did not finish within the grace period; aborting it"
            );
            self.tasks.abort_all();
        }
        info!(service = self.name, "stopped");
    }
}

/// Everything a service needs to start serving.
#[derive(Debug)]
pub struct Launch {
    pub name: &'static str,
    pub grpc_service: &'static str,
    pub listener: TcpListener,
    pub db: Db,
    pub bus: Bus,
    pub stop: watch::Sender<bool>,
    pub tasks: JoinSet<()>,
    pub health: HealthReporter,
}

/// How a server is built (see `Settings::server_options`).
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Close each client connection gracefully after this long.
    pub max_connection_age: Option<Duration>,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
}

/// A router whose every call passes the token check first.
pub type Guarded = Router<Stack<AuthLayer, Stack<TraceLayer, Identity>>>;

/// Largest request message a service accepts (the gateway's limit is the
/// same by default; this holds for direct calls too).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The health reporter and the router with health and reflection already on,
/// behind a span per call and `auth` (health and reflection need no token).
/// Reflection lists `grpc_service`, health and reflection itself.
///
/// `max_connection_age` (when set) closes each client connection gracefully
/// after that long (HTTP/2 GOAWAY: new calls go to a new connection, calls
/// and streams in flight run to their end), so clients reconnect and spread
/// over replicas added since. No grace period is set on purpose: tonic 0.14
/// then closes the connection abruptly at age + grace without any GOAWAY,
/// failing the calls in flight.
pub fn base_router(
    component: &'static str,
    grpc_service: &str,
    auth: AuthLayer,
    options: &ServerOptions,
) -> Result<(HealthReporter, Guarded), anyhow::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let listed = [grpc_service, "grpc.health.v1.Health"];
    let v1 = adapters_grpc::reflection(&listed).build_v1()?;
    let v1alpha = adapters_grpc::reflection(&listed).build_v1alpha()?;
    let mut server =
        tonic::transport::Server::builder().max_concurrent_streams(options.max_concurrent_streams);
    if let Some(age) = options.max_connection_age {
        server = server.max_connection_age(age);
    }
    let router = server
        .layer(TraceLayer::new(component))
        .layer(auth)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .tcp_nodelay(true)
        .add_service(health)
        .add_service(v1)
        .add_service(v1alpha);
    Ok((reporter, router))
}

impl Launch {
    /// Serves `router` on the connections that pass `limits` and keeps
    /// readiness in step with the database; the broker's state is its own
    /// health entry ([`BUS`]) and a WARN line.
    pub fn serve(mut self, router: Guarded, limits: ConnectionLimits) -> Running {
        let addr = self
            .listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let stop_rx = self.stop.subscribe();
        let name = self.name;
        let incoming = adapters_grpc::incoming::limited(name, self.listener, limits);
        self.tasks.spawn(async move {
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, stopped(stop_rx))
                .await
            {
                warn!(service = name, error = %e, "gRPC server failed");
            }
        });
        let reporter = self.health.clone();
        let db = self.db.clone();
        let bus = self.bus.clone();
        let grpc_service = self.grpc_service;
        let mut stop_rx = self.stop.subscribe();
        self.tasks.spawn(async move {
            reporter
                .set_service_status(LIVENESS, ServingStatus::Serving)
                .await;
            let (mut ready, mut connected) = (None, None);
            loop {
                let db_ok = db.writer().ping().await.is_ok();
                if ready != Some(db_ok) {
                    let status = serving(db_ok);
                    reporter.set_service_status("", status).await;
                    reporter.set_service_status(grpc_service, status).await;
                    if db_ok {
                        info!(service = name, "ready");
                    } else {
                        warn!(service = name, "not ready: the database does not answer");
                    }
                    ready = Some(db_ok);
                }
                let bus_ok = bus.is_connected();
                if connected != Some(bus_ok) {
                    reporter.set_service_status(BUS, serving(bus_ok)).await;
                    if bus_ok {
                        info!(service = name, "broker connected");
                    } else {
                        warn!(
                            service = name,
                            "broker unreachable: events wait in the outbox, calls are still served"
                        );
                    }
                    connected = Some(bus_ok);
                }
                tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        info!(service = name, %addr, "serving");
        Running {
            name,
            addr,
            grpc_service,
            health: self.health,
            stop: self.stop,
            tasks: self.tasks,
        }
    }
}

fn serving(ok: bool) -> ServingStatus {
    if ok {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}
