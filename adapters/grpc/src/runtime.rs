//! What every server process of the mesh shares, the services and the gateway
//! alike: health entries that follow a check, periodic and long-running tasks
//! that end on one stop signal, serving on limited connections, and a stop that
//! flips readiness first and then drains.
//!
//! ```text
//! let mut rt = Runtime::new("payment", &["", "roaming.payment.v1.PaymentService"]);
//! rt.follow(Follow { entries, up, down }, || db.ping()); // readiness
//! rt.every(Duration::from_secs(10), || sweep());       // a periodic task
//! rt.spawn(|stop| relay.run(stop));                    // a task that ends on stop
//! let running = rt.serve(listener, limits, tls, |incoming, stop| router.serve_with_incoming_shutdown(incoming, stop));
//! running.stop(grace).await;                           // NOT_SERVING, then drain
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tracing::{info, warn};

use crate::incoming::{ConnectionLimits, Limited, limited};
use crate::tls::ServerTls;

/// The connections a server accepts (see [`crate::incoming::limited`]).
pub type Incoming = ReceiverStream<std::io::Result<Limited>>;

/// A future that resolves once the process stops.
pub type StopSignal = BoxFuture<'static, ()>;

/// How often a followed check runs.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Health entries that follow one check, and what to log when it flips.
#[derive(Debug, Clone)]
pub struct Follow {
    pub entries: Vec<String>,
    /// Logged at INFO when the check passes (at first, and again).
    pub up: Option<&'static str>,
    /// Logged at WARN when it fails.
    pub down: Option<&'static str>,
}

/// A server process being put together: its health reporter, its stop signal
/// and the tasks that must end before it has stopped.
#[derive(Debug)]
pub struct Runtime {
    name: &'static str,
    readiness: Vec<String>,
    health: HealthReporter,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Runtime {
    /// A runtime for the process `name` whose readiness is the health entries
    /// `readiness` (`""`, which probes check by default, and usually the gRPC
    /// service's name): [`Running::announce_stop`] sets them `NOT_SERVING`.
    /// The health service to add to the router comes with it.
    pub fn new(name: &'static str, readiness: &[&str]) -> (Self, HealthServer<HealthService>) {
        let health = HealthReporter::new();
        let service = HealthServer::new(HealthService::from_health_reporter(health.clone()));
        let (stop, _) = watch::channel(false);
        let runtime = Self {
            name,
            readiness: readiness.iter().map(|&s| s.to_owned()).collect(),
            health,
            stop,
            tasks: JoinSet::new(),
        };
        (runtime, service)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn health(&self) -> &HealthReporter {
        &self.health
    }

    /// A future that resolves once the process stops.
    pub fn stop_signal(&self) -> StopSignal {
        let mut stop = self.stop.subscribe();
        Box::pin(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
    }

    /// Runs `task` until it ends; it is handed the stop signal and must end
    /// soon after it fires (the stop waits for it, up to the grace period).
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let signal = self.stop_signal();
        self.tasks.spawn(task(signal));
    }

    /// Runs `tick` every `period` (the first time one period from now) until
    /// the process stops; a tick in progress is finished first.
    pub fn every<F, Fut>(&mut self, period: Duration, mut tick: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let mut stop = self.stop.subscribe();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(period) => {}
                }
                tick().await;
            }
        });
    }

    /// Keeps the health entries of `follow` equal to `check`, run every
    /// [`FOLLOW_EVERY`], logging each flip.
    pub fn follow<F, Fut>(&mut self, follow: Follow, mut check: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let (reporter, name) = (self.health.clone(), self.name);
        let mut stop = self.stop.subscribe();
        self.tasks.spawn(async move {
            let mut last = None;
            loop {
                let ok = check().await;
                if last != Some(ok) {
                    let status = if ok {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    };
                    for entry in &follow.entries {
                        reporter.set_service_status(entry, status).await;
                    }
                    match (ok, follow.up, follow.down) {
                        (true, Some(up), _) => info!(service = name, "{up}"),
                        (false, _, Some(down)) => warn!(service = name, "{down}"),
                        _ => {}
                    }
                    last = Some(ok);
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(FOLLOW_EVERY) => {}
                }
            }
        });
    }

    /// Serves on `listener`, accepting only what `limits` allows (and, with
    /// `tls`, TLS as well as plaintext, see [`crate::incoming`]): `serve` is
    /// handed the connections and the stop signal and returns the server's
    /// future (typically `router.serve_with_incoming_shutdown`). Liveness
    /// ([`proto::service_names::LIVENESS`]) is `SERVING` from here on.
    pub async fn serve<F, Fut, E>(
        mut self,
        listener: TcpListener,
        limits: ConnectionLimits,
        tls: Option<ServerTls>,
        serve: F,
    ) -> Running
    where
        F: FnOnce(Incoming, StopSignal) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let name = self.name;
        let served = serve(limited(name, listener, limits, tls), self.stop_signal());
        self.tasks.spawn(async move {
            if let Err(e) = served.await {
                warn!(service = name, error = %e, "gRPC server failed");
            }
        });
        self.health
            .set_service_status(proto::service_names::LIVENESS, ServingStatus::Serving)
            .await;
        info!(service = name, %addr, "serving");
        Running {
            name,
            addr,
            readiness: self.readiness,
            health: self.health,
            stop: self.stop,
            tasks: self.tasks,
        }
    }
}

/// A started server: where it listens and how to stop it.
#[derive(Debug)]
pub struct Running {
    pub name: &'static str,
    pub addr: SocketAddr,
    readiness: Vec<String>,
    health: HealthReporter,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Readiness to `NOT_SERVING`, while still serving: load balancers stop
    /// sending new calls. [`Running::stop`] does this too; calling it first
    /// lets the process wait for endpoints to be updated before it stops
    /// accepting.
    pub async fn announce_stop(&self) {
        for entry in &self.readiness {
            self.health
                .set_service_status(entry, ServingStatus::NotServing)
                .await;
        }
    }

    /// Readiness to `NOT_SERVING`, then stop accepting, drain in-flight calls
    /// and end every task, for at most `grace` (then they are aborted).
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
