//! The reservation context: the core of the mesh.
//!
//! - [`Reservation`]: the aggregate and its state machine (DOMAIN.md, "Lifecycles");
//!   transitions are monotonic and a reservation only leaves `PENDING_PAYMENT`
//!   through a payment outcome.
//! - [`pricing`]: server-side prices and the period rules (30 days of roaming,
//!   24 hours of parking, nothing in the past).
//! - [`capacity`]: invariant 2 (no overbooking) as a pure rule that the
//!   persistence adapter applies inside one atomic transaction.
//! - [`ports`]: the repository (state and outbox events in one commit), the
//!   catalog, and the payment gateway.
//! - [`ReservationService`]: the use cases, each taking the caller's
//!   [`Principal`](domain_kernel::Principal) and applying DOMAIN.md's roles.

pub mod capacity;
pub mod ports;
pub mod pricing;
mod reservation;
mod service;

#[cfg(any(test, feature = "test-util"))]
pub mod fakes;

pub use reservation::{
    BeginUseRefused, CancelRefused, CatalogEvent, Details, Kind, ParkingDetails, RejectionReason,
    Reservation, ReservationData, ReservationEvent, RoamingDetails, Status, TransitionError, Usage,
    UsageEvent,
};
pub use service::{
    BeginUseError, CancelError, GetError, HandleOutcome, ParkingEntry, QuoteError, RENTAL_SERVICE,
    ReservationService, ReserveError, VerifyError,
};

#[cfg(test)]
mod proptests;
