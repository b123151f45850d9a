//! The parking context: spaces, gates and parking sessions.
//!
//! A car enters only if it holds a reservation for this space now. The gate's
//! question goes to the reservation service first ([`ports::ReservationVerifier`],
//! session marked `ONLINE`); when that service cannot answer, the local replica of
//! reservations built from events decides ([`ports::ReservationReplica`],
//! `REPLICA`). One open session per space; a refused car is announced as
//! `entry_denied`.

mod model;
pub mod ports;
mod service;

#[cfg(any(test, feature = "test-util"))]
pub mod fakes;

pub use model::{
    DenialReason, ParkingEvent, ReplicaEntry, Session, SessionData, SessionStatus, Space,
    Verification,
};
pub use service::{HandleOutcome, ParkingError, ParkingReservation, ParkingService};
