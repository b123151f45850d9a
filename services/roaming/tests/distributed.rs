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
