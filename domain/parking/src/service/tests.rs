use std::sync::Arc;

use domain_kernel::fakes::{FixedClock, SequentialIds};
use domain_kernel::{
    CustomerId, IdGenerator, LotCode, Money, Principal, Recorded, SpaceId, TimeWindow, Timestamp,
    VehiclePlate, Violations,
};
use time::Duration;
use time::macros::datetime;

use super::*;
use crate::fakes::{FakeVerifier, InMemoryParking};
use crate::model::{SessionStatus, Space};

const NOW: Timestamp = datetime!(2026-11-22 10:00 UTC);

struct World {
    service: ParkingService<
        InMemoryParking,
        FakeVerifier,
        InMemoryParking,
        Arc<FixedClock>,
        Arc<SequentialIds>,
    >,
    repo: InMemoryParking,
    verifier: FakeVerifier,
    ids: Arc<SequentialIds>,
}

fn space() -> SpaceId {
    SpaceId::parse("P1-B1-001").unwrap()
}

fn plate() -> VehiclePlate {
    VehiclePlate::parse("12가3456").unwrap()
}

fn gate() -> Principal {
    Principal::gate("gate-p1", LotCode::parse("P1").unwrap())
}

async fn world() -> World {
    let repo = InMemoryParking::default();
    let verifier = FakeVerifier::default();
    let ids = Arc::new(SequentialIds::default());
    let service = ParkingService::new(
        repo.clone(),
        verifier.clone(),
        repo.clone(),
        Arc::new(FixedClock::at(NOW)),
        ids.clone(),
    );
    let s = Space::parse(
        "P1-B1-001",
        "P1",
        "B1",
        1,
        Money::krw(3_000).map_err(|e| Violations::one("hourly_rate", e)),
    )
    .unwrap();
    service
        .register_space(&Principal::operator("ops"), s)
        .await
        .unwrap();
    World {
        service,
        repo,
        verifier,
        ids,
    }
}

impl World {
    fn reservation(&self, from_h: i64, to_h: i64) -> Recorded<ParkingReservation> {
        Recorded::new(
            self.ids.event_id(),
            NOW,
            ParkingReservation {
                reservation_id: self.ids.reservation_id(),
                space_id: space(),
                vehicle_plate: plate(),
                window: TimeWindow::new(NOW + Duration::hours(from_h), NOW + Duration::hours(to_h))
                    .unwrap(),
            },
        )
    }

    /// A reservation both the reservation service and the replica know.
    async fn reserved_now(&self) -> Recorded<ParkingReservation> {
        let r = self.reservation(0, 2);
        self.verifier.knows(crate::model::ReplicaEntry {
            reservation_id: r.event.reservation_id,
            space_id: r.event.space_id.clone(),
            vehicle_plate: r.event.vehicle_plate.clone(),
            window: r.event.window,
            active: true,
        });
        self.service.handle_reserved(&r).await.unwrap();
        r
    }

    fn subjects(&self) -> Vec<&'static str> {
        self.repo.outbox().iter().map(|e| e.event.name()).collect()
    }
}

#[tokio::test]
async fn a_reserved_car_enters_online_and_leaves() {
    let w = world().await;
    let r = w.reserved_now().await;
    let s = w.service.enter(&gate(), space(), plate()).await.unwrap();
    assert_eq!(
        (s.verification, s.reservation_id),
        (Verification::Online, r.event.reservation_id)
    );
    let ended = w.service.exit(&gate(), space(), plate()).await.unwrap();
    assert_eq!(ended.status, SessionStatus::Ended);
    assert_eq!(w.subjects(), ["space_registered", "started", "ended"]);
}

#[tokio::test]
async fn another_plate_is_denied_and_the_denial_is_announced() {
    let w = world().await;
    w.reserved_now().await;
    let other = VehiclePlate::parse("99하9999").unwrap();
    let result = w.service.enter(&gate(), space(), other).await;
    assert!(matches!(
        result,
        Err(ParkingError::EntryDenied {
            reason: DenialReason::NotReserved,
            verification: Some(Verification::Online)
        })
    ));
    assert_eq!(w.subjects().last(), Some(&"entry_denied"));
}

#[tokio::test]
async fn with_the_reservation_service_down_the_replica_decides() {
    let w = world().await;
    w.reserved_now().await;
    w.verifier.set_down(true);
    let s = w.service.enter(&gate(), space(), plate()).await.unwrap();
    assert_eq!(s.verification, Verification::Replica);
}

#[tokio::test]
async fn the_replica_refuses_what_it_does_not_know_canceled_or_already_used() {
    let w = world().await;
    w.verifier.set_down(true);
    assert!(matches!(
        w.service.enter(&gate(), space(), plate()).await,
        Err(ParkingError::EntryDenied {
            verification: Some(Verification::Replica),
            ..
        })
    ));
    let r = w.reservation(0, 2);
    w.service.handle_reserved(&r).await.unwrap();
    w.service.enter(&gate(), space(), plate()).await.unwrap();
    w.service.exit(&gate(), space(), plate()).await.unwrap();
    assert!(
        w.service.enter(&gate(), space(), plate()).await.is_err(),
        "one entry per reservation"
    );

    let c = w.reservation(0, 2);
    w.service.handle_reserved(&c).await.unwrap();
    w.service
        .handle_canceled(&Recorded::new(w.ids.event_id(), NOW, c.event.clone()))
        .await
        .unwrap();
    assert!(
        w.service.enter(&gate(), space(), plate()).await.is_err(),
        "canceled"
    );
}

#[tokio::test]
async fn a_cancel_that_overtakes_its_reservation_keeps_the_replica_closed() {
    let w = world().await;
    w.verifier.set_down(true);
    let r = w.reservation(0, 2);
    w.service
        .handle_canceled(&Recorded::new(w.ids.event_id(), NOW, r.event.clone()))
        .await
        .unwrap();
    w.service.handle_reserved(&r).await.unwrap();
    assert!(w.service.enter(&gate(), space(), plate()).await.is_err());
}

#[tokio::test]
async fn redelivered_replica_events_are_duplicates() {
    let w = world().await;
    let r = w.reservation(0, 2);
    assert_eq!(
        w.service.handle_reserved(&r).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_eq!(
        w.service.handle_reserved(&r).await.unwrap(),
        HandleOutcome::Duplicate
    );
}

#[tokio::test]
async fn one_open_session_per_space() {
    let w = world().await;
    w.reserved_now().await;
    let first = w.service.enter(&gate(), space(), plate()).await.unwrap();
    // The gate retries: same session.
    assert_eq!(
        w.service
            .enter(&gate(), space(), plate())
            .await
            .unwrap()
            .session_id,
        first.session_id
    );
    let other = VehiclePlate::parse("99하9999").unwrap();
    assert!(matches!(
        w.service.enter(&gate(), space(), other).await,
        Err(ParkingError::EntryDenied {
            reason: DenialReason::SpaceOccupied,
            verification: None
        })
    ));
}

#[tokio::test]
async fn only_gates_and_operators_work_the_gate() {
    let w = world().await;
    let alice = Principal::customer(&CustomerId::parse("alice").unwrap());
    assert!(matches!(
        w.service.enter(&alice, space(), plate()).await,
        Err(ParkingError::Forbidden)
    ));
    assert!(matches!(
        w.service.exit(&alice, space(), plate()).await,
        Err(ParkingError::Forbidden)
    ));
    assert!(matches!(
        w.service
            .enter(&gate(), SpaceId::parse("P9").unwrap(), plate())
            .await,
        Err(ParkingError::SpaceNotFound(_))
    ));
    assert!(matches!(
        w.service.exit(&gate(), space(), plate()).await,
        Err(ParkingError::SessionNotFound)
    ));
}

#[tokio::test]
async fn a_gate_works_only_its_own_lot() {
    let w = world().await;
    w.reserved_now().await;
    let p2 = Principal::gate("gate-p2", LotCode::parse("P2").unwrap());
    let unbound = Principal::new("gate-x", [Role::Gate], None);
    for stranger in [&p2, &unbound] {
        assert!(
            matches!(
                w.service.enter(stranger, space(), plate()).await,
                Err(ParkingError::Forbidden)
            ),
            "{stranger:?}"
        );
    }
    assert!(w.repo.sessions().is_empty(), "nobody let in");
    let session = w.service.enter(&gate(), space(), plate()).await.unwrap();
    assert!(matches!(
        w.service.get_session(&p2, session.session_id).await,
        Err(ParkingError::SessionNotFound)
    ));
    assert!(matches!(
        w.service.exit(&p2, space(), plate()).await,
        Err(ParkingError::Forbidden)
    ));
    assert_eq!(
        w.service
            .get_session(&gate(), session.session_id)
            .await
            .unwrap()
            .status,
        SessionStatus::Started
    );
    assert!(
        w.service
            .enter(&Principal::operator("ops"), space(), plate())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn spaces_are_registered_by_operators_once() {
    let w = world().await;
    let s = Space::parse("P1-B1-001", "P1", "B1", 1, Ok(Money::krw(1).unwrap())).unwrap();
    assert!(matches!(
        w.service.register_space(&gate(), s.clone()).await,
        Err(ParkingError::Forbidden)
    ));
    assert!(matches!(
        w.service
            .register_space(&Principal::operator("ops"), s)
            .await,
        Err(ParkingError::SpaceExists(_))
    ));
    assert_eq!(
        w.service
            .list_spaces(Some(LotCode::parse("P1").unwrap()))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        w.service
            .list_spaces(Some(LotCode::parse("P2").unwrap()))
            .await
            .unwrap()
            .is_empty()
    );
}
