//! Group commit: every write transaction of a SQLite database runs on one writer
//! task, which takes the jobs that queued up while it was busy and commits them
//! together in one transaction.
//!
//! SQLite has one writer at a time, and `BEGIN` and `COMMIT` per change (plus,
//! through sqlx, a round trip to the connection's worker thread per statement
//! and the pool hand-over between callers) were most of a small transaction's
//! cost. Here a batch of `n` jobs costs `n` jobs' own statements plus one
//! `BEGIN` and one `COMMIT`, and the pages they share are written to the WAL
//! once. On a database file the writer task has a thread of its own and a
//! `rusqlite` connection (the private `sqlite` module): the statements of a whole batch
//! run on that thread, and a job costs one hop in and one out.
//!
//! Each job is a function of the transaction that returns a [`Verdict`]:
//! [`Verdict::Keep`] keeps its writes (also when it decided, without writing
//! anything, that the change is refused), [`Verdict::Undo`] asks for its writes
//! to be rolled back. A job that undoes, fails or panics inside a batch rolls the
//! whole batch back; then every job of it runs again alone, each in its own
//! transaction, so one job's failure never changes another's outcome. Jobs run in
//! arrival order and see the writes of the jobs before them, exactly as if they
//! had committed one after another; nobody learns the outcome of a job before the
//! transaction holding it committed. A job whose caller stopped waiting before
//! it ran is dropped (as a transaction dropped before its commit); once running,
//! a job runs to its end.
//!
//! On PostgreSQL each job runs in a transaction of its own on the pool, side
//! by side with the others (the server does its own group commit). Batching
//! them here too was faster (BENCHMARKS-LOG.md, run 16: roaming c=64 about
//! 1.9x) but one writer per process queues every write behind a commit that
//! waits: in `cargo xtask failover` a write queued behind a commit waiting
//! for a lost standby was answered after 8 s instead of 5, and some writes
//! answered `INTERNAL`. Reverted (the attempt, with a lock timeout per batch
//! and bounded jobs, is in git history: commit 2d18912); it could come back
//! with commits that do not hold the writer.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use domain_kernel::StoreError;
use futures::FutureExt;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::error::store_err;
use crate::sqlite::Direct;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 128;
/// Most jobs waiting for the writer; beyond, callers wait to queue (so an
/// overload shows as latency at the callers, and their deadlines shed it).
const MAX_QUEUED: usize = 4 * 1024;

/// What a job decided about its own writes.
#[derive(Debug)]
pub enum Verdict<T> {
    /// Commit what the job wrote (which may be nothing) and answer `T`.
    Keep(T),
    /// Roll back what the job wrote and answer `T`.
    Undo(T),
}

/// The transaction a job runs in.
#[derive(Debug)]
pub struct WriteTx {
    txn: DatabaseTransaction,
    appended: AtomicBool,
}

impl WriteTx {
    /// The connection to run statements on.
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Records that events were appended to the outbox, so the relay is woken
    /// after the commit.
    pub(crate) fn appended(&self) {
        self.appended.store(true, Ordering::Relaxed);
    }
}

/// A future borrowing the transaction.
pub type JobFuture<'t, T> =
    Pin<Box<dyn Future<Output = Result<Verdict<T>, StoreError>> + Send + 't>>;

/// A job that can run again if its batch is rolled back.
pub trait Job<T>: for<'t> Fn(&'t WriteTx) -> JobFuture<'t, T> + Send + 'static {}
impl<T, F> Job<T> for F where F: for<'t> Fn(&'t WriteTx) -> JobFuture<'t, T> + Send + 'static {}

/// A queued job with its answer channel, type erased for the writer task.
pub(crate) trait Queued: Send {
    /// Runs the job; `true` when its writes may be kept.
    fn run<'t>(&'t mut self, tx: &'t WriteTx) -> Pin<Box<dyn Future<Output = bool> + Send + 't>>;
    /// Answers the caller: the job's own result if `committed` is `Ok`.
    fn answer(self: Box<Self>, committed: Result<(), TxFailure>);
    /// Whether the caller stopped waiting (its call was cancelled or timed
    /// out) before the job ran: then it does not run at all, exactly as a
    /// transaction dropped before its commit.
    fn abandoned(&self) -> bool;
    /// Forgets what the job answered in a batch that was rolled back: it is
    /// answered by its run alone, or by the failure that kept that from
    /// happening, never by the batch's outcome.
    fn forget(&mut self);
}

struct Entry<T, F> {
    job: F,
    span: tracing::Span,
    result: Option<Result<Verdict<T>, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send + 'static, F: Job<T>> Queued for Entry<T, F> {
    fn run<'t>(&'t mut self, tx: &'t WriteTx) -> Pin<Box<dyn Future<Output = bool> + Send + 't>> {
        let run = AssertUnwindSafe((self.job)(tx).instrument(self.span.clone())).catch_unwind();
        Box::pin(async move {
            let result = run.await.unwrap_or_else(|_| {
                Err(StoreError::msg(
                    "a write job panicked; its batch was rolled back",
                ))
            });
            let keep = matches!(result, Ok(Verdict::Keep(_)));
            self.result = Some(result);
            keep
        })
    }

    fn answer(self: Box<Self>, committed: Result<(), TxFailure>) {
        let answer = match (committed, self.result) {
            // Its transaction could not begin.
            (Err(e), None) => Err(e.into_store_error("")),
            (Ok(()), None) => Err(StoreError::msg("write job did not run")),
            (Ok(()), Some(Ok(Verdict::Keep(t) | Verdict::Undo(t)))) => Ok(t),
            (_, Some(Err(e))) => Err(e),
            (Err(e), Some(Ok(_))) => Err(e.into_store_error("commit failed: ")),
        };
        let _ = self.reply.send(answer);
    }

    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn forget(&mut self) {
        self.result = None;
    }
}

/// Why a transaction could not begin or commit, for every job of it: the
/// store unavailable (transient) or failed.
#[derive(Debug, Clone)]
pub(crate) struct TxFailure {
    message: String,
    unavailable: bool,
}

impl TxFailure {
    fn from_store(e: &StoreError) -> Self {
        Self {
            message: e.to_string(),
            unavailable: matches!(e, StoreError::Unavailable(_)),
        }
    }

    fn failed(message: String) -> Self {
        Self {
            message,
            unavailable: false,
        }
    }

    fn into_store_error(self, context: &str) -> StoreError {
        let message = format!("{context}{}", self.message);
        if self.unavailable {
            StoreError::unavailable(message)
        } else {
            StoreError::msg(message)
        }
    }
}

/// Where write jobs go: the writer task of a database, or (PostgreSQL) a
/// transaction of its own per job on the pool.
#[derive(Clone)]
pub(crate) enum Writer {
    Batched {
        queue: mpsc::Sender<Box<dyn Queued>>,
        counters: Arc<Counters>,
    },
    PerJob {
        pool: DatabaseConnection,
        committed: Arc<dyn Fn() + Send + Sync>,
    },
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Batched { .. } => "Writer::Batched",
            Self::PerJob { .. } => "Writer::PerJob",
        })
    }
}

/// How the writer task has grouped its jobs so far.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    jobs: AtomicU64,
    transactions: AtomicU64,
}

/// Jobs run and transactions used by a writer task (jobs per transaction is
/// the group-commit factor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    pub jobs: u64,
    pub transactions: u64,
    /// Jobs waiting in the queue right now (not yet taken by the writer).
    pub queued: u64,
}

impl Writer {
    /// Starts the writer task of `conn` (the single writer connection). With
    /// `direct` (the `rusqlite` connection behind `conn`), the task runs on a
    /// thread of its own, where the statements of a whole batch execute
    /// without leaving it; otherwise it is a task of the caller's runtime.
    pub(crate) fn batched(
        conn: DatabaseConnection,
        direct: Option<Arc<Direct>>,
        committed: impl Fn() + Send + Sync + 'static,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        let counters = Arc::new(Counters::default());
        // `writer-reservation` in `top -H` and profiles (Linux keeps the
        // first 15 bytes).
        let thread = direct.as_ref().map(|d| format!("writer-{}", d.name()));
        let task = run_writer(
            WriterConn { conn, direct },
            rx,
            committed,
            Arc::clone(&counters),
        );
        if let Some(thread) = thread {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::msg(format!("the writer's runtime: {e}")))?;
            // Ends when every sender (every clone of the `Db`) is gone.
            std::thread::Builder::new()
                .name(thread)
                .spawn(move || runtime.block_on(task))
                .map_err(|e| StoreError::msg(format!("the writer's thread: {e}")))?;
        } else {
            tokio::spawn(task);
        }
        Ok(Self::Batched {
            queue: tx,
            counters,
        })
    }

    /// Each job in a transaction of its own on `pool` (PostgreSQL), side by
    /// side with the others; `committed` after each commit that appended
    /// events.
    pub(crate) fn per_job(
        pool: DatabaseConnection,
        committed: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        Self::PerJob {
            pool,
            committed: Arc::new(committed),
        }
    }

    /// What the writer task did so far.
    pub(crate) fn stats(&self) -> WriterStats {
        let Self::Batched { queue, counters: c } = self else {
            return WriterStats::default();
        };
        WriterStats {
            jobs: c.jobs.load(Ordering::Relaxed),
            transactions: c.transactions.load(Ordering::Relaxed),
            queued: u64::try_from(queue.max_capacity() - queue.capacity()).unwrap_or(u64::MAX),
        }
    }

    /// Runs `job` in a write transaction and answers its result once committed.
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Job<T>,
    {
        let queue = match self {
            Self::Batched { queue, .. } => queue,
            Self::PerJob { pool, committed } => {
                return per_job(pool, job, committed.as_ref()).await;
            }
        };
        let (reply, answer) = oneshot::channel();
        let entry = Entry {
            job,
            span: tracing::Span::current(),
            result: None,
            reply,
        };
        queue
            .send(Box::new(entry))
            .await
            .map_err(|_| StoreError::msg("the database writer has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::msg("the database writer has stopped"))?
    }
}

/// Runs `job` in a transaction of its own on `pool`.
async fn per_job<T, F>(
    pool: &DatabaseConnection,
    job: F,
    committed: &(dyn Fn() + Send + Sync),
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: Job<T>,
{
    let tx = begin(pool).await?;
    let verdict = AssertUnwindSafe(job(&tx))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(StoreError::msg("a write job panicked")))?;
    let appended = tx.appended.load(Ordering::Relaxed);
    match verdict {
        Verdict::Keep(t) => {
            crate::error::commit_within(tx.txn).await?;
            if appended {
                committed();
            }
            Ok(t)
        }
        Verdict::Undo(t) => {
            tx.txn.rollback().await.map_err(store_err)?;
            Ok(t)
        }
    }
}

async fn begin(conn: &DatabaseConnection) -> Result<WriteTx, StoreError> {
    Ok(WriteTx {
        txn: conn.begin().await.map_err(store_err)?,
        appended: AtomicBool::new(false),
    })
}

/// The writer task's connection, and the `rusqlite` one behind it (whose
/// `BEGIN`/`COMMIT`/`ROLLBACK` failures sea-orm's proxy cannot return).
struct WriterConn {
    conn: DatabaseConnection,
    direct: Option<Arc<Direct>>,
}

impl WriterConn {
    fn failure(&self) -> Result<(), TxFailure> {
        match self.direct.as_ref().and_then(|d| d.take_failure()) {
            Some(failure) => Err(TxFailure::failed(failure)),
            None => Ok(()),
        }
    }

    async fn begin(&self) -> Result<WriteTx, TxFailure> {
        let tx = begin(&self.conn)
            .await
            .map_err(|e| TxFailure::from_store(&e))?;
        self.failure()?;
        Ok(tx)
    }

    async fn commit(&self, tx: WriteTx) -> Result<(), TxFailure> {
        tx.txn
            .commit()
            .await
            .map_err(|e| TxFailure::from_store(&store_err(e)))?;
        self.failure()
    }

    async fn rollback(&self, tx: WriteTx) -> Result<(), TxFailure> {
        tx.txn
            .rollback()
            .await
            .map_err(|e| TxFailure::from_store(&store_err(e)))?;
        self.failure()
    }
}

async fn run_writer(
    conn: WriterConn,
    mut queue: mpsc::Receiver<Box<dyn Queued>>,
    committed: impl Fn() + Sync,
    counters: Arc<Counters>,
) {
    let mut batch: Vec<Box<dyn Queued>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        batch.retain(|job| !job.abandoned());
        if batch.is_empty() {
            continue;
        }
        counters
            .jobs
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if batch.len() > 1 && run_together(&conn, &mut batch, &committed).await {
            counters.transactions.fetch_add(1, Ordering::Relaxed);
        } else {
            let mut jobs = batch.drain(..);
            while let Some(job) = jobs.next() {
                // Its caller may have given up while the batch ran.
                if job.abandoned() {
                    continue;
                }
                counters.transactions.fetch_add(1, Ordering::Relaxed);
                if let Err(failure) = run_alone(&conn, job, &committed).await {
                    // No transaction begins (the database is down or
                    // unreachable): the rest would each wait for the same.
                    for job in jobs.by_ref() {
                        job.answer(Err(failure.clone()));
                    }
                }
            }
        }
        batch.clear();
    }
}

/// Runs `batch` in one transaction. `false`: a job refused or failed; nothing
/// was committed or answered, run them alone.
async fn run_together(
    conn: &WriterConn,
    batch: &mut Vec<Box<dyn Queued>>,
    committed: &(impl Fn() + Sync),
) -> bool {
    let tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(failure) => {
            for job in batch.drain(..) {
                job.answer(Err(failure.clone()));
            }
            return true;
        }
    };
    let mut ran = true;
    for job in batch.iter_mut() {
        if !job.run(&tx).await {
            ran = false;
            break;
        }
    }
    if !ran {
        let _ = conn.rollback(tx).await;
        for job in batch.iter_mut() {
            job.forget();
        }
        return false;
    }
    let appended = tx.appended.load(Ordering::Relaxed);
    let outcome = conn.commit(tx).await;
    if outcome.is_ok() && appended {
        committed();
    }
    for job in batch.drain(..) {
        job.answer(outcome.clone());
    }
    true
}

/// Runs `job` in a transaction of its own. `Err`: the transaction did not
/// begin (the job is answered with that).
async fn run_alone(
    conn: &WriterConn,
    mut job: Box<dyn Queued>,
    committed: &(impl Fn() + Sync),
) -> Result<(), TxFailure> {
    let tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            job.answer(Err(e.clone()));
            return Err(e);
        }
    };
    if job.run(&tx).await {
        let appended = tx.appended.load(Ordering::Relaxed);
        let outcome = conn.commit(tx).await;
        if outcome.is_ok() && appended {
            committed();
        }
        job.answer(outcome);
    } else {
        let outcome = conn.rollback(tx).await;
        job.answer(outcome);
    }
    Ok(())
}
