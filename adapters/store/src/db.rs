use std::sync::Arc;
use std::time::Duration;

use domain_kernel::StoreError;
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;
use tokio::sync::Notify;

use crate::error::store_err;
use crate::sqlite::Direct;
use crate::writer::{Job, Writer, WriterStats};

/// Read-only `rusqlite` connections per SQLite database: statements are
/// synchronous in the calling task, so no more run at once than the runtime
/// has threads (one per core by default); each connection costs its own page
/// cache.
fn readers() -> usize {
    std::thread::available_parallelism().map_or(4, std::num::NonZero::get)
}

/// How every PostgreSQL pool of a service connects: at most `max`
/// connections, with `session` settings on top of the timeouts.
fn postgres_options(
    url: &str,
    max: u32,
    session: &[(&'static str, &'static str)],
) -> ConnectOptions {
    let mut settings = vec![
        ("statement_timeout", STATEMENT_TIMEOUT),
        (
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT,
        ),
    ];
    settings.extend_from_slice(session);
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(max)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        // No statement and no open transaction holds a pooled
        // connection for long: a server that stops answering (a
        // commit waiting for a standby that is gone, a lock held by
        // a stuck session) fails the statement (SQLSTATE 57014 or
        // 25P03, answered UNAVAILABLE) instead of taking the pool
        // with it.
        .map_sqlx_postgres_opts(move |o| o.options(settings.iter().copied()))
        // A connection is pinged before use only when it sat idle
        // for a while (the server, or something between, may have
        // dropped it); sqlx's default pinged on every checkout, a
        // round trip before every transaction and every lone read.
        // A connection that died in use fails its statement, which
        // answers UNAVAILABLE, as any failure of the server does.
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        // After a switchover or an abandoned commit, connections
        // opened before it are closed, not reused.
        .map_sqlx_postgres_before_acquire(|_, meta| {
            let fresh = !crate::stale::is_stale(meta.age);
            Box::pin(async move { Ok(fresh) })
        })
        .map_sqlx_postgres_pool_opts(|o| {
            o.after_release(|_, meta| {
                let fresh = !crate::stale::is_stale(meta.age);
                Box::pin(async move { Ok(fresh) })
            })
        });
    opts
}

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A service's database: a writer and a reader connection pool (the same pool on
/// PostgreSQL) and the commit signal that wakes the outbox relay.
#[derive(Debug, Clone)]
pub struct Db {
    writer: DatabaseConnection,
    reader: DatabaseConnection,
    /// PostgreSQL: the relay's reads of the outbox ([`Self::outbox_reader`]).
    outbox_reader: Option<DatabaseConnection>,
    backend: Backend,
    committed: Arc<Notify>,
    jobs: Writer,
    /// PostgreSQL's URL, for the listener of other processes' commits.
    postgres_url: Option<Arc<str>>,
}

/// PostgreSQL connections per process unless configured.
pub const DEFAULT_POOL: u32 = 16;

/// How long a pooled PostgreSQL connection may sit idle and still be handed
/// out without a ping first.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// PostgreSQL's bound on one statement (the server cancels it).
pub const STATEMENT_TIMEOUT: &str = "10s";
/// PostgreSQL's bound on a transaction left open without a statement.
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "30s";

impl Db {
    /// Connects to `url` (`sqlite://path/to/file.db`, `sqlite::memory:`, or
    /// `postgres://...`) and runs the migrations of `M`.
    ///
    /// SQLite is set up for service use: the file is created if missing, WAL
    /// journal, `synchronous = NORMAL` (durable at checkpoints, safe with WAL),
    /// a 5 s busy timeout, foreign keys on. Write jobs run on one `rusqlite`
    /// connection on the writer's own thread, reads on one read-only
    /// `rusqlite` connection per core (`crate::sqlite`), migrations and
    /// [`Self::writer`] on one sqlx connection. `:memory:` is all sqlx.
    pub async fn connect<M: MigratorTrait>(url: &str) -> Result<Self, StoreError> {
        Self::connect_pooled::<M>(url, DEFAULT_POOL).await
    }

    /// [`Self::connect`] with at most `pool` PostgreSQL connections (every
    /// replica of every service holds its own pool: their sum must stay
    /// under the server's `max_connections`). SQLite ignores it.
    pub async fn connect_pooled<M: MigratorTrait>(
        url: &str,
        pool: u32,
    ) -> Result<Self, StoreError> {
        let db = if Self::check_url(url).map_err(StoreError::msg)? == Backend::Sqlite {
            Self::sqlite(url).await?
        } else {
            crate::stale::start();
            let pool = Database::connect(postgres_options(url, pool.max(2), &[]))
                .await
                .map_err(store_err)?;
            // The relay's reads walk the index of unsent rows in order; a
            // bitmap scan would visit every dead entry of it each time
            // (`outbox::unsent`). A connection of its own has them off for
            // its whole session, so a read is one round trip, not a
            // transaction of four.
            let outbox_reader =
                Database::connect(postgres_options(url, 1, &[("enable_bitmapscan", "off")]))
                    .await
                    .map_err(store_err)?;
            let committed: Arc<Notify> = Arc::default();
            let wake = Arc::clone(&committed);
            let jobs = Writer::pipelined(pool.clone(), move || wake.notify_one());
            Self {
                writer: pool.clone(),
                reader: pool,
                outbox_reader: Some(outbox_reader),
                backend: Backend::Postgres,
                committed,
                jobs,
                postgres_url: Some(url.into()),
            }
        };
        match db.backend {
            Backend::Sqlite => M::up(&db.writer, None).await.map_err(store_err)?,
            Backend::Postgres => Self::migrate_postgres::<M>(url).await?,
        }
        Ok(db)
    }

    /// Whether [`Self::connect_pooled`] accepts `url`, and which database it
    /// names: the scheme and the driver's own parse of the URL, without
    /// connecting or touching a file (`roaming check-config`). The error does
    /// not repeat a PostgreSQL URL (it carries a password).
    ///
    /// # Errors
    /// An unsupported scheme, or a URL the driver cannot parse.
    pub fn check_url(url: &str) -> Result<Backend, String> {
        use sea_orm::sqlx::postgres::PgConnectOptions;
        use sea_orm::sqlx::sqlite::SqliteConnectOptions;
        // What sea-orm's `Database::connect` parses first, whatever the driver.
        url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if url.starts_with("sqlite:") {
            url.parse::<SqliteConnectOptions>()
                .map_err(|e| format!("not a SQLite URL: {e}"))?;
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            url.parse::<PgConnectOptions>()
                .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
            Ok(Backend::Postgres)
        } else {
            Err("unsupported database URL scheme: use sqlite: or postgres:".to_owned())
        }
    }

    /// Replicas may start together: migrate on one connection that holds a
    /// PostgreSQL advisory lock, so only one of them creates the schema.
    async fn migrate_postgres<M: MigratorTrait>(url: &str) -> Result<(), StoreError> {
        use sea_orm::ConnectionTrait;
        const MIGRATION_LOCK: i64 = 0x0072_6f61_6d69_6e67; // "roaming"
        let mut opts = ConnectOptions::new(url);
        opts.max_connections(1)
            .min_connections(1)
            .sqlx_logging(false);
        let conn = Database::connect(opts).await.map_err(store_err)?;
        conn.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            .await
            .map_err(store_err)?;
        let migrated = M::up(&conn, None).await.map_err(store_err);
        let _ = conn
            .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            .await;
        let _ = conn.close().await;
        migrated
    }

    async fn sqlite(url: &str) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        if !memory {
            owner_only(url)?;
        }
        let options = |read_only: bool, max: u32| {
            let mut opts = ConnectOptions::new(url);
            opts.max_connections(max)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .sqlx_logging(false)
                .map_sqlx_sqlite_opts(move |o| {
                    let o = o
                        .create_if_missing(!read_only)
                        .busy_timeout(Duration::from_secs(5))
                        .foreign_keys(true)
                        .read_only(read_only);
                    if memory {
                        o
                    } else {
                        o.journal_mode(SqliteJournalMode::Wal)
                            .synchronous(SqliteSynchronous::Normal)
                    }
                });
            opts
        };
        let writer = Database::connect(options(false, 1))
            .await
            .map_err(store_err)?;
        let committed: Arc<Notify> = Arc::default();
        let wake = Arc::clone(&committed);
        let wake = move || wake.notify_one();
        let (jobs, reader) = if memory {
            // An in-memory database exists only on its one sqlx connection.
            (Writer::batched(writer.clone(), None, wake)?, writer.clone())
        } else {
            // A file: sqlx created it (WAL) and runs the migrations; the hot
            // paths (write jobs, reads) run on `rusqlite` connections without
            // a thread hop per statement (`crate::sqlite`).
            let path = sqlite_path(url);
            let direct = Direct::writer(path)?;
            let jobs = Writer::batched(direct.connection().await?, Some(direct), wake)?;
            let reader = Direct::readers(path, readers())?.connection().await?;
            (jobs, reader)
        };
        Ok(Self {
            jobs,
            writer,
            reader,
            outbox_reader: None,
            backend: Backend::Sqlite,
            committed,
            postgres_url: None,
        })
    }

    /// Runs `job` in a write transaction; answers once it committed (or was
    /// rolled back, for [`Verdict::Undo`](crate::Verdict::Undo)). Concurrent
    /// jobs are committed together ([`crate::writer`]).
    ///
    /// # Errors
    ///
    /// The job's own error, or the database's when the transaction failed.
    pub async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Job<T>,
    {
        self.jobs.write(job).await
    }

    /// How the writer grouped jobs into commits so far.
    pub fn writer_stats(&self) -> WriterStats {
        self.jobs.stats()
    }

    /// Where transactions and reads that must see them go.
    pub fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// Where plain queries go.
    pub fn reader(&self) -> &DatabaseConnection {
        &self.reader
    }

    /// Where the relay reads the outbox: on PostgreSQL a connection whose
    /// session has bitmap scans off (`outbox::unsent_on`), else
    /// [`Self::reader`].
    pub fn outbox_reader(&self) -> &DatabaseConnection {
        self.outbox_reader.as_ref().unwrap_or(&self.reader)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn db_backend(&self) -> DbBackend {
        match self.backend {
            Backend::Sqlite => DbBackend::Sqlite,
            Backend::Postgres => DbBackend::Postgres,
        }
    }

    /// Tells the relay that outbox rows were committed.
    pub fn notify_committed(&self) {
        self.committed.notify_one();
    }

    /// Resolves after the next [`Self::notify_committed`] (or at once if one
    /// happened since the last wait).
    pub async fn committed(&self) {
        self.committed.notified().await;
    }

    /// Wakes [`Self::committed`] whenever any process commits outbox rows to
    /// this database (the `outbox` insert trigger's `NOTIFY`), until dropped:
    /// the relay of one replica then publishes what another wrote within
    /// milliseconds instead of at its next poll. `None` on SQLite, which has
    /// one writing process. Notifications lost while the listener reconnects
    /// are covered by the relay's poll.
    pub fn listen_for_commits(&self) -> Option<tokio::task::JoinHandle<()>> {
        let url = self.postgres_url.clone()?;
        let committed = Arc::clone(&self.committed);
        Some(tokio::spawn(async move {
            const FIRST_RETRY: Duration = Duration::from_millis(100);
            let mut backoff = FIRST_RETRY;
            loop {
                let mut listening = false;
                let listened: Result<std::convert::Infallible, sea_orm::sqlx::Error> = async {
                    let mut listener = PgListener::connect(&url).await?;
                    listener.listen(crate::outbox::OUTBOX_CHANNEL).await?;
                    listening = true;
                    // Rows may have been committed while nobody listened.
                    committed.notify_one();
                    loop {
                        listener.recv().await?;
                        committed.notify_one();
                    }
                }
                .await;
                let Err(e) = listened;
                // A listener that worked starts the backoff over: only
                // failures in a row wait longer and longer.
                if listening {
                    backoff = FIRST_RETRY;
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis(), "listening for outbox commits failed; polling meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }))
    }

    /// On SQLite, copies the write-ahead log into the database file and
    /// empties it, so the file alone holds every commit (to be copied or
    /// renamed); nothing on PostgreSQL.
    ///
    /// # Errors
    /// The database's.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            self.writer
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
                .map_err(store_err)?;
        }
        Ok(())
    }

    /// Closes the pools.
    pub async fn close(self) {
        let _ = self.reader.close().await;
        let _ = self.writer.close().await;
        if let Some(outbox_reader) = self.outbox_reader {
            let _ = outbox_reader.close().await;
        }
    }
}

/// The file of a `sqlite:` URL (its query, `?mode=rwc` and the like, cut).
fn sqlite_path(url: &str) -> &std::path::Path {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    std::path::Path::new(path.split('?').next().unwrap_or(path))
}

/// The database file of a `sqlite:` URL, readable and writable by its owner
/// only (0600): it holds customers' reservations and payments. Created empty
/// with that mode when missing (SQLite then initialises it and gives its WAL
/// and shared-memory files the same mode), in a directory created
/// owner-only (0700) when missing; an existing file is narrowed.
fn owner_only(url: &str) -> Result<(), StoreError> {
    let path = sqlite_path(url);
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                adapters_files::create_private_dir(dir)
                    .map_err(|e| StoreError::msg(format!("{}: {e}", dir.display())))?;
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| StoreError::msg(format!("{}: {e}", path.display())))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::msg(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Creates the PostgreSQL database `url` names unless it exists (for setting
/// up a host by hand: `roaming createdb`). Connects to the `postgres`
/// database of the same server; the name must be a plain identifier.
///
/// # Errors
///
/// Not a PostgreSQL URL, a name that is not `[a-z0-9_]+`, or the server's.
pub async fn create_database_if_missing(url: &str) -> Result<bool, StoreError> {
    use sea_orm::{Statement, Value};
    let (base, rest) = url
        .rsplit_once('/')
        .filter(|_| url.starts_with("postgres:") || url.starts_with("postgresql:"))
        .ok_or_else(|| {
            StoreError::msg("not a PostgreSQL database URL (postgres://...)".to_owned())
        })?;
    let (name, query) = rest.split_once('?').map_or((rest, ""), |(n, q)| (n, q));
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(StoreError::msg(format!(
            "database name {name:?} in {url:?}: use lower-case letters, digits and _"
        )));
    }
    let admin = if query.is_empty() {
        format!("{base}/postgres")
    } else {
        format!("{base}/postgres?{query}")
    };
    let conn = Database::connect(&admin).await.map_err(store_err)?;
    let exists = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [Value::from(name)],
        ))
        .await
        .map_err(store_err)?
        .is_some();
    if !exists {
        conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(store_err)?;
    }
    let _ = conn.close().await;
    Ok(!exists)
}

#[cfg(test)]
mod tests {
    use super::{Backend, Db};

    #[test]
    fn a_url_is_checked_as_connect_parses_it_without_repeating_it() {
        assert_eq!(
            Db::check_url("postgresql://app:pw@pg-view-rw.roaming:5432/view"),
            Ok(Backend::Postgres)
        );
        assert_eq!(
            Db::check_url("sqlite://data/view.db?mode=rwc"),
            Ok(Backend::Sqlite)
        );
        assert_eq!(Db::check_url("sqlite::memory:"), Ok(Backend::Sqlite));
        for bad in [
            "postgresql://app:secret-pw@pg:port/view",
            "postgres://app:secret-pw@pg:5432/view?sslmode=sometimes",
            "mysql://app:secret-pw@db/view",
            "secret-pw",
        ] {
            let e = Db::check_url(bad).unwrap_err();
            assert!(!e.contains("secret-pw"), "{bad}: {e}");
        }
    }
}
