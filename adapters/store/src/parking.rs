//! The parking database: [`ParkingStore`] implements [`ParkingRepository`] and
//! [`ReservationReplica`].

use std::sync::Arc;

use adapters_codec::encode_parking;
use domain_kernel::{
    EventId, LotCode, Money, Recorded, ReservationId, SessionId, SpaceId, StoreError, TimeWindow,
    Timestamp, VehiclePlate,
};
use domain_parking::ports::{
    InsertError, ParkingRepository, ReplicaUpdate, ReservationReplica, SaveError, VerifiedEntry,
};
use domain_parking::{
    ParkingEvent, ReplicaEntry, Session, SessionData, SessionStatus, Space, Verification,
};
use sea_orm::ActiveValue::NotSet;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};

use crate::change::{self, Change};
use crate::db::Db;
use crate::error::{corrupt, store_err};
use crate::outbox;
use crate::time_codec::{from_micros, micros};
use crate::writer::Verdict;

pub mod entities {
    //! Tables of the parking database.

    pub mod space {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "spaces")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub space_id: String,
            #[sea_orm(indexed)]
            pub lot: String,
            pub floor: String,
            pub number: i64,
            pub hourly_rate_currency: String,
            pub hourly_rate_minor: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod session {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "sessions")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub session_id: String,
            pub space_id: String,
            pub vehicle_plate: String,
            #[sea_orm(indexed)]
            pub reservation_id: String,
            pub status: String,
            pub verification: String,
            pub entered_at: i64,
            pub exited_at: Option<i64>,
            /// The space while the session is open, NULL once ended: the unique
            /// index makes "one open session per space" a database guarantee.
            #[sea_orm(unique)]
            pub open_space: Option<String>,
            pub version: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod replica {
        use sea_orm::entity::prelude::*;

        /// Parking reservations as the reservation events told us.
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "reservation_replica")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub reservation_id: String,
            pub space_id: String,
            pub vehicle_plate: String,
            pub window_start: i64,
            pub window_end: i64,
            pub active: bool,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{replica, session, space};

/// How [`corrupt`] names this store's rows.
const RECORD: &str = "parking data";

fn space_from_row(m: space::Model) -> Result<Space, StoreError> {
    Ok(Space {
        space_id: SpaceId::parse(&m.space_id).map_err(|e| corrupt(RECORD, "space_id", e))?,
        lot: LotCode::parse(&m.lot).map_err(|e| corrupt(RECORD, "lot", e))?,
        floor: m.floor,
        number: u32::try_from(m.number).map_err(|e| corrupt(RECORD, "number", e))?,
        hourly_rate: Money::parse(&m.hourly_rate_currency, m.hourly_rate_minor)
            .map_err(|e| corrupt(RECORD, "hourly_rate", e))?,
    })
}

fn session_row(s: &Session) -> session::ActiveModel {
    session::ActiveModel {
        session_id: Set(s.session_id.to_string()),
        space_id: Set(s.space_id.to_string()),
        vehicle_plate: Set(s.vehicle_plate.to_string()),
        reservation_id: Set(s.reservation_id.to_string()),
        status: Set(s.status.as_str().to_owned()),
        verification: Set(s.verification.as_str().to_owned()),
        entered_at: Set(micros(s.entered_at)),
        exited_at: Set(s.exited_at.map(micros)),
        open_space: Set((s.status == SessionStatus::Started).then(|| s.space_id.to_string())),
        version: Set(i64::try_from(s.version).unwrap_or(i64::MAX)),
    }
}

fn session_from_row(m: session::Model) -> Result<Session, StoreError> {
    Ok(Session::restore(SessionData {
        session_id: SessionId::parse(&m.session_id)
            .map_err(|e| corrupt(RECORD, "session_id", e))?,
        space_id: SpaceId::parse(&m.space_id).map_err(|e| corrupt(RECORD, "space_id", e))?,
        vehicle_plate: VehiclePlate::parse(&m.vehicle_plate)
            .map_err(|e| corrupt(RECORD, "vehicle_plate", e))?,
        reservation_id: ReservationId::parse(&m.reservation_id)
            .map_err(|e| corrupt(RECORD, "reservation_id", e))?,
        status: SessionStatus::parse(&m.status)
            .ok_or_else(|| corrupt(RECORD, "status", &m.status))?,
        verification: Verification::parse(&m.verification)
            .ok_or_else(|| corrupt(RECORD, "verification", &m.verification))?,
        entered_at: from_micros(m.entered_at)?,
        exited_at: m.exited_at.map(from_micros).transpose()?,
        version: u64::try_from(m.version).map_err(|e| corrupt(RECORD, "version", e))?,
    }))
}

fn replica_from_row(m: replica::Model) -> Result<ReplicaEntry, StoreError> {
    Ok(ReplicaEntry {
        reservation_id: ReservationId::parse(&m.reservation_id)
            .map_err(|e| corrupt(RECORD, "reservation_id", e))?,
        space_id: SpaceId::parse(&m.space_id).map_err(|e| corrupt(RECORD, "space_id", e))?,
        vehicle_plate: VehiclePlate::parse(&m.vehicle_plate)
            .map_err(|e| corrupt(RECORD, "vehicle_plate", e))?,
        window: TimeWindow::new(from_micros(m.window_start)?, from_micros(m.window_end)?)
            .map_err(|e| corrupt(RECORD, "window", e))?,
        active: m.active,
    })
}

/// Spaces, sessions, the replica, outbox and inbox of the parking service.
#[derive(Debug, Clone)]
pub struct ParkingStore {
    db: Db,
}

impl ParkingStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Inserts a new row with its events.
    async fn insert<A>(&self, row: A, events: &[Recorded<ParkingEvent>]) -> Result<(), InsertError>
    where
        A: ActiveModelTrait + Clone + Send + Sync + 'static,
        <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    {
        let events = events.iter().map(encode_parking).collect();
        match change::insert(&self.db, None, row, events).await? {
            Change::Done => Ok(()),
            Change::Refused => Err(InsertError::Duplicate),
            Change::AlreadyHandled => {
                Err(StoreError::msg("inbox hit without a causing event").into())
            }
        }
    }
}

impl ParkingRepository for ParkingStore {
    async fn get_space(&self, space_id: &SpaceId) -> Result<Option<Space>, StoreError> {
        space::Entity::find_by_id(space_id.to_string())
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(space_from_row)
            .transpose()
    }

    async fn list_spaces(&self, lot: Option<&LotCode>) -> Result<Vec<Space>, StoreError> {
        let mut q = space::Entity::find().order_by_asc(space::Column::SpaceId);
        if let Some(l) = lot {
            q = q.filter(space::Column::Lot.eq(l.as_str()));
        }
        q.all(self.db.reader())
            .await
            .map_err(store_err)?
            .into_iter()
            .map(space_from_row)
            .collect()
    }

    async fn insert_space(
        &self,
        s: &Space,
        events: &[Recorded<ParkingEvent>],
    ) -> Result<(), InsertError> {
        let row = space::ActiveModel {
            space_id: Set(s.space_id.to_string()),
            lot: Set(s.lot.to_string()),
            floor: Set(s.floor.clone()),
            number: Set(i64::from(s.number)),
            hourly_rate_currency: Set(s.hourly_rate.currency().to_string()),
            hourly_rate_minor: Set(s.hourly_rate.minor_units()),
        };
        self.insert(row, events).await
    }

    async fn open_session(&self, space_id: &SpaceId) -> Result<Option<Session>, StoreError> {
        session::Entity::find()
            .filter(session::Column::OpenSpace.eq(space_id.as_str()))
            .one(self.db.writer())
            .await
            .map_err(store_err)?
            .map(session_from_row)
            .transpose()
    }

    async fn get_session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        session::Entity::find_by_id(id.to_string())
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(session_from_row)
            .transpose()
    }

    async fn insert_session(
        &self,
        s: &Session,
        events: &[Recorded<ParkingEvent>],
    ) -> Result<(), InsertError> {
        crate::origin::link(self.db.reader(), &s.reservation_id).await;
        self.insert(session_row(s), events).await
    }

    async fn save_session(
        &self,
        s: &mut Session,
        events: &[Recorded<ParkingEvent>],
    ) -> Result<(), SaveError> {
        crate::origin::link(self.db.reader(), &s.reservation_id).await;
        let mut next = s.clone();
        next.bump_version();
        let mut values = session_row(&next);
        values.session_id = NotSet;
        let key = (session::Column::SessionId, s.session_id.to_string());
        let events = events.iter().map(encode_parking).collect();
        let version = session::Column::Version;
        match change::update(&self.db, None, values, key, version, s.version, events).await? {
            Change::Done => {
                *s = next;
                Ok(())
            }
            Change::Refused => Err(SaveError::Conflict),
            Change::AlreadyHandled => Err(SaveError::AlreadyHandled),
        }
    }

    async fn append_events(&self, events: &[Recorded<ParkingEvent>]) -> Result<(), StoreError> {
        let encoded: Arc<[_]> = events.iter().map(encode_parking).collect();
        self.db
            .write(move |tx| {
                let encoded = Arc::clone(&encoded);
                Box::pin(async move {
                    outbox::append_in(tx, &encoded).await?;
                    Ok(Verdict::Keep(()))
                })
            })
            .await
    }
}

impl ReservationReplica for ParkingStore {
    async fn lookup(
        &self,
        space_id: &SpaceId,
        plate: &VehiclePlate,
        at: Timestamp,
    ) -> Result<Option<VerifiedEntry>, StoreError> {
        let rows = replica::Entity::find()
            .filter(replica::Column::SpaceId.eq(space_id.as_str()))
            .filter(replica::Column::VehiclePlate.eq(plate.as_str()))
            .filter(replica::Column::Active.eq(true))
            .all(self.db.reader())
            .await
            .map_err(store_err)?;
        for row in rows {
            let entry = replica_from_row(row)?;
            if !entry.admits(space_id, plate, at) {
                continue;
            }
            let used = session::Entity::find()
                .filter(session::Column::ReservationId.eq(entry.reservation_id.to_string()))
                .filter(session::Column::Status.eq(SessionStatus::Ended.as_str()))
                .one(self.db.reader())
                .await
                .map_err(store_err)?
                .is_some();
            if !used {
                return Ok(Some(VerifiedEntry {
                    reservation_id: entry.reservation_id,
                    window: entry.window,
                }));
            }
        }
        Ok(None)
    }

    async fn apply(&self, update: &ReplicaUpdate, caused_by: EventId) -> Result<(), SaveError> {
        let incoming = update.entry().clone();
        self.db
            .write(move |tx| {
                let incoming = incoming.clone();
                Box::pin(async move {
                    if !outbox::record_cause(tx, Some(caused_by)).await? {
                        return Ok(Verdict::Keep(Err(SaveError::AlreadyHandled)));
                    }
                    let stored = replica::Entity::find_by_id(incoming.reservation_id.to_string())
                        .one(tx.conn())
                        .await
                        .map_err(store_err)?
                        .map(replica_from_row)
                        .transpose()?;
                    crate::origin::remember(tx.conn(), &incoming.reservation_id).await?;
                    if let Some(merged) = ReplicaEntry::merge(stored.as_ref(), incoming) {
                        let row = replica::ActiveModel {
                            reservation_id: Set(merged.reservation_id.to_string()),
                            space_id: Set(merged.space_id.to_string()),
                            vehicle_plate: Set(merged.vehicle_plate.to_string()),
                            window_start: Set(micros(merged.window.start())),
                            window_end: Set(micros(merged.window.end())),
                            active: Set(merged.active),
                        };
                        if stored.is_some() {
                            replica::Entity::update(row)
                                .exec(tx.conn())
                                .await
                                .map_err(store_err)?;
                        } else {
                            replica::Entity::insert(row)
                                .exec_without_returning(tx.conn())
                                .await
                                .map_err(store_err)?;
                        }
                    }
                    Ok(Verdict::Keep(Ok(())))
                })
            })
            .await?
    }
}
