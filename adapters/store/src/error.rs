//! How database errors reach the ports.

use domain_kernel::StoreError;
use sea_orm::DbErr;

/// Wraps a database error for a port. Unique violations are handled before this
/// where the domain has a meaning for them.
pub fn store_err(e: DbErr) -> StoreError {
    StoreError::new(e)
}
