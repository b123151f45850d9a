//! The gateway (DOMAIN.md, "Services and what each owns"): the mesh's one public port.
//!
//! - every call under a service's path is forwarded to a replica of that
//!   service ([`proxy`]), after the gateway checked the bearer token, the
//!   caller's rate ([`limit`]) and share of the calls in flight, read the
//!   message in time (size, gRPC framing), checked the concurrency limits,
//!   and checked, capped or gave the call's deadline. The services verify
//!   the token again themselves: the gateway is not the only line of defence.
//! - `roaming.auth.v1.AuthService/IssueToken` exchanges a configured username
//!   and password for a token ([`tokens`]).
//! - health: `""` is the gateway itself; each service name mirrors the health
//!   of its upstream. Reflection lists every service of the API.

pub use adapters_auth::rate as limit;
pub mod console;
pub mod proxy;
pub mod settings;
pub mod tokens;

use std::collections::HashMap;
use std::time::Duration;

use adapters_auth::{AuthLayer, Credentials, Issuer};
use adapters_grpc::balance::{Discovery, Upstream};
use adapters_grpc::request_body::{BodyLimits, RequestBodyLayer};
use adapters_grpc::runtime::{Follow, Runtime};
use adapters_grpc::tls::{ClientTls, GuardLayer, ServerTls};
use http::{HeaderName, HeaderValue};
use proto::auth::auth_service_server::AuthServiceServer;
use proto::service_names;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_web::GrpcWebLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{info, warn};

pub use settings::{DEMO_PRINCIPALS, GatewaySettings, PrincipalEntry};

use crate::console::ConsoleLayer;
use crate::proxy::{AdmissionLayer, StackConfig, streaming_methods};
use crate::tokens::TokenService;

/// Where each service's replicas listen (`http://host:port`; a host name
/// stands for every address it resolves to).
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    pub reservation: Vec<String>,
    pub payment: Vec<String>,
    pub rental: Vec<String>,
    pub parking: Vec<String>,
    pub view: Vec<String>,
    /// How the host names are resolved, and how often again.
    pub discovery: Discovery,
}

impl Upstreams {
    /// Each upstream: its name (`payment`), its health service name and its
    /// addresses.
    pub fn each(&self) -> [(&'static str, &'static str, &[String]); 5] {
        [
            ("reservation", service_names::RESERVATION, &self.reservation),
            ("payment", service_names::PAYMENT, &self.payment),
            ("rental", service_names::RENTAL, &self.rental),
            ("parking", service_names::PARKING, &self.parking),
            ("view", service_names::VIEW, &self.view),
        ]
    }

    /// What [`start`] requires of them before it builds a channel: every
    /// upstream has an address and every address is a URI. Nothing is
    /// dialled (`roaming check-config` runs this too).
    ///
    /// # Errors
    /// The first upstream refused: its name (`payment`) and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (upstream, _, addrs) in self.each() {
            if addrs.is_empty() {
                return Err((
                    upstream,
                    "no address: the gateway forwards to it".to_owned(),
                ));
            }
            adapters_grpc::balance::check_addresses(addrs).map_err(|e| (upstream, e))?;
        }
        Ok(())
    }
}

/// Everything the gateway needs besides its settings.
#[derive(Debug)]
pub struct Parts {
    /// Checks tokens (the same keys the services trust).
    pub auth: AuthLayer,
    /// Signs the tokens `IssueToken` hands out; `None` when an external
    /// identity provider issues them.
    pub issuer: Option<Issuer>,
    pub credentials: Credentials,
    pub upstreams: Upstreams,
    /// Close client connections gracefully after this long (see the services'
    /// `max_connection_age_secs`), so clients spread over new gateways.
    pub max_connection_age: Option<Duration>,
    /// Connections held at once (in all and per peer) and the handshake deadline.
    pub limits: adapters_grpc::incoming::ConnectionLimits,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// How long after its headers a request's body may take (the services'
    /// `request_body_timeout_ms`).
    pub request_body_timeout: Duration,
    /// The public port's TLS (`None`: plaintext).
    pub tls: Option<ServerTls>,
    /// The gateway's mesh identity, for `https://` upstreams.
    pub mesh_tls: Option<ClientTls>,
}

/// A running gateway: where it listens and how to stop it (health `""` to
/// `NOT_SERVING` first, then drain; see the services' `Running`).
pub type Gateway = adapters_grpc::runtime::Running;

/// Starts serving on `listener`.
pub async fn start(
    listener: TcpListener,
    settings: &GatewaySettings,
    parts: Parts,
) -> Result<Gateway, StartError> {
    let addr = listener
        .local_addr()
        .map_err(|e| StartError(format!("listener: {e}")))?;
    parts
        .upstreams
        .check()
        .map_err(|(upstream, e)| StartError(format!("upstream {upstream}: {e}")))?;
    let mut upstreams = HashMap::new();
    let mut admission = HashMap::new();
    if parts.tls.is_none() && !addr.ip().is_loopback() {
        warn!(
            %addr,
            "INSECURE: the public port serves plaintext on a non-loopback address: passwords, \
             tokens and card numbers cross the network in clear. Set gateway.tls_cert and \
             gateway.tls_key (or terminate TLS in front of it)."
        );
    }
    for (short, name, addrs) in parts.upstreams.each() {
        let tls = parts
            .mesh_tls
            .as_ref()
            .map(|t| t.connector(short))
            .transpose()
            .map_err(|e| StartError(format!("upstream {short}: {e}")))?;
        let channel = Upstream::with_tls(name, addrs, &parts.upstreams.discovery, tls)
            .map_err(|e| StartError(format!("upstream {name}: {e}")))?;
        upstreams.insert(name.to_owned(), channel);
        admission.insert(
            name.to_owned(),
            settings.admission_per_replica.saturating_mul(addrs.len()),
        );
    }
    let admission =
        AdmissionLayer::new(admission, Duration::from_millis(settings.admission_wait_ms));
    let (mut runtime, health_service) = Runtime::new("gateway", &[""]);
    let v1 = adapters_grpc::reflection(&[])
        .build_v1()
        .map_err(|e| StartError(e.to_string()))?;
    let v1alpha = adapters_grpc::reflection(&[])
        .build_v1alpha()
        .map_err(|e| StartError(e.to_string()))?;
    let max = settings.max_message_bytes;
    let tokens = AuthServiceServer::new(TokenService::new(
        parts.issuer,
        parts.credentials,
        tokens::LoginLimits {
            per_minute: settings.logins_per_minute,
            ttl: Duration::from_secs(settings.login_ttl_secs),
        },
    ))
    .max_decoding_message_size(max);
    let fallback = proxy::stack(StackConfig {
        upstreams: upstreams.clone(),
        streaming: streaming_methods(proto::FILE_DESCRIPTOR_SET),
        auth: parts.auth,
        rate_per_second: f64::from(settings.rate_per_second),
        burst: settings.burst,
        max_concurrent_calls: settings.max_concurrent_calls,
        max_calls_per_principal: settings.max_calls_per_principal,
        admission: admission.clone(),
        max_message_bytes: max,
        request_body_timeout: parts.request_body_timeout,
        default_deadline: Duration::from_millis(settings.default_deadline_ms),
        max_deadline: Duration::from_millis(settings.max_deadline_ms),
    });
    // The bodies of the gateway's own calls (logins, health, reflection),
    // which need no token; the proxy reads the others after their token.
    let own_bodies = RequestBodyLayer::new(
        "gateway",
        BodyLimits {
            max_message_bytes: max,
            within: parts.request_body_timeout,
        },
    )
    .only_under(&[
        "/roaming.auth.v1.AuthService/",
        "/grpc.health.v1.Health/",
        "/grpc.reflection.",
    ]);
    let router = Routes::new(health_service)
        .add_service(v1)
        .add_service(v1alpha)
        .add_service(tokens)
        .into_axum_router()
        .fallback_service(fallback);

    let cors = cors(&settings.allowed_origins).map_err(StartError)?;
    let mut builder =
        tonic::transport::Server::builder().max_concurrent_streams(parts.max_concurrent_streams);
    if let Some(age) = parts.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    // Each service admits `admission_per_replica` calls per replica the
    // balancer knows: a name (a headless Service) that resolves to more pods
    // after a scale-out gets more slots, within a second.
    let per_replica = settings.admission_per_replica;
    let sized: Vec<(String, Upstream)> = upstreams
        .iter()
        .map(|(name, channel)| (name.clone(), channel.clone()))
        .collect();
    runtime.every(Duration::from_secs(1), move || {
        for (name, channel) in &sized {
            let replicas = channel.replicas().len().max(1);
            admission.resize(name, per_replica.saturating_mul(replicas));
        }
        std::future::ready(())
    });
    for (name, channel) in upstreams {
        runtime.follow(
            Follow {
                entries: vec![name.clone()],
                up: None,
                down: None,
            },
            upstream_serving(name, channel),
        );
    }
    runtime
        .health()
        .set_service_status("", ServingStatus::Serving)
        .await;
    let tls = parts.tls;
    let tls_on = tls.is_some();
    let gateway = runtime
        .serve(listener, parts.limits, tls, move |incoming, stop| {
            builder
                .accept_http1(true)
                // With TLS, plaintext is for probes (health) only.
                .layer(GuardLayer::public(tls_on))
                // Another web app's origin, if allowed, may call (preflights
                // answered here); by default only the console's own origin.
                .layer(tower::util::option_layer(cors.clone()))
                // GET/HEAD: the console's files; tonic-web would answer 400.
                .layer(ConsoleLayer::embedded())
                // gRPC-web (HTTP/1.1 or 2, binary or text) becomes gRPC here,
                // so everything below sees one protocol.
                .layer(GrpcWebLayer::new())
                .layer(adapters_telemetry::TraceLayer::new("gateway"))
                // The gateway's own calls' bodies: in time, one gRPC frame.
                .layer(own_bodies.clone())
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .http2_max_header_list_size(Some(32 * 1024))
                .tcp_nodelay(true)
                .add_routes(Routes::from(router))
                .serve_with_incoming_shutdown(incoming, stop)
        })
        .await;
    info!(%addr, tls = tls_on, "gateway serving");
    Ok(gateway)
}

/// CORS for the listed origins (none: same-origin only, no CORS headers at
/// all, so a page elsewhere cannot call the gateway from a browser). gRPC-web
/// needs its headers allowed and its status trailers exposed.
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|e| format!("allowed origin {o:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([http::Method::POST])
            .allow_headers([
                http::header::AUTHORIZATION,
                http::header::CONTENT_TYPE,
                HeaderName::from_static("x-grpc-web"),
                HeaderName::from_static("x-user-agent"),
                HeaderName::from_static("grpc-timeout"),
            ])
            .expose_headers([
                HeaderName::from_static("grpc-status"),
                HeaderName::from_static("grpc-message"),
                HeaderName::from_static("grpc-status-details-bin"),
            ])
            .max_age(Duration::from_mins(10)),
    ))
}

/// A check that `name` serves on its upstream: the gateway's health entry
/// for `name` mirrors the answer.
fn upstream_serving(
    name: String,
    channel: Upstream,
) -> impl FnMut() -> futures::future::BoxFuture<'static, bool> + Send + 'static {
    let client = HealthClient::new(channel);
    move || {
        let mut client = client.clone();
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: name.clone(),
        });
        request.set_timeout(Duration::from_secs(1));
        Box::pin(async move {
            client
                .check(request)
                .await
                .is_ok_and(|r| r.into_inner().status == 1)
        })
    }
}

/// Why the gateway could not start (configuration or binding).
#[derive(Debug, thiserror::Error)]
#[error("gateway: {0}")]
pub struct StartError(String);
