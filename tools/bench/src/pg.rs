//! The PostgreSQL baseline the distributed mode is measured against (issue
//! 33): a transaction of one indexed INSERT and one UPDATE, committed,
//! through the services' own driver and pool (`adapters_store::Db`, sqlx
//! through sea-orm, the default pool size, the same URL form and so the same
//! TLS negotiation), on a fresh database of the server the mesh uses.
//!
//! The UPDATE picks one of [`ROWS`] counter rows by the call's number, so the
//! figure is the server's commit path and the driver, not a hot row's lock.

use std::time::Duration;

use adapters_store::{DEFAULT_POOL, Db, migrations::MigratorTrait};
use anyhow::Context as _;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};

use crate::driver::{Stats, drive};

/// Counter rows the UPDATE spreads over.
const ROWS: u64 = 1024;

/// No migrations: the baseline's two tables are made below.
struct Bare;

impl MigratorTrait for Bare {
    fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
        Vec::new()
    }
}

/// Runs the baseline at `concurrency` on a database of its own on the
/// server `admin` connects to, then drops that database.
pub async fn run(
    admin: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let name = format!("bench_pg_{}_{concurrency}", std::process::id());
    let server = Database::connect(admin)
        .await
        .with_context(|| format!("PostgreSQL at {admin}"))?;
    server
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    server
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    // Reached as the mesh's databases are (`database_url`).
    let url = mesh::distributed::database_url(admin, &name);
    let result = measure(&url, concurrency, warmup, duration).await;
    server
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    result
}

async fn measure(
    url: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let db = Db::connect_pooled::<Bare>(url, DEFAULT_POOL)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let conn = db.writer().clone();
    conn.execute_unprepared(
        "CREATE TABLE item (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL, at BIGINT NOT NULL);
         CREATE INDEX ix_item_k ON item (k);
         CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL);",
    )
    .await?;
    conn.execute_unprepared(&format!(
        "INSERT INTO counter SELECT g, 0 FROM generate_series(0, {}) g",
        ROWS - 1
    ))
    .await?;
    let stats = drive(concurrency, warmup, duration, move |i| {
        let conn = conn.clone();
        async move {
            let tx = conn.begin().await.map_err(|e| e.to_string())?;
            #[allow(
                clippy::cast_possible_wrap,
                reason = "a call number far below i64::MAX"
            )]
            let (key, row) = (format!("k{i}"), (i % ROWS) as i64);
            tx.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO item (k, at) VALUES ($1, $2)",
                [key.into(), row.into()],
            ))
            .await
            .map_err(|e| e.to_string())?;
            tx.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE counter SET n = n + 1 WHERE id = $1",
                [row.into()],
            ))
            .await
            .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())
        }
    })
    .await;
    db.close().await;
    Ok(stats)
}
