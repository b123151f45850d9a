//! The reservation store against the domain's use cases, on SQLite and on the
//! machine's PostgreSQL (a fresh database per test).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use adapters_store::Db;
use adapters_store::migrations::ReservationMigrator;
use adapters_store::outbox;
use adapters_store::reservation::ReservationStore;
use adapters_store::testing::TestDatabase;
use domain_kernel::fakes::{FixedClock, SequentialIds};
use domain_kernel::{
    BoothCode, CardDetails, CountryCode, CustomerId, DateRange, DeviceModel, IdGenerator, Money,
    Principal, Recorded, RequestId, Serial, SpaceId, TimeWindow, Timestamp, UuidV7, VehiclePlate,
};
use domain_reservation::fakes::{FakePayments, PaymentBehaviour};
use domain_reservation::ports::{Catalog, InsertError, ReservationRepository};
use domain_reservation::pricing::{DeviceOffer, SpaceOffer};
use domain_reservation::{
    CancelError, CatalogEvent, Details, HandleOutcome, ParkingDetails, Reservation,
    ReservationData, ReservationService, ReserveError, RoamingDetails, Status, Usage, UsageEvent,
};
use time::Duration;
use time::macros::{date, datetime};

const NOW: Timestamp = datetime!(2026-11-22 10:00 UTC);

type Service = ReservationService<
    ReservationStore,
    ReservationStore,
    FakePayments,
    Arc<FixedClock>,
    Arc<UuidV7>,
>;

struct World {
    service: Arc<Service>,
    store: ReservationStore,
    payments: FakePayments,
    ids: SequentialIds,
    db: TestDatabase,
}

/// A reservation service on a fresh database with `units` egg-lte at ICN-T1 and
/// space P1-B1-001.
async fn world(db: TestDatabase, units: usize) -> World {
    let conn = Db::connect::<ReservationMigrator>(db.url())
        .await
        .expect("connect and migrate");
    let store = ReservationStore::new(conn);
    let payments = FakePayments::default();
    let service = ReservationService::new(
        store.clone(),
        store.clone(),
        payments.clone(),
        Arc::new(FixedClock::at(NOW)),
        Arc::new(UuidV7),
    );
    store
        .put_device_offer(&DeviceOffer {
            device_model: DeviceModel::parse("egg-lte").unwrap(),
            daily_rate: Money::krw(5_000).unwrap(),
            countries: vec![CountryCode::parse("JP").unwrap()],
        })
        .await
        .unwrap();
    let ids = SequentialIds::default();
    for i in 0..units {
        let e = CatalogEvent::DeviceRegistered {
            serial: Serial::parse(&format!("E{i}")).unwrap(),
            device_model: DeviceModel::parse("egg-lte").unwrap(),
            booth: BoothCode::parse("ICN-T1").unwrap(),
        };
        service
            .handle_catalog(&Recorded::new(UuidV7.event_id(), NOW, e))
            .await
            .unwrap();
    }
    // The return booth must exist too.
    let e = CatalogEvent::DeviceRegistered {
        serial: Serial::parse("P-GMP").unwrap(),
        device_model: DeviceModel::parse("phone-5g").unwrap(),
        booth: BoothCode::parse("GMP").unwrap(),
    };
    service
        .handle_catalog(&Recorded::new(UuidV7.event_id(), NOW, e))
        .await
        .unwrap();
    let e = CatalogEvent::SpaceRegistered {
        space_id: SpaceId::parse("P1-B1-001").unwrap(),
        hourly_rate: Money::krw(3_000).unwrap(),
    };
    service
        .handle_catalog(&Recorded::new(UuidV7.event_id(), NOW, e))
        .await
        .unwrap();
    World {
        service: Arc::new(service),
        store,
        payments,
        ids,
        db,
    }
}

fn customer(n: usize) -> Principal {
    Principal::customer(&CustomerId::parse(&format!("c{n}")).unwrap())
}

fn card() -> CardDetails {
    CardDetails::parse("4111111111111111", 12, 2030, "A", "VISA", NOW.date()).unwrap()
}

fn roaming() -> Details {
    Details::Roaming(RoamingDetails {
        device_model: DeviceModel::parse("egg-lte").unwrap(),
        country: CountryCode::parse("JP").unwrap(),
        pickup_booth: BoothCode::parse("ICN-T1").unwrap(),
        return_booth: BoothCode::parse("GMP").unwrap(),
        dates: DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 03)).unwrap(),
    })
}

fn parking(from_min: i64, to_min: i64) -> Details {
    Details::Parking(ParkingDetails {
        space_id: SpaceId::parse("P1-B1-001").unwrap(),
        vehicle_plate: VehiclePlate::parse("12가3456").unwrap(),
        window: TimeWindow::new(
            NOW + Duration::minutes(from_min),
            NOW + Duration::minutes(to_min),
        )
        .unwrap(),
    })
}

async fn suite(db: TestDatabase) {
    let w = world(db, 2).await;
    let s = &w.service;
    // Reserve, and the same request id again: one reservation, one payment.
    let r = s
        .reserve(
            &customer(1),
            RequestId::parse("a").unwrap(),
            roaming(),
            card(),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.price),
        (Status::Reserved, Money::krw(15_000).unwrap())
    );
    let again = s
        .reserve(
            &customer(1),
            RequestId::parse("a").unwrap(),
            roaming(),
            card(),
        )
        .await
        .unwrap();
    assert_eq!(again, r, "round trip through the database is lossless");
    assert_eq!(w.payments.calls(), 1);
    // Capacity 2: the third is sold out.
    s.reserve(
        &customer(2),
        RequestId::parse("b").unwrap(),
        roaming(),
        card(),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.reserve(
            &customer(3),
            RequestId::parse("c").unwrap(),
            roaming(),
            card()
        )
        .await,
        Err(ReserveError::SoldOut)
    ));
    // Payment unavailable releases the request id for a retry.
    w.payments.set(PaymentBehaviour::Unavailable);
    let p = parking(60, 180);
    assert!(matches!(
        s.reserve(
            &customer(4),
            RequestId::parse("p").unwrap(),
            p.clone(),
            card()
        )
        .await,
        Err(ReserveError::PaymentUnavailable { .. })
    ));
    w.payments.set(PaymentBehaviour::Capture);
    let parked = s
        .reserve(&customer(4), RequestId::parse("p").unwrap(), p, card())
        .await
        .unwrap();
    assert_eq!(parked.price, Money::krw(6_000).unwrap());
    // Usage events apply once; the inbox stops a redelivery with the same id.
    let event = Recorded::new(
        w.ids.event_id(),
        NOW,
        UsageEvent {
            reservation_id: r.id,
            usage: Usage::RentalAccepted,
        },
    );
    assert_eq!(
        s.handle_usage(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    let replay = Recorded::new(
        event.event_id,
        NOW,
        UsageEvent {
            reservation_id: r.id,
            usage: Usage::HandedOver,
        },
    );
    assert_eq!(
        s.handle_usage(&replay).await.unwrap(),
        HandleOutcome::Duplicate
    );
    // Cancel before use; bob sees nothing of alice's.
    assert!(matches!(
        s.cancel(&customer(9), r.id, String::new()).await,
        Err(CancelError::NotFound)
    ));
    assert_eq!(
        s.cancel(&customer(1), r.id, "x".into())
            .await
            .unwrap()
            .status,
        Status::Canceled
    );
    // Parking verification reads the stored window.
    let plate = VehiclePlate::parse("12가3456").unwrap();
    let entry = s
        .verify_parking_entry(
            &Principal::service("parking"),
            &SpaceId::parse("P1-B1-001").unwrap(),
            &plate,
            Some(NOW + Duration::minutes(50)),
        )
        .await
        .unwrap();
    assert_eq!(entry.map(|e| e.reservation_id), Some(parked.id));
    // Every change wrote its events to the outbox, in order.
    let pending = outbox::unsent(w.store.db().reader(), 100).await.unwrap();
    let subjects: Vec<_> = pending.iter().map(|p| p.event.subject.as_str()).collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| **s == "roaming.reservation.reserved")
            .count(),
        3
    );
    assert_eq!(
        subjects
            .iter()
            .filter(|s| **s == "roaming.reservation.rejected")
            .count(),
        1
    );
    assert_eq!(subjects.last(), Some(&"roaming.reservation.status_changed"));
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    // A stale claim is swept.
    let stale = w
        .store
        .pending_before(NOW + Duration::hours(1))
        .await
        .unwrap();
    assert!(stale.is_empty());
}

/// 64 callers at once for a resource of capacity 3 (roaming) or 1 (parking).
async fn race(db: TestDatabase) {
    let w = world(db, 3).await;
    let attempts = |details: Details, tag: &'static str| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let service = Arc::clone(&w.service);
                let details = details.clone();
                tokio::spawn(async move {
                    service
                        .reserve(
                            &customer(i),
                            RequestId::parse(&format!("{tag}{i}")).unwrap(),
                            details,
                            card(),
                        )
                        .await
                })
            })
            .collect();
        futures::future::join_all(handles)
    };
    let roaming_results = attempts(roaming(), "r").await;
    let ok = roaming_results
        .iter()
        .filter(|r| matches!(r, Ok(Ok(_))))
        .count();
    let sold_out = roaming_results
        .iter()
        .filter(|r| matches!(r, Ok(Err(ReserveError::SoldOut))))
        .count();
    assert_eq!(
        (ok, sold_out),
        (3, 61),
        "exactly the stock, the rest sold out"
    );

    // Overlapping windows: each starts 1 minute later, all overlap the first.
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let service = Arc::clone(&w.service);
            tokio::spawn(async move {
                service
                    .reserve(
                        &customer(i),
                        RequestId::parse(&format!("p{i}")).unwrap(),
                        parking(i64::try_from(i).unwrap(), 120),
                        card(),
                    )
                    .await
            })
        })
        .collect();
    let parking_results = futures::future::join_all(handles).await;
    let ok = parking_results
        .iter()
        .filter(|r| matches!(r, Ok(Ok(_))))
        .count();
    assert_eq!(ok, 1, "one reservation per space and window");

    let holding = w
        .store
        .all()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status.is_holding())
        .count();
    assert_eq!(holding, 4);
}

/// The capacity query reads only holdings that can overlap: its bound (no
/// rental is longer than `MAX_ROAMING_DAYS`) must not miss the longest one.
async fn longest_rental(db: TestDatabase) {
    let w = world(db, 1).await;
    let days = |from: time::Date, to: time::Date| {
        let Details::Roaming(mut d) = roaming() else {
            unreachable!()
        };
        d.dates = DateRange::new(from, to).unwrap();
        Details::Roaming(d)
    };
    let first = date!(2026 - 12 - 01);
    let last = first + Duration::days(i64::from(domain_reservation::pricing::MAX_ROAMING_DAYS) - 1);
    let reserve = |n: usize, details: Details| {
        let s = Arc::clone(&w.service);
        async move {
            s.reserve(
                &customer(n),
                RequestId::parse(&format!("l{n}")).unwrap(),
                details,
                card(),
            )
            .await
        }
    };
    reserve(1, days(first, last))
        .await
        .expect("the longest rental");
    for (n, (from, to)) in [
        (first, first),
        (last, last),
        (last, last + Duration::days(3)),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            matches!(
                reserve(10 + n, days(from, to)).await,
                Err(ReserveError::SoldOut)
            ),
            "{from}..{to} overlaps the longest rental"
        );
    }
    let after = last + Duration::days(1);
    reserve(20, days(after, after))
        .await
        .expect("the day after is free");
}

/// Catalog answers are remembered for a moment, but a change this store
/// applies is seen by the very next reservation.
async fn catalog_changes_show_at_once(db: TestDatabase) {
    let w = world(db, 1).await;
    let at_new_booth = || {
        let Details::Roaming(mut d) = roaming() else {
            unreachable!()
        };
        d.pickup_booth = BoothCode::parse("PUS").unwrap();
        Details::Roaming(d)
    };
    let reserve = |n: usize| {
        let s = Arc::clone(&w.service);
        async move {
            s.reserve(
                &customer(n),
                RequestId::parse(&format!("k{n}")).unwrap(),
                at_new_booth(),
                card(),
            )
            .await
        }
    };
    assert!(reserve(1).await.is_err(), "no booth PUS yet");
    let e = CatalogEvent::DeviceRegistered {
        serial: Serial::parse("PUS-1").unwrap(),
        device_model: DeviceModel::parse("egg-lte").unwrap(),
        booth: BoothCode::parse("PUS").unwrap(),
    };
    w.service
        .handle_catalog(&Recorded::new(UuidV7.event_id(), NOW, e))
        .await
        .unwrap();
    let r = reserve(2).await.expect("the new booth is known at once");
    assert_eq!(r.status, Status::Reserved);
}

/// The same for parking: the capacity query's bound (no window is longer than
/// `MAX_PARKING_WINDOW`) must not miss the longest window.
async fn longest_parking(db: TestDatabase) {
    let w = world(db, 1).await;
    let day = domain_reservation::pricing::MAX_PARKING_WINDOW.whole_minutes();
    let reserve = |n: usize, from: i64, to: i64| {
        let s = Arc::clone(&w.service);
        async move {
            s.reserve(
                &customer(n),
                RequestId::parse(&format!("w{n}")).unwrap(),
                parking(from, to),
                card(),
            )
            .await
        }
    };
    reserve(1, 60, 60 + day).await.expect("the longest window");
    for (n, (from, to)) in [(30, 61), (59 + day, 90 + day)].into_iter().enumerate() {
        assert!(
            matches!(reserve(10 + n, from, to).await, Err(ReserveError::SoldOut)),
            "minutes {from}..{to} overlap the longest window"
        );
    }
    reserve(20, 60 + day, 120 + day)
        .await
        .expect("right after it is free");
}

/// Invariant 8 under a race: 32 claims of one customer at once, each on a
/// space of its own (so no resource lock serializes them), half through
/// another store on its own connections (another replica): exactly
/// `MAX` are written, the rest refused, whatever the interleaving.
async fn claim_limit(db: TestDatabase) {
    const MAX: u32 = 3;
    const CLAIMS: usize = 32;
    const ROUNDS: i64 = 6;
    let w = world(db, 1).await;
    let other = ReservationStore::new(
        Db::connect::<ReservationMigrator>(w.db.url())
            .await
            .expect("a second connection"),
    );
    for i in 0..CLAIMS {
        w.store
            .put_space(
                &SpaceOffer {
                    space_id: SpaceId::parse(&format!("P9-B1-{i:03}")).unwrap(),
                    hourly_rate: Money::krw(3_000).unwrap(),
                },
                None,
            )
            .await
            .unwrap();
    }
    let claim = |customer: &str, i: usize, details: Details| {
        Reservation::restore(ReservationData {
            id: UuidV7.reservation_id(),
            customer_id: CustomerId::parse(customer).unwrap(),
            request_id: RequestId::parse(&format!("g{i}")).unwrap(),
            details,
            price: Money::krw(3_000).unwrap(),
            status: Status::PendingPayment,
            rejection: None,
            cancel_reason: None,
            created_at: NOW,
            updated_at: NOW,
            version: 0,
        })
    };
    let space = |i: usize, round: i64| {
        let start = NOW + Duration::hours(1 + 2 * round);
        Details::Parking(ParkingDetails {
            space_id: SpaceId::parse(&format!("P9-B1-{i:03}")).unwrap(),
            vehicle_plate: VehiclePlate::parse("12가3456").unwrap(),
            window: TimeWindow::new(start, start + Duration::hours(1)).unwrap(),
        })
    };
    // Every store's pool warmed up, so the calls start together.
    for store in [&w.store, &other] {
        store.pending_before(NOW).await.unwrap();
    }
    // A few rounds, one greedy customer each: a check that is not
    // serialized lets a fourth claim through in some of them.
    for round in 0..ROUNDS {
        let customer = format!("greedy{round}");
        let start = Arc::new(tokio::sync::Barrier::new(CLAIMS));
        let handles: Vec<_> = (0..CLAIMS)
            .map(|i| {
                let store = if i % 2 == 0 {
                    w.store.clone()
                } else {
                    other.clone()
                };
                let claim = claim(&customer, i, space(i, round));
                let start = Arc::clone(&start);
                tokio::spawn(async move {
                    start.wait().await;
                    store.insert_pending(&claim, MAX).await
                })
            })
            .collect();
        let results = futures::future::join_all(handles).await;
        let written = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(InsertError::TooManyPending { limit: MAX }))))
            .count();
        assert_eq!(
            (written, refused),
            (3, CLAIMS - 3),
            "round {round}: {results:?}"
        );
    }
    let pending = w
        .store
        .all()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status == Status::PendingPayment)
        .count();
    assert_eq!(pending, 3 * usize::try_from(ROUNDS).unwrap());
    // Another customer is not held back by the greedy one.
    let theirs = claim("patient", 0, parking(600, 660));
    w.store.insert_pending(&theirs, MAX).await.unwrap();
}

mod sqlite {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_customers_claims_are_limited_under_a_race() {
        claim_limit(TestDatabase::sqlite()).await;
    }

    #[tokio::test]
    async fn the_capacity_check_sees_the_longest_parking_window() {
        longest_parking(TestDatabase::sqlite()).await;
    }

    #[tokio::test]
    async fn catalog_changes_are_seen_at_once() {
        catalog_changes_show_at_once(TestDatabase::sqlite()).await;
    }

    #[tokio::test]
    async fn the_capacity_check_sees_the_longest_rental() {
        longest_rental(TestDatabase::sqlite()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn repository_suite() {
        suite(TestDatabase::sqlite()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sixty_four_concurrent_reservations_never_overbook() {
        race(TestDatabase::sqlite()).await;
    }
}

mod postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_customers_claims_are_limited_under_a_race() {
        claim_limit(TestDatabase::postgres().await).await;
    }

    #[tokio::test]
    async fn the_capacity_check_sees_the_longest_parking_window() {
        longest_parking(TestDatabase::postgres().await).await;
    }

    #[tokio::test]
    async fn catalog_changes_are_seen_at_once() {
        catalog_changes_show_at_once(TestDatabase::postgres().await).await;
    }

    #[tokio::test]
    async fn the_capacity_check_sees_the_longest_rental() {
        longest_rental(TestDatabase::postgres().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn repository_suite() {
        suite(TestDatabase::postgres().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sixty_four_concurrent_reservations_never_overbook() {
        race(TestDatabase::postgres().await).await;
    }
}
