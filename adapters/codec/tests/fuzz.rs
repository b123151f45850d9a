//! Every event decoder, fed arbitrary bytes, arbitrary well-formed wire
//! messages (`proto::testing::wire_message`) and messages of the subject's own
//! type with arbitrary field values (`proto::testing::message_for`: any
//! strings, extreme timestamps, unknown enum values, missing fields) under
//! every subject and some that do not exist: never a panic, always a value or
//! a `DecodeError` (a poison message).

use adapters_codec::{
    DecodeError, Inbound, reservation_of, to_closed_reservation, to_parking_reservation,
    to_reservation_input, to_roaming_reservation, to_view_event,
};
use proptest::prelude::*;

fn subjects() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(proto::subjects::ALL).prop_map(str::to_owned),
        1 => "roaming\\.[a-z_.]{0,30}",
        1 => ".{0,20}",
    ]
}

/// The message type published under `subject` (`roaming.rental.accepted` is
/// `roaming.rental.v1.RentalAccepted`, `roaming.rental.device_registered` is
/// `roaming.rental.v1.DeviceRegistered`).
fn message_type(subject: &str) -> String {
    let mut parts = subject.split('.').skip(1);
    let context = parts.next().unwrap_or_default();
    let event = parts.next().unwrap_or_default();
    let pascal = |s: &str| {
        s.split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect::<String>())
                    .unwrap_or_default()
            })
            .collect::<String>()
    };
    let with_context = format!("roaming.{context}.v1.{}{}", pascal(context), pascal(event));
    if proto::testing::message_for(&with_context, &[]).is_some() {
        with_context
    } else {
        format!("roaming.{context}.v1.{}", pascal(event))
    }
}

/// Runs every decoder; each may accept or refuse, none may panic. Returns
/// whether any refused the payload as undecodable protobuf.
fn decode_everywhere(subject: &str, payload: &[u8]) -> bool {
    fn settle<T>(r: Result<T, DecodeError>) -> bool {
        match r {
            Ok(_) => false,
            Err(e) => {
                // A refusal names the subject, so a dead letter can be traced.
                let (DecodeError::Undecodable { subject, .. }
                | DecodeError::Invalid { subject, .. }) = &e;
                assert!(e.to_string().contains(subject.as_str()));
                matches!(e, DecodeError::Undecodable { .. })
            }
        }
    }
    let m = Inbound { subject, payload };
    let _ = reservation_of(subject, payload);
    [
        settle(to_reservation_input(m)),
        settle(to_closed_reservation(m)),
        settle(to_roaming_reservation(m)),
        settle(to_parking_reservation(m)),
        settle(to_view_event(m)),
    ]
    .contains(&true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(subject in subjects(), payload in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_everywhere(&subject, &payload);
    }

    #[test]
    fn arbitrary_wire_messages_never_panic(subject in subjects(), seed in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everywhere(&subject, &proto::testing::wire_message(&seed));
    }

    /// The subject's own message type always gets past the protobuf decoder,
    /// so what is fuzzed here are the field conversions behind it.
    #[test]
    fn arbitrary_field_values_of_each_event_never_panic(
        subject in proptest::sample::select(proto::subjects::ALL),
        seed in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let payload = proto::testing::message_for(&message_type(subject), &seed)
            .expect("every subject has its message type");
        prop_assert!(!decode_everywhere(subject, &payload), "{subject}: undecodable");
    }
}
