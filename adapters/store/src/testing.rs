//! Fresh databases for tests: a SQLite file in a temporary directory, or a new
//! database on the PostgreSQL server named by `ROAMING_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Both are removed on drop.
//!
//! # Panics
//!
//! These helpers panic when the database cannot be made: a test that needs one
//! must fail loudly, never skip.

#![allow(
    clippy::panic,
    clippy::missing_panics_doc,
    reason = "test helpers fail loudly"
)]

use std::path::PathBuf;

use sea_orm::{ConnectionTrait, Database, DbBackend, QueryTrait, Statement};

/// Where the admin connection for test databases goes.
pub fn postgres_admin_url() -> String {
    std::env::var("ROAMING_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(PathBuf),
    Postgres { admin: String, name: String },
}

impl TestDatabase {
    /// A new SQLite file (WAL and all, as in production).
    pub fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("roaming-test-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
        Self {
            url,
            cleanup: Cleanup::Dir(dir),
        }
    }

    /// A new, empty PostgreSQL database. Panics when the server is unreachable:
    /// a test that needs PostgreSQL must fail, not skip.
    pub async fn postgres() -> Self {
        let admin = postgres_admin_url();
        let name = format!("roaming_test_{}", uuid::Uuid::now_v7().simple());
        let conn = Database::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for this test: {e}"));
        conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let _ = conn.close().await;
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        Self {
            url: format!("{base}/{name}"),
            cleanup: Cleanup::Postgres { admin, name },
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin, name } => {
                let (admin, name) = (admin.clone(), name.clone());
                // Drop runs inside the test's runtime; use a thread with its own.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async {
                        if let Ok(conn) = Database::connect(&admin).await {
                            let _ = conn
                                .execute_unprepared(&format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                ))
                                .await;
                            let _ = conn.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// The plan the database on `conn` makes for `query`, one line per step
/// (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL), for tests that
/// pin a hot query to its index. `conn` may be a transaction that changed
/// planner settings first.
pub async fn plan<C: ConnectionTrait>(conn: &C, query: &impl QueryTrait) -> Vec<String> {
    let backend = conn.get_database_backend();
    let (explain, column) = match backend {
        DbBackend::Sqlite => ("EXPLAIN QUERY PLAN", "detail"),
        _ => ("EXPLAIN", "QUERY PLAN"),
    };
    let query = query.build(backend);
    conn.query_all_raw(Statement::from_sql_and_values(
        backend,
        format!("{explain} {}", query.sql),
        query.values.map(|v| v.0).unwrap_or_default(),
    ))
    .await
    .unwrap_or_else(|e| panic!("explaining {}: {e}", query.sql))
    .iter()
    .map(|row| {
        row.try_get::<String>("", column)
            .unwrap_or_else(|e| panic!("a plan row without {column}: {e}"))
    })
    .collect()
}

/// The hand-made (`ix_`-named) indexes of `table` on `conn`, sorted, for tests
/// that pin each index to the query that reads it.
pub async fn indexes<C: ConnectionTrait>(conn: &C, table: &str) -> Vec<String> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => {
            "SELECT name FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = ? AND name LIKE 'ix\\_%' ESCAPE '\\'"
        }
        _ => {
            "SELECT indexname AS name FROM pg_indexes \
             WHERE tablename = $1 AND indexname LIKE 'ix\\_%' ESCAPE '\\'"
        }
    };
    let mut names: Vec<String> = conn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await
        .unwrap_or_else(|e| panic!("listing the indexes of {table}: {e}"))
        .iter()
        .map(|row| {
            row.try_get::<String>("", "name")
                .unwrap_or_else(|e| panic!("an index row without a name: {e}"))
        })
        .collect();
    names.sort();
    names
}
