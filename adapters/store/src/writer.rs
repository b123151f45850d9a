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
//! whole batch back; then the batch runs again in three parts, one after the
//! other: the jobs before it together, it alone, the jobs after it together
//! (`run_batch`), so one job's failure never changes another's outcome. Within
//! a batch, jobs run in arrival order and see the writes of the jobs before
//! them, exactly as if they had committed one after another (on SQLite, whose
//! batches run one at a time, so do all jobs); nobody learns the outcome of a
//! job before the transaction holding it committed. A job whose caller stopped waiting before
//! it ran is dropped (as a transaction dropped before its commit); once running,
//! a job runs to its end.
//!
//! On PostgreSQL the same batches run on [`LANES`] pooled connections at once
//! (`Writer::pipelined`): while one batch commits (a WAL flush, maybe a
//! synchronous standby's answer), the next takes the jobs that queued
//! meanwhile on another connection, so a commit that waits never holds the
//! writer. One batch costs one `BEGIN`/`COMMIT` and one flush for all its
//! jobs, and jobs that lock the same rows (every claim locks its resource's
//! units) wait for each other inside the batch instead of for each other's
//! commits (BENCHMARKS-LOG.md, run 18). There:
//! - PostgreSQL aborts a transaction at its first failed statement, and
//!   answers a later `COMMIT` with a silent rollback: a job that meets a
//!   failed statement (a unique key taken) must answer [`Verdict::Undo`] or
//!   an error, never [`Verdict::Keep`]. A batch checks (`STILL_ALIVE`, one
//!   round trip) that its transaction was not aborted before it commits, so
//!   a job that breaks this rule loses only its own writes, never those of
//!   the jobs batched with it.
//! - A batch takes all its jobs' locks in their arrival order, so two
//!   batches (of two lanes, or of two replicas on one database) can wait for
//!   each other: a batch waits at most `BATCH_LOCK_TIMEOUT` for a lock, less
//!   than PostgreSQL's `deadlock_timeout` (1 s), then the job that waited
//!   runs alone, taking its locks in the one order its store defines.
//! - Batches of different lanes are concurrent transactions (`READ
//!   COMMITTED`), as concurrent callers' transactions were before batching:
//!   the part of a split batch after its failed job may commit after a
//!   later batch of another lane.
//! - A transaction's steps, from `BEGIN` to the check before `COMMIT`, are
//!   bounded by `JOBS_WITHIN` together, its commit by
//!   [`COMMIT_TIMEOUT`](crate::COMMIT_TIMEOUT); past either, the connections
//!   opened before that moment (in every pool of the process: `stale`) are
//!   closed, not pooled again, and every job that queued before it is
//!   answered `Unavailable` when its turn comes (the next batch or part to
//!   run) rather than starting a transaction of its own that would wait as
//!   long (`cargo xtask failover`: a write is answered within the bound,
//!   never later).
//! - A transaction that cannot begin answers every job waiting with that
//!   failure, as what it was (the store unavailable, or failed), instead of
//!   trying each in turn.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use domain_kernel::StoreError;
use futures::FutureExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::error::store_err;
use crate::sqlite::Direct;

/// Most jobs committed in one SQLite transaction.
const MAX_BATCH: usize = 128;
/// PostgreSQL: batches running at once, each on a pooled connection. One
/// lane would hold every write behind a waiting commit. One run each of one
/// lane (batches of 64), two and four (32) read roaming 251, 264 and 282/s
/// (BENCHMARKS-LOG.md, run 18): within the runs' noise, as is the
/// overload's p99 (383 ms to 1.40 s over two runs of four lanes).
pub const LANES: usize = 4;
/// Most jobs in one PostgreSQL transaction: a batch holds the locks of all
/// its jobs until it commits.
const MAX_PG_BATCH: usize = 32;
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
    /// answered by its next run (alone, or in a smaller part of the batch),
    /// or by the failure that kept that from happening, never by the rolled
    /// back batch's outcome.
    fn forget(&mut self);
    /// When the job was handed to the writer.
    fn queued_at(&self) -> Instant;
}

struct Entry<T, F> {
    job: F,
    span: tracing::Span,
    result: Option<Result<Verdict<T>, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
    queued_at: Instant,
}

impl<T: Send + 'static, F: Job<T>> Queued for Entry<T, F> {
    fn run<'t>(&'t mut self, tx: &'t WriteTx) -> Pin<Box<dyn Future<Output = bool> + Send + 't>> {
        // A panic building the job's future is caught as one inside it is.
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| (self.job)(tx)))
            .map(|job| AssertUnwindSafe(job.instrument(self.span.clone())).catch_unwind());
        Box::pin(async move {
            let ran = match run {
                Ok(run) => run.await.ok(),
                Err(_) => None,
            };
            let result = ran.unwrap_or_else(|| {
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

    fn queued_at(&self) -> Instant {
        self.queued_at
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

/// Where write jobs go: the writer task of a database, which runs the jobs
/// that queued up together in one transaction (SQLite: one batch at a time;
/// PostgreSQL: up to [`LANES`] batches at once).
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Box<dyn Queued>>,
    counters: Arc<Counters>,
    lanes: usize,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("lanes", &self.lanes)
            .finish_non_exhaustive()
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
    /// How many batches may run at once (SQLite 1, PostgreSQL [`LANES`]).
    pub lanes: u64,
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
            WriterConn::new(conn, direct, false),
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
        Ok(Self {
            queue: tx,
            counters,
            lanes: 1,
        })
    }

    /// Starts the writer task of a PostgreSQL `pool`: batches of the jobs
    /// that queued up, up to [`LANES`] of them at once, each in a transaction
    /// on a connection of the pool; `committed` after each commit that
    /// appended events.
    pub(crate) fn pipelined(
        pool: DatabaseConnection,
        committed: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        let counters = Arc::new(Counters::default());
        tokio::spawn(run_pipeline(
            Arc::new(WriterConn::new(pool, None, true)),
            rx,
            Arc::new(committed),
            Arc::clone(&counters),
        ));
        Self {
            queue: tx,
            counters,
            lanes: LANES,
        }
    }

    /// What the writer task did so far.
    pub(crate) fn stats(&self) -> WriterStats {
        let c = &self.counters;
        let queue = &self.queue;
        WriterStats {
            jobs: c.jobs.load(Ordering::Relaxed),
            transactions: c.transactions.load(Ordering::Relaxed),
            queued: u64::try_from(queue.max_capacity() - queue.capacity()).unwrap_or(u64::MAX),
            lanes: self.lanes as u64,
        }
    }

    /// Runs `job` in a write transaction and answers its result once committed.
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Job<T>,
    {
        let (reply, answer) = oneshot::channel();
        // Stamped once it has a place in the queue (`gave_up_at` compares).
        let place = self
            .queue
            .reserve()
            .await
            .map_err(|_| StoreError::msg("the database writer has stopped"))?;
        place.send(Box::new(Entry {
            job,
            span: tracing::Span::current(),
            result: None,
            reply,
            queued_at: Instant::now(),
        }));
        answer
            .await
            .map_err(|_| StoreError::msg("the database writer has stopped"))?
    }
}

async fn begin(conn: &DatabaseConnection) -> Result<WriteTx, StoreError> {
    Ok(WriteTx {
        txn: conn.begin().await.map_err(store_err)?,
        appended: AtomicBool::new(false),
    })
}

/// How long a PostgreSQL lock held by another transaction may hold up a
/// batch (`SET LOCAL lock_timeout`) before its jobs run alone instead. A
/// batch takes the locks of all its jobs in their arrival order, so two
/// batches (two lanes, or two replicas' writers) can wait for each other,
/// which PostgreSQL would resolve only after its `deadlock_timeout` (1 s);
/// alone, a job takes its locks in the one order every claim takes them.
/// Above the time a full batch holds a busy row (claims of one booth's
/// model queue on it, batch after batch), so that it is not a stall's
/// everyday cause. Without it (run 18) batches of claims waited out the
/// deadlock detector on each other's customers: the open loop at 1,000/s
/// accepted 69/s instead of 126/s.
const BATCH_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '500ms'";

/// The longest the jobs of a PostgreSQL transaction may take before the
/// writer gives up on the connection (the server's `statement_timeout`
/// ends a slow statement at 10 s; a server gone without closing the
/// connection never answers, and a lane would wait with it).
const JOBS_WITHIN: Duration = Duration::from_secs(15);

/// The writer task's connection, and the `rusqlite` one behind it (whose
/// `BEGIN`/`COMMIT`/`ROLLBACK` failures sea-orm's proxy cannot return).
struct WriterConn {
    conn: DatabaseConnection,
    direct: Option<Arc<Direct>>,
    /// A PostgreSQL server: commits and jobs are bounded in time.
    postgres: bool,
    /// When a transaction last got no answer in time (its commit or its
    /// jobs): the jobs that queued before then are answered `Unavailable`
    /// instead of waiting as long again.
    gave_up_at: std::sync::Mutex<Option<Instant>>,
}

impl WriterConn {
    fn new(conn: DatabaseConnection, direct: Option<Arc<Direct>>, postgres: bool) -> Self {
        Self {
            conn,
            direct,
            postgres,
            gave_up_at: std::sync::Mutex::new(None),
        }
    }

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

    /// `work`, or `None` when it took longer than [`JOBS_WITHIN`] on
    /// PostgreSQL (no bound on SQLite, whose statements never wait on a
    /// network).
    /// Past the bound, the connections opened before now are closed rather
    /// than pooled again (marked before `work`, and the transaction it may
    /// hold, is dropped) and the jobs queued before now are answered
    /// `Unavailable` (`gave_up_at`).
    async fn bounded<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        if !self.postgres {
            return Some(work.await);
        }
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => Some(done),
            () = tokio::time::sleep(JOBS_WITHIN) => {
                crate::stale::mark("a write transaction got no answer in time");
                self.gave_up();
                None
            }
        }
    }

    /// Remembers that a transaction of this writer got no answer in time.
    fn gave_up(&self) {
        let now = Instant::now();
        if let Ok(mut at) = self.gave_up_at.lock() {
            *at = Some(now);
        }
    }

    /// When a transaction last got no answer in time.
    fn gave_up_at(&self) -> Option<Instant> {
        self.gave_up_at.lock().ok().and_then(|at| *at)
    }

    /// What every job of a transaction is answered after [`Self::bounded`]
    /// ran out: nothing of it was committed.
    fn no_answer() -> TxFailure {
        TxFailure {
            message: format!(
                "the database did not answer within {} s; nothing was committed",
                JOBS_WITHIN.as_secs()
            ),
            unavailable: true,
        }
    }

    async fn commit(&self, tx: WriteTx) -> Result<(), TxFailure> {
        if self.postgres {
            let commit = tx.txn.commit();
            tokio::pin!(commit);
            let done = tokio::select! {
                done = &mut commit => done,
                () = tokio::time::sleep(crate::COMMIT_TIMEOUT) => {
                    // Marked before the commit (and its connection) is
                    // dropped: the connection is closed, not pooled.
                    crate::stale::mark("the database did not answer a commit in time");
                    self.gave_up();
                    return Err(TxFailure {
                        message: crate::error::CommitTimedOut::commit().to_string(),
                        unavailable: true,
                    });
                }
            };
            return done.map_err(|e| TxFailure::from_store(&store_err(e)));
        }
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
        take_queued(&mut queue, &mut batch, MAX_BATCH);
        batch.retain(|job| !job.abandoned());
        run_batch(&conn, &mut batch, &committed, &counters).await;
        batch.clear();
    }
}

/// Adds the jobs waiting in `queue` to `batch`, up to `max` in all.
fn take_queued(
    queue: &mut mpsc::Receiver<Box<dyn Queued>>,
    batch: &mut Vec<Box<dyn Queued>>,
    max: usize,
) {
    while batch.len() < max {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// PostgreSQL's writer task: waits for a free lane, takes the jobs that
/// queued up meanwhile, and runs them as one batch on that lane while it
/// waits for the next.
async fn run_pipeline(
    conn: Arc<WriterConn>,
    mut queue: mpsc::Receiver<Box<dyn Queued>>,
    committed: Arc<dyn Fn() + Send + Sync>,
    counters: Arc<Counters>,
) {
    let lanes = Arc::new(Semaphore::new(LANES));
    loop {
        // The lane first: jobs wait in the queue (and group up there), not
        // in this task.
        let Ok(lane) = Arc::clone(&lanes).acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_PG_BATCH);
        batch.push(first);
        take_queued(&mut queue, &mut batch, MAX_PG_BATCH);
        let mut jobs = refuse_given_up(&conn, batch);
        jobs.retain(|job| !job.abandoned());
        let (conn, committed, counters) = (
            Arc::clone(&conn),
            Arc::clone(&committed),
            Arc::clone(&counters),
        );
        tokio::spawn(async move {
            run_batch(&conn, &mut jobs, committed.as_ref(), &counters).await;
            drop(lane);
        });
    }
}

/// Answers `Unavailable` the jobs that queued before the writer last gave
/// up on a transaction (its server did not answer in time: theirs would most
/// likely wait as long); returns the others.
fn refuse_given_up(conn: &WriterConn, jobs: Vec<Box<dyn Queued>>) -> Vec<Box<dyn Queued>> {
    let Some(at) = conn.gave_up_at() else {
        return jobs;
    };
    let mut kept = Vec::with_capacity(jobs.len());
    for job in jobs {
        if job.queued_at() <= at {
            job.answer(Err(TxFailure {
                message: "the database did not answer a transaction in time; \
                          this write was not started"
                    .to_owned(),
                unavailable: true,
            }));
        } else {
            kept.push(job);
        }
    }
    kept
}

/// A part of a batch still to run, in arrival order.
enum Part {
    /// In one transaction (one job: alone).
    Together(Vec<Box<dyn Queued>>),
    /// Each in a transaction of its own.
    Alone(Vec<Box<dyn Queued>>),
}

/// Runs the jobs of `batch` together; answers every one.
///
/// When job `k` refuses or fails in the shared transaction, nothing is
/// committed, and the batch runs again in three parts, one after the other:
/// the jobs before `k` together (they ran without trouble), `k` alone (its
/// outcome is its own), the jobs after `k` together. Each part sees the
/// commits of the parts before it, so jobs still behave as if committed one
/// by one in arrival order. A part that fails without a job to blame (its
/// transaction found aborted before `COMMIT`) runs each job alone.
async fn run_batch(
    conn: &WriterConn,
    batch: &mut Vec<Box<dyn Queued>>,
    committed: &(impl Fn() + Sync + ?Sized),
    counters: &Counters,
) {
    if batch.is_empty() {
        return;
    }
    counters
        .jobs
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let mut parts = std::collections::VecDeque::from([Part::Together(std::mem::take(batch))]);
    while let Some(part) = parts.pop_front() {
        let failure = match part {
            Part::Together(jobs) => {
                // Their callers may have given up while an earlier part ran,
                // or the writer on a transaction.
                let mut jobs = refuse_given_up(conn, jobs);
                jobs.retain(|job| !job.abandoned());
                if jobs.len() < 2 {
                    parts.push_front(Part::Alone(jobs));
                    continue;
                }
                match run_together(conn, &mut jobs, committed).await {
                    Together::Done => {
                        counters.transactions.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Together::FailedAt(k) => {
                        let mut after = jobs.split_off(k);
                        let failed = after.remove(0);
                        parts.push_front(Part::Together(after));
                        parts.push_front(Part::Alone(vec![failed]));
                        parts.push_front(Part::Together(jobs));
                        continue;
                    }
                    Together::Failed => {
                        parts.push_front(Part::Alone(jobs));
                        continue;
                    }
                    Together::NotBegun(failure) => failure,
                }
            }
            Part::Alone(jobs) => {
                let mut jobs = jobs.into_iter();
                let mut failure = None;
                while let Some(job) = jobs.next() {
                    let Some(job) = refuse_given_up(conn, vec![job]).pop() else {
                        continue;
                    };
                    if job.abandoned() {
                        continue;
                    }
                    counters.transactions.fetch_add(1, Ordering::Relaxed);
                    if let Err(f) = run_alone(conn, job, committed).await {
                        for job in jobs.by_ref() {
                            job.answer(Err(f.clone()));
                        }
                        failure = Some(f);
                    }
                }
                match failure {
                    Some(f) => f,
                    None => continue,
                }
            }
        };
        // No transaction begins (the database is down or unreachable): the
        // jobs still waiting would each wait for the same.
        for part in parts.drain(..) {
            let (Part::Together(jobs) | Part::Alone(jobs)) = part;
            for job in jobs {
                job.answer(Err(failure.clone()));
            }
        }
    }
}

/// How running jobs together went.
enum Together {
    /// Committed (or its commit failed, or the server did not answer in
    /// time) and every job answered.
    Done,
    /// This job refused or failed; nothing was committed or answered.
    FailedAt(usize),
    /// The transaction failed with no job to blame; nothing was committed or
    /// answered.
    Failed,
    /// The transaction did not begin; every job of it was answered so.
    NotBegun(TxFailure),
}

/// Runs `batch` in one transaction. On PostgreSQL every step, from `BEGIN`
/// to the check before `COMMIT`, is bounded by `JOBS_WITHIN` together, and
/// the `COMMIT` by `COMMIT_TIMEOUT`: a server that stops answering without
/// closing the connection holds a lane no longer than that.
async fn run_together(
    conn: &WriterConn,
    batch: &mut Vec<Box<dyn Queued>>,
    committed: &(impl Fn() + Sync + ?Sized),
) -> Together {
    let steps = conn
        .bounded(async {
            let tx = match conn.begin().await {
                Ok(tx) => tx,
                Err(failure) => return Err(failure),
            };
            if conn.postgres && tx.txn.execute_unprepared(BATCH_LOCK_TIMEOUT).await.is_err() {
                return Ok((tx, Some(Together::Failed)));
            }
            for (k, job) in batch.iter_mut().enumerate() {
                if !job.run(&tx).await {
                    return Ok((tx, Some(Together::FailedAt(k))));
                }
            }
            // PostgreSQL answers the `COMMIT` of a transaction that a failed
            // statement aborted with a silent rollback: a job that met a
            // failed statement yet answered `Keep` would have every job of
            // the batch told that its writes committed. A statement first
            // finds that out.
            if conn.postgres && tx.txn.execute_unprepared(STILL_ALIVE).await.is_err() {
                return Ok((tx, Some(Together::Failed)));
            }
            Ok((tx, None))
        })
        .await;
    let (tx, failed) = match steps {
        Some(Ok(ran)) => ran,
        Some(Err(failure)) => {
            for job in batch.drain(..) {
                job.answer(Err(failure.clone()));
            }
            return Together::NotBegun(failure);
        }
        None => {
            let failure = WriterConn::no_answer();
            for job in batch.drain(..) {
                job.answer(Err(failure.clone()));
            }
            return Together::Done;
        }
    };
    if let Some(failed) = failed {
        let _ = conn.bounded(conn.rollback(tx)).await;
        for job in batch.iter_mut() {
            job.forget();
        }
        return failed;
    }
    let appended = tx.appended.load(Ordering::Relaxed);
    let outcome = conn.commit(tx).await;
    if outcome.is_ok() && appended {
        committed();
    }
    for job in batch.drain(..) {
        job.answer(outcome.clone());
    }
    Together::Done
}

/// A statement that fails in an aborted PostgreSQL transaction (SQLSTATE
/// 25P02), run before a batch's `COMMIT`.
const STILL_ALIVE: &str = "SELECT 1";

/// Runs `job` in a transaction of its own, bounded as [`run_together`]
/// bounds a batch. `Err`: the transaction did not begin (the job is
/// answered with that).
async fn run_alone(
    conn: &WriterConn,
    mut job: Box<dyn Queued>,
    committed: &(impl Fn() + Sync + ?Sized),
) -> Result<(), TxFailure> {
    let steps: Option<Result<(WriteTx, bool), TxFailure>> = conn
        .bounded(async {
            let tx = conn.begin().await?;
            let keep = job.run(&tx).await;
            Ok((tx, keep))
        })
        .await;
    let (tx, keep) = match steps {
        Some(Ok(ran)) => ran,
        Some(Err(failure)) => {
            job.answer(Err(failure.clone()));
            return Err(failure);
        }
        None => {
            job.answer(Err(WriterConn::no_answer()));
            return Ok(());
        }
    };
    if keep {
        let appended = tx.appended.load(Ordering::Relaxed);
        let outcome = conn.commit(tx).await;
        if outcome.is_ok() && appended {
            committed();
        }
        job.answer(outcome);
    } else {
        let outcome = conn
            .bounded(conn.rollback(tx))
            .await
            .unwrap_or_else(|| Err(WriterConn::no_answer()));
        job.answer(outcome);
    }
    Ok(())
}
