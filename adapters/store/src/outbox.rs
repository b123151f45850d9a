//! The transactional outbox and inbox every service database has.
//!
//! Repositories call [`record_cause`] and [`append_in`] inside the write job of
//! the state change ([`Db::write`](crate::Db::write)); the relay reads [`unsent`]
//! and calls [`mark_sent`] after the publisher confirmed.

use domain_kernel::{EventId, OutgoingEvent, StoreError};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ConnectionTrait, DbBackend, QueryOrder, QuerySelect, Set, TransactionTrait};

use crate::error::store_err;
use crate::writer::WriteTx;

/// The `NOTIFY` channel an outbox insert signals (PostgreSQL only, from the
/// trigger of migration `m0100_outbox_notify`), so the relay holding the lease
/// publishes rows other replicas wrote at once
/// ([`Db::listen_for_commits`](crate::Db::listen_for_commits)).
pub const OUTBOX_CHANNEL: &str = "roaming_outbox";

pub mod message {
    //! `outbox`: events committed with their state change, in commit order.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// Commit order; the relay publishes by it.
        #[sea_orm(primary_key)]
        pub seq: i64,
        #[sea_orm(unique)]
        pub event_id: String,
        pub subject: String,
        pub payload: Vec<u8>,
        /// JSON array of `[name, value]` pairs.
        pub headers: String,
        pub created_at: i64,
        /// Set once the publisher confirmed the event.
        #[sea_orm(indexed)]
        pub sent_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod inbox {
    //! `inbox`: ids of events whose effect is committed here.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub handled_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod lease {
    //! `relay_lease`: which relay instance may publish this database's outbox.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "relay_lease")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub holder: String,
        pub expires_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) fn now_micros() -> i64 {
    crate::time_codec::micros(time::OffsetDateTime::now_utc())
}

/// A hook that returns headers to add to every event written now (the W3C trace
/// context of the current span, once observability provides it).
pub type HeaderHook = fn() -> Vec<(String, String)>;

fn no_headers() -> Vec<(String, String)> {
    Vec::new()
}

static HEADER_HOOK: std::sync::OnceLock<HeaderHook> = std::sync::OnceLock::new();

/// Installs the process-wide header hook (first call wins).
pub fn set_header_hook(hook: HeaderHook) {
    let _ = HEADER_HOOK.set(hook);
}

/// Appends events to the outbox inside the caller's transaction.
pub async fn append<C: ConnectionTrait>(
    conn: &C,
    events: &[OutgoingEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let extra = HEADER_HOOK.get().copied().unwrap_or(no_headers)();
    let now = now_micros();
    let rows = events.iter().map(|e| {
        let headers: Vec<_> = e
            .headers
            .iter()
            .chain(extra.iter())
            .map(|(k, v)| [k, v])
            .collect();
        message::ActiveModel {
            event_id: Set(e.event_id.to_string()),
            subject: Set(e.subject.clone()),
            payload: Set(e.payload.clone()),
            headers: Set(serde_json::to_string(&headers).unwrap_or_else(|_| "[]".to_owned())),
            created_at: Set(now),
            sent_at: Set(None),
            ..Default::default()
        }
    });
    message::Entity::insert_many(rows)
        .exec(conn)
        .await
        .map_err(store_err)?;
    Ok(())
}

/// Records that `event_id`'s effect is being committed in this transaction.
/// `Ok(false)` when it already was: the caller must not apply it again.
pub async fn record_inbox<C: ConnectionTrait>(
    conn: &C,
    event_id: EventId,
) -> Result<bool, StoreError> {
    let row = inbox::ActiveModel {
        event_id: Set(event_id.to_string()),
        handled_at: Set(now_micros()),
    };
    let inserted = inbox::Entity::insert(row)
        .on_conflict(
            OnConflict::column(inbox::Column::EventId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await
        .map_err(store_err)?;
    Ok(inserted == 1)
}

/// Records `caused_by` (if any) in the inbox of the write transaction `tx`.
/// `Ok(false)`: the event was handled before (nothing was written), so the
/// change must not be made again.
pub async fn record_cause(tx: &WriteTx, caused_by: Option<EventId>) -> Result<bool, StoreError> {
    match caused_by {
        Some(id) => record_inbox(tx.conn(), id).await,
        None => Ok(true),
    }
}

/// Appends `events` to the outbox of the write transaction `tx`; the relay is
/// woken once it committed.
pub async fn append_in(tx: &WriteTx, events: &[OutgoingEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    append(tx.conn(), events).await?;
    tx.appended();
    Ok(())
}

/// Whether `event_id` is in the inbox.
pub async fn handled<C: ConnectionTrait>(conn: &C, event_id: EventId) -> Result<bool, StoreError> {
    Ok(inbox::Entity::find_by_id(event_id.to_string())
        .one(conn)
        .await
        .map_err(store_err)?
        .is_some())
}

/// A committed, not yet confirmed event.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub event: OutgoingEvent,
}

/// The relay's read of the oldest unsent rows.
fn unsent_query(limit: u64) -> sea_orm::Select<message::Entity> {
    message::Entity::find()
        .filter(message::Column::SentAt.is_null())
        .order_by_asc(message::Column::Seq)
        .limit(limit)
}

/// How [`unsent`] reads on PostgreSQL (see there).
const UNSENT_PLAN_POSTGRES: &str = "SET LOCAL enable_bitmapscan = off";

/// Up to `limit` unsent events, oldest first.
///
/// On PostgreSQL this walks the partial index of unsent rows in `seq` order
/// (migration `m0101_outbox_unsent`), with bitmap scans off. Every row marked
/// sent leaves a dead entry in that index until vacuum removes it; a bitmap
/// scan (which the planner picks while the table has no statistics yet, as
/// after a deploy) visits every one of them on every step and never marks
/// them dead, while a plain index scan marks each as it passes it, so the
/// next step skips it.
pub async fn unsent(conn: &DatabaseConnection, limit: u64) -> Result<Vec<Pending>, StoreError> {
    let query = unsent_query(limit);
    let rows = if conn.get_database_backend() == DbBackend::Postgres {
        let txn = conn.begin().await.map_err(store_err)?;
        txn.execute_unprepared(UNSENT_PLAN_POSTGRES)
            .await
            .map_err(store_err)?;
        let rows = query.all(&txn).await.map_err(store_err)?;
        crate::error::commit_within(txn).await?;
        rows
    } else {
        query.all(conn).await.map_err(store_err)?
    };
    decode_pending(rows)
}

fn decode_pending(rows: Vec<message::Model>) -> Result<Vec<Pending>, StoreError> {
    rows.into_iter()
        .map(|r| {
            let headers: Vec<[String; 2]> = serde_json::from_str(&r.headers)
                .map_err(|e| StoreError::msg(format!("outbox row {} headers: {e}", r.seq)))?;
            Ok(Pending {
                seq: r.seq,
                event: OutgoingEvent {
                    event_id: EventId::parse(&r.event_id).map_err(|e| {
                        StoreError::msg(format!("outbox row {} event id: {e}", r.seq))
                    })?,
                    subject: r.subject,
                    payload: r.payload,
                    headers: headers.into_iter().map(|[k, v]| (k, v)).collect(),
                },
            })
        })
        .collect()
}

/// [`unsent`] in one statement on `conn`, a PostgreSQL connection whose
/// session has bitmap scans off already (the relay's,
/// [`Db::outbox_reader`](crate::Db::outbox_reader)): no transaction of four
/// statements around it.
pub async fn unsent_on(conn: &DatabaseConnection, limit: u64) -> Result<Vec<Pending>, StoreError> {
    let rows = unsent_query(limit).all(conn).await.map_err(store_err)?;
    decode_pending(rows)
}

/// Marks rows sent (the publisher confirmed them).
pub async fn mark_sent<C: ConnectionTrait>(conn: &C, seqs: &[i64]) -> Result<(), StoreError> {
    if seqs.is_empty() {
        return Ok(());
    }
    message::Entity::update_many()
        .col_expr(message::Column::SentAt, Expr::value(now_micros()))
        .filter(message::Column::Seq.is_in(seqs.iter().copied()))
        .exec(conn)
        .await
        .map_err(store_err)?;
    Ok(())
}

/// Deletes rows sent more than `older_than_micros` ago; returns how many.
pub async fn purge_sent<C: ConnectionTrait>(
    conn: &C,
    older_than_micros: i64,
) -> Result<u64, StoreError> {
    let cutoff = now_micros() - older_than_micros;
    let r = crate::error::autocommit(
        message::Entity::delete_many()
            .filter(message::Column::SentAt.lt(cutoff))
            .exec(conn),
    )
    .await?;
    Ok(r.rows_affected)
}

/// How many events wait, and since when (microseconds) the oldest waits.
pub async fn backlog<C: ConnectionTrait>(conn: &C) -> Result<(u64, Option<i64>), StoreError> {
    let unsent = message::Entity::find().filter(message::Column::SentAt.is_null());
    let count = unsent.clone().count(conn).await.map_err(store_err)?;
    let oldest = unsent
        .order_by_asc(message::Column::Seq)
        .one(conn)
        .await
        .map_err(store_err)?
        .map(|r| r.created_at);
    Ok((count, oldest))
}

/// Takes or renews the lease `name` for `holder` until `ttl_micros` from now.
/// `Ok(false)`: another live holder has it.
pub async fn acquire_lease<C: ConnectionTrait>(
    conn: &C,
    name: &str,
    holder: &str,
    ttl_micros: i64,
) -> Result<bool, StoreError> {
    let now = now_micros();
    let renewed = crate::error::autocommit(
        lease::Entity::update_many()
            .col_expr(lease::Column::Holder, Expr::value(holder))
            .col_expr(lease::Column::ExpiresAt, Expr::value(now + ttl_micros))
            .filter(lease::Column::Name.eq(name))
            .filter(
                sea_orm::Condition::any()
                    .add(lease::Column::Holder.eq(holder))
                    .add(lease::Column::ExpiresAt.lt(now)),
            )
            .exec(conn),
    )
    .await?;
    if renewed.rows_affected == 1 {
        return Ok(true);
    }
    let row = lease::ActiveModel {
        name: Set(name.to_owned()),
        holder: Set(holder.to_owned()),
        expires_at: Set(now + ttl_micros),
    };
    let inserted = crate::error::autocommit(
        lease::Entity::insert(row)
            .on_conflict(
                OnConflict::column(lease::Column::Name)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(conn),
    )
    .await?;
    Ok(inserted == 1)
}

/// Gives the lease up (on shutdown), so another relay takes over at once.
pub async fn release_lease<C: ConnectionTrait>(
    conn: &C,
    name: &str,
    holder: &str,
) -> Result<(), StoreError> {
    crate::error::autocommit(
        lease::Entity::delete_many()
            .filter(lease::Column::Name.eq(name))
            .filter(lease::Column::Holder.eq(holder))
            .exec(conn),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;

    use domain_kernel::{IdGenerator, OutgoingEvent, UuidV7};
    use sea_orm::ConnectionTrait;

    use crate::Db;
    use crate::migrations::PaymentMigrator;
    use crate::testing::{TestDatabase, plan};
    use crate::writer::Verdict;

    /// The plan of the relay's read, as `unsent_on` runs it (on the
    /// outbox reader, whose session settings must hold for it).
    async fn unsent_plan(db: &Db) -> String {
        plan(db.outbox_reader(), &super::unsent_query(256))
            .await
            .join("\n")
    }

    /// The relay reads the oldest unsent rows every step: on PostgreSQL that
    /// must walk the index of unsent rows in order, by a plain index scan
    /// (which marks the dead versions left by `mark_sent` as it passes them),
    /// never a bitmap scan (which visits all of them again on every step
    /// until vacuum runs) nor the primary key through every row kept sent.
    #[tokio::test]
    async fn the_relay_reads_unsent_rows_by_an_index_scan_on_postgres() {
        let database = TestDatabase::postgres().await;
        let db = Db::connect::<PaymentMigrator>(database.url())
            .await
            .unwrap();
        let events: Arc<[OutgoingEvent]> = (0..5_000)
            .map(|_| OutgoingEvent {
                event_id: UuidV7.event_id(),
                subject: "roaming.payment.captured".to_owned(),
                payload: vec![1, 2, 3],
                headers: Vec::new(),
            })
            .collect();
        db.write(move |tx| {
            let events = Arc::clone(&events);
            Box::pin(async move {
                super::append_in(tx, &events).await?;
                Ok(Verdict::Keep(()))
            })
        })
        .await
        .unwrap();
        let sent: Vec<i64> = super::unsent(db.reader(), 5_000)
            .await
            .unwrap()
            .iter()
            .map(|p| p.seq)
            .collect();
        assert_eq!(sent.len(), 5_000);
        super::mark_sent(db.writer(), &sent).await.unwrap();

        // Dead versions, no statistics (a fresh deploy under load).
        let plan = unsent_plan(&db).await;
        assert!(plan.contains("Index Scan using ix_outbox_unsent"), "{plan}");
        assert!(!plan.contains("Bitmap"), "{plan}");
        // Sent rows kept, statistics known (a database that has run a while).
        db.writer()
            .execute_unprepared("VACUUM ANALYZE outbox")
            .await
            .unwrap();
        let plan = unsent_plan(&db).await;
        assert!(plan.contains("Index Scan using ix_outbox_unsent"), "{plan}");
        assert!(super::unsent(db.reader(), 256).await.unwrap().is_empty());
    }
}
