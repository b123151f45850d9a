//! Where a reservation's trace began, so that its later steps can point there.
//!
//! A hand-over, a return, a retrieval, a cancellation or a gate entry is a
//! trace of its own (a clerk's or a gate's call, days later). Each service
//! database keeps, per reservation, the W3C trace context of the first span
//! that acted on the reservation there ([`remember`], inside the write that
//! first stored it: the reserve call in the reservation service, the
//! consumer of `reservation.reserved` elsewhere, whose span continues the
//! reserve call's trace); a later step's span gets a span link to it
//! ([`link`]). Telemetry only: nothing reads it for a decision, and a row
//! missing (a reservation older than this table) only means no link.

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, Set};

use domain_kernel::{ReservationId, StoreError};

use crate::error::store_err;

pub mod entity {
    //! `trace_origin`: the `traceparent` of a reservation's first span here.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "trace_origin")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub reservation_id: String,
        pub traceparent: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Records the current span as where `id`'s trace began here, unless a
/// first span is recorded already (a redelivery, a retried call). Nothing
/// when no span is being recorded (no exporter: the common case costs no
/// write).
pub async fn remember<C: ConnectionTrait>(conn: &C, id: &ReservationId) -> Result<(), StoreError> {
    let Some(traceparent) = adapters_telemetry::propagation::current_traceparent() else {
        return Ok(());
    };
    let row = entity::ActiveModel {
        reservation_id: Set(id.to_string()),
        traceparent: Set(traceparent),
    };
    entity::Entity::insert(row)
        .on_conflict(
            OnConflict::column(entity::Column::ReservationId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await
        .map_err(store_err)?;
    Ok(())
}

/// Links the current span to where `id`'s trace began, when that is
/// another trace (the first trace's own later writes need none). Nothing
/// when no span is being recorded; a failed read only costs the link.
pub async fn link<C: ConnectionTrait>(conn: &C, id: &ReservationId) {
    if adapters_telemetry::propagation::current_traceparent().is_none() {
        return;
    }
    match entity::Entity::find_by_id(id.to_string()).one(conn).await {
        Ok(Some(row)) => adapters_telemetry::propagation::link_current(&row.traceparent),
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "reading a trace origin failed; no link"),
    }
}

/// [`remember`] in a write of its own, for a store whose first write of a
/// reservation goes through a shared helper. Nothing when no span is being
/// recorded.
pub async fn remember_apart(db: &crate::Db, id: &ReservationId) -> Result<(), StoreError> {
    if adapters_telemetry::propagation::current_traceparent().is_none() {
        return Ok(());
    }
    let id = *id;
    db.write(move |tx| {
        Box::pin(async move {
            remember(tx.conn(), &id).await?;
            Ok(crate::writer::Verdict::Keep(()))
        })
    })
    .await
}
