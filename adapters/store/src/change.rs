//! The one-row changes most repositories make: insert a new row, or update a
//! row at the version it was read at, with the change's events in the outbox and
//! its causing event in the inbox, as one write job ([`Db::write`]).

use std::sync::Arc;

use domain_kernel::{EventId, OutgoingEvent, StoreError};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
};

use crate::db::Db;
use crate::error::{is_unique_violation, store_err};
use crate::outbox;
use crate::writer::Verdict;

/// What became of a one-row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Committed with its events.
    Done,
    /// The causing event was handled before: nothing was written.
    AlreadyHandled,
    /// The key exists already (insert) or the row changed since it was read
    /// (update): nothing was written.
    Refused,
}

/// Inserts `row` with `events`, recording `caused_by` in the inbox.
pub(crate) async fn insert<A>(
    db: &Db,
    caused_by: Option<EventId>,
    row: A,
    events: Arc<[OutgoingEvent]>,
) -> Result<Change, StoreError>
where
    A: ActiveModelTrait + Clone + Send + Sync + 'static,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    db.write(move |tx| {
        let (row, events) = (row.clone(), Arc::clone(&events));
        Box::pin(async move {
            if !outbox::record_cause(tx, caused_by).await? {
                return Ok(Verdict::Keep(Change::AlreadyHandled));
            }
            // PostgreSQL aborts the transaction on a unique violation: undo it.
            if !insert_unique(tx.conn(), row).await? {
                return Ok(Verdict::Undo(Change::Refused));
            }
            outbox::append_in(tx, &events).await?;
            Ok(Verdict::Keep(Change::Done))
        })
    })
    .await
}

/// Sets `values` on the row `key` if its `version` column still holds
/// `expected`, with `events`, recording `caused_by` in the inbox.
pub(crate) async fn update<A>(
    db: &Db,
    caused_by: Option<EventId>,
    values: A,
    key: (<A::Entity as EntityTrait>::Column, String),
    version: <A::Entity as EntityTrait>::Column,
    expected: u64,
    events: Arc<[OutgoingEvent]>,
) -> Result<Change, StoreError>
where
    A: ActiveModelTrait + Clone + Send + Sync + 'static,
    <A::Entity as EntityTrait>::Column: Send + Sync,
{
    db.write(move |tx| {
        let (values, key, events) = (values.clone(), key.clone(), Arc::clone(&events));
        Box::pin(async move {
            if !outbox::record_cause(tx, caused_by).await? {
                return Ok(Verdict::Keep(Change::AlreadyHandled));
            }
            if !update_versioned(tx.conn(), values, key, version, expected).await? {
                // The inbox row must go too.
                return Ok(Verdict::Undo(Change::Refused));
            }
            outbox::append_in(tx, &events).await?;
            Ok(Verdict::Keep(Change::Done))
        })
    })
    .await
}

/// Inserts `row`; `Ok(false)` when a unique key already holds it. (On
/// PostgreSQL the transaction is then aborted: the caller must undo it.)
pub(crate) async fn insert_unique<C, A>(conn: &C, row: A) -> Result<bool, StoreError>
where
    C: ConnectionTrait,
    A: ActiveModelTrait + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    match <A::Entity as EntityTrait>::insert(row)
        .exec_without_returning(conn)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(store_err(e)),
    }
}

/// `UPDATE … SET values WHERE key = id AND version = expected`: `Ok(true)` when
/// it changed the one row, `Ok(false)` when someone else changed it first.
pub(crate) async fn update_versioned<C, A>(
    conn: &C,
    values: A,
    key: (<A::Entity as EntityTrait>::Column, String),
    version: <A::Entity as EntityTrait>::Column,
    expected: u64,
) -> Result<bool, StoreError>
where
    C: ConnectionTrait,
    A: ActiveModelTrait + Send,
{
    let updated = <A::Entity as EntityTrait>::update_many()
        .set(values)
        .filter(key.0.eq(key.1))
        .filter(version.eq(i64::try_from(expected).unwrap_or(i64::MAX)))
        .exec(conn)
        .await
        .map_err(store_err)?;
    Ok(updated.rows_affected == 1)
}
