//! The v1 contract holds what DOMAIN.md ("Events", "The API") promises: every service
//! and RPC, and one message per event subject with the envelope fields.

#![allow(clippy::expect_used, reason = "test helpers")]

use std::collections::HashMap;

use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorSet};

fn descriptors() -> FileDescriptorSet {
    FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

/// Fully qualified message name -> descriptor.
fn messages(set: &FileDescriptorSet) -> HashMap<String, &DescriptorProto> {
    set.file
        .iter()
        .flat_map(|f| {
            f.message_type
                .iter()
                .map(move |m| (format!("{}.{}", f.package(), m.name()), m))
        })
        .collect()
}

#[test]
fn every_service_and_rpc_of_design_section_7_exists() {
    let expected: &[(&str, &[&str])] = &[
        (
            "roaming.reservation.v1.ReservationService",
            &[
                "QuoteRoaming",
                "ReserveRoaming",
                "QuoteParking",
                "ReserveParking",
                "GetReservation",
                "CancelReservation",
                "VerifyParkingEntry",
                "BeginUse",
                "ListDeviceOffers",
            ],
        ),
        (
            "roaming.payment.v1.PaymentService",
            &["Pay", "GetPayment", "Refund"],
        ),
        (
            "roaming.rental.v1.RentalService",
            &[
                "RegisterDevice",
                "ListDevices",
                "ListBoothRentals",
                "GetRental",
                "HandOverDevice",
                "ReturnDevice",
                "RetrieveDevice",
            ],
        ),
        (
            "roaming.parking.v1.ParkingService",
            &["RegisterSpace", "ListSpaces", "Enter", "Exit", "GetSession"],
        ),
        (
            "roaming.view.v1.ViewService",
            &[
                "ListMyReservations",
                "GetReservationView",
                "WatchReservation",
                "GetSpaceSchedule",
                "GetBoothSchedule",
            ],
        ),
        ("roaming.auth.v1.AuthService", &["IssueToken"]),
    ];
    let set = descriptors();
    let services: HashMap<String, Vec<String>> = set
        .file
        .iter()
        .flat_map(|f| {
            f.service.iter().map(move |s| {
                (
                    format!("{}.{}", f.package(), s.name()),
                    s.method.iter().map(|m| m.name().to_owned()).collect(),
                )
            })
        })
        .collect();
    for (service, rpcs) in expected {
        let actual = services
            .get(*service)
            .unwrap_or_else(|| panic!("missing service {service}"));
        for rpc in *rpcs {
            assert!(actual.iter().any(|a| a == rpc), "{service} lacks {rpc}");
        }
    }
}

#[test]
fn watch_reservation_streams_from_the_server() {
    let set = descriptors();
    let watch = set
        .file
        .iter()
        .flat_map(|f| &f.service)
        .flat_map(|s| &s.method)
        .find(|m| m.name() == "WatchReservation")
        .expect("WatchReservation");
    assert!(watch.server_streaming() && !watch.client_streaming());
}

/// Subject -> message -> carries a reservation id, from DOMAIN.md, "Events".
const EVENTS: [(&str, &str, bool); 19] = [
    (
        "roaming.reservation.reserved",
        "roaming.reservation.v1.ReservationReserved",
        true,
    ),
    (
        "roaming.reservation.canceled",
        "roaming.reservation.v1.ReservationCanceled",
        true,
    ),
    (
        "roaming.reservation.rejected",
        "roaming.reservation.v1.ReservationRejected",
        true,
    ),
    (
        "roaming.reservation.status_changed",
        "roaming.reservation.v1.ReservationStatusChanged",
        true,
    ),
    (
        "roaming.payment.captured",
        "roaming.payment.v1.PaymentCaptured",
        true,
    ),
    (
        "roaming.payment.refunded",
        "roaming.payment.v1.PaymentRefunded",
        true,
    ),
    (
        "roaming.payment.voided",
        "roaming.payment.v1.PaymentVoided",
        true,
    ),
    (
        "roaming.payment.declined",
        "roaming.payment.v1.PaymentDeclined",
        true,
    ),
    (
        "roaming.rental.device_registered",
        "roaming.rental.v1.DeviceRegistered",
        false,
    ),
    (
        "roaming.rental.device_relocated",
        "roaming.rental.v1.DeviceRelocated",
        true,
    ),
    (
        "roaming.rental.accepted",
        "roaming.rental.v1.RentalAccepted",
        true,
    ),
    (
        "roaming.rental.handed_over",
        "roaming.rental.v1.RentalHandedOver",
        true,
    ),
    (
        "roaming.rental.returned",
        "roaming.rental.v1.RentalReturned",
        true,
    ),
    (
        "roaming.rental.retrieved",
        "roaming.rental.v1.RentalRetrieved",
        true,
    ),
    (
        "roaming.rental.canceled",
        "roaming.rental.v1.RentalCanceled",
        true,
    ),
    (
        "roaming.parking.space_registered",
        "roaming.parking.v1.SpaceRegistered",
        false,
    ),
    (
        "roaming.parking.started",
        "roaming.parking.v1.ParkingStarted",
        true,
    ),
    (
        "roaming.parking.ended",
        "roaming.parking.v1.ParkingEnded",
        true,
    ),
    (
        "roaming.parking.entry_denied",
        "roaming.parking.v1.EntryDenied",
        true,
    ),
];

#[test]
fn every_event_subject_has_its_message_with_the_envelope_fields() {
    let events = EVENTS;
    let set = descriptors();
    let messages = messages(&set);
    assert_eq!(proto::subjects::ALL.len(), events.len());
    for (subject, message, has_reservation) in events {
        assert!(
            proto::subjects::ALL.contains(&subject),
            "{subject} missing from subjects::ALL"
        );
        let m = messages
            .get(message)
            .unwrap_or_else(|| panic!("missing event message {message}"));
        let field = |name: &str| m.field.iter().find(|f| f.name() == name);
        assert!(field("event_id").is_some(), "{message} lacks event_id");
        let occurred =
            field("occurred_at").unwrap_or_else(|| panic!("{message} lacks occurred_at"));
        assert_eq!(occurred.type_name(), ".google.protobuf.Timestamp");
        if has_reservation {
            assert!(
                field("reservation_id").is_some(),
                "{message} lacks reservation_id"
            );
        }
    }
}

#[test]
fn the_reserve_request_carries_the_fields_of_design_section_7_and_no_price() {
    let set = descriptors();
    let messages = messages(&set);
    let names = |m: &str| -> Vec<String> {
        messages[m]
            .field
            .iter()
            .map(|f| f.name().to_owned())
            .collect()
    };
    let roaming = names("roaming.reservation.v1.ReserveRoamingRequest");
    for f in [
        "request_id",
        "device_model",
        "country",
        "pickup_booth",
        "return_booth",
        "start_date",
        "end_date",
        "payment",
    ] {
        assert!(
            roaming.iter().any(|n| n == f),
            "ReserveRoamingRequest lacks {f}"
        );
    }
    let parking = names("roaming.reservation.v1.ReserveParkingRequest");
    for f in [
        "request_id",
        "space_id",
        "vehicle_plate",
        "start_time",
        "end_time",
        "payment",
    ] {
        assert!(
            parking.iter().any(|n| n == f),
            "ReserveParkingRequest lacks {f}"
        );
    }
    // Invariant 3: the client cannot even say a price.
    for m in [
        "roaming.reservation.v1.ReserveRoamingRequest",
        "roaming.reservation.v1.ReserveParkingRequest",
    ] {
        assert!(
            names(m)
                .iter()
                .all(|n| !n.contains("price") && !n.contains("amount")),
            "{m} takes a price"
        );
    }
    let card = names("roaming.common.v1.PaymentCard");
    assert_eq!(
        card,
        [
            "card_number",
            "expiry_month",
            "expiry_year",
            "holder_name",
            "company"
        ]
    );
    let money = names("roaming.common.v1.Money");
    assert_eq!(money, ["currency_code", "minor_units"]);
}

#[test]
fn the_status_enums_exist() {
    let set = descriptors();
    let enums: Vec<String> = set
        .file
        .iter()
        .flat_map(|f| {
            f.enum_type
                .iter()
                .map(move |e| format!("{}.{}", f.package(), e.name()))
        })
        .collect();
    for e in [
        "roaming.reservation.v1.ReservationStatus",
        "roaming.payment.v1.PaymentStatus",
        "roaming.rental.v1.RentalStatus",
        "roaming.parking.v1.SessionStatus",
    ] {
        assert!(enums.iter().any(|x| x == e), "missing enum {e}");
    }
}
