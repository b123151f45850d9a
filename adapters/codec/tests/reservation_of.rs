//! The reservation id of every kind of event, for span fields.

#![allow(clippy::unwrap_used, reason = "tests")]

use prost::Message;
use proto::{parking as pk, rental as pr, reservation as pb, subjects};

#[test]
fn reservation_events_name_their_reservation_and_catalog_events_none() {
    let reserved = pb::ReservationReserved {
        event_id: "e".into(),
        reservation_id: "r-1".into(),
        ..Default::default()
    };
    assert_eq!(
        adapters_codec::reservation_of(subjects::RESERVATION_RESERVED, &reserved.encode_to_vec()),
        Some("r-1".to_owned())
    );
    let prefixed = format!("test.{}", subjects::RENTAL_ACCEPTED);
    let accepted = pr::RentalAccepted {
        event_id: "e".into(),
        reservation_id: "r-2".into(),
        ..Default::default()
    };
    assert_eq!(
        adapters_codec::reservation_of(&prefixed, &accepted.encode_to_vec()),
        Some("r-2".to_owned())
    );
    let registered = pk::SpaceRegistered {
        event_id: "e".into(),
        space_id: "P1-B1-001".into(),
        ..Default::default()
    };
    assert_eq!(
        adapters_codec::reservation_of(
            subjects::PARKING_SPACE_REGISTERED,
            &registered.encode_to_vec()
        ),
        None
    );
    assert_eq!(
        adapters_codec::reservation_of(subjects::RESERVATION_RESERVED, b"\xff"),
        None
    );
}
