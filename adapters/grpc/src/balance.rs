//! Client-side balancing over the replicas of one service that takes out of
//! rotation what is dead and probes it back in.
//!
//! tower's power-of-two-choices balancer (least pending requests) runs over a
//! discovery stream. What feeds the stream is which replicas there are and
//! the health of each:
//!
//! - the replicas: an address whose host is an IP (`http://10.0.0.7:50051`)
//!   is one replica for good; one whose host is a name
//!   (`http://reservation:50051`) is resolved by DNS as `/etc/resolv.conf`
//!   says (search domains, `ndots`), and each address it resolves to is a
//!   replica (a Kubernetes headless Service names every ready pod). The name
//!   is resolved again every interval ([`Discovery`]) and, at most every
//!   250 ms, soon after one of its replicas has a transport error or stops
//!   answering its watch. The first answer's replicas start in rotation (as
//!   IP addresses do); an address that appears later is added and joins the
//!   rotation with its first `SERVING`; one that is gone is dropped (its
//!   connection and watch with it). A failed lookup or an empty answer keeps
//!   the replicas known: a DNS hiccup never leaves a service with none. Each
//!   such replica dials its IP but its calls carry the name as their
//!   `:authority`;
//! - a `grpc.health.v1.Health/Watch` stream per replica, on the same HTTP/2
//!   connection the calls use: `NOT_SERVING` (a replica draining after
//!   SIGTERM) or a broken stream (a replica killed) takes it out at once; a
//!   replica that cannot be reached is probed again every 100 ms to 1 s and
//!   comes back with its first `SERVING`. A replica that hangs with its
//!   connection open (SIGSTOP) stops answering the connection's pings
//!   ([`KEEP_ALIVE_INTERVAL`], [`KEEP_ALIVE_TIMEOUT`]): the connection is
//!   closed, the watch breaks, and it is out within 1.5 s, whatever the
//!   deadlines of the calls waiting on it;
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
use std::net::IpAddr;
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

mod discovery;

use crate::tls::TlsConnect;

pub use discovery::Discovery;
use discovery::{Lookup, Named, Source};

type Request = http::Request<Body>;
type Response = http::Response<Body>;

/// `UNAVAILABLE` answers in a row that eject a replica.
pub const EJECT_AFTER: u32 = 3;
const BASE_EJECTION: Duration = Duration::from_secs(1);
const MAX_EJECTION: Duration = Duration::from_secs(30);
const MIN_PROBE: Duration = Duration::from_millis(100);
const MAX_PROBE: Duration = Duration::from_secs(1);

/// How often each replica's connection is pinged, and how long an answer
/// may take before the connection is given up.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(500);
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Calls queued for the balancer at most (beyond: back-pressure).
const QUEUE: usize = 1024;

/// Why an [`Upstream`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("DNS resolver: {0}")]
    Resolver(String),
}

/// The replicas of one service as one client transport (what a tonic client
/// is built on). Cheap to clone: the clones share connections and health.
#[derive(Clone)]
pub struct Upstream(Inner);

#[derive(Clone)]
enum Inner {
    /// One IP address: nothing to balance (the channel reconnects by itself).
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
                .field("in_rotation", &pool.addresses(|r| r.in_rotation))
                .finish(),
        }
    }
}

fn endpoint(address: &str) -> Result<Endpoint, tonic::transport::Error> {
    Endpoint::from_shared(address.to_owned()).map(|e| {
        e.connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            // A replica that hangs without closing its connection (a
            // process under SIGSTOP, a partitioned node) is found by its
            // keep-alive pings: an unanswered ping closes the connection,
            // which takes the replica out of rotation (its health watch
            // breaks) within 1.5 s, whatever the deadlines of the calls on
            // it (the gateway's default is 10 s). Two pings a second per
            // connection is nothing next to the calls it carries.
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
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
        discovery::source(a).map_err(|e| match e {
            UpstreamError::Address { address, reason } => format!("{address:?}: {reason}"),
            UpstreamError::Resolver(reason) => format!("{a:?}: {reason}"),
        })?;
    }
    Ok(())
}

/// Whether `address` is an `https://` URL (any case: URI schemes are).
pub fn is_https(address: &str) -> bool {
    address
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// How a channel to `endpoint` dials: `https://` through `tls`.
fn channel(endpoint: &Endpoint, tls: Option<&TlsConnect>) -> Channel {
    match tls {
        Some(tls)
            if endpoint
                .uri()
                .scheme_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("https")) =>
        {
            endpoint.connect_with_connector_lazy(tls.clone())
        }
        _ => endpoint.connect_lazy(),
    }
}

impl Upstream {
    /// [`Upstream::with_tls`] without TLS: every address `http://`.
    ///
    /// # Errors
    /// As there (an `https://` address is refused).
    pub fn new(
        service: &str,
        addresses: &[String],
        discovery: &Discovery,
    ) -> Result<Self, UpstreamError> {
        Self::with_tls(service, addresses, discovery, None)
    }

    /// Lazily connecting channels to `addresses`, the replicas of `service`
    /// (its health service name, e.g. `roaming.payment.v1.PaymentService`);
    /// host names among them are resolved as `discovery` says, in the
    /// background (calls wait for the first answer). Nothing is dialled
    /// before the first call or probe, so services start in any order. Must
    /// be called within a tokio runtime (it spawns the watchers, the
    /// resolution and the balancer). An `https://` address is dialled
    /// through `tls` (mutual TLS, the server proving the name `tls` was made
    /// for), an `http://` one in plaintext.
    ///
    /// # Errors
    /// An address that is no URI, an `https://` one without `tls`, or no
    /// DNS resolver.
    pub fn with_tls(
        service: &str,
        addresses: &[String],
        discovery: &Discovery,
        tls: Option<TlsConnect>,
    ) -> Result<Self, UpstreamError> {
        if tls.is_none()
            && let Some(a) = addresses.iter().find(|a| is_https(a))
        {
            return Err(UpstreamError::Address {
                address: a.clone(),
                reason: "an https:// address needs this process's mesh TLS identity (mesh_tls_dir)"
                    .to_owned(),
            });
        }
        let sources = addresses
            .iter()
            .map(|a| discovery::source(a))
            .collect::<Result<Vec<_>, _>>()?;
        let lookup = if sources.iter().any(|s| matches!(s, Source::Named(_))) {
            Some(discovery.lookup().map_err(UpstreamError::Resolver)?)
        } else {
            None
        };
        Ok(Self::with_lookup(
            service,
            sources,
            lookup,
            discovery.interval(),
            tls,
        ))
    }

    fn with_lookup(
        service: &str,
        sources: Vec<Source>,
        lookup: Option<Lookup>,
        interval: Duration,
        tls: Option<TlsConnect>,
    ) -> Self {
        if let [Source::Fixed { address, endpoint }] = sources.as_slice() {
            return Self(Inner::One {
                address: address.clone(),
                channel: channel(endpoint, tls.as_ref()),
            });
        }
        let (changes, discovered) = mpsc::unbounded_channel();
        let pool = Arc::new(Pool {
            service: service.to_owned(),
            tls,
            changes,
            state: Mutex::default(),
            tasks: Mutex::default(),
            resolve_now: Arc::new(Notify::new()),
        });
        let mut hosts = Vec::new();
        {
            let mut state = pool.state.lock().unwrap_or_else(PoisonError::into_inner);
            for (index, source) in sources.into_iter().enumerate() {
                match source {
                    // Everything starts in rotation: the watchers take out
                    // what is dead.
                    Source::Fixed { address, endpoint } => {
                        pool.add(&mut state, index, address, None, &endpoint, true);
                    }
                    Source::Named(named) => hosts.push((index, named)),
                }
            }
            pool.reconcile(&mut state);
        }
        if let Some(lookup) = lookup.filter(|_| !hosts.is_empty()) {
            let task = tokio::spawn(discovery::rediscover(
                Arc::downgrade(&pool),
                Arc::clone(&pool.resolve_now),
                hosts,
                lookup,
                interval,
            ));
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
        Self(Inner::Many { balanced, pool })
    }

    /// The addresses in rotation now (all of them for a single IP address).
    /// A replica found by DNS shows as the address it dials
    /// (`http://10.0.0.7:50051`).
    pub fn in_rotation(&self) -> Vec<String> {
        match &self.0 {
            Inner::One { address, .. } => vec![address.clone()],
            Inner::Many { pool, .. } => pool.addresses(|r| r.in_rotation),
        }
    }

    /// Every replica known now, in rotation or not.
    pub fn replicas(&self) -> Vec<String> {
        match &self.0 {
            Inner::One { address, .. } => vec![address.clone()],
            Inner::Many { pool, .. } => pool.addresses(|_| true),
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
/// the connection was refused or the host unreachable, the server refused
/// the stream before processing it (HTTP/2 `REFUSED_STREAM`, or a GOAWAY
/// whose last stream id is below it: a server closing an aged connection),
/// or the connection closed before the request was written to it (hyper's
/// "canceled").
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
            && (h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                // A GOAWAY fails only the streams above its last stream id:
                // ones the server never processed (RFC 9113, 6.8).
                || (h2.is_go_away() && h2.is_remote()))
        {
            return true;
        }
        // The connection closed before the request was written to it.
        if let Some(hyper) = e.downcast_ref::<hyper::Error>()
            && hyper.is_canceled()
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// A replica's key in the balancer: never reused, so a replica that goes and
/// one that comes are never confused.
type Id = u64;

struct Pool {
    service: String,
    /// How `https://` replicas are dialled.
    tls: Option<TlsConnect>,
    changes: mpsc::UnboundedSender<Change<Id, Observed>>,
    state: Mutex<State>,
    /// Ejection timers and the resolution.
    tasks: Mutex<Vec<AbortHandle>>,
    /// Asks for a resolution soon (a replica of a name failed).
    resolve_now: Arc<Notify>,
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
        for replica in &self
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .replicas
        {
            replica.watcher.abort();
        }
    }
}

#[derive(Default)]
struct State {
    replicas: Vec<Replica>,
    next_id: Id,
}

impl State {
    fn replica_mut(&mut self, id: Id) -> Option<&mut Replica> {
        self.replicas.iter_mut().find(|r| r.id == id)
    }
}

struct Replica {
    id: Id,
    /// The configured address it comes from (its index).
    source: usize,
    /// What it dials.
    address: String,
    /// The IP its name resolved to; `None` for an IP address configured.
    resolved: Option<IpAddr>,
    channel: Channel,
    /// What the last probe, watch message or call said.
    healthy: bool,
    ejected_until: Option<Instant>,
    ejections: u32,
    unavailable_in_a_row: u32,
    in_rotation: bool,
    /// Wakes the watcher to probe again (a call saw a transport error).
    recheck: Arc<Notify>,
    watcher: AbortHandle,
}

impl Pool {
    fn addresses(&self, which: impl Fn(&Replica) -> bool) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .replicas
            .iter()
            .filter(|r| which(r))
            .map(|r| r.address.clone())
            .collect()
    }

    /// Adds a replica and starts its watcher; [`Pool::reconcile`] then puts
    /// it in rotation if it is wanted.
    fn add(
        self: &Arc<Self>,
        state: &mut State,
        source: usize,
        address: String,
        resolved: Option<IpAddr>,
        endpoint: &Endpoint,
        healthy: bool,
    ) {
        let id = state.next_id;
        state.next_id += 1;
        let channel = channel(endpoint, self.tls.as_ref());
        let recheck = Arc::new(Notify::new());
        let watcher = tokio::spawn(watch(
            Arc::downgrade(self),
            id,
            self.service.clone(),
            channel.clone(),
            Arc::clone(&recheck),
        ));
        state.replicas.push(Replica {
            id,
            source,
            address,
            resolved,
            channel,
            healthy,
            ejected_until: None,
            ejections: 0,
            unavailable_in_a_row: 0,
            in_rotation: false,
            recheck,
            watcher: watcher.abort_handle(),
        });
    }

    /// `named` (configured address `source`) resolved to `ips` (not empty):
    /// replicas at addresses gone are dropped, ones at new addresses added.
    /// The first answer's replicas start in rotation (as configured IPs do);
    /// later ones join with their first `SERVING`.
    fn resolved(self: &Arc<Self>, source: usize, named: &Named, ips: &[IpAddr]) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let first = !state.replicas.iter().any(|r| r.source == source);
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.replicas)
            .into_iter()
            .partition(|r| r.source == source && r.resolved.is_some_and(|ip| !ips.contains(&ip)));
        state.replicas = kept;
        for replica in gone {
            replica.watcher.abort();
            if replica.in_rotation {
                let _ = self.changes.send(Change::Remove(replica.id));
            }
            info!(service = %self.service, name = %named.address, address = %replica.address, "replica gone from DNS");
        }
        for &ip in ips {
            if state
                .replicas
                .iter()
                .any(|r| r.source == source && r.resolved == Some(ip))
            {
                continue;
            }
            match named.replica(ip) {
                Ok((address, endpoint)) => {
                    info!(service = %self.service, name = %named.address, %address, "replica found by DNS");
                    self.add(&mut state, source, address, Some(ip), &endpoint, first);
                }
                Err(error) => {
                    warn!(service = %self.service, name = %named.address, %ip, %error, "resolved address unusable");
                }
            }
        }
        self.reconcile(&mut state);
    }

    /// Applies `change`, then tells the balancer what entered or left
    /// rotation.
    fn update(self: &Arc<Self>, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state);
        self.reconcile(&mut state);
    }

    /// Tells the balancer what entered or left rotation. Under the lock, so
    /// changes reach it in the order they were decided, and before any call
    /// issued after this returns.
    fn reconcile(self: &Arc<Self>, state: &mut State) {
        let now = Instant::now();
        let eligible = |r: &Replica| r.healthy && r.ejected_until.is_none_or(|t| t <= now);
        let any = state.replicas.iter().any(eligible);
        for replica in &mut state.replicas {
            // Nothing eligible: every replica (see the module docs).
            let wanted = !any || eligible(replica);
            if wanted == replica.in_rotation {
                continue;
            }
            replica.in_rotation = wanted;
            let change = if wanted {
                info!(service = %self.service, address = %replica.address, "replica in rotation");
                Change::Insert(
                    replica.id,
                    Observed {
                        channel: replica.channel.clone(),
                        pool: Arc::downgrade(self),
                        id: replica.id,
                    },
                )
            } else {
                warn!(service = %self.service, address = %replica.address, "replica out of rotation");
                Change::Remove(replica.id)
            };
            // The receiver lives as long as the balancer; gone means no calls.
            let _ = self.changes.send(change);
        }
    }

    fn set_healthy(self: &Arc<Self>, id: Id, healthy: bool) {
        let mut failed = false;
        self.update(|s| {
            if let Some(r) = s.replica_mut(id) {
                failed = r.healthy && !healthy && r.resolved.is_some();
                r.healthy = healthy;
                if healthy {
                    r.unavailable_in_a_row = 0;
                }
            }
        });
        if failed {
            // Perhaps it is gone from DNS too.
            self.resolve_now.notify_one();
        }
    }

    /// A call's outcome on replica `id`.
    fn observe(self: &Arc<Self>, id: Id, outcome: Outcome) {
        let mut eject_for = None;
        let mut recheck = None;
        let mut resolve = false;
        self.update(|s| {
            let Some(r) = s.replica_mut(id) else {
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
                    resolve = r.resolved.is_some();
                }
            }
        });
        if let Some(recheck) = recheck {
            recheck.notify_one();
        }
        if resolve {
            self.resolve_now.notify_one();
        }
        if let Some(d) = eject_for {
            let pool = Arc::downgrade(self);
            let task = tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(pool) = pool.upgrade() {
                    pool.update(|s| {
                        if let Some(r) = s.replica_mut(id) {
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

/// Keeps replica `id`'s health up to date until the pool is dropped or the
/// replica is (which aborts this task).
async fn watch(pool: Weak<Pool>, id: Id, service: String, channel: Channel, recheck: Arc<Notify>) {
    let set = |healthy: bool| {
        if let Some(pool) = pool.upgrade() {
            pool.set_healthy(id, healthy);
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
    id: Id,
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
        let id = self.id;
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
                pool.observe(id, outcome);
            }
            result
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    type Answer = Result<Vec<IpAddr>, String>;

    /// A lookup that answers what `answer` holds when called, counted.
    fn scripted(answer: &Arc<Mutex<Answer>>, lookups: &Arc<AtomicUsize>) -> Lookup {
        let (answer, lookups) = (Arc::clone(answer), Arc::clone(lookups));
        Arc::new(move |_host: String| {
            lookups.fetch_add(1, Ordering::SeqCst);
            let answer = answer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            async move { answer }.boxed()
        })
    }

    /// Waits until `n` lookups after the `seen`th have started, so the answer
    /// to the `seen + n - 1`th was applied.
    async fn lookups_past(lookups: &AtomicUsize, seen: usize, n: usize) -> usize {
        let started = Instant::now();
        while lookups.load(Ordering::SeqCst) < seen + n {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no lookup within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lookups.load(Ordering::SeqCst)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    /// Nothing listens on port 9 there: the watchers find the replicas dead,
    /// which changes nothing about which replicas are known.
    fn upstream(lookup: Lookup, interval: Duration) -> Upstream {
        let source = discovery::source("http://svc.test:9").expect("a URL");
        Upstream::with_lookup("svc", vec![source], Some(lookup), interval, None)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_or_empty_lookup_keeps_the_replicas_known() {
        let answer = Arc::new(Mutex::new(Ok(vec![ip(2), ip(3)])));
        let lookups = Arc::new(AtomicUsize::new(0));
        let set = |a: Answer| *answer.lock().unwrap_or_else(PoisonError::into_inner) = a;
        let upstream = upstream(scripted(&answer, &lookups), Duration::from_millis(20));
        let mut seen = lookups_past(&lookups, 0, 2).await;
        let first = vec![
            "http://127.0.0.2:9".to_owned(),
            "http://127.0.0.3:9".to_owned(),
        ];
        assert_eq!(sorted(upstream.replicas()), first);

        set(Err("SERVFAIL".to_owned()));
        seen = lookups_past(&lookups, seen, 2).await;
        assert_eq!(
            sorted(upstream.replicas()),
            first,
            "a failed lookup drops nothing"
        );

        set(Ok(Vec::new()));
        seen = lookups_past(&lookups, seen, 2).await;
        assert_eq!(
            sorted(upstream.replicas()),
            first,
            "an empty answer drops nothing"
        );

        set(Ok(vec![ip(3), ip(4)]));
        lookups_past(&lookups, seen, 2).await;
        assert_eq!(
            sorted(upstream.replicas()),
            vec![
                "http://127.0.0.3:9".to_owned(),
                "http://127.0.0.4:9".to_owned()
            ]
        );
        // Every replica known is dead: all of them are used (module docs),
        // and those only.
        assert_eq!(sorted(upstream.in_rotation()), sorted(upstream.replicas()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_replica_has_its_name_resolved_again_at_once() {
        let answer = Arc::new(Mutex::new(Ok(vec![ip(2)])));
        let lookups = Arc::new(AtomicUsize::new(0));
        // An hour: any second lookup is one a failure asked for.
        let upstream = upstream(scripted(&answer, &lookups), Duration::from_hours(1));
        let started = Instant::now();
        lookups_past(&lookups, 0, 2).await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "resolved again after {took:?}"
        );
        assert!(took >= discovery::MIN_GAP, "not rate-limited: {took:?}");
        // Still dead, but it failed once: no more lookups than that.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        drop(upstream);
    }
}
