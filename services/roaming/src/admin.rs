//! The admin HTTP port: `/metrics` (Prometheus text) and `/healthz`
//! (liveness for probes that do not speak gRPC). Loopback by default.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use tokio::sync::watch;
use tracing::{info, warn};

/// A running admin server.
#[derive(Debug)]
pub struct Admin {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn metrics() -> impl axum::response::IntoResponse {
    let body = adapters_telemetry::metrics::installed()
        .map(adapters_telemetry::metrics::Metrics::render)
        .unwrap_or_default();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Serves the admin routes on `listen`.
pub async fn start(listen: SocketAddr) -> anyhow::Result<Admin> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding the admin port {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }));
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!(error = %e, "admin server failed");
        }
    });
    info!(%addr, "admin (metrics) serving");
    Ok(Admin { addr, stop, task })
}

impl Admin {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
