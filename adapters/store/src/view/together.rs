//! Folding many events in one write job (PostgreSQL).
//!
//! Every event a view consumer applies costs three statements when folded on
//! its own (the inbox entry, the read of its row, the write of it), each a
//! round trip to the server, and the view process folds about five events per
//! reservation. Here the events that queued up while the previous job ran are
//! folded together in four statements, whatever their number: one multi-row
//! inbox insert that answers which events are new, one read that locks the
//! rows they touch, and one multi-row write each for the rows that are new and
//! the rows that changed. The fold itself is the same [`domain_view::apply`],
//! event by event in arrival order, so a batch ends exactly where folding its
//! events one after another would have.
//!
//! Nothing is answered before the job committed (the writer answers after its
//! commit). A row another replica inserted after the read, or any failure,
//! makes the job undo its writes and answer `None`: then each event is folded
//! on its own, as before, which retries conflicts and reports failures.
//!
//! SQLite keeps folding event by event: its statements do not leave the
//! process, and folding together did not pay there (BENCHMARKS-LOG.md, run 9).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use domain_kernel::{Recorded, StoreError};
use domain_view::{ReservationView, ViewEvent};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, Iterable, QueryFilter, QueryOrder, QuerySelect,
};
use tokio::sync::{mpsc, oneshot};

use super::{Attempt, from_row, row, to_row};
use crate::db::Db;
use crate::error::store_err;
use crate::outbox::{self, inbox};
use crate::time_codec::micros;
use crate::writer::{Verdict, WriteTx};

/// Most events folded in one job (24 values a row: far below PostgreSQL's
/// 65,535 parameters a statement).
const MOST: usize = 256;

/// What a folded event became; `None`: fold it on its own.
type Reply = oneshot::Sender<Option<Attempt>>;

/// Where events wait to be folded together.
pub(super) type Queue = mpsc::Sender<(Arc<Recorded<ViewEvent>>, Reply)>;

/// Starts the task that folds what queued up together, one job at a time;
/// it ends when the queue's last sender is dropped.
pub(super) fn start(db: Db) -> Queue {
    let (queue, waiting) = mpsc::channel(4 * MOST);
    tokio::spawn(run(db, waiting));
    queue
}

/// Folds `event` with whatever else is waiting. `None`: fold it on its own
/// (the batch met a conflict or failed, or the task is gone).
pub(super) async fn fold(queue: &Queue, event: Arc<Recorded<ViewEvent>>) -> Option<Attempt> {
    let (reply, answer) = oneshot::channel();
    queue.send((event, reply)).await.ok()?;
    answer.await.ok().flatten()
}

async fn run(db: Db, mut waiting: mpsc::Receiver<(Arc<Recorded<ViewEvent>>, Reply)>) {
    let mut batch = Vec::with_capacity(MOST);
    while let Some(first) = waiting.recv().await {
        batch.push(first);
        while batch.len() < MOST {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // A caller that stopped waiting (its delivery was abandoned) gets
        // its event again from the broker.
        batch.retain(|(_, reply)| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let events: Arc<[Arc<Recorded<ViewEvent>>]> =
            batch.iter().map(|(e, _)| Arc::clone(e)).collect();
        let folded = db
            .write(move |tx| Box::pin(fold_all(tx, Arc::clone(&events))))
            .await;
        match folded {
            Ok(Some(attempts)) => {
                for ((_, reply), attempt) in batch.drain(..).zip(attempts) {
                    let _ = reply.send(Some(attempt));
                }
            }
            Ok(None) | Err(_) => {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(None);
                }
            }
        }
    }
}

/// One view row as the batch folds it.
struct Folding {
    current: Option<ReservationView>,
    created_at: Option<i64>,
    /// The row was there when read (and is locked since).
    stored: bool,
    changed: bool,
}

async fn fold_all(
    tx: &WriteTx,
    events: Arc<[Arc<Recorded<ViewEvent>>]>,
) -> Result<Verdict<Option<Vec<Attempt>>>, StoreError> {
    // An event twice in one batch (delivered again while its first delivery
    // waited here) is folded once.
    let mut seen = HashSet::new();
    let first: Vec<bool> = events
        .iter()
        .map(|e| seen.insert(e.event_id.to_string()))
        .collect();
    // Rows are written (and locked) in one order, the key's, whatever the
    // arrival order: two replicas' batches then never wait for each other
    // in a circle.
    let mut ids: Vec<String> = seen.into_iter().collect();
    ids.sort_unstable();
    let fresh = record_all(tx, ids).await?;
    let ids: Vec<String> = events
        .iter()
        .filter(|e| fresh.contains(&e.event_id.to_string()))
        .map(|e| e.event.reservation_id.to_string())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut rows: HashMap<String, Folding> = HashMap::new();
    if !ids.is_empty() {
        // Locked until the commit: no other replica changes them meanwhile.
        let stored = row::Entity::find()
            .filter(row::Column::ReservationId.is_in(ids.iter().map(String::as_str)))
            .order_by_asc(row::Column::ReservationId)
            .lock_exclusive()
            .all(tx.conn())
            .await
            .map_err(store_err)?;
        for m in stored {
            let created_at = m.created_at;
            rows.insert(
                m.reservation_id.clone(),
                Folding {
                    current: Some(from_row(m)?),
                    created_at: Some(created_at),
                    stored: true,
                    changed: false,
                },
            );
        }
    }
    let mut attempts = Vec::with_capacity(events.len());
    for (event, first) in events.iter().zip(first) {
        let id = event.event_id.to_string();
        if !first || !fresh.contains(&id) {
            attempts.push(Attempt::Duplicate);
            continue;
        }
        let folding = rows
            .entry(event.event.reservation_id.to_string())
            .or_insert(Folding {
                current: None,
                created_at: None,
                stored: false,
                changed: false,
            });
        match domain_view::apply(folding.current.as_ref(), event) {
            None => attempts.push(Attempt::Unchanged),
            Some(next) => {
                folding
                    .created_at
                    .get_or_insert_with(|| micros(event.occurred_at));
                folding.changed = true;
                attempts.push(Attempt::Written(Box::new(next.clone())));
                folding.current = Some(next);
            }
        }
    }
    let (mut new, mut changed) = (Vec::new(), Vec::new());
    let mut rows: Vec<(String, Folding)> = rows.into_iter().filter(|(_, f)| f.changed).collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (_, folding) in rows {
        if let (Some(view), Some(created_at)) = (&folding.current, folding.created_at) {
            let values = to_row(view, created_at);
            if folding.stored {
                changed.push(values);
            } else {
                new.push(values);
            }
        }
    }
    let expected = (new.len(), changed.len());
    if !new.is_empty() {
        // Another replica may have inserted one since the read.
        let inserted = row::Entity::insert_many(new)
            .on_conflict(
                OnConflict::column(row::Column::ReservationId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(tx.conn())
            .await
            .map_err(store_err)?;
        if usize::try_from(inserted).ok() != Some(expected.0) {
            return Ok(Verdict::Undo(None));
        }
    }
    if !changed.is_empty() {
        let updated = row::Entity::insert_many(changed)
            .on_conflict(
                OnConflict::column(row::Column::ReservationId)
                    .update_columns(row::Column::iter().filter(|c| {
                        !matches!(c, row::Column::ReservationId | row::Column::CreatedAt)
                    }))
                    .to_owned(),
            )
            .exec_without_returning(tx.conn())
            .await
            .map_err(store_err)?;
        if usize::try_from(updated).ok() != Some(expected.1) {
            return Ok(Verdict::Undo(None));
        }
    }
    Ok(Verdict::Keep(Some(attempts)))
}

/// Inbox entries for `ids` in one statement; answers the ids that were not
/// there yet.
async fn record_all(tx: &WriteTx, ids: Vec<String>) -> Result<HashSet<String>, StoreError> {
    let now = outbox::now_micros();
    let mut insert = Query::insert();
    insert
        .into_table(inbox::Entity)
        .columns([inbox::Column::EventId, inbox::Column::HandledAt]);
    for id in ids {
        insert
            .values([id.into(), now.into()])
            .map_err(|e| StoreError::new(e.to_string()))?;
    }
    insert
        .on_conflict(
            OnConflict::column(inbox::Column::EventId)
                .do_nothing()
                .to_owned(),
        )
        .returning_col(inbox::Column::EventId);
    tx.conn()
        .query_all(&insert)
        .await
        .map_err(store_err)?
        .into_iter()
        .map(|r| {
            r.try_get::<String>("", "event_id")
                .map_err(|e| StoreError::new(e.to_string()))
        })
        .collect()
}
