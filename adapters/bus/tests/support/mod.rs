//! A nats-server the test owns, a producer database with an outbox, and a
//! consumer whose effect (a row per applied event, no unique key) shows any
//! double application.

#![allow(
    dead_code,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test support"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adapters_bus::{Delivery, HandleError, Handler};
use adapters_store::migrations::PaymentMigrator;
use adapters_store::testing::TestDatabase;
use adapters_store::{Db, outbox};
use domain_kernel::{EventId, IdGenerator, OutgoingEvent, UuidV7};
use futures::future::BoxFuture;
use sea_orm::{ConnectionTrait, FromQueryResult, Statement, TransactionTrait};

/// A service database whose outbox the test fills.
pub struct Producer {
    pub db: Db,
    _file: Option<TestDatabase>,
}

impl Producer {
    pub async fn new() -> Self {
        let file = TestDatabase::sqlite();
        let db = Db::connect::<PaymentMigrator>(file.url()).await.unwrap();
        Self {
            db,
            _file: Some(file),
        }
    }

    /// Another handle on an existing producer database.
    pub fn from_db(db: Db) -> Self {
        Self { db, _file: None }
    }

    /// Commits `n` events to the outbox (as a state change would), in
    /// transactions of `per_txn`. The payload is the event id.
    pub async fn commit(&self, n: usize, per_txn: usize, subject: &str) -> Vec<EventId> {
        let mut ids = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(per_txn.max(1)) {
            let events: Vec<_> = chunk
                .iter()
                .map(|_| {
                    let id = UuidV7.event_id();
                    ids.push(id);
                    OutgoingEvent {
                        event_id: id,
                        subject: subject.to_owned(),
                        payload: id.to_string().into_bytes(),
                        headers: vec![("Roaming-Event-Type".to_owned(), "test".to_owned())],
                    }
                })
                .collect();
            let txn = self.db.writer().begin().await.unwrap();
            outbox::append(&txn, &events).await.unwrap();
            txn.commit().await.unwrap();
            self.db.notify_committed();
        }
        ids
    }

    pub async fn unsent(&self) -> u64 {
        outbox::backlog(self.db.writer()).await.unwrap().0
    }
}

/// The consumer: in one transaction, the inbox entry and one row in `applied`.
/// `applied` has no unique key, so a second effect would be a second row.
pub struct Consumer {
    pub db: Db,
    pub calls: AtomicUsize,
    /// Payloads (event ids) this consumer always fails on.
    pub poison: std::sync::Mutex<Vec<String>>,
    /// How many more calls fail as if the database were down.
    pub outage: AtomicUsize,
    _file: TestDatabase,
}

#[derive(Debug, FromQueryResult)]
struct Counts {
    rows: i64,
    distinct_ids: i64,
}

impl Consumer {
    pub async fn new() -> Arc<Self> {
        let file = TestDatabase::sqlite();
        let db = Db::connect::<PaymentMigrator>(file.url()).await.unwrap();
        db.writer()
            .execute_unprepared(
                "CREATE TABLE applied (event_id TEXT NOT NULL, consumer TEXT NOT NULL)",
            )
            .await
            .unwrap();
        Arc::new(Self {
            db,
            calls: AtomicUsize::new(0),
            poison: std::sync::Mutex::new(Vec::new()),
            outage: AtomicUsize::new(0),
            _file: file,
        })
    }

    /// (rows in `applied`, distinct event ids among them).
    pub async fn counts(&self) -> (usize, usize) {
        let c = Counts::find_by_statement(Statement::from_string(
            self.db.db_backend(),
            "SELECT COUNT(*) AS rows, COUNT(DISTINCT event_id) AS distinct_ids FROM applied",
        ))
        .one(self.db.writer())
        .await
        .unwrap()
        .unwrap();
        (
            usize::try_from(c.rows).unwrap(),
            usize::try_from(c.distinct_ids).unwrap(),
        )
    }

    pub async fn applied_by(&self, consumer: &str) -> usize {
        #[derive(FromQueryResult)]
        struct N {
            n: i64,
        }
        let n = N::find_by_statement(Statement::from_sql_and_values(
            self.db.db_backend(),
            "SELECT COUNT(*) AS n FROM applied WHERE consumer = ?",
            [consumer.into()],
        ))
        .one(self.db.writer())
        .await
        .unwrap()
        .unwrap();
        usize::try_from(n.n).unwrap()
    }

    /// Waits until `n` distinct events were applied, or panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (_, distinct) = self.counts().await;
            if distinct >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {distinct} of {n} events applied in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A handler instance (several may share the consumer: competing replicas).
    pub fn handler(self: &Arc<Self>, name: &str) -> Arc<dyn Handler> {
        Arc::new(Instance {
            consumer: Arc::clone(self),
            name: name.to_owned(),
        })
    }
}

struct Instance {
    consumer: Arc<Consumer>,
    name: String,
}

impl Handler for Instance {
    fn handle<'a>(&'a self, d: Delivery<'a>) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            self.consumer.calls.fetch_add(1, Ordering::Relaxed);
            let text = std::str::from_utf8(d.payload).map_err(HandleError::poison)?;
            if self
                .consumer
                .poison
                .lock()
                .unwrap()
                .iter()
                .any(|p| p == text)
            {
                return Err(HandleError::poison("poison"));
            }
            // A dependency outage: the call fails as a database that does not
            // answer would, for as many calls as are left of it.
            if self
                .consumer
                .outage
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
            {
                return Err(HandleError::transient("the database does not answer"));
            }
            let id = EventId::parse(text).map_err(HandleError::poison)?;
            let db = &self.consumer.db;
            let txn = db.writer().begin().await.map_err(HandleError::transient)?;
            if outbox::record_inbox(&txn, id)
                .await
                .map_err(HandleError::transient)?
            {
                txn.execute_raw(Statement::from_sql_and_values(
                    db.db_backend(),
                    "INSERT INTO applied (event_id, consumer) VALUES (?, ?)",
                    [text.into(), self.name.clone().into()],
                ))
                .await
                .map_err(HandleError::transient)?;
            }
            txn.commit().await.map_err(HandleError::transient)?;
            Ok(())
        })
    }
}
