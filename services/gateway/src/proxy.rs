//! Forwarding by gRPC service path: authenticate, limit, then pass the call
//! through to a replica of the owning service (HTTP/2, metadata and deadline
//! preserved; the response body, streaming or not, is relayed as it comes).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use adapters_auth::AuthLayer;
use adapters_grpc::balance::{Upstream, never_reached};
use adapters_grpc::status::{reason, retry_later};
use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use tokio::sync::Semaphore;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};
use tracing::{debug, warn};

use crate::limit::RateLimiter;

type Response = http::Response<tonic::body::Body>;

/// What every forwarded call shares.
#[derive(Debug)]
pub struct ProxyState {
    pub upstreams: HashMap<String, Upstream>,
    /// `/package.Service/Method` of every streaming method (no default deadline,
    /// not counted against the concurrency limit: a watch may last for hours).
    pub streaming: HashSet<String>,
    pub auth: AuthLayer,
    pub limiter: RateLimiter,
    pub in_flight: Arc<Semaphore>,
    pub max_message_bytes: usize,
    pub default_deadline: Duration,
}

/// The fallback route of the gateway: every path that is not the gateway's own.
#[derive(Debug, Clone)]
pub struct Proxy(pub Arc<ProxyState>);

fn answer(status: Status) -> Response {
    status.into_http()
}

/// The `/package.Service/Method` paths of streaming methods in `descriptors`.
pub fn streaming_methods(descriptors: &[u8]) -> HashSet<String> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(descriptors) else {
        return HashSet::new();
    };
    let mut out = HashSet::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                if method.client_streaming() || method.server_streaming() {
                    out.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    out
}

/// Times a call that never reached a server is sent again.
const MAX_RESENDS: usize = 2;

/// A request head to send again (extensions are the server side's own).
fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

impl Service<http::Request<axum::body::Body>> for Proxy {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let state = Arc::clone(&self.0);
        Box::pin(async move { Ok(forward(&state, request).await.unwrap_or_else(answer)) })
    }
}

async fn forward(
    state: &ProxyState,
    request: http::Request<axum::body::Body>,
) -> Result<Response, Status> {
    let path = request.uri().path().to_owned();
    let service = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(s, _)| s)
        .unwrap_or_default();
    let upstream = state.upstreams.get(service).cloned().ok_or_else(|| {
        Status::unimplemented(format!("no service {service:?} behind this gateway"))
    })?;
    let principal = state.auth.authenticate(request.headers()).map_err(|s| *s)?;
    if let Err(wait) = state.limiter.check(principal.subject()) {
        debug!(subject = principal.subject(), ?wait, "rate limited");
        return Err(retry_later(
            Code::ResourceExhausted,
            "RATE_LIMITED",
            format!(
                "rate limit of this principal exceeded; retry in {} ms",
                wait.as_millis().max(1)
            ),
            wait,
            &[],
        ));
    }
    let streaming = state.streaming.contains(&path);
    let _permit = if streaming {
        None
    } else {
        Some(
            Arc::clone(&state.in_flight)
                .try_acquire_owned()
                .map_err(|_| {
                    retry_later(
                        Code::Unavailable,
                        "OVERLOADED",
                        "the gateway is at its concurrency limit; retry shortly",
                        Duration::from_millis(50),
                        &[],
                    )
                })?,
        )
    };

    let (mut parts, body) = request.into_parts();
    // One request message (no method of the API streams requests): a 5-byte
    // frame header and at most `max_message_bytes` of message.
    let limit = state.max_message_bytes + 5;
    // A client that trickles its request is cut off like a slow upstream.
    let collected =
        tokio::time::timeout(state.default_deadline, Limited::new(body, limit).collect())
            .await
            .map_err(|_| Status::deadline_exceeded("the request body did not arrive in time"))?;
    let bytes = collected
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                reason(
                    Code::ResourceExhausted,
                    "MESSAGE_TOO_LARGE",
                    format!(
                        "request message larger than {} bytes",
                        state.max_message_bytes
                    ),
                    &[("limit", state.max_message_bytes.to_string())],
                )
            } else {
                Status::cancelled("request body interrupted")
            }
        })?
        .to_bytes();

    let deadline = if parts.headers.contains_key("grpc-timeout") || streaming {
        None
    } else {
        let ms = state.default_deadline.as_millis();
        if let Ok(v) = format!("{ms}m").parse() {
            parts.headers.insert("grpc-timeout", v);
        }
        Some(state.default_deadline)
    };
    // The upstream's span is a child of the gateway's.
    adapters_telemetry::propagation::inject_headers(&tracing::Span::current(), &mut parts.headers);
    // A call that never reached a server is sent again (to another replica:
    // the balancer took the one that failed out of rotation), whatever its
    // method, since nothing ran.
    let call = async {
        let mut attempt = 0;
        loop {
            let outgoing = http::Request::from_parts(
                clone_parts(&parts),
                tonic::body::Body::new(Full::new(bytes.clone())),
            );
            match upstream.clone().oneshot(outgoing).await {
                Err(e) if attempt < MAX_RESENDS && never_reached(e.as_ref()) => {
                    attempt += 1;
                    debug!(service, attempt, error = %e, "call never reached a server; sending it again");
                }
                result => return result,
            }
        }
    };
    let result = match deadline {
        Some(d) => tokio::time::timeout(d, call).await.map_err(|_| {
            Status::deadline_exceeded("the call exceeded the gateway's default deadline")
        })?,
        None => call.await,
    };
    result.map_err(|e| {
        // The channel enforces the call's `grpc-timeout` itself.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
        while let Some(err) = source {
            if err.is::<tonic::TimeoutExpired>() {
                return Status::deadline_exceeded("the call's deadline passed");
            }
            source = err.source();
        }
        warn!(service, error = %e, "upstream unreachable");
        Status::unavailable(format!("{service} is unreachable"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_is_the_streaming_method() {
        let streaming = streaming_methods(proto::FILE_DESCRIPTOR_SET);
        assert!(streaming.contains("/roaming.view.v1.ViewService/WatchReservation"));
        assert!(!streaming.contains("/roaming.reservation.v1.ReservationService/Reserve"));
    }
}
