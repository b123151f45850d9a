//! The same stories with five separate `roaming serve` processes on PostgreSQL
//! (a fresh database each) and a NATS JetStream server this test starts, all
//! called through a sixth process, the gateway, with tokens; the view runs as
//! two replicas sharing one durable. Then the faults, with real
//! processes killed (SIGKILL) and restarted.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use adapters_bus::testing::NatsServer;
use adapters_store::testing::TestDatabase;
use proto::reservation::ReservationStatus as S;
use proto::{parking as pk, rental as pr, reservation as pb};
use support::{
    ALICE, BOB, Cluster, GATE, OPS, eventually, parking_request, reason, req, roaming_request,
    stories, view_reaches,
};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const SERVICES: [&str; 5] = ["payment", "reservation", "rental", "parking", "view"];

/// A port no process of this test was given yet: the ports of a mesh are
/// probed before any of its processes binds, and the system may hand a
/// released port out again (two services given one port: the second exits
/// with "address already in use" while the first answers for it).
fn free_port(taken: &mut Vec<u16>) -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !taken.contains(&port) {
            taken.push(port);
            return port;
        }
    }
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

/// Five services (plus replicas) as processes, their databases and a NATS server.
struct Distributed {
    /// Stopped on drop, after the processes.
    nats: NatsServer,
    dirs: Vec<PathBuf>,
    data: PathBuf,
    ports: HashMap<&'static str, u16>,
    /// Every port handed out, so none is handed out twice.
    taken: Vec<u16>,
    dbs: HashMap<&'static str, TestDatabase>,
    running: HashMap<&'static str, Child>,
    replicas: Vec<Child>,
    /// Signing keys: the gateway's is the tests' issuer; reservation, rental
    /// and parking sign their own service tokens.
    keys: HashMap<&'static str, PathBuf>,
    trusted: String,
}

impl Distributed {
    async fn start() -> Self {
        let nats = NatsServer::start().expect("nats-server");
        let data = std::env::temp_dir().join(format!("roaming-dist-{}", uuid::Uuid::now_v7()));
        let mut keys = HashMap::from([("gateway", support::test_key().0.clone())]);
        let mut trusted = vec![support::test_key().1.key().public_x()];
        for service in ["reservation", "rental", "parking"] {
            let path = data.join("keys").join(format!("{service}.pem"));
            let key = adapters_auth::SigningKey::generate().unwrap();
            key.write_pem(&path).unwrap();
            trusted.push(format!("{service}={}", key.public_x()));
            keys.insert(service, path);
        }
        let mut taken = Vec::new();
        let ports = SERVICES
            .iter()
            .chain(&["gateway"])
            .map(|s| (*s, free_port(&mut taken)))
            .collect();
        let mut d = Self {
            nats,
            dirs: vec![data.clone()],
            data,
            ports,
            taken,
            dbs: HashMap::new(),
            running: HashMap::new(),
            replicas: Vec::new(),
            keys,
            trusted: trusted.join(","),
        };
        for service in SERVICES {
            d.dbs.insert(service, TestDatabase::postgres().await);
            let child = d.spawn(service, d.addr(service));
            d.running.insert(service, child);
        }
        let gateway = d.spawn("gateway", d.addr("gateway"));
        d.running.insert("gateway", gateway);
        for service in SERVICES.iter().chain(&["gateway"]) {
            wait_serving(d.addr(service)).await;
        }
        d
    }

    fn addr(&self, service: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[service]))
    }

    fn spawn(&self, service: &str, listen: SocketAddr) -> Child {
        let upper = service.to_uppercase();
        let mut command = Command::new(env!("CARGO_BIN_EXE_roaming"));
        command
            .args(["serve", service])
            .env("ROAMING_NATS_URL", self.nats.url())
            .env("ROAMING_DATA_DIR", &self.data)
            .env(format!("ROAMING_{upper}_LISTEN"), listen.to_string())
            // As the README sets it up: everyone trusts the issuer's key, and
            // reservation's, rental's and parking's own keys only for themselves.
            .env("ROAMING_ADMIN_LISTEN", "off")
            .env("ROAMING_AUTH_TRUSTED_KEYS", &self.trusted)
            .env(
                "ROAMING_AUTH_SIGNING_KEY_FILE",
                self.keys
                    .get(service)
                    .map(|k| k.as_os_str())
                    .unwrap_or_default(),
            );
        if let Some(db) = self.dbs.get(service) {
            command.env(format!("ROAMING_{upper}_DATABASE_URL"), db.url());
        }
        for other in SERVICES {
            command.env(
                format!("ROAMING_{}_ADDRS", other.to_uppercase()),
                format!("http://{}", self.addr(other)),
            );
        }
        command
            .env("ROAMING_BREAKER_COOL_DOWN_MS", "1000")
            .env("ROAMING_CALL_DEADLINE_MS", "500")
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
            .expect("the roaming binary")
    }

    /// Another replica of `service` on its own port, same database and durable.
    async fn replica(&mut self, service: &str) -> SocketAddr {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port(&mut self.taken)));
        let child = self.spawn(service, addr);
        self.replicas.push(child);
        wait_serving(addr).await;
        addr
    }

    /// SIGKILL: no drain, no goodbye.
    fn kill(&mut self, service: &'static str) {
        if let Some(mut c) = self.running.remove(service) {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    async fn restart(&mut self, service: &'static str) {
        let child = self.spawn(service, self.addr(service));
        self.running.insert(service, child);
        wait_serving(self.addr(service)).await;
    }

    /// Every service through the gateway process.
    fn cluster(&self) -> Cluster {
        let g = self.addr("gateway");
        Cluster {
            reservation: g,
            payment: g,
            rental: g,
            parking: g,
            view: g,
        }
    }
}

impl Drop for Distributed {
    fn drop(&mut self) {
        for c in self.running.values_mut().chain(self.replicas.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stories_pass_with_five_processes_on_postgres_and_nats() {
    let mut d = Distributed::start().await;
    let view2 = d.replica("view").await;
    let cluster = d.cluster();
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
    let mine = other_view
        .view()
        .await
        .list_my_reservations(req(
            ALICE,
            proto::view::ListMyReservationsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .reservations;
    assert!(!mine.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_races_have_one_winner_with_processes_and_replicas() {
    let mut d = Distributed::start().await;
    let cluster = d.cluster();
    seed(&cluster).await;
    let single = stories::cancel_races_hand_over(&cluster, 15, "dist").await;
    // Cancels on a second reservation replica, hand-overs on a second rental
    // replica (which asks the first reservation replica): one database, one
    // decision.
    let reservation2 = d.replica("reservation").await;
    let rental2 = d.replica("rental").await;
    let mixed = Cluster {
        reservation: reservation2,
        rental: rental2,
        ..cluster
    };
    let replicas = stories::cancel_races_hand_over(&mixed, 15, "replicas").await;
    eprintln!("distributed: {single:?}; with replicas: {replicas:?}");
    assert_eq!(single.cancel_won + single.use_won, 15);
    assert_eq!(replicas.cancel_won + replicas.use_won, 15);
    stories::cancel_races_enter(&mixed, 5, "dist").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_with_real_processes_killed_and_restarted() {
    let mut d = Distributed::start().await;
    let cluster = d.cluster();
    seed(&cluster).await;
    let mut reservations = cluster.reservation().await;

    // Payment killed: refused at once with UNAVAILABLE and a retry hint, nothing
    // kept; back: reservations succeed again after the breaker's cool-down.
    d.kill("payment");
    for i in 0..6 {
        let e = reservations
            .reserve_roaming(req(BOB, roaming_request(&format!("pd-{i}"), 5, 6)))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e)),
            (Code::Unavailable, "PAYMENT_UNAVAILABLE".to_owned())
        );
        assert!(support::retry_delay(&e).is_some(), "RetryInfo");
    }
    d.restart("payment").await;
    eventually(
        Duration::from_secs(15),
        "reserve after payment is back",
        || {
            let mut r = reservations.clone();
            async move {
                r.reserve_roaming(req(BOB, roaming_request("pd-0", 5, 6)))
                    .await
                    .ok()
            }
        },
    )
    .await;

    // Rental killed: reservations still succeed; restarted, it accepts them all.
    d.kill("rental");
    let mut missed = Vec::new();
    for i in 0..3 {
        let r = reservations
            .reserve_roaming(req(ALICE, roaming_request(&format!("rd-{i}"), 2, 3)))
            .await
            .unwrap();
        missed.push(r.into_inner().reservation.unwrap().reservation_id);
    }
    d.restart("rental").await;
    for id in &missed {
        view_reaches(&cluster, ALICE, id, S::RentalAccepted).await;
    }

    // Reservation killed: a reserved car still enters, decided by the replica.
    let parked = reservations
        .reserve_parking(req(
            ALICE,
            parking_request("pk", "P1-B1-005", "12가3456", 0, 90),
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    view_reaches(&cluster, ALICE, &parked.reservation_id, S::Reserved).await;
    d.kill("reservation");
    let parking = cluster.parking().await;
    let session = eventually(Duration::from_secs(15), "entry via the replica", || {
        let mut p = parking.clone();
        async move {
            p.enter(req(
                GATE,
                pk::EnterRequest {
                    space_id: "P1-B1-005".into(),
                    vehicle_plate: "12가3456".into(),
                },
            ))
            .await
            .ok()
        }
    })
    .await
    .into_inner()
    .session
    .unwrap();
    assert_eq!(session.verification, pk::EntryVerification::Replica as i32);
    assert_eq!(session.reservation_id, parked.reservation_id);
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
                        ALICE,
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
                        ALICE,
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
