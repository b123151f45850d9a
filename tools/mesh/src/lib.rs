//! The mesh as processes, for the tools (`tools/chaos`, `tools/bench`) and the
//! integration tests of `services/roaming`: one harness, not one per caller.
//!
//! - [`Embedded`]: `roaming up` as one child on a fresh data directory.
//! - [`Distributed`]: its own `nats-server` with JetStream, fresh PostgreSQL
//!   databases ([`Databases`]), keys ([`Keys`]), and a `roaming serve` child
//!   per replica and gateway ([`Layout`]), started in dependency order.
//! - [`wait`]: until a server answers `SERVING` ([`wait_serving`]), until a
//!   condition holds ([`eventually`]).
//! - [`listening`]: every child binds port 0 and prints the port it got
//!   (`listening service=<name> addr=<ip:port>`); the harness reads that line
//!   from the child's output, so no port is probed and released first.
//! - [`fixtures`]: tokens for any principal ([`Callers`]) and the requests,
//!   cards, dates and timestamps the harnesses send.

pub mod distributed;
pub mod embedded;
pub mod fixtures;
pub mod listening;
pub mod wait;

pub use adapters_bus::testing::NatsCluster;
pub use distributed::{Broker, Databases, Distributed, Keys, Layout, SERVICES};
pub use embedded::Embedded;
pub use fixtures::Callers;
pub use wait::{eventually, wait_serving};
