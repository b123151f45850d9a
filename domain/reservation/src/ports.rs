//! What the reservation context needs from the outside world.

use std::future::Future;

use domain_kernel::{
    BoothCode, CardDetails, CustomerId, EventId, Money, Recorded, RequestId, ReservationId, Serial,
    SpaceId, StoreError, Timestamp, VehiclePlate,
};
use time::Duration;

use crate::pricing::{DeviceOffer, SpaceOffer};
use crate::reservation::Reservation;
use crate::reservation::ReservationEvent;

/// Why a pending reservation could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// [`capacity::admits`](crate::capacity::admits) said no.
    #[error("sold out")]
    SoldOut,
    /// The customer's request id is already held by another reservation.
    #[error("request id already used")]
    DuplicateRequest,
    /// The customer already has `limit` claims awaiting payment.
    #[error("{limit} claims already await payment")]
    TooManyPending { limit: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use domain_kernel::SaveError;

/// Reservations and their outbox.
pub trait ReservationRepository: Send + Sync {
    /// Inserts a `PENDING_PAYMENT` reservation, atomically with two checks,
    /// within one transaction:
    ///
    /// - the customer's claims: serialized against every other insert for the
    ///   same customer (on every replica), count the customer's
    ///   `PENDING_PAYMENT` reservations and insert only if fewer than
    ///   `max_pending` ([`capacity::customer_may_claim`](crate::capacity::customer_may_claim));
    /// - capacity: serialized against every other insert for the same
    ///   resource, read the units of the resource from the catalog and the
    ///   holding reservations of that resource, apply
    ///   [`capacity::admits`](crate::capacity::admits), and insert only if it
    ///   admits.
    ///
    /// Whoever serializes both must take the customer's turn before the
    /// resource's (one order everywhere: no deadlock).
    ///
    /// # Errors
    /// [`InsertError::TooManyPending`] when the customer already has
    /// `max_pending` claims; [`InsertError::SoldOut`] when the capacity rule
    /// refuses (also when the resource has no units);
    /// [`InsertError::DuplicateRequest`] when the `(customer_id, request_id)`
    /// key is held by another reservation (see
    /// [`Reservation::holds_request_id`]); [`InsertError::Store`] otherwise.
    fn insert_pending(
        &self,
        reservation: &Reservation,
        max_pending: u32,
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// Saves a changed reservation and appends `events` to the outbox, in one
    /// transaction; `caused_by`, when given, is recorded in the inbox in the same
    /// transaction. Bumps the reservation's version on success.
    ///
    /// # Errors
    /// [`SaveError::Conflict`] when the stored version differs from
    /// `reservation.version`; [`SaveError::AlreadyHandled`] when `caused_by` is
    /// already in the inbox (nothing is written).
    fn save(
        &self,
        reservation: &mut Reservation,
        events: &[Recorded<ReservationEvent>],
        caused_by: Option<EventId>,
    ) -> impl Future<Output = Result<(), SaveError>> + Send;

    fn get(
        &self,
        id: ReservationId,
    ) -> impl Future<Output = Result<Option<Reservation>, StoreError>> + Send;

    /// The reservation holding the idempotency key `(customer, request_id)`.
    fn find_by_request(
        &self,
        customer: &CustomerId,
        request_id: &RequestId,
    ) -> impl Future<Output = Result<Option<Reservation>, StoreError>> + Send;

    /// Parking reservations of this space and plate in a holding status.
    fn find_parking(
        &self,
        space: &SpaceId,
        plate: &VehiclePlate,
    ) -> impl Future<Output = Result<Vec<Reservation>, StoreError>> + Send;

    /// `PENDING_PAYMENT` reservations created before `before` (their reserve call died).
    fn pending_before(
        &self,
        before: Timestamp,
    ) -> impl Future<Output = Result<Vec<Reservation>, StoreError>> + Send;
}

/// The reservable catalog: price list, booth stock and spaces.
pub trait Catalog: Send + Sync {
    fn device_offer(
        &self,
        model: &domain_kernel::DeviceModel,
    ) -> impl Future<Output = Result<Option<DeviceOffer>, StoreError>> + Send;

    /// The whole price list, by model.
    fn device_offers(&self) -> impl Future<Output = Result<Vec<DeviceOffer>, StoreError>> + Send;

    fn space_offer(
        &self,
        space: &SpaceId,
    ) -> impl Future<Output = Result<Option<SpaceOffer>, StoreError>> + Send;

    /// Whether any unit was ever stocked at the booth.
    fn booth_exists(
        &self,
        booth: &BoothCode,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds or replaces a device model's price list entry (seeding, operators).
    fn put_device_offer(
        &self,
        offer: &DeviceOffer,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records where a unit is, unless a later location is already known for it
    /// (`as_of` orders events that arrive out of order). `caused_by` goes to the
    /// inbox in the same transaction.
    ///
    /// # Errors
    /// [`SaveError::AlreadyHandled`] when `caused_by` is already in the inbox.
    fn locate_device(
        &self,
        serial: &Serial,
        at: &DeviceLocation,
        as_of: Timestamp,
        caused_by: Option<EventId>,
    ) -> impl Future<Output = Result<(), SaveError>> + Send;

    /// Adds or updates a reservable space.
    fn put_space(
        &self,
        space: &SpaceOffer,
        caused_by: Option<EventId>,
    ) -> impl Future<Output = Result<(), SaveError>> + Send;
}

/// How a payment went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    Captured,
    Declined(DeclineReason),
    /// The payment was already voided (the reservation was rejected earlier):
    /// nothing was captured.
    Voided,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    CardDeclined,
    InsufficientFunds,
}

/// The payment service could not be asked (down, breaker open, deadline passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("payment unavailable, retry after {retry_after}")]
pub struct PaymentUnavailable {
    /// How long the caller should wait before trying again.
    pub retry_after: Duration,
}

/// The payment service, called synchronously: no unpaid reservation may exist.
pub trait PaymentGateway: Send + Sync {
    /// Captures `amount` for the reservation; idempotent by reservation id.
    fn pay(
        &self,
        reservation_id: ReservationId,
        amount: Money,
        card: &CardDetails,
    ) -> impl Future<Output = Result<PaymentOutcome, PaymentUnavailable>> + Send;
}

/// Where one unit of a device model is stocked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceLocation {
    pub device_model: domain_kernel::DeviceModel,
    pub booth: BoothCode,
}
