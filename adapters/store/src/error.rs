//! How database errors reach the ports.

use domain_kernel::StoreError;
use sea_orm::{DbErr, SqlErr};

/// Wraps a database error for a port. Unique violations are handled before this
/// where the domain has a meaning for them.
pub fn store_err(e: DbErr) -> StoreError {
    StoreError::new(e)
}

/// A stored value that no longer parses into its domain type: the `field` of a
/// `record` (`payment`, `rental data`, ...) and why, for the log; the port
/// passes it on as an opaque store error.
pub(crate) fn corrupt(record: &str, field: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::msg(format!("stored {record} has an invalid {field}: {e}"))
}

/// Whether `e` is a unique (or primary key) violation, from sqlx or from the
/// direct SQLite connections.
pub(crate) fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
        || crate::sqlite::is_unique_violation(e)
}
