use std::fmt;

/// A vehicle plate that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 2-16 letters (Hangul allowed) or digits, e.g. 12가3456")]
pub struct InvalidPlate;

/// A vehicle registration plate, e.g. `12가3456` or `서울12가3456`. Spaces and
/// dashes are dropped and ASCII letters upper-cased, so the gate camera's
/// `12 가 3456` and the customer's `12가3456` are the same plate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VehiclePlate(String);

impl VehiclePlate {
    pub fn parse(raw: &str) -> Result<Self, InvalidPlate> {
        let s: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let count = s.chars().count();
        let valid_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || is_hangul(c));
        if (2..=16).contains(&count) && valid_chars && s.chars().any(|c| c.is_ascii_digit()) {
            Ok(Self(s))
        } else {
            Err(InvalidPlate)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_hangul(c: char) -> bool {
    ('\u{AC00}'..='\u{D7A3}').contains(&c)
}

impl fmt::Display for VehiclePlate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn korean_plates_are_accepted_and_normalized() {
        assert_eq!(
            VehiclePlate::parse("12가 3456").unwrap().as_str(),
            "12가3456"
        );
        assert_eq!(
            VehiclePlate::parse("서울12가3456").unwrap().as_str(),
            "서울12가3456"
        );
        assert_eq!(VehiclePlate::parse("ab-123").unwrap().as_str(), "AB123");
    }

    #[test]
    fn nonsense_is_not_a_plate() {
        for bad in ["", "1", "ABC", "12가3456!", "1234567890ABCDEFG", "車12"] {
            assert_eq!(VehiclePlate::parse(bad), Err(InvalidPlate), "{bad:?}");
        }
    }
}
