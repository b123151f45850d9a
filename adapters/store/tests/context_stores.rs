//! The payment, rental, parking and view stores under their domain use cases, on
//! SQLite and on PostgreSQL (a fresh database per test).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests")]

use adapters_store::Db;
use adapters_store::migrations::{ParkingMigrator, PaymentMigrator, RentalMigrator, ViewMigrator};
use adapters_store::outbox;
use adapters_store::parking::ParkingStore;
use adapters_store::payment::PaymentStore;
use adapters_store::rental::RentalStore;
use adapters_store::testing::TestDatabase;
use adapters_store::view::ViewStore;
use domain_kernel::fakes::FixedClock;
use domain_kernel::{
    BoothCode, CardDetails, CountryCode, CustomerId, DateRange, DeviceModel, IdGenerator, LotCode,
    Money, Principal, Recorded, Serial, SpaceId, TimeWindow, Timestamp, UuidV7, VehiclePlate,
};
use domain_parking::fakes::FakeVerifier;
use domain_parking::{ParkingReservation, ParkingService, Space, Verification};
use domain_payment::{PaymentService, PaymentStatus, ReservationClosed, SimulatedAcquirer};
use domain_rental::{RentalService, RentalStatus, RoamingReservation};
use domain_reservation::{Details, RoamingDetails, Status};
use domain_view::{Applied, ViewChanges, ViewRepository};
use domain_view::{Fact, ViewEvent};
use sea_orm::EntityTrait;
use time::Duration;
use time::macros::{date, datetime};

const NOW: Timestamp = datetime!(2026-12-01 09:00 UTC);

fn card() -> CardDetails {
    CardDetails::parse("4111111111111111", 12, 2030, "A", "VISA", NOW.date()).unwrap()
}

async fn payment(db: TestDatabase) {
    let store = PaymentStore::new(Db::connect::<PaymentMigrator>(db.url()).await.unwrap());
    let service = PaymentService::new(
        store.clone(),
        SimulatedAcquirer,
        FixedClock::at(NOW),
        UuidV7,
    );
    let svc = Principal::service("reservation");
    let rid = UuidV7.reservation_id();
    let p = service
        .pay(&svc, rid, Money::krw(15_000).unwrap(), &card())
        .await
        .unwrap();
    assert_eq!(p.status, PaymentStatus::Captured);
    let again = service
        .pay(&svc, rid, Money::krw(15_000).unwrap(), &card())
        .await
        .unwrap();
    assert_eq!(again, p, "lossless round trip");
    let closed = Recorded::new(
        UuidV7.event_id(),
        NOW,
        ReservationClosed {
            reservation_id: rid,
            price: p.amount,
        },
    );
    service.handle_canceled(&closed).await.unwrap();
    assert_ne!(
        service.handle_canceled(&closed).await.unwrap(),
        domain_payment::HandleOutcome::Applied
    );
    let refunded = service.get(&svc, rid).await.unwrap();
    assert_eq!(refunded.status, PaymentStatus::Refunded);
    // A rejection overtaking its payment: the late pay captures nothing.
    let early = UuidV7.reservation_id();
    let rejected = Recorded::new(
        UuidV7.event_id(),
        NOW,
        ReservationClosed {
            reservation_id: early,
            price: p.amount,
        },
    );
    service.handle_rejected(&rejected).await.unwrap();
    let late = service.pay(&svc, early, p.amount, &card()).await.unwrap();
    assert_eq!(late.status, PaymentStatus::Voided);
    let subjects: Vec<_> = outbox::unsent(store.db().reader(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.subject)
        .collect();
    assert_eq!(
        subjects,
        ["roaming.payment.captured", "roaming.payment.refunded"]
    );
    // Only the last four digits are stored.
    let rows = adapters_store::payment::entities::payment::Entity::find()
        .all(store.db().reader())
        .await
        .unwrap();
    let dump = format!("{rows:?}");
    assert!(
        dump.contains("1111") && !dump.contains("4111111111111111"),
        "{dump}"
    );
}

fn booth(s: &str) -> BoothCode {
    BoothCode::parse(s).unwrap()
}

async fn rental(db: TestDatabase) {
    let store = RentalStore::new(Db::connect::<RentalMigrator>(db.url()).await.unwrap());
    let service = RentalService::new(
        store.clone(),
        domain_rental::fakes::FakeAuthority::default(),
        FixedClock::at(NOW),
        UuidV7,
    );
    let ops = Principal::operator("ops");
    let egg = DeviceModel::parse("egg-lte").unwrap();
    service
        .register_device(
            &ops,
            Serial::parse("E1").unwrap(),
            egg.clone(),
            booth("ICN-T1"),
        )
        .await
        .unwrap();
    assert!(
        service
            .register_device(
                &ops,
                Serial::parse("E1").unwrap(),
                egg.clone(),
                booth("GMP")
            )
            .await
            .is_err()
    );
    let reserved = Recorded::new(
        UuidV7.event_id(),
        NOW,
        RoamingReservation {
            reservation_id: UuidV7.reservation_id(),
            customer_id: CustomerId::parse("alice").unwrap(),
            device_model: egg,
            country: CountryCode::parse("JP").unwrap(),
            pickup_booth: booth("ICN-T1"),
            return_booth: booth("GMP"),
            dates: DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 03)).unwrap(),
        },
    );
    service.handle_reserved(&reserved).await.unwrap();
    assert_ne!(
        service.handle_reserved(&reserved).await.unwrap(),
        domain_rental::HandleOutcome::Applied
    );
    let id = reserved.event.reservation_id;
    let t1 = Principal::booth_staff("s1", booth("ICN-T1"));
    let gmp = Principal::booth_staff("s2", booth("GMP"));
    service
        .hand_over(&t1, id, Serial::parse("E1").unwrap())
        .await
        .unwrap();
    service.return_device(&gmp, id, booth("GMP")).await.unwrap();
    let done = service.retrieve(&gmp, id).await.unwrap();
    assert_eq!(done.status, RentalStatus::Retrieved);
    assert_eq!(
        service.get_rental(&ops, id).await.unwrap(),
        done,
        "lossless round trip"
    );
    let at_gmp = service.list_devices(&gmp, None, None).await.unwrap();
    assert_eq!(at_gmp.len(), 1, "the unit moved to GMP");
    let listed = service
        .list_booth_rentals(&gmp, booth("GMP"), Some(date!(2026 - 12 - 02)))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let subjects: Vec<_> = outbox::unsent(store.db().reader(), 20)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.subject)
        .collect();
    assert_eq!(
        subjects.last().map(String::as_str),
        Some("roaming.rental.device_relocated")
    );
}

async fn parking(db: TestDatabase) {
    let store = ParkingStore::new(Db::connect::<ParkingMigrator>(db.url()).await.unwrap());
    let verifier = FakeVerifier::default();
    verifier.set_down(true);
    let service = ParkingService::new(
        store.clone(),
        verifier,
        store.clone(),
        FixedClock::at(NOW),
        UuidV7,
    );
    let ops = Principal::operator("ops");
    let space = Space::parse("P1-B1-001", "P1", "B1", 1, Ok(Money::krw(3_000).unwrap())).unwrap();
    service.register_space(&ops, space.clone()).await.unwrap();
    assert!(service.register_space(&ops, space).await.is_err());
    assert_eq!(
        service
            .list_spaces(Some(LotCode::parse("P1").unwrap()))
            .await
            .unwrap()
            .len(),
        1
    );
    let sid = SpaceId::parse("P1-B1-001").unwrap();
    let plate = VehiclePlate::parse("12가3456").unwrap();
    let reserved = Recorded::new(
        UuidV7.event_id(),
        NOW,
        ParkingReservation {
            reservation_id: UuidV7.reservation_id(),
            space_id: sid.clone(),
            vehicle_plate: plate.clone(),
            window: TimeWindow::new(NOW, NOW + Duration::hours(2)).unwrap(),
        },
    );
    service.handle_reserved(&reserved).await.unwrap();
    assert_eq!(
        service.handle_reserved(&reserved).await.unwrap(),
        domain_parking::HandleOutcome::Duplicate
    );
    let gate = Principal::gate("gate-p1", domain_kernel::LotCode::parse("P1").unwrap());
    let s = service
        .enter(&gate, sid.clone(), plate.clone())
        .await
        .unwrap();
    assert_eq!(s.verification, Verification::Replica);
    let other = VehiclePlate::parse("99하9999").unwrap();
    assert!(
        service.enter(&gate, sid.clone(), other).await.is_err(),
        "occupied"
    );
    let ended = service
        .exit(&gate, sid.clone(), plate.clone())
        .await
        .unwrap();
    assert_eq!(
        service.get_session(&ops, s.session_id).await.unwrap(),
        ended,
        "lossless round trip"
    );
    assert!(
        service.enter(&gate, sid, plate).await.is_err(),
        "the replica admits one entry per reservation"
    );
}

async fn view(db: TestDatabase) {
    let store = ViewStore::new(Db::connect::<ViewMigrator>(db.url()).await.unwrap());
    let id = UuidV7.reservation_id();
    let mut changes = store.watch(id);
    let mut elsewhere = store.watch(UuidV7.reservation_id());
    let alice = CustomerId::parse("alice").unwrap();
    let details = Details::Roaming(RoamingDetails {
        device_model: DeviceModel::parse("egg-lte").unwrap(),
        country: CountryCode::parse("JP").unwrap(),
        pickup_booth: booth("ICN-T1"),
        return_booth: booth("GMP"),
        dates: DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 03)).unwrap(),
    });
    let ev = |fact| {
        Recorded::new(
            UuidV7.event_id(),
            NOW,
            ViewEvent {
                reservation_id: id,
                fact,
            },
        )
    };
    // Out of order: the rental's acceptance first.
    let accepted = ev(Fact::Rental {
        status: RentalStatus::Accepted,
        serial: None,
    });
    assert!(matches!(
        store.apply(&accepted).await.unwrap(),
        Applied::Changed(_)
    ));
    assert_eq!(store.apply(&accepted).await.unwrap(), Applied::Duplicate);
    let reserved = ev(Fact::Described {
        customer_id: alice.clone(),
        price: Money::krw(15_000).unwrap(),
        details,
        status: Status::Reserved,
    });
    store.apply(&reserved).await.unwrap();
    store
        .apply(&ev(Fact::StatusChanged {
            customer_id: alice.clone(),
            to: Status::RentalAccepted,
        }))
        .await
        .unwrap();
    assert_eq!(
        store
            .apply(&ev(Fact::StatusChanged {
                customer_id: alice.clone(),
                to: Status::Reserved
            }))
            .await
            .unwrap(),
        Applied::Unchanged
    );
    let v = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        (v.status, v.rental_status, v.version),
        (Status::RentalAccepted, Some(RentalStatus::Accepted), 3)
    );
    let latest = tokio::time::timeout(std::time::Duration::from_secs(1), changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest, v, "a watcher sees the latest committed state");
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), changes.changed())
            .await
            .is_err(),
        "and nothing more until the next change"
    );
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), elsewhere.changed())
            .await
            .is_err(),
        "a watcher of another reservation sees none of it"
    );
    let page = store.list_for_customer(&alice, 10, None).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].1, v, "lossless round trip");
    let (pickups, returns) = store
        .booth_schedule(&booth("ICN-T1"), date!(2026 - 12 - 01))
        .await
        .unwrap();
    assert_eq!((pickups.len(), returns.len()), (1, 0));
    let (_, returns) = store
        .booth_schedule(&booth("GMP"), date!(2026 - 12 - 03))
        .await
        .unwrap();
    assert_eq!(returns.len(), 1);
}

/// Two view replicas on one PostgreSQL database, as competing consumers: a
/// change one of them commits reaches a watcher of the other (through the
/// store's one periodic re-read of every watched view), and a thousand
/// watchers of that replica share that re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_committed_by_another_view_replica_reaches_this_ones_watchers() {
    let db = TestDatabase::postgres().await;
    let here = ViewStore::new(Db::connect::<ViewMigrator>(db.url()).await.unwrap());
    let there = ViewStore::new(Db::connect::<ViewMigrator>(db.url()).await.unwrap());
    let id = UuidV7.reservation_id();
    let mut changes = here.watch(id);
    let others: Vec<_> = (0..1_000)
        .map(|_| here.watch(UuidV7.reservation_id()))
        .collect();
    let accepted = Recorded::new(
        UuidV7.event_id(),
        NOW,
        ViewEvent {
            reservation_id: id,
            fact: Fact::Rental {
                status: RentalStatus::Accepted,
                serial: None,
            },
        },
    );
    assert!(matches!(
        there.apply(&accepted).await.unwrap(),
        Applied::Changed(_)
    ));
    // A bound for a slow machine, not a measurement: the re-read runs every
    // 250 ms on PostgreSQL.
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), changes.changed())
        .await
        .expect("the other replica's change arrives")
        .unwrap();
    assert_eq!(seen.rental_status, Some(RentalStatus::Accepted));
    assert_eq!(seen, there.get(id).await.unwrap().unwrap());
    drop(others);
}

/// Events of many reservations applied as a consumer does (each
/// reservation's in order, reservations concurrently) and every event a
/// second time at once (a redelivery): every view ends exactly where folding
/// its events one after another ends, each event counts once. On PostgreSQL
/// the events that meet in the queue are folded together, in fewer write
/// jobs than events.
async fn many_events_at_once(db: TestDatabase) {
    let postgres = db.url().starts_with("postgres");
    let store = ViewStore::new(Db::connect::<ViewMigrator>(db.url()).await.unwrap());
    let alice = CustomerId::parse("alice").unwrap();
    let details = Details::Roaming(RoamingDetails {
        device_model: DeviceModel::parse("egg-lte").unwrap(),
        country: CountryCode::parse("JP").unwrap(),
        pickup_booth: booth("ICN-T1"),
        return_booth: booth("GMP"),
        dates: DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 03)).unwrap(),
    });
    let lanes: Vec<Vec<Recorded<ViewEvent>>> = (0..48)
        .map(|n| {
            let id = UuidV7.reservation_id();
            let facts = [
                Fact::Rental {
                    status: RentalStatus::Accepted,
                    serial: None,
                },
                Fact::Described {
                    customer_id: alice.clone(),
                    price: Money::krw(15_000).unwrap(),
                    details: details.clone(),
                    status: Status::Reserved,
                },
                Fact::Payment(PaymentStatus::Captured),
                // Unchanged: the view is further already.
                Fact::StatusChanged {
                    customer_id: alice.clone(),
                    to: Status::Reserved,
                },
                Fact::StatusChanged {
                    customer_id: alice.clone(),
                    to: Status::RentalAccepted,
                },
            ];
            facts
                .into_iter()
                .enumerate()
                // Some reservations see only some of their events.
                .filter(|(i, _)| n % 3 != 0 || *i != 2)
                .map(|(i, fact)| {
                    Recorded::new(
                        UuidV7.event_id(),
                        NOW + Duration::seconds(i64::try_from(i).unwrap()),
                        ViewEvent {
                            reservation_id: id,
                            fact,
                        },
                    )
                })
                .collect()
        })
        .collect();
    let events: usize = lanes.iter().map(Vec::len).sum();
    let jobs_before = store.db().writer_stats().jobs;
    let applied = futures::future::join_all(lanes.iter().flat_map(|lane| {
        // The lane in order, and the same events again, concurrently.
        [lane.clone(), lane.clone()].map(|lane| {
            let store = &store;
            async move {
                let mut outcomes = Vec::new();
                for e in &lane {
                    outcomes.push(store.apply(e).await.unwrap());
                }
                outcomes
            }
        })
    }))
    .await;
    let not_duplicate = applied
        .iter()
        .flatten()
        .filter(|a| **a != Applied::Duplicate)
        .count();
    assert_eq!(not_duplicate, events, "each event counts once");
    for lane in &lanes {
        let mut expected = None;
        for e in lane {
            if let Some(next) = domain_view::apply(expected.as_ref(), e) {
                expected = Some(next);
            }
        }
        let id = lane[0].event.reservation_id;
        assert_eq!(store.get(id).await.unwrap(), expected, "{id}");
    }
    if postgres {
        let jobs = store.db().writer_stats().jobs - jobs_before;
        assert!(
            jobs < u64::try_from(events).unwrap(),
            "{jobs} write jobs for {events} events: none folded together"
        );
    }
}

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(TestDatabase::sqlite()).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(TestDatabase::postgres().await).await;
                }
            )*
        }
    };
}

both_backends!(payment, rental, parking, view, many_events_at_once);

/// Issue 17, finding 7: the SQLite files (database, WAL, shared memory) are
/// readable by their owner only.
#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let db = TestDatabase::sqlite();
    let path = db
        .url()
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let _store = PaymentStore::new(Db::connect::<PaymentMigrator>(db.url()).await.unwrap());
    for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
}

/// Every pooled PostgreSQL connection bounds a statement and an idle open
/// transaction, so a server that stops answering fails calls (answered
/// `UNAVAILABLE`) instead of holding the pool.
#[tokio::test]
async fn postgres_connections_bound_statements_and_idle_transactions() {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    let file = TestDatabase::postgres().await;
    let db = Db::connect_pooled::<PaymentMigrator>(file.url(), 2)
        .await
        .unwrap();
    for (setting, expected) in [
        ("statement_timeout", adapters_store::STATEMENT_TIMEOUT),
        (
            "idle_in_transaction_session_timeout",
            adapters_store::IDLE_IN_TRANSACTION_TIMEOUT,
        ),
    ] {
        let row = db
            .writer()
            .query_one_raw(Statement::from_string(
                db.db_backend(),
                format!("SHOW {setting}"),
            ))
            .await
            .unwrap()
            .unwrap();
        let value: String = row.try_get_by_index(0).unwrap();
        assert_eq!(value, expected, "{setting}");
    }
    // A statement past the bound is cancelled and classified as the store
    // being unavailable (retry), not a bug (the bound lowered for this one
    // transaction only).
    let txn = db.writer().begin().await.unwrap();
    txn.execute_raw(Statement::from_string(
        db.db_backend(),
        "SET LOCAL statement_timeout = '50ms'".to_owned(),
    ))
    .await
    .unwrap();
    let slow = txn
        .execute_raw(Statement::from_string(
            db.db_backend(),
            "SELECT pg_sleep(1)".to_owned(),
        ))
        .await
        .unwrap_err();
    let _ = txn.rollback().await;
    let shown = format!("{slow:?}");
    assert!(
        adapters_store::store_err(slow).is_unavailable(),
        "a cancelled statement is a transient failure: {shown}"
    );
}
