//! Short textual codes: validated, normalized, cheap to clone.

use std::fmt;

/// A code that does not follow its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be {expected}")]
pub struct InvalidCode {
    expected: &'static str,
}

macro_rules! code {
    ($(#[$doc:meta])* $name:ident, $expected:literal, $normalize:expr, $valid:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Trims, normalizes case where the format is case-insensitive, validates.
            pub fn parse(raw: &str) -> Result<Self, InvalidCode> {
                let normalize: fn(&str) -> String = $normalize;
                let valid: fn(&str) -> bool = $valid;
                let s = normalize(raw.trim());
                if valid(&s) {
                    Ok(Self(s))
                } else {
                    Err(InvalidCode { expected: $expected })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn len_between(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
}

fn upper_code(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

code!(
    /// An airport booth, e.g. `ICN-T1`.
    BoothCode,
    "2-16 letters, digits or dashes, e.g. ICN-T1",
    str::to_ascii_uppercase,
    |s| len_between(s, 2, 16) && upper_code(s)
);

code!(
    /// A parking lot, e.g. `P1`.
    LotCode,
    "1-16 letters, digits or dashes, e.g. P1",
    str::to_ascii_uppercase,
    |s| len_between(s, 1, 16) && upper_code(s)
);

code!(
    /// A parking space, e.g. `P1-B1-001`.
    SpaceId,
    "1-32 letters, digits or dashes, e.g. P1-B1-001",
    str::to_ascii_uppercase,
    |s| len_between(s, 1, 32) && upper_code(s)
);

code!(
    /// A kind of roaming device, e.g. `egg-lte`.
    DeviceModel,
    "1-32 lower-case letters, digits or dashes, e.g. egg-lte",
    str::to_ascii_lowercase,
    |s| len_between(s, 1, 32)
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
);

code!(
    /// One physical device's serial number.
    Serial,
    "1-64 letters, digits or dashes",
    str::to_ascii_uppercase,
    |s| len_between(s, 1, 64) && upper_code(s)
);

code!(
    /// An ISO 3166-1 alpha-2 country, e.g. `JP`.
    CountryCode,
    "an ISO 3166-1 alpha-2 country code, e.g. JP",
    str::to_ascii_uppercase,
    |s| s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
);

code!(
    /// A customer: the `sub` of a customer's token.
    CustomerId,
    "1-64 letters, digits or . _ @ -",
    str::to_owned,
    |s| len_between(s, 1, 64)
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
);

code!(
    /// A client-chosen idempotency key of a reserve call.
    RequestId,
    "1-128 visible ASCII characters",
    str::to_owned,
    |s| len_between(s, 1, 128) && s.bytes().all(|b| b.is_ascii_graphic())
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booth_codes_are_normalized_to_upper_case() {
        assert_eq!(BoothCode::parse(" icn-t1 ").unwrap().as_str(), "ICN-T1");
        for bad in [
            "",
            "A",
            "ICN T1",
            "-ICN",
            "ICN-",
            "ICN_T1",
            "ABCDEFGHIJKLMNOPQ",
        ] {
            assert!(BoothCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn device_models_are_lower_case() {
        assert_eq!(DeviceModel::parse("EGG-LTE").unwrap().as_str(), "egg-lte");
        assert!(DeviceModel::parse("egg lte").is_err());
        assert!(DeviceModel::parse("").is_err());
    }

    #[test]
    fn countries_are_two_letters() {
        assert_eq!(CountryCode::parse("jp").unwrap().as_str(), "JP");
        for bad in ["J", "JPN", "J1", ""] {
            assert!(CountryCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn customer_ids_and_request_ids_keep_their_case() {
        assert_eq!(CustomerId::parse("Alice").unwrap().as_str(), "Alice");
        assert!(CustomerId::parse("al ice").is_err());
        assert_eq!(RequestId::parse("Req-1").unwrap().as_str(), "Req-1");
        assert!(RequestId::parse("").is_err());
        assert!(RequestId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn space_ids_and_serials() {
        assert_eq!(SpaceId::parse("p1-b1-001").unwrap().as_str(), "P1-B1-001");
        assert!(SpaceId::parse("P1/B1").is_err());
        assert_eq!(Serial::parse("egg-0001").unwrap().as_str(), "EGG-0001");
        assert!(LotCode::parse("P1").is_ok());
    }
}
