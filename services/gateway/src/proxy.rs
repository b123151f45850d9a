//! Forwarding by gRPC service path, as a tower stack: each check the gateway
//! makes is one layer ([`stack`] composes them, outermost first), and the
//! innermost service passes the call through to a replica of the owning
//! service (HTTP/2, metadata and deadline preserved; the response body,
//! streaming or not, is relayed as it comes).
//!
//! Every layer answers a refusal itself, as a gRPC status in an HTTP response
//! (their error type is [`Infallible`]), so the layers compose in any order;
//! [`stack`] fixes the one that makes sense. None of them applies
//! back-pressure of its own (a limit refuses instead); readiness is the inner
//! service's.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use adapters_auth::AuthLayer;
use adapters_auth::rate::{PerPrincipalLayer, RateLimiter};
use adapters_grpc::balance::{Upstream, never_reached};
use adapters_grpc::status::{reason, retry_later};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use proto::reasons;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tracing::{debug, warn};

/// What every layer answers with.
pub type Response = http::Response<tonic::body::Body>;

/// A request as the gateway receives it.
pub type Incoming = http::Request<axum::body::Body>;

/// A request whose one message has been read (see [`BodyLimitLayer`]).
pub type Collected = http::Request<Bytes>;

/// Where a call goes, put on the request by [`RouteLayer`].
#[derive(Debug, Clone)]
pub struct Route {
    /// The gRPC service (`package.Service`) of the path.
    pub service: Arc<str>,
    pub upstream: Upstream,
    /// Whether the method streams (no default deadline, not counted against
    /// the concurrency limit: a watch may last for hours).
    pub streaming: bool,
}

/// What the stack is built from.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub upstreams: HashMap<String, Upstream>,
    /// `/package.Service/Method` of every streaming method.
    pub streaming: HashSet<String>,
    pub auth: AuthLayer,
    /// Calls per second per principal, and the burst.
    pub rate_per_second: f64,
    pub burst: u32,
    /// Unary calls in flight at once.
    pub max_concurrent_calls: usize,
    /// Unary calls inside each service (`package.Service`) at once.
    pub admission: HashMap<String, usize>,
    /// How long a call over a service's admission limit may wait its turn.
    pub admission_wait: Duration,
    pub max_message_bytes: usize,
    pub default_deadline: Duration,
}

/// The gateway's fallback route (every path that is not the gateway's own),
/// outermost layer first.
pub fn stack(config: StackConfig) -> BoxCloneSyncService<Incoming, Response, Infallible> {
    let service = ServiceBuilder::new()
        // An unknown service is UNIMPLEMENTED, whoever asks.
        .layer(RouteLayer::new(config.upstreams, config.streaming))
        // The bearer token (the same check every service makes again).
        .layer(config.auth)
        // The caller's rate, per principal (service tokens too: at the edge
        // nobody is exempt).
        .layer(PerPrincipalLayer::new(RateLimiter::new(
            config.rate_per_second,
            config.burst,
        )))
        // Unary calls in flight; over the limit a call is refused at once.
        .layer(ConcurrencyLayer::new(config.max_concurrent_calls))
        // One message of at most `max_message_bytes`, arriving in time.
        .layer(BodyLimitLayer::new(
            config.max_message_bytes,
            config.default_deadline,
        ))
        // Unary calls inside each service; over it a call waits its turn
        // for a bounded time, then is refused. After the body is read, so a
        // client trickling its request holds no service's slot.
        .layer(AdmissionLayer::new(config.admission, config.admission_wait))
        // Unary calls without a deadline get the default one.
        .layer(DefaultDeadlineLayer::new(config.default_deadline))
        // The upstream's span is a child of the gateway's.
        .layer(PropagateLayer)
        .service(Forward);
    BoxCloneSyncService::new(service)
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

fn answer(status: &Status) -> Response {
    status.clone().into_http()
}

/// The inner service made ready by `poll_ready`, leaving a clone in its
/// place (the usual tower move: the ready one serves this call).
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

// --- route ------------------------------------------------------------------

/// Finds the upstream of the call's service and puts its [`Route`] on the
/// request; a service this gateway does not front is `UNIMPLEMENTED`.
#[derive(Debug, Clone)]
pub struct RouteLayer {
    upstreams: Arc<HashMap<String, Upstream>>,
    streaming: Arc<HashSet<String>>,
}

impl RouteLayer {
    pub fn new(upstreams: HashMap<String, Upstream>, streaming: HashSet<String>) -> Self {
        Self {
            upstreams: Arc::new(upstreams),
            streaming: Arc::new(streaming),
        }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Routed<S>;

    fn layer(&self, inner: S) -> Routed<S> {
        Routed {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RouteLayer`] makes.
#[derive(Debug, Clone)]
pub struct Routed<S> {
    inner: S,
    layer: RouteLayer,
}

impl<S, B> Service<http::Request<B>> for Routed<S>
where
    S: Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let service = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map(|(s, _)| s)
            .unwrap_or_default();
        let Some(upstream) = self.layer.upstreams.get(service).cloned() else {
            let status =
                Status::unimplemented(format!("no service {service:?} behind this gateway"));
            return Box::pin(async move { Ok(answer(&status)) });
        };
        let route = Route {
            service: service.into(),
            upstream,
            streaming: self.layer.streaming.contains(path),
        };
        request.extensions_mut().insert(route);
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move { inner.call(request).await })
    }
}

// --- concurrency --------------------------------------------------------------

/// At most `max` unary calls in flight; one more is refused at once with
/// `UNAVAILABLE` (`OVERLOADED`) and a `RetryInfo`, instead of waiting.
/// Streaming calls are not counted.
#[derive(Debug, Clone)]
pub struct ConcurrencyLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLayer {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

impl<S> Layer<S> for ConcurrencyLayer {
    type Service = Concurrency<S>;

    fn layer(&self, inner: S) -> Concurrency<S> {
        Concurrency {
            inner,
            permits: Arc::clone(&self.permits),
        }
    }
}

/// The service [`ConcurrencyLayer`] makes.
#[derive(Debug, Clone)]
pub struct Concurrency<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, B> Service<http::Request<B>> for Concurrency<S>
where
    S: Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let streaming = request
            .extensions()
            .get::<Route>()
            .is_some_and(|r| r.streaming);
        let permit = if streaming {
            None
        } else {
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                let refused = overloaded(
                    "the gateway is at its concurrency limit; retry shortly",
                    Duration::from_millis(50),
                );
                return Box::pin(async move { Ok(refused) });
            };
            Some(permit)
        };
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let response = inner.call(request).await;
            drop(permit);
            response
        })
    }
}

// --- admission per upstream ------------------------------------------------------

/// Admission control per upstream service: at most `slots` unary calls are
/// inside one service at once. A call over it waits its turn (first come,
/// first served) for at most `max_wait`, then is refused with `UNAVAILABLE`
/// (`OVERLOADED`) and a `RetryInfo`. So under overload the service works at
/// the concurrency it sustains, the calls it accepts wait at most `max_wait`
/// longer than they would on a quiet mesh, and the rest are told at once to
/// come back (instead of every call queueing inside the service until its
/// latency is seconds: Little's law with the gateway's 1,024 in flight).
/// Streaming calls are not counted. A service without an entry is not
/// limited here (the global [`ConcurrencyLayer`] still is).
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    slots: Arc<HashMap<Arc<str>, Arc<Semaphore>>>,
    max_wait: Duration,
}

impl AdmissionLayer {
    /// `slots` per gRPC service (`package.Service`), at most
    /// [`Semaphore::MAX_PERMITS`] each.
    pub fn new(slots: impl IntoIterator<Item = (String, usize)>, max_wait: Duration) -> Self {
        Self {
            slots: Arc::new(
                slots
                    .into_iter()
                    .map(|(service, n)| {
                        let n = n.min(Semaphore::MAX_PERMITS);
                        (Arc::from(service), Arc::new(Semaphore::new(n)))
                    })
                    .collect(),
            ),
            max_wait,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AdmissionLayer`] makes.
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

impl<S, B> Service<http::Request<B>> for Admission<S>
where
    S: Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let slots = request
            .extensions()
            .get::<Route>()
            .filter(|r| !r.streaming)
            .and_then(|r| self.layer.slots.get(&r.service))
            .cloned();
        let max_wait = self.layer.max_wait;
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let slot = match slots {
                None => None,
                Some(slots) => match admit(slots, max_wait).await {
                    Some(slot) => Some(slot),
                    // The service is at the concurrency it sustains.
                    None => {
                        return Ok(overloaded(
                            "the service is at capacity; retry shortly",
                            max_wait.max(Duration::from_millis(50)),
                        ));
                    }
                },
            };
            let response = inner.call(request).await;
            drop(slot);
            response
        })
    }
}

/// A slot of `slots`, at once or within `max_wait`; `None` when none came.
async fn admit(slots: Arc<Semaphore>, max_wait: Duration) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
        return Some(slot);
    }
    tokio::time::timeout(max_wait, slots.acquire_owned())
        .await
        .ok()?
        .ok()
}

/// The answer of a limit that refuses for load: `UNAVAILABLE`, `OVERLOADED`,
/// and when to try again.
fn overloaded(message: &str, retry_after: Duration) -> Response {
    answer(&retry_later(
        Code::Unavailable,
        reasons::OVERLOADED,
        message,
        retry_after,
        &[],
    ))
}

// --- body limit -----------------------------------------------------------------

/// Reads the request's one message (no method of the API streams requests):
/// at most `max_message_bytes` (`RESOURCE_EXHAUSTED`, `MESSAGE_TOO_LARGE`),
/// within `within` (`DEADLINE_EXCEEDED`: a client that trickles its request
/// is cut off like a slow upstream).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    max_message_bytes: usize,
    within: Duration,
}

impl BodyLimitLayer {
    pub fn new(max_message_bytes: usize, within: Duration) -> Self {
        Self {
            max_message_bytes,
            within,
        }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            layer: *self,
        }
    }
}

/// The service [`BodyLimitLayer`] makes.
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    layer: BodyLimitLayer,
}

impl<S, B> Service<http::Request<B>> for BodyLimit<S>
where
    S: Service<Collected, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let BodyLimitLayer {
            max_message_bytes,
            within,
        } = self.layer;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // A 5-byte frame header and at most `max_message_bytes` of message.
            let limit = max_message_bytes + 5;
            let Ok(collected) =
                tokio::time::timeout(within, Limited::new(body, limit).collect()).await
            else {
                return Ok(answer(&Status::deadline_exceeded(
                    "the request body did not arrive in time",
                )));
            };
            match collected {
                Ok(body) => {
                    inner
                        .call(http::Request::from_parts(parts, body.to_bytes()))
                        .await
                }
                Err(e)
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some() =>
                {
                    Ok(answer(&reason(
                        Code::ResourceExhausted,
                        reasons::MESSAGE_TOO_LARGE,
                        format!("request message larger than {max_message_bytes} bytes"),
                        &[("limit", max_message_bytes.to_string())],
                    )))
                }
                Err(_) => Ok(answer(&Status::cancelled("request body interrupted"))),
            }
        })
    }
}

// --- default deadline -----------------------------------------------------------

/// A unary call without a deadline (`grpc-timeout`) gets `deadline`: the
/// header is set for the upstream, and the gateway answers
/// `DEADLINE_EXCEEDED` itself when it passes. Streaming calls get none.
#[derive(Debug, Clone, Copy)]
pub struct DefaultDeadlineLayer {
    deadline: Duration,
}

impl DefaultDeadlineLayer {
    pub fn new(deadline: Duration) -> Self {
        Self { deadline }
    }
}

impl<S> Layer<S> for DefaultDeadlineLayer {
    type Service = DefaultDeadline<S>;

    fn layer(&self, inner: S) -> DefaultDeadline<S> {
        DefaultDeadline {
            inner,
            deadline: self.deadline,
        }
    }
}

/// The service [`DefaultDeadlineLayer`] makes.
#[derive(Debug, Clone)]
pub struct DefaultDeadline<S> {
    inner: S,
    deadline: Duration,
}

impl<S, B> Service<http::Request<B>> for DefaultDeadline<S>
where
    S: Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let streaming = request
            .extensions()
            .get::<Route>()
            .is_some_and(|r| r.streaming);
        if streaming || request.headers().contains_key("grpc-timeout") {
            return Box::pin(async move { inner.call(request).await });
        }
        let deadline = self.deadline;
        if let Ok(v) = format!("{}m", deadline.as_millis()).parse() {
            request.headers_mut().insert("grpc-timeout", v);
        }
        Box::pin(async move {
            tokio::time::timeout(deadline, inner.call(request))
                .await
                .unwrap_or_else(|_| {
                    Ok(answer(&Status::deadline_exceeded(
                        "the call exceeded the gateway's default deadline",
                    )))
                })
        })
    }
}

// --- trace propagation ------------------------------------------------------------

/// Puts the current span's trace context on the outgoing headers, so the
/// upstream's span is a child of the gateway's.
#[derive(Debug, Clone, Copy)]
pub struct PropagateLayer;

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Propagate<S> {
        Propagate { inner }
    }
}

/// The service [`PropagateLayer`] makes.
#[derive(Debug, Clone)]
pub struct Propagate<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Propagate<S>
where
    S: Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        // Inside the future: the server polls it within the call's span.
        Box::pin(async move {
            let mut request = request;
            adapters_telemetry::propagation::inject_headers(
                &tracing::Span::current(),
                request.headers_mut(),
            );
            inner.call(request).await
        })
    }
}

// --- forward ----------------------------------------------------------------------

/// Times a call that never reached a server is sent again.
const MAX_RESENDS: usize = 2;

/// The innermost service: sends the call to its [`Route`]'s upstream. A call
/// that never reached a server is sent again (to another replica: the
/// balancer took the one that failed out of rotation), whatever its method,
/// since nothing ran.
#[derive(Debug, Clone, Copy)]
pub struct Forward;

/// A request head to send again (extensions are the server side's own).
fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

impl Service<Collected> for Forward {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Collected) -> Self::Future {
        Box::pin(async move {
            let (parts, bytes) = request.into_parts();
            let Some(route) = parts.extensions.get::<Route>().cloned() else {
                return Ok(answer(&Status::internal("no route for this call")));
            };
            let service = &*route.service;
            let mut attempt = 0;
            let result = loop {
                let outgoing = http::Request::from_parts(
                    clone_parts(&parts),
                    tonic::body::Body::new(Full::new(bytes.clone())),
                );
                match route.upstream.clone().oneshot(outgoing).await {
                    Err(e) if attempt < MAX_RESENDS && never_reached(e.as_ref()) => {
                        attempt += 1;
                        debug!(service, attempt, error = %e, "call never reached a server; sending it again");
                    }
                    result => break result,
                }
            };
            Ok(result.map_or_else(
                |e| {
                    // The channel enforces the call's `grpc-timeout` itself.
                    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
                    while let Some(err) = source {
                        if err.is::<tonic::TimeoutExpired>() {
                            return deadline_passed();
                        }
                        source = err.source();
                    }
                    warn!(service, error = %e, "upstream unreachable");
                    answer(&Status::unavailable(format!("{service} is unreachable")))
                },
                deadline_passed_upstream,
            ))
        })
    }
}

/// The same cause, the same code, whichever timer fires first. The call's
/// deadline travels upstream as `grpc-timeout`, and tonic's server answers
/// its own expiry with `CANCELLED` "Timeout expired"; when that answer
/// arrived before the gateway's timer fired (a race of two timers set to
/// the same instant), the caller saw `CANCELLED` where the same call a
/// moment later saw `DEADLINE_EXCEEDED`. Such an answer becomes the
/// gateway's own.
fn deadline_passed_upstream(response: Response) -> Response {
    match Status::from_header_map(response.headers()) {
        Some(s) if s.code() == Code::Cancelled && s.message() == TONIC_SERVER_TIMEOUT => {
            deadline_passed()
        }
        _ => response,
    }
}

/// The answer to a call whose own deadline passed, whichever timer saw it.
fn deadline_passed() -> Response {
    answer(&Status::deadline_exceeded("the call's deadline passed"))
}

/// The message of tonic's server-side deadline expiry (`TimeoutExpired`).
const TONIC_SERVER_TIMEOUT: &str = "Timeout expired";

#[cfg(test)]
mod tests;
