//! Persistence of every service through sea-orm, on SQLite (embedded) and
//! PostgreSQL (production) from the same code, chosen by the database URL.
//!
//! - [`Db`]: the connection; on SQLite one writer connection (WAL, busy timeout,
//!   created if missing) plus a read-only pool, so writes are serialized in the
//!   process and readers never block them; both on `rusqlite` behind sea-orm's
//!   proxy interface, with no thread hop per statement (module `sqlite`). Writes are jobs for [`Db::write`]; a
//!   writer task commits the jobs that queued together in one transaction
//!   (SQLite one batch at a time, PostgreSQL up to four at once on pooled
//!   connections; [`writer`]: group commit, each job's outcome its own).
//! - Each service's repositories implement its domain ports and write the events
//!   of a change to the `outbox` table, and the causing event id to the `inbox`
//!   table, in the same transaction as the change ([`outbox`]).
//! - [`Relay`] publishes the outbox in order through an
//!   [`EventPublisher`](domain_kernel::EventPublisher), marks rows sent only after
//!   the publisher confirmed them, is woken on commit, and holds a lease so only
//!   one relay per database publishes.
//! - Database errors never cross a port: a unique violation becomes the domain's
//!   duplicate error, anything else an opaque [`StoreError`](domain_kernel::StoreError):
//!   `Unavailable` when the database could not be reached or answer in time
//!   (a retry may succeed), `Failed` otherwise. PostgreSQL statements and idle
//!   transactions are bounded ([`STATEMENT_TIMEOUT`], [`IDLE_IN_TRANSACTION_TIMEOUT`]),
//!   and so is the wait for a commit's answer ([`COMMIT_TIMEOUT`]); after a
//!   switchover or an abandoned commit the pool's older connections are closed
//!   (`stale`).

mod change;
mod db;
mod details;
mod error;
pub mod migrations;
pub mod origin;
pub mod outbox;
mod relay;
mod sqlite;
mod stale;
mod time_codec;
pub mod writer;

pub mod parking;
pub mod payment;
pub mod rental;
pub mod reservation;
pub mod view;

#[cfg(feature = "test-util")]
pub mod testing;

pub use db::{
    Backend, DEFAULT_POOL, Db, IDLE_IN_TRANSACTION_TIMEOUT, STATEMENT_TIMEOUT,
    create_database_if_missing,
};
pub use error::{AUTOCOMMIT_TIMEOUT, COMMIT_TIMEOUT, CommitTimedOut, store_err};
pub use relay::{OldestUnsent, Relay, RelayConfig, RelayError};
pub use writer::{JobFuture, Verdict, WriteTx, WriterStats};
