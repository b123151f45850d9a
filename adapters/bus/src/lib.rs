//! Event delivery behind the domain's [`EventPublisher`](domain_kernel::EventPublisher)
//! port and a [`Handler`] for consumers.
//!
//! - [`nats`]: JetStream. One stream per producing context (file storage, a
//!   duplicate window so a re-published event id is dropped), a publisher that
//!   sets `Nats-Msg-Id` and waits for every ack within a bounded window, and
//!   durable pull consumers with explicit ack, `ack_wait`, `max_deliver` and a
//!   dead-letter subject, recreated when heartbeats stop. Replicas of a service
//!   share one durable (competing consumers).
//! - [`dlq`]: dead letters for operators: one per consumer and event, listed,
//!   and replayed to the one consumer they failed for.
//! - [`embedded`]: the same contract in process, for `roaming up` with nothing
//!   installed: publishing returns only once every subscriber committed (or
//!   dead-lettered) the event, so the relay marks it sent only then, and an event
//!   the relay re-publishes after a crash is delivered again (the consumer's
//!   inbox makes that harmless).

pub mod dlq;
pub mod embedded;
mod handler;
pub mod nats;
#[cfg(feature = "test-util")]
pub mod testing;

pub use handler::{Delivery, HandleError, Handler};
