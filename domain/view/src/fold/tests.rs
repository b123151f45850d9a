use domain_kernel::fakes::SequentialIds;
use domain_kernel::{
    BoothCode, CountryCode, CustomerId, DateRange, DeviceModel, IdGenerator, LotCode, Money,
    Principal, Recorded, ReservationId, Serial, SpaceId, TimeWindow, Timestamp, VehiclePlate,
};
use domain_parking::SessionStatus;
use domain_payment::PaymentStatus;
use domain_rental::RentalStatus;
use domain_reservation::{Details, ParkingDetails, RoamingDetails, Status};
use proptest::prelude::*;
use time::Duration;
use time::macros::{date, datetime};

use super::*;
use crate::{
    booth_schedule, may_read_booth_schedule, may_read_space_schedule, may_see, on_schedule_for,
    space_schedule,
};

const T0: Timestamp = datetime!(2026-11-22 10:00 UTC);

fn alice() -> CustomerId {
    CustomerId::parse("alice").unwrap()
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

fn parking(space: &str, from_h: i64) -> Details {
    Details::Parking(ParkingDetails {
        space_id: SpaceId::parse(space).unwrap(),
        vehicle_plate: VehiclePlate::parse("12가3456").unwrap(),
        window: TimeWindow::new(
            T0 + Duration::hours(from_h),
            T0 + Duration::hours(from_h + 2),
        )
        .unwrap(),
    })
}

/// The events of a roaming reservation's whole life, in the order they happen.
fn roaming_story(id: ReservationId) -> Vec<Recorded<ViewEvent>> {
    let ids = SequentialIds::default();
    let facts = vec![
        Fact::Described {
            customer_id: alice(),
            price: Money::krw(15_000).unwrap(),
            details: roaming(),
            status: Status::Reserved,
        },
        Fact::StatusChanged {
            customer_id: alice(),
            to: Status::Reserved,
        },
        Fact::Payment(PaymentStatus::Captured),
        Fact::Rental {
            status: RentalStatus::Accepted,
            serial: None,
        },
        Fact::StatusChanged {
            customer_id: alice(),
            to: Status::RentalAccepted,
        },
        Fact::Rental {
            status: RentalStatus::HandedOver,
            serial: Some(Serial::parse("E1").unwrap()),
        },
        Fact::StatusChanged {
            customer_id: alice(),
            to: Status::InUse,
        },
        Fact::Rental {
            status: RentalStatus::Returned,
            serial: Some(Serial::parse("E1").unwrap()),
        },
        Fact::StatusChanged {
            customer_id: alice(),
            to: Status::Returned,
        },
        Fact::Rental {
            status: RentalStatus::Retrieved,
            serial: Some(Serial::parse("E1").unwrap()),
        },
        Fact::StatusChanged {
            customer_id: alice(),
            to: Status::Completed,
        },
    ];
    facts
        .into_iter()
        .enumerate()
        .map(|(i, fact)| {
            let at = T0 + Duration::minutes(i64::try_from(i).unwrap());
            Recorded::new(
                ids.event_id(),
                at,
                ViewEvent {
                    reservation_id: id,
                    fact,
                },
            )
        })
        .collect()
}

fn fold_all<'a>(
    events: impl IntoIterator<Item = &'a Recorded<ViewEvent>>,
) -> Option<ReservationView> {
    events
        .into_iter()
        .fold(None, |view, e| apply(view.as_ref(), e).or(view))
}

#[test]
fn the_whole_story_in_order_shows_every_step() {
    let id = SequentialIds::default().reservation_id();
    let view = fold_all(&roaming_story(id)).unwrap();
    assert_eq!(view.status, Status::Completed);
    let steps: Vec<_> = view.history.iter().map(|h| h.status).collect();
    assert_eq!(
        steps,
        [
            Status::Reserved,
            Status::RentalAccepted,
            Status::InUse,
            Status::Returned,
            Status::Completed
        ]
    );
    assert_eq!(view.payment_status, Some(PaymentStatus::Captured));
    assert_eq!(view.rental_status, Some(RentalStatus::Retrieved));
    assert_eq!(view.device_serial.as_ref().map(Serial::as_str), Some("E1"));
    assert_eq!(view.customer_id, Some(alice()));
}

#[test]
fn a_repeated_event_changes_nothing() {
    let id = SequentialIds::default().reservation_id();
    let story = roaming_story(id);
    let view = fold_all(&story).unwrap();
    for e in &story {
        assert_eq!(apply(Some(&view), e), None, "{e:?}");
    }
}

#[test]
fn a_status_never_moves_back_and_a_canceled_reservation_stays_canceled() {
    let id = SequentialIds::default().reservation_id();
    let ids = SequentialIds::default();
    let ev = |fact| {
        Recorded::new(
            ids.event_id(),
            T0,
            ViewEvent {
                reservation_id: id,
                fact,
            },
        )
    };
    let canceled = fold_all(&[ev(Fact::Described {
        customer_id: alice(),
        price: Money::krw(1).unwrap(),
        details: roaming(),
        status: Status::Canceled,
    })])
    .unwrap();
    assert_eq!(canceled.status, Status::Canceled);
    assert_eq!(
        apply(
            Some(&canceled),
            &ev(Fact::StatusChanged {
                customer_id: alice(),
                to: Status::Reserved
            })
        ),
        None
    );
    let refunded = apply(Some(&canceled), &ev(Fact::Payment(PaymentStatus::Refunded))).unwrap();
    assert_eq!(
        apply(Some(&refunded), &ev(Fact::Payment(PaymentStatus::Captured))),
        None,
        "late captured"
    );
}

#[test]
fn an_event_before_the_reservation_is_known_builds_a_partial_view() {
    let id = SequentialIds::default().reservation_id();
    let e = Recorded::new(
        SequentialIds::default().event_id(),
        T0,
        ViewEvent {
            reservation_id: id,
            fact: Fact::Payment(PaymentStatus::Captured),
        },
    );
    let view = apply(None, &e).unwrap();
    assert_eq!(view.customer_id, None);
    assert!(
        !may_see(&Principal::customer(&alice()), &view),
        "no owner known: no customer sees it"
    );
    assert!(may_see(&Principal::operator("ops"), &view));
}

#[test]
fn customers_see_only_their_own() {
    let id = SequentialIds::default().reservation_id();
    let view = fold_all(&roaming_story(id)).unwrap();
    assert!(may_see(&Principal::customer(&alice()), &view));
    assert!(!may_see(
        &Principal::customer(&CustomerId::parse("bob").unwrap()),
        &view
    ));
}

#[test]
fn schedules_list_paid_reservations_of_the_day() {
    let ids = SequentialIds::default();
    let mk = |details: Details, status| {
        let id = ids.reservation_id();
        let e = Recorded::new(
            ids.event_id(),
            T0,
            ViewEvent {
                reservation_id: id,
                fact: Fact::Described {
                    customer_id: alice(),
                    price: Money::krw(1).unwrap(),
                    details,
                    status,
                },
            },
        );
        apply(None, &e).unwrap()
    };
    let views = [
        mk(parking("P1-B1-001", 1), Status::Reserved),
        mk(parking("P1-B1-001", 13), Status::Reserved), // 23:00-01:00, crosses midnight
        mk(parking("P1-B1-001", 4), Status::Canceled),
        mk(parking("P1-B1-002", 1), Status::Reserved),
        mk(roaming(), Status::Reserved),
    ];
    let space = SpaceId::parse("P1-B1-001").unwrap();
    assert_eq!(
        space_schedule(&views, &space, date!(2026 - 11 - 22)).len(),
        2
    );
    assert_eq!(
        space_schedule(&views, &space, date!(2026 - 11 - 23)).len(),
        1
    );
    let t1 = BoothCode::parse("ICN-T1").unwrap();
    let gmp = BoothCode::parse("GMP").unwrap();
    assert_eq!(
        booth_schedule(&views, &t1, date!(2026 - 12 - 01)).0.len(),
        1
    );
    assert_eq!(
        booth_schedule(&views, &gmp, date!(2026 - 12 - 03)).1.len(),
        1
    );
    assert!(
        booth_schedule(&views, &gmp, date!(2026 - 12 - 01))
            .0
            .is_empty()
    );
    assert!(may_read_booth_schedule(
        &Principal::booth_staff("s", t1.clone()),
        &t1
    ));
    assert!(!may_read_booth_schedule(
        &Principal::booth_staff("s", gmp),
        &t1
    ));

    // Space schedules: a gate reads its own lot's, and without customer ids.
    let p1 = LotCode::parse("P1").unwrap();
    let p2 = LotCode::parse("P2").unwrap();
    let gate = Principal::gate("gate-p1", p1.clone());
    assert!(may_read_space_schedule(&gate, Some(&p1)));
    assert!(!may_read_space_schedule(&gate, Some(&p2)));
    assert!(!may_read_space_schedule(&gate, None), "lot not known yet");
    let ops = Principal::operator("ops");
    assert!(may_read_space_schedule(&ops, None));
    assert!(may_read_space_schedule(&Principal::service("x"), None));
    assert!(!may_read_space_schedule(
        &Principal::customer(&alice()),
        Some(&p1)
    ));
    assert_eq!(on_schedule_for(&gate, &views[0]).customer_id, None);
    assert_eq!(on_schedule_for(&ops, &views[0]).customer_id, Some(alice()));
    assert_eq!(
        on_schedule_for(&gate, &views[0]).details,
        views[0].details,
        "the plate and window stay"
    );
}

#[test]
fn session_status_moves_forward_only() {
    let id = SequentialIds::default().reservation_id();
    let ids = SequentialIds::default();
    let ev = |s| {
        Recorded::new(
            ids.event_id(),
            T0,
            ViewEvent {
                reservation_id: id,
                fact: Fact::Session(s),
            },
        )
    };
    let ended = fold_all(&[ev(SessionStatus::Ended)]).unwrap();
    assert_eq!(apply(Some(&ended), &ev(SessionStatus::Started)), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Events delivered in any order, some twice, end in the same place as in
    /// order: the fold is order-insensitive for everything but the history.
    #[test]
    fn any_delivery_order_with_duplicates_converges(
        order in Just((0..11usize).collect::<Vec<_>>()).prop_shuffle(),
        dups in proptest::collection::vec(0..11usize, 0..6),
    ) {
        let id = SequentialIds::default().reservation_id();
        let story = roaming_story(id);
        let in_order = fold_all(&story).unwrap();
        let shuffled: Vec<_> = order.iter().chain(dups.iter()).map(|i| &story[*i]).collect();
        let view = fold_all(shuffled).unwrap();
        prop_assert_eq!(view.status, in_order.status);
        prop_assert_eq!(&view.customer_id, &in_order.customer_id);
        prop_assert_eq!(&view.details, &in_order.details);
        prop_assert_eq!(view.payment_status, in_order.payment_status);
        prop_assert_eq!(view.rental_status, in_order.rental_status);
        prop_assert_eq!(&view.device_serial, &in_order.device_serial);
        // History is monotonic whatever the order.
        for pair in view.history.windows(2) {
            prop_assert!(pair[0].status.rank() < pair[1].status.rank());
        }
    }
}
