//! The rental context: airport booths, their device stock and rentals.
//!
//! A rental is accepted when a roaming reservation is made (`ACCEPTED`), the
//! pickup booth hands a device of the reserved model over (`HANDED_OVER`), the
//! customer returns it at any booth (`RETURNED`), and that booth retrieves it into
//! its own stock (`RETRIEVED`, with a relocation event when the booth changed).
//! A rental not yet handed over is canceled with its reservation (`CANCELED`).
//! Booth staff act only on their own booth; operators on every booth.

mod model;
pub mod ports;
mod service;

#[cfg(any(test, feature = "test-util"))]
pub mod fakes;

pub use model::{
    Device, DeviceData, DeviceStatus, Rental, RentalData, RentalEvent, RentalStatus, Rule,
};
pub use service::{HandleOutcome, RentalError, RentalService, RoamingReservation};
