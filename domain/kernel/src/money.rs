use std::fmt;

/// Why an amount of money was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMoney {
    #[error("currency must be an ISO 4217 code of three capital letters, e.g. KRW")]
    Currency,
    #[error("must not be negative")]
    Negative,
    /// Over [`Money::MAX_MINOR_UNITS`].
    #[error("must be at most {}", Money::MAX_MINOR_UNITS)]
    TooLarge,
    /// A rate over [`Money::MAX_RATE_MINOR_UNITS`].
    #[error(
        "a rate must be at most {} per hour or day",
        Money::MAX_RATE_MINOR_UNITS
    )]
    RateTooLarge,
    /// A product ([`Money::times`]) over [`Money::MAX_MINOR_UNITS`].
    #[error("the price would be more than {}", Money::MAX_MINOR_UNITS)]
    Overflow,
}

impl InvalidMoney {
    /// The field of the wire form `{ currency_code, minor_units }` at fault,
    /// to name in a field violation (`hourly_rate.minor_units`).
    pub const fn field(&self) -> &'static str {
        match self {
            Self::Currency => "currency_code",
            Self::Negative | Self::TooLarge | Self::RateTooLarge | Self::Overflow => "minor_units",
        }
    }
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

/// An amount in a currency's smallest unit, from 0 to
/// [`Money::MAX_MINOR_UNITS`] (DOMAIN.md, invariant 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    currency: Currency,
    minor_units: i64,
}

impl Money {
    /// The largest amount (10^12 minor units: a trillion won), far above any
    /// price here and far below `i64::MAX`, so no sum or product of a few
    /// amounts can wrap.
    pub const MAX_MINOR_UNITS: i64 = 1_000_000_000_000;
    /// The largest hourly or daily rate (10^8 minor units). Times the longest
    /// period (30 days, or 24 started hours) it stays under
    /// [`Self::MAX_MINOR_UNITS`], so a quote within the booking horizon never
    /// fails for its size.
    pub const MAX_RATE_MINOR_UNITS: i64 = 100_000_000;

    /// # Errors
    ///
    /// [`InvalidMoney::Negative`] below 0, [`InvalidMoney::TooLarge`] over
    /// [`Self::MAX_MINOR_UNITS`].
    pub fn new(currency: Currency, minor_units: i64) -> Result<Self, InvalidMoney> {
        if minor_units < 0 {
            return Err(InvalidMoney::Negative);
        }
        if minor_units > Self::MAX_MINOR_UNITS {
            return Err(InvalidMoney::TooLarge);
        }
        Ok(Self {
            currency,
            minor_units,
        })
    }

    /// This amount as an hourly or daily rate.
    ///
    /// # Errors
    ///
    /// [`InvalidMoney::RateTooLarge`] over [`Self::MAX_RATE_MINOR_UNITS`].
    pub fn as_rate(self) -> Result<Self, InvalidMoney> {
        if self.minor_units > Self::MAX_RATE_MINOR_UNITS {
            return Err(InvalidMoney::RateTooLarge);
        }
        Ok(self)
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
    ///
    /// # Errors
    ///
    /// [`InvalidMoney::Overflow`] when the product is over
    /// [`Self::MAX_MINOR_UNITS`] (checked: `MAX_MINOR_UNITS * u32::MAX` would
    /// not fit an `i64`).
    pub fn times(&self, n: u32) -> Result<Self, InvalidMoney> {
        self.minor_units
            .checked_mul(i64::from(n))
            .filter(|product| *product <= Self::MAX_MINOR_UNITS)
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
    fn amounts_are_at_most_a_trillion_minor_units() {
        let max = Money::MAX_MINOR_UNITS;
        assert_eq!(max, 10_i64.pow(12));
        assert_eq!(Money::krw(max).map(|m| m.minor_units()), Ok(max));
        assert_eq!(Money::krw(max + 1), Err(InvalidMoney::TooLarge));
        assert_eq!(Money::krw(i64::MAX), Err(InvalidMoney::TooLarge));
        assert_eq!(
            InvalidMoney::TooLarge.to_string(),
            "must be at most 1000000000000"
        );
        assert_eq!(InvalidMoney::TooLarge.field(), "minor_units");
        assert_eq!(InvalidMoney::Currency.field(), "currency_code");
    }

    #[test]
    fn rates_are_at_most_a_hundred_million_minor_units() {
        let max = Money::MAX_RATE_MINOR_UNITS;
        assert_eq!(max, 10_i64.pow(8));
        let at = Money::krw(max).unwrap();
        assert_eq!(at.as_rate(), Ok(at));
        assert_eq!(
            Money::krw(max + 1).unwrap().as_rate(),
            Err(InvalidMoney::RateTooLarge)
        );
        assert_eq!(
            Money::krw(Money::MAX_MINOR_UNITS).unwrap().as_rate(),
            Err(InvalidMoney::RateTooLarge)
        );
        assert_eq!(
            InvalidMoney::RateTooLarge.to_string(),
            "a rate must be at most 100000000 per hour or day"
        );
    }

    #[test]
    fn times_multiplies_and_refuses_a_product_over_the_ceiling() {
        let rate = Money::krw(5_000).unwrap();
        assert_eq!(rate.times(3).unwrap().minor_units(), 15_000);
        assert_eq!(rate.times(0).unwrap().minor_units(), 0);
        // The largest rate over the longest period stays far under the ceiling.
        let top = Money::krw(Money::MAX_RATE_MINOR_UNITS).unwrap();
        assert_eq!(top.times(30).unwrap().minor_units(), 3_000_000_000);
        assert_eq!(
            top.times(10_000).unwrap().minor_units(),
            Money::MAX_MINOR_UNITS
        );
        assert_eq!(top.times(10_001), Err(InvalidMoney::Overflow));
        // The largest amount times the largest factor: no wrap in i64.
        let huge = Money::krw(Money::MAX_MINOR_UNITS).unwrap();
        assert_eq!(huge.times(2), Err(InvalidMoney::Overflow));
        assert_eq!(huge.times(u32::MAX), Err(InvalidMoney::Overflow));
    }

    #[test]
    fn displays_amount_and_currency() {
        assert_eq!(Money::krw(9_000).unwrap().to_string(), "9000 KRW");
    }
}
