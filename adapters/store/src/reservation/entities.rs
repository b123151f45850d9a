//! Tables of the reservation database.

pub mod reservation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique_key = "idempotency")]
        pub customer_id: String,
        pub request_id: String,
        /// `request_id` while the reservation holds it, NULL once released (a
        /// retryable rejection): unique together with the customer.
        #[sea_orm(unique_key = "idempotency")]
        pub request_key: Option<String>,
        pub kind: String,
        pub device_model: Option<String>,
        pub country: Option<String>,
        pub pickup_booth: Option<String>,
        pub return_booth: Option<String>,
        pub start_date: Option<String>,
        pub end_date: Option<String>,
        pub space_id: Option<String>,
        pub vehicle_plate: Option<String>,
        pub window_start: Option<i64>,
        pub window_end: Option<i64>,
        pub price_currency: String,
        pub price_minor: i64,
        pub status: String,
        pub rejection: Option<String>,
        pub cancel_reason: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
        pub version: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod device_offer {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "device_offers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub device_model: String,
        pub daily_rate_currency: String,
        pub daily_rate_minor: i64,
        /// Comma-separated ISO country codes.
        pub countries: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod device_location {
    use sea_orm::entity::prelude::*;

    /// Where each unit is stocked, as of the latest event about it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "device_locations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub serial: String,
        pub device_model: String,
        pub booth: String,
        pub as_of: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod stock {
    use sea_orm::entity::prelude::*;

    /// Units of a model at a booth; the row capacity checks lock.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stock")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub booth: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub device_model: String,
        pub units: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod space {
    use sea_orm::entity::prelude::*;

    /// A reservable space; the row parking capacity checks lock.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_spaces")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub space_id: String,
        pub hourly_rate_currency: String,
        pub hourly_rate_minor: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
