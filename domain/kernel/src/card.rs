use std::fmt;

use time::Date;

use crate::Violations;

/// Why card details were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCard {
    #[error("must be 12-19 digits (spaces and dashes allowed)")]
    NumberFormat,
    #[error("is not a valid card number (checksum)")]
    Checksum,
    #[error("must be 1-12")]
    Month,
    #[error("must be a four-digit year")]
    Year,
    #[error("card has expired")]
    Expired,
    #[error("must be 1-64 characters")]
    Holder,
    #[error("must be 1-32 letters, digits or spaces")]
    Company,
}

/// A payment card number that passed the Luhn check. It is never printed:
/// `Debug` and `Display` show only the last four digits, and storage keeps only
/// those (DOMAIN.md, "Lifecycles").
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    pub fn parse(raw: &str) -> Result<Self, InvalidCard> {
        let digits: String = raw.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidCard::NumberFormat);
        }
        if !luhn_valid(&digits) {
            return Err(InvalidCard::Checksum);
        }
        Ok(Self(digits))
    }

    /// The last four digits, the only part that may be stored or shown.
    pub fn last_four(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// The full number, for the acquirer only. Never log or store it.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(****{})", self.last_four())
    }
}

impl fmt::Display for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "****{}", self.last_four())
    }
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A card's expiry month. The card is valid through the last day of that month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardExpiry {
    month: u8,
    year: u16,
}

impl CardExpiry {
    pub fn new(month: i32, year: i32) -> Result<Self, InvalidCard> {
        let month = u8::try_from(month)
            .ok()
            .filter(|m| (1..=12).contains(m))
            .ok_or(InvalidCard::Month)?;
        let year = u16::try_from(year)
            .ok()
            .filter(|y| (2000..=2199).contains(y))
            .ok_or(InvalidCard::Year)?;
        Ok(Self { month, year })
    }

    pub const fn month(&self) -> u8 {
        self.month
    }

    pub const fn year(&self) -> u16 {
        self.year
    }

    pub fn is_expired_on(&self, today: Date) -> bool {
        let current = (today.year(), u8::from(today.month()));
        (i32::from(self.year), self.month) < current
    }
}

/// Card details as given with a reserve or pay call.
#[derive(Clone, PartialEq, Eq)]
pub struct CardDetails {
    pub number: CardNumber,
    pub expiry: CardExpiry,
    pub holder_name: String,
    pub company: String,
}

impl CardDetails {
    /// Validates every field, reporting each bad one under its wire name, and
    /// refuses an expired card.
    pub fn parse(
        number: &str,
        expiry_month: i32,
        expiry_year: i32,
        holder_name: &str,
        company: &str,
        today: Date,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let number = v.check("card_number", CardNumber::parse(number));
        let month = v.check(
            "expiry_month",
            u8::try_from(expiry_month)
                .ok()
                .filter(|m| (1..=12).contains(m))
                .ok_or(InvalidCard::Month),
        );
        let expiry = match month {
            Some(_) => v.check("expiry_year", CardExpiry::new(expiry_month, expiry_year)),
            None => None,
        };
        if let Some(expiry) = expiry
            && expiry.is_expired_on(today)
        {
            v.add("expiry_year", InvalidCard::Expired);
        }
        let holder_name = holder_name.trim();
        if holder_name.is_empty() || holder_name.chars().count() > 64 {
            v.add("holder_name", InvalidCard::Holder);
        }
        let company = company.trim().to_ascii_uppercase();
        if company.is_empty()
            || company.len() > 32
            || !company
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b' ')
        {
            v.add("company", InvalidCard::Company);
        }
        match (number, expiry, v.is_empty()) {
            (Some(number), Some(expiry), true) => Ok(Self {
                number,
                expiry,
                holder_name: holder_name.to_owned(),
                company,
            }),
            _ => Err(v),
        }
    }
}

impl fmt::Debug for CardDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardDetails")
            .field("number", &self.number)
            .field("expiry", &self.expiry)
            .field("holder_name", &"<redacted>")
            .field("company", &self.company)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::date;

    use super::*;

    const TODAY: Date = date!(2026 - 11 - 22);

    #[test]
    fn luhn_valid_numbers_are_accepted() {
        for n in [
            "4111111111111111",
            "4000 0000 0000 0002",
            "4000-0000-0000-9995",
            "5555555555554444",
        ] {
            assert!(CardNumber::parse(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn checksum_failures_and_garbage_are_refused() {
        assert_eq!(
            CardNumber::parse("4111111111111112"),
            Err(InvalidCard::Checksum)
        );
        assert_eq!(CardNumber::parse("4111"), Err(InvalidCard::NumberFormat));
        assert_eq!(
            CardNumber::parse("4111x11111111111"),
            Err(InvalidCard::NumberFormat)
        );
        assert_eq!(CardNumber::parse(""), Err(InvalidCard::NumberFormat));
    }

    #[test]
    fn the_number_never_shows_in_debug_or_display() {
        let n = CardNumber::parse("4111111111111111").unwrap();
        assert_eq!(n.last_four(), "1111");
        assert_eq!(format!("{n:?}"), "CardNumber(****1111)");
        assert_eq!(n.to_string(), "****1111");
        let card =
            CardDetails::parse("4111111111111111", 12, 2030, "Kim Minji", "visa", TODAY).unwrap();
        let debug = format!("{card:?}");
        assert!(
            !debug.contains("4111111111111111") && !debug.contains("Kim"),
            "{debug}"
        );
    }

    #[test]
    fn expiry_is_checked_against_today() {
        assert!(!CardExpiry::new(11, 2026).unwrap().is_expired_on(TODAY));
        assert!(CardExpiry::new(10, 2026).unwrap().is_expired_on(TODAY));
        assert!(!CardExpiry::new(1, 2027).unwrap().is_expired_on(TODAY));
        assert_eq!(CardExpiry::new(13, 2026), Err(InvalidCard::Month));
        assert_eq!(CardExpiry::new(1, 26), Err(InvalidCard::Year));
    }

    #[test]
    fn card_details_report_every_bad_field() {
        let err = CardDetails::parse("123", 0, 2030, " ", "", TODAY).unwrap_err();
        let fields: Vec<_> = err.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["card_number", "expiry_month", "holder_name", "company"]
        );
        let expired =
            CardDetails::parse("4111111111111111", 1, 2020, "A", "VISA", TODAY).unwrap_err();
        assert_eq!(expired.to_string(), "expiry_year: card has expired");
    }

    fn luhn_complete(prefix: &[u8]) -> String {
        // Append the check digit that makes `prefix` Luhn-valid.
        let mut s: String = prefix.iter().map(|d| char::from(b'0' + d)).collect();
        for check in 0..10u8 {
            let candidate = format!("{s}{check}");
            if luhn_valid(&candidate) {
                s = candidate;
                break;
            }
        }
        s
    }

    proptest! {
        #[test]
        fn any_luhn_completed_number_parses_and_one_changed_digit_does_not(
            prefix in proptest::collection::vec(0u8..10, 11..18),
            pos in any::<prop::sample::Index>(),
            delta in 1u8..10,
        ) {
            let number = luhn_complete(&prefix);
            prop_assert!(CardNumber::parse(&number).is_ok());
            let mut bytes = number.into_bytes();
            let i = pos.index(bytes.len());
            bytes[i] = b'0' + (bytes[i] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            // Luhn catches every single-digit error.
            prop_assert_eq!(CardNumber::parse(&changed), Err(InvalidCard::Checksum));
        }
    }
}
