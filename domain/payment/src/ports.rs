//! What the payment context needs from the outside world.

use std::future::Future;

use domain_kernel::{CardDetails, EventId, Money, Recorded, ReservationId, StoreError};

use crate::payment::{DeclineReason, Payment, PaymentEvent};

/// The card network's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    Approved,
    Declined(DeclineReason),
}

/// The card network could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("acquirer unavailable")]
pub struct AcquirerUnavailable;

/// The card network (simulated: [`SimulatedAcquirer`](crate::SimulatedAcquirer)).
pub trait Acquirer: Send + Sync {
    fn authorize(
        &self,
        card: &CardDetails,
        amount: Money,
    ) -> impl Future<Output = Result<Authorization, AcquirerUnavailable>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// A payment for this reservation exists already (unique reservation id).
    #[error("payment exists")]
    Duplicate,
    #[error("event already handled")]
    AlreadyHandled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use domain_kernel::SaveError;

/// Payments and their outbox.
pub trait PaymentRepository: Send + Sync {
    fn get_by_reservation(
        &self,
        reservation_id: ReservationId,
    ) -> impl Future<Output = Result<Option<Payment>, StoreError>> + Send;

    /// Inserts a new payment with its events (and `caused_by` in the inbox) in one
    /// transaction.
    ///
    /// # Errors
    /// [`InsertError::Duplicate`] when the reservation has a payment already;
    /// [`InsertError::AlreadyHandled`] when `caused_by` is in the inbox.
    fn insert(
        &self,
        payment: &Payment,
        events: &[Recorded<PaymentEvent>],
        caused_by: Option<EventId>,
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// Saves a changed payment with its events (and `caused_by` in the inbox) in
    /// one transaction, if its version is still the stored one; bumps it.
    fn save(
        &self,
        payment: &mut Payment,
        events: &[Recorded<PaymentEvent>],
        caused_by: Option<EventId>,
    ) -> impl Future<Output = Result<(), SaveError>> + Send;
}
