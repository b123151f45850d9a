//! What the direct SQLite connections (`rusqlite` behind sea-orm's proxy,
//! `src/sqlite.rs`) must keep from sqlx: a `COMMIT` that fails reaches the
//! caller and keeps nothing, values come back as the types the entities
//! read, a unique violation stays recognisable, and a statement never runs
//! outside the transaction it belongs to.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

use adapters_store::migrations::PaymentMigrator;
use adapters_store::testing::TestDatabase;
use adapters_store::{Db, Verdict};
use domain_kernel::StoreError;
use sea_orm::{ConnectionTrait as _, FromQueryResult, Statement};

async fn db(file: &TestDatabase) -> Db {
    Db::connect::<PaymentMigrator>(file.url()).await.unwrap()
}

/// Runs `sql` as one write job through the writer (and its transaction).
async fn write_sql(db: &Db, sql: &'static str) -> Result<(), StoreError> {
    db.write(move |tx| {
        Box::pin(async move {
            tx.conn()
                .execute_unprepared(sql)
                .await
                .map_err(adapters_store::store_err)?;
            Ok(Verdict::Keep(()))
        })
    })
    .await
}

/// Rows of `table` as seen by a fresh read.
async fn count(db: &Db, table: &str) -> i64 {
    #[derive(FromQueryResult)]
    struct N {
        n: i64,
    }
    N::find_by_statement(Statement::from_string(
        db.db_backend(),
        format!("SELECT COUNT(*) AS n FROM {table}"),
    ))
    .one(db.reader())
    .await
    .unwrap()
    .unwrap()
    .n
}

#[tokio::test]
async fn a_commit_that_fails_is_an_error_and_keeps_nothing() {
    let file = TestDatabase::sqlite();
    let db = db(&file).await;
    // A deferred foreign key is checked at COMMIT: the one statement here
    // succeeds, the commit fails.
    db.writer()
        .execute_unprepared(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .await
        .unwrap();
    let outcome = write_sql(&db, "INSERT INTO child VALUES (42)").await;
    let error = outcome.expect_err("a failed COMMIT must not answer Ok");
    assert!(error.to_string().contains("COMMIT"), "{error}");
    assert_eq!(count(&db, "child").await, 0);

    // The writer is usable afterwards: the next job commits.
    write_sql(
        &db,
        "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1)",
    )
    .await
    .unwrap();
    assert_eq!(count(&db, "child").await, 1);
}

#[tokio::test]
async fn values_come_back_as_the_entities_read_them() {
    #[derive(Debug, PartialEq, FromQueryResult)]
    struct Row {
        flag: bool,
        big: i64,
        text: String,
        bytes: Vec<u8>,
        missing: Option<String>,
        missing_flag: Option<bool>,
    }
    let file = TestDatabase::sqlite();
    let db = db(&file).await;
    db.writer()
        .execute_unprepared(
            "CREATE TABLE kinds (flag BOOLEAN NOT NULL, big BIGINT NOT NULL, text TEXT NOT NULL,
                                 bytes BLOB NOT NULL, missing TEXT, missing_flag BOOLEAN)",
        )
        .await
        .unwrap();
    let backend = db.db_backend();
    db.write(move |tx| {
        Box::pin(async move {
            tx.conn()
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    "INSERT INTO kinds VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        true.into(),
                        i64::MAX.into(),
                        "서울 ICN-T1".into(),
                        vec![0_u8, 255, 7].into(),
                        Option::<String>::None.into(),
                        Option::<bool>::None.into(),
                    ],
                ))
                .await
                .map_err(adapters_store::store_err)?;
            Ok(Verdict::Keep(()))
        })
    })
    .await
    .unwrap();
    let row = Row::find_by_statement(Statement::from_string(backend, "SELECT * FROM kinds"))
        .one(db.reader())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row,
        Row {
            flag: true,
            big: i64::MAX,
            text: "서울 ICN-T1".into(),
            bytes: vec![0, 255, 7],
            missing: None,
            missing_flag: None,
        }
    );
}

#[tokio::test]
async fn a_duplicate_key_in_a_job_is_its_own_refusal_not_the_batchs() {
    let file = TestDatabase::sqlite();
    let db = db(&file).await;
    db.writer()
        .execute_unprepared("CREATE TABLE keys (k TEXT PRIMARY KEY)")
        .await
        .unwrap();
    let insert = |k: &'static str| {
        db.write(move |tx| {
            Box::pin(async move {
                match tx
                    .conn()
                    .execute_unprepared(&format!("INSERT INTO keys VALUES ('{k}')"))
                    .await
                {
                    Ok(_) => Ok(Verdict::Keep(true)),
                    // The unique violation must be told apart from any other
                    // error (the repositories turn it into a domain refusal).
                    Err(e) if e.to_string().contains("unique") => Ok(Verdict::Undo(false)),
                    Err(e) => Err(adapters_store::store_err(e)),
                }
            })
        })
    };
    let (a, b, c) = tokio::join!(insert("a"), insert("a"), insert("b"));
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_unstable();
    assert_eq!(outcomes, [false, true], "one of the two 'a' wins");
    assert!(c.unwrap());
    assert_eq!(count(&db, "keys").await, 2);
}

#[tokio::test]
async fn a_statement_after_sqlite_ended_the_transaction_fails_instead_of_committing_alone() {
    let file = TestDatabase::sqlite();
    let db = db(&file).await;
    // RAISE(ROLLBACK) ends the whole transaction, as SQLite does on its own
    // after some errors (a full disk, an I/O error).
    db.writer()
        .execute_unprepared(
            "CREATE TABLE t (v TEXT);
             CREATE TABLE boom (v TEXT);
             CREATE TRIGGER boom_rolls_back BEFORE INSERT ON boom
               BEGIN SELECT RAISE(ROLLBACK, 'rolled back'); END;",
        )
        .await
        .unwrap();
    let outcome = db
        .write(|tx| {
            Box::pin(async move {
                let run = |sql: &'static str| tx.conn().execute_unprepared(sql);
                run("INSERT INTO t VALUES ('a')")
                    .await
                    .map_err(adapters_store::store_err)?;
                // A job that (wrongly) carries on after an error ...
                let _ = run("INSERT INTO boom VALUES ('x')").await;
                // ... must not get this written outside any transaction.
                run("INSERT INTO t VALUES ('b')")
                    .await
                    .map_err(adapters_store::store_err)?;
                Ok(Verdict::Keep(()))
            })
        })
        .await;
    let error = outcome.expect_err("the third statement has no transaction to run in");
    assert!(error.to_string().contains("rolled back"), "{error}");
    assert_eq!(count(&db, "t").await, 0);
}
