//! The roaming mesh's services and their wiring.
//!
//! One module per service holds everything about it: its store, use cases,
//! RPC server, event consumers, periodic tasks and fault knobs
//! ([`reservation`], [`payment`], [`rental`], [`parking`], [`view`]); each
//! builds on [`host`] (port, database, outbox relay, readiness, consumers,
//! router), which builds on the runtime every server of the mesh shares
//! (`adapters_grpc::runtime`). [`up`] runs all of them in one process; each
//! can also run alone (`roaming serve <service>`), against PostgreSQL and NATS.
//! [`seed`] is what a new mesh starts with. [`plan`] is what a start checks
//! before it connects anywhere, and all that `roaming check-config` runs.

pub mod admin;
pub mod auth;
pub mod bus;
pub mod certs;
pub mod cli;
pub mod dlq;
pub mod host;
pub mod ops;
pub mod parking;
pub mod payment;
pub mod plan;
pub mod rebuild;
pub mod rental;
pub mod reservation;
pub mod seed;
pub mod settings;
pub mod up;
pub mod view;

pub use settings::Settings;

/// Every binary of the mesh (`roaming` and the one-service binaries link this
/// crate) allocates with mimalloc: glibc's malloc and free, with their
/// consolidation across threads, were ~15% of the mesh's CPU under load
/// (BENCHMARKS-LOG.md, run 6).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
