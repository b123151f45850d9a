use std::fmt;

/// One invalid request field: the adapter's `google.rpc.BadRequest.FieldViolation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The request field's path, e.g. `payment.card_number`.
    pub field: String,
    /// What is wrong with it, for humans.
    pub description: String,
}

/// Every invalid field of one request, collected so the caller learns all of them
/// at once instead of one per round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// A single violation.
    pub fn one(field: impl Into<String>, description: impl fmt::Display) -> Self {
        let mut v = Self::new();
        v.add(field, description);
        v
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl fmt::Display) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.to_string(),
        });
    }

    /// Parses one field, recording a violation under `field` on failure.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, parsed: Result<T, E>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(e) => {
                self.add(field, e);
                None
            }
        }
    }

    /// Prefixes every field path, for nested messages (`card_number` -> `payment.card_number`).
    #[must_use]
    pub fn nested(self, prefix: &str) -> Self {
        Self(
            self.0
                .into_iter()
                .map(|v| FieldViolation {
                    field: format!("{prefix}.{}", v.field),
                    description: v.description,
                })
                .collect(),
        )
    }

    pub fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.0.iter()
    }

    /// `Ok(())` when nothing was recorded.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_collects_every_failure_with_its_field() {
        let mut v = Violations::new();
        let a: Option<u8> = v.check("a", "x".parse::<u8>());
        let b: Option<u8> = v.check("b", "7".parse::<u8>());
        let c: Option<u8> = v.check("c", "-1".parse::<u8>());
        assert_eq!((a, b, c), (None, Some(7), None));
        let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["a", "c"]);
    }

    #[test]
    fn nested_prefixes_paths() {
        let v = Violations::one("card_number", "bad").nested("payment");
        assert_eq!(v.to_string(), "payment.card_number: bad");
        assert!(v.into_result().is_err());
        assert!(Violations::new().into_result().is_ok());
    }
}
