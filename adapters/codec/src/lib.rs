//! Events on the wire (DESIGN.md section 6).
//!
//! Outgoing: every context's domain events become an [`OutgoingEvent`]: the
//! protobuf message of `proto/` encoded, its subject, and headers carrying the
//! event type ([`EVENT_TYPE_HEADER`]) and the W3C trace context (filled in by the
//! caller's trace hook; empty until the observability issue lands).
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
    details_from_pb, instant_from_pb, instant_to_pb, money_from_pb, money_to_pb,
    parking_details_to_pb, roaming_details_to_pb, status_from_pb, status_to_pb,
};
pub use incoming::{
    DecodeError, Inbound, Lifecycle, PaymentInput, ReservationInput, to_closed_reservation,
    to_parking_reservation, to_reservation_input, to_roaming_reservation, to_view_event,
};
pub use outgoing::{encode_parking, encode_payment, encode_rental, encode_reservation};

/// Header naming the protobuf message type of the payload.
pub const EVENT_TYPE_HEADER: &str = "Roaming-Event-Type";
