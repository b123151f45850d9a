//! Events on the wire (DOMAIN.md, "Events").
//!
//! Outgoing: every context's domain events become an [`OutgoingEvent`]: the
//! protobuf message of `proto/` encoded, its subject (`proto::subjects`), and
//! headers carrying the event type ([`EVENT_TYPE_HEADER`], the message's
//! `prost::Name`); the store's outbox adds the W3C trace context of the writing
//! call (its header hook).
//!
//! Incoming: an [`Inbound`] message is decoded straight into the domain input of
//! the consumer that asked (`to_usage`, `to_roaming_reservation`, ...). Anything
//! that does not decode or validate is a [`DecodeError`]: a poison message for
//! the consumer's dead-letter handling, never a panic.
//!
//! [`OutgoingEvent`]: domain_kernel::OutgoingEvent

mod convert;
mod incoming;
mod outgoing;

pub use convert::{
    details_from_pb, instant_from_pb, instant_to_pb, money_field, money_from_pb, money_to_pb,
    parking_details_to_pb, roaming_details_to_pb, status_from_pb, status_to_pb,
};
pub use incoming::{
    DecodeError, Inbound, Lifecycle, PaymentInput, ReservationInput, to_closed_reservation,
    to_parking_reservation, to_reservation_input, to_roaming_reservation, to_space_lot,
    to_view_event,
};
pub use outgoing::{encode_parking, encode_payment, encode_rental, encode_reservation};

/// Header naming the protobuf message type of the payload.
pub const EVENT_TYPE_HEADER: &str = "Roaming-Event-Type";

/// The reservation an event is about, if it is about one: for span fields
/// (`reservation_id`), so one reservation can be followed through consumers.
/// Every reservation-related event carries it in field 2, except a device
/// relocation (field 7); catalog registrations carry none.
pub fn reservation_of(subject: &str, payload: &[u8]) -> Option<String> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Field2 {
        #[prost(string, tag = "2")]
        reservation_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Field7 {
        #[prost(string, tag = "7")]
        reservation_id: String,
    }
    use prost::Message as _;
    use proto::subjects::{
        PARKING_SPACE_REGISTERED, RENTAL_DEVICE_REGISTERED, RENTAL_DEVICE_RELOCATED,
    };
    let id = if subject.ends_with(RENTAL_DEVICE_REGISTERED)
        || subject.ends_with(PARKING_SPACE_REGISTERED)
    {
        return None;
    } else if subject.ends_with(RENTAL_DEVICE_RELOCATED) {
        Field7::decode(payload).ok()?.reservation_id
    } else {
        Field2::decode(payload).ok()?.reservation_id
    };
    Some(id).filter(|id| !id.is_empty())
}
