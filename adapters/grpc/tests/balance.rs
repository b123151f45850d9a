//! The balancer over real replicas (tonic servers on loopback sockets):
//! a killed replica leaves rotation and comes back when it is up again, a
//! replica reporting `NOT_SERVING` gets no calls, one that keeps answering
//! `UNAVAILABLE` is ejected, and a call to a refused connection is one
//! [`never_reached`] may send again.

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test replicas: a failed setup is a failed test"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use adapters_grpc::balance::{Upstream, never_reached};
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;
use tower::Service;

const SERVICE: &str = "test.Svc";

/// One replica: health for [`SERVICE`], and `Health/Check` as the traffic,
/// counted, answering `UNAVAILABLE` while `failing`.
struct Replica {
    addr: SocketAddr,
    reporter: HealthReporter,
    calls: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    /// The replica's own runtime: shutting it down ends its listener and every
    /// connection at once, as a killed process would.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Replica {
    fn kill(mut self) -> SocketAddr {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        self.addr
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Counts `Health/Check` calls and fails them on demand (the watch, which
/// the balancer uses, is left alone).
#[derive(Clone)]
struct Traffic<S> {
    inner: S,
    calls: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl<S> Service<http::Request<Body>> for Traffic<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path().ends_with("/Check") {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.failing.load(Ordering::Relaxed) {
                let response = tonic::Status::unavailable("failing on purpose").into_http();
                return Box::pin(async move { Ok(response) });
            }
        }
        Box::pin(self.inner.call(request))
    }
}

impl<S: NamedService> NamedService for Traffic<S> {
    const NAME: &'static str = S::NAME;
}

async fn replica(addr: SocketAddr) -> Replica {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = std::net::TcpListener::bind(addr).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE, ServingStatus::Serving)
        .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let traffic = Traffic {
        inner: health,
        calls: Arc::clone(&calls),
        failing: Arc::clone(&failing),
    };
    runtime.spawn(async move {
        let listener = TcpListener::from_std(listener).expect("listener");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(traffic)
            .serve_with_incoming(incoming)
            .await;
    });
    Replica {
        addr,
        reporter,
        calls,
        failing,
        runtime: Some(runtime),
    }
}

async fn call(upstream: &Upstream) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: SERVICE.to_owned(),
    });
    request.set_timeout(Duration::from_secs(2));
    HealthClient::new(upstream.clone())
        .check(request)
        .await
        .map(|_| ())
}

/// Calls until `done` holds (checked after each call), for at most `within`;
/// returns how many calls failed on the way and how long it took.
async fn until(
    upstream: &Upstream,
    within: Duration,
    mut done: impl FnMut() -> bool,
) -> (usize, Duration) {
    let started = Instant::now();
    let mut failed = 0;
    loop {
        if call(upstream).await.is_err() {
            failed += 1;
        }
        if done() {
            return (failed, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "condition not reached within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn addresses(replicas: &[&Replica]) -> Vec<String> {
    replicas
        .iter()
        .map(|r| format!("http://{}", r.addr))
        .collect()
}

#[tokio::test]
async fn a_killed_replica_leaves_rotation_and_comes_back() {
    let a = replica("127.0.0.1:0".parse().expect("addr")).await;
    let b = replica("127.0.0.1:0".parse().expect("addr")).await;
    let upstream = Upstream::new(SERVICE, &addresses(&[&a, &b])).expect("upstream");

    // Both take calls.
    let (failed, _) = until(&upstream, Duration::from_secs(10), || {
        a.calls.load(Ordering::Relaxed) > 5 && b.calls.load(Ordering::Relaxed) > 5
    })
    .await;
    assert_eq!(failed, 0, "no call fails while both replicas are up");

    // A dies (listener and connections gone). At most the calls racing the
    // kill fail; then everything goes to B.
    let a_addr = a.kill();
    let mut failed = 0;
    for _ in 0..200 {
        if call(&upstream).await.is_err() {
            failed += 1;
        }
    }
    assert!(
        failed <= 2,
        "{failed} of 200 calls failed after one replica was killed"
    );
    assert_eq!(upstream.in_rotation(), vec![format!("http://{}", b.addr)]);

    // A is back on its address: probed back in, and takes calls again.
    let a = replica(a_addr).await;
    let (failed, took) = until(&upstream, Duration::from_secs(10), || {
        a.calls.load(Ordering::Relaxed) > 5
    })
    .await;
    assert_eq!(failed, 0);
    eprintln!("the restarted replica took calls again after {took:?}");
    assert_eq!(upstream.in_rotation().len(), 2);
}

#[tokio::test]
async fn a_replica_reporting_not_serving_gets_no_calls() {
    let a = replica("127.0.0.1:0".parse().expect("addr")).await;
    let b = replica("127.0.0.1:0".parse().expect("addr")).await;
    let upstream = Upstream::new(SERVICE, &addresses(&[&a, &b])).expect("upstream");
    until(&upstream, Duration::from_secs(10), || {
        a.calls.load(Ordering::Relaxed) > 0 && b.calls.load(Ordering::Relaxed) > 0
    })
    .await;

    a.reporter
        .set_service_status(SERVICE, ServingStatus::NotServing)
        .await;
    // The watch delivers the change: A leaves rotation.
    until(&upstream, Duration::from_secs(5), || {
        upstream.in_rotation() == vec![format!("http://{}", b.addr)]
    })
    .await;
    let before = a.calls.load(Ordering::Relaxed);
    for _ in 0..100 {
        call(&upstream).await.expect("B answers");
    }
    assert_eq!(
        a.calls.load(Ordering::Relaxed),
        before,
        "a NOT_SERVING replica got calls"
    );

    a.reporter
        .set_service_status(SERVICE, ServingStatus::Serving)
        .await;
    until(&upstream, Duration::from_secs(5), || {
        a.calls.load(Ordering::Relaxed) > before
    })
    .await;
}

#[tokio::test]
async fn a_replica_that_keeps_answering_unavailable_is_ejected_then_probed_back() {
    let a = replica("127.0.0.1:0".parse().expect("addr")).await;
    let b = replica("127.0.0.1:0".parse().expect("addr")).await;
    let upstream = Upstream::new(SERVICE, &addresses(&[&a, &b])).expect("upstream");
    a.failing.store(true, Ordering::Relaxed);
    // A few calls fail on A; then it is out and every call succeeds.
    let (_, _) = until(&upstream, Duration::from_secs(10), || {
        upstream.in_rotation() == vec![format!("http://{}", b.addr)]
    })
    .await;
    let failed_on_a = a.calls.load(Ordering::Relaxed);
    assert!(
        failed_on_a >= adapters_grpc::balance::EJECT_AFTER as usize,
        "ejected after {failed_on_a} failures"
    );
    for _ in 0..50 {
        call(&upstream).await.expect("only B is used");
    }
    assert_eq!(a.calls.load(Ordering::Relaxed), failed_on_a);

    // Healed: after the ejection (1 s) it is back.
    a.failing.store(false, Ordering::Relaxed);
    let (failed, took) = until(&upstream, Duration::from_secs(10), || {
        a.calls.load(Ordering::Relaxed) > failed_on_a
    })
    .await;
    assert_eq!(failed, 0);
    eprintln!("back in rotation {took:?} after healing");
}

#[tokio::test]
async fn a_refused_connection_never_reached_a_server() {
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect_lazy();
    let request = http::Request::builder()
        .uri(format!(
            "http://127.0.0.1:{port}/grpc.health.v1.Health/Check"
        ))
        .body(Body::empty())
        .expect("request");
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .expect("ready");
    let error = channel.call(request).await.expect_err("nobody listens");
    assert!(never_reached(&error), "not recognised: {error:?}");

    // An answer is not "never reached".
    let status = tonic::Status::unavailable("x");
    assert!(!never_reached(&status));
}
