//! Per call, what the connection it came on allows: plaintext on a port
//! that serves TLS, a client certificate that must name the caller.
//!
//! The connection's facts ([`Peer`]) come from [`crate::incoming`]. Health
//! and reflection are open on every connection: kubelet's gRPC probe speaks
//! plaintext and brings no client certificate, and it probes the same port.

use std::task::{Context, Poll};

use domain_kernel::{Principal, Role};
use futures::future::{Either, Ready, ready};
use tonic::transport::server::TcpConnectInfo;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};
use tower::{Layer, Service};
use tracing::debug;

use super::GATEWAY_IDENTITY;
use crate::peer::Peer;

/// Paths served on any connection: health (probes) and reflection (the
/// schema is public), as the token check lets them through.
const OPEN: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

fn is_open(path: &str) -> bool {
    OPEN.iter().any(|p| path.starts_with(p))
}

/// What a service port asks of its callers' certificates (`mesh_tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCerts {
    /// No TLS on the port.
    #[default]
    Off,
    /// TLS or plaintext; a client certificate, when there is one, must name
    /// the caller the token names.
    Optional,
    /// Every call but health and reflection comes with a client certificate
    /// that names the caller the token names.
    Required,
}

impl ClientCerts {
    /// `off`, `optional` or `required`.
    ///
    /// # Errors
    /// Anything else, said.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "off" => Ok(Self::Off),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            other => Err(format!("{other:?} is not one of off, optional, required")),
        }
    }
}

/// The guard of one port.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardLayer {
    /// The port serves TLS: plaintext gets health and reflection only (a
    /// browser's `GET` is sent to the `https://` address).
    tls_only: bool,
    client_certs: ClientCerts,
}

impl GuardLayer {
    /// The gateway's public port: with TLS, plaintext is for probes only.
    pub fn public(tls: bool) -> Self {
        Self {
            tls_only: tls,
            client_certs: ClientCerts::Off,
        }
    }

    /// A service port. It must sit inside the token check (it compares the
    /// certificate with the caller's [`Principal`]).
    pub fn mesh(client_certs: ClientCerts) -> Self {
        Self {
            tls_only: false,
            client_certs,
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            layer: *self,
        }
    }
}

/// The service [`GuardLayer`] makes.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

fn refused(reason: &'static str, message: String) -> Status {
    Status::with_error_details(
        Code::Unauthenticated,
        message,
        ErrorDetails::with_error_info(reason, proto::reasons::DOMAIN, []),
    )
}

/// Whether a connection with these facts may make this call; the status to
/// answer if not. `principal` is the token's caller (none for open paths).
pub fn check(
    layer: GuardLayer,
    path: &str,
    peer: Option<&Peer>,
    principal: Option<&Principal>,
) -> Result<(), Status> {
    if is_open(path) {
        return Ok(());
    }
    let tls = peer.and_then(|p| p.tls.as_deref());
    if layer.tls_only && tls.is_none() {
        return Err(refused(
            proto::reasons::TLS_REQUIRED,
            "this port takes calls over TLS only (health checks excepted): use https".to_owned(),
        ));
    }
    match tls.filter(|t| t.client_certificate) {
        Some(peer) => {
            // Fail closed: a certificate names a caller only together with
            // a token (this guard sits inside the token check; a path that
            // skipped it has no caller to compare).
            let Some(principal) = principal else {
                return Err(refused(
                    proto::reasons::PEER_MISMATCH,
                    "no token's caller to compare the client certificate with".to_owned(),
                ));
            };
            // A service calls with its own token; everyone else's token
            // reaches a service only through the gateway.
            let expected = if principal.has(Role::Service) {
                principal.subject()
            } else {
                GATEWAY_IDENTITY
            };
            if peer.names.iter().any(|n| n == expected) {
                Ok(())
            } else {
                Err(refused(
                    proto::reasons::PEER_MISMATCH,
                    format!(
                        "the client certificate names {:?}, but this call must come from {expected:?} (the token's caller)",
                        peer.names
                    ),
                ))
            }
        }
        None if layer.client_certs == ClientCerts::Required => Err(refused(
            proto::reasons::CLIENT_CERTIFICATE_REQUIRED,
            "this port requires mutual TLS: a client certificate of the mesh CA (health checks excepted)"
                .to_owned(),
        )),
        None => Ok(()),
    }
}

impl<S, B> Service<http::Request<B>> for Guard<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let peer: Option<Peer> = request.extensions().get::<Peer>().cloned();
        // `Request::remote_addr` reads this.
        if let Some(peer) = &peer {
            request
                .extensions_mut()
                .insert::<TcpConnectInfo>(peer.tcp.clone());
        }
        let verdict = check(
            self.layer,
            request.uri().path(),
            peer.as_ref(),
            request.extensions().get::<Principal>(),
        );
        match verdict {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(status) => {
                debug!(path = request.uri().path(), reason = %status.message(), "call refused by the transport guard");
                if self.layer.tls_only
                    && request.method() == http::Method::GET
                    && let Some(redirect) = to_https(&request)
                {
                    return Either::Right(ready(Ok(redirect)));
                }
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

/// A browser that asked `http://host/path` of a TLS port: `308` to
/// `https://host/path` (the same port serves both).
fn to_https<B>(request: &http::Request<B>) -> Option<http::Response<tonic::body::Body>> {
    let host = request.headers().get(http::header::HOST)?.to_str().ok()?;
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let location = http::HeaderValue::from_str(&format!("https://{host}{path}")).ok()?;
    http::Response::builder()
        .status(http::StatusCode::PERMANENT_REDIRECT)
        .header(http::header::LOCATION, location)
        .body(tonic::body::Body::empty())
        .ok()
}
