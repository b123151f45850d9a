use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A string that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a UUID (e.g. 0190b6c4-6f5e-7c3a-9f3e-2d1c0b9a8f7e)")]
pub struct InvalidId;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// Parses the hyphenated form; anything else is refused.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                Uuid::try_parse(s.trim()).map(Self).map_err(|_| InvalidId)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// Identifies a reservation; the correlation key carried by every event about it.
    ReservationId
);
uuid_id!(
    /// Identifies an event (UUIDv7, so ids sort by creation time).
    EventId
);
uuid_id!(
    /// Identifies a payment.
    PaymentId
);
uuid_id!(
    /// Identifies a parking session.
    SessionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let id = ReservationId::from_uuid(Uuid::from_u128(42));
        assert_eq!(ReservationId::parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn garbage_is_not_an_id() {
        assert_eq!(ReservationId::parse("not-a-uuid"), Err(InvalidId));
        assert_eq!(ReservationId::parse(""), Err(InvalidId));
    }
}
