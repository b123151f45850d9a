//! TLS between a client ([`Upstream`] over [`ClientTls`]) and a server
//! ([`Runtime::serve`] with [`ServerTls::mesh`]) on loopback sockets, with
//! certificates made in the test: a good peer is served; a server or client
//! of an unknown CA, or with an expired certificate, fails its handshake; a
//! plaintext client is told by the first byte from a TLS one; and the
//! certificates of both ends (and the CA the server trusts) are rotated
//! under load without a failed call.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: a failed setup is a failed test"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adapters_grpc::balance::{Discovery, Upstream};
use adapters_grpc::incoming::ConnectionLimits;
use adapters_grpc::runtime::{Running, Runtime};
use adapters_grpc::tls::local::{Issued, LocalCa};
use adapters_grpc::tls::{ClientCerts, ClientTls, GuardLayer, PemFiles, ServerTls};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// How often the test's certificate files are read again.
const RELOAD: Duration = Duration::from_millis(100);

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("roaming-tls-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `issued` as `<dir>/<identity>/tls.crt|tls.key` and `cas` as its `ca.crt`,
/// each file replaced whole (as a renewal is).
fn write_identity(dir: &Path, identity: &str, issued: &Issued, cas: &[&LocalCa]) {
    let d = dir.join(identity);
    std::fs::create_dir_all(&d).unwrap();
    let put = |name: &str, text: &str| {
        let aside = d.join(format!("{name}.new"));
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, d.join(name)).unwrap();
    };
    put("tls.crt", &issued.cert);
    put("tls.key", &issued.key);
    put("ca.crt", &cas.iter().map(|c| c.cert()).collect::<String>());
}

/// A server of `grpc.health.v1.Health` whose `""` is `SERVING`, with the
/// TLS of `<dir>/server`.
async fn server(dir: &Path) -> Running {
    let tls = ServerTls::mesh(PemFiles::identity(dir, "server"), RELOAD).expect("server TLS");
    let (runtime, health) = Runtime::new("test", &[""]);
    runtime
        .health()
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    runtime
        .serve(
            listener,
            ConnectionLimits::default(),
            Some(tls),
            move |incoming, stop| {
                tonic::transport::Server::builder()
                    .layer(GuardLayer::mesh(ClientCerts::Required))
                    .add_service(health)
                    .serve_with_incoming_shutdown(incoming, stop)
            },
        )
        .await
}

/// A health client of `addr` with the identity of `<dir>/client`,
/// expecting the server to prove the name `server`.
fn client(dir: &Path, addr: SocketAddr) -> HealthClient<Upstream> {
    let tls = ClientTls::new(PemFiles::identity(dir, "client"), RELOAD).expect("client TLS");
    client_of(&tls, addr)
}

/// A health client of `addr` on a connection of its own, as `tls` says now.
fn client_of(tls: &ClientTls, addr: SocketAddr) -> HealthClient<Upstream> {
    let upstream = Upstream::with_tls(
        "test",
        &[format!("https://{addr}")],
        &Discovery::default(),
        Some(tls.connector("server").unwrap()),
    )
    .unwrap();
    HealthClient::new(upstream)
}

async fn check(client: &mut HealthClient<Upstream>) -> Result<i32, tonic::Status> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(Duration::from_secs(2));
    client.check(request).await.map(|r| r.into_inner().status)
}

/// A CA, a server certificate naming `server` and a client one naming
/// `client`, written under a new directory.
fn good_pair(name: &str) -> (PathBuf, LocalCa) {
    let dir = temp_dir(name);
    let ca = LocalCa::new("test CA").unwrap();
    write_identity(&dir, "server", &ca.issue(&["server"]).unwrap(), &[&ca]);
    write_identity(&dir, "client", &ca.issue(&["client"]).unwrap(), &[&ca]);
    (dir, ca)
}

#[tokio::test]
async fn a_good_peer_is_served_over_mutual_tls() {
    let (dir, _ca) = good_pair("good");
    let running = server(&dir).await;
    let mut client = client(&dir, running.addr);
    assert_eq!(check(&mut client).await.expect("served"), 1);
    running.stop(Duration::from_secs(1)).await;
}

/// The call failed, and the TLS error says why (`says`): a handshake the
/// client refused.
fn assert_refused(result: Result<i32, tonic::Status>, what: &str, says: &str) {
    let status = result.expect_err(what);
    let text = format!("{status:?}");
    assert!(text.contains(says), "{what}: {says} not in {text}");
}

/// The call failed on the transport because the server refused the
/// handshake: its alert (`says`) when it reached the client before the
/// close, else the closed connection (TLS 1.3 clients finish their side of
/// the handshake before the server has checked their certificate).
fn assert_refused_by_server(result: Result<i32, tonic::Status>, what: &str, says: &str) {
    let status = result.expect_err(what);
    assert!(
        std::error::Error::source(&status).is_some(),
        "{what}: a transport failure, not an answer: {status:?}"
    );
    let text = format!("{status:?}");
    assert!(
        text.contains(says) || text.contains("connection closed") || text.contains("reset"),
        "{what}: neither {says} nor a closed connection in {text}"
    );
}

#[tokio::test]
async fn a_server_of_an_unknown_ca_is_refused_by_the_client() {
    let (dir, _ca) = good_pair("unknown-server-ca");
    let stranger = LocalCa::new("another CA").unwrap();
    write_identity(
        &dir,
        "server",
        &stranger.issue(&["server"]).unwrap(),
        &[&stranger],
    );
    let running = server(&dir).await;
    let mut client = client(&dir, running.addr);
    assert_refused(
        check(&mut client).await,
        "a server of another CA",
        "UnknownIssuer",
    );
    running.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_client_of_an_unknown_ca_fails_the_handshake() {
    let (dir, _ca) = good_pair("unknown-client-ca");
    let stranger = LocalCa::new("another CA").unwrap();
    // The client trusts the server's CA but holds a certificate of another.
    let server_ca = std::fs::read_to_string(dir.join("server").join("ca.crt")).unwrap();
    write_identity(&dir, "client", &stranger.issue(&["client"]).unwrap(), &[]);
    std::fs::write(dir.join("client").join("ca.crt"), server_ca).unwrap();
    let running = server(&dir).await;
    let mut client = client(&dir, running.addr);
    assert_refused_by_server(
        check(&mut client).await,
        "a client of another CA",
        "UnknownCA",
    );
    running.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_expired_certificate_fails_the_handshake_at_either_end() {
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    // The server's has expired: the client refuses it.
    let (dir, ca) = good_pair("expired-server");
    let expired = ca.issue_until(&["server"], yesterday).unwrap();
    write_identity(&dir, "server", &expired, &[&ca]);
    let running = server(&dir).await;
    let mut c = client(&dir, running.addr);
    assert_refused(
        check(&mut c).await,
        "an expired server certificate",
        "Expired",
    );
    running.stop(Duration::from_secs(1)).await;

    // The client's has expired: the server refuses the handshake.
    let (dir, ca) = good_pair("expired-client");
    let expired = ca.issue_until(&["client"], yesterday).unwrap();
    write_identity(&dir, "client", &expired, &[&ca]);
    let running = server(&dir).await;
    let mut c = client(&dir, running.addr);
    assert_refused_by_server(
        check(&mut c).await,
        "an expired client certificate",
        "CertificateExpired",
    );
    running.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn plaintext_and_tls_share_the_port() {
    let (dir, _ca) = good_pair("both");
    let running = server(&dir).await;
    // Health over plaintext (a kubelet probe brings no certificate).
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = HealthClient::new(plain)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("plaintext health")
        .into_inner()
        .status;
    assert_eq!(status, 1);
    let mut tls = client(&dir, running.addr);
    assert_eq!(check(&mut tls).await.expect("TLS health"), 1);
    running.stop(Duration::from_secs(1)).await;
}

/// The leaf certificate a new TLS handshake with `addr` gets, trusting
/// `ca_pem` and presenting the client identity of `dir`.
async fn served_certificate(dir: &Path, addr: SocketAddr) -> Option<CertificateDer<'static>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(dir.join("client").join("ca.crt")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(dir.join("client").join("tls.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("client").join("tls.key"))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let tcp = TcpStream::connect(addr).await.ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("server").unwrap(), tcp)
        .await
        .ok()?;
    tls.get_ref().1.peer_certificates()?.first().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_and_the_trusted_ca_rotate_under_load_without_a_failed_call() {
    // The server trusts CA 1 and CA 2; the client's certificate is of CA 2.
    let dir = temp_dir("rotation");
    let ca1 = LocalCa::new("CA 1").unwrap();
    let ca2 = LocalCa::new("CA 2").unwrap();
    write_identity(
        &dir,
        "server",
        &ca1.issue(&["server"]).unwrap(),
        &[&ca1, &ca2],
    );
    write_identity(&dir, "client", &ca2.issue(&["client"]).unwrap(), &[&ca1]);
    let running = server(&dir).await;
    let addr = running.addr;
    let tls = ClientTls::new(PemFiles::identity(&dir, "client"), RELOAD).expect("client TLS");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (tls, stop) = (tls.clone(), Arc::clone(&stop));
        let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
        load.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let mut n = 0_u32;
            let mut client = client_of(&tls, addr);
            while !stop.load(Ordering::Relaxed) {
                // A new connection every ten calls: handshakes go on all
                // through the rotation, with the identity of the moment.
                n += 1;
                if n.is_multiple_of(10) {
                    client = client_of(&tls, addr);
                }
                match check(&mut client).await {
                    Ok(1) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        errors.push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. The server's certificate is renewed three times.
    let mut last_server = String::new();
    for _ in 0..3 {
        let renewed = ca1.issue(&["server"]).unwrap();
        last_server.clone_from(&renewed.cert);
        write_identity(&dir, "server", &renewed, &[&ca1, &ca2]);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // 2. The client moves to a certificate of CA 1.
    write_identity(&dir, "client", &ca1.issue(&["client"]).unwrap(), &[&ca1]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // 3. The server stops trusting CA 2: from now on a handshake succeeds
    //    only with the client's new certificate.
    write_identity(&dir, "server", &ca1.issue(&["server"]).unwrap(), &[&ca1]);
    let after_ca_drop = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for task in load {
        errors.extend(task.await.unwrap());
    }
    let served = ok.load(Ordering::Relaxed);
    assert!(
        errors.is_empty(),
        "failed calls during the rotation: {errors:?}"
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        served > after_ca_drop,
        "calls went on after the server dropped CA 2 ({after_ca_drop} -> {served})"
    );

    // A new handshake gets the newest server certificate.
    let newest = std::fs::read(dir.join("server").join("tls.crt")).unwrap();
    let newest = CertificateDer::from_pem_slice(&newest).unwrap();
    assert_ne!(
        newest.as_ref(),
        CertificateDer::from_pem_slice(last_server.as_bytes())
            .unwrap()
            .as_ref()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if served_certificate(&dir, addr).await.as_ref() == Some(&newest) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(RELOAD).await;
    }
    running.stop(Duration::from_secs(1)).await;
}

/// A handshake with the public port's TLS offering only `version` and
/// `alpn`: the version and protocol agreed.
async fn public_handshake(
    tls: &ServerTls,
    ca: &LocalCa,
    version: &'static rustls::SupportedProtocolVersion,
    alpn: &[u8],
) -> (rustls::ProtocolVersion, Option<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.acceptor();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(drop)
    });
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert().as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake");
    server.await.unwrap().expect("server handshake");
    let (_, connection) = client.get_ref();
    (
        connection.protocol_version().unwrap(),
        connection.alpn_protocol().map(<[u8]>::to_vec),
    )
}

#[tokio::test]
async fn the_public_port_speaks_tls_1_2_and_1_3_with_h2_and_http_1_1() {
    let dir = temp_dir("public");
    let ca = LocalCa::new("public CA").unwrap();
    ca.write(&dir.join("public"), &ca.issue(&["localhost"]).unwrap())
        .unwrap();
    let tls = ServerTls::public(
        &dir.join("public").join("tls.crt"),
        &dir.join("public").join("tls.key"),
        RELOAD,
    )
    .unwrap();
    for (version, expected) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
            let (agreed, protocol) = public_handshake(&tls, &ca, version, alpn).await;
            assert_eq!(agreed, expected);
            assert_eq!(protocol.as_deref(), Some(alpn));
        }
    }
}
