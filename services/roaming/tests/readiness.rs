//! What a load balancer (Kubernetes, deploy/k8s) relies on. Readiness means
//! "send me traffic": a broker outage shows on its own health entry
//! (`roaming.bus`) but leaves every service ready and answering, and the
//! events written meanwhile are delivered once the broker is back. SIGTERM
//! makes a process unready while it keeps serving for the shutdown delay.
//! Connections are closed (GOAWAY) after the maximum connection age, so
//! clients spread over new replicas.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use adapters_bus::testing::NatsServer;
use proto::reservation::ReservationStatus as S;
use proto::service_names;
use support::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The status (1 = `SERVING`, 2 = `NOT_SERVING`) of `service` at `addr`, 0 when
/// nothing answers.
async fn health(addr: SocketAddr, service: &str) -> i32 {
    health_of(addr, service).await.unwrap_or(0)
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_leaves_every_service_ready_and_loses_no_event() {
    let mut nats = NatsServer::start().expect("nats-server");
    let m = TestMesh::start_with(|s| s.nats_url = Some(nats.url())).await;
    let d = m.direct();
    let services = [
        (d.reservation, service_names::RESERVATION),
        (d.payment, service_names::PAYMENT),
        (d.rental, service_names::RENTAL),
        (d.parking, service_names::PARKING),
        (d.view, service_names::VIEW),
    ];
    for (addr, name) in services {
        assert_eq!(health(addr, "").await, SERVING, "{name} ready");
        assert_eq!(health(addr, service_names::LIVENESS).await, SERVING);
        eventually(Duration::from_secs(5), "bus SERVING", || async move {
            (health(addr, service_names::BUS).await == SERVING).then_some(())
        })
        .await;
    }

    nats.kill();
    for (addr, name) in services {
        eventually(Duration::from_secs(10), "bus NOT_SERVING", || async move {
            (health(addr, service_names::BUS).await == NOT_SERVING).then_some(())
        })
        .await;
        assert_eq!(health(addr, "").await, SERVING, "{name} still ready");
        assert_eq!(health(addr, name).await, SERVING, "{name} still ready");
        assert_eq!(health(addr, service_names::LIVENESS).await, SERVING);
    }
    // Calls are still answered: a reservation is taken while the broker is away.
    let id = m
        .reservation()
        .await
        .reserve_roaming(req(ALICE, roaming_request("during-outage", 3, 4)))
        .await
        .expect("reserve while the broker is down")
        .into_inner()
        .reservation
        .unwrap()
        .reservation_id;

    nats.restart().expect("nats-server again");
    for (addr, _) in services {
        eventually(
            Duration::from_secs(15),
            "bus SERVING again",
            || async move { (health(addr, service_names::BUS).await == SERVING).then_some(()) },
        )
        .await;
    }
    // The events written during the outage reach rental and the view.
    view_reaches(&m, ALICE, &id, S::RentalAccepted).await;
    m.stop().await;
}

/// Issue 35, finding 5: a broker that is connected but takes nothing (here
/// its reservation stream is gone, as when a cluster has no stream leader)
/// shows as `roaming.bus` `NOT_SERVING` once the oldest unsent event has
/// waited 10 s; readiness stays, and the bus is `SERVING` again once events
/// leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_that_takes_nothing_shows_as_a_stalled_bus() {
    let nats = NatsServer::start().expect("nats-server");
    let m = TestMesh::start_with(|s| s.nats_url = Some(nats.url())).await;
    let reservation = m.direct().reservation;
    eventually(Duration::from_secs(5), "bus SERVING", || async move {
        (health(reservation, service_names::BUS).await == SERVING).then_some(())
    })
    .await;
    let js = adapters_bus::nats::connect(&nats.url()).await.unwrap();
    js.delete_stream("ROAMING_RESERVATION").await.unwrap();
    m.reservation()
        .await
        .reserve_roaming(req(ALICE, roaming_request("stalled", 3, 4)))
        .await
        .expect("reserve while the broker takes nothing");
    eventually(Duration::from_secs(20), "bus NOT_SERVING", || async move {
        (health(reservation, service_names::BUS).await == NOT_SERVING).then_some(())
    })
    .await;
    assert_eq!(health(reservation, "").await, SERVING, "still ready");
    adapters_bus::nats::ensure_streams(&js, "", 1)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "bus SERVING again",
        || async move { (health(reservation, service_names::BUS).await == SERVING).then_some(()) },
    )
    .await;
    m.stop().await;
}

/// SIGTERM: readiness to `NOT_SERVING` at once, still answering for the
/// shutdown delay (while load balancers catch up), then the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_a_process_is_unready_but_serving_for_the_delay_then_exits() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = std::env::temp_dir().join(format!("roaming-sigterm-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    // Port 0; the child reports the port it got.
    let log = dir.join("view.log");
    let output = mesh::listening::Output::from_end_of(&log);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_roaming"))
        .args(["serve", "view"])
        .env("ROAMING_NATS_URL", nats.url())
        .env("ROAMING_DATA_DIR", dir.join("data"))
        .env("ROAMING_REPORT_LISTEN", "1")
        .env("ROAMING_VIEW_LISTEN", mesh::listening::ANY_PORT)
        .env("ROAMING_ADMIN_LISTEN", "off")
        .env("ROAMING_AUTH_SIGNING_KEY_FILE", &test_key().0)
        .env("ROAMING_SHUTDOWN_DELAY_MS", "5000")
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the roaming binary");
    let addr = output
        .addrs(&["view"], &mut child, Duration::from_secs(30))
        .await
        .expect("view reports its port")[0];
    eventually(Duration::from_secs(30), "view SERVING", || async move {
        (health_of(addr, "").await == Some(SERVING)).then_some(())
    })
    .await;

    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(2), "view NOT_SERVING", || async move {
        (health_of(addr, "").await == Some(NOT_SERVING)).then_some(())
    })
    .await;
    // Still answering (health is a call like any other), and still running.
    assert_eq!(
        health_of(addr, service_names::LIVENESS).await,
        Some(SERVING)
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before the delay"
    );

    let exited = eventually(Duration::from_secs(15), "the process to exit", || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(exited.success(), "{exited:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "left before the delay"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The status of `service` at `addr`, `None` when nothing answers.
async fn health_of(addr: SocketAddr, service: &str) -> Option<i32> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

/// Reads HTTP/2 frames from a connection that sent the preface until the
/// server sends GOAWAY (frame type 7); `true` if it did within `within`.
async fn goaway_within(addr: SocketAddr, within: Duration) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // An empty SETTINGS frame, then an ack of the server's.
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    tcp.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await.unwrap();
    let read = async {
        loop {
            let mut header = [0_u8; 9];
            if tcp.read_exact(&mut header).await.is_err() {
                return false;
            }
            let len =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let mut payload = vec![0_u8; len];
            if tcp.read_exact(&mut payload).await.is_err() {
                return false;
            }
            if header[3] == 7 {
                return true;
            }
        }
    };
    tokio::time::timeout(within, read).await.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_closed_after_the_maximum_age_so_clients_rebalance() {
    let m = TestMesh::start_with(|s| s.max_connection_age_secs = 1).await;
    let gateway = m.mesh().gateway.addr;
    let view = m.direct().view;
    assert!(
        goaway_within(gateway, Duration::from_secs(10)).await,
        "gateway"
    );
    assert!(goaway_within(view, Duration::from_secs(10)).await, "view");
    // A client simply reconnects: calls keep working.
    m.view()
        .await
        .list_my_reservations(req(
            ALICE,
            proto::view::ListMyReservationsRequest::default(),
        ))
        .await
        .unwrap();
    m.stop().await;
}

/// Runs `roaming serve <service>` with `env` for at most `limit`, killing it
/// then; its whole output (stdout and stderr) and whether it exited itself.
fn serve_output(
    dir: &std::path::Path,
    service: &str,
    env: &[(&str, &str)],
    limit: Duration,
) -> (String, bool) {
    let out = dir.join("out.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_roaming"))
        .args(["serve", service])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ROAMING_DATA_DIR", dir.join("data"))
        .env("ROAMING_ADMIN_LISTEN", "off")
        .env("ROAMING_VIEW_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "debug")
        .env("ROAMING_AUTH_SIGNING_KEY_FILE", &test_key().0)
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.join("err.log")).unwrap())
        .spawn()
        .expect("the roaming binary");
    let deadline = std::time::Instant::now() + limit;
    let exited = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut all = std::fs::read_to_string(&out).unwrap();
    all.push_str(&std::fs::read_to_string(dir.join("err.log")).unwrap());
    (all, exited)
}

/// Issue 32, finding 4: a start that cannot reach its database or its
/// broker prints where it tried (the host) but never the password, whether
/// the URL came from a setting or a `_FILE`, at debug level, in any line.
#[test]
fn a_failing_start_prints_no_password_of_its_urls() {
    const DB_SECRET: &str = "pg-S3cret-pw";
    const NATS_SECRET: &str = "nats-S3cret-pw";
    let nats = NatsServer::start().expect("nats-server");
    let dir = std::env::temp_dir().join(format!("roaming-secrets-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    // Nothing listens on port 1.
    let db_url = format!("postgres://app:{DB_SECRET}@127.0.0.1:1/view");
    let url_file = dir.join("db-url");
    std::fs::write(&url_file, &db_url).unwrap();
    let nats_ok = nats.url();
    for env in [
        vec![
            ("ROAMING_NATS_URL", nats_ok.as_str()),
            ("ROAMING_VIEW_DATABASE_URL", db_url.as_str()),
        ],
        vec![
            ("ROAMING_NATS_URL", nats_ok.as_str()),
            ("ROAMING_VIEW_DATABASE_URL_FILE", url_file.to_str().unwrap()),
        ],
    ] {
        let (all, exited) = serve_output(&dir, "view", &env, Duration::from_mins(1));
        assert!(exited, "the start did not fail: {all}");
        assert!(
            all.contains("127.0.0.1:1"),
            "where it tried is not said: {all}"
        );
        assert!(!all.contains(DB_SECRET), "the password was printed: {all}");
    }
    // A broker that is not there: the start keeps trying (and says so).
    let nats_url = format!("nats://roamer:{NATS_SECRET}@127.0.0.1:1");
    let (all, _) = serve_output(
        &dir,
        "view",
        &[("ROAMING_NATS_URL", nats_url.as_str())],
        Duration::from_secs(12),
    );
    assert!(
        all.contains("still connecting to NATS"),
        "no line about the broker: {all}"
    );
    assert!(
        !all.contains(NATS_SECRET),
        "the password was printed: {all}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
