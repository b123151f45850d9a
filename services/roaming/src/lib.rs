//! The roaming mesh's services and their wiring.
//!
//! [`apps`] builds each service from [`Settings`]: its database and store, the
//! domain use cases, the gRPC server (health, reflection, token verification), the outbox
//! relay, its event consumers. [`up`] runs all of them in one process; each can
//! also run alone (`roaming serve <service>`), against PostgreSQL and NATS.

pub mod admin;
pub mod apps;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod handlers;
pub mod ops;
pub mod server;
pub mod settings;
pub mod up;

pub use settings::Settings;
