//! The payment context: one payment per reservation, paid up front.
//!
//! - [`Payment`]: `CAPTURED`, `DECLINED`, `REFUNDED`, `VOIDED` (DOMAIN.md, "Lifecycles").
//!   The card number is never kept: only its last four digits and the company.
//! - The reservation id is the idempotency key: a repeated [`PaymentService::pay`]
//!   returns the first outcome, a different amount is refused.
//! - Invariant 1 from this side: a capture for a reservation that was rejected is
//!   voided, one that was canceled is refunded. A rejection that arrives before
//!   the capture leaves a `VOIDED` record, so a late `Pay` captures nothing.
//! - [`SimulatedAcquirer`]: the test cards of DOMAIN.md, "Lifecycles".

mod acquirer;
mod payment;
pub mod ports;
mod service;

#[cfg(any(test, feature = "test-util"))]
pub mod fakes;

pub use acquirer::{SimulatedAcquirer, TEST_CARD_DECLINED, TEST_CARD_INSUFFICIENT_FUNDS};
pub use payment::{
    DeclineReason, Payment, PaymentData, PaymentEvent, PaymentStatus, TransitionError,
};
pub use service::{
    GetError, HandleOutcome, PayError, PaymentService, RESERVATION_SERVICE, RefundError,
    ReservationClosed,
};
