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

use std::path::Path;
use std::time::Duration;

use adapters_store::testing::postgres_admin_url;
use mesh::{Distributed, Layout};
use proto::reservation::ReservationStatus as S;
use proto::{parking as pk, rental as pr, reservation as pb};
use support::{
    ALICE, BOB, Cluster, GATE, OPS, eventually, parking_request, reason, req, roaming_request,
    stories, view_reaches,
};
use tonic::Code;

/// Five services as processes, each on a fresh PostgreSQL database, a
/// NATS server and a gateway whose signing key is the tests' issuer
/// (`support::test_key`): the shared harness (`tools/mesh`) with these tests'
/// settings.
async fn start() -> Distributed {
    let layout = Layout {
        gateway_key: Some(support::test_key().clone()),
        ..Layout::one_each()
    }
    .with("ROAMING_BREAKER_COOL_DOWN_MS", "1000")
    .with("ROAMING_CALL_DEADLINE_MS", "500")
    .with(
        "RUST_LOG",
        if std::env::var_os("TEST_LOG").is_some() {
            "info"
        } else {
            "warn"
        },
    );
    Distributed::start(
        Path::new(env!("CARGO_BIN_EXE_roaming")),
        &postgres_admin_url(),
        &uuid::Uuid::now_v7().simple().to_string(),
        &layout,
    )
    .await
    .expect("the distributed mesh starts")
}

/// Every service through the gateway process.
fn cluster(d: &Distributed) -> Cluster {
    Cluster {
        reservation: d.gateway,
        payment: d.gateway,
        rental: d.gateway,
        parking: d.gateway,
        view: d.gateway,
        tls: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stories_pass_with_five_processes_on_postgres_and_nats() {
    let mut d = start().await;
    let view2 = d.add_replica("view").await.unwrap();
    let cluster = cluster(&d);
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
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_races_have_one_winner_with_processes_and_replicas() {
    let mut d = start().await;
    let cluster = cluster(&d);
    seed(&cluster).await;
    let single = stories::cancel_races_hand_over(&cluster, 15, "dist").await;
    // Cancels on a second reservation replica, hand-overs on a second rental
    // replica (which asks the first reservation replica): one database, one
    // decision.
    let reservation2 = d.add_replica("reservation").await.unwrap();
    let rental2 = d.add_replica("rental").await.unwrap();
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
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_with_real_processes_killed_and_restarted() {
    let mut d = start().await;
    let cluster = cluster(&d);
    seed(&cluster).await;
    let mut reservations = cluster.reservation().await;

    // Payment killed: refused at once with UNAVAILABLE and a retry hint, nothing
    // kept; back: reservations succeed again after the breaker's cool-down.
    d.kill("payment-1");
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
    d.start_again("payment-1").await.unwrap();
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
    d.kill("rental-1");
    let mut missed = Vec::new();
    for i in 0..3 {
        let r = reservations
            .reserve_roaming(req(ALICE, roaming_request(&format!("rd-{i}"), 2, 3)))
            .await
            .unwrap();
        missed.push(r.into_inner().reservation.unwrap().reservation_id);
    }
    d.start_again("rental-1").await.unwrap();
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
    d.kill("reservation-1");
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
    d.shutdown().await;
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

/// Runs the `roaming` binary with `args` against the mesh's NATS (as an
/// operator would, with only `ROAMING_NATS_URL` set); its status and stdout.
fn roaming(d: &Distributed, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roaming"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ROAMING_NATS_URL", d.nats.url())
        .output()
        .expect("roaming runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The data lines of `roaming dlq list` (the first is the header).
fn dead_letters(d: &Distributed) -> Vec<Vec<String>> {
    let (ok, out, err) = roaming(d, &["dlq", "list"]);
    assert!(ok, "dlq list failed: {err}");
    out.lines()
        .skip(1)
        .map(|l| l.split('\t').map(ToOwned::to_owned).collect())
        .collect()
}

/// `SELECT COUNT(*) FROM <table>` in the database at `url`.
async fn count(url: &str, table: &str) -> i64 {
    use sea_orm::ConnectionTrait as _;
    let db = sea_orm::Database::connect(url).await.unwrap();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    let n = row.try_get::<i64>("", "n").unwrap();
    let _ = db.close().await;
    n
}

async fn execute(url: &str, sql: &str) {
    use sea_orm::ConnectionTrait as _;
    let db = sea_orm::Database::connect(url).await.unwrap();
    db.execute_unprepared(sql).await.unwrap();
    let _ = db.close().await;
}

fn space(n: i32) -> pk::RegisterSpaceRequest {
    pk::RegisterSpaceRequest {
        space_id: format!("P1-B1-{n:03}"),
        lot: "P1".into(),
        floor: "B1".into(),
        number: n,
        hourly_rate: Some(proto::common::Money {
            currency_code: "KRW".into(),
            minor_units: 3_000,
        }),
    }
}

/// Issue 32: an event poison for two consumers (reservation's catalog and
/// the view both read `space_registered`) leaves one dead letter each; the
/// operator lists them, sees what a replay would do, fixes the consumers and
/// replays; each consumer then knows the space, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_of_an_event_poison_for_two_consumers_are_listed_and_replayed() {
    let mut d = start().await;
    let cluster = cluster(&d);
    seed(&cluster).await;
    let poison = [(
        "ROAMING_CONSUMER_FAULT_POISON_SUBJECT",
        "parking.space_registered",
    )];
    d.restart("view-1", &poison).await.unwrap();
    d.restart("reservation-1", &poison).await.unwrap();
    cluster
        .parking()
        .await
        .register_space(req(OPS, space(11)))
        .await
        .unwrap();
    let listed = eventually(Duration::from_secs(30), "two dead letters", || {
        let lines = dead_letters(&d);
        async move { (lines.len() >= 2).then_some(lines) }
    })
    .await;
    let mut consumers: Vec<&str> = listed.iter().map(|l| l[1].as_str()).collect();
    consumers.sort_unstable();
    assert_eq!(consumers, ["reservation", "view"], "{listed:?}");
    for line in &listed {
        assert_eq!(line[2], "roaming.parking.space_registered");
        assert_eq!(line[3], listed[0][3], "the same event");
        assert!(line[5].contains("fault injection"), "{line:?}");
    }

    // A dry run changes nothing.
    let (ok, out, _) = roaming(&d, &["dlq", "replay", "--consumer", "view", "--dry-run"]);
    assert!(ok);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("would replay"))
            .count(),
        1
    );
    assert_eq!(dead_letters(&d).len(), 2);
    let (ok, _, err) = roaming(&d, &["dlq", "replay"]);
    assert!(!ok && err.contains("--all"), "a replay says what: {err}");

    // Fixed, then replayed: each consumer applies its own.
    d.restart("view-1", &[]).await.unwrap();
    d.restart("reservation-1", &[]).await.unwrap();
    let (ok, out, err) = roaming(&d, &["dlq", "replay", "--all"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("replayed")).count(), 2);
    assert!(dead_letters(&d).is_empty());
    let reservations = cluster.reservation().await;
    eventually(
        Duration::from_secs(15),
        "the catalog knows P1-B1-011",
        || {
            let mut r = reservations.clone();
            async move {
                r.quote_parking(req(
                    ALICE,
                    pb::QuoteParkingRequest {
                        space_id: "P1-B1-011".into(),
                        start_time: Some(support::ts(time::Duration::hours(1))),
                        end_time: Some(support::ts(time::Duration::hours(2))),
                    },
                ))
                .await
                .ok()
            }
        },
    )
    .await;
    let view_db = d.dbs.urls["view"].clone();
    eventually(
        Duration::from_secs(15),
        "the view knows P1-B1-011's lot",
        || {
            let url = view_db.clone();
            async move { (count(&url, "space_lots").await == 11).then_some(()) }
        },
    )
    .await;

    // A dead letter of a durable nobody consumes as (a view swapped out by a
    // rebuild) is not replayed into a stream nobody reads: it stays.
    let js = adapters_bus::nats::connect(&d.nats.url()).await.unwrap();
    js.publish("roaming.dlq.gone", bytes::Bytes::from_static(b"x"))
        .await
        .unwrap()
        .await
        .unwrap();
    let (ok, _, err) = roaming(&d, &["dlq", "replay", "--all"]);
    assert!(
        !ok && err.contains("no consumer reads its replays"),
        "{err}"
    );
    assert_eq!(dead_letters(&d).len(), 1);
    d.shutdown().await;
}

/// Issue 32: a view that missed what it consumed (here: `space_registered`
/// applied before its lot was kept, which the inbox never lets in again, and
/// a lost row) is rebuilt from the streams into a fresh database: the counts
/// equal the sources'; the view, pointed at it, goes on with the events
/// published after the rebuild, none missed, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_view_rebuilt_from_the_streams_has_what_it_missed_and_goes_on_from_there() {
    let mut d = start().await;
    let cluster = cluster(&d);
    seed(&cluster).await;
    let mut reservations = cluster.reservation().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = reservations
            .reserve_roaming(req(ALICE, roaming_request(&format!("rb-{i}"), 3, 4)))
            .await
            .unwrap();
        ids.push(r.into_inner().reservation.unwrap().reservation_id);
    }
    let parked = reservations
        .reserve_parking(req(
            BOB,
            parking_request("rb-p", "P1-B1-003", "34나5678", 60, 120),
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap()
        .reservation_id;
    view_reaches(&cluster, BOB, &parked, S::Reserved).await;
    for id in &ids {
        view_reaches(&cluster, ALICE, id, S::RentalAccepted).await;
    }
    // The upgrade gap, and a lost row: the inbox has their events, so no
    // redelivery would bring them back.
    let old = d.dbs.urls["view"].clone();
    let source = d.dbs.urls["reservation"].clone();
    execute(&old, "DELETE FROM space_lots").await;
    execute(
        &old,
        &format!(
            "DELETE FROM reservation_views WHERE reservation_id = '{}'",
            ids[0]
        ),
    )
    .await;
    let date = time::OffsetDateTime::now_utc().date().to_string();
    let schedule = |c: &Cluster| {
        let c = *c;
        let date = date.clone();
        async move {
            c.view()
                .await
                .get_space_schedule(req(
                    GATE,
                    proto::view::GetSpaceScheduleRequest {
                        space_id: "P1-B1-003".into(),
                        date,
                    },
                ))
                .await
        }
    };
    assert!(
        schedule(&cluster).await.is_err(),
        "the gate is refused while the view does not know the lot"
    );

    let fresh = adapters_store::testing::TestDatabase::postgres().await;
    let (ok, out, err) = roaming(&d, &["view", "rebuild", "--into", fresh.url()]);
    assert!(ok, "rebuild failed: {err}\n{out}");
    assert!(out.contains("ROAMING_PARKING: "), "{out}");
    let durable = out
        .lines()
        .find_map(|l| l.strip_prefix("durable: "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the rebuild names its durable")
        .to_owned();
    assert!(durable.starts_with("view-"), "{durable}");
    assert_eq!(count(fresh.url(), "space_lots").await, 10, "every lot");
    assert_eq!(
        count(fresh.url(), "reservation_views").await,
        count(&source, "reservations").await,
        "a view per reservation"
    );
    assert_eq!(count(fresh.url(), "view_rebuilds").await, 4);
    // Refused: not a fresh database.
    let (ok, _, err) = roaming(&d, &["view", "rebuild", "--into", fresh.url()]);
    assert!(!ok && err.contains("not empty"), "{err}");

    // Published after the rebuild, while the view still runs on the old
    // database.
    let late = reservations
        .reserve_roaming(req(ALICE, roaming_request("rb-late", 5, 6)))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap()
        .reservation_id;
    view_reaches(&cluster, ALICE, &late, S::RentalAccepted).await;

    // The swap: the view on the rebuilt database.
    d.restart("view-1", &[("ROAMING_VIEW_DATABASE_URL", fresh.url())])
        .await
        .unwrap();
    view_reaches(&cluster, ALICE, &late, S::RentalAccepted).await;
    view_reaches(&cluster, ALICE, &ids[0], S::RentalAccepted).await;
    schedule(&cluster)
        .await
        .expect("the gate reads its lot's schedule");
    let rows = count(fresh.url(), "reservation_views").await;
    assert_eq!(rows, count(&source, "reservations").await);
    assert_eq!(rows, 5);
    // Each event once: the inbox holds every event of the four streams the
    // view read (the rebuild's and the durable's), none twice by construction;
    // and the view's history shows no step twice.
    let view = cluster
        .view()
        .await
        .get_reservation_view(req(
            ALICE,
            proto::view::GetReservationViewRequest {
                reservation_id: late.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let mut steps: Vec<i32> = view.history.iter().map(|h| h.status).collect();
    let n = steps.len();
    steps.dedup();
    assert_eq!(steps.len(), n, "no step twice: {:?}", view.history);
    d.shutdown().await;
    drop(fresh);
}
