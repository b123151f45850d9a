//! The mesh encrypted on every hop, on a real embedded mesh with
//! certificates made in the test (`adapters_grpc::tls::local`): the gateway
//! serves TLS, the services require mutual TLS. A whole story runs through
//! it (gateway -> services, reservation -> payment, rental -> reservation);
//! a service port takes a call only from a certificate that names the
//! token's caller; gRPC-web and the console work over HTTPS; the gateway's
//! and a service's certificates are rotated under load with no failed call.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adapters_grpc::tls::local::{Issued, LocalCa};
use adapters_grpc::tls::{ClientTls, PemFiles, TlsConnect};
use domain_kernel::Principal;
use http_body_util::{BodyExt as _, Empty};
use proto::auth::IssueTokenRequest;
use proto::auth::auth_service_client::AuthServiceClient;
use proto::reservation as pb;
use proto::reservation::reservation_service_client::ReservationServiceClient;
use proto::view as pv;
use proto::view::view_service_client::ViewServiceClient;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use support::{ALICE, Cluster, TestMesh, req, roaming_request, stories};
use tokio::net::TcpStream;
use tonic::transport::Channel;

/// The certificates of one test: the CA kept in memory (to renew), the
/// files under `dir`.
struct Certs {
    ca: LocalCa,
    dir: PathBuf,
}

impl Certs {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("roaming-tls-{}", uuid::Uuid::now_v7()));
        let ca = LocalCa::new("test mesh CA").unwrap();
        ca.write_mesh(&dir, &[]).unwrap();
        Self { ca, dir }
    }

    /// Renews the certificate of `identity` (`public`: the gateway's port).
    fn renew(&self, identity: &str) -> Issued {
        let names: Vec<&str> = if identity == "public" {
            vec!["localhost", "127.0.0.1"]
        } else {
            vec![identity, "localhost"]
        };
        let issued = self.ca.issue(&names).unwrap();
        self.ca.write(&self.dir.join(identity), &issued).unwrap();
        issued
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A mesh whose gateway serves TLS and whose services require mutual TLS,
/// with the certificates of `certs`, read again every 100 ms; a load test
/// is not held back by the per-principal rate.
async fn tls_mesh(certs: &Certs) -> TestMesh {
    tls_mesh_with(certs, |_| {}).await
}

/// [`tls_mesh`], then `adjust`.
async fn tls_mesh_with(certs: &Certs, adjust: impl FnOnce(&mut roaming::Settings)) -> TestMesh {
    let dir = certs.dir.clone();
    TestMesh::start_with(|s| {
        s.gateway.rate_per_second = 100_000;
        s.gateway.burst = 100_000;
        "required".clone_into(&mut s.mesh_tls);
        s.mesh_tls_dir = Some(dir.clone());
        s.gateway.tls_cert = Some(dir.join("public").join("tls.crt"));
        s.gateway.tls_key = Some(dir.join("public").join("tls.key"));
        s.tls_reload_ms = 100;
        adjust(s);
    })
    .await
}

/// How a client that trusts the mesh CA reaches the gateway (`localhost`).
fn to_gateway(certs: &Certs) -> &'static TlsConnect {
    let tls = ClientTls::trusting(&certs.ca_file()).unwrap();
    Box::leak(Box::new(tls.connector("localhost").unwrap()))
}

async fn gateway_channel(addr: SocketAddr, tls: &TlsConnect) -> Channel {
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_with_connector(tls.clone())
        .await
        .unwrap()
}

/// A channel to a service port with the mesh identity `identity`.
async fn as_identity(certs: &Certs, identity: &str, server: &str, addr: SocketAddr) -> Channel {
    let tls = ClientTls::new(
        PemFiles::identity(&certs.dir, identity),
        Duration::from_mins(1),
    )
    .unwrap();
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_with_connector(tls.connector(server).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_story_runs_over_tls_at_the_gateway_and_mutual_tls_between_services() {
    let certs = Certs::new();
    let m = tls_mesh(&certs).await;
    let gw = m.mesh().gateway.addr;
    let through_gateway = Cluster {
        tls: Some(to_gateway(&certs)),
        ..m.addrs()
    };
    // Reserve (gateway -> reservation -> payment), hand over (gateway ->
    // rental -> reservation), return, retrieve: every hop encrypted.
    stories::roaming_story_from_reservation_to_retrieval_at_another_booth(&through_gateway, true)
        .await;

    // Plaintext at the gateway: health for probes, nothing else.
    let plain = Channel::from_shared(format!("http://{gw}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(plain.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("plaintext health")
        .into_inner();
    assert_eq!(health.status, 1);
    let refused = AuthServiceClient::new(plain)
        .issue_token(IssueTokenRequest {
            username: "alice".to_owned(),
            password: "demo".to_owned(),
        })
        .await
        .expect_err("a password over plaintext");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(support::reason(&refused), proto::reasons::TLS_REQUIRED);
    m.stop().await;
}

fn service_token(service: &str) -> String {
    support::test_key()
        .1
        .issue(&Principal::service(service))
        .unwrap()
}

async fn begin_use(channel: Channel, token: &str) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(pb::BeginUseRequest {
        reservation_id: uuid::Uuid::now_v7().to_string(),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    ReservationServiceClient::new(channel)
        .begin_use(request)
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_port_takes_a_call_only_from_the_certificate_of_the_tokens_caller() {
    let certs = Certs::new();
    let m = tls_mesh(&certs).await;
    let reservation = m.mesh().reservation.addr;
    let view = m.mesh().view.addr;

    // BeginUse is rental's: with rental's certificate and token it is
    // served (the reservation does not exist).
    let rental = as_identity(&certs, "rental", "reservation", reservation).await;
    let status = begin_use(rental, &service_token("rental"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    // Payment's certificate with rental's token (a stolen token): refused.
    let payment = as_identity(&certs, "payment", "reservation", reservation).await;
    let status = begin_use(payment.clone(), &service_token("rental"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(support::reason(&status), proto::reasons::PEER_MISMATCH);

    // Payment's certificate and token: a caller the RPC is not for.
    let status = begin_use(payment.clone(), &service_token("payment"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // A customer's token comes only through the gateway's certificate.
    let list = |channel: Channel| async move {
        ViewServiceClient::new(channel)
            .list_my_reservations(req(ALICE, pv::ListMyReservationsRequest::default()))
            .await
    };
    let gateway = as_identity(&certs, "gateway", "view", view).await;
    list(gateway)
        .await
        .expect("alice's call through the gateway's certificate");
    let status = list(as_identity(&certs, "payment", "view", view).await)
        .await
        .unwrap_err();
    assert_eq!(support::reason(&status), proto::reasons::PEER_MISMATCH);

    // No client certificate (TLS without one, or plaintext): refused, but
    // health (kubelet's probe) is served on plaintext.
    let anonymous = Channel::from_shared(format!("https://{view}"))
        .unwrap()
        .connect_with_connector(
            ClientTls::trusting(&certs.ca_file())
                .unwrap()
                .connector("view")
                .unwrap(),
        )
        .await
        .unwrap();
    let status = list(anonymous).await.unwrap_err();
    assert_eq!(
        support::reason(&status),
        proto::reasons::CLIENT_CERTIFICATE_REQUIRED
    );
    let plain = Channel::from_shared(format!("http://{view}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = list(plain.clone()).await.unwrap_err();
    assert_eq!(
        support::reason(&status),
        proto::reasons::CLIENT_CERTIFICATE_REQUIRED
    );
    let health = tonic_health::pb::health_client::HealthClient::new(plain)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("plaintext health on a mutual-TLS port")
        .into_inner();
    assert_eq!(health.status, 1);

    // A certificate of another CA does not get past the handshake.
    let stranger = LocalCa::new("stranger").unwrap();
    let other = std::env::temp_dir().join(format!("roaming-tls-other-{}", uuid::Uuid::now_v7()));
    stranger
        .write(&other.join("rental"), &stranger.issue(&["rental"]).unwrap())
        .unwrap();
    // It trusts the mesh CA (to get as far as presenting its certificate).
    std::fs::copy(certs.ca_file(), other.join("rental").join("ca.crt")).unwrap();
    let tls = ClientTls::new(PemFiles::identity(&other, "rental"), Duration::from_mins(1)).unwrap();
    let channel = Channel::from_shared(format!("https://{reservation}"))
        .unwrap()
        .connect_with_connector_lazy(tls.connector("reservation").unwrap());
    let status = begin_use(channel, &service_token("rental"))
        .await
        .unwrap_err();
    // The server's alert, or (TLS 1.3: the client's side of the handshake
    // is done first) the connection it closed; never an answer.
    let text = format!("{status:?}");
    assert!(
        std::error::Error::source(&status).is_some()
            && (text.contains("UnknownCA") || text.contains("connection closed")),
        "{status:?}"
    );
    let _ = std::fs::remove_dir_all(&other);
    m.stop().await;
}

/// One HTTP/1.1 request over TLS (ALPN `http/1.1`), as a browser sends it.
async fn https1(
    certs: &Certs,
    addr: SocketAddr,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> http::Response<bytes::Bytes> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(certs.ca_file()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = send.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    http::Response::from_parts(parts, body)
}

/// A gRPC-web frame of `message`.
fn web_frame(message: &impl prost::Message) -> bytes::Bytes {
    let body = message.encode_to_vec();
    let mut frame = vec![0_u8];
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&body);
    frame.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_web_and_the_console_are_served_over_https() {
    let certs = Certs::new();
    let m = tls_mesh(&certs).await;
    let gw = m.mesh().gateway.addr;

    // The console's page over HTTPS.
    let page = https1(
        &certs,
        gw,
        http::Request::get("/")
            .header(http::header::HOST, format!("localhost:{}", gw.port()))
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status(), http::StatusCode::OK);
    assert!(String::from_utf8_lossy(page.body()).contains("<html"));

    // A login over gRPC-web (HTTP/1.1, binary) over HTTPS: the token comes
    // back in the body's first frame, the status in its trailer frame.
    let login = https1(
        &certs,
        gw,
        http::Request::post("/roaming.auth.v1.AuthService/IssueToken")
            .header(http::header::HOST, format!("localhost:{}", gw.port()))
            .header(http::header::CONTENT_TYPE, "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(http_body_util::Full::new(web_frame(&IssueTokenRequest {
                username: "alice".to_owned(),
                password: "demo".to_owned(),
            })))
            .unwrap(),
    )
    .await;
    assert_eq!(login.status(), http::StatusCode::OK);
    let body = login.body();
    assert_eq!(body[0], 0, "a data frame first");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let token = <proto::auth::IssueTokenResponse as prost::Message>::decode(&body[5..5 + len])
        .unwrap()
        .access_token;
    assert!(!token.is_empty());
    let trailers = String::from_utf8_lossy(&body[5 + len + 5..]).to_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // The same page asked over plaintext is sent to https.
    let plain = TcpStream::connect(gw).await.unwrap();
    let (mut send, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(plain))
            .await
            .unwrap();
    tokio::spawn(connection);
    let moved = send
        .send_request(
            http::Request::get("/")
                .header(http::header::HOST, format!("localhost:{}", gw.port()))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(moved.status(), http::StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        moved.headers()[http::header::LOCATION],
        format!("https://localhost:{}/", gw.port()).as_str()
    );
    m.stop().await;
}

/// The leaf certificate a new TLS handshake with `addr` gets (as `server`),
/// presenting `identity`'s certificate if given.
async fn served(
    certs: &Certs,
    addr: SocketAddr,
    server: &str,
    identity: Option<&str>,
) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(certs.ca_file()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let files = PemFiles::identity(&certs.dir, identity);
            let chain = CertificateDer::pem_file_iter(&files.cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&files.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(server.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

async fn until_served(
    what: &str,
    want: &CertificateDer<'static>,
    get: impl AsyncFn() -> CertificateDer<'static>,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while &get().await != want {
        assert!(
            Instant::now() < deadline,
            "{what}: the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateways_and_a_services_certificates_rotate_under_load_without_a_failed_call() {
    let certs = Certs::new();
    // Every server closes its connections after a second (GOAWAY), so the
    // gateway's connections to reservation and view are made again, with
    // the certificates of the moment, all through the rotation.
    let m = tls_mesh_with(&certs, |s| s.max_connection_age_secs = 1).await;
    let gw = m.mesh().gateway.addr;
    let tls = to_gateway(&certs);
    let reserved = ReservationServiceClient::new(gateway_channel(gw, tls).await)
        .reserve_roaming(req(ALICE, roaming_request("tls-rotation", 3, 5)))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();

    // Four clients: a new TLS connection to the gateway every ten calls;
    // each call crosses the gateway to reservation or view (mutual TLS).
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failures) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failures) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failures));
        let id = reserved.reservation_id.clone();
        load.push(tokio::spawn(async move {
            let mut n = 0_u32;
            while !stop.load(Ordering::Relaxed) {
                let channel = gateway_channel(gw, tls).await;
                let mut reservations = ReservationServiceClient::new(channel.clone());
                let mut views = ViewServiceClient::new(channel);
                for _ in 0..10 {
                    n += 1;
                    let result = if n.is_multiple_of(2) {
                        reservations
                            .get_reservation(req(
                                ALICE,
                                pb::GetReservationRequest {
                                    reservation_id: id.clone(),
                                },
                            ))
                            .await
                            .map(drop)
                    } else {
                        views
                            .list_my_reservations(req(
                                ALICE,
                                pv::ListMyReservationsRequest::default(),
                            ))
                            .await
                            .map(drop)
                    };
                    match result {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(s) => failures.lock().unwrap().push(format!("{s:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut last = (None, None);
    for _ in 0..3 {
        last = (
            Some(certs.renew("public")),
            Some(certs.renew("reservation")),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before_end = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "failed calls during the rotation: {failures:?}"
    );
    assert!(
        ok.load(Ordering::Relaxed) > before_end,
        "the load ran to the end"
    );

    // New handshakes get the newest certificates: the gateway's public one,
    // and reservation's (as the gateway's mesh client would see it).
    let (public, reservation) = (last.0.unwrap(), last.1.unwrap());
    until_served("gateway", &der(&public.cert), async || {
        served(&certs, gw, "localhost", None).await
    })
    .await;
    let addr = m.mesh().reservation.addr;
    until_served("reservation", &der(&reservation.cert), async || {
        served(&certs, addr, "reservation", Some("gateway")).await
    })
    .await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optional_mutual_tls_takes_plaintext_and_still_checks_a_certificate_presented() {
    // The migration's middle step: services accept both, the gateway (in
    // plaintext on loopback here) already dials them with mutual TLS.
    let certs = Certs::new();
    let dir = certs.dir.clone();
    let m = TestMesh::start_with(|s| {
        "optional".clone_into(&mut s.mesh_tls);
        s.mesh_tls_dir = Some(dir);
    })
    .await;
    let view = m.mesh().view.addr;
    let list = |channel: Channel| async move {
        ViewServiceClient::new(channel)
            .list_my_reservations(req(ALICE, pv::ListMyReservationsRequest::default()))
            .await
    };
    // Through the gateway (which dials https://).
    list(
        Channel::from_shared(format!("http://{}", m.mesh().gateway.addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
    .await
    .expect("through the gateway");
    // Plaintext, straight to the service: still served in this step.
    let plain = Channel::from_shared(format!("http://{view}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    list(plain).await.expect("plaintext while optional");
    // A certificate presented must still name the caller.
    let status = list(as_identity(&certs, "payment", "view", view).await)
        .await
        .unwrap_err();
    assert_eq!(support::reason(&status), proto::reasons::PEER_MISMATCH);
    list(as_identity(&certs, "gateway", "view", view).await)
        .await
        .expect("the gateway's certificate with a customer's token");
    m.stop().await;
}

/// The log lines of `roaming up ARGS` (gateway on every interface, port 0)
/// until the gateway serves.
fn up_until_the_gateway_serves(args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("roaming-tls-up-{}", uuid::Uuid::now_v7()));
    let mut up = std::process::Command::new(env!("CARGO_BIN_EXE_roaming"));
    up.arg("up").args(args);
    let seen = support::up_until_the_gateway_serves(up, &dir, "0.0.0.0:0");
    let _ = std::fs::remove_dir_all(&dir);
    seen
}

#[test]
fn a_gateway_on_every_interface_without_tls_says_so_loudly() {
    let plaintext = up_until_the_gateway_serves(&[]);
    assert!(
        plaintext.contains("INSECURE: the public port serves plaintext on a non-loopback address"),
        "{plaintext}"
    );
    let tls = up_until_the_gateway_serves(&["--tls"]);
    assert!(!tls.contains("INSECURE"), "{tls}");
    assert!(tls.contains("tls=true"), "{tls}");
}
