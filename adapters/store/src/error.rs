//! How database errors reach the ports.

use domain_kernel::StoreError;
use sea_orm::{DbErr, SqlErr};

/// Wraps a database error for a port. Unique violations are handled before this
/// where the domain has a meaning for them.
pub fn store_err(e: DbErr) -> StoreError {
    StoreError::new(e)
}

/// Whether `e` is a unique (or primary key) violation, from sqlx or from the
/// direct SQLite connections.
pub(crate) fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
        || crate::sqlite::is_unique_violation(e)
}
