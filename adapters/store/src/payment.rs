//! The payment database: [`PaymentStore`] implements [`PaymentRepository`].

use adapters_codec::encode_payment;
use domain_kernel::{EventId, Money, PaymentId, Recorded, ReservationId, StoreError};
use domain_payment::ports::{InsertError, PaymentRepository, SaveError};
use domain_payment::{DeclineReason, Payment, PaymentData, PaymentEvent, PaymentStatus};
use sea_orm::ActiveValue::NotSet;
use sea_orm::{EntityTrait, Set};

use crate::change::{self, Change};
use crate::db::Db;
use crate::error::{corrupt, store_err};
use crate::time_codec::{from_micros, micros};

pub mod entities {
    //! Tables of the payment database.

    pub mod payment {
        use sea_orm::entity::prelude::*;

        /// One payment per reservation: the reservation id is the key.
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "payments")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub reservation_id: String,
            #[sea_orm(unique)]
            pub payment_id: String,
            pub amount_currency: String,
            pub amount_minor: i64,
            pub status: String,
            pub decline_reason: Option<String>,
            /// Never more of the card than this (DOMAIN.md, "Lifecycles").
            pub card_last_four: Option<String>,
            pub card_company: Option<String>,
            pub reservation_closed: bool,
            pub created_at: i64,
            pub updated_at: i64,
            pub version: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::payment as row;

/// How [`corrupt`] names this store's rows.
const RECORD: &str = "payment";

fn to_row(p: &Payment) -> row::ActiveModel {
    row::ActiveModel {
        reservation_id: Set(p.reservation_id.to_string()),
        payment_id: Set(p.id.to_string()),
        amount_currency: Set(p.amount.currency().to_string()),
        amount_minor: Set(p.amount.minor_units()),
        status: Set(p.status.as_str().to_owned()),
        decline_reason: Set(p.decline_reason.map(|r| r.as_str().to_owned())),
        card_last_four: Set(p.card_last_four.clone()),
        card_company: Set(p.card_company.clone()),
        reservation_closed: Set(p.reservation_closed),
        created_at: Set(micros(p.created_at)),
        updated_at: Set(micros(p.updated_at)),
        version: Set(i64::try_from(p.version).unwrap_or(i64::MAX)),
    }
}

fn from_row(m: row::Model) -> Result<Payment, StoreError> {
    Ok(Payment::restore(PaymentData {
        id: PaymentId::parse(&m.payment_id).map_err(|e| corrupt(RECORD, "payment_id", e))?,
        reservation_id: ReservationId::parse(&m.reservation_id)
            .map_err(|e| corrupt(RECORD, "reservation_id", e))?,
        amount: Money::parse(&m.amount_currency, m.amount_minor)
            .map_err(|e| corrupt(RECORD, "amount", e))?,
        status: PaymentStatus::parse(&m.status)
            .ok_or_else(|| corrupt(RECORD, "status", &m.status))?,
        decline_reason: m
            .decline_reason
            .map(|r| DeclineReason::parse(&r).ok_or_else(|| corrupt(RECORD, "decline_reason", r)))
            .transpose()?,
        card_last_four: m.card_last_four,
        card_company: m.card_company,
        reservation_closed: m.reservation_closed,
        created_at: from_micros(m.created_at)?,
        updated_at: from_micros(m.updated_at)?,
        version: u64::try_from(m.version).map_err(|e| corrupt(RECORD, "version", e))?,
    }))
}

/// Payments, outbox and inbox of the payment service.
#[derive(Debug, Clone)]
pub struct PaymentStore {
    db: Db,
}

impl PaymentStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

impl PaymentRepository for PaymentStore {
    async fn get_by_reservation(
        &self,
        reservation_id: ReservationId,
    ) -> Result<Option<Payment>, StoreError> {
        row::Entity::find_by_id(reservation_id.to_string())
            .one(self.db.reader())
            .await
            .map_err(store_err)?
            .map(from_row)
            .transpose()
    }

    async fn insert(
        &self,
        payment: &Payment,
        events: &[Recorded<PaymentEvent>],
        caused_by: Option<EventId>,
    ) -> Result<(), InsertError> {
        let events = events.iter().map(encode_payment).collect();
        match change::insert(&self.db, caused_by, to_row(payment), events).await? {
            Change::Done => Ok(()),
            Change::AlreadyHandled => Err(InsertError::AlreadyHandled),
            Change::Refused => Err(InsertError::Duplicate),
        }
    }

    async fn save(
        &self,
        payment: &mut Payment,
        events: &[Recorded<PaymentEvent>],
        caused_by: Option<EventId>,
    ) -> Result<(), SaveError> {
        let mut next = payment.clone();
        next.bump_version();
        let mut values = to_row(&next);
        values.reservation_id = NotSet;
        let key = (
            row::Column::ReservationId,
            payment.reservation_id.to_string(),
        );
        let events = events.iter().map(encode_payment).collect();
        let version = (row::Column::Version, payment.version);
        match change::update(
            &self.db, caused_by, values, key, version.0, version.1, events,
        )
        .await?
        {
            Change::Done => {
                *payment = next;
                Ok(())
            }
            Change::AlreadyHandled => Err(SaveError::AlreadyHandled),
            Change::Refused => Err(SaveError::Conflict),
        }
    }
}
