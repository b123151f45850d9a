//! The group-committing writer ([`Db::write`]): jobs that queue up together
//! commit in one transaction, each sees the writes of the jobs before it, and a
//! job that undoes, fails or panics changes nobody else's outcome: on SQLite
//! (one batch at a time) and on PostgreSQL (a batch per lane), where two
//! batches' writes (two lanes, or replicas on one database) must also get
//! past each other's locks.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;

use adapters_store::migrations::ReservationMigrator;
use adapters_store::testing::TestDatabase;
use adapters_store::{Db, Verdict, outbox};
use domain_kernel::{EventId, IdGenerator, StoreError, UuidV7};
use futures::FutureExt as _;
use futures::future::join_all;
use tokio::sync::oneshot;

/// What each queued job does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Plan {
    Keep,
    Undo,
    Fail,
    Panic,
}

/// Writes `id` to the inbox, then does what `plan` says.
async fn job(db: &Db, id: EventId, plan: Plan) -> Result<bool, StoreError> {
    db.write(move |tx| {
        Box::pin(async move {
            let fresh = outbox::record_inbox(tx.conn(), id).await?;
            match plan {
                Plan::Keep => Ok(Verdict::Keep(fresh)),
                Plan::Undo => Ok(Verdict::Undo(fresh)),
                Plan::Fail => Err(StoreError::msg("this job fails")),
                Plan::Panic => panic!("this job panics"),
            }
        })
    })
    .await
}

async fn handled(db: &Db, id: EventId) -> bool {
    outbox::handled(db.reader(), id).await.unwrap()
}

/// Occupies every lane of the writer (SQLite has one, PostgreSQL
/// `WriterStats::lanes`) with a job that waits for `until`; returns once the
/// writer runs them all, so every later job queues behind them.
async fn occupy_lanes<F>(db: &Db, until: F) -> Vec<tokio::task::JoinHandle<Result<(), StoreError>>>
where
    F: std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let mut holders = Vec::new();
    for _ in 0..db.writer_stats().lanes {
        let (started, running) = oneshot::channel::<()>();
        let held = Arc::new(tokio::sync::Mutex::new(Some((until.clone(), started))));
        let db = db.clone();
        holders.push(tokio::spawn(async move {
            db.write(move |_tx| {
                let held = Arc::clone(&held);
                Box::pin(async move {
                    if let Some((until, started)) = held.lock().await.take() {
                        let _ = started.send(());
                        until.await;
                    }
                    Ok(Verdict::Keep(()))
                })
            })
            .await
        }));
        // One at a time: each takes a lane of its own.
        running.await.unwrap();
    }
    holders
}

/// [`occupy_lanes`] until `release` fires: the jobs queued meanwhile run as
/// one batch.
async fn hold_writer(db: &Db) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (release, wait) = oneshot::channel::<()>();
    let holders = occupy_lanes(db, wait.map(|_| ()).shared()).await;
    let holder = tokio::spawn(async move {
        for h in join_all(holders).await {
            h.unwrap().unwrap();
        }
    });
    (release, holder)
}

/// Waits until `n` jobs wait in the writer's queue.
async fn queued(db: &Db, n: u64) {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while db.writer_stats().queued < n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the jobs reach the writer's queue");
}

async fn batch_outcomes(db: TestDatabase) {
    let db = Db::connect::<ReservationMigrator>(db.url()).await.unwrap();
    let before = db.writer_stats();
    let (release, holder) = hold_writer(&db).await;
    let plans = [
        Plan::Keep,
        Plan::Undo,
        Plan::Keep,
        Plan::Fail,
        Plan::Keep,
        Plan::Panic,
        Plan::Keep,
    ];
    let ids: Vec<EventId> = plans.iter().map(|_| UuidV7.event_id()).collect();
    let calls: Vec<_> = plans
        .iter()
        .zip(&ids)
        .map(|(plan, id)| {
            let db = db.clone();
            let (plan, id) = (*plan, *id);
            tokio::spawn(async move { job(&db, id, plan).await })
        })
        .collect();
    // Every job in the writer's queue, then release the holder.
    queued(&db, plans.len() as u64).await;
    release.send(()).unwrap();
    holder.await.unwrap();
    let results: Vec<_> = join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for ((plan, id), result) in plans.iter().zip(&ids).zip(&results) {
        match plan {
            Plan::Keep => {
                assert!(matches!(result, Ok(true)), "{plan:?}: {result:?}");
                assert!(handled(&db, *id).await, "a kept job's write is committed");
            }
            Plan::Undo => {
                assert!(
                    matches!(result, Ok(true)),
                    "{plan:?} answers its value: {result:?}"
                );
                assert!(
                    !handled(&db, *id).await,
                    "an undone job's write is rolled back"
                );
            }
            Plan::Fail | Plan::Panic => {
                assert!(result.is_err(), "{plan:?} answers an error: {result:?}");
                assert!(
                    !handled(&db, *id).await,
                    "a failed job's write is rolled back"
                );
            }
        }
    }
    let after = db.writer_stats();
    assert_eq!(after.jobs - before.jobs, after.lanes + plans.len() as u64);
    // The writer still works after a panic.
    let id = UuidV7.event_id();
    assert!(job(&db, id, Plan::Keep).await.unwrap());
    assert!(
        !job(&db, id, Plan::Keep).await.unwrap(),
        "a job sees earlier commits"
    );
}

/// A job that fails in the middle of a batch sends the batch to run again
/// in three parts: the jobs before it together, it alone, the jobs after it
/// together (not every job alone).
async fn failure_splits_the_batch(db: TestDatabase) {
    let db = Db::connect::<ReservationMigrator>(db.url()).await.unwrap();
    let (release, holder) = hold_writer(&db).await;
    let before = db.writer_stats();
    let plans: Vec<Plan> = (0..9)
        .map(|i| if i == 4 { Plan::Fail } else { Plan::Keep })
        .collect();
    let ids: Vec<EventId> = plans.iter().map(|_| UuidV7.event_id()).collect();
    let mut calls = Vec::new();
    for (plan, id) in plans.iter().zip(&ids) {
        let caller = db.clone();
        let (plan, id) = (*plan, *id);
        calls.push(tokio::spawn(async move { job(&caller, id, plan).await }));
        // In this order in the queue.
        queued(&db, calls.len() as u64).await;
    }
    release.send(()).unwrap();
    holder.await.unwrap();
    for ((plan, id), call) in plans.iter().zip(&ids).zip(join_all(calls).await) {
        let result = call.unwrap();
        if *plan == Plan::Keep {
            assert!(matches!(result, Ok(true)), "{result:?}");
            assert!(handled(&db, *id).await);
        } else {
            assert!(result.is_err());
            assert!(!handled(&db, *id).await);
        }
    }
    let after = db.writer_stats();
    assert_eq!(after.jobs - before.jobs, 9);
    assert_eq!(
        after.transactions - before.transactions,
        3,
        "four together, the failed one alone, four together"
    );
}

/// Each case as a test on SQLite and one on PostgreSQL.
macro_rules! on_both_backends {
    ($($case:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test]
        async fn $sqlite() {
            $case(TestDatabase::sqlite()).await;
        }

        #[tokio::test]
        async fn $postgres() {
            $case(TestDatabase::postgres().await).await;
        }
    )*};
}

on_both_backends! {
    failure_splits_the_batch => a_failed_job_splits_its_batch_in_three_on_sqlite, a_failed_job_splits_its_batch_in_three_on_postgres;
    abandoned_job => a_job_abandoned_before_it_ran_is_not_run_on_sqlite, a_job_abandoned_before_it_ran_is_not_run_on_postgres;
    batch_outcomes => a_batch_keeps_each_jobs_own_outcome_on_sqlite, a_batch_keeps_each_jobs_own_outcome_on_postgres;
    serial_semantics => grouped_jobs_behave_as_if_serial_on_sqlite, concurrent_jobs_behave_as_if_serial_on_postgres;
}

/// A job that breaks the rule (it meets a failed statement, so PostgreSQL
/// aborted the transaction, yet answers `Keep`) cannot take its batch with
/// it: PostgreSQL would answer the batch's `COMMIT` with a silent rollback,
/// and the others were told their writes committed. The batch finds the
/// transaction aborted before committing and runs each job alone.
#[tokio::test]
async fn a_job_that_keeps_after_a_failed_statement_loses_no_other_write_on_postgres() {
    use sea_orm::ConnectionTrait as _;
    let t = TestDatabase::postgres().await;
    let db = Db::connect::<ReservationMigrator>(t.url()).await.unwrap();
    let (release, holder) = hold_writer(&db).await;
    let (first, last) = (UuidV7.event_id(), UuidV7.event_id());
    let keep = |id| {
        let db = db.clone();
        tokio::spawn(async move { job(&db, id, Plan::Keep).await })
    };
    let before = keep(first);
    queued(&db, 1).await;
    let careless = {
        let db = db.clone();
        tokio::spawn(async move {
            db.write(|tx| {
                Box::pin(async move {
                    let _ = tx.conn().execute_unprepared("SELECT 1/0").await;
                    Ok(Verdict::Keep(()))
                })
            })
            .await
        })
    };
    queued(&db, 2).await;
    let after = keep(last);
    queued(&db, 3).await;
    release.send(()).unwrap();
    holder.await.unwrap();
    assert!(before.await.unwrap().unwrap());
    careless.await.unwrap().unwrap();
    assert!(after.await.unwrap().unwrap());
    assert!(handled(&db, first).await, "the job before it committed");
    assert!(handled(&db, last).await, "the job after it committed");
}

/// A transaction that gets no answer in time (here: every lane on a job
/// that never ends, as on a server gone silent) is given up after the
/// writer's bound (15 s): its jobs and the job that queued behind them are
/// answered `Unavailable`, that one without running, and later writes go on.
#[tokio::test]
async fn transactions_without_an_answer_are_given_up_with_the_jobs_behind_them_on_postgres() {
    let t = TestDatabase::postgres().await;
    let db = Db::connect::<ReservationMigrator>(t.url()).await.unwrap();
    let stuck = occupy_lanes(&db, std::future::pending::<()>()).await;
    let behind = UuidV7.event_id();
    let waiting = {
        let db = db.clone();
        tokio::spawn(async move { job(&db, behind, Plan::Keep).await })
    };
    queued(&db, 1).await;
    for call in stuck {
        let e = call.await.unwrap().unwrap_err();
        assert!(e.is_unavailable(), "{e}");
    }
    let e = waiting.await.unwrap().unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(
        !handled(&db, behind).await,
        "the job behind them did not run"
    );
    let later = UuidV7.event_id();
    assert!(job(&db, later, Plan::Keep).await.unwrap(), "a later write");
    assert!(handled(&db, later).await);
}

/// Many concurrent read-modify-write jobs: grouped, yet as if one at a time.
async fn serial_semantics(db: TestDatabase) {
    let db = Db::connect::<ReservationMigrator>(db.url()).await.unwrap();
    let id = UuidV7.event_id();
    let before = db.writer_stats();
    let (release, holder) = hold_writer(&db).await;
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { job(&db, id, Plan::Keep).await.unwrap() })
        })
        .collect();
    queued(&db, 200).await;
    release.send(()).unwrap();
    holder.await.unwrap();
    let fresh = join_all(calls)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(
        fresh, 1,
        "exactly one job inserted the id; the others saw it"
    );
    let after = db.writer_stats();
    let (jobs, transactions) = (
        after.jobs - before.jobs,
        after.transactions - before.transactions,
    );
    assert_eq!(jobs, after.lanes + 200);
    // SQLite takes up to 128 jobs a batch, PostgreSQL 32.
    assert!(
        transactions <= after.lanes + 8,
        "queued jobs commit together: {jobs} jobs in {transactions} transactions"
    );
}

/// A job whose caller gave up (a cancelled call, a passed deadline) before the
/// writer reached it is not run: an overload sheds instead of piling up.
async fn abandoned_job(db: TestDatabase) {
    let db = Db::connect::<ReservationMigrator>(db.url()).await.unwrap();
    let (release, holder) = hold_writer(&db).await;
    let (gone, kept) = (UuidV7.event_id(), UuidV7.event_id());
    let abandoned = {
        let db = db.clone();
        tokio::spawn(async move { job(&db, gone, Plan::Keep).await })
    };
    let waited = {
        let db = db.clone();
        tokio::spawn(async move { job(&db, kept, Plan::Keep).await })
    };
    queued(&db, 2).await;
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    release.send(()).unwrap();
    holder.await.unwrap();
    assert!(waited.await.unwrap().unwrap());
    assert!(handled(&db, kept).await);
    assert!(!handled(&db, gone).await, "the abandoned job did not run");
}

/// Locks the inbox row `row`, says so in `mine`, waits (2 s at most: a job
/// run again alone must not wait for the other side) until `theirs` says the
/// other side holds its first lock, then records `fresh`.
async fn lock_then_record(
    db: &Db,
    row: EventId,
    fresh: EventId,
    mine: Arc<tokio::sync::watch::Sender<bool>>,
    theirs: tokio::sync::watch::Receiver<bool>,
) -> Result<bool, StoreError> {
    use sea_orm::{ConnectionTrait as _, DbBackend, Statement};
    db.write(move |tx| {
        let (mine, mut theirs) = (Arc::clone(&mine), theirs.clone());
        Box::pin(async move {
            tx.conn()
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT event_id FROM inbox WHERE event_id = $1 FOR UPDATE",
                    [row.to_string().into()],
                ))
                .await
                .map_err(adapters_store::store_err)?;
            mine.send_replace(true);
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                theirs.wait_for(|held| *held),
            )
            .await;
            Ok(Verdict::Keep(outbox::record_inbox(tx.conn(), fresh).await?))
        })
    })
    .await
}

/// Two processes' stores on one PostgreSQL database (replicas), whose writes
/// lock the same two rows in the opposite order at the same time: every job
/// still commits, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_crossing_locks_commit_every_job_on_postgres() {
    let t = TestDatabase::postgres().await;
    let one = Db::connect::<ReservationMigrator>(t.url()).await.unwrap();
    let two = Db::connect::<ReservationMigrator>(t.url()).await.unwrap();
    let (p, q) = (UuidV7.event_id(), UuidV7.event_id());
    assert!(job(&one, p, Plan::Keep).await.unwrap());
    assert!(job(&one, q, Plan::Keep).await.unwrap());
    let (held_one, seen_by_two) = tokio::sync::watch::channel(false);
    let (held_two, seen_by_one) = tokio::sync::watch::channel(false);
    let (held_one, held_two) = (Arc::new(held_one), Arc::new(held_two));
    let fresh: Vec<EventId> = (0..4).map(|_| UuidV7.event_id()).collect();
    let (release_one, holder_one) = hold_writer(&one).await;
    let (release_two, holder_two) = hold_writer(&two).await;
    let side = |db: &Db,
                first,
                second,
                ids: [EventId; 2],
                mine: &Arc<_>,
                theirs: &tokio::sync::watch::Receiver<bool>| {
        let (db, mine, theirs) = (db.clone(), Arc::clone(mine), theirs.clone());
        [
            tokio::spawn({
                let (db, mine, theirs) = (db.clone(), Arc::clone(&mine), theirs.clone());
                async move { lock_then_record(&db, first, ids[0], mine, theirs).await }
            }),
            tokio::spawn(async move {
                // Queued after the first job: the same batch.
                tokio::task::yield_now().await;
                lock_then_record(&db, second, ids[1], mine, theirs).await
            }),
        ]
    };
    let calls_one = side(&one, p, q, [fresh[0], fresh[1]], &held_one, &seen_by_one);
    queued(&one, 1).await;
    let calls_two = side(&two, q, p, [fresh[2], fresh[3]], &held_two, &seen_by_two);
    queued(&one, 2).await;
    queued(&two, 2).await;
    release_one.send(()).unwrap();
    release_two.send(()).unwrap();
    holder_one.await.unwrap();
    holder_two.await.unwrap();
    let answers = tokio::time::timeout(
        std::time::Duration::from_mins(1),
        join_all(calls_one.into_iter().chain(calls_two)),
    )
    .await
    .expect("the two writers get past each other's locks");
    for answer in answers {
        assert!(answer.unwrap().unwrap(), "each job recorded its own row");
    }
    for id in fresh {
        assert!(handled(&one, id).await, "committed");
    }
}

/// Issue 36: a switchover as the pool sees it. Its connections reach a server
/// that no longer takes writes (here: reopened read-only, as connections to
/// a standby are); a write is refused as read-only (SQLSTATE 25006), which is
/// `Unavailable`, and the pool drops the connections opened before, so once
/// the address takes writes again (the promoted primary) the next write
/// passes instead of failing on each old connection in turn.
#[tokio::test]
async fn after_a_write_refused_as_read_only_the_pool_opens_new_connections() {
    use sea_orm::ConnectionTrait as _;

    let t = TestDatabase::postgres().await;
    let name = t.url().rsplit_once('/').unwrap().1.to_owned();
    let db = Db::connect_pooled::<ReservationMigrator>(t.url(), 4)
        .await
        .unwrap();
    let ids = UuidV7;
    job(&db, EventId::from_uuid(ids.new_uuid()), Plan::Keep)
        .await
        .unwrap();

    let admin = sea_orm::Database::connect(adapters_store::testing::postgres_admin_url())
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE {name} SET default_transaction_read_only = on"
        ))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    // The pool reconnects (to a read-only server): a write is refused.
    let mut refused = None;
    for _ in 0..10 {
        match job(&db, EventId::from_uuid(ids.new_uuid()), Plan::Keep).await {
            Err(e) if e.to_string().contains("read-only") => {
                refused = Some(e);
                break;
            }
            Err(e) => assert!(e.is_unavailable(), "{e}"),
            Ok(_) => panic!("a write passed on a read-only server"),
        }
    }
    let refused = refused.expect("no write was refused as read-only");
    assert!(refused.is_unavailable(), "{refused}");

    // The address takes writes again: a write passes within three tries (a
    // connection the pool reopened at once, to keep its minimum, may have
    // been opened before the reset; it is dropped in turn). Without the
    // stale mark every try fails on the old read-only connection.
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE {name} RESET default_transaction_read_only"
        ))
        .await
        .unwrap();
    let mut last = None;
    for _ in 0..3 {
        match job(&db, EventId::from_uuid(ids.new_uuid()), Plan::Keep).await {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    assert!(last.is_none(), "no write after the switchover: {last:?}");
}
