//! What one context encodes, the consumers decode to the same domain facts.

#![allow(clippy::expect_used, reason = "test helpers")]

use adapters_codec::{
    DecodeError, EVENT_TYPE_HEADER, Inbound, Lifecycle, PaymentInput, ReservationInput,
    encode_parking, encode_rental, encode_reservation, to_closed_reservation,
    to_parking_reservation, to_reservation_input, to_roaming_reservation, to_view_event,
};
use domain_kernel::fakes::SequentialIds;
use domain_kernel::{
    BoothCode, CountryCode, CustomerId, DateRange, DeviceModel, IdGenerator, Money, OutgoingEvent,
    Recorded, RequestId, Serial, SpaceId, TimeWindow, Timestamp, VehiclePlate,
};
use domain_parking::{ParkingEvent, Session, Verification};
use domain_rental::{Device, RentalEvent};
use domain_reservation::{
    Details, ParkingDetails, Reservation, ReservationData, ReservationEvent, RoamingDetails,
    Status, Usage,
};
use domain_view::Fact;
use time::macros::{date, datetime};

const NOW: Timestamp = datetime!(2026-11-22 10:00 UTC);

fn reservation(details: Details, status: Status) -> Reservation {
    let ids = SequentialIds::default();
    Reservation::restore(ReservationData {
        id: ids.reservation_id(),
        customer_id: CustomerId::parse("alice").expect("valid"),
        request_id: RequestId::parse("r").expect("valid"),
        details,
        price: Money::krw(15_000).expect("valid"),
        status,
        rejection: None,
        cancel_reason: None,
        created_at: NOW,
        updated_at: NOW,
        version: 1,
    })
}

fn roaming() -> Details {
    Details::Roaming(RoamingDetails {
        device_model: DeviceModel::parse("egg-lte").expect("valid"),
        country: CountryCode::parse("JP").expect("valid"),
        pickup_booth: BoothCode::parse("ICN-T1").expect("valid"),
        return_booth: BoothCode::parse("GMP").expect("valid"),
        dates: DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 03)).expect("valid"),
    })
}

fn parking() -> Details {
    Details::Parking(ParkingDetails {
        space_id: SpaceId::parse("P1-B1-001").expect("valid"),
        vehicle_plate: VehiclePlate::parse("12가3456").expect("valid"),
        window: TimeWindow::new(NOW, NOW + time::Duration::hours(2)).expect("valid"),
    })
}

fn inbound(e: &OutgoingEvent) -> Inbound<'_> {
    Inbound {
        subject: &e.subject,
        payload: &e.payload,
    }
}

fn recorded<E>(event: E) -> Recorded<E> {
    Recorded::new(SequentialIds::default().event_id(), NOW, event)
}

#[test]
fn a_roaming_reservation_reaches_rental_and_the_view_intact() {
    let r = reservation(roaming(), Status::Reserved);
    let out = encode_reservation(&recorded(ReservationEvent::Reserved(r.clone())));
    assert_eq!(out.subject, "roaming.reservation.reserved");
    assert!(out.headers.contains(&(
        EVENT_TYPE_HEADER.to_owned(),
        "roaming.reservation.v1.ReservationReserved".to_owned()
    )));

    let Some(Lifecycle::Reserved(rental)) = to_roaming_reservation(inbound(&out)).expect("decodes")
    else {
        panic!("expected a reserved lifecycle event");
    };
    assert_eq!(rental.event_id, out.event_id);
    assert_eq!(rental.occurred_at, NOW);
    let Details::Roaming(d) = &r.details else {
        unreachable!()
    };
    assert_eq!(
        (rental.event.reservation_id, &rental.event.dates),
        (r.id, &d.dates)
    );
    assert_eq!(
        to_parking_reservation(inbound(&out)).expect("decodes"),
        None,
        "not parking"
    );

    let view = to_view_event(inbound(&out))
        .expect("decodes")
        .expect("for the view");
    assert_eq!(
        view.event.fact,
        Fact::Described {
            customer_id: r.customer_id.clone(),
            price: r.price,
            details: r.details.clone(),
            status: Status::Reserved
        }
    );
}

#[test]
fn a_canceled_parking_reservation_reaches_payment_and_the_replica() {
    let r = reservation(parking(), Status::Canceled);
    let out = encode_reservation(&recorded(ReservationEvent::Canceled {
        reservation: r.clone(),
        reason: "x".into(),
    }));
    let Some(PaymentInput::Canceled(closed)) =
        to_closed_reservation(inbound(&out)).expect("decodes")
    else {
        panic!("expected canceled");
    };
    assert_eq!(
        (closed.event.reservation_id, closed.event.price),
        (r.id, r.price)
    );
    let Some(Lifecycle::Canceled(replica)) =
        to_parking_reservation(inbound(&out)).expect("decodes")
    else {
        panic!("expected canceled");
    };
    let Details::Parking(p) = &r.details else {
        unreachable!()
    };
    assert_eq!(
        (replica.event.window, &replica.event.vehicle_plate),
        (p.window, &p.vehicle_plate)
    );
}

#[test]
fn rental_and_parking_events_move_reservations_and_the_catalog() {
    let ids = SequentialIds::default();
    let device = Device::new(
        Serial::parse("E1").expect("valid"),
        DeviceModel::parse("egg-lte").expect("valid"),
        BoothCode::parse("GMP").expect("valid"),
    );
    let out = encode_rental(&recorded(RentalEvent::DeviceRegistered(device)));
    assert!(matches!(
        to_reservation_input(inbound(&out)).expect("decodes"),
        Some(ReservationInput::Catalog(_))
    ));

    let (session, started) = Session::start(
        ids.session_id(),
        SpaceId::parse("P1-B1-001").expect("valid"),
        VehiclePlate::parse("12가3456").expect("valid"),
        ids.reservation_id(),
        Verification::Replica,
        NOW,
    );
    let out = encode_parking(&recorded(started));
    let Some(ReservationInput::Usage(usage)) =
        to_reservation_input(inbound(&out)).expect("decodes")
    else {
        panic!("expected usage");
    };
    assert_eq!(
        (usage.event.reservation_id, usage.event.usage),
        (session.reservation_id, Usage::ParkingStarted)
    );
    let denied = encode_parking(&recorded(ParkingEvent::EntryDenied {
        space_id: session.space_id.clone(),
        vehicle_plate: session.vehicle_plate.clone(),
        reason: domain_parking::DenialReason::NotReserved,
        verification: Some(Verification::Online),
    }));
    assert_eq!(
        to_reservation_input(inbound(&denied)).expect("decodes"),
        None,
        "not consumed"
    );
}

#[test]
fn garbage_is_a_decode_error_not_a_panic() {
    let garbage = Inbound {
        subject: "roaming.rental.accepted",
        payload: &[0xff, 0xff, 0xff],
    };
    assert!(matches!(
        to_reservation_input(garbage),
        Err(DecodeError::Undecodable { .. })
    ));
    assert!(matches!(
        to_view_event(garbage),
        Err(DecodeError::Undecodable { .. })
    ));
    // Valid protobuf, invalid content: an empty message has no event id.
    let empty = Inbound {
        subject: "roaming.reservation.reserved",
        payload: &[],
    };
    assert!(matches!(
        to_roaming_reservation(empty),
        Err(DecodeError::Invalid { .. })
    ));
}
