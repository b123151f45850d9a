//! gRPC in and out.
//!
//! Inbound: one tonic server per service ([`reservation`], [`payment`],
//! [`rental`], [`parking`], [`view`]) that converts proto to domain at the
//! boundary (invalid fields -> `INVALID_ARGUMENT` with `BadRequest` field
//! violations), calls the domain use case with the caller's principal, and maps
//! domain errors to codes with a stable `ErrorInfo` reason ([`status`]).
//!
//! Every request body is read in time and checked for gRPC framing before
//! a handler sees it ([`request_body`]), on every port.
//!
//! Identity: [`identity`] reads the principal the token check (`adapters-auth`)
//! put on the request; calls between services carry a service token.
//!
//! Outbound: [`clients`] implements the domain's `PaymentGateway` and
//! `ReservationVerifier` over gRPC behind a tower stack: deadline, circuit
//! breaker ([`breaker`]), concurrency limit with load shedding, and retries of
//! idempotent calls within a budget ([`resilience`]).

pub mod balance;
pub mod breaker;
pub mod clients;
mod fields;
pub mod identity;
pub mod incoming;
pub mod parking;
pub mod payment;
pub mod peer;
pub mod rental;
pub mod request_body;
pub mod reservation;
pub mod resilience;
pub mod runtime;
pub mod status;
pub mod tls;
pub mod view;

#[cfg(test)]
mod error_table;

/// `ErrorInfo.domain` of every error this mesh returns.
pub const ERROR_DOMAIN: &str = proto::reasons::DOMAIN;

/// Names the reservation on the current RPC span (`reservation_id`), so one
/// reservation's calls can be found across services.
pub fn record_reservation(id: &domain_kernel::ReservationId) {
    tracing::Span::current().record("reservation_id", tracing::field::display(id));
}

/// Server reflection over the whole v1 contract, the health service and the
/// `google.rpc` error details (so `grpcurl` can print them), listing only
/// `services` (every service when empty). Build it twice: v1 and v1alpha.
pub fn reflection(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    services.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET),
        |builder, name| builder.with_service_name(*name),
    )
}
