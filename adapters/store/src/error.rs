//! How database errors reach the ports.

use domain_kernel::StoreError;
use sea_orm::{DbErr, SqlErr};

/// Wraps a database error for a port: [`StoreError::Unavailable`] when the
/// database could not be reached or answered in time (`is_transient`),
/// else [`StoreError::Failed`]. Unique violations are handled before this
/// where the domain has a meaning for them.
pub fn store_err(e: DbErr) -> StoreError {
    if sqlstate(&e).as_deref() == Some(READ_ONLY) {
        crate::stale::mark("a write was refused as read-only (a switchover)");
    }
    if is_transient(&e) {
        StoreError::unavailable(e)
    } else {
        StoreError::new(e)
    }
}

/// The longest a write waits for its `COMMIT` to be answered. The server's
/// timeouts do not end a commit waiting for a synchronous standby (one that
/// is gone after a failover, say): past this the write answers
/// `StoreError::Unavailable` with its outcome unknown (the commit may yet
/// land; a retry with the same request id finds out), and the connection is
/// closed rather than pooled (`stale`).
pub const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `read_only_sql_transaction`: a write reached a server that is a standby.
const READ_ONLY: &str = "25006";

fn sqlstate(e: &DbErr) -> Option<String> {
    use sea_orm::RuntimeErr;
    match e {
        DbErr::Conn(RuntimeErr::SqlxError(sqlx))
        | DbErr::Exec(RuntimeErr::SqlxError(sqlx))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx)) => match sqlx.as_ref() {
            sea_orm::sqlx::Error::Database(db) => db.code().map(std::borrow::Cow::into_owned),
            _ => None,
        },
        _ => None,
    }
}

/// `txn`'s commit, answered within [`COMMIT_TIMEOUT`]: past it, the
/// outcome is unknown, the store is reported unavailable, and the connection
/// (still waiting for the answer) is closed instead of pooled.
pub(crate) async fn commit_within(txn: sea_orm::DatabaseTransaction) -> Result<(), StoreError> {
    within(txn.commit(), COMMIT_TIMEOUT, "a commit").await
}

/// The longest a write outside a transaction (its own implicit commit) waits:
/// the server's `statement_timeout` (10 s) for the statement, then
/// [`COMMIT_TIMEOUT`] for its commit.
pub const AUTOCOMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// A write outside a transaction (the relay's lease and purge), bounded by
/// [`AUTOCOMMIT_TIMEOUT`] as [`commit_within`] bounds a commit.
pub(crate) async fn autocommit<T>(
    write: impl std::future::Future<Output = Result<T, DbErr>>,
) -> Result<T, StoreError> {
    within(write, AUTOCOMMIT_TIMEOUT, "a write").await
}

async fn within<T>(
    work: impl std::future::Future<Output = Result<T, DbErr>>,
    limit: std::time::Duration,
    what: &'static str,
) -> Result<T, StoreError> {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => done.map_err(store_err),
        () = tokio::time::sleep(limit) => {
            // Marked before the work (and its connection) is dropped, so
            // the connection is closed when it reaches the pool.
            crate::stale::mark("the database did not answer in time");
            Err(StoreError::unavailable(CommitTimedOut { what, limit }))
        }
    }
}

/// A commit (or a write's implicit one) not answered within its bound: it
/// may or may not have landed.
#[derive(Debug)]
pub struct CommitTimedOut {
    what: &'static str,
    limit: std::time::Duration,
}

impl CommitTimedOut {
    /// A commit not answered within [`COMMIT_TIMEOUT`].
    pub(crate) fn commit() -> Self {
        Self {
            what: "a commit",
            limit: COMMIT_TIMEOUT,
        }
    }
}

impl std::fmt::Display for CommitTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the database did not answer {} within {:?}; its outcome is unknown",
            self.what, self.limit
        )
    }
}

impl std::error::Error for CommitTimedOut {}

/// PostgreSQL error classes and codes that say the server, not the
/// statement, is the problem (SQLSTATE, Appendix A of its manual): a
/// connection exception (`08`), too many connections (`53300`), an
/// operator or crash shutdown and a server still starting (`57P01`-`57P03`),
/// a statement cancelled by `statement_timeout` (`57014`), a write on a
/// server that is (again) a standby during a switchover (`25006`), and the
/// conflicts a retry resolves (`40001` serialization, `40P01` deadlock),
/// and a transaction ended by `idle_in_transaction_session_timeout`
/// (`25P03`).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "53300" | "57P01" | "57P02" | "57P03" | "57014" | "25006" | "25P03" | "40001" | "40P01"
        )
}

/// Whether `e` says the database was unreachable, overloaded, failing over
/// or too slow, rather than the statement being wrong.
pub fn is_transient(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let runtime = match e {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(r) | DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(sqlx) => match sqlx.as_ref() {
            Sqlx::Io(_)
            | Sqlx::Tls(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed
            | Sqlx::Protocol(_) => true,
            Sqlx::Database(db) => db.code().is_some_and(|c| transient_sqlstate(&c)),
            _ => false,
        },
        // The direct SQLite connections (`sqlite.rs`) carry their errors as
        // text: a busy or locked database is worth a retry.
        RuntimeErr::Internal(message) => {
            message.contains("database is locked") || message.contains("database is busy")
        }
        #[allow(unreachable_patterns)]
        _ => false,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::RuntimeErr;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_commit_not_answered_in_time_is_unavailable_with_its_outcome_unknown() {
        let hung = within(
            std::future::pending::<Result<(), DbErr>>(),
            std::time::Duration::from_millis(50),
            "a commit",
        )
        .await
        .unwrap_err();
        assert!(hung.is_unavailable());
        assert!(hung.to_string().contains("outcome is unknown"), "{hung}");
        let answered = within(
            std::future::ready(Ok(())),
            std::time::Duration::from_secs(5),
            "a commit",
        )
        .await;
        assert!(answered.is_ok());
    }

    fn sqlx(e: sea_orm::sqlx::Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
    }

    #[test]
    fn unreachable_and_timed_out_are_unavailable_and_the_rest_failed() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for e in [
            sqlx(sea_orm::sqlx::Error::Io(refused)),
            sqlx(sea_orm::sqlx::Error::PoolTimedOut),
            sqlx(sea_orm::sqlx::Error::PoolClosed),
            DbErr::Exec(RuntimeErr::Internal("database is locked".to_owned())),
        ] {
            assert!(store_err(e).is_unavailable());
        }
        for e in [
            sqlx(sea_orm::sqlx::Error::RowNotFound),
            DbErr::Custom("a bug".to_owned()),
            DbErr::Exec(RuntimeErr::Internal("no such column: x".to_owned())),
        ] {
            assert!(!store_err(e).is_unavailable());
        }
    }

    #[test]
    fn server_side_codes_of_an_outage_or_a_switchover_are_transient() {
        for code in [
            "08006", "08001", "57P01", "57014", "25006", "40001", "53300",
        ] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22001"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }
}
