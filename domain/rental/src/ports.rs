//! What the rental context needs from the outside world.

use std::future::Future;

use domain_kernel::{BoothCode, DeviceModel, EventId, Recorded, ReservationId, Serial, StoreError};
use time::Date;

use crate::model::{Device, Rental, RentalEvent};

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// The serial (device) or reservation id (rental) exists already.
    #[error("already exists")]
    Duplicate,
    #[error("event already handled")]
    AlreadyHandled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use domain_kernel::SaveError;

/// One atomic change: a rental and/or a device, their events for the outbox, and
/// the causing event for the inbox.
#[derive(Debug)]
pub struct Changes<'a> {
    pub rental: Option<&'a mut Rental>,
    pub device: Option<&'a mut Device>,
    pub events: Vec<Recorded<RentalEvent>>,
    pub caused_by: Option<EventId>,
}

/// Devices, rentals and their outbox.
pub trait RentalRepository: Send + Sync {
    fn get_rental(
        &self,
        reservation_id: ReservationId,
    ) -> impl Future<Output = Result<Option<Rental>, StoreError>> + Send;

    fn get_device(
        &self,
        serial: &Serial,
    ) -> impl Future<Output = Result<Option<Device>, StoreError>> + Send;

    /// Devices, optionally only at one booth and/or of one model, by serial.
    fn list_devices(
        &self,
        booth: Option<&BoothCode>,
        model: Option<&DeviceModel>,
    ) -> impl Future<Output = Result<Vec<Device>, StoreError>> + Send;

    /// Rentals that involve `booth` (pickup, planned or actual return), optionally
    /// only those whose period contains `date`.
    fn list_booth_rentals(
        &self,
        booth: &BoothCode,
        date: Option<Date>,
    ) -> impl Future<Output = Result<Vec<Rental>, StoreError>> + Send;

    /// # Errors
    /// [`InsertError::Duplicate`] when the serial exists.
    fn insert_device(
        &self,
        device: &Device,
        events: &[Recorded<RentalEvent>],
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// # Errors
    /// [`InsertError::Duplicate`] when the reservation has a rental;
    /// [`InsertError::AlreadyHandled`] when `caused_by` is in the inbox.
    fn insert_rental(
        &self,
        rental: &Rental,
        events: &[Recorded<RentalEvent>],
        caused_by: Option<EventId>,
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// Saves the changed rental and device (each only if its version is still the
    /// stored one; both bumped), events and inbox entry in one transaction.
    fn save(&self, changes: Changes<'_>) -> impl Future<Output = Result<(), SaveError>> + Send;
}

/// Why the reservation service did not let a device leave the booth.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UseRefused {
    /// The customer canceled first (and is refunded): the device stays.
    #[error("the reservation was canceled")]
    Canceled,
    /// Not paid, rejected, finished or unknown there.
    #[error("the reservation is not reserved")]
    NotReserved,
    /// Down, breaker open, or past the deadline. Nothing was decided: the
    /// booth tries again later.
    #[error("the reservation service is unavailable")]
    Unavailable { retry_after: std::time::Duration },
}

/// The reservation service's `BeginUse`, asked synchronously before a
/// hand-over commits: the reservation decides its own status, so exactly one
/// of "the customer cancels" and "the device leaves the booth" wins
/// (DOMAIN.md, invariant 6). Idempotent per reservation.
///
/// It also owns the catalog: `offers_model` says whether a device model is on
/// its price list, asked before a booth stocks a unit of it.
pub trait ReservationAuthority: Send + Sync {
    fn begin_use(
        &self,
        reservation_id: ReservationId,
    ) -> impl Future<Output = Result<(), UseRefused>> + Send;

    fn offers_model(
        &self,
        model: &DeviceModel,
    ) -> impl Future<Output = Result<bool, CatalogUnavailable>> + Send;
}

/// The reservation service could not say whether it offers a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the reservation service is unavailable")]
pub struct CatalogUnavailable {
    pub retry_after: std::time::Duration,
}
