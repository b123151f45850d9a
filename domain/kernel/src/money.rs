use std::fmt;

/// Why an amount of money was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMoney {
    #[error("currency must be an ISO 4217 code of three capital letters, e.g. KRW")]
    Currency,
    #[error("amount must not be negative")]
    Negative,
    #[error("amount is too large")]
    Overflow,
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Korean won, the currency of the demo catalog (no minor unit).
    pub const KRW: Self = Self(*b"KRW");

    pub fn parse(code: &str) -> Result<Self, InvalidMoney> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(InvalidMoney::Currency),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII capitals get in (see `parse`), so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-negative amount in a currency's smallest unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    currency: Currency,
    minor_units: i64,
}

impl Money {
    pub fn new(currency: Currency, minor_units: i64) -> Result<Self, InvalidMoney> {
        if minor_units < 0 {
            return Err(InvalidMoney::Negative);
        }
        Ok(Self {
            currency,
            minor_units,
        })
    }

    /// Parses the wire form `{ currency_code, minor_units }`.
    pub fn parse(currency_code: &str, minor_units: i64) -> Result<Self, InvalidMoney> {
        Self::new(Currency::parse(currency_code)?, minor_units)
    }

    pub fn krw(won: i64) -> Result<Self, InvalidMoney> {
        Self::new(Currency::KRW, won)
    }

    pub const fn currency(&self) -> Currency {
        self.currency
    }

    pub const fn minor_units(&self) -> i64 {
        self.minor_units
    }

    /// This amount `n` times (a rate times days or hours).
    pub fn times(&self, n: u32) -> Result<Self, InvalidMoney> {
        self.minor_units
            .checked_mul(i64::from(n))
            .map(|minor_units| Self {
                currency: self.currency,
                minor_units,
            })
            .ok_or(InvalidMoney::Overflow)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor_units, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_must_be_three_capitals() {
        assert!(Currency::parse("KRW").is_ok());
        for bad in ["krw", "KR", "KRWW", "", "K1W"] {
            assert_eq!(Currency::parse(bad), Err(InvalidMoney::Currency), "{bad}");
        }
    }

    #[test]
    fn negative_amounts_are_refused() {
        assert_eq!(Money::krw(-1), Err(InvalidMoney::Negative));
        assert_eq!(Money::krw(0).map(|m| m.minor_units()), Ok(0));
    }

    #[test]
    fn times_multiplies_and_refuses_overflow() {
        let rate = Money::krw(5_000).unwrap();
        assert_eq!(rate.times(3).unwrap().minor_units(), 15_000);
        assert_eq!(rate.times(0).unwrap().minor_units(), 0);
        let huge = Money::krw(i64::MAX).unwrap();
        assert_eq!(huge.times(2), Err(InvalidMoney::Overflow));
    }

    #[test]
    fn displays_amount_and_currency() {
        assert_eq!(Money::krw(9_000).unwrap().to_string(), "9000 KRW");
    }
}
