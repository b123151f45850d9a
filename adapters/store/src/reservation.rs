//! The reservation database: [`ReservationStore`] implements
//! [`ReservationRepository`] and [`Catalog`].

pub mod entities;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use adapters_codec::encode_reservation;
use domain_kernel::{
    BoothCode, CountryCode, CustomerId, DateRange, DeviceModel, EventId, Money, Recorded,
    RequestId, ReservationId, Serial, SpaceId, StoreError, Timestamp, VehiclePlate,
};
use domain_reservation::ports::{
    Catalog, DeviceLocation, InsertError, ReservationRepository, SaveError,
};
use domain_reservation::pricing::{DeviceOffer, SpaceOffer};
use domain_reservation::{
    Details, RejectionReason, Reservation, ReservationData, ReservationEvent, Status,
};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use self::entities::{device_location, device_offer, reservation as row, space, stock};
use crate::change::insert_unique;
use crate::change::{self, Change};
use crate::db::Db;
use crate::details::DetailsColumns;
use crate::error::{corrupt, store_err};
use crate::outbox;
use crate::time_codec::{date_from_text, date_text, from_micros, micros};
use crate::writer::{Verdict, WriteTx};

const HOLDING: [Status; 5] = [
    Status::PendingPayment,
    Status::Reserved,
    Status::RentalAccepted,
    Status::InUse,
    Status::Returned,
];

fn holding_names() -> impl Iterator<Item = &'static str> {
    HOLDING.iter().map(|s| s.as_str())
}

/// Reservations, catalog, outbox and inbox of the reservation service.
#[derive(Debug, Clone)]
pub struct ReservationStore {
    db: Db,
    catalog: Arc<CatalogMemory>,
}

/// Catalog answers remembered for [`CATALOG_TTL`]. The catalog here is a
/// replica fed by events, so it is already a little behind the services that
/// own it; a second more is the same kind of lag and takes three reads off
/// every reservation. Changes this store makes forget everything at once.
#[derive(Debug, Default)]
struct Remembered<V> {
    /// A generation (bumped by every forget) and the answers.
    entries: Mutex<(u64, Answers<V>)>,
}

/// Answers by key, with when they were read.
type Answers<V> = HashMap<String, (Instant, V)>;

const CATALOG_TTL: Duration = Duration::from_secs(1);
/// Most answers kept per kind; beyond, the memory starts over.
const CATALOG_ENTRIES: usize = 10_000;

impl<V: Clone> Remembered<V> {
    /// The answer for `key`, or the generation to remember a fresh one under.
    fn get(&self, key: &str) -> Result<V, u64> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.1.get(key) {
            Some((at, v)) if at.elapsed() < CATALOG_TTL => Ok(v.clone()),
            _ => Err(entries.0),
        }
    }

    /// Remembers `v`, unless the catalog changed since the read began.
    fn put(&self, key: String, v: V, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.0 != generation {
            return;
        }
        if entries.1.len() >= CATALOG_ENTRIES {
            entries.1.clear();
        }
        entries.1.insert(key, (Instant::now(), v));
    }

    fn forget_all(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.0 += 1;
        entries.1.clear();
    }
}

#[derive(Debug, Default)]
struct CatalogMemory {
    offers: Remembered<Option<DeviceOffer>>,
    spaces: Remembered<Option<SpaceOffer>>,
    booths: Remembered<bool>,
}

impl CatalogMemory {
    fn forget_all(&self) {
        self.offers.forget_all();
        self.spaces.forget_all();
        self.booths.forget_all();
    }
}

impl ReservationStore {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            catalog: Arc::default(),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Every reservation (tests and tools).
    pub async fn all(&self) -> Result<Vec<Reservation>, StoreError> {
        row::Entity::find()
            .all(self.db.reader())
            .await
            .map_err(store_err)?
            .into_iter()
            .map(from_row)
            .collect()
    }
}

/// How [`corrupt`] names this store's rows.
const RECORD: &str = "reservation";

fn to_row(r: &Reservation) -> row::ActiveModel {
    let c = DetailsColumns::of(&r.details);
    row::ActiveModel {
        id: Set(r.id.to_string()),
        customer_id: Set(r.customer_id.to_string()),
        request_id: Set(r.request_id.to_string()),
        request_key: Set(r.holds_request_id().then(|| r.request_id.to_string())),
        kind: Set(c.kind),
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
        price_currency: Set(r.price.currency().to_string()),
        price_minor: Set(r.price.minor_units()),
        status: Set(r.status.as_str().to_owned()),
        rejection: Set(r.rejection.map(|x| x.as_str().to_owned())),
        cancel_reason: Set(r.cancel_reason.clone()),
        created_at: Set(micros(r.created_at)),
        updated_at: Set(micros(r.updated_at)),
        version: Set(i64::try_from(r.version).unwrap_or(i64::MAX)),
    }
}

fn from_row(m: row::Model) -> Result<Reservation, StoreError> {
    let details = DetailsColumns {
        kind: m.kind,
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
    .details()?;
    Ok(Reservation::restore(ReservationData {
        id: ReservationId::parse(&m.id).map_err(|e| corrupt(RECORD, "id", e))?,
        customer_id: CustomerId::parse(&m.customer_id)
            .map_err(|e| corrupt(RECORD, "customer_id", e))?,
        request_id: RequestId::parse(&m.request_id)
            .map_err(|e| corrupt(RECORD, "request_id", e))?,
        details,
        price: Money::parse(&m.price_currency, m.price_minor)
            .map_err(|e| corrupt(RECORD, "price", e))?,
        status: Status::parse(&m.status).ok_or_else(|| corrupt(RECORD, "status", &m.status))?,
        rejection: m
            .rejection
            .map(|r| RejectionReason::parse(&r).ok_or_else(|| corrupt(RECORD, "rejection", r)))
            .transpose()?,
        cancel_reason: m.cancel_reason,
        created_at: from_micros(m.created_at)?,
        updated_at: from_micros(m.updated_at)?,
        version: u64::try_from(m.version).map_err(|e| corrupt(RECORD, "version", e))?,
    }))
}

/// Locks the resource row (PostgreSQL: `SELECT ... FOR UPDATE`; SQLite has one
/// writer, so the transaction is already exclusive) and returns its units.
async fn lock_units<C: ConnectionTrait>(txn: &C, details: &Details) -> Result<u32, StoreError> {
    match details {
        Details::Roaming(d) => {
            let units = stock::Entity::find()
                .filter(stock::Column::Booth.eq(d.pickup_booth.as_str()))
                .filter(stock::Column::DeviceModel.eq(d.device_model.as_str()))
                .lock_exclusive()
                .one(txn)
                .await
                .map_err(store_err)?
                .map_or(0, |s| s.units);
            Ok(u32::try_from(units).unwrap_or(0))
        }
        Details::Parking(d) => {
            let exists = space::Entity::find_by_id(d.space_id.to_string())
                .lock_exclusive()
                .one(txn)
                .await
                .map_err(store_err)?
                .is_some();
            Ok(u32::from(exists))
        }
    }
}

/// The last day on which a rental overlapping `dates` can end.
fn latest_overlapping_end(dates: DateRange) -> time::Date {
    let longest = i64::from(domain_reservation::pricing::MAX_ROAMING_DAYS);
    dates
        .end()
        .checked_add(time::Duration::days(longest - 1))
        .unwrap_or(time::Date::MAX)
}

/// How many holdings share one date range, read by column name (the SQLite
/// connections return rows by name, not position: `crate::sqlite`).
#[derive(Debug, sea_orm::FromQueryResult)]
struct HeldDates {
    start_date: Option<String>,
    end_date: Option<String>,
    held: i64,
}

/// The holdings of `d`'s booth and model that may overlap its dates: one row
/// per distinct date range, with how many holdings have it.
fn roaming_held(d: &domain_reservation::RoamingDetails) -> sea_orm::Select<row::Entity> {
    row::Entity::find()
        .filter(row::Column::Status.is_in(holding_names()))
        .filter(row::Column::PickupBooth.eq(d.pickup_booth.as_str()))
        .filter(row::Column::DeviceModel.eq(d.device_model.as_str()))
        .filter(row::Column::StartDate.lte(date_text(d.dates.end())))
        .filter(row::Column::EndDate.gte(date_text(d.dates.start())))
        // No rental is longer than MAX_ROAMING_DAYS, so an overlapping one
        // ends at most that long after the candidate: this bounds the range
        // read from the index, which otherwise ran over every later
        // reservation of the booth.
        .filter(row::Column::EndDate.lte(date_text(latest_overlapping_end(d.dates))))
        .select_only()
        .column(row::Column::StartDate)
        .column(row::Column::EndDate)
        .column_as(row::Column::Status.count(), "held")
        // In the index's order, so the groups stream out of it.
        .group_by(row::Column::EndDate)
        .group_by(row::Column::StartDate)
}

/// Whether `details` fits next to the holdings of its resource (invariant 2).
/// Roaming reads only the dates of the booth's overlapping holdings, counted
/// per distinct date range: a busy booth has hundreds of holdings but few
/// distinct ranges, and reading (then decoding) one row per holding made this
/// the costliest statement of a reservation, on the one writer of the
/// reservation database (BENCHMARKS-LOG.md, runs 3 and 7). The covering index
/// `ix_reservations_roaming_held` answers it without reading the table.
async fn admits<C: ConnectionTrait>(
    txn: &C,
    details: &Details,
    units: u32,
) -> Result<bool, StoreError> {
    match details {
        Details::Roaming(d) => {
            let held: Vec<HeldDates> = roaming_held(d)
                .into_model::<HeldDates>()
                .all(txn)
                .await
                .map_err(store_err)?;
            let mut ranges = Vec::with_capacity(held.len());
            for HeldDates {
                start_date,
                end_date,
                held,
            } in held
            {
                let (Some(start), Some(end)) = (start_date, end_date) else {
                    return Err(corrupt(
                        RECORD,
                        "dates",
                        "a roaming reservation without dates",
                    ));
                };
                let range = DateRange::new(date_from_text(&start)?, date_from_text(&end)?)
                    .map_err(|e| corrupt(RECORD, "dates", e))?;
                let held = usize::try_from(held).map_err(|e| corrupt(RECORD, "held count", e))?;
                ranges.push((range, held));
            }
            // The domain's rule, on one range per holding as before.
            let held = ranges
                .into_iter()
                .flat_map(|(range, n)| std::iter::repeat_n(range, n));
            Ok(domain_reservation::capacity::days_admit(
                &d.dates, units, held,
            ))
        }
        Details::Parking(d) => {
            let held = row::Entity::find()
                .filter(row::Column::Status.is_in(holding_names()))
                .filter(row::Column::SpaceId.eq(d.space_id.as_str()))
                .filter(row::Column::WindowStart.lt(micros(d.window.end())))
                .filter(row::Column::WindowEnd.gt(micros(d.window.start())))
                // No window is longer than MAX_PARKING_WINDOW: this bounds the
                // range read from ix_reservations_parking_end.
                .filter(
                    row::Column::WindowEnd.lt(d
                        .window
                        .end()
                        .checked_add(domain_reservation::pricing::MAX_PARKING_WINDOW)
                        .map_or(i64::MAX, micros)),
                )
                .all(txn)
                .await
                .map_err(store_err)?
                .into_iter()
                .map(from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let held = held.iter().map(|r| &r.details);
            Ok(domain_reservation::capacity::admits(details, units, held))
        }
    }
}

/// The class (first key) of the PostgreSQL advisory locks that serialize one
/// customer's claims; the second key is `hashtext(customer_id)`. Two-key
/// advisory locks never conflict with single-key ones (the migration lock).
const CUSTOMER_LOCK_CLASS: i32 = 0x5253_5643; // "RSVC"

/// The partial index of claims by customer (migration
/// `m0005_reservation_customer_pending`) is used only when the query states
/// its predicate literally: a bound parameter would hide it from SQLite's
/// planner.
const PENDING_PREDICATE: &str = "status = 'PENDING_PAYMENT'";

/// Takes the customer's turn for a new claim until the transaction ends:
/// PostgreSQL, a transaction-scoped advisory lock keyed by the customer, so
/// two replicas inserting claims of one customer at once count one after the
/// other; SQLite has one writer, so the transaction is already exclusive.
async fn lock_customer<C: ConnectionTrait>(
    txn: &C,
    customer: &CustomerId,
) -> Result<(), StoreError> {
    if txn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    txn.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        [CUSTOMER_LOCK_CLASS.into(), customer.as_str().into()],
    ))
    .await
    .map_err(store_err)?;
    Ok(())
}

/// How many claims a count query found, read by column name.
#[derive(Debug, sea_orm::FromQueryResult)]
struct Counted {
    n: i64,
}

/// The customer's claims awaiting payment, counted from the partial index
/// `ix_reservations_customer_pending`.
fn customer_pending(customer: &CustomerId) -> sea_orm::Select<row::Entity> {
    row::Entity::find()
        .select_only()
        .column_as(row::Column::Id.count(), "n")
        .filter(row::Column::CustomerId.eq(customer.as_str()))
        .filter(Expr::cust(PENDING_PREDICATE))
}

async fn count_pending<C: ConnectionTrait>(
    txn: &C,
    customer: &CustomerId,
) -> Result<usize, StoreError> {
    let counted = customer_pending(customer)
        .into_model::<Counted>()
        .one(txn)
        .await
        .map_err(store_err)?
        .map_or(0, |c| c.n);
    usize::try_from(counted).map_err(|e| corrupt(RECORD, "pending count", e))
}

impl ReservationRepository for ReservationStore {
    async fn insert_pending(
        &self,
        reservation: &Reservation,
        max_pending: u32,
    ) -> Result<(), InsertError> {
        let reservation = Arc::new(reservation.clone());
        self.db
            .write(move |tx| {
                let reservation = Arc::clone(&reservation);
                Box::pin(async move {
                    // The customer's turn first, then the resource's: the
                    // one order every claim takes them in.
                    let customer = &reservation.customer_id;
                    lock_customer(tx.conn(), customer).await?;
                    let pending = count_pending(tx.conn(), customer).await?;
                    if !domain_reservation::capacity::customer_may_claim(pending, max_pending) {
                        return Ok(Verdict::Keep(Err(InsertError::TooManyPending {
                            limit: max_pending,
                        })));
                    }
                    let details = &reservation.details;
                    let units = lock_units(tx.conn(), details).await?;
                    if !admits(tx.conn(), details, units).await? {
                        return Ok(Verdict::Keep(Err(InsertError::SoldOut)));
                    }
                    if insert_unique(tx.conn(), to_row(&reservation)).await? {
                        crate::origin::remember(tx.conn(), &reservation.id).await?;
                        Ok(Verdict::Keep(Ok(())))
                    } else {
                        Ok(Verdict::Undo(Err(InsertError::DuplicateRequest)))
                    }
                })
            })
            .await?
    }

    async fn save(
        &self,
        reservation: &mut Reservation,
        events: &[Recorded<ReservationEvent>],
        caused_by: Option<EventId>,
    ) -> Result<(), SaveError> {
        crate::origin::link(self.db.reader(), &reservation.id).await;
        let mut next = reservation.clone();
        next.bump_version();
        let key = (row::Column::Id, next.id.to_string());
        let mut values = to_row(&next);
        values.id = NotSet;
        let events = events.iter().map(encode_reservation).collect();
        let (version, expected) = (row::Column::Version, reservation.version);
        match change::update(&self.db, caused_by, values, key, version, expected, events).await? {
            Change::Done => {
                *reservation = next;
                Ok(())
            }
            Change::AlreadyHandled => Err(SaveError::AlreadyHandled),
            Change::Refused => Err(SaveError::Conflict),
        }
    }

    async fn get(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        row::Entity::find_by_id(id.to_string())
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(from_row)
            .transpose()
    }

    async fn find_by_request(
        &self,
        customer: &CustomerId,
        request_id: &RequestId,
    ) -> Result<Option<Reservation>, StoreError> {
        row::Entity::find()
            .filter(row::Column::CustomerId.eq(customer.as_str()))
            .filter(row::Column::RequestKey.eq(request_id.as_str()))
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(from_row)
            .transpose()
    }

    async fn find_parking(
        &self,
        space: &SpaceId,
        plate: &VehiclePlate,
    ) -> Result<Vec<Reservation>, StoreError> {
        row::Entity::find()
            .filter(row::Column::SpaceId.eq(space.as_str()))
            .filter(row::Column::VehiclePlate.eq(plate.as_str()))
            .filter(row::Column::Status.is_in(holding_names()))
            .all(self.db.reader())
            .await
            .map_err(store_err)?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn pending_before(&self, before: Timestamp) -> Result<Vec<Reservation>, StoreError> {
        row::Entity::find()
            .filter(row::Column::Status.eq(Status::PendingPayment.as_str()))
            .filter(row::Column::CreatedAt.lt(micros(before)))
            .all(self.db.reader())
            .await
            .map_err(store_err)?
            .into_iter()
            .map(from_row)
            .collect()
    }
}

fn offer_from_row(m: &device_offer::Model) -> Result<DeviceOffer, StoreError> {
    Ok(DeviceOffer {
        device_model: DeviceModel::parse(&m.device_model)
            .map_err(|e| corrupt(RECORD, "device_model", e))?,
        daily_rate: Money::parse(&m.daily_rate_currency, m.daily_rate_minor)
            .map_err(|e| corrupt(RECORD, "daily_rate", e))?,
        countries: m
            .countries
            .split(',')
            .filter(|c| !c.is_empty())
            .map(|c| CountryCode::parse(c).map_err(|e| corrupt(RECORD, "countries", e)))
            .collect::<Result<_, _>>()?,
    })
}

/// Adds `delta` units of `model` at `booth`, atomically.
async fn adjust_stock<C: ConnectionTrait>(
    txn: &C,
    booth: &str,
    model: &str,
    delta: i64,
) -> Result<(), StoreError> {
    let row = stock::ActiveModel {
        booth: Set(booth.to_owned()),
        device_model: Set(model.to_owned()),
        units: Set(0),
    };
    stock::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([stock::Column::Booth, stock::Column::DeviceModel])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await
        .map_err(store_err)?;
    stock::Entity::update_many()
        .col_expr(
            stock::Column::Units,
            Expr::col(stock::Column::Units).add(delta),
        )
        .filter(stock::Column::Booth.eq(booth))
        .filter(stock::Column::DeviceModel.eq(model))
        .exec(txn)
        .await
        .map_err(store_err)?;
    Ok(())
}

/// Moves `serial` to `at` as of `as_of` (micros), unless a later sighting is
/// stored, adjusting the stock of both booths.
async fn locate(
    tx: &WriteTx,
    caused_by: Option<EventId>,
    serial: String,
    at: DeviceLocation,
    as_of: i64,
) -> Result<Verdict<Result<(), SaveError>>, StoreError> {
    if !outbox::record_cause(tx, caused_by).await? {
        return Ok(Verdict::Keep(Err(SaveError::AlreadyHandled)));
    }
    let txn = tx.conn();
    let known = device_location::Entity::find_by_id(serial.clone())
        .lock_exclusive()
        .one(txn)
        .await
        .map_err(store_err)?;
    if known.as_ref().is_none_or(|k| k.as_of < as_of) {
        if let Some(k) = &known {
            adjust_stock(txn, &k.booth, &k.device_model, -1).await?;
        }
        adjust_stock(txn, at.booth.as_str(), at.device_model.as_str(), 1).await?;
        let row = device_location::ActiveModel {
            serial: Set(serial),
            device_model: Set(at.device_model.to_string()),
            booth: Set(at.booth.to_string()),
            as_of: Set(as_of),
        };
        device_location::Entity::insert(row)
            .on_conflict(
                OnConflict::column(device_location::Column::Serial)
                    .update_columns([
                        device_location::Column::DeviceModel,
                        device_location::Column::Booth,
                        device_location::Column::AsOf,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await
            .map_err(store_err)?;
    }
    Ok(Verdict::Keep(Ok(())))
}

impl Catalog for ReservationStore {
    async fn device_offer(&self, model: &DeviceModel) -> Result<Option<DeviceOffer>, StoreError> {
        let generation = match self.catalog.offers.get(model.as_str()) {
            Ok(known) => return Ok(known),
            Err(generation) => generation,
        };
        let offer = device_offer::Entity::find_by_id(model.to_string())
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .as_ref()
            .map(offer_from_row)
            .transpose()?;
        let (key, value) = (model.to_string(), offer.clone());
        self.catalog.offers.put(key, value, generation);
        Ok(offer)
    }

    async fn device_offers(&self) -> Result<Vec<DeviceOffer>, StoreError> {
        device_offer::Entity::find()
            .order_by_asc(device_offer::Column::DeviceModel)
            .all(self.db.reader())
            .await
            .map_err(store_err)?
            .iter()
            .map(offer_from_row)
            .collect()
    }

    async fn space_offer(&self, space_id: &SpaceId) -> Result<Option<SpaceOffer>, StoreError> {
        let generation = match self.catalog.spaces.get(space_id.as_str()) {
            Ok(known) => return Ok(known),
            Err(generation) => generation,
        };
        let offer = space::Entity::find_by_id(space_id.to_string())
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(|m| {
                Ok::<_, StoreError>(SpaceOffer {
                    space_id: space_id.clone(),
                    hourly_rate: Money::parse(&m.hourly_rate_currency, m.hourly_rate_minor)
                        .map_err(|e| corrupt(RECORD, "hourly_rate", e))?,
                })
            })
            .transpose()?;
        let (key, value) = (space_id.to_string(), offer.clone());
        self.catalog.spaces.put(key, value, generation);
        Ok(offer)
    }

    async fn booth_exists(&self, booth: &BoothCode) -> Result<bool, StoreError> {
        let generation = match self.catalog.booths.get(booth.as_str()) {
            Ok(known) => return Ok(known),
            Err(generation) => generation,
        };
        let exists = device_location::Entity::find()
            .filter(device_location::Column::Booth.eq(booth.as_str()))
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .is_some();
        self.catalog
            .booths
            .put(booth.to_string(), exists, generation);
        Ok(exists)
    }

    async fn put_device_offer(&self, offer: &DeviceOffer) -> Result<(), StoreError> {
        let countries: Vec<&str> = offer.countries.iter().map(CountryCode::as_str).collect();
        let row = device_offer::ActiveModel {
            device_model: Set(offer.device_model.to_string()),
            daily_rate_currency: Set(offer.daily_rate.currency().to_string()),
            daily_rate_minor: Set(offer.daily_rate.minor_units()),
            countries: Set(countries.join(",")),
        };
        self.db
            .write(move |tx| {
                let row = row.clone();
                Box::pin(async move {
                    device_offer::Entity::insert(row)
                        .on_conflict(
                            OnConflict::column(device_offer::Column::DeviceModel)
                                .update_columns([
                                    device_offer::Column::DailyRateCurrency,
                                    device_offer::Column::DailyRateMinor,
                                    device_offer::Column::Countries,
                                ])
                                .to_owned(),
                        )
                        .exec_without_returning(tx.conn())
                        .await
                        .map_err(store_err)?;
                    Ok(Verdict::Keep(()))
                })
            })
            .await?;
        self.catalog.forget_all();
        Ok(())
    }

    async fn locate_device(
        &self,
        serial: &Serial,
        at: &DeviceLocation,
        as_of: Timestamp,
        caused_by: Option<EventId>,
    ) -> Result<(), SaveError> {
        let (serial, at, as_of) = (serial.to_string(), at.clone(), micros(as_of));
        let located = self
            .db
            .write(move |tx| Box::pin(locate(tx, caused_by, serial.clone(), at.clone(), as_of)))
            .await?;
        self.catalog.forget_all();
        located
    }

    async fn put_space(
        &self,
        offer: &SpaceOffer,
        caused_by: Option<EventId>,
    ) -> Result<(), SaveError> {
        let row = space::ActiveModel {
            space_id: Set(offer.space_id.to_string()),
            hourly_rate_currency: Set(offer.hourly_rate.currency().to_string()),
            hourly_rate_minor: Set(offer.hourly_rate.minor_units()),
        };
        let put = self
            .db
            .write(move |tx| {
                let row = row.clone();
                Box::pin(async move {
                    if !outbox::record_cause(tx, caused_by).await? {
                        return Ok(Verdict::Keep(Err(SaveError::AlreadyHandled)));
                    }
                    space::Entity::insert(row)
                        .on_conflict(
                            OnConflict::column(space::Column::SpaceId)
                                .update_columns([
                                    space::Column::HourlyRateCurrency,
                                    space::Column::HourlyRateMinor,
                                ])
                                .to_owned(),
                        )
                        .exec_without_returning(tx.conn())
                        .await
                        .map_err(store_err)?;
                    Ok(Verdict::Keep(Ok(())))
                })
            })
            .await?;
        self.catalog.forget_all();
        put
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use domain_kernel::{BoothCode, CountryCode, DateRange, DeviceModel};
    use domain_reservation::RoamingDetails;
    use time::macros::date;

    use crate::Db;
    use crate::migrations::ReservationMigrator;
    use crate::testing::{TestDatabase, indexes, plan};

    /// Every index of the reservations table costs the database's one writer
    /// an entry at each insert and status change: each hand-made (`ix_`) one
    /// has a reader, named next to it, on both backends (the primary key and
    /// the idempotency key's unique index are the entity's own).
    #[tokio::test]
    async fn every_index_of_the_reservations_table_has_a_reader() {
        let expected = [
            // A customer's claims awaiting payment (the claim limit).
            "ix_reservations_customer_pending",
            // find_parking (a vehicle at the gate).
            "ix_reservations_parking",
            // The parking capacity check.
            "ix_reservations_parking_end",
            // The sweeper's stale claims.
            "ix_reservations_pending",
            // The roaming capacity check.
            "ix_reservations_roaming_held",
        ];
        for file in [TestDatabase::sqlite(), TestDatabase::postgres().await] {
            let db = Db::connect::<ReservationMigrator>(file.url())
                .await
                .unwrap();
            let made = indexes(db.writer(), "reservations").await;
            assert_eq!(made, expected, "{}", file.url());
        }
    }

    /// The capacity check runs on the reservation database's one writer for
    /// every claim: it must stay an index-only range read, never a table
    /// read per holding.
    #[tokio::test]
    async fn the_roaming_capacity_check_reads_only_its_covering_index() {
        let file = TestDatabase::sqlite();
        let db = Db::connect::<ReservationMigrator>(file.url())
            .await
            .unwrap();
        let details = RoamingDetails {
            device_model: DeviceModel::parse("egg-lte").unwrap(),
            country: CountryCode::parse("JP").unwrap(),
            pickup_booth: BoothCode::parse("ICN").unwrap(),
            return_booth: BoothCode::parse("ICN").unwrap(),
            dates: DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 03)).unwrap(),
        };
        let steps = plan(db.writer(), &super::roaming_held(&details)).await;
        assert!(
            steps
                .iter()
                .any(|s| s.contains("USING COVERING INDEX ix_reservations_roaming_held")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|s| s.contains("TEMP B-TREE")),
            "the groups stream out of the index without a sort: {steps:?}"
        );
    }

    /// Every claim counts the customer's claims awaiting payment on the
    /// writer: it must read the partial index of pending claims, never every
    /// reservation the customer ever made.
    #[tokio::test]
    async fn the_claim_limit_reads_the_customers_pending_claims_only() {
        let customer = domain_kernel::CustomerId::parse("alice").unwrap();
        let file = TestDatabase::sqlite();
        let db = Db::connect::<ReservationMigrator>(file.url())
            .await
            .unwrap();
        let steps = plan(db.writer(), &super::customer_pending(&customer)).await;
        assert!(
            steps
                .iter()
                .any(|s| s.contains("INDEX ix_reservations_customer_pending")),
            "{steps:?}"
        );
        // PostgreSQL: with planner statistics of an empty table it may scan
        // anyway; with sequential scans off it must be able to use the index.
        let file = TestDatabase::postgres().await;
        let db = Db::connect::<ReservationMigrator>(file.url())
            .await
            .unwrap();
        let txn = sea_orm::TransactionTrait::begin(db.writer()).await.unwrap();
        sea_orm::ConnectionTrait::execute_unprepared(&txn, "SET LOCAL enable_seqscan = off")
            .await
            .unwrap();
        let steps = plan(&txn, &super::customer_pending(&customer)).await;
        assert!(
            steps
                .iter()
                .any(|s| s.contains("ix_reservations_customer_pending")),
            "{steps:?}"
        );
    }
}
