//! Admission control per upstream service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use adapters_telemetry::sampled::Sampled;
use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};
use tracing::warn;

use super::call::{Response, overloaded, take_ready};
use super::route::Route;

/// Admission control per upstream service: at most `slots` unary calls are
/// inside one service at once. A call over it waits its turn (first come,
/// first served) for at most `max_wait`, then is refused with `UNAVAILABLE`
/// (`OVERLOADED`) and a `RetryInfo`. So under overload the service works at
/// the concurrency it sustains, the calls it accepts wait at most `max_wait`
/// longer than they would on a quiet mesh, and the rest are told at once to
/// come back (instead of every call queueing inside the service until its
/// latency is seconds: Little's law with the gateway's 1,024 in flight).
/// Streaming calls are not counted. A service without an entry is not
/// limited here (the global [`ConcurrencyLayer`](super::ConcurrencyLayer)
/// still is).
///
/// The number of slots follows the service's replicas: [`Self::resize`] (the
/// gateway calls it as its balancer discovers or loses replicas).
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    slots: Arc<HashMap<Arc<str>, Arc<Slots>>>,
    max_wait: Duration,
}

#[derive(Debug)]
struct Slots {
    semaphore: Arc<Semaphore>,
    /// The size wanted, and the permits still to take out of circulation to
    /// reach it (a shrink can only forget permits nobody holds).
    size: Mutex<(usize, usize)>,
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
                        let slots = Slots {
                            semaphore: Arc::new(Semaphore::new(n)),
                            size: Mutex::new((n, 0)),
                        };
                        (Arc::from(service), Arc::new(slots))
                    })
                    .collect(),
            ),
            max_wait,
        }
    }

    /// Makes `service` admit `slots` calls at once from now on (calls inside
    /// keep their slots; a shrink takes effect as they leave). Unknown
    /// services are ignored.
    pub fn resize(&self, service: &str, slots: usize) {
        let Some(s) = self.slots.get(service) else {
            return;
        };
        let wanted = slots.min(Semaphore::MAX_PERMITS);
        let mut size = s.size.lock().unwrap_or_else(PoisonError::into_inner);
        let (current, debt) = *size;
        let debt = if wanted >= current {
            let grow = wanted - current;
            let paid = grow.min(debt);
            s.semaphore.add_permits(grow - paid);
            debt - paid
        } else {
            debt + (current - wanted)
        };
        let forgotten = s.semaphore.forget_permits(debt);
        *size = (wanted, debt - forgotten);
    }

    /// The slots `service` admits at once (its size, whether in use or not).
    pub fn size(&self, service: &str) -> Option<usize> {
        self.slots
            .get(service)
            .map(|s| s.size.lock().unwrap_or_else(PoisonError::into_inner).0)
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
            .and_then(|r| Some((Arc::clone(&r.service), self.layer.slots.get(&r.service)?)))
            .map(|(service, slots)| (service, Arc::clone(slots)));
        let max_wait = self.layer.max_wait;
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let slot = match slots {
                None => None,
                Some((service, slots)) => {
                    let Some(slot) = admit(slots, max_wait).await else {
                        // The service is at the concurrency it sustains.
                        static SHED: Sampled = Sampled::new();
                        if let Some(refused) = SHED.hit() {
                            warn!(
                                service = &*service,
                                refused, "call shed: the service is at its admission limit"
                            );
                        }
                        return Ok(overloaded(
                            "the service is at capacity; retry shortly",
                            max_wait.max(Duration::from_millis(50)),
                        ));
                    };
                    Some(slot)
                }
            };
            let response = inner.call(request).await;
            drop(slot);
            response
        })
    }
}

/// A slot of `slots`, at once or within `max_wait`; `None` when none came.
/// A permit that comes back while a shrink is still owed is taken out of
/// circulation instead (and the wait goes on).
async fn admit(slots: Arc<Slots>, max_wait: Duration) -> Option<OwnedSemaphorePermit> {
    let deadline = tokio::time::Instant::now() + max_wait;
    loop {
        let permit = match Arc::clone(&slots.semaphore).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tokio::time::timeout_at(deadline, Arc::clone(&slots.semaphore).acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let mut size = slots.size.lock().unwrap_or_else(PoisonError::into_inner);
        if size.1 == 0 {
            return Some(permit);
        }
        size.1 -= 1;
        permit.forget();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use tokio::time::Instant;
    use tonic::Code;
    use tonic_types::StatusExt as _;
    use tower::ServiceExt as _;
    use tower_test::mock::Mock;

    use super::*;
    use crate::proxy::testing::{
        Req, SERVICE, STREAMING, UNARY, ok, over, reason_of, routed, status,
    };

    /// `slots` for [`SERVICE`], a call over them waiting 100 ms at most.
    fn admission(slots: usize) -> AdmissionLayer {
        AdmissionLayer::new([(SERVICE.to_owned(), slots)], Duration::from_millis(100))
    }

    fn call_in_background(
        svc: &Admission<Mock<Req, Response>>,
        r: Req,
    ) -> tokio::task::JoinHandle<Result<Response, tower::BoxError>> {
        let svc = svc.clone();
        tokio::spawn(async move { svc.oneshot(r).await })
    }

    #[tokio::test(start_paused = true)]
    async fn admission_queues_a_call_over_the_limit_for_its_wait_then_refuses() {
        let (svc, mut handle) = over(admission(1));
        let held = call_in_background(&svc, routed(UNARY, false));
        let (_, first) = handle.next_request().await.unwrap();

        // The second waits its turn and goes in when the first is answered
        // within the wait.
        let second = call_in_background(&svc, routed(UNARY, false));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!second.is_finished(), "a call over the limit waits");
        assert!(handle.poll_request().is_pending(), "outside the service");
        first.send_response(ok());
        assert!(status(&held.await.unwrap().unwrap()).is_none());
        let (_, second_upstream) = handle.next_request().await.unwrap();

        // A third waits the whole 100 ms while the second is held: refused,
        // with a reason and a RetryInfo, without reaching the service.
        let started = Instant::now();
        let refused = svc.clone().oneshot(routed(UNARY, false)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        let s = status(&refused).unwrap();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(reason_of(&s), proto::reasons::OVERLOADED);
        assert!(s.get_error_details().retry_info().is_some());
        assert!(
            handle.poll_request().is_pending(),
            "refused outside the service"
        );

        // Streams are not counted, and the second still completes.
        let stream = call_in_background(&svc, routed(STREAMING, true));
        handle.next_request().await.unwrap().1.send_response(ok());
        assert!(status(&stream.await.unwrap().unwrap()).is_none());
        second_upstream.send_response(ok());
        assert!(status(&second.await.unwrap().unwrap()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn admission_leaves_services_without_a_limit_alone() {
        let (svc, mut handle) = over(AdmissionLayer::new([], Duration::from_millis(100)));
        let first = call_in_background(&svc, routed(UNARY, false));
        let second = call_in_background(&svc, routed(UNARY, false));
        let (_, a) = handle.next_request().await.unwrap();
        let (_, b) = handle.next_request().await.unwrap();
        a.send_response(ok());
        b.send_response(ok());
        assert!(status(&first.await.unwrap().unwrap()).is_none());
        assert!(status(&second.await.unwrap().unwrap()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn admission_grows_and_shrinks_with_the_replicas() {
        let layer = admission(1);
        let (svc, mut handle) = over(layer.clone());
        let first = call_in_background(&svc, routed(UNARY, false));
        let (_, first_upstream) = handle.next_request().await.unwrap();
        // A replica more: a second call goes in at once.
        layer.resize(SERVICE, 2);
        assert_eq!(layer.size(SERVICE), Some(2));
        let second = call_in_background(&svc, routed(UNARY, false));
        let (_, second_upstream) = handle.next_request().await.unwrap();
        // Back to one while both are inside: nothing is taken from them, but
        // no third call goes in until both have left.
        layer.resize(SERVICE, 1);
        first_upstream.send_response(ok());
        assert!(status(&first.await.unwrap().unwrap()).is_none());
        let refused = svc.clone().oneshot(routed(UNARY, false)).await.unwrap();
        assert_eq!(
            reason_of(&status(&refused).unwrap()),
            proto::reasons::OVERLOADED,
            "one slot, held by the second call"
        );
        second_upstream.send_response(ok());
        assert!(status(&second.await.unwrap().unwrap()).is_none());
        let third = call_in_background(&svc, routed(UNARY, false));
        handle.next_request().await.unwrap().1.send_response(ok());
        assert!(status(&third.await.unwrap().unwrap()).is_none());
        assert_eq!(layer.size("unknown"), None);
    }
}
