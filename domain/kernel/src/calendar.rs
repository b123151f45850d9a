use std::fmt;

use time::{Date, Duration, OffsetDateTime, format_description::well_known::Rfc3339};

/// An instant, always in UTC.
pub type Timestamp = OffsetDateTime;

/// A parking reservation admits its car this long before its window starts.
pub const EARLY_ENTRY_GRACE: Duration = Duration::minutes(15);

/// How long before a parking window's entry opens its reservation stops being
/// cancelable ([`TimeWindow::cancelable_at`]).
pub const CANCEL_MARGIN: Duration = Duration::minutes(1);

/// Why a date range or time window was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPeriod {
    #[error("must be a date in the form YYYY-MM-DD")]
    DateFormat,
    #[error("must be a valid instant")]
    Instant,
    #[error("end must not be before start")]
    EndBeforeStart,
    #[error("end must be after start")]
    Empty,
    #[error("must not be in the past")]
    InThePast,
    #[error("is longer than the allowed {0}")]
    TooLong(String),
}

/// An inclusive range of calendar days: a rental from the 1st to the 5th is five days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateRange {
    start: Date,
    end: Date,
}

impl DateRange {
    pub fn new(start: Date, end: Date) -> Result<Self, InvalidPeriod> {
        if end < start {
            return Err(InvalidPeriod::EndBeforeStart);
        }
        Ok(Self { start, end })
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse_date(s: &str) -> Result<Date, InvalidPeriod> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(s.trim(), format).map_err(|_| InvalidPeriod::DateFormat)
    }

    pub fn format_date(date: Date) -> String {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        date.format(format).unwrap_or_default()
    }

    pub const fn start(&self) -> Date {
        self.start
    }

    pub const fn end(&self) -> Date {
        self.end
    }

    /// Number of days, both ends included (at least 1).
    pub fn days(&self) -> u32 {
        let whole = (self.end - self.start).whole_days();
        u32::try_from(whole + 1).unwrap_or(u32::MAX)
    }

    pub fn contains(&self, day: Date) -> bool {
        self.start <= day && day <= self.end
    }

    pub fn overlaps(&self, other: &Self) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Every day of the range, in order.
    pub fn iter_days(&self) -> impl Iterator<Item = Date> + '_ {
        std::iter::successors(Some(self.start), move |d| {
            d.next_day().filter(|next| *next <= self.end)
        })
    }
}

impl fmt::Display for DateRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}..={}",
            Self::format_date(self.start),
            Self::format_date(self.end)
        )
    }
}

/// A half-open window of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    start: Timestamp,
    end: Timestamp,
}

impl TimeWindow {
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Self, InvalidPeriod> {
        if end <= start {
            return Err(InvalidPeriod::Empty);
        }
        Ok(Self {
            start: start.to_offset(time::UtcOffset::UTC),
            end: end.to_offset(time::UtcOffset::UTC),
        })
    }

    /// Builds an instant from the wire form (seconds and nanos since the epoch).
    pub fn instant(seconds: i64, nanos: i32) -> Result<Timestamp, InvalidPeriod> {
        let nanos = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| InvalidPeriod::Instant)
    }

    pub fn format_instant(at: Timestamp) -> String {
        at.format(&Rfc3339).unwrap_or_default()
    }

    pub const fn start(&self) -> Timestamp {
        self.start
    }

    pub const fn end(&self) -> Timestamp {
        self.end
    }

    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    /// Started hours: 61 minutes are two hours.
    pub fn started_hours(&self) -> u32 {
        let seconds = self.duration().whole_seconds();
        let hours = (seconds + 3_599) / 3_600;
        u32::try_from(hours).unwrap_or(u32::MAX)
    }

    pub fn overlaps(&self, other: &Self) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether a car may enter at `at` under this window: from
    /// [`EARLY_ENTRY_GRACE`] before the start until the end.
    pub fn admits_entry_at(&self, at: Timestamp) -> bool {
        self.start - EARLY_ENTRY_GRACE <= at && at < self.end
    }

    /// Whether a reservation of this window may still be canceled at `at`:
    /// until [`CANCEL_MARGIN`] before the entry opens. From then on a car may
    /// be let in, even by a gate that decides from its replica while the
    /// reservation service is unreachable, so a cancel could race the entry
    /// (DOMAIN.md, invariant 6). The margin absorbs clock skew between services.
    pub fn cancelable_at(&self, at: Timestamp) -> bool {
        at < self.start - EARLY_ENTRY_GRACE - CANCEL_MARGIN
    }

    /// Whether any part of the window falls on `day` (UTC).
    pub fn touches_day(&self, day: Date) -> bool {
        let day_start = day.midnight().assume_utc();
        let day_end = day_start + Duration::days(1);
        self.start < day_end && day_start < self.end
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}..{}",
            Self::format_instant(self.start),
            Self::format_instant(self.end)
        )
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn date_range_counts_both_ends() {
        let r = DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 05)).unwrap();
        assert_eq!(r.days(), 5);
        assert_eq!(r.iter_days().count(), 5);
        let one = DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 01)).unwrap();
        assert_eq!(one.days(), 1);
    }

    #[test]
    fn date_range_end_before_start_is_refused() {
        assert_eq!(
            DateRange::new(date!(2026 - 12 - 02), date!(2026 - 12 - 01)),
            Err(InvalidPeriod::EndBeforeStart)
        );
    }

    #[test]
    fn dates_parse_only_in_iso_form() {
        assert_eq!(
            DateRange::parse_date("2026-12-01"),
            Ok(date!(2026 - 12 - 01))
        );
        for bad in ["2026/12/01", "01-12-2026", "2026-13-01", "2026-02-30", ""] {
            assert_eq!(
                DateRange::parse_date(bad),
                Err(InvalidPeriod::DateFormat),
                "{bad}"
            );
        }
        assert_eq!(DateRange::format_date(date!(2026 - 01 - 09)), "2026-01-09");
    }

    #[test]
    fn date_ranges_overlap_when_they_share_a_day() {
        let a = DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 03)).unwrap();
        let b = DateRange::new(date!(2026 - 12 - 03), date!(2026 - 12 - 04)).unwrap();
        let c = DateRange::new(date!(2026 - 12 - 04), date!(2026 - 12 - 04)).unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
    }

    #[test]
    fn windows_are_half_open() {
        let a = TimeWindow::new(
            datetime!(2026-12-01 10:00 UTC),
            datetime!(2026-12-01 12:00 UTC),
        )
        .unwrap();
        let b = TimeWindow::new(
            datetime!(2026-12-01 12:00 UTC),
            datetime!(2026-12-01 13:00 UTC),
        )
        .unwrap();
        assert!(!a.overlaps(&b), "back-to-back windows do not overlap");
        let c = TimeWindow::new(
            datetime!(2026-12-01 11:59 UTC),
            datetime!(2026-12-01 13:00 UTC),
        )
        .unwrap();
        assert!(a.overlaps(&c) && c.overlaps(&a));
    }

    #[test]
    fn empty_or_inverted_windows_are_refused() {
        let t = datetime!(2026-12-01 10:00 UTC);
        assert_eq!(TimeWindow::new(t, t), Err(InvalidPeriod::Empty));
        assert_eq!(
            TimeWindow::new(t, t - Duration::minutes(1)),
            Err(InvalidPeriod::Empty)
        );
    }

    #[test]
    fn started_hours_round_up() {
        let t = datetime!(2026-12-01 10:00 UTC);
        let w = |m| TimeWindow::new(t, t + Duration::minutes(m)).unwrap();
        assert_eq!(w(1).started_hours(), 1);
        assert_eq!(w(60).started_hours(), 1);
        assert_eq!(w(61).started_hours(), 2);
        assert_eq!(w(24 * 60).started_hours(), 24);
    }

    #[test]
    fn entry_is_admitted_from_fifteen_minutes_early_until_the_end() {
        let w = TimeWindow::new(
            datetime!(2026-12-01 10:00 UTC),
            datetime!(2026-12-01 12:00 UTC),
        )
        .unwrap();
        assert!(!w.admits_entry_at(datetime!(2026-12-01 09:44:59 UTC)));
        assert!(w.admits_entry_at(datetime!(2026-12-01 09:45 UTC)));
        assert!(w.admits_entry_at(datetime!(2026-12-01 11:59:59 UTC)));
        assert!(!w.admits_entry_at(datetime!(2026-12-01 12:00 UTC)));
    }

    #[test]
    fn touches_day_in_utc() {
        let w = TimeWindow::new(
            datetime!(2026-12-01 23:00 UTC),
            datetime!(2026-12-02 01:00 UTC),
        )
        .unwrap();
        assert!(w.touches_day(date!(2026 - 12 - 01)));
        assert!(w.touches_day(date!(2026 - 12 - 02)));
        assert!(!w.touches_day(date!(2026 - 12 - 03)));
    }

    #[test]
    fn instants_come_from_wire_seconds_and_nanos() {
        let t = TimeWindow::instant(1_764_583_200, 0).unwrap();
        assert_eq!(t, datetime!(2025-12-01 10:00 UTC));
        assert!(TimeWindow::instant(i64::MAX, 0).is_err());
    }
}
