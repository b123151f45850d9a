//! The rental database: [`RentalStore`] implements [`RentalRepository`].

use std::sync::Arc;

use adapters_codec::encode_rental;
use domain_kernel::{
    BoothCode, CountryCode, CustomerId, DateRange, DeviceModel, EventId, Recorded, ReservationId,
    Serial, StoreError,
};
use domain_rental::ports::{Changes, InsertError, RentalRepository, SaveError};
use domain_rental::{
    Device, DeviceData, DeviceStatus, Rental, RentalData, RentalEvent, RentalStatus,
};
use sea_orm::ActiveValue::NotSet;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use time::Date;

use crate::change::update_versioned;
use crate::change::{self, Change};
use crate::db::Db;
use crate::error::{corrupt, store_err};
use crate::outbox;
use crate::time_codec::{date_from_text, date_text, from_micros, micros};
use crate::writer::Verdict;

pub mod entities {
    //! Tables of the rental database.

    pub mod device {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "devices")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub serial: String,
            pub device_model: String,
            pub booth: String,
            pub status: String,
            pub version: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod rental {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "rentals")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub reservation_id: String,
            pub customer_id: String,
            pub device_model: String,
            pub country: String,
            #[sea_orm(indexed)]
            pub pickup_booth: String,
            #[sea_orm(indexed)]
            pub return_booth: String,
            pub start_date: String,
            pub end_date: String,
            pub status: String,
            pub serial: Option<String>,
            pub returned_at_booth: Option<String>,
            pub created_at: i64,
            pub updated_at: i64,
            pub version: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{device, rental};

/// How [`corrupt`] names this store's rows.
const RECORD: &str = "rental data";

fn device_row(d: &Device) -> device::ActiveModel {
    device::ActiveModel {
        serial: Set(d.serial.to_string()),
        device_model: Set(d.device_model.to_string()),
        booth: Set(d.booth.to_string()),
        status: Set(d.status.as_str().to_owned()),
        version: Set(i64::try_from(d.version).unwrap_or(i64::MAX)),
    }
}

fn device_from_row(m: device::Model) -> Result<Device, StoreError> {
    Ok(Device::restore(DeviceData {
        serial: Serial::parse(&m.serial).map_err(|e| corrupt(RECORD, "serial", e))?,
        device_model: DeviceModel::parse(&m.device_model)
            .map_err(|e| corrupt(RECORD, "device_model", e))?,
        booth: BoothCode::parse(&m.booth).map_err(|e| corrupt(RECORD, "booth", e))?,
        status: DeviceStatus::parse(&m.status)
            .ok_or_else(|| corrupt(RECORD, "status", &m.status))?,
        version: u64::try_from(m.version).map_err(|e| corrupt(RECORD, "version", e))?,
    }))
}

fn rental_row(r: &Rental) -> rental::ActiveModel {
    rental::ActiveModel {
        reservation_id: Set(r.reservation_id.to_string()),
        customer_id: Set(r.customer_id.to_string()),
        device_model: Set(r.device_model.to_string()),
        country: Set(r.country.to_string()),
        pickup_booth: Set(r.pickup_booth.to_string()),
        return_booth: Set(r.return_booth.to_string()),
        start_date: Set(date_text(r.dates.start())),
        end_date: Set(date_text(r.dates.end())),
        status: Set(r.status.as_str().to_owned()),
        serial: Set(r.serial.as_ref().map(ToString::to_string)),
        returned_at_booth: Set(r.returned_at_booth.as_ref().map(ToString::to_string)),
        created_at: Set(micros(r.created_at)),
        updated_at: Set(micros(r.updated_at)),
        version: Set(i64::try_from(r.version).unwrap_or(i64::MAX)),
    }
}

fn rental_from_row(m: rental::Model) -> Result<Rental, StoreError> {
    let dates = DateRange::new(date_from_text(&m.start_date)?, date_from_text(&m.end_date)?)
        .map_err(|e| corrupt(RECORD, "dates", e))?;
    Ok(Rental::restore(RentalData {
        reservation_id: ReservationId::parse(&m.reservation_id)
            .map_err(|e| corrupt(RECORD, "reservation_id", e))?,
        customer_id: CustomerId::parse(&m.customer_id)
            .map_err(|e| corrupt(RECORD, "customer_id", e))?,
        device_model: DeviceModel::parse(&m.device_model)
            .map_err(|e| corrupt(RECORD, "device_model", e))?,
        country: CountryCode::parse(&m.country).map_err(|e| corrupt(RECORD, "country", e))?,
        pickup_booth: BoothCode::parse(&m.pickup_booth)
            .map_err(|e| corrupt(RECORD, "pickup_booth", e))?,
        return_booth: BoothCode::parse(&m.return_booth)
            .map_err(|e| corrupt(RECORD, "return_booth", e))?,
        dates,
        status: RentalStatus::parse(&m.status)
            .ok_or_else(|| corrupt(RECORD, "status", &m.status))?,
        serial: m
            .serial
            .map(|s| Serial::parse(&s).map_err(|e| corrupt(RECORD, "serial", e)))
            .transpose()?,
        returned_at_booth: m
            .returned_at_booth
            .map(|b| BoothCode::parse(&b).map_err(|e| corrupt(RECORD, "returned_at_booth", e)))
            .transpose()?,
        created_at: from_micros(m.created_at)?,
        updated_at: from_micros(m.updated_at)?,
        version: u64::try_from(m.version).map_err(|e| corrupt(RECORD, "version", e))?,
    }))
}

/// Devices, rentals, outbox and inbox of the rental service.
#[derive(Debug, Clone)]
pub struct RentalStore {
    db: Db,
}

impl RentalStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

impl RentalStore {
    /// Inserts a new row with its events, recording `caused_by` in the inbox.
    async fn insert<A>(
        &self,
        row: A,
        events: &[Recorded<RentalEvent>],
        caused_by: Option<EventId>,
    ) -> Result<(), InsertError>
    where
        A: ActiveModelTrait + Clone + Send + Sync + 'static,
        <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    {
        let events = events.iter().map(encode_rental).collect();
        match change::insert(&self.db, caused_by, row, events).await? {
            Change::Done => Ok(()),
            Change::AlreadyHandled => Err(InsertError::AlreadyHandled),
            Change::Refused => Err(InsertError::Duplicate),
        }
    }
}

impl RentalRepository for RentalStore {
    async fn get_rental(
        &self,
        reservation_id: ReservationId,
    ) -> Result<Option<Rental>, StoreError> {
        rental::Entity::find_by_id(reservation_id.to_string())
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(rental_from_row)
            .transpose()
    }

    async fn get_device(&self, serial: &Serial) -> Result<Option<Device>, StoreError> {
        device::Entity::find_by_id(serial.to_string())
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(device_from_row)
            .transpose()
    }

    async fn list_devices(
        &self,
        booth: Option<&BoothCode>,
        model: Option<&DeviceModel>,
    ) -> Result<Vec<Device>, StoreError> {
        let mut q = device::Entity::find().order_by_asc(device::Column::Serial);
        if let Some(b) = booth {
            q = q.filter(device::Column::Booth.eq(b.as_str()));
        }
        if let Some(m) = model {
            q = q.filter(device::Column::DeviceModel.eq(m.as_str()));
        }
        q.all(self.db.reader())
            .await
            .map_err(store_err)?
            .into_iter()
            .map(device_from_row)
            .collect()
    }

    async fn list_booth_rentals(
        &self,
        booth: &BoothCode,
        date: Option<Date>,
    ) -> Result<Vec<Rental>, StoreError> {
        let mut q = rental::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(rental::Column::PickupBooth.eq(booth.as_str()))
                    .add(rental::Column::ReturnBooth.eq(booth.as_str()))
                    .add(rental::Column::ReturnedAtBooth.eq(booth.as_str())),
            )
            .order_by_asc(rental::Column::StartDate)
            .order_by_asc(rental::Column::ReservationId);
        if let Some(d) = date {
            q = q
                .filter(rental::Column::StartDate.lte(date_text(d)))
                .filter(rental::Column::EndDate.gte(date_text(d)));
        }
        q.all(self.db.reader())
            .await
            .map_err(store_err)?
            .into_iter()
            .map(rental_from_row)
            .collect()
    }

    async fn insert_device(
        &self,
        d: &Device,
        events: &[Recorded<RentalEvent>],
    ) -> Result<(), InsertError> {
        self.insert(device_row(d), events, None).await
    }

    async fn insert_rental(
        &self,
        r: &Rental,
        events: &[Recorded<RentalEvent>],
        caused_by: Option<EventId>,
    ) -> Result<(), InsertError> {
        self.insert(rental_row(r), events, caused_by).await?;
        // Telemetry after the committed insert: its failure only costs the
        // later steps' links, never the rental.
        if let Err(e) = crate::origin::remember_apart(&self.db, &r.reservation_id).await {
            tracing::debug!(error = %e, "recording the trace origin failed; no links");
        }
        Ok(())
    }

    async fn save(&self, changes: Changes<'_>) -> Result<(), SaveError> {
        if let Some(r) = changes.rental.as_deref() {
            crate::origin::link(self.db.reader(), &r.reservation_id).await;
        }
        let next_rental = changes.rental.as_deref().map(|r| {
            let mut next = r.clone();
            next.bump_version();
            next
        });
        let next_device = changes.device.as_deref().map(|d| {
            let mut next = d.clone();
            next.bump_version();
            next
        });
        let rental_update = next_rental.as_ref().map(|next| {
            let mut values = rental_row(next);
            values.reservation_id = NotSet;
            let key = (
                rental::Column::ReservationId,
                next.reservation_id.to_string(),
            );
            (values, key, next.version - 1)
        });
        let device_update = next_device.as_ref().map(|next| {
            let mut values = device_row(next);
            values.serial = NotSet;
            (
                values,
                (device::Column::Serial, next.serial.to_string()),
                next.version - 1,
            )
        });
        let caused_by = changes.caused_by;
        let encoded: Arc<[_]> = changes.events.iter().map(encode_rental).collect();
        self.db
            .write(move |tx| {
                let (rental_update, device_update) = (rental_update.clone(), device_update.clone());
                let encoded = Arc::clone(&encoded);
                Box::pin(async move {
                    if !outbox::record_cause(tx, caused_by).await? {
                        return Ok(Verdict::Keep(Err(SaveError::AlreadyHandled)));
                    }
                    if let Some((values, key, expected)) = rental_update
                        && !update_versioned(
                            tx.conn(),
                            values,
                            key,
                            rental::Column::Version,
                            expected,
                        )
                        .await?
                    {
                        return Ok(Verdict::Undo(Err(SaveError::Conflict)));
                    }
                    if let Some((values, key, expected)) = device_update
                        && !update_versioned(
                            tx.conn(),
                            values,
                            key,
                            device::Column::Version,
                            expected,
                        )
                        .await?
                    {
                        return Ok(Verdict::Undo(Err(SaveError::Conflict)));
                    }
                    outbox::append_in(tx, &encoded).await?;
                    Ok(Verdict::Keep(Ok(())))
                })
            })
            .await??;
        if let (Some(r), Some(next)) = (changes.rental, next_rental) {
            *r = next;
        }
        if let (Some(d), Some(next)) = (changes.device, next_device) {
            *d = next;
        }
        Ok(())
    }
}
