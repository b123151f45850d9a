//! Instants as microseconds since the epoch (`BIGINT` on both backends), dates as
//! ISO text (sortable).

use domain_kernel::{DateRange, StoreError, Timestamp};
use time::{Date, OffsetDateTime};

pub fn micros(t: Timestamp) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

pub fn from_micros(m: i64) -> Result<Timestamp, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000)
        .map_err(|e| StoreError::msg(format!("stored instant {m} out of range: {e}")))
}

pub fn date_text(d: Date) -> String {
    DateRange::format_date(d)
}

pub fn date_from_text(s: &str) -> Result<Date, StoreError> {
    DateRange::parse_date(s).map_err(|e| StoreError::msg(format!("stored date {s:?}: {e}")))
}
