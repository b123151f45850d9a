//! Domain events -> protobuf bytes, subject and headers.

use domain_kernel::{DateRange, OutgoingEvent, Recorded};
use domain_parking::{DenialReason, ParkingEvent, Verification};
use domain_payment::{DeclineReason, PaymentEvent};
use domain_rental::RentalEvent;
use domain_reservation::{Details, Kind, RejectionReason, Reservation, ReservationEvent};
use prost::{Message, Name};
use proto::subjects;
use proto::{parking as pk, payment as pp, rental as pr, reservation as pb};

use crate::EVENT_TYPE_HEADER;
use crate::convert::{
    instant_to_pb, money_to_pb, parking_details_to_pb, roaming_details_to_pb, status_to_pb,
};

/// The event on the wire: `subject` (one of `proto::subjects`), the encoded
/// message, and its full protobuf name in the event type header.
fn outgoing<E, M: Message + Name>(
    recorded: &Recorded<E>,
    subject: &str,
    message: &M,
) -> OutgoingEvent {
    OutgoingEvent {
        event_id: recorded.event_id,
        subject: subject.to_owned(),
        payload: message.encode_to_vec(),
        headers: vec![(EVENT_TYPE_HEADER.to_owned(), M::full_name())],
    }
}

/// Each event's subject: the contract's, never spelled here.
const fn reservation_subject(e: &ReservationEvent) -> &'static str {
    match e {
        ReservationEvent::Reserved(_) => subjects::RESERVATION_RESERVED,
        ReservationEvent::Canceled { .. } => subjects::RESERVATION_CANCELED,
        ReservationEvent::Rejected(_) => subjects::RESERVATION_REJECTED,
        ReservationEvent::StatusChanged { .. } => subjects::RESERVATION_STATUS_CHANGED,
    }
}

const fn payment_subject(e: &PaymentEvent) -> &'static str {
    match e {
        PaymentEvent::Captured(_) => subjects::PAYMENT_CAPTURED,
        PaymentEvent::Declined(_) => subjects::PAYMENT_DECLINED,
        PaymentEvent::Refunded(_) => subjects::PAYMENT_REFUNDED,
        PaymentEvent::Voided(_) => subjects::PAYMENT_VOIDED,
    }
}

const fn rental_subject(e: &RentalEvent) -> &'static str {
    match e {
        RentalEvent::DeviceRegistered(_) => subjects::RENTAL_DEVICE_REGISTERED,
        RentalEvent::DeviceRelocated { .. } => subjects::RENTAL_DEVICE_RELOCATED,
        RentalEvent::Accepted(_) => subjects::RENTAL_ACCEPTED,
        RentalEvent::HandedOver(_) => subjects::RENTAL_HANDED_OVER,
        RentalEvent::Returned(_) => subjects::RENTAL_RETURNED,
        RentalEvent::Retrieved(_) => subjects::RENTAL_RETRIEVED,
        RentalEvent::Canceled(_) => subjects::RENTAL_CANCELED,
    }
}

const fn parking_subject(e: &ParkingEvent) -> &'static str {
    match e {
        ParkingEvent::SpaceRegistered(_) => subjects::PARKING_SPACE_REGISTERED,
        ParkingEvent::Started(_) => subjects::PARKING_STARTED,
        ParkingEvent::Ended(_) => subjects::PARKING_ENDED,
        ParkingEvent::EntryDenied { .. } => subjects::PARKING_ENTRY_DENIED,
    }
}

fn kind_pb(kind: Kind) -> i32 {
    match kind {
        Kind::Roaming => pb::ReservationKind::Roaming as i32,
        Kind::Parking => pb::ReservationKind::Parking as i32,
    }
}

fn details_pb(r: &Reservation) -> (Option<pb::RoamingDetails>, Option<pb::ParkingDetails>) {
    match &r.details {
        Details::Roaming(d) => (Some(roaming_details_to_pb(d)), None),
        Details::Parking(d) => (None, Some(parking_details_to_pb(d))),
    }
}

fn rejection_pb(reason: Option<RejectionReason>) -> i32 {
    match reason {
        Some(RejectionReason::PaymentDeclined) => pb::RejectionReason::PaymentDeclined as i32,
        Some(RejectionReason::PaymentUnavailable) => pb::RejectionReason::PaymentUnavailable as i32,
        Some(RejectionReason::PaymentTimedOut) => pb::RejectionReason::PaymentTimedOut as i32,
        None => pb::RejectionReason::Unspecified as i32,
    }
}

/// Encodes a reservation event.
pub fn encode_reservation(e: &Recorded<ReservationEvent>) -> OutgoingEvent {
    let event_id = e.event_id.to_string();
    let occurred_at = Some(instant_to_pb(e.occurred_at));
    let subject = reservation_subject(&e.event);
    match &e.event {
        ReservationEvent::Reserved(r) => {
            let details = match details_pb(r) {
                (Some(x), _) => Some(pb::reservation_reserved::Details::Roaming(x)),
                (_, Some(x)) => Some(pb::reservation_reserved::Details::Parking(x)),
                _ => None,
            };
            let m = pb::ReservationReserved {
                event_id,
                reservation_id: r.id.to_string(),
                occurred_at,
                customer_id: r.customer_id.to_string(),
                kind: kind_pb(r.kind()),
                price: Some(money_to_pb(r.price)),
                details,
            };
            outgoing(e, subject, &m)
        }
        ReservationEvent::Canceled {
            reservation: r,
            reason,
        } => {
            let details = match details_pb(r) {
                (Some(x), _) => Some(pb::reservation_canceled::Details::Roaming(x)),
                (_, Some(x)) => Some(pb::reservation_canceled::Details::Parking(x)),
                _ => None,
            };
            let m = pb::ReservationCanceled {
                event_id,
                reservation_id: r.id.to_string(),
                occurred_at,
                customer_id: r.customer_id.to_string(),
                kind: kind_pb(r.kind()),
                price: Some(money_to_pb(r.price)),
                reason: reason.clone(),
                details,
            };
            outgoing(e, subject, &m)
        }
        ReservationEvent::Rejected(r) => {
            let details = match details_pb(r) {
                (Some(x), _) => Some(pb::reservation_rejected::Details::Roaming(x)),
                (_, Some(x)) => Some(pb::reservation_rejected::Details::Parking(x)),
                _ => None,
            };
            let m = pb::ReservationRejected {
                event_id,
                reservation_id: r.id.to_string(),
                occurred_at,
                customer_id: r.customer_id.to_string(),
                kind: kind_pb(r.kind()),
                reason: rejection_pb(r.rejection),
                price: Some(money_to_pb(r.price)),
                details,
            };
            outgoing(e, subject, &m)
        }
        ReservationEvent::StatusChanged {
            reservation_id,
            customer_id,
            from,
            to,
        } => {
            let m = pb::ReservationStatusChanged {
                event_id,
                reservation_id: reservation_id.to_string(),
                occurred_at,
                customer_id: customer_id.to_string(),
                from_status: status_to_pb(*from) as i32,
                to_status: status_to_pb(*to) as i32,
            };
            outgoing(e, subject, &m)
        }
    }
}

fn decline_pb(reason: Option<DeclineReason>) -> i32 {
    match reason {
        Some(DeclineReason::CardDeclined) => pp::DeclineReason::CardDeclined as i32,
        Some(DeclineReason::InsufficientFunds) => pp::DeclineReason::InsufficientFunds as i32,
        None => pp::DeclineReason::Unspecified as i32,
    }
}

/// Encodes a payment event.
pub fn encode_payment(e: &Recorded<PaymentEvent>) -> OutgoingEvent {
    let p = e.event.payment();
    let event_id = e.event_id.to_string();
    let reservation_id = p.reservation_id.to_string();
    let occurred_at = Some(instant_to_pb(e.occurred_at));
    let payment_id = p.id.to_string();
    let amount = Some(money_to_pb(p.amount));
    let subject = payment_subject(&e.event);
    match &e.event {
        PaymentEvent::Captured(_) => outgoing(
            e,
            subject,
            &pp::PaymentCaptured {
                event_id,
                reservation_id,
                occurred_at,
                payment_id,
                amount,
                card_last_four: p.card_last_four.clone().unwrap_or_default(),
                card_company: p.card_company.clone().unwrap_or_default(),
            },
        ),
        PaymentEvent::Declined(_) => outgoing(
            e,
            subject,
            &pp::PaymentDeclined {
                event_id,
                reservation_id,
                occurred_at,
                payment_id,
                amount,
                reason: decline_pb(p.decline_reason),
            },
        ),
        PaymentEvent::Refunded(_) => outgoing(
            e,
            subject,
            &pp::PaymentRefunded {
                event_id,
                reservation_id,
                occurred_at,
                payment_id,
                amount,
            },
        ),
        PaymentEvent::Voided(_) => outgoing(
            e,
            subject,
            &pp::PaymentVoided {
                event_id,
                reservation_id,
                occurred_at,
                payment_id,
                amount,
            },
        ),
    }
}

/// Encodes a rental event.
pub fn encode_rental(e: &Recorded<RentalEvent>) -> OutgoingEvent {
    let event_id = e.event_id.to_string();
    let occurred_at = Some(instant_to_pb(e.occurred_at));
    let subject = rental_subject(&e.event);
    let opt = |s: Option<&dyn std::fmt::Display>| s.map(ToString::to_string).unwrap_or_default();
    match &e.event {
        RentalEvent::DeviceRegistered(d) => outgoing(
            e,
            subject,
            &pr::DeviceRegistered {
                event_id,
                occurred_at,
                serial: d.serial.to_string(),
                device_model: d.device_model.to_string(),
                booth: d.booth.to_string(),
            },
        ),
        RentalEvent::DeviceRelocated {
            device,
            from_booth,
            reservation_id,
        } => outgoing(
            e,
            subject,
            &pr::DeviceRelocated {
                event_id,
                occurred_at,
                serial: device.serial.to_string(),
                device_model: device.device_model.to_string(),
                from_booth: from_booth.to_string(),
                to_booth: device.booth.to_string(),
                reservation_id: reservation_id.to_string(),
            },
        ),
        RentalEvent::Accepted(r) => outgoing(
            e,
            subject,
            &pr::RentalAccepted {
                event_id,
                reservation_id: r.reservation_id.to_string(),
                occurred_at,
                device_model: r.device_model.to_string(),
                pickup_booth: r.pickup_booth.to_string(),
                return_booth: r.return_booth.to_string(),
                start_date: DateRange::format_date(r.dates.start()),
                end_date: DateRange::format_date(r.dates.end()),
            },
        ),
        RentalEvent::HandedOver(r) => outgoing(
            e,
            subject,
            &pr::RentalHandedOver {
                event_id,
                reservation_id: r.reservation_id.to_string(),
                occurred_at,
                serial: opt(r.serial.as_ref().map(|s| s as &dyn std::fmt::Display)),
                booth: r.pickup_booth.to_string(),
            },
        ),
        RentalEvent::Returned(r) => outgoing(
            e,
            subject,
            &pr::RentalReturned {
                event_id,
                reservation_id: r.reservation_id.to_string(),
                occurred_at,
                serial: opt(r.serial.as_ref().map(|s| s as &dyn std::fmt::Display)),
                booth: opt(r
                    .returned_at_booth
                    .as_ref()
                    .map(|b| b as &dyn std::fmt::Display)),
            },
        ),
        RentalEvent::Retrieved(r) => outgoing(
            e,
            subject,
            &pr::RentalRetrieved {
                event_id,
                reservation_id: r.reservation_id.to_string(),
                occurred_at,
                serial: opt(r.serial.as_ref().map(|s| s as &dyn std::fmt::Display)),
                booth: opt(r
                    .returned_at_booth
                    .as_ref()
                    .map(|b| b as &dyn std::fmt::Display)),
            },
        ),
        RentalEvent::Canceled(r) => outgoing(
            e,
            subject,
            &pr::RentalCanceled {
                event_id,
                reservation_id: r.reservation_id.to_string(),
                occurred_at,
            },
        ),
    }
}

fn verification_pb(v: Option<Verification>) -> i32 {
    match v {
        Some(Verification::Online) => pk::EntryVerification::Online as i32,
        Some(Verification::Replica) => pk::EntryVerification::Replica as i32,
        None => pk::EntryVerification::Unspecified as i32,
    }
}

/// Encodes a parking event.
pub fn encode_parking(e: &Recorded<ParkingEvent>) -> OutgoingEvent {
    let event_id = e.event_id.to_string();
    let occurred_at = Some(instant_to_pb(e.occurred_at));
    let subject = parking_subject(&e.event);
    match &e.event {
        ParkingEvent::SpaceRegistered(s) => outgoing(
            e,
            subject,
            &pk::SpaceRegistered {
                event_id,
                occurred_at,
                space_id: s.space_id.to_string(),
                lot: s.lot.to_string(),
                floor: s.floor.clone(),
                number: i32::try_from(s.number).unwrap_or(i32::MAX),
                hourly_rate: Some(money_to_pb(s.hourly_rate)),
            },
        ),
        ParkingEvent::Started(s) => outgoing(
            e,
            subject,
            &pk::ParkingStarted {
                event_id,
                reservation_id: s.reservation_id.to_string(),
                occurred_at,
                session_id: s.session_id.to_string(),
                space_id: s.space_id.to_string(),
                vehicle_plate: s.vehicle_plate.to_string(),
                verification: verification_pb(Some(s.verification)),
            },
        ),
        ParkingEvent::Ended(s) => outgoing(
            e,
            subject,
            &pk::ParkingEnded {
                event_id,
                reservation_id: s.reservation_id.to_string(),
                occurred_at,
                session_id: s.session_id.to_string(),
                space_id: s.space_id.to_string(),
                vehicle_plate: s.vehicle_plate.to_string(),
            },
        ),
        ParkingEvent::EntryDenied {
            space_id,
            vehicle_plate,
            reason,
            verification,
        } => outgoing(
            e,
            subject,
            &pk::EntryDenied {
                event_id,
                reservation_id: String::new(),
                occurred_at,
                space_id: space_id.to_string(),
                vehicle_plate: vehicle_plate.to_string(),
                reason: match reason {
                    DenialReason::NotReserved => pk::EntryDenialReason::NotReserved as i32,
                    DenialReason::SpaceOccupied => pk::EntryDenialReason::SpaceOccupied as i32,
                },
                verification: verification_pb(*verification),
            },
        ),
    }
}
