//! Client-side balancing over the replicas of one service that takes out of
//! rotation what is dead and probes it back in.
//!
//! tower's power-of-two-choices balancer (least pending requests) runs over a
//! discovery stream. What feeds the stream is the health of each replica:
//!
//! - a `grpc.health.v1.Health/Watch` stream per replica, on the same HTTP/2
//!   connection the calls use: `NOT_SERVING` (a replica draining after
//!   SIGTERM) or a broken stream (a replica killed) takes it out at once; a
//!   replica that cannot be reached is probed again every 100 ms to 1 s and
//!   comes back with its first `SERVING`;
//! - the calls themselves (outlier ejection): a transport error takes the
//!   replica out and makes its watcher probe again; [`EJECT_AFTER`] answers
//!   `UNAVAILABLE` in a row eject it for one second, doubling on each repeat
//!   up to half a minute.
//!
//! When nothing is left in rotation every replica is used (a guess beats
//! refusing every call, and it is how calls find a mesh that is still
//! starting). A call that never reached a server ([`never_reached`]) may be
//! sent again whatever its method: the gateway does that, the internal clients
//! retry `UNAVAILABLE` anyway ([`crate::resilience`]).

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::util::BoxService;
use tower::{BoxError, Service};
use tracing::{info, warn};

type Request = http::Request<Body>;
type Response = http::Response<Body>;

/// `UNAVAILABLE` answers in a row that eject a replica.
pub const EJECT_AFTER: u32 = 3;
const BASE_EJECTION: Duration = Duration::from_secs(1);
const MAX_EJECTION: Duration = Duration::from_secs(30);
const MIN_PROBE: Duration = Duration::from_millis(100);
const MAX_PROBE: Duration = Duration::from_secs(1);

/// Calls queued for the balancer at most (beyond: back-pressure).
const QUEUE: usize = 1024;

/// The replicas of one service as one client transport (what a tonic client
/// is built on). Cheap to clone: the clones share connections and health.
#[derive(Clone)]
pub struct Upstream(Inner);

#[derive(Clone)]
enum Inner {
    /// One address: nothing to balance (the channel reconnects by itself).
    One { address: String, channel: Channel },
    Many {
        balanced: Buffer<Request, BoxFuture<'static, Result<Response, BoxError>>>,
        pool: Arc<Pool>,
    },
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::One { address, .. } => f.debug_tuple("Upstream").field(address).finish(),
            Inner::Many { pool, .. } => f
                .debug_struct("Upstream")
                .field("service", &pool.service)
                .field("in_rotation", &pool.in_rotation())
                .finish(),
        }
    }
}

fn endpoint(address: &str) -> Result<Endpoint, tonic::transport::Error> {
    Endpoint::from_shared(address.to_owned()).map(|e| {
        e.connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            // A replica that hangs without closing its connection is found
            // by its keep-alive pings.
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
    })
}

/// Whether [`Upstream::new`] accepts `addresses`: the same parse, without
/// channels or tasks (no runtime needed, nothing dialled). The error names
/// the address it refuses.
///
/// # Errors
/// The first address that is no URI an endpoint can be built from.
pub fn check_addresses(addresses: &[String]) -> Result<(), String> {
    for a in addresses {
        endpoint(a).map_err(|e| {
            let cause =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            format!("{a:?}: {cause}")
        })?;
    }
    Ok(())
}

impl Upstream {
    /// Lazily connecting channels to `addresses`, the replicas of `service`
    /// (its health service name, e.g. `roaming.payment.v1.PaymentService`).
    /// Nothing is dialled before the first call or probe, so services start in
    /// any order. Must be called within a tokio runtime (it spawns the
    /// watchers and the balancer).
    pub fn new(service: &str, addresses: &[String]) -> Result<Self, tonic::transport::Error> {
        let channels = addresses
            .iter()
            .map(|a| endpoint(a).map(|e| (a.clone(), e.connect_lazy())))
            .collect::<Result<Vec<_>, _>>()?;
        if let [(address, channel)] = channels.as_slice() {
            return Ok(Self(Inner::One {
                address: address.clone(),
                channel: channel.clone(),
            }));
        }
        let (changes, discovered) = mpsc::unbounded_channel();
        let pool = Arc::new(Pool {
            service: service.to_owned(),
            changes,
            state: Mutex::new(State {
                replicas: channels
                    .iter()
                    .map(|(address, channel)| Replica {
                        address: address.clone(),
                        channel: channel.clone(),
                        healthy: true,
                        ejected_until: None,
                        ejections: 0,
                        unavailable_in_a_row: 0,
                        in_rotation: false,
                        recheck: Arc::default(),
                    })
                    .collect(),
            }),
            tasks: Mutex::default(),
        });
        // Everything starts in rotation: the watchers take out what is dead.
        pool.update(|_| {});
        for index in 0..channels.len() {
            let task = tokio::spawn(watch(Arc::downgrade(&pool), index));
            pool.tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(task.abort_handle());
        }
        let discover = tokio_stream::wrappers::UnboundedReceiverStream::new(discovered)
            .map(Ok::<_, Infallible>);
        let balance = Balance::new(PendingRequestsDiscover::new(
            discover,
            CompleteOnResponse::default(),
        ));
        let balanced = Buffer::new(BoxService::new(balance), QUEUE);
        Ok(Self(Inner::Many { balanced, pool }))
    }

    /// The addresses in rotation now (all of them for a single address).
    pub fn in_rotation(&self) -> Vec<String> {
        match &self.0 {
            Inner::One { address, .. } => vec![address.clone()],
            Inner::Many { pool, .. } => pool.in_rotation(),
        }
    }
}

impl Service<Request> for Upstream {
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.0 {
            Inner::One { channel, .. } => channel.poll_ready(cx).map_err(Into::into),
            Inner::Many { balanced, .. } => balanced.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match &mut self.0 {
            Inner::One { channel, .. } => {
                channel.call(request).map(|r| r.map_err(Into::into)).boxed()
            }
            Inner::Many { balanced, .. } => balanced.call(request).boxed(),
        }
    }
}

/// Whether `error` (from a call on an [`Upstream`] or a channel) says the
/// request never reached a server, so sending it again cannot run it twice:
/// the connection was refused or the host unreachable, or the server refused
/// the stream
/// before processing it (HTTP/2 `REFUSED_STREAM`, e.g. after its GOAWAY).
pub fn never_reached(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            )
        {
            return true;
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>()
            && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
        {
            return true;
        }
        source = e.source();
    }
    false
}

struct Pool {
    service: String,
    changes: mpsc::UnboundedSender<Change<usize, Observed>>,
    state: Mutex<State>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

struct State {
    replicas: Vec<Replica>,
}

struct Replica {
    address: String,
    channel: Channel,
    /// What the last probe, watch message or call said.
    healthy: bool,
    ejected_until: Option<Instant>,
    ejections: u32,
    unavailable_in_a_row: u32,
    in_rotation: bool,
    /// Wakes the watcher to probe again (a call saw a transport error).
    recheck: Arc<Notify>,
}

impl Pool {
    fn in_rotation(&self) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .replicas
            .iter()
            .filter(|r| r.in_rotation)
            .map(|r| r.address.clone())
            .collect()
    }

    /// Applies `change`, then tells the balancer what entered or left
    /// rotation. Under the lock, so changes reach it in the order they were
    /// decided, and before any call issued after this returns.
    fn update(self: &Arc<Self>, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state);
        let now = Instant::now();
        let eligible = |r: &Replica| r.healthy && r.ejected_until.is_none_or(|t| t <= now);
        let any = state.replicas.iter().any(eligible);
        for (index, replica) in state.replicas.iter_mut().enumerate() {
            // Nothing eligible: every replica (see the module docs).
            let wanted = !any || eligible(replica);
            if wanted == replica.in_rotation {
                continue;
            }
            replica.in_rotation = wanted;
            let change = if wanted {
                info!(service = %self.service, address = %replica.address, "replica in rotation");
                Change::Insert(
                    index,
                    Observed {
                        channel: replica.channel.clone(),
                        pool: Arc::downgrade(self),
                        index,
                    },
                )
            } else {
                warn!(service = %self.service, address = %replica.address, "replica out of rotation");
                Change::Remove(index)
            };
            // The receiver lives as long as the balancer; gone means no calls.
            let _ = self.changes.send(change);
        }
    }

    fn set_healthy(self: &Arc<Self>, index: usize, healthy: bool) {
        self.update(|s| {
            if let Some(r) = s.replicas.get_mut(index) {
                r.healthy = healthy;
                if healthy {
                    r.unavailable_in_a_row = 0;
                }
            }
        });
    }

    /// A call's outcome on replica `index`.
    fn observe(self: &Arc<Self>, index: usize, outcome: Outcome) {
        let mut eject_for = None;
        let mut recheck = None;
        self.update(|s| {
            let Some(r) = s.replicas.get_mut(index) else {
                return;
            };
            match outcome {
                Outcome::Answered => {
                    r.unavailable_in_a_row = 0;
                    if r.ejected_until.is_none() {
                        r.ejections = 0;
                    }
                }
                Outcome::Unavailable => {
                    r.unavailable_in_a_row += 1;
                    if r.unavailable_in_a_row >= EJECT_AFTER && r.ejected_until.is_none() {
                        let d = (BASE_EJECTION * 2u32.saturating_pow(r.ejections.min(5)))
                            .min(MAX_EJECTION);
                        r.ejections += 1;
                        r.unavailable_in_a_row = 0;
                        r.ejected_until = Some(Instant::now() + d);
                        eject_for = Some(d);
                    }
                }
                Outcome::TransportError => {
                    r.healthy = false;
                    recheck = Some(Arc::clone(&r.recheck));
                }
            }
        });
        if let Some(recheck) = recheck {
            recheck.notify_one();
        }
        if let Some(d) = eject_for {
            let pool = Arc::downgrade(self);
            let task = tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(pool) = pool.upgrade() {
                    pool.update(|s| {
                        if let Some(r) = s.replicas.get_mut(index) {
                            r.ejected_until = None;
                        }
                    });
                }
            });
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            tasks.retain(|t| !t.is_finished());
            tasks.push(task.abort_handle());
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Answered,
    Unavailable,
    TransportError,
}

/// Keeps replica `index`'s health up to date until the pool is dropped.
async fn watch(pool: Weak<Pool>, index: usize) {
    let Some((service, channel, recheck)) = pool.upgrade().and_then(|p| {
        let state = p.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .replicas
            .get(index)
            .map(|r| (p.service.clone(), r.channel.clone(), Arc::clone(&r.recheck)))
    }) else {
        return;
    };
    let set = |healthy: bool| {
        if let Some(pool) = pool.upgrade() {
            pool.set_healthy(index, healthy);
        }
    };
    let mut probe = MIN_PROBE;
    loop {
        let mut client = HealthClient::new(channel.clone());
        let request = HealthCheckRequest {
            service: service.clone(),
        };
        match client.watch(request).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let mut answered = false;
                loop {
                    let message = tokio::select! {
                        m = stream.message() => m,
                        () = recheck.notified() => break,
                    };
                    match message {
                        Ok(Some(m)) if m.status() == ServingStatus::Serving => {
                            answered = true;
                            probe = MIN_PROBE;
                            set(true);
                        }
                        // Draining (or not ready): out of rotation, and the
                        // stream is let go, so it does not hold the server's
                        // drain open; probed again like a dead replica.
                        Ok(Some(_)) => {
                            answered = false;
                            break;
                        }
                        // The stream ended (connection closed, replaced after
                        // its maximum age, or the server died): watch again at
                        // once; the next attempt tells which.
                        Ok(None) | Err(_) => break,
                    }
                }
                if answered {
                    continue;
                }
                // Not serving, or a stream that ended before its first
                // answer.
                set(false);
            }
            // A server without the health service (or without this name)
            // is taken at its word that it serves: its calls still eject it.
            Err(status) if status.code() == tonic::Code::Unimplemented => set(true),
            // Unreachable, or the server does not know this name.
            Err(_) => set(false),
        }
        tokio::select! {
            () = tokio::time::sleep(probe) => {}
            () = recheck.notified() => {}
        }
        probe = (probe * 2).min(MAX_PROBE);
    }
}

/// A replica's channel as the balancer sees it: every outcome is reported
/// to the pool.
struct Observed {
    channel: Channel,
    pool: Weak<Pool>,
    index: usize,
}

impl Service<Request> for Observed {
    type Response = Response;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Response, tonic::transport::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let call = self.channel.call(request);
        let pool = self.pool.clone();
        let index = self.index;
        async move {
            let result = call.await;
            let outcome = match &result {
                Err(_) => Outcome::TransportError,
                // Errors come trailers-only: the status is in the headers.
                Ok(r) if r.headers().get("grpc-status").is_some_and(|s| s == "14") => {
                    Outcome::Unavailable
                }
                Ok(_) => Outcome::Answered,
            };
            if let Some(pool) = pool.upgrade() {
                pool.observe(index, outcome);
            }
            result
        }
        .boxed()
    }
}
