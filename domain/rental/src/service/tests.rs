use std::sync::Arc;

use domain_kernel::fakes::{FixedClock, SequentialIds};
use domain_kernel::{
    BoothCode, CountryCode, CustomerId, DateRange, DeviceModel, IdGenerator, Principal, Recorded,
    ReservationId, Serial, Timestamp,
};
use time::macros::{date, datetime};

use super::*;
use crate::fakes::{FakeAuthority, InMemoryRentals};
use crate::model::DeviceStatus;
use crate::ports::UseRefused;

const NOW: Timestamp = datetime!(2026-12-01 09:00 UTC);

struct World {
    service: RentalService<InMemoryRentals, FakeAuthority, Arc<FixedClock>, Arc<SequentialIds>>,
    repo: InMemoryRentals,
    reservations: FakeAuthority,
    ids: Arc<SequentialIds>,
}

fn booth(s: &str) -> BoothCode {
    BoothCode::parse(s).unwrap()
}

fn serial(s: &str) -> Serial {
    Serial::parse(s).unwrap()
}

fn ops() -> Principal {
    Principal::operator("ops")
}

fn staff(at: &str) -> Principal {
    Principal::booth_staff(&format!("staff-{at}"), booth(at))
}

async fn world() -> World {
    let repo = InMemoryRentals::default();
    let ids = Arc::new(SequentialIds::default());
    let reservations = FakeAuthority::default();
    let service = RentalService::new(
        repo.clone(),
        reservations.clone(),
        Arc::new(FixedClock::at(NOW)),
        ids.clone(),
    );
    let egg = DeviceModel::parse("egg-lte").unwrap();
    for (s, b) in [("E1", "ICN-T1"), ("E2", "ICN-T1"), ("E3", "GMP")] {
        service
            .register_device(&ops(), serial(s), egg.clone(), booth(b))
            .await
            .unwrap();
    }
    World {
        service,
        repo,
        reservations,
        ids,
    }
}

impl World {
    fn reservation(&self) -> Recorded<RoamingReservation> {
        Recorded::new(
            self.ids.event_id(),
            NOW,
            RoamingReservation {
                reservation_id: self.ids.reservation_id(),
                customer_id: CustomerId::parse("alice").unwrap(),
                device_model: DeviceModel::parse("egg-lte").unwrap(),
                country: CountryCode::parse("JP").unwrap(),
                pickup_booth: booth("ICN-T1"),
                return_booth: booth("GMP"),
                dates: DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 03)).unwrap(),
            },
        )
    }

    async fn accepted(&self) -> ReservationId {
        let event = self.reservation();
        assert_eq!(
            self.service.handle_reserved(&event).await.unwrap(),
            HandleOutcome::Applied
        );
        event.event.reservation_id
    }
}

#[tokio::test]
async fn the_whole_rental_from_acceptance_to_retrieval_at_another_booth() {
    let w = world().await;
    let id = w.accepted().await;
    let r = w
        .service
        .hand_over(&staff("ICN-T1"), id, serial("E1"))
        .await
        .unwrap();
    assert_eq!(r.status, RentalStatus::HandedOver);
    let r = w
        .service
        .return_device(&staff("GMP"), id, booth("GMP"))
        .await
        .unwrap();
    assert_eq!(r.returned_at_booth, Some(booth("GMP")));
    let r = w.service.retrieve(&staff("GMP"), id).await.unwrap();
    assert_eq!(r.status, RentalStatus::Retrieved);
    let gmp = w
        .service
        .list_devices(&staff("GMP"), None, None)
        .await
        .unwrap();
    let serials: Vec<_> = gmp.iter().map(|d| (d.serial.as_str(), d.status)).collect();
    assert_eq!(
        serials,
        [("E1", DeviceStatus::InStock), ("E3", DeviceStatus::InStock)],
        "stock moved to GMP"
    );
    let subjects: Vec<_> = w
        .repo
        .outbox()
        .iter()
        .map(|e| e.event.name())
        .skip(3)
        .collect();
    assert_eq!(
        subjects,
        [
            "accepted",
            "handed_over",
            "returned",
            "retrieved",
            "device_relocated"
        ]
    );
}

#[tokio::test]
async fn a_hand_over_asks_the_reservation_first_and_a_canceled_one_keeps_the_device() {
    let w = world().await;
    let id = w.accepted().await;
    w.reservations.refuse(id, UseRefused::Canceled);
    let refused = w
        .service
        .hand_over(&staff("ICN-T1"), id, serial("E1"))
        .await;
    assert!(
        matches!(refused, Err(RentalError::ReservationCanceled)),
        "{refused:?}"
    );
    // Nothing left the booth.
    let rental = w.service.get_rental(&ops(), id).await.unwrap();
    assert_eq!(rental.status, RentalStatus::Accepted);
    let device = w.repo.get_device(&serial("E1")).await.unwrap().unwrap();
    assert_eq!(device.status, DeviceStatus::InStock);

    // A booth refused for a local reason never asks the reservation service.
    let other = w.accepted().await;
    let calls = w.reservations.calls();
    assert!(
        w.service
            .hand_over(&staff("ICN-T1"), other, serial("E3"))
            .await
            .is_err()
    );
    assert_eq!(w.reservations.calls(), calls);
}

#[tokio::test]
async fn with_the_reservation_service_down_the_booth_is_told_to_retry_and_nothing_changes() {
    let w = world().await;
    let id = w.accepted().await;
    w.reservations.set_down(true);
    let refused = w
        .service
        .hand_over(&staff("ICN-T1"), id, serial("E1"))
        .await;
    assert!(
        matches!(refused, Err(RentalError::ReservationUnavailable { retry_after }) if retry_after > std::time::Duration::ZERO),
        "{refused:?}"
    );
    assert_eq!(
        w.service.get_rental(&ops(), id).await.unwrap().status,
        RentalStatus::Accepted
    );
    w.reservations.set_down(false);
    let r = w
        .service
        .hand_over(&staff("ICN-T1"), id, serial("E1"))
        .await
        .unwrap();
    assert_eq!(r.status, RentalStatus::HandedOver);
}

#[tokio::test]
async fn a_redelivered_reserved_event_accepts_once() {
    let w = world().await;
    let event = w.reservation();
    assert_eq!(
        w.service.handle_reserved(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_ne!(
        w.service.handle_reserved(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    let accepted = w
        .repo
        .outbox()
        .iter()
        .filter(|e| e.event.name() == "accepted")
        .count();
    assert_eq!(accepted, 1);
}

#[tokio::test]
async fn only_the_pickup_booth_hands_over() {
    let w = world().await;
    let id = w.accepted().await;
    assert!(matches!(
        w.service.hand_over(&staff("GMP"), id, serial("E3")).await,
        Err(RentalError::Forbidden)
    ));
    let alice = Principal::customer(&CustomerId::parse("alice").unwrap());
    assert!(matches!(
        w.service.hand_over(&alice, id, serial("E1")).await,
        Err(RentalError::NotFound)
    ));
    assert!(matches!(
        w.service
            .hand_over(&staff("ICN-T1"), id, serial("E3"))
            .await,
        Err(RentalError::Refused(Rule::NotInStock { .. }))
    ));
    assert!(matches!(
        w.service
            .hand_over(&staff("ICN-T1"), id, serial("NOPE"))
            .await,
        Err(RentalError::DeviceNotFound(_))
    ));
}

#[tokio::test]
async fn hand_over_repeated_answers_the_same_and_one_device_serves_one_rental() {
    let w = world().await;
    let a = w.accepted().await;
    let b = w.accepted().await;
    w.service
        .hand_over(&staff("ICN-T1"), a, serial("E1"))
        .await
        .unwrap();
    assert!(
        w.service
            .hand_over(&staff("ICN-T1"), a, serial("E1"))
            .await
            .is_ok()
    );
    assert!(matches!(
        w.service.hand_over(&staff("ICN-T1"), b, serial("E1")).await,
        Err(RentalError::Refused(Rule::NotInStock { .. }))
    ));
    w.service
        .hand_over(&staff("ICN-T1"), b, serial("E2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn return_is_recorded_by_the_booth_it_happens_at() {
    let w = world().await;
    let id = w.accepted().await;
    assert!(matches!(
        w.service
            .return_device(&staff("GMP"), id, booth("GMP"))
            .await,
        Err(RentalError::Refused(Rule::WrongStatus { .. }))
    ));
    w.service
        .hand_over(&staff("ICN-T1"), id, serial("E1"))
        .await
        .unwrap();
    assert!(matches!(
        w.service
            .return_device(&staff("GMP"), id, booth("ICN-T1"))
            .await,
        Err(RentalError::Forbidden)
    ));
    w.service
        .return_device(&staff("GMP"), id, booth("GMP"))
        .await
        .unwrap();
    assert!(matches!(
        w.service.retrieve(&staff("ICN-T1"), id).await,
        Err(RentalError::Forbidden)
    ));
}

#[tokio::test]
async fn a_cancel_before_hand_over_cancels_and_after_it_changes_nothing() {
    let w = world().await;
    let event = w.reservation();
    w.service.handle_reserved(&event).await.unwrap();
    let cancel = Recorded::new(w.ids.event_id(), NOW, event.event.clone());
    assert_eq!(
        w.service.handle_canceled(&cancel).await.unwrap(),
        HandleOutcome::Applied
    );
    let id = event.event.reservation_id;
    assert_eq!(
        w.service.get_rental(&ops(), id).await.unwrap().status,
        RentalStatus::Canceled
    );

    let other = w.accepted().await;
    w.service
        .hand_over(&staff("ICN-T1"), other, serial("E1"))
        .await
        .unwrap();
    let mut late = w.reservation();
    late.event.reservation_id = other;
    assert_eq!(
        w.service.handle_canceled(&late).await.unwrap(),
        HandleOutcome::Ignored
    );
    assert_eq!(
        w.service.get_rental(&ops(), other).await.unwrap().status,
        RentalStatus::HandedOver
    );
}

#[tokio::test]
async fn a_cancel_that_overtakes_its_reservation_stops_the_late_acceptance() {
    let w = world().await;
    let reserved = w.reservation();
    let cancel = Recorded::new(w.ids.event_id(), NOW, reserved.event.clone());
    assert_eq!(
        w.service.handle_canceled(&cancel).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_eq!(
        w.service.handle_reserved(&reserved).await.unwrap(),
        HandleOutcome::Ignored
    );
    assert!(w.repo.outbox().iter().all(|e| e.event.name() != "accepted"));
}

#[tokio::test]
async fn registering_needs_the_booth_and_a_new_serial() {
    let w = world().await;
    let egg = DeviceModel::parse("egg-lte").unwrap();
    assert!(matches!(
        w.service
            .register_device(&staff("GMP"), serial("X1"), egg.clone(), booth("ICN-T1"))
            .await,
        Err(RentalError::Forbidden)
    ));
    assert!(matches!(
        w.service
            .register_device(&ops(), serial("E1"), egg.clone(), booth("GMP"))
            .await,
        Err(RentalError::DeviceExists(_))
    ));
    w.service
        .register_device(&staff("GMP"), serial("X1"), egg, booth("GMP"))
        .await
        .unwrap();
}

#[tokio::test]
async fn only_models_the_catalog_offers_are_stocked() {
    let w = world().await;
    let drone = DeviceModel::parse("drone-x").unwrap();
    w.reservations.withdraw(drone.clone());
    for who in [staff("GMP"), ops()] {
        assert!(matches!(
            w.service
                .register_device(&who, serial("D1"), drone.clone(), booth("GMP"))
                .await,
            Err(RentalError::UnknownModel(m)) if m == drone
        ));
    }
    // Without an answer from the catalog nothing is stocked either.
    w.reservations.set_down(true);
    assert!(matches!(
        w.service
            .register_device(
                &staff("GMP"),
                serial("X2"),
                DeviceModel::parse("egg-lte").unwrap(),
                booth("GMP")
            )
            .await,
        Err(RentalError::ReservationUnavailable { .. })
    ));
    assert_eq!(
        w.repo
            .outbox()
            .iter()
            .filter(|e| matches!(&e.event, RentalEvent::DeviceRegistered(_)))
            .count(),
        3,
        "only the world's three devices"
    );
}

#[tokio::test]
async fn listings_are_scoped_to_the_booth() {
    let w = world().await;
    let id = w.accepted().await;
    assert!(matches!(
        w.service
            .list_devices(
                &Principal::gate("g", domain_kernel::LotCode::parse("P1").unwrap()),
                None,
                None
            )
            .await,
        Err(RentalError::Forbidden)
    ));
    assert!(matches!(
        w.service
            .list_devices(&staff("GMP"), Some(booth("ICN-T1")), None)
            .await,
        Err(RentalError::Forbidden)
    ));
    assert_eq!(
        w.service
            .list_devices(&ops(), None, None)
            .await
            .unwrap()
            .len(),
        3
    );
    let t1 = w
        .service
        .list_booth_rentals(
            &staff("ICN-T1"),
            booth("ICN-T1"),
            Some(date!(2026 - 12 - 02)),
        )
        .await
        .unwrap();
    assert_eq!(
        t1.iter().map(|r| r.reservation_id).collect::<Vec<_>>(),
        [id]
    );
    let none = w
        .service
        .list_booth_rentals(
            &staff("ICN-T1"),
            booth("ICN-T1"),
            Some(date!(2026 - 12 - 09)),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn customers_see_their_own_rental_only() {
    let w = world().await;
    let id = w.accepted().await;
    let alice = Principal::customer(&CustomerId::parse("alice").unwrap());
    let bob = Principal::customer(&CustomerId::parse("bob").unwrap());
    assert!(w.service.get_rental(&alice, id).await.is_ok());
    assert!(matches!(
        w.service.get_rental(&bob, id).await,
        Err(RentalError::NotFound)
    ));
    assert!(
        w.service.get_rental(&staff("GMP"), id).await.is_ok(),
        "the planned return booth"
    );
}
