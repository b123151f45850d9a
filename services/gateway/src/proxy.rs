//! Forwarding by gRPC service path, as a tower stack: each check the gateway
//! makes is one layer ([`stack`] composes them, outermost first), and the
//! innermost service, [`Forward`], passes the call through to a replica of
//! the owning service (HTTP/2, metadata and deadline preserved; the response
//! body, streaming or not, is relayed as it comes).
//!
//! One file per layer: `Foo<S>`, its `FooLayer` and its tests. `call` holds
//! what they share; `tests` the stack as a whole.
//!
//! Every layer answers a refusal itself, as a gRPC status in an HTTP response
//! (their error type is [`Infallible`]), so the layers compose in any order;
//! [`stack`] fixes the one that makes sense. None of them applies
//! back-pressure of its own (a limit refuses instead); readiness is the inner
//! service's.

mod admission;
mod body_limit;
mod call;
mod concurrency;
mod default_deadline;
mod fair_share;
mod forward;
mod propagate;
mod route;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use adapters_auth::AuthLayer;
use adapters_auth::rate::{PerPrincipalLayer, RateLimiter};
use adapters_grpc::balance::Upstream;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder};

pub use admission::{Admission, AdmissionLayer};
pub use body_limit::{BodyLimit, BodyLimitLayer};
pub use call::{Collected, Incoming, Response};
pub use concurrency::{Concurrency, ConcurrencyLayer};
pub use default_deadline::{DefaultDeadline, DefaultDeadlineLayer};
pub use fair_share::{FairShare, FairShareLayer};
pub use forward::{Forward, IDEMPOTENT_BY_REQUEST_ID, Outgoing};
pub use propagate::{Propagate, PropagateLayer};
pub use route::{Route, RouteLayer, Routed, streaming_methods};

/// What the stack is built from; `C` is the channel to a service (the
/// gateway's is a balanced [`Upstream`]).
#[derive(Debug, Clone)]
pub struct StackConfig<C = Upstream> {
    /// The channel to each service the gateway fronts, by gRPC service name
    /// (`package.Service`).
    pub upstreams: HashMap<String, C>,
    /// `/package.Service/Method` of every streaming method.
    pub streaming: HashSet<String>,
    pub auth: AuthLayer,
    /// Calls per second per principal, and the burst.
    pub rate_per_second: f64,
    pub burst: u32,
    /// Unary calls in flight at once.
    pub max_concurrent_calls: usize,
    /// Unary calls one principal may have in flight at once.
    pub max_calls_per_principal: usize,
    /// Unary calls inside each service (`package.Service`) at once, and how
    /// long a call over it may wait its turn.
    pub admission: AdmissionLayer,
    pub max_message_bytes: usize,
    /// How long after its headers a request's body may take.
    pub request_body_timeout: Duration,
    pub default_deadline: Duration,
    /// The longest deadline a unary call may have.
    pub max_deadline: Duration,
}

/// The gateway's fallback route (every path that is not the gateway's own),
/// outermost layer first.
pub fn stack<C>(config: StackConfig<C>) -> BoxCloneSyncService<Incoming, Response, Infallible>
where
    C: Service<Outgoing, Response = Response> + Clone + Send + Sync + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
{
    let services = config.upstreams.keys().cloned().collect();
    let service = ServiceBuilder::new()
        // An unknown service is UNIMPLEMENTED, whoever asks.
        .layer(RouteLayer::new(services, config.streaming))
        // The bearer token (the same check every service makes again).
        .layer(config.auth)
        // The caller's rate, per principal (service tokens too: at the edge
        // nobody is exempt).
        .layer(PerPrincipalLayer::new(RateLimiter::new(
            config.rate_per_second,
            config.burst,
        )))
        // The caller's unary calls in flight, from here to the answer: one
        // principal cannot take everyone's places below.
        .layer(FairShareLayer::new(config.max_calls_per_principal))
        // One message of at most `max_message_bytes`, well framed, arriving
        // within `request_body_timeout` of the headers. Before the places
        // below: a client trickling its request holds only its own share.
        .layer(BodyLimitLayer::new(
            config.max_message_bytes,
            config.request_body_timeout,
        ))
        // Unary calls in flight; over the limit a call is refused at once.
        .layer(ConcurrencyLayer::new(config.max_concurrent_calls))
        // Unary calls inside each service; over it a call waits its turn
        // for a bounded time, then is refused.
        .layer(config.admission)
        // A malformed grpc-timeout is refused, a unary call's capped at
        // `max_deadline`, and unary calls without one get the default.
        .layer(DefaultDeadlineLayer::new(
            config.default_deadline,
            config.max_deadline,
        ))
        // The upstream's span is a child of the gateway's.
        .layer(PropagateLayer)
        // To a replica; sent again when it never reached one.
        .service(Forward::new(config.upstreams));
    BoxCloneSyncService::new(service)
}
