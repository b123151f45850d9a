//! `roaming up`: every service in one process, each on its own loopback port
//! with its own database, events on the embedded bus (or NATS when configured),
//! the demo catalog seeded on first start.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use gateway::{DEMO_PRINCIPALS, Gateway, Parts, PrincipalEntry, Upstreams};

use crate::admin::Admin;
use crate::auth::MeshAuth;
use crate::bus::Bus;
use crate::host::Running;
use crate::parking::Parkings;
use crate::payment::Payments;
use crate::rental::Rentals;
use crate::reservation::Reservations;
use crate::settings::Settings;
use crate::view::Views;

/// The whole mesh in one process.
#[derive(Debug)]
pub struct Mesh {
    pub payment: Running,
    pub reservation: Running,
    pub rental: Running,
    pub parking: Running,
    pub view: Running,
    pub gateway: Gateway,
    pub admin: Option<Admin>,
    pub auth: MeshAuth,
    pub bus: Bus,
    pub reservations: Arc<Reservations>,
    pub payments: Arc<Payments>,
    pub rentals: Arc<Rentals>,
    pub parkings: Arc<Parkings>,
    pub views: Views,
}

/// Where a local service is dialled: `https://` when its port serves TLS.
fn url(settings: &Settings, addr: std::net::SocketAddr) -> String {
    if settings.mesh_tls == "off" {
        format!("http://{addr}")
    } else {
        format!("https://{addr}")
    }
}

/// Starts every service. Seeds the demo catalog when the data directory is new.
pub async fn up(settings: &Settings) -> anyhow::Result<Mesh> {
    // Every service's start in one future is large: keep it on the heap.
    Box::pin(start_all(settings)).await
}

async fn start_all(settings: &Settings) -> anyhow::Result<Mesh> {
    let fresh = !settings.data_dir.exists()
        || std::fs::read_dir(&settings.data_dir).map_or(true, |mut d| d.next().is_none());
    // Owner-only: it holds the signing key and every service's database.
    adapters_files::create_private_dir(&settings.data_dir)
        .map_err(|e| anyhow::anyhow!("creating data dir {}: {e}", settings.data_dir.display()))?;
    crate::host::process_init("roaming");
    // The key is created under the data directory now, after `fresh`.
    let plan = crate::plan::up(settings, crate::auth::KeyFiles::Create)?;
    let auth = MeshAuth::new(settings, plan.keys)?;
    let admin = match settings.admin_listen {
        Some(listen) => Some(crate::admin::start(listen).await?),
        None => None,
    };
    let bus = Bus::connect(
        settings.nats_url.as_deref(),
        &settings.nats_prefix,
        settings.nats_stream_replicas,
    )
    .await?;

    let (payment, payments) = crate::payment::start(settings, &auth, &bus).await?;
    let payment_addrs = if settings.payment_addrs.is_empty() {
        vec![url(settings, payment.addr)]
    } else {
        settings.payment_addrs.clone()
    };
    let (reservation, reservations) =
        crate::reservation::start(settings, &auth, &bus, &payment_addrs).await?;
    let reservation_addrs = if settings.reservation_addrs.is_empty() {
        vec![url(settings, reservation.addr)]
    } else {
        settings.reservation_addrs.clone()
    };
    let (rental, rentals) = crate::rental::start(settings, &auth, &bus, &reservation_addrs).await?;
    let (parking, parkings) =
        crate::parking::start(settings, &auth, &bus, &reservation_addrs).await?;
    let (view, views) = crate::view::start(settings, &auth, &bus).await?;
    let or_local = |configured: &Vec<String>, local: &Running| {
        if configured.is_empty() {
            vec![url(settings, local.addr)]
        } else {
            configured.clone()
        }
    };
    let upstreams = Upstreams {
        reservation: reservation_addrs.clone(),
        payment: payment_addrs.clone(),
        rental: or_local(&settings.rental_addrs, &rental),
        parking: or_local(&settings.parking_addrs, &parking),
        view: or_local(&settings.view_addrs, &view),
        discovery: settings.discovery(),
    };
    let gateway = start_gateway(settings, &auth, upstreams, &PrincipalEntry::demo()).await?;
    let mesh = Mesh {
        payment,
        reservation,
        rental,
        parking,
        view,
        gateway,
        admin,
        auth,
        bus,
        reservations,
        payments,
        rentals,
        parkings,
        views,
    };
    if fresh {
        crate::seed::demo(&mesh.rentals, &mesh.parkings, mesh.reservations.catalog()).await?;
    }
    Ok(mesh)
}

impl Mesh {
    /// Stops every service (in reverse dependency order).
    pub async fn stop(self, grace: Duration) {
        self.gateway.stop(grace).await;
        self.view.stop(grace).await;
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
        self.parking.stop(grace).await;
        self.rental.stop(grace).await;
        self.reservation.stop(grace).await;
        self.payment.stop(grace).await;
    }

    /// What to print at start: the one public address, how to get a token,
    /// and the loopback-only addresses of the services behind it.
    pub fn banner(&self, settings: &Settings) -> String {
        let listen = self.gateway.addr;
        // Where a client on this machine reaches it.
        let gw = if listen.ip().is_unspecified() || listen.ip().is_loopback() {
            format!("localhost:{}", listen.port())
        } else {
            listen.to_string()
        };
        // How grpcurl reaches it: plaintext, or TLS trusting the CA of the
        // try-out certificates (`roaming up --tls`) or the operator's.
        let (scheme, grpcurl) = if settings.gateway.tls_cert.is_some() {
            let ca = settings
                .mesh_tls_dir
                .as_ref()
                .map(|d| d.join("ca.crt"))
                .filter(|ca| ca.exists())
                .map_or_else(|| "YOUR-CA.crt".to_owned(), |ca| ca.display().to_string());
            ("https", format!("-cacert {ca}"))
        } else {
            ("http", "-plaintext".to_owned())
        };
        let mut out = format!(
            "roaming mesh is up: gateway on {listen}{tls}\n\
             console: open {scheme}://{gw}/ in a browser (demo principals below, password `demo`)\n\
             get a token (demo principals, password `demo`):\n  \
             grpcurl {grpcurl} -d '{{\"username\":\"alice\",\"password\":\"demo\"}}' {gw} roaming.auth.v1.AuthService/IssueToken\n\
             then call with -H \"authorization: Bearer $TOKEN\", e.g.\n  \
             grpcurl {grpcurl} -H \"authorization: Bearer $TOKEN\" -d '{{}}' {gw} roaming.view.v1.ViewService/ListMyReservations\n\
             services (loopback, token required{mtls}):\n",
            tls = if scheme == "https" { " (TLS)" } else { "" },
            mtls = if settings.mesh_tls == "off" {
                String::new()
            } else {
                format!(", mutual TLS {}", settings.mesh_tls)
            },
        );
        for r in [
            &self.reservation,
            &self.payment,
            &self.rental,
            &self.parking,
            &self.view,
        ] {
            let _ = writeln!(out, "  {:<12} {}", r.name, r.addr);
        }
        if let Some(admin) = &self.admin {
            let _ = writeln!(out, "metrics: http://{}/metrics", admin.addr);
        }
        out.push_str("demo principals:\n");
        for (subject, role, place) in DEMO_PRINCIPALS {
            let place = match (role, place) {
                ("gate", Some(lot)) => format!(" (lot {lot})"),
                (_, Some(booth)) => format!(" (booth {booth})"),
                (_, None) => String::new(),
            };
            let _ = writeln!(out, "  {subject:<13} {role}{place}");
        }
        out
    }
}

/// Starts the gateway in front of `upstreams`. Its principals are the
/// configured ones, or `fallback` when none are configured.
pub async fn start_gateway(
    settings: &Settings,
    auth: &MeshAuth,
    upstreams: Upstreams,
    fallback: &[PrincipalEntry],
) -> anyhow::Result<Gateway> {
    let listen = settings.gateway.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding the gateway to {listen}: {e}"))?;
    crate::host::report_bound(settings, "gateway", &listener)?;
    let credentials = settings
        .gateway
        .credentials(fallback)
        .map_err(|e| anyhow::anyhow!(e))?;
    // Read only when an upstream is https://, as check-config checks.
    let dials_https = upstreams
        .each()
        .iter()
        .any(|(_, _, addrs)| addrs.iter().any(|a| adapters_grpc::balance::is_https(a)));
    let mesh_tls = if dials_https {
        settings.mesh_client(adapters_grpc::tls::GATEWAY_IDENTITY)?
    } else {
        None
    };
    let parts = Parts {
        auth: auth
            .layer()
            .allow_anonymous("/roaming.auth.v1.AuthService/"),
        issuer: auth.issuer(),
        credentials,
        upstreams,
        max_connection_age: settings.max_connection_age(),
        limits: settings.connection_limits(),
        max_concurrent_streams: settings.max_concurrent_streams,
        request_body_timeout: settings.request_body_timeout(),
        tls: settings.public_tls()?,
        mesh_tls,
    };
    Ok(gateway::start(listener, &settings.gateway, parts).await?)
}
