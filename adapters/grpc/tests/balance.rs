//! The balancer over real replicas (tonic servers on loopback sockets):
//! a killed replica leaves rotation and comes back when it is up again, a
//! replica reporting `NOT_SERVING` gets no calls, one that keeps answering
//! `UNAVAILABLE` is ejected, a call to a refused connection is one
//! [`never_reached`] may send again, and the replicas of a host name follow
//! what a DNS server (on loopback) answers for it.

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test replicas: a failed setup is a failed test"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use adapters_grpc::balance::{Discovery, Upstream, never_reached};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::{Connected, TcpConnectInfo};
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
    /// The `:authority` of the last `Health/Check`.
    authority: Arc<Mutex<Option<String>>>,
    /// Client connections open now.
    open: Arc<AtomicUsize>,
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
    authority: Arc<Mutex<Option<String>>>,
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
            *self
                .authority
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                request.uri().authority().map(ToString::to_string);
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

/// A server connection, counted in `open` while it lives.
struct Counted {
    inner: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Counted {
    fn new(inner: TcpStream, open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Self {
            inner,
            open: Arc::clone(open),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

async fn replica(addr: SocketAddr) -> Replica {
    try_replica(addr).await.expect("bind")
}

async fn try_replica(addr: SocketAddr) -> std::io::Result<Replica> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE, ServingStatus::Serving)
        .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let authority = Arc::new(Mutex::new(None));
    let open = Arc::new(AtomicUsize::new(0));
    let traffic = Traffic {
        inner: health,
        calls: Arc::clone(&calls),
        failing: Arc::clone(&failing),
        authority: Arc::clone(&authority),
    };
    let counted = Arc::clone(&open);
    runtime.spawn(async move {
        let listener = TcpListener::from_std(listener).expect("listener");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener)
            .map(move |s| s.map(|s| Counted::new(s, &counted)));
        let _ = tonic::transport::Server::builder()
            .add_service(traffic)
            .serve_with_incoming(incoming)
            .await;
    });
    Ok(Replica {
        addr,
        reporter,
        calls,
        failing,
        authority,
        open,
        runtime: Some(runtime),
    })
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
    let upstream =
        Upstream::new(SERVICE, &addresses(&[&a, &b]), &Discovery::default()).expect("upstream");

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
    let upstream =
        Upstream::new(SERVICE, &addresses(&[&a, &b]), &Discovery::default()).expect("upstream");
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
    let upstream =
        Upstream::new(SERVICE, &addresses(&[&a, &b]), &Discovery::default()).expect("upstream");
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

/// The host name the test DNS server answers for.
const NAME: &str = "replicas.test";

/// A DNS server on loopback (UDP) that answers `A` queries for [`NAME`]
/// with `records` (TTL 0), `SERVFAIL` to everything while `failing`, and
/// `NXDOMAIN` for other names.
struct Dns {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<Ipv4Addr>>>,
    failing: Arc<AtomicBool>,
    /// Queries for [`NAME`] received.
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dns {
    fn set(&self, records: &[Ipv4Addr]) {
        *self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = records.to_vec();
    }

    /// Waits until `n` more queries for [`NAME`] have been answered.
    async fn answered(&self, n: usize) {
        let target = self.queries.load(Ordering::SeqCst) + n;
        let started = Instant::now();
        while self.queries.load(Ordering::SeqCst) < target {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the name was not resolved again"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let the last answer be applied.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn dns(records: &[Ipv4Addr]) -> Dns {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
    let addr = socket.local_addr().expect("dns addr");
    let records = Arc::new(Mutex::new(records.to_vec()));
    let failing = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicUsize::new(0));
    let (r, f, q) = (
        Arc::clone(&records),
        Arc::clone(&failing),
        Arc::clone(&queries),
    );
    let task = tokio::spawn(async move {
        let mut buf = vec![0; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(request) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut response = Message::response(request.metadata.id, request.metadata.op_code);
            response.metadata.recursion_desired = request.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.metadata.authoritative = true;
            response.add_queries(request.queries.clone());
            let ours = request.queries.iter().any(|query| {
                query
                    .name
                    .to_ascii()
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(NAME)
            });
            if f.load(Ordering::SeqCst) {
                response.metadata.response_code = ResponseCode::ServFail;
            } else if !ours {
                response.metadata.response_code = ResponseCode::NXDomain;
            } else {
                for query in request
                    .queries
                    .iter()
                    .filter(|q| q.query_type == RecordType::A)
                {
                    let ips = r
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    for ip in ips {
                        response.add_answer(Record::from_rdata(
                            query.name.clone(),
                            0,
                            RData::A(A(ip)),
                        ));
                    }
                }
            }
            if ours {
                q.fetch_add(1, Ordering::SeqCst);
            }
            if let Ok(bytes) = response.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    Dns {
        addr,
        records,
        failing,
        queries,
        task,
    }
}

/// A replica on each of `ips`, all on one port (an `A` record carries no
/// port).
async fn replicas_on_one_port(ips: &[Ipv4Addr]) -> Vec<Replica> {
    'attempt: for _ in 0..20 {
        let mut replicas = Vec::new();
        let mut port = 0;
        for &ip in ips {
            match try_replica(SocketAddr::from((ip, port))).await {
                Ok(r) => {
                    port = r.addr.port();
                    replicas.push(r);
                }
                // The port is taken on that address: another port.
                Err(_) => continue 'attempt,
            }
        }
        return replicas;
    }
    panic!("no port free on every address");
}

fn authority(replica: &Replica) -> Option<String> {
    replica
        .authority
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

#[tokio::test]
async fn the_replicas_of_a_name_follow_its_dns_records() {
    let ips = [
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
        Ipv4Addr::new(127, 0, 0, 4),
    ];
    let replicas = replicas_on_one_port(&ips).await;
    let [a, b, c] = replicas.as_slice() else {
        panic!("three replicas");
    };
    let port = a.addr.port();
    let url = |r: &Replica| format!("http://{}", r.addr);
    let dns = dns(&ips[..2]).await;
    let discovery = Discovery::every(Duration::from_millis(200)).nameserver(dns.addr);
    let upstream =
        Upstream::new(SERVICE, &[format!("http://{NAME}:{port}")], &discovery).expect("upstream");

    // Both replicas the name resolves to take calls, which carry the name.
    let (failed, _) = until(&upstream, Duration::from_secs(10), || {
        a.calls.load(Ordering::Relaxed) > 5 && b.calls.load(Ordering::Relaxed) > 5
    })
    .await;
    assert_eq!(failed, 0, "no call fails while both replicas are up");
    assert_eq!(c.calls.load(Ordering::Relaxed), 0, "C is not in DNS yet");
    assert_eq!(authority(a), Some(format!("{NAME}:{port}")));
    let mut known = upstream.replicas();
    known.sort();
    assert_eq!(known, vec![url(a), url(b)]);

    // A third address appears: within a few re-resolutions it takes calls.
    dns.set(&ips);
    let (failed, took) = until(&upstream, Duration::from_secs(10), || {
        c.calls.load(Ordering::Relaxed) > 5
    })
    .await;
    assert_eq!(failed, 0);
    eprintln!("the new replica took calls after {took:?}");
    assert_eq!(upstream.replicas().len(), 3);

    // A disappears: dropped, connection and watch with it, and no call
    // reaches it any more.
    dns.set(&ips[1..]);
    let (failed, took) = until(&upstream, Duration::from_secs(10), || {
        !upstream.replicas().contains(&url(a)) && a.open.load(Ordering::SeqCst) == 0
    })
    .await;
    assert_eq!(failed, 0);
    eprintln!("the removed replica's connection was closed after {took:?}");
    let (a_before, b_before, c_before) = (
        a.calls.load(Ordering::Relaxed),
        b.calls.load(Ordering::Relaxed),
        c.calls.load(Ordering::Relaxed),
    );
    for _ in 0..100 {
        call(&upstream).await.expect("B or C answers");
    }
    assert_eq!(a.calls.load(Ordering::Relaxed), a_before, "A got calls");
    assert!(b.calls.load(Ordering::Relaxed) > b_before);
    assert!(c.calls.load(Ordering::Relaxed) > c_before);
    assert_eq!(a.open.load(Ordering::SeqCst), 0, "A was dialled again");

    // DNS fails, then answers nothing: the replicas known stay.
    dns.failing.store(true, Ordering::SeqCst);
    dns.answered(3).await;
    dns.failing.store(false, Ordering::SeqCst);
    dns.set(&[]);
    dns.answered(3).await;
    let mut known = upstream.replicas();
    known.sort();
    assert_eq!(known, vec![url(b), url(c)]);
    for _ in 0..20 {
        call(&upstream).await.expect("B or C answers");
    }
}

#[tokio::test]
async fn a_name_that_resolves_to_one_address_picks_up_a_second() {
    let ips = [Ipv4Addr::new(127, 0, 0, 5), Ipv4Addr::new(127, 0, 0, 6)];
    let replicas = replicas_on_one_port(&ips).await;
    let [a, b] = replicas.as_slice() else {
        panic!("two replicas");
    };
    let port = a.addr.port();
    let dns = dns(&ips[..1]).await;
    let discovery = Discovery::every(Duration::from_millis(200)).nameserver(dns.addr);
    let upstream =
        Upstream::new(SERVICE, &[format!("http://{NAME}:{port}")], &discovery).expect("upstream");
    until(&upstream, Duration::from_secs(10), || {
        a.calls.load(Ordering::Relaxed) > 5
    })
    .await;
    assert_eq!(b.calls.load(Ordering::Relaxed), 0);
    dns.set(&ips);
    until(&upstream, Duration::from_secs(10), || {
        b.calls.load(Ordering::Relaxed) > 5
    })
    .await;
}

/// Copies `from` to `to`, holding the bytes while `frozen` (neither read
/// nor written: the connection stays open, as with a process under SIGSTOP).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        while frozen.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy to `target` that passes nothing while `frozen`.
async fn freezable(target: SocketAddr, frozen: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let frozen = Arc::clone(&frozen);
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, Arc::clone(&frozen)));
                pump(server_read, client_write, frozen).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_replica_leaves_rotation_within_two_seconds() {
    let a = replica("127.0.0.1:0".parse().expect("addr")).await;
    let b = replica("127.0.0.1:0".parse().expect("addr")).await;
    let frozen = Arc::new(AtomicBool::new(false));
    let a_addr = format!("http://{}", freezable(a.addr, Arc::clone(&frozen)).await);
    let upstream = Upstream::new(
        SERVICE,
        &[a_addr.clone(), format!("http://{}", b.addr)],
        &Discovery::default(),
    )
    .expect("upstream");
    let (failed, _) = until(&upstream, Duration::from_secs(10), || {
        a.calls.load(Ordering::Relaxed) > 5 && b.calls.load(Ordering::Relaxed) > 5
    })
    .await;
    assert_eq!(failed, 0);

    // A stops answering, its connection open (SIGSTOP). Calls keep coming,
    // with the gateway's default deadline (10 s): no call's deadline takes
    // the replica out, only the connection's own checks can.
    frozen.store(true, Ordering::Relaxed);
    let frozen_at = Instant::now();
    let load = {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let mut slow = 0;
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                let started = Instant::now();
                let mut request = tonic::Request::new(HealthCheckRequest {
                    service: SERVICE.to_owned(),
                });
                request.set_timeout(Duration::from_secs(10));
                let _ = HealthClient::new(upstream.clone()).check(request).await;
                if started.elapsed() > Duration::from_millis(2_500) {
                    slow += 1;
                }
            }
            slow
        })
    };
    let out = loop {
        if !upstream.in_rotation().contains(&a_addr) {
            break frozen_at.elapsed();
        }
        assert!(
            frozen_at.elapsed() < Duration::from_secs(8),
            "the frozen replica is still in rotation after 8 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let slow = load.await.expect("load");
    eprintln!(
        "a frozen replica left rotation {} ms after it froze; {slow} calls took more than 2.5 s",
        out.as_millis()
    );
    // 8 s would pass for the old keep-alive (10 s + 5 s); this bound is a
    // stall detector, the figure above is the measurement.
    assert!(out < Duration::from_secs(4), "left rotation after {out:?}");
    assert_eq!(
        slow, 0,
        "no call waits on the frozen replica past its ping timeout"
    );

    // Thawed, it is probed back in.
    frozen.store(false, Ordering::Relaxed);
    let (_, back) = until(&upstream, Duration::from_secs(10), || {
        upstream.in_rotation().contains(&a_addr)
    })
    .await;
    eprintln!("back in rotation {} ms after it thawed", back.as_millis());
}
