//! SQLite without a thread hop per statement.
//!
//! Through sqlx every SQLite statement is a message to the connection's worker
//! thread and an answer back: two context switches per statement, about thirty
//! statements per reservation across the services' databases, and on a small
//! machine those switches were most of the CPU time (BENCHMARKS-LOG.md, run 4).
//! Here the hot paths run their statements on a `rusqlite` connection in the
//! calling thread: the writer task of a database gets a thread of its own
//! ([`crate::writer`]), so a whole batch of write jobs costs one hop in and one
//! out; reads run in the task that asks, on a small set of read-only
//! connections. Queries and changes are still built by sea-orm: this is a
//! [`ProxyDatabaseTrait`] that executes the statements sea-orm hands it, with
//! cached prepared statements. Migrations, and the connection that relay
//! leases and probes use, stay on sqlx.
//!
//! Values: the entities of this crate hold text, 64-bit integers, booleans
//! and bytes only. A column's value becomes the `sea_query::Value` its
//! declared type asks for (`boolean` -> `Bool`, other integers -> `BigInt`),
//! as sqlx decoded it; a value of any other kind cannot be bound and is an
//! error, never a guess. Rows are maps by column name (sea-orm's `ProxyRow`),
//! so results are read by name: `into_tuple` (read by position) must not be
//! used on these connections.
//!
//! Transactions: sea-orm's proxy cannot return an error from `BEGIN`,
//! `COMMIT` or `ROLLBACK`, so the connection keeps the failure and the writer
//! asks for it ([`Direct::take_failure`]) before trusting a transaction; a
//! statement issued while a transaction is expected but SQLite has ended it
//! (some errors roll back on their own) fails instead of running outside it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use domain_kernel::StoreError;
use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{OpenFlags, ffi};
use sea_orm::sea_query::{Value, Values};
use sea_orm::{
    Database, DatabaseConnection, DbBackend, DbErr, ProxyDatabaseTrait, ProxyExecResult, ProxyRow,
    RuntimeErr, Statement,
};

/// Prepared statements kept per connection (every query the services issue,
/// with room to spare).
const STATEMENT_CACHE: usize = 256;
/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Starts every message of a unique violation (see [`is_unique_violation`]).
const UNIQUE_VIOLATION: &str = "sqlite unique constraint violation";

/// A set of `rusqlite` connections to one database file, behind sea-orm's
/// proxy interface. One connection for the writer; several read-only ones
/// for readers, each statement on whichever is free.
#[derive(Debug)]
pub(crate) struct Direct {
    conns: Vec<Mutex<Conn>>,
    next: AtomicUsize,
    /// The file's name without its extension (`reservation`), to name threads.
    name: String,
    /// The failure of the last `BEGIN`/`COMMIT`/`ROLLBACK`, kept for the
    /// writer (the proxy interface cannot return it).
    failure: Mutex<Option<String>>,
}

#[derive(Debug)]
struct Conn {
    sqlite: rusqlite::Connection,
    /// A transaction was begun and not yet ended by us.
    in_transaction: bool,
}

impl Direct {
    /// Opens the writer connection of `path` (which exists and is in WAL mode:
    /// sqlx created it; the migrations run on sqlx afterwards, and SQLite
    /// re-prepares a statement whose schema changed).
    pub(crate) fn writer(path: &Path) -> Result<Arc<Self>, StoreError> {
        Self::open(path, 1, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    /// Opens `count` read-only connections of `path`.
    pub(crate) fn readers(path: &Path, count: usize) -> Result<Arc<Self>, StoreError> {
        Self::open(path, count, OpenFlags::SQLITE_OPEN_READ_ONLY)
    }

    fn open(path: &Path, count: usize, flags: OpenFlags) -> Result<Arc<Self>, StoreError> {
        let open = || -> rusqlite::Result<Conn> {
            let sqlite = rusqlite::Connection::open_with_flags(
                path,
                flags | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )?;
            sqlite.busy_timeout(BUSY_TIMEOUT)?;
            sqlite.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            // The same plan whatever the bound values. Without it SQLite
            // marks a statement whose plan may depend on a bound value (any
            // `LIMIT ?`, so every sea-orm `one()`) to be compiled again after
            // each new binding: re-preparing was 16% of the mesh's CPU.
            sqlite.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
            // As the sqlx connections are set up (`Db::sqlite`): durable at
            // checkpoints (safe with WAL), foreign keys on.
            sqlite.pragma_update(None, "foreign_keys", true)?;
            sqlite.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(Conn {
                sqlite,
                in_transaction: false,
            })
        };
        let conns = (0..count.max(1))
            .map(|_| open().map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::msg(format!("{}: {e}", path.display())))?;
        Ok(Arc::new(Self {
            conns,
            next: AtomicUsize::new(0),
            name: path
                .file_stem()
                .map_or_else(String::new, |stem| stem.to_string_lossy().into_owned()),
            failure: Mutex::new(None),
        }))
    }

    /// A sea-orm connection running its statements on these connections.
    pub(crate) async fn connection(self: &Arc<Self>) -> Result<DatabaseConnection, StoreError> {
        let proxy: Box<dyn ProxyDatabaseTrait> = Box::new(Proxy(Arc::clone(self)));
        Database::connect_proxy(DbBackend::Sqlite, Arc::new(proxy))
            .await
            .map_err(StoreError::new)
    }

    /// The database file's name without its extension.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The failure of the last `BEGIN`, `COMMIT` or `ROLLBACK` since asked.
    pub(crate) fn take_failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// A free connection, or (all busy) the next one in turn, waited for.
    /// Statements are short and synchronous, so the wait is too.
    fn conn(&self) -> MutexGuard<'_, Conn> {
        for conn in &self.conns {
            if let Ok(guard) = conn.try_lock() {
                return guard;
            }
        }
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[at]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `BEGIN`/`COMMIT`/`ROLLBACK`; a failure is kept for
    /// [`Self::take_failure`]. Transactions are only begun on the writer,
    /// whose one connection is used by the writer task alone.
    fn control(&self, sql: &str, in_transaction: bool) {
        if self.conns.len() > 1 {
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(format!(
                "{sql}: transactions run on the writer connection only"
            ));
            return;
        }
        let mut conn = self.conn();
        let result = conn
            .sqlite
            .prepare_cached(sql)
            .and_then(|mut control| control.raw_execute());
        conn.in_transaction = in_transaction && result.is_ok();
        if let Err(e) = result {
            // A failed COMMIT may leave the transaction open: end it, so
            // the next one starts clean (its writes are not committed).
            if !conn.sqlite.is_autocommit() {
                let _ = conn.sqlite.execute_batch("ROLLBACK");
            }
            *self.failure.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(format!("{sql}: {e}"));
        }
    }

    fn query(&self, statement: &Statement) -> Result<Vec<ProxyRow>, String> {
        let conn = self.conn();
        conn.check_transaction()?;
        let mut prepared = conn
            .sqlite
            .prepare_cached(&statement.sql)
            .map_err(error_text)?;
        bind(&mut prepared, statement.values.as_ref())?;
        let columns: Vec<(String, Kind)> = prepared
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), Kind::of(c.decl_type())))
            .collect();
        let mut rows = prepared.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(error_text)? {
            let mut values = BTreeMap::new();
            for (i, (name, kind)) in columns.iter().enumerate() {
                let value = row.get_ref(i).map_err(error_text)?;
                values.insert(
                    name.clone(),
                    kind.value(value)
                        .map_err(|e| format!("column {name}: {e}"))?,
                );
            }
            out.push(ProxyRow::new(values));
        }
        Ok(out)
    }

    fn execute(&self, statement: &Statement) -> Result<ProxyExecResult, String> {
        let conn = self.conn();
        conn.check_transaction()?;
        let rows_affected = match conn.sqlite.prepare_cached(&statement.sql) {
            Ok(mut prepared) => {
                bind(&mut prepared, statement.values.as_ref())?;
                prepared.raw_execute().map_err(error_text)? as u64
            }
            // `execute_unprepared` may hold several statements (sqlx runs
            // them all): run them as a batch, counting what they changed.
            Err(rusqlite::Error::MultipleStatement) if statement.values.is_none() => {
                let before = conn.sqlite.total_changes();
                conn.sqlite
                    .execute_batch(&statement.sql)
                    .map_err(error_text)?;
                conn.sqlite.total_changes().saturating_sub(before)
            }
            Err(e) => return Err(error_text(e)),
        };
        Ok(ProxyExecResult {
            // A rowid is never negative in tables this crate creates.
            last_insert_id: u64::try_from(conn.sqlite.last_insert_rowid()).unwrap_or_default(),
            rows_affected,
        })
    }
}

impl Conn {
    /// A statement of a transaction SQLite already ended must not run on
    /// its own.
    fn check_transaction(&self) -> Result<(), String> {
        if self.in_transaction && self.sqlite.is_autocommit() {
            return Err("the transaction was rolled back by SQLite after an error".into());
        }
        Ok(())
    }
}

/// What a column decodes to, from its declared type.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Other,
}

impl Kind {
    fn of(decl: Option<&str>) -> Self {
        match decl {
            Some(t) if t.eq_ignore_ascii_case("boolean") || t.eq_ignore_ascii_case("bool") => {
                Self::Bool
            }
            _ => Self::Other,
        }
    }

    fn value(self, value: ValueRef<'_>) -> Result<Value, String> {
        Ok(match (self, value) {
            (Self::Bool, ValueRef::Null) => Value::Bool(None),
            (Self::Bool, ValueRef::Integer(i)) => Value::Bool(Some(i != 0)),
            (Self::Bool, other) => {
                return Err(format!("a boolean holds {:?}", other.data_type()));
            }
            (Self::Other, ValueRef::Null) => Value::String(None),
            (Self::Other, ValueRef::Integer(i)) => Value::BigInt(Some(i)),
            (Self::Other, ValueRef::Real(f)) => Value::Double(Some(f)),
            (Self::Other, ValueRef::Text(t)) => Value::String(Some(
                std::str::from_utf8(t)
                    .map_err(|e| format!("text is not UTF-8: {e}"))?
                    .to_owned(),
            )),
            (Self::Other, ValueRef::Blob(b)) => Value::Bytes(Some(b.to_vec())),
        })
    }
}

/// Binds sea-query's values to the statement's `?` parameters, as sqlx
/// encodes them for SQLite.
fn bind(
    prepared: &mut rusqlite::CachedStatement<'_>,
    values: Option<&Values>,
) -> Result<(), String> {
    let Some(values) = values else {
        return Ok(());
    };
    for (i, value) in values.0.iter().enumerate() {
        let out = sql_value(value)?;
        prepared
            .raw_bind_parameter(i + 1, out)
            .map_err(error_text)?;
    }
    Ok(())
}

fn sql_value(value: &Value) -> Result<ToSqlOutput<'_>, String> {
    use rusqlite::types::Value as Sql;
    let owned = |v: Option<Sql>| ToSqlOutput::Owned(v.unwrap_or(Sql::Null));
    Ok(match value {
        Value::Bool(v) => owned(v.map(|b| Sql::Integer(i64::from(b)))),
        Value::TinyInt(v) => owned(v.map(|i| Sql::Integer(i64::from(i)))),
        Value::SmallInt(v) => owned(v.map(|i| Sql::Integer(i64::from(i)))),
        Value::Int(v) => owned(v.map(|i| Sql::Integer(i64::from(i)))),
        Value::BigInt(v) => owned(v.map(Sql::Integer)),
        Value::TinyUnsigned(v) => owned(v.map(|i| Sql::Integer(i64::from(i)))),
        Value::SmallUnsigned(v) => owned(v.map(|i| Sql::Integer(i64::from(i)))),
        Value::Unsigned(v) => owned(v.map(|i| Sql::Integer(i64::from(i)))),
        Value::BigUnsigned(v) => match v {
            Some(i) => ToSqlOutput::Owned(Sql::Integer(
                i64::try_from(*i).map_err(|_| format!("{i} does not fit an SQLite integer"))?,
            )),
            None => owned(None),
        },
        Value::Float(v) => owned(v.map(|f| Sql::Real(f64::from(f)))),
        Value::Double(v) => owned(v.map(Sql::Real)),
        Value::String(v) => match v {
            Some(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            None => owned(None),
        },
        Value::Char(v) => owned(v.map(|c| Sql::Text(c.to_string()))),
        Value::Bytes(v) => match v {
            Some(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            None => owned(None),
        },
        other => {
            return Err(format!(
                "cannot bind {other:?}: this crate stores no such value"
            ));
        }
    })
}

fn error_text(e: rusqlite::Error) -> String {
    match e.sqlite_error() {
        Some(ffi::Error { extended_code, .. })
            if *extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || *extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            format!("{UNIQUE_VIOLATION}: {e}")
        }
        _ => e.to_string(),
    }
}

/// Whether `e` is a unique (or primary key) violation on these connections.
pub(crate) fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e,
        DbErr::Exec(RuntimeErr::Internal(m)) | DbErr::Query(RuntimeErr::Internal(m))
            if m.starts_with(UNIQUE_VIOLATION)
    )
}

/// The proxy sea-orm calls; everything in it is synchronous.
#[derive(Debug)]
struct Proxy(Arc<Direct>);

#[async_trait::async_trait]
impl ProxyDatabaseTrait for Proxy {
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        self.0
            .query(&statement)
            .map_err(|e| DbErr::Query(RuntimeErr::Internal(e)))
    }

    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
        self.0
            .execute(&statement)
            .map_err(|e| DbErr::Exec(RuntimeErr::Internal(e)))
    }

    async fn begin(&self) {
        // IMMEDIATE: the write lock is taken (or waited for) now, so a
        // transaction that reads first never fails to upgrade later.
        self.0.control("BEGIN IMMEDIATE", true);
    }

    async fn commit(&self) {
        self.0.control("COMMIT", false);
    }

    async fn rollback(&self) {
        self.0.control("ROLLBACK", false);
    }

    fn start_rollback(&self) {
        // A transaction dropped without commit or rollback.
        let mut conn = self.0.conn();
        if conn.in_transaction && !conn.sqlite.is_autocommit() {
            let _ = conn.sqlite.execute_batch("ROLLBACK");
        }
        conn.in_transaction = false;
    }

    async fn ping(&self) -> Result<(), DbErr> {
        self.0
            .query(&Statement::from_string(DbBackend::Sqlite, "SELECT 1"))
            .map(drop)
            .map_err(|e| DbErr::Conn(RuntimeErr::Internal(e)))
    }
}
