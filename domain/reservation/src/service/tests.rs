use domain_kernel::fakes::{FixedClock, SequentialIds};
use domain_kernel::{
    BoothCode, CardDetails, CountryCode, CustomerId, DateRange, DeviceModel, IdGenerator, Money,
    Principal, Recorded, RequestId, Serial, SpaceId, TimeWindow, Timestamp, VehiclePlate,
};
use time::macros::{date, datetime};
use time::{Date, Duration};

use super::*;
use crate::capacity::DEFAULT_MAX_PENDING_PER_CUSTOMER;
use crate::fakes::{FakePayments, InMemoryReservations, PaymentBehaviour};
use crate::pricing::DeviceOffer;
use crate::reservation::{CatalogEvent, ReservationEvent, Usage, UsageEvent};
use crate::reservation::{Details, ParkingDetails, RoamingDetails};

const NOW: Timestamp = datetime!(2026-11-22 10:00 UTC);

type Service = ReservationService<
    InMemoryReservations,
    InMemoryReservations,
    FakePayments,
    std::sync::Arc<FixedClock>,
    SequentialIds,
>;

struct World {
    service: Service,
    store: InMemoryReservations,
    payments: FakePayments,
    clock: std::sync::Arc<FixedClock>,
    ids: SequentialIds,
}

async fn world() -> World {
    let store = InMemoryReservations::default();
    let payments = FakePayments::default();
    let clock = std::sync::Arc::new(FixedClock::at(NOW));
    let service = ReservationService::new(
        store.clone(),
        store.clone(),
        payments.clone(),
        clock.clone(),
        SequentialIds::default(),
    );
    store
        .put_device_offer(&DeviceOffer {
            device_model: DeviceModel::parse("egg-lte").unwrap(),
            daily_rate: Money::krw(5_000).unwrap(),
            countries: ["JP", "US"]
                .map(|c| CountryCode::parse(c).unwrap())
                .to_vec(),
        })
        .await
        .unwrap();
    let w = World {
        service,
        store,
        payments,
        clock,
        ids: SequentialIds::default(),
    };
    // Two egg-lte at ICN-T1, one at GMP; space P1-B1-001 at 3,000 KRW an hour.
    for (serial, booth) in [("E1", "ICN-T1"), ("E2", "ICN-T1"), ("E3", "GMP")] {
        w.catalog(CatalogEvent::DeviceRegistered {
            serial: Serial::parse(serial).unwrap(),
            device_model: DeviceModel::parse("egg-lte").unwrap(),
            booth: BoothCode::parse(booth).unwrap(),
        })
        .await;
    }
    w.catalog(CatalogEvent::SpaceRegistered {
        space_id: SpaceId::parse("P1-B1-001").unwrap(),
        hourly_rate: Money::krw(3_000).unwrap(),
    })
    .await;
    w
}

impl World {
    async fn catalog(&self, event: CatalogEvent) -> HandleOutcome {
        let recorded = Recorded::new(self.ids.event_id(), self.clock.now(), event);
        self.service.handle_catalog(&recorded).await.unwrap()
    }

    async fn usage(&self, id: ReservationId, usage: Usage) -> HandleOutcome {
        let recorded = Recorded::new(
            self.ids.event_id(),
            self.clock.now(),
            UsageEvent {
                reservation_id: id,
                usage,
            },
        );
        self.service.handle_usage(&recorded).await.unwrap()
    }

    async fn reserve(
        &self,
        who: &str,
        request: &str,
        details: Details,
    ) -> Result<Reservation, ReserveError> {
        self.service
            .reserve(
                &customer(who),
                RequestId::parse(request).unwrap(),
                details,
                card(),
            )
            .await
    }
}

fn customer(id: &str) -> Principal {
    Principal::customer(&CustomerId::parse(id).unwrap())
}

fn card() -> CardDetails {
    CardDetails::parse(
        "4111111111111111",
        12,
        2030,
        "Alice Kim",
        "VISA",
        NOW.date(),
    )
    .unwrap()
}

fn roaming_at(booth: &str, start: Date, end: Date) -> Details {
    Details::Roaming(RoamingDetails {
        device_model: DeviceModel::parse("egg-lte").unwrap(),
        country: CountryCode::parse("JP").unwrap(),
        pickup_booth: BoothCode::parse(booth).unwrap(),
        return_booth: BoothCode::parse("GMP").unwrap(),
        dates: DateRange::new(start, end).unwrap(),
    })
}

fn roaming() -> Details {
    roaming_at("ICN-T1", date!(2026 - 12 - 01), date!(2026 - 12 - 03))
}

fn parking(from_h: i64, to_h: i64) -> Details {
    Details::Parking(ParkingDetails {
        space_id: SpaceId::parse("P1-B1-001").unwrap(),
        vehicle_plate: VehiclePlate::parse("12가3456").unwrap(),
        window: TimeWindow::new(NOW + Duration::hours(from_h), NOW + Duration::hours(to_h))
            .unwrap(),
    })
}

#[tokio::test]
async fn reserve_prices_on_the_server_pays_and_announces() {
    let w = world().await;
    let r = w.reserve("alice", "req-1", roaming()).await.unwrap();
    assert_eq!(r.status, Status::Reserved);
    assert_eq!(r.price, Money::krw(15_000).unwrap(), "3 days x 5,000");
    assert_eq!(w.payments.captured().get(&r.id), Some(&r.price));
    let subjects: Vec<_> = w.store.outbox().iter().map(|e| e.event.name()).collect();
    assert_eq!(subjects, ["reserved", "status_changed"]);
}

#[tokio::test]
async fn the_same_request_id_returns_the_same_reservation_without_paying_twice() {
    let w = world().await;
    let first = w.reserve("alice", "req-1", roaming()).await.unwrap();
    let again = w.reserve("alice", "req-1", roaming()).await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(w.payments.calls(), 1);
    assert_eq!(w.store.all().len(), 1);
}

#[tokio::test]
async fn a_request_id_reused_for_something_else_is_refused() {
    let w = world().await;
    w.reserve("alice", "req-1", roaming()).await.unwrap();
    let other = roaming_at("ICN-T1", date!(2026 - 12 - 05), date!(2026 - 12 - 06));
    assert!(matches!(
        w.reserve("alice", "req-1", other).await,
        Err(ReserveError::RequestIdReused)
    ));
}

#[tokio::test]
async fn request_ids_are_per_customer() {
    let w = world().await;
    let a = w.reserve("alice", "req-1", roaming()).await.unwrap();
    let b = w.reserve("bob", "req-1", roaming()).await.unwrap();
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn only_customers_reserve() {
    let w = world().await;
    for p in [
        Principal::operator("ops"),
        Principal::gate("g", domain_kernel::LotCode::parse("P1").unwrap()),
        Principal::service("payment"),
    ] {
        let result = w
            .service
            .reserve(&p, RequestId::parse("x").unwrap(), roaming(), card())
            .await;
        assert!(matches!(result, Err(ReserveError::Forbidden)), "{p:?}");
    }
}

#[tokio::test]
async fn capacity_is_the_booth_stock_per_day() {
    let w = world().await;
    w.reserve("alice", "a", roaming()).await.unwrap();
    w.reserve("bob", "b", roaming()).await.unwrap();
    let third = w.reserve("carol", "c", roaming()).await;
    assert!(matches!(third, Err(ReserveError::SoldOut)), "{third:?}");
    // Another booth has its own stock; a later period is free again.
    w.reserve(
        "carol",
        "d",
        roaming_at("GMP", date!(2026 - 12 - 01), date!(2026 - 12 - 03)),
    )
    .await
    .unwrap();
    w.reserve(
        "carol",
        "e",
        roaming_at("ICN-T1", date!(2026 - 12 - 04), date!(2026 - 12 - 04)),
    )
    .await
    .unwrap();
    assert_eq!(
        w.payments.calls(),
        4,
        "a sold-out request never reaches payment"
    );
}

#[tokio::test]
async fn overlapping_parking_windows_are_sold_out() {
    let w = world().await;
    w.reserve("alice", "a", parking(1, 3)).await.unwrap();
    assert!(matches!(
        w.reserve("bob", "b", parking(2, 4)).await,
        Err(ReserveError::SoldOut)
    ));
    let back_to_back = w.reserve("bob", "c", parking(3, 4)).await.unwrap();
    assert_eq!(back_to_back.price, Money::krw(3_000).unwrap());
}

#[tokio::test]
async fn a_declined_card_rejects_and_frees_the_capacity() {
    let w = world().await;
    w.payments.set(PaymentBehaviour::Decline);
    let result = w.reserve("alice", "a", parking(1, 3)).await;
    assert!(
        matches!(result, Err(ReserveError::PaymentDeclined { .. })),
        "{result:?}"
    );
    let stored = w.store.all();
    assert_eq!(stored[0].status, Status::Rejected);
    assert!(
        w.store
            .outbox()
            .iter()
            .any(|e| e.event.name() == "rejected")
    );
    // The same request id gets the same answer; capacity is free for others.
    assert!(matches!(
        w.reserve("alice", "a", parking(1, 3)).await,
        Err(ReserveError::PaymentDeclined { .. })
    ));
    w.payments.set(PaymentBehaviour::Capture);
    w.reserve("bob", "b", parking(1, 3)).await.unwrap();
}

#[tokio::test]
async fn payment_unavailable_rejects_at_once_and_the_same_request_id_can_retry() {
    let w = world().await;
    w.payments.set(PaymentBehaviour::Unavailable);
    let result = w.reserve("alice", "a", roaming()).await;
    let Err(ReserveError::PaymentUnavailable { retry_after, .. }) = result else {
        panic!("expected unavailable, got {result:?}");
    };
    assert_eq!(retry_after, Duration::seconds(5));
    w.payments.set(PaymentBehaviour::Capture);
    let retried = w.reserve("alice", "a", roaming()).await.unwrap();
    assert_eq!(retried.status, Status::Reserved);
    let all = w.store.all();
    assert_eq!(all.len(), 2, "the rejected attempt stays on record");
}

#[tokio::test]
async fn a_capture_whose_answer_was_lost_is_voided_through_the_rejected_event() {
    let w = world().await;
    w.payments.set(PaymentBehaviour::CaptureThenTimeout);
    let result = w.reserve("alice", "a", roaming()).await;
    let Err(ReserveError::PaymentUnavailable { reservation_id, .. }) = result else {
        panic!("{result:?}");
    };
    assert!(w.payments.captured().contains_key(&reservation_id));
    // Invariant 1: the payment service learns of the rejection and voids.
    assert!(
        w.store
            .outbox()
            .iter()
            .any(|e| matches!(&e.event, ReservationEvent::Rejected(r) if r.id == reservation_id))
    );
}

#[tokio::test]
async fn invalid_periods_unknown_models_booths_and_spaces_report_their_fields() {
    let w = world().await;
    let past = roaming_at("ICN-T1", date!(2026 - 11 - 21), date!(2026 - 11 - 23));
    let Err(ReserveError::Invalid(v)) = w.reserve("alice", "a", past).await else {
        panic!()
    };
    assert_eq!(v.to_string(), "start_date: must not be in the past");

    let mut unknown = roaming_at("NRT", date!(2026 - 12 - 01), date!(2026 - 12 - 02));
    if let Details::Roaming(d) = &mut unknown {
        d.device_model = DeviceModel::parse("sat-phone").unwrap();
    }
    let Err(ReserveError::Invalid(v)) = w.reserve("alice", "b", unknown).await else {
        panic!()
    };
    let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["pickup_booth", "device_model"]);

    let mut space = parking(1, 2);
    if let Details::Parking(d) = &mut space {
        d.space_id = SpaceId::parse("P9-X").unwrap();
    }
    let Err(ReserveError::Invalid(v)) = w.reserve("alice", "c", space).await else {
        panic!()
    };
    assert_eq!(v.iter().next().unwrap().field, "space_id");
    assert_eq!(w.payments.calls(), 0);
}

#[tokio::test]
async fn an_expired_card_is_refused_before_anything_is_claimed() {
    let w = world().await;
    let expired = CardDetails::parse(
        "4111111111111111",
        11,
        2026,
        "A",
        "VISA",
        date!(2026 - 11 - 01),
    )
    .unwrap();
    w.clock.set(datetime!(2026-12-01 00:00 UTC));
    let result = w
        .service
        .reserve(
            &customer("alice"),
            RequestId::parse("a").unwrap(),
            roaming(),
            expired,
        )
        .await;
    let Err(ReserveError::Invalid(v)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(v.iter().next().unwrap().field, "payment.expiry_year");
    assert!(w.store.all().is_empty());
}

#[tokio::test]
async fn quotes_match_what_reserving_charges() {
    let w = world().await;
    let Details::Roaming(d) = roaming() else {
        unreachable!()
    };
    let q = w
        .service
        .quote_roaming(&customer("alice"), &d)
        .await
        .unwrap();
    let r = w.reserve("alice", "a", roaming()).await.unwrap();
    assert_eq!((q.price, q.units), (r.price, 3));
    assert!(matches!(
        w.service
            .quote_roaming(
                &Principal::gate("g", domain_kernel::LotCode::parse("P1").unwrap()),
                &d
            )
            .await,
        Err(QuoteError::Forbidden)
    ));
}

#[tokio::test]
async fn customers_see_only_their_own_reservations() {
    let w = world().await;
    let r = w.reserve("alice", "a", roaming()).await.unwrap();
    assert!(w.service.get(&customer("alice"), r.id).await.is_ok());
    assert!(matches!(
        w.service.get(&customer("bob"), r.id).await,
        Err(GetError::NotFound)
    ));
    assert!(
        w.service
            .get(&Principal::operator("ops"), r.id)
            .await
            .is_ok()
    );
    assert!(matches!(
        w.service
            .get(&customer("alice"), w.ids.reservation_id())
            .await,
        Err(GetError::NotFound)
    ));
}

#[tokio::test]
async fn the_owner_cancels_before_use_and_capacity_returns() {
    let w = world().await;
    let a = w.reserve("alice", "a", parking(1, 3)).await.unwrap();
    assert!(matches!(
        w.service
            .cancel(&customer("bob"), a.id, String::new())
            .await,
        Err(CancelError::NotFound)
    ));
    let canceled = w
        .service
        .cancel(&customer("alice"), a.id, "plans changed".into())
        .await
        .unwrap();
    assert_eq!(canceled.status, Status::Canceled);
    assert!(
        w.store
            .outbox()
            .iter()
            .any(|e| e.event.name() == "canceled")
    );
    // Retried cancel answers the same; the window is reservable again.
    assert_eq!(
        w.service
            .cancel(&customer("alice"), a.id, String::new())
            .await
            .unwrap()
            .status,
        Status::Canceled
    );
    w.reserve("bob", "b", parking(1, 3)).await.unwrap();
}

#[tokio::test]
async fn cancel_after_hand_over_is_refused() {
    let w = world().await;
    let r = w.reserve("alice", "a", roaming()).await.unwrap();
    assert_eq!(
        w.usage(r.id, Usage::RentalAccepted).await,
        HandleOutcome::Applied
    );
    assert_eq!(
        w.usage(r.id, Usage::HandedOver).await,
        HandleOutcome::Applied
    );
    assert!(matches!(
        w.service
            .cancel(&customer("alice"), r.id, String::new())
            .await,
        Err(CancelError::NotCancelable(Status::InUse))
    ));
}

#[tokio::test]
async fn begin_use_and_cancel_exactly_one_wins() {
    let w = world().await;
    let rental = Principal::service("rental");
    // The booth first: the reservation is in use, the cancel loses.
    let a = w.reserve("alice", "a", roaming()).await.unwrap();
    let used = w.service.begin_use(&rental, a.id).await.unwrap();
    assert_eq!(used.status, Status::InUse);
    assert!(matches!(
        w.service
            .cancel(&customer("alice"), a.id, String::new())
            .await,
        Err(CancelError::NotCancelable(Status::InUse))
    ));
    // A retried hand-over is answered again, with no second change.
    let again = w.service.begin_use(&rental, a.id).await.unwrap();
    assert_eq!((again.status, again.version), (Status::InUse, used.version));
    // The late handed_over event changes nothing either.
    assert_eq!(
        w.usage(a.id, Usage::HandedOver).await,
        HandleOutcome::Ignored
    );

    // The customer first: the hand-over loses.
    let b = w.reserve("alice", "b", roaming()).await.unwrap();
    w.service
        .cancel(&customer("alice"), b.id, String::new())
        .await
        .unwrap();
    assert!(matches!(
        w.service.begin_use(&rental, b.id).await,
        Err(BeginUseError::Canceled)
    ));
    assert_eq!(
        w.service
            .get(&customer("alice"), b.id)
            .await
            .unwrap()
            .status,
        Status::Canceled
    );
}

#[tokio::test]
async fn only_the_rental_service_takes_a_roaming_reservation_into_use() {
    let w = world().await;
    let r = w.reserve("alice", "a", roaming()).await.unwrap();
    for who in [
        customer("alice"),
        Principal::operator("ops"),
        Principal::service("parking"),
        Principal::booth_staff("staff", BoothCode::parse("ICN-T1").unwrap()),
    ] {
        assert!(
            matches!(
                w.service.begin_use(&who, r.id).await,
                Err(BeginUseError::Forbidden)
            ),
            "{who:?}"
        );
    }
    let p = w.reserve("bob", "p", parking(20, 22)).await.unwrap();
    assert!(matches!(
        w.service
            .begin_use(&Principal::service("rental"), p.id)
            .await,
        Err(BeginUseError::NotReserved(Status::Reserved))
    ));
    assert!(matches!(
        w.service
            .begin_use(
                &Principal::service("rental"),
                ReservationId::parse("01900000-0000-7000-8000-0000000fffff").unwrap()
            )
            .await,
        Err(BeginUseError::NotFound)
    ));
}

#[tokio::test]
async fn a_parking_reservation_can_be_canceled_only_until_its_entry_opens() {
    let w = world().await;
    // Entry opens 15 minutes before the start; cancel closes a minute earlier.
    let window = |start_min: i64| {
        Details::Parking(ParkingDetails {
            space_id: SpaceId::parse("P1-B1-001").unwrap(),
            vehicle_plate: VehiclePlate::parse("12가3456").unwrap(),
            window: TimeWindow::new(
                NOW + Duration::minutes(start_min),
                NOW + Duration::minutes(start_min + 60),
            )
            .unwrap(),
        })
    };
    let open = w.reserve("bob", "soon", window(16)).await.unwrap();
    assert!(matches!(
        w.service
            .cancel(&customer("bob"), open.id, String::new())
            .await,
        Err(CancelError::EntryOpen)
    ));
    let later = w.reserve("bob", "later", window(200)).await.unwrap();
    let canceled = w
        .service
        .cancel(&customer("bob"), later.id, String::new())
        .await
        .unwrap();
    assert_eq!(canceled.status, Status::Canceled);
}

#[tokio::test]
async fn a_redelivered_usage_event_has_no_second_effect() {
    let w = world().await;
    let r = w.reserve("alice", "a", roaming()).await.unwrap();
    let event = Recorded::new(
        w.ids.event_id(),
        NOW,
        UsageEvent {
            reservation_id: r.id,
            usage: Usage::RentalAccepted,
        },
    );
    assert_eq!(
        w.service.handle_usage(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_eq!(
        w.service.handle_usage(&event).await.unwrap(),
        HandleOutcome::Ignored
    );
    let before = w.store.outbox().len();
    // Even a duplicate that would otherwise apply is stopped by the inbox.
    w.usage(r.id, Usage::HandedOver).await;
    let handed = Recorded::new(
        w.ids.event_id(),
        NOW,
        UsageEvent {
            reservation_id: r.id,
            usage: Usage::Returned,
        },
    );
    assert_eq!(
        w.service.handle_usage(&handed).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_eq!(w.store.outbox().len(), before + 2);
    assert_eq!(
        w.usage(w.ids.reservation_id(), Usage::HandedOver).await,
        HandleOutcome::UnknownReservation
    );
}

#[tokio::test]
async fn the_inbox_stops_a_replayed_event_even_if_the_state_moved_back_in_between() {
    let w = world().await;
    let r = w.reserve("alice", "a", roaming()).await.unwrap();
    let id = w.ids.event_id();
    let event = Recorded::new(
        id,
        NOW,
        UsageEvent {
            reservation_id: r.id,
            usage: Usage::RentalAccepted,
        },
    );
    w.service.handle_usage(&event).await.unwrap();
    // Same id, different payload: only the inbox can tell it was handled.
    let replay = Recorded::new(
        id,
        NOW,
        UsageEvent {
            reservation_id: r.id,
            usage: Usage::HandedOver,
        },
    );
    assert_eq!(
        w.service.handle_usage(&replay).await.unwrap(),
        HandleOutcome::Duplicate
    );
    assert_eq!(
        w.service
            .get(&customer("alice"), r.id)
            .await
            .unwrap()
            .status,
        Status::RentalAccepted
    );
}

#[tokio::test]
async fn catalog_events_are_idempotent_and_ordered_by_time() {
    let w = world().await;
    let t1 = BoothCode::parse("ICN-T1").unwrap();
    let gmp = BoothCode::parse("GMP").unwrap();
    let egg = DeviceModel::parse("egg-lte").unwrap();
    let relocated = Recorded::new(
        w.ids.event_id(),
        NOW + Duration::hours(1),
        CatalogEvent::DeviceRelocated {
            serial: Serial::parse("E1").unwrap(),
            device_model: egg.clone(),
            to_booth: gmp.clone(),
        },
    );
    assert_eq!(
        w.service.handle_catalog(&relocated).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_eq!(
        w.service.handle_catalog(&relocated).await.unwrap(),
        HandleOutcome::Duplicate
    );
    // A stale registration arriving late does not move the unit back.
    let stale = Recorded::new(
        w.ids.event_id(),
        NOW - Duration::hours(1),
        CatalogEvent::DeviceRegistered {
            serial: Serial::parse("E1").unwrap(),
            device_model: egg.clone(),
            booth: t1.clone(),
        },
    );
    w.service.handle_catalog(&stale).await.unwrap();
    assert_eq!(
        (w.store.units_at(&t1, &egg), w.store.units_at(&gmp, &egg)),
        (1, 2)
    );
}

#[tokio::test]
async fn parking_entry_is_verified_for_the_plate_and_window_with_early_grace() {
    let w = world().await;
    let r = w.reserve("alice", "a", parking(1, 3)).await.unwrap();
    let service = Principal::service("parking");
    let space = SpaceId::parse("P1-B1-001").unwrap();
    let plate = VehiclePlate::parse("12가3456").unwrap();
    let at = |minutes| Some(NOW + Duration::minutes(minutes));
    let verify = |at, plate: VehiclePlate| {
        let (service, space) = (service.clone(), space.clone());
        let svc = &w.service;
        async move {
            svc.verify_parking_entry(&service, &space, &plate, at)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        verify(at(44), plate.clone()).await,
        None,
        "16 minutes early"
    );
    assert_eq!(
        verify(at(45), plate.clone())
            .await
            .map(|e| e.reservation_id),
        Some(r.id)
    );
    assert_eq!(
        verify(at(179), plate.clone())
            .await
            .map(|e| e.reservation_id),
        Some(r.id)
    );
    assert_eq!(verify(at(180), plate.clone()).await, None, "window over");
    assert_eq!(
        verify(at(60), VehiclePlate::parse("99하9999").unwrap()).await,
        None,
        "another plate"
    );
    assert!(matches!(
        w.service
            .verify_parking_entry(&customer("alice"), &space, &plate, None)
            .await,
        Err(VerifyError::Forbidden)
    ));
    w.service
        .cancel(&customer("alice"), r.id, String::new())
        .await
        .unwrap();
    assert_eq!(verify(at(60), plate).await, None, "canceled");
}

#[tokio::test]
async fn stale_pending_claims_are_rejected_and_release_capacity() {
    let w = world().await;
    // Simulate a reserve call that died after claiming: insert a pending claim directly.
    let claim = Reservation::pending(
        w.ids.reservation_id(),
        CustomerId::parse("alice").unwrap(),
        RequestId::parse("dead").unwrap(),
        parking(1, 3),
        Money::krw(6_000).unwrap(),
        NOW,
    );
    w.store.insert_pending(&claim, 3).await.unwrap();
    assert!(matches!(
        w.reserve("bob", "b", parking(1, 3)).await,
        Err(ReserveError::SoldOut)
    ));
    assert_eq!(
        w.service.reject_stale_pending().await.unwrap(),
        0,
        "not stale yet"
    );
    w.clock.advance(DEFAULT_PENDING_TTL + Duration::seconds(1));
    assert_eq!(w.service.reject_stale_pending().await.unwrap(), 1);
    let rejected = w.service.get(&customer("alice"), claim.id).await.unwrap();
    assert_eq!(rejected.rejection, Some(RejectionReason::PaymentTimedOut));
    w.reserve("bob", "b", parking(1, 3)).await.unwrap();
}

/// Invariant 8: a customer has at most `max_pending` claims awaiting payment;
/// the next is refused before it claims anything, others are not affected,
/// and a claim that ends makes room.
#[tokio::test]
async fn a_customer_has_a_bounded_number_of_claims_awaiting_payment() {
    let w = world().await;
    let claim = |request: &str, from_h: i64| {
        Reservation::pending(
            w.ids.reservation_id(),
            CustomerId::parse("alice").unwrap(),
            RequestId::parse(request).unwrap(),
            parking(from_h, from_h + 1),
            Money::krw(3_000).unwrap(),
            NOW,
        )
    };
    // Three calls of alice's whose payments are still running.
    let claims = [claim("slow-1", 1), claim("slow-2", 2), claim("slow-3", 3)];
    for c in &claims {
        w.store
            .insert_pending(c, DEFAULT_MAX_PENDING_PER_CUSTOMER)
            .await
            .unwrap();
    }
    let held = w.store.all().len();
    assert!(matches!(
        w.reserve("alice", "fourth", roaming()).await,
        Err(ReserveError::TooManyPending { limit: 3 })
    ));
    assert_eq!(w.store.all().len(), held, "nothing was claimed");
    assert_eq!(w.payments.calls(), 0, "nothing was paid");
    // A retry of one of them learns its state, not the limit.
    assert!(matches!(
        w.reserve("alice", "slow-1", parking(1, 2)).await,
        Err(ReserveError::InProgress)
    ));
    // Another customer is not limited by alice's claims.
    w.reserve("bob", "b", roaming()).await.unwrap();
    // Her claims end (here by the sweeper): there is room again.
    w.clock.advance(DEFAULT_PENDING_TTL + Duration::seconds(1));
    assert_eq!(w.service.reject_stale_pending().await.unwrap(), 3);
    w.reserve("alice", "fourth", roaming()).await.unwrap();
}

#[tokio::test]
async fn the_limit_of_claims_is_a_setting() {
    let w = world().await;
    let service = ReservationService::new(
        w.store.clone(),
        w.store.clone(),
        w.payments.clone(),
        w.clock.clone(),
        SequentialIds::default(),
    )
    .with_max_pending_per_customer(1);
    let claim = Reservation::pending(
        w.ids.reservation_id(),
        CustomerId::parse("alice").unwrap(),
        RequestId::parse("slow").unwrap(),
        parking(1, 2),
        Money::krw(3_000).unwrap(),
        NOW,
    );
    w.store.insert_pending(&claim, 1).await.unwrap();
    let r = service
        .reserve(
            &customer("alice"),
            RequestId::parse("next").unwrap(),
            roaming(),
            card(),
        )
        .await;
    assert!(
        matches!(r, Err(ReserveError::TooManyPending { limit: 1 })),
        "{r:?}"
    );
    // The default service (3) lets the same call through.
    w.reserve("alice", "next", roaming()).await.unwrap();
}
