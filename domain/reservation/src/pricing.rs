//! Prices computed on the server (invariant 3) and the period rules.

use domain_kernel::{
    CountryCode, DateRange, DeviceModel, InvalidPeriod, Money, SpaceId, TimeWindow, Timestamp,
    Violations,
};
use time::{Date, Duration};

use crate::reservation::RoamingDetails;

/// Longest roaming rental, in days (both ends included).
pub const MAX_ROAMING_DAYS: u32 = 30;
/// Longest parking window.
pub const MAX_PARKING_WINDOW: Duration = Duration::hours(24);
/// How far ahead a roaming trip may start (DOMAIN.md, invariant 7).
pub const ROAMING_HORIZON_DAYS: i64 = 365;
/// How far ahead a parking window may start.
pub const PARKING_HORIZON: Duration = Duration::days(90);
/// A parking window may start this long before now (clocks of phones drift; a
/// car arriving right now is a normal case).
pub const PARKING_START_SLACK: Duration = Duration::minutes(5);

/// The price list entry of a device model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceOffer {
    pub device_model: DeviceModel,
    pub daily_rate: Money,
    /// Countries the model works in.
    pub countries: Vec<CountryCode>,
}

/// A reservable parking space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceOffer {
    pub space_id: SpaceId,
    pub hourly_rate: Money,
}

/// A price and how it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub price: Money,
    /// The daily or hourly rate.
    pub unit_rate: Money,
    /// Days or started hours.
    pub units: u32,
}

/// Checks a roaming period: not in the past, starting within
/// [`ROAMING_HORIZON_DAYS`], at most [`MAX_ROAMING_DAYS`].
pub fn check_roaming_dates(dates: &DateRange, today: Date) -> Result<(), Violations> {
    let mut v = Violations::new();
    if dates.start() < today {
        v.add("start_date", InvalidPeriod::InThePast);
    }
    let horizon = today
        .checked_add(Duration::days(ROAMING_HORIZON_DAYS))
        .unwrap_or(Date::MAX);
    if dates.start() > horizon {
        v.add(
            "start_date",
            format!("must be at most {ROAMING_HORIZON_DAYS} days ahead"),
        );
    }
    if dates.days() > MAX_ROAMING_DAYS {
        v.add(
            "end_date",
            InvalidPeriod::TooLong(format!("{MAX_ROAMING_DAYS} days")),
        );
    }
    v.into_result()
}

/// Checks a parking window: not in the past (beyond a little slack),
/// starting within [`PARKING_HORIZON`], at most [`MAX_PARKING_WINDOW`].
pub fn check_parking_window(window: &TimeWindow, now: Timestamp) -> Result<(), Violations> {
    let mut v = Violations::new();
    if now
        .checked_sub(PARKING_START_SLACK)
        .is_some_and(|earliest| window.start() < earliest)
    {
        v.add("start_time", InvalidPeriod::InThePast);
    }
    if now
        .checked_add(PARKING_HORIZON)
        .is_some_and(|latest| window.start() > latest)
    {
        v.add("start_time", "must be at most 90 days ahead");
    }
    if window.duration() > MAX_PARKING_WINDOW {
        v.add("end_time", InvalidPeriod::TooLong("24 hours".to_owned()));
    }
    v.into_result()
}

/// Daily rate x days, for a country the model works in.
pub fn quote_roaming(offer: &DeviceOffer, details: &RoamingDetails) -> Result<Quote, Violations> {
    if !offer.countries.contains(&details.country) {
        let supported: Vec<&str> = offer.countries.iter().map(CountryCode::as_str).collect();
        return Err(Violations::one(
            "country",
            format!(
                "{} does not work in {}; it works in {}",
                offer.device_model,
                details.country,
                supported.join(", ")
            ),
        ));
    }
    let days = details.dates.days();
    let price = offer
        .daily_rate
        .times(days)
        .map_err(|e| Violations::one("end_date", e))?;
    Ok(Quote {
        price,
        unit_rate: offer.daily_rate,
        units: days,
    })
}

/// Hourly rate x started hours.
pub fn quote_parking(offer: &SpaceOffer, window: &TimeWindow) -> Result<Quote, Violations> {
    let hours = window.started_hours();
    let price = offer
        .hourly_rate
        .times(hours)
        .map_err(|e| Violations::one("end_time", e))?;
    Ok(Quote {
        price,
        unit_rate: offer.hourly_rate,
        units: hours,
    })
}

#[cfg(test)]
mod tests {
    use domain_kernel::BoothCode;
    use time::macros::{date, datetime};

    use super::*;

    fn fields(v: Violations) -> Vec<String> {
        v.iter().map(|f| f.field.clone()).collect()
    }

    #[test]
    fn trips_start_within_a_year_and_parking_within_ninety_days() {
        let today = date!(2026 - 12 - 02);
        let range = |from: Date, to: Date| DateRange::new(from, to).unwrap();
        let in_a_year = date!(2027 - 12 - 02);
        assert!(check_roaming_dates(&range(in_a_year, in_a_year), today).is_ok());
        let late = check_roaming_dates(&range(date!(2027 - 12 - 03), date!(2027 - 12 - 04)), today);
        assert_eq!(fields(late.unwrap_err()), ["start_date"]);
        // The last day of the calendar: refused, no overflow.
        assert!(check_roaming_dates(&range(Date::MAX, Date::MAX), Date::MAX).is_ok());
        assert!(check_roaming_dates(&range(Date::MAX, Date::MAX), today).is_err());

        let now = datetime!(2026-12-02 10:00 UTC);
        let window = |from: Timestamp, to: Timestamp| TimeWindow::new(from, to).unwrap();
        let ninety = now + Duration::days(90);
        assert!(check_parking_window(&window(ninety, ninety + Duration::hours(2)), now).is_ok());
        let beyond = now + Duration::days(90) + Duration::minutes(1);
        let refused = check_parking_window(&window(beyond, beyond + Duration::hours(1)), now);
        assert_eq!(fields(refused.unwrap_err()), ["start_time"]);
        let end_of_time = datetime!(9999-12-31 23:00 UTC);
        assert!(
            check_parking_window(
                &window(end_of_time, end_of_time + Duration::minutes(59)),
                now
            )
            .is_err()
        );
    }

    fn offer() -> DeviceOffer {
        DeviceOffer {
            device_model: DeviceModel::parse("egg-lte").unwrap(),
            daily_rate: Money::krw(5_000).unwrap(),
            countries: vec![
                CountryCode::parse("JP").unwrap(),
                CountryCode::parse("US").unwrap(),
            ],
        }
    }

    fn roaming(country: &str, start: Date, end: Date) -> RoamingDetails {
        RoamingDetails {
            device_model: DeviceModel::parse("egg-lte").unwrap(),
            country: CountryCode::parse(country).unwrap(),
            pickup_booth: BoothCode::parse("ICN-T1").unwrap(),
            return_booth: BoothCode::parse("ICN-T1").unwrap(),
            dates: DateRange::new(start, end).unwrap(),
        }
    }

    #[test]
    fn roaming_costs_the_daily_rate_times_days() {
        let q = quote_roaming(
            &offer(),
            &roaming("JP", date!(2026 - 12 - 01), date!(2026 - 12 - 05)),
        )
        .unwrap();
        assert_eq!(q.price, Money::krw(25_000).unwrap());
        assert_eq!(q.units, 5);
        assert_eq!(q.unit_rate, Money::krw(5_000).unwrap());
    }

    #[test]
    fn a_country_the_model_does_not_cover_is_refused() {
        let err = quote_roaming(
            &offer(),
            &roaming("FR", date!(2026 - 12 - 01), date!(2026 - 12 - 02)),
        )
        .unwrap_err();
        assert_eq!(err.iter().next().unwrap().field, "country");
        assert!(err.to_string().contains("works in JP, US"), "{err}");
    }

    #[test]
    fn parking_costs_the_hourly_rate_times_started_hours() {
        let space = SpaceOffer {
            space_id: SpaceId::parse("P1-B1-001").unwrap(),
            hourly_rate: Money::krw(3_000).unwrap(),
        };
        let window = TimeWindow::new(
            datetime!(2026-12-01 10:00 UTC),
            datetime!(2026-12-01 12:30 UTC),
        )
        .unwrap();
        let q = quote_parking(&space, &window).unwrap();
        assert_eq!((q.units, q.price), (3, Money::krw(9_000).unwrap()));
    }

    /// DOMAIN.md, invariant 10: the largest rate over the longest period
    /// quotes, and stays under the ceiling of an amount.
    #[test]
    fn the_largest_rate_over_the_longest_period_quotes() {
        let top = Money::krw(Money::MAX_RATE_MINOR_UNITS).unwrap();
        let device = DeviceOffer {
            daily_rate: top,
            ..offer()
        };
        let today = date!(2026 - 12 - 01);
        let thirty_days = roaming("JP", today, date!(2026 - 12 - 30));
        assert!(check_roaming_dates(&thirty_days.dates, today).is_ok());
        let q = quote_roaming(&device, &thirty_days).unwrap();
        assert_eq!((q.units, q.price.minor_units()), (30, 3_000_000_000));

        let space = SpaceOffer {
            space_id: SpaceId::parse("P1-B1-001").unwrap(),
            hourly_rate: top,
        };
        let now = datetime!(2026-12-01 10:00 UTC);
        let day = TimeWindow::new(now, now + MAX_PARKING_WINDOW).unwrap();
        assert!(check_parking_window(&day, now).is_ok());
        let q = quote_parking(&space, &day).unwrap();
        assert_eq!((q.units, q.price.minor_units()), (24, 2_400_000_000));
        assert!(q.price.minor_units() < Money::MAX_MINOR_UNITS);
    }

    #[test]
    fn roaming_dates_may_start_today_but_not_yesterday() {
        let today = date!(2026 - 11 - 22);
        let ok = DateRange::new(today, date!(2026 - 11 - 25)).unwrap();
        assert!(check_roaming_dates(&ok, today).is_ok());
        let past = DateRange::new(date!(2026 - 11 - 21), date!(2026 - 11 - 25)).unwrap();
        assert_eq!(
            check_roaming_dates(&past, today).unwrap_err().to_string(),
            "start_date: must not be in the past"
        );
    }

    #[test]
    fn roaming_is_at_most_thirty_days() {
        let today = date!(2026 - 11 - 22);
        let thirty = DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 30)).unwrap();
        assert!(check_roaming_dates(&thirty, today).is_ok());
        let thirty_one = DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 31)).unwrap();
        assert_eq!(
            check_roaming_dates(&thirty_one, today)
                .unwrap_err()
                .iter()
                .next()
                .unwrap()
                .field,
            "end_date"
        );
    }

    #[test]
    fn parking_is_at_most_a_day_and_not_in_the_past() {
        let now = datetime!(2026-11-22 10:00 UTC);
        let w = |s, e| TimeWindow::new(s, e).unwrap();
        assert!(check_parking_window(&w(now, now + Duration::hours(24)), now).is_ok());
        assert!(
            check_parking_window(
                &w(now - Duration::minutes(5), now + Duration::hours(1)),
                now
            )
            .is_ok()
        );
        let too_long = check_parking_window(
            &w(now, now + Duration::hours(24) + Duration::seconds(1)),
            now,
        );
        assert_eq!(
            too_long.unwrap_err().iter().next().unwrap().field,
            "end_time"
        );
        let past = check_parking_window(
            &w(now - Duration::minutes(6), now + Duration::hours(1)),
            now,
        );
        assert_eq!(past.unwrap_err().iter().next().unwrap().field, "start_time");
    }
}
