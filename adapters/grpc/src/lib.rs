//! gRPC in and out.
//!
//! Inbound: one tonic server per service ([`reservation`], [`payment`],
//! [`rental`], [`parking`], [`view`]) that converts proto to domain at the
//! boundary (invalid fields -> `INVALID_ARGUMENT` with `BadRequest` field
//! violations), calls the domain use case with the caller's principal, and maps
//! domain errors to codes with a stable `ErrorInfo` reason ([`status`]).
//!
//! Identity: [`identity`] reads the principal the token check (`adapters-auth`)
//! put on the request; calls between services carry a service token.
//!
//! Outbound: [`clients`] implements the domain's `PaymentGateway` and
//! `ReservationVerifier` over gRPC behind a tower stack: deadline, circuit
//! breaker ([`breaker`]), concurrency limit with load shedding, and retries of
//! idempotent calls within a budget ([`resilience`]).

pub mod breaker;
pub mod clients;
pub mod identity;
pub mod parking;
pub mod payment;
pub mod rental;
pub mod reservation;
pub mod resilience;
pub mod status;
pub mod view;

/// `ErrorInfo.domain` of every error this mesh returns.
pub const ERROR_DOMAIN: &str = "roaming.mesh";

/// Names the reservation on the current RPC span (`reservation_id`), so one
/// reservation's calls can be found across services.
pub fn record_reservation(id: &domain_kernel::ReservationId) {
    tracing::Span::current().record("reservation_id", tracing::field::display(id));
}
