//! Shared kernel of the roaming mesh.
//!
//! Value types that every context uses and that validate on construction (parse,
//! don't validate): ids, [`Money`], dates and time windows, customer ids, booth and
//! model codes, vehicle plates, card numbers; the caller's [`Principal`] and its
//! roles; the [`Clock`] and [`IdGenerator`] ports; the [`Recorded`] envelope of
//! every domain event; the [`EventPublisher`] port the outbox relay publishes
//! through; and [`Violations`], the field-level errors an adapter turns into
//! `google.rpc.BadRequest`.
//!
//! Nothing here is async or knows about transport or storage.

mod calendar;
mod card;
mod codes;
mod event;
mod ids;
mod money;
mod plate;
mod ports;
mod principal;
mod publish;
mod store;
mod violation;

pub use calendar::{
    CANCEL_MARGIN, DateRange, EARLY_ENTRY_GRACE, InvalidPeriod, TimeWindow, Timestamp,
};
pub use card::{CardDetails, CardExpiry, CardNumber, InvalidCard};
pub use codes::{
    BoothCode, CountryCode, CustomerId, DeviceModel, InvalidCode, LotCode, RequestId, Serial,
    SpaceId,
};
pub use event::Recorded;
pub use ids::{EventId, InvalidId, PaymentId, ReservationId, SessionId};
pub use money::{Currency, InvalidMoney, Money};
pub use plate::{InvalidPlate, VehiclePlate};
pub use ports::{Clock, IdGenerator, SystemClock, UuidV7};
pub use principal::{Principal, Role};
pub use publish::{EventPublisher, OutgoingEvent, PublishError};
pub use store::{SaveError, StoreError};
pub use violation::{FieldViolation, Violations};

#[cfg(any(test, feature = "test-util"))]
pub mod fakes {
    //! Deterministic fakes of the kernel ports.
    pub use crate::ports::fakes::{FixedClock, SequentialIds};
}
