//! One migrator per service database. Tables are created from the sea-orm
//! entities (one schema definition, both backends); composite indexes the
//! entity attributes cannot express are added by hand.

use sea_orm::sea_query::{Index, IndexCreateStatement};
use sea_orm::{EntityTrait, Schema};
pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::prelude::*;

use crate::outbox::OUTBOX_CHANNEL;
use crate::{origin, outbox, parking, payment, rental, reservation, view};

async fn create<E: EntityTrait>(m: &SchemaManager<'_>, entity: E) -> Result<(), DbErr> {
    let schema = Schema::new(m.get_database_backend());
    m.create_table(
        schema
            .create_table_from_entity(entity)
            .if_not_exists()
            .to_owned(),
    )
    .await?;
    for mut index in schema.create_index_from_entity(entity) {
        m.create_index(index.if_not_exists().to_owned()).await?;
    }
    Ok(())
}

async fn index(m: &SchemaManager<'_>, mut index: IndexCreateStatement) -> Result<(), DbErr> {
    m.create_index(index.if_not_exists().to_owned()).await
}

/// Runs `statements` in order on PostgreSQL; nothing on SQLite (for the
/// schema only PostgreSQL needs: triggers, partial indexes of its own).
async fn on_postgres(
    m: &SchemaManager<'_>,
    statements: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<(), DbErr> {
    if m.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    for statement in statements {
        m.get_connection()
            .execute_unprepared(statement.as_ref())
            .await?;
    }
    Ok(())
}

/// Tables every service database has.
async fn common(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    create(m, outbox::message::Entity).await?;
    create(m, outbox::inbox::Entity).await?;
    create(m, outbox::lease::Entity).await
}

macro_rules! migrator {
    ($(#[$doc:meta])* $migrator:ident, $migration:ident, $name:literal, |$m:ident| $body:block $(, then $($more:expr),+)?) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $migrator;

        impl MigratorTrait for $migrator {
            fn migrations() -> Vec<Box<dyn MigrationTrait>> {
                vec![Box::new($migration) $($(, Box::new($more))+)?]
            }
        }

        #[derive(Debug)]
        struct $migration;

        impl MigrationName for $migration {
            fn name(&self) -> &str {
                $name
            }
        }

        #[allow(elided_lifetimes_in_paths, reason = "async_trait cannot name the lifetime")]
        #[async_trait::async_trait]
        impl MigrationTrait for $migration {
            async fn up(&self, $m: &SchemaManager) -> Result<(), DbErr> {
                common($m).await?;
                let () = $body;
                Ok(())
            }
        }
    };
}

/// A migration after a database's first: `$name` is recorded in
/// `seaql_migrations` and must never change.
macro_rules! migration {
    ($(#[$doc:meta])* $migration:ident, $name:literal, |$m:ident| $body:block) => {
        $(#[$doc])*
        #[derive(Debug)]
        struct $migration;

        impl MigrationName for $migration {
            fn name(&self) -> &'static str {
                $name
            }
        }

        #[allow(elided_lifetimes_in_paths, reason = "async_trait cannot name the lifetime")]
        #[async_trait::async_trait]
        impl MigrationTrait for $migration {
            async fn up(&self, $m: &SchemaManager) -> Result<(), DbErr> $body
        }
    };
}

migrator!(
    /// The reservation database: reservations, the catalog (offers, device
    /// locations, stock, spaces), outbox, inbox.
    ReservationMigrator,
    ReservationInit,
    "m0001_reservation_init",
    |m| {
        use reservation::entities::{device_location, device_offer, reservation as r, space, stock};
        create(m, r::Entity).await?;
        create(m, device_offer::Entity).await?;
        create(m, device_location::Entity).await?;
        create(m, stock::Entity).await?;
        create(m, space::Entity).await?;
        // Capacity checks read the holdings of one resource.
        index(m, Index::create().name("ix_reservations_roaming").table(r::Entity).col(r::Column::PickupBooth).col(r::Column::DeviceModel).col(r::Column::Status).to_owned()).await?;
        // The capacity check's range: reservations of this booth and model that
        // end on or after the candidate's first day (BENCHMARKS-LOG.md: without
        // it every check scanned all of the booth's reservations).
        index(
            m,
            Index::create()
                .name("ix_reservations_roaming_end")
                .table(r::Entity)
                .col(r::Column::PickupBooth)
                .col(r::Column::DeviceModel)
                .col(r::Column::EndDate)
                .to_owned(),
        )
        .await?;
        index(m, Index::create().name("ix_reservations_parking").table(r::Entity).col(r::Column::SpaceId).col(r::Column::Status).to_owned()).await?;
        // The sweeper finds stale claims.
        index(m, Index::create().name("ix_reservations_pending").table(r::Entity).col(r::Column::Status).col(r::Column::CreatedAt).to_owned()).await?;
    },
    then ReservationParkingEnd, OutboxNotify, ReservationRoamingHeld, OutboxUnsent,
        ReservationRoamingUnindexed, ReservationCustomerPending, TraceOrigin
);

migration!(
    /// The parking capacity check's range: holdings of this space that end after
    /// the candidate starts and at most `MAX_PARKING_WINDOW` after it ends (before
    /// it, every check read every holding of the space, a list that grows with its
    /// future bookings).
    ReservationParkingEnd,
    "m0002_reservation_parking_end",
    |m| {
        use reservation::entities::reservation as r;
        index(
            m,
            Index::create()
                .name("ix_reservations_parking_end")
                .table(r::Entity)
                .col(r::Column::SpaceId)
                .col(r::Column::WindowEnd)
                .to_owned(),
        )
        .await
    }
);

migrator!(
    /// The payment database.
    PaymentMigrator,
    PaymentInit,
    "m0001_payment_init",
    |m| {
        create(m, payment::entities::payment::Entity).await?;
    },
    then OutboxNotify, OutboxUnsent, TraceOrigin
);

migrator!(
    /// The rental database: devices and rentals.
    RentalMigrator,
    RentalInit,
    "m0001_rental_init",
    |m| {
        use rental::entities::{device, rental as r};
        create(m, device::Entity).await?;
        create(m, r::Entity).await?;
        index(m, Index::create().name("ix_devices_booth").table(device::Entity).col(device::Column::Booth).col(device::Column::DeviceModel).to_owned()).await?;
    },
    then OutboxNotify, OutboxUnsent, TraceOrigin
);

migrator!(
    /// The parking database: spaces, sessions and the reservation replica.
    ParkingMigrator,
    ParkingInit,
    "m0001_parking_init",
    |m| {
        use parking::entities::{replica, session, space};
        create(m, space::Entity).await?;
        create(m, session::Entity).await?;
        create(m, replica::Entity).await?;
        index(m, Index::create().name("ix_replica_lookup").table(replica::Entity).col(replica::Column::SpaceId).col(replica::Column::VehiclePlate).to_owned()).await?;
    },
    then OutboxNotify, OutboxUnsent, TraceOrigin
);

migrator!(
    /// The view database: "my page" rows.
    ViewMigrator,
    ViewInit,
    "m0001_view_init",
    |m| {
        use view::entities::view as v;
        create(m, v::Entity).await?;
        index(m, Index::create().name("ix_views_customer").table(v::Entity).col(v::Column::CustomerId).col(v::Column::CreatedAt).to_owned()).await?;
    },
    then ViewSpaceLots, OutboxNotify, OutboxUnsent, ViewRebuilds, TraceOrigin
);

migration!(
    /// Where a rebuilt view database continues on each stream
    /// (`roaming view rebuild`); empty in a database the service built.
    ViewRebuilds,
    "m0003_view_rebuilds",
    |m| {
        create(m, view::entities::rebuild::Entity).await
    }
);

migration!(
    /// The lot of each space, learnt from `roaming.parking.space_registered`, so
    /// gates read schedules of their own lot only.
    ViewSpaceLots,
    "m0002_view_space_lots",
    |m| {
        create(m, view::entities::space_lot::Entity).await
    }
);

migration!(
    /// On PostgreSQL, a statement-level trigger on `outbox` that notifies
    /// [`OUTBOX_CHANNEL`]: delivered at commit (never for a rolled-back
    /// transaction), one per transaction however many rows it wrote, and with no
    /// extra round trip for the writer. SQLite has one writing process, whose
    /// relay is woken in process.
    OutboxNotify,
    "m0100_outbox_notify",
    |m| {
        on_postgres(
            m,
            [
                format!(
                    "CREATE OR REPLACE FUNCTION roaming_outbox_notify() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', ''); \
                     RETURN NULL; END $$"
                ),
                "DROP TRIGGER IF EXISTS outbox_notify ON outbox".to_owned(),
                "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox \
                 FOR EACH STATEMENT EXECUTE FUNCTION roaming_outbox_notify()"
                    .to_owned(),
            ],
        )
        .await
    }
);

migration!(
    /// On PostgreSQL, an index of the unsent outbox rows in `seq` order: the
    /// relay's read (`outbox::unsent`, oldest first) walks it from its start and
    /// stops after a batch. Without it the planner either sorted every entry of
    /// the `sent_at` index whose value was NULL (dead versions of sent rows
    /// included, until vacuum) or walked the primary key through every sent row
    /// kept for `keep_sent`: 4.5 million entries read in one benchmark run by a
    /// relay that published 7,000 rows (BENCHMARKS-LOG.md, run 8). SQLite needs none:
    /// its `sent_at` index holds the rowid (`seq`) after the value, so the NULL
    /// entries come in `seq` order already.
    OutboxUnsent,
    "m0101_outbox_unsent",
    |m| {
        on_postgres(
            m,
            ["CREATE INDEX IF NOT EXISTS ix_outbox_unsent ON outbox (seq) WHERE sent_at IS NULL"],
        )
        .await
    }
);

migration!(
    /// The roaming capacity check reads, per booth and model, the start and end
    /// dates and status of the holdings that may overlap the candidate, grouped by
    /// date range (`reservation::admits`). This index holds all of that, so the
    /// check never reads the table; it starts with the columns of
    /// `ix_reservations_roaming_end`, which it replaces, and holds roaming rows
    /// only.
    ReservationRoamingHeld,
    "m0003_reservation_roaming_held",
    |m| {
        // Roaming rows only (parking rows have no booth): a parking
        // reservation's every status change would otherwise rewrite an
        // entry here too. The same statement on both backends (sea-query's
        // index builder has no WHERE); `pickup_booth = ?` in the query
        // implies the predicate, so both planners use it.
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_reservations_roaming_held ON reservations \
                 (pickup_booth, device_model, end_date, start_date, status) \
                 WHERE pickup_booth IS NOT NULL",
            )
            .await?;
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_reservations_roaming_end")
            .await?;
        Ok(())
    }
);

migration!(
    /// Drops `ix_reservations_roaming` (booth, model, status): since m0003 the
    /// capacity check reads `ix_reservations_roaming_held`, and no other query
    /// filters on the booth, so the index served nothing while every insert
    /// and every status change of every reservation (parking rows too, under a
    /// NULL booth) rewrote an entry of it on the reservation database's one
    /// writer.
    ReservationRoamingUnindexed,
    "m0004_reservation_roaming_unindexed",
    |m| {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_reservations_roaming")
            .await?;
        Ok(())
    }
);

migration!(
    /// A customer's claims awaiting payment, which every new claim counts (at
    /// most `pending_claims_per_customer`, DOMAIN.md invariant 8). Partial: an
    /// entry exists only while a reservation is `PENDING_PAYMENT` (the
    /// milliseconds of its payment call), so the index stays as small as the
    /// claims in flight and a customer's history is never read. The same
    /// statement on both backends; the query states the predicate literally
    /// (`reservation::PENDING_PREDICATE`) so both planners use it.
    ReservationCustomerPending,
    "m0005_reservation_customer_pending",
    |m| {
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_reservations_customer_pending ON reservations \
                 (customer_id) WHERE status = 'PENDING_PAYMENT'",
            )
            .await?;
        Ok(())
    }
);

migration!(
    /// Where each reservation's trace began in this database
    /// (`crate::origin`): later steps link their spans to it.
    TraceOrigin,
    "m0102_trace_origin",
    |m| { create(m, origin::entity::Entity).await }
);
