//! What the view needs from the outside world: a store of views that also
//! tells watchers about the changes it commits.

use std::future::Future;
use std::time::Duration;

use domain_kernel::{BoothCode, CustomerId, LotCode, Recorded, ReservationId, SpaceId, StoreError};
use time::Date;

use crate::fold::{ReservationView, ViewEvent};
use crate::policy::SpaceLot;

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The view changed; this is it now.
    Changed(Box<ReservationView>),
    /// Stale or repeated content: nothing to change.
    Unchanged,
    /// The event id was already in the inbox.
    Duplicate,
}

/// Where a page of "my page" ends: the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// When the reservation was first seen, microseconds since the epoch.
    pub created_micros: i64,
    pub reservation_id: ReservationId,
}

/// The committed changes of one reservation's view, latest first: a watcher
/// that falls behind skips to the newest state, never sees an older one after
/// a newer one.
pub trait ViewChanges: Send + 'static {
    /// The next state committed after the last one returned (`None` once the
    /// store is gone).
    fn changed(&mut self) -> impl Future<Output = Option<ReservationView>> + Send;
}

/// Views of reservations, folded from events, and the lot of every space.
pub trait ViewRepository: Send + Sync + 'static {
    type Changes: ViewChanges;

    /// Every change to `id`'s view this store commits from now on. Subscribe
    /// before reading the current state, so no change falls between the two.
    fn watch(&self, id: ReservationId) -> Self::Changes;

    /// How often a watcher re-reads a view, for changes that do not reach it
    /// through [`ViewRepository::watch`] (other replicas writing the same
    /// database); `None` when every change does.
    fn reread_every(&self) -> Option<Duration>;

    /// Folds one event into its reservation's view ([`crate::apply`]), with the
    /// event id in the inbox in the same transaction.
    fn apply(
        &self,
        event: &Recorded<ViewEvent>,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Remembers which lot a space belongs to; a redelivery writes nothing new.
    fn record_space(
        &self,
        space: &Recorded<SpaceLot>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The lot of a space, once its registration reached the view.
    fn space_lot(
        &self,
        space: &SpaceId,
    ) -> impl Future<Output = Result<Option<LotCode>, StoreError>> + Send;

    fn get(
        &self,
        id: ReservationId,
    ) -> impl Future<Output = Result<Option<ReservationView>, StoreError>> + Send;

    /// A customer's views, newest first, `limit` at a time, after `after`.
    fn list_for_customer(
        &self,
        customer: &CustomerId,
        limit: u64,
        after: Option<Cursor>,
    ) -> impl Future<Output = Result<Vec<(Cursor, ReservationView)>, StoreError>> + Send;

    /// Reservations of a space whose window touches `date` (UTC), as
    /// [`crate::space_schedule`] selects them.
    fn space_schedule(
        &self,
        space: &SpaceId,
        date: Date,
    ) -> impl Future<Output = Result<Vec<ReservationView>, StoreError>> + Send;

    /// Pickups at and returns to a booth on `date`, as
    /// [`crate::booth_schedule`] selects them.
    fn booth_schedule(
        &self,
        booth: &BoothCode,
        date: Date,
    ) -> impl Future<Output = Result<(Vec<ReservationView>, Vec<ReservationView>), StoreError>> + Send;
}
