//! The view database: "my page" rows folded from events, and a watch channel
//! per watched reservation for `WatchReservation` ([`ViewStore::watch`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use domain_kernel::{
    BoothCode, CustomerId, LotCode, Money, Recorded, ReservationId, Serial, SpaceId, StoreError,
};
use domain_parking::SessionStatus;
use domain_payment::PaymentStatus;
use domain_rental::RentalStatus;
use domain_reservation::Status;
use domain_view::{
    Applied, Cursor, ReservationView, SpaceLot, StatusChange, ViewChanges, ViewEvent,
    ViewRepository,
};
use sea_orm::ActiveValue::NotSet;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use time::{Date, Duration};
use tokio::sync::watch;

use crate::change::update_versioned;
use crate::db::Db;
use crate::details::DetailsColumns;
use crate::error::{corrupt, store_err};
use crate::outbox;
use crate::time_codec::{date_text, from_micros, micros};
use crate::writer::{Verdict, WriteTx};

pub mod entities {
    //! Tables of the view database.

    pub mod view {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "reservation_views")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub reservation_id: String,
            pub customer_id: Option<String>,
            pub status: String,
            pub price_currency: Option<String>,
            pub price_minor: Option<i64>,
            pub kind: Option<String>,
            pub device_model: Option<String>,
            pub country: Option<String>,
            #[sea_orm(indexed)]
            pub pickup_booth: Option<String>,
            #[sea_orm(indexed)]
            pub return_booth: Option<String>,
            pub start_date: Option<String>,
            pub end_date: Option<String>,
            #[sea_orm(indexed)]
            pub space_id: Option<String>,
            pub vehicle_plate: Option<String>,
            pub window_start: Option<i64>,
            pub window_end: Option<i64>,
            pub payment_status: Option<String>,
            pub rental_status: Option<String>,
            pub session_status: Option<String>,
            pub device_serial: Option<String>,
            /// JSON array of `[status, micros]`.
            pub history: String,
            pub created_at: i64,
            pub updated_at: i64,
            pub version: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod space_lot {
        //! The lot of every space the parking service registered, so a
        //! gate's schedule request can be held to its own lot.
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "space_lots")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub space_id: String,
            pub lot: String,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod rebuild {
        //! Where a rebuilt view database continues (`roaming view rebuild`):
        //! per stream, the last sequence the rebuild applied and the durable
        //! consumer created to go on from the next one. Empty in a database
        //! the view service built itself (its durable is `view`).
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "view_rebuilds")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub stream: String,
            pub durable: String,
            pub last_seq: i64,
            /// Events of the stream the rebuild read.
            pub events: i64,
            /// Microseconds since the epoch.
            pub rebuilt_at: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{rebuild, space_lot, view as row};

mod together;

/// Where a rebuild left one stream (see [`entities::rebuild`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuiltStream {
    pub stream: String,
    pub durable: String,
    pub last_seq: u64,
    pub events: u64,
}

/// What a view database holds, counted (for a rebuild's report and its
/// check that it starts from nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewCounts {
    pub views: u64,
    pub space_lots: u64,
    /// Events in the inbox.
    pub events: u64,
    /// Streams a rebuild recorded.
    pub rebuilt_streams: u64,
}

const CONFLICT_RETRIES: usize = 10;

/// How [`corrupt`] names this store's rows.
const RECORD: &str = "view";

fn to_row(v: &ReservationView, created_at: i64) -> row::ActiveModel {
    let c = v
        .details
        .as_ref()
        .map(DetailsColumns::of)
        .unwrap_or_default();
    let history: Vec<(String, i64)> = v
        .history
        .iter()
        .map(|h| (h.status.as_str().to_owned(), micros(h.at)))
        .collect();
    row::ActiveModel {
        reservation_id: Set(v.reservation_id.to_string()),
        customer_id: Set(v.customer_id.as_ref().map(ToString::to_string)),
        status: Set(v.status.as_str().to_owned()),
        price_currency: Set(v.price.map(|p| p.currency().to_string())),
        price_minor: Set(v.price.map(|p| p.minor_units())),
        kind: Set(v.details.is_some().then_some(c.kind)),
        device_model: Set(c.device_model),
        country: Set(c.country),
        pickup_booth: Set(c.pickup_booth),
        return_booth: Set(c.return_booth),
        start_date: Set(c.start_date),
        end_date: Set(c.end_date),
        space_id: Set(c.space_id),
        vehicle_plate: Set(c.vehicle_plate),
        window_start: Set(c.window_start),
        window_end: Set(c.window_end),
        payment_status: Set(v.payment_status.map(|s| s.as_str().to_owned())),
        rental_status: Set(v.rental_status.map(|s| s.as_str().to_owned())),
        session_status: Set(v.session_status.map(|s| s.as_str().to_owned())),
        device_serial: Set(v.device_serial.as_ref().map(ToString::to_string)),
        history: Set(serde_json::to_string(&history).unwrap_or_else(|_| "[]".to_owned())),
        created_at: Set(created_at),
        updated_at: Set(micros(v.updated_at)),
        version: Set(i64::try_from(v.version).unwrap_or(i64::MAX)),
    }
}

fn from_row(m: row::Model) -> Result<ReservationView, StoreError> {
    let history: Vec<(String, i64)> =
        serde_json::from_str(&m.history).map_err(|e| corrupt(RECORD, "history", e))?;
    let details = match m.kind {
        Some(kind) => Some(
            DetailsColumns {
                kind,
                device_model: m.device_model,
                country: m.country,
                pickup_booth: m.pickup_booth,
                return_booth: m.return_booth,
                start_date: m.start_date,
                end_date: m.end_date,
                space_id: m.space_id,
                vehicle_plate: m.vehicle_plate,
                window_start: m.window_start,
                window_end: m.window_end,
            }
            .details()?,
        ),
        None => None,
    };
    let price = match (m.price_currency, m.price_minor) {
        (Some(c), Some(n)) => Some(Money::parse(&c, n).map_err(|e| corrupt(RECORD, "price", e))?),
        _ => None,
    };
    Ok(ReservationView {
        reservation_id: ReservationId::parse(&m.reservation_id)
            .map_err(|e| corrupt(RECORD, "reservation_id", e))?,
        customer_id: m
            .customer_id
            .map(|c| CustomerId::parse(&c).map_err(|e| corrupt(RECORD, "customer_id", e)))
            .transpose()?,
        status: Status::parse(&m.status).ok_or_else(|| corrupt(RECORD, "status", &m.status))?,
        price,
        details,
        payment_status: m
            .payment_status
            .map(|s| PaymentStatus::parse(&s).ok_or_else(|| corrupt(RECORD, "payment_status", s)))
            .transpose()?,
        rental_status: m
            .rental_status
            .map(|s| RentalStatus::parse(&s).ok_or_else(|| corrupt(RECORD, "rental_status", s)))
            .transpose()?,
        session_status: m
            .session_status
            .map(|s| SessionStatus::parse(&s).ok_or_else(|| corrupt(RECORD, "session_status", s)))
            .transpose()?,
        device_serial: m
            .device_serial
            .map(|s| Serial::parse(&s).map_err(|e| corrupt(RECORD, "device_serial", e)))
            .transpose()?,
        history: history
            .into_iter()
            .map(|(s, at)| {
                Ok(StatusChange {
                    status: Status::parse(&s).ok_or_else(|| corrupt(RECORD, "history", &s))?,
                    at: from_micros(at)?,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        updated_at: from_micros(m.updated_at)?,
        version: u64::try_from(m.version).map_err(|e| corrupt(RECORD, "version", e))?,
    })
}

/// One attempt to fold an event into its view.
enum Attempt {
    Duplicate,
    Unchanged,
    /// A concurrent consumer changed the row first: try again.
    Conflict,
    Written(Box<ReservationView>),
}

async fn fold(
    tx: &WriteTx,
    event: Arc<Recorded<ViewEvent>>,
) -> Result<Verdict<Attempt>, StoreError> {
    if !outbox::record_cause(tx, Some(event.event_id)).await? {
        return Ok(Verdict::Keep(Attempt::Duplicate));
    }
    let stored = row::Entity::find_by_id(event.event.reservation_id.to_string())
        .one(tx.conn())
        .await
        .map_err(store_err)?;
    let created_at = stored
        .as_ref()
        .map_or_else(|| micros(event.occurred_at), |s| s.created_at);
    let current = stored.map(from_row).transpose()?;
    let Some(next) = domain_view::apply(current.as_ref(), &event) else {
        return Ok(Verdict::Keep(Attempt::Unchanged));
    };
    let written = match &current {
        None => {
            let inserted = row::Entity::insert(to_row(&next, created_at))
                .on_conflict(
                    sea_orm::sea_query::OnConflict::column(row::Column::ReservationId)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(tx.conn())
                .await
                .map_err(store_err)?;
            inserted == 1
        }
        Some(cur) => {
            let mut values = to_row(&next, created_at);
            values.reservation_id = NotSet;
            let key = (row::Column::ReservationId, next.reservation_id.to_string());
            update_versioned(tx.conn(), values, key, row::Column::Version, cur.version).await?
        }
    };
    if !written {
        // Undo the inbox entry too, and try again.
        return Ok(Verdict::Undo(Attempt::Conflict));
    }
    Ok(Verdict::Keep(Attempt::Written(Box::new(next))))
}

/// Puts `next` on a reservation's watch channel unless the channel already
/// holds a newer version. Two folds of one reservation (events from two
/// contexts) can commit in one batch and their callers wake in either order;
/// a plain replace then left the older state last, the watcher (which sees
/// only the latest value) skipped the newer one, and only the periodic
/// re-read, 5 s later on SQLite, brought it (BENCHMARKS-LOG.md, run 6).
fn offer_newer(tx: &watch::Sender<Option<ReservationView>>, next: &ReservationView) {
    tx.send_if_modified(|held| {
        if held.as_ref().is_some_and(|h| h.version >= next.version) {
            return false;
        }
        *held = Some(next.clone());
        true
    });
}

/// "My page" rows, outbox-less (the view publishes nothing), with an inbox.
#[derive(Debug, Clone)]
pub struct ViewStore {
    db: Db,
    watchers: Watchers,
    /// Whether the task that re-reads watched views ([`refresh_watched`]) runs.
    refreshing: Arc<std::sync::atomic::AtomicBool>,
    /// On PostgreSQL, where events wait to be folded together
    /// ([`together`]); started by the first event.
    together: Arc<std::sync::OnceLock<together::Queue>>,
}

/// Most watched views re-read in one statement.
const REFRESH_CHUNK: usize = 500;

/// Re-reads every watched view, `REFRESH_CHUNK` per statement, and offers each
/// to its watchers: the changes other processes commit (view replicas sharing
/// a PostgreSQL database as competing consumers) reach a watcher this way.
/// One task per store, whatever the number of watchers: a re-read per watcher
/// every 250 ms was thousands of reads a second with thousands of watchers
/// (the benchmark's event phase), which took every pooled connection and left
/// the consumers none (BENCHMARKS-LOG.md, run 7). Ends with the store.
async fn refresh_watched(
    db: Db,
    watchers: std::sync::Weak<WatchersMap>,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(map) = watchers.upgrade() else {
            return;
        };
        let ids: Vec<String> = map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .map(ToString::to_string)
            .collect();
        for chunk in ids.chunks(REFRESH_CHUNK) {
            let rows = match row::Entity::find()
                .filter(row::Column::ReservationId.is_in(chunk.iter().map(String::as_str)))
                .all(db.reader())
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "re-reading watched views failed; trying again");
                    break;
                }
            };
            for row in rows {
                match from_row(row) {
                    Ok(view) => {
                        if let Some(tx) = map
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(&view.reservation_id)
                        {
                            offer_newer(tx, &view);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "a watched view does not decode"),
                }
            }
        }
    }
}

/// A watch channel per reservation somebody watches (only those: a change of
/// a reservation nobody watches costs one map lookup).
type Watchers = Arc<WatchersMap>;
type WatchersMap = Mutex<HashMap<ReservationId, watch::Sender<Option<ReservationView>>>>;

/// The committed changes of one reservation's view, latest first: a watcher
/// that falls behind skips to the newest state, never sees an older one after
/// a newer one.
#[derive(Debug)]
pub struct ViewWatch {
    id: ReservationId,
    changes: watch::Receiver<Option<ReservationView>>,
    watchers: Watchers,
}

impl ViewChanges for ViewWatch {
    async fn changed(&mut self) -> Option<ReservationView> {
        loop {
            self.changes.changed().await.ok()?;
            if let Some(v) = self.changes.borrow_and_update().clone() {
                return Some(v);
            }
        }
    }
}

impl Drop for ViewWatch {
    fn drop(&mut self) {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        // This receiver is still alive here: the last watcher sees a count of 1.
        if watchers
            .get(&self.id)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            watchers.remove(&self.id);
        }
    }
}

impl ViewStore {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            watchers: Arc::default(),
            refreshing: Arc::default(),
            together: Arc::default(),
        }
    }

    /// How often watched views are re-read: on PostgreSQL other replicas
    /// commit changes to them; on SQLite every change passes this store and
    /// the re-read is only a safety net.
    fn refresh_every(&self) -> std::time::Duration {
        if self.db.backend() == crate::Backend::Postgres {
            std::time::Duration::from_millis(250)
        } else {
            std::time::Duration::from_secs(5)
        }
    }

    /// Starts [`refresh_watched`] once, from the first watch (inside the
    /// runtime).
    fn start_refreshing(&self) {
        use std::sync::atomic::Ordering;
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(refresh_watched(
            self.db.clone(),
            Arc::downgrade(&self.watchers),
            self.refresh_every(),
        ));
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Hands a committed change to the reservation's watchers, if any.
    fn offer(&self, next: &ReservationView) {
        if let Some(tx) = self
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&next.reservation_id)
        {
            offer_newer(tx, next);
        }
    }

    /// The durable consumer this database is fed by: the one a rebuild
    /// recorded, `None` for a database the view service built itself.
    ///
    /// # Errors
    /// The database's.
    pub async fn rebuilt_durable(&self) -> Result<Option<String>, StoreError> {
        Ok(rebuild::Entity::find()
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(|m| m.durable))
    }

    /// Records where a rebuild left each stream, in one transaction: from now
    /// on the view service reads with that durable.
    ///
    /// # Errors
    /// The database's.
    pub async fn record_rebuild(&self, streams: &[RebuiltStream]) -> Result<(), StoreError> {
        let now = micros(time::OffsetDateTime::now_utc());
        let rows: Vec<rebuild::ActiveModel> = streams
            .iter()
            .map(|s| rebuild::ActiveModel {
                stream: Set(s.stream.clone()),
                durable: Set(s.durable.clone()),
                last_seq: Set(i64::try_from(s.last_seq).unwrap_or(i64::MAX)),
                events: Set(i64::try_from(s.events).unwrap_or(i64::MAX)),
                rebuilt_at: Set(now),
            })
            .collect();
        self.db
            .write(move |tx| {
                let rows = rows.clone();
                Box::pin(async move {
                    if !rows.is_empty() {
                        rebuild::Entity::insert_many(rows)
                            .exec_without_returning(tx.conn())
                            .await
                            .map_err(store_err)?;
                    }
                    Ok(Verdict::Keep(()))
                })
            })
            .await
    }

    /// Where a rebuild left each stream (empty unless this database was rebuilt).
    ///
    /// # Errors
    /// The database's.
    pub async fn rebuilt_streams(&self) -> Result<Vec<RebuiltStream>, StoreError> {
        rebuild::Entity::find()
            .order_by_asc(rebuild::Column::Stream)
            .all(self.db.reader())
            .await
            .map_err(store_err)?
            .into_iter()
            .map(|m| {
                Ok(RebuiltStream {
                    stream: m.stream,
                    durable: m.durable,
                    last_seq: u64::try_from(m.last_seq)
                        .map_err(|e| corrupt(RECORD, "last_seq", e))?,
                    events: u64::try_from(m.events).map_err(|e| corrupt(RECORD, "events", e))?,
                })
            })
            .collect()
    }

    /// Rows of each table.
    ///
    /// # Errors
    /// The database's.
    pub async fn counts(&self) -> Result<ViewCounts, StoreError> {
        use sea_orm::PaginatorTrait;
        let conn = self.db.reader();
        let n = |r: Result<u64, sea_orm::DbErr>| r.map_err(store_err);
        Ok(ViewCounts {
            views: n(row::Entity::find().count(conn).await)?,
            space_lots: n(space_lot::Entity::find().count(conn).await)?,
            events: n(outbox::inbox::Entity::find().count(conn).await)?,
            rebuilt_streams: n(rebuild::Entity::find().count(conn).await)?,
        })
    }
}

impl ViewRepository for ViewStore {
    type Changes = ViewWatch;

    /// Every change to `id`'s view this store commits from now on. Subscribe
    /// before reading the current state, so no change falls between the two.
    fn watch(&self, id: ReservationId) -> ViewWatch {
        self.start_refreshing();
        let changes = self
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        ViewWatch {
            id,
            changes,
            watchers: Arc::clone(&self.watchers),
        }
    }

    /// Never: every change reaches the watchers through [`ViewRepository::watch`],
    /// the ones this store commits at once and the ones other processes commit
    /// (PostgreSQL replicas) through one periodic re-read of all watched views
    /// (`refresh_watched`), not one per watcher.
    fn reread_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// Folds one event into its reservation's view, with the inbox entry in the
    /// same transaction.
    async fn apply(&self, event: &Recorded<ViewEvent>) -> Result<Applied, StoreError> {
        let event = Arc::new(event.clone());
        if self.db.backend() == crate::Backend::Postgres {
            let queue = self
                .together
                .get_or_init(|| together::start(self.db.clone()));
            match together::fold(queue, Arc::clone(&event)).await {
                Some(Attempt::Duplicate) => return Ok(Applied::Duplicate),
                Some(Attempt::Unchanged) => return Ok(Applied::Unchanged),
                Some(Attempt::Written(next)) => {
                    self.offer(&next);
                    return Ok(Applied::Changed(next));
                }
                // On its own below.
                Some(Attempt::Conflict) | None => {}
            }
        }
        for _ in 0..CONFLICT_RETRIES {
            let event = Arc::clone(&event);
            let attempt = self
                .db
                .write(move |tx| Box::pin(fold(tx, Arc::clone(&event))))
                .await?;
            match attempt {
                Attempt::Duplicate => return Ok(Applied::Duplicate),
                Attempt::Unchanged => return Ok(Applied::Unchanged),
                Attempt::Conflict => {}
                Attempt::Written(next) => {
                    self.offer(&next);
                    return Ok(Applied::Changed(next));
                }
            }
        }
        Err(StoreError::Contention("one view"))
    }

    /// Remembers which lot `space_id` belongs to (`roaming.parking.space_registered`).
    /// A space is registered once, so a redelivery writes nothing new.
    async fn record_space(&self, space: &Recorded<SpaceLot>) -> Result<(), StoreError> {
        let event_id = space.event_id;
        let (space_id, lot) = (
            space.event.space_id.to_string(),
            space.event.lot.to_string(),
        );
        self.db
            .write(move |tx| {
                let values = space_lot::ActiveModel {
                    space_id: Set(space_id.clone()),
                    lot: Set(lot.clone()),
                };
                Box::pin(async move {
                    if outbox::record_cause(tx, Some(event_id)).await? {
                        space_lot::Entity::insert(values)
                            .on_conflict(
                                sea_orm::sea_query::OnConflict::column(space_lot::Column::SpaceId)
                                    .do_nothing()
                                    .to_owned(),
                            )
                            .exec_without_returning(tx.conn())
                            .await
                            .map_err(store_err)?;
                    }
                    Ok(Verdict::Keep(()))
                })
            })
            .await
    }

    /// The lot of a space, once its registration reached the view.
    async fn space_lot(&self, space: &SpaceId) -> Result<Option<LotCode>, StoreError> {
        space_lot::Entity::find_by_id(space.to_string())
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(|m| LotCode::parse(&m.lot).map_err(|e| corrupt(RECORD, "lot", e)))
            .transpose()
    }

    async fn get(&self, id: ReservationId) -> Result<Option<ReservationView>, StoreError> {
        row::Entity::find_by_id(id.to_string())
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(from_row)
            .transpose()
    }

    /// A customer's views, newest first, `limit` at a time, starting after the
    /// `(created_at, reservation_id)` cursor of the previous page.
    async fn list_for_customer(
        &self,
        customer: &CustomerId,
        limit: u64,
        after: Option<Cursor>,
    ) -> Result<Vec<(Cursor, ReservationView)>, StoreError> {
        let mut q = row::Entity::find()
            .filter(row::Column::CustomerId.eq(customer.as_str()))
            .order_by_desc(row::Column::CreatedAt)
            .order_by_desc(row::Column::ReservationId)
            .limit(limit);
        if let Some(Cursor {
            created_micros: created,
            reservation_id: id,
        }) = after
        {
            q = q.filter(
                sea_orm::Condition::any()
                    .add(row::Column::CreatedAt.lt(created))
                    .add(
                        sea_orm::Condition::all()
                            .add(row::Column::CreatedAt.eq(created))
                            .add(row::Column::ReservationId.lt(id.to_string())),
                    ),
            );
        }
        q.all(self.db.reader())
            .await
            .map_err(store_err)?
            .into_iter()
            .map(|m| {
                let created_micros = m.created_at;
                from_row(m).map(|v| {
                    let cursor = Cursor {
                        created_micros,
                        reservation_id: v.reservation_id,
                    };
                    (cursor, v)
                })
            })
            .collect()
    }

    /// Reservations of a space whose window touches `date` (UTC).
    async fn space_schedule(
        &self,
        space: &SpaceId,
        date: Date,
    ) -> Result<Vec<ReservationView>, StoreError> {
        let day_start = micros(date.midnight().assume_utc());
        // The last day of the calendar has no next day: everything after its
        // start counts.
        let day_end = date
            .midnight()
            .assume_utc()
            .checked_add(Duration::days(1))
            .map_or(i64::MAX, micros);
        let views: Vec<_> = row::Entity::find()
            .filter(row::Column::SpaceId.eq(space.as_str()))
            .filter(row::Column::WindowStart.lt(day_end))
            .filter(row::Column::WindowEnd.gt(day_start))
            .all(self.db.reader())
            .await
            .map_err(store_err)?
            .into_iter()
            .map(from_row)
            .collect::<Result<_, _>>()?;
        Ok(domain_view::space_schedule(&views, space, date)
            .into_iter()
            .cloned()
            .collect())
    }

    /// Pickups at and returns to a booth on `date`.
    async fn booth_schedule(
        &self,
        booth: &BoothCode,
        date: Date,
    ) -> Result<(Vec<ReservationView>, Vec<ReservationView>), StoreError> {
        let day = date_text(date);
        let views: Vec<_> = row::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(
                        sea_orm::Condition::all()
                            .add(row::Column::PickupBooth.eq(booth.as_str()))
                            .add(row::Column::StartDate.eq(day.clone())),
                    )
                    .add(
                        sea_orm::Condition::all()
                            .add(row::Column::ReturnBooth.eq(booth.as_str()))
                            .add(row::Column::EndDate.eq(day)),
                    ),
            )
            .all(self.db.reader())
            .await
            .map_err(store_err)?
            .into_iter()
            .map(from_row)
            .collect::<Result<_, _>>()?;
        let (pickups, returns) = domain_view::booth_schedule(&views, booth, date);
        Ok((
            pickups.into_iter().cloned().collect(),
            returns.into_iter().cloned().collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(version: u64) -> ReservationView {
        ReservationView {
            reservation_id: ReservationId::from_uuid(uuid::Uuid::from_u128(7)),
            customer_id: None,
            status: Status::Reserved,
            price: None,
            details: None,
            payment_status: None,
            rental_status: None,
            session_status: None,
            device_serial: None,
            history: Vec::new(),
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
            version,
        }
    }

    #[test]
    fn a_watch_channel_keeps_the_newest_version_whatever_order_the_offers_come_in() {
        let (tx, mut rx) = watch::channel(None);
        offer_newer(&tx, &view(3));
        offer_newer(&tx, &view(2));
        assert!(rx.has_changed().unwrap_or(false));
        assert_eq!(rx.borrow_and_update().as_ref().map(|v| v.version), Some(3));
        offer_newer(&tx, &view(3));
        assert!(
            !rx.has_changed().unwrap_or(true),
            "the same version again is no change"
        );
        offer_newer(&tx, &view(4));
        assert_eq!(rx.borrow_and_update().as_ref().map(|v| v.version), Some(4));
    }
}
