//! The query side (CQRS): "my page" and schedules, built only from events.
//!
//! [`apply`] folds one event into the [`ReservationView`] of its reservation. It
//! is pure, order-insensitive where it matters (a status never moves back, a
//! repeated event changes nothing) and tells whether anything changed, so the
//! adapter writes (and notifies watchers) only on change. [`space_schedule`] and
//! [`booth_schedule`] say which views belong on a schedule; the `may_*` functions
//! say who may read what (DOMAIN.md, "Roles and what each may do").
//! [`ViewService`] is the use-case service: every read is made for a caller
//! and asks the policy first; it reaches storage only through the
//! [`ViewRepository`] port.

mod fold;
mod policy;
pub mod ports;
mod schedule;
mod service;

pub use fold::{Fact, ReservationView, StatusChange, ViewEvent, apply};
pub use policy::{
    SpaceLot, may_read_booth_schedule, may_read_space_schedule, may_see, on_schedule_for,
};
pub use ports::{Applied, Cursor, ViewChanges, ViewRepository};
pub use schedule::{booth_schedule, space_schedule};
pub use service::{
    BoothSchedule, MyPage, Page, SpaceSchedule, SpaceSchedules, ViewError, ViewService, Watch,
};
