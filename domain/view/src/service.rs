//! The view's use cases: every read is made for a caller ([`Principal`]) and
//! answers only what DOMAIN.md ("Roles and what each may do") lets that caller see.

use std::sync::Arc;

use domain_kernel::{
    BoothCode, CustomerId, Principal, Recorded, ReservationId, Role, SpaceId, StoreError,
};
use time::Date;

use crate::fold::{ReservationView, ViewEvent};
use crate::policy::{
    SpaceLot, may_read_booth_schedule, may_read_space_schedule, may_see, on_schedule_for,
};
use crate::ports::{Applied, Cursor, ViewRepository};

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The caller may not read this at all (wrong role or place).
    #[error("not allowed")]
    Forbidden,
    /// No such reservation, or not one the caller may see (the two are not
    /// told apart, so ids cannot be probed).
    #[error("no such reservation")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of a customer's reservations and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub views: Vec<ReservationView>,
    /// `None` on the last page.
    pub next: Option<Cursor>,
}

/// A reservation's view and every later change of it, for a caller allowed
/// to see it.
#[derive(Debug)]
pub struct Watch<C> {
    pub current: ReservationView,
    pub changes: C,
}

/// "My page" and schedules over a [`ViewRepository`].
#[derive(Debug)]
pub struct ViewService<R> {
    views: Arc<R>,
}

impl<R> Clone for ViewService<R> {
    fn clone(&self) -> Self {
        Self {
            views: Arc::clone(&self.views),
        }
    }
}

impl<R: ViewRepository> ViewService<R> {
    pub fn new(views: R) -> Self {
        Self {
            views: Arc::new(views),
        }
    }

    /// The repository (for the consumer that folds events and for tests).
    pub fn repository(&self) -> &R {
        &self.views
    }

    /// Folds one event into its view (the consumer's use case).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (the event is retried).
    pub async fn apply(&self, event: &Recorded<ViewEvent>) -> Result<Applied, StoreError> {
        self.views.apply(event).await
    }

    /// Records which lot a space is in (the consumer's use case).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (the event is retried).
    pub async fn record_space(&self, space: &Recorded<SpaceLot>) -> Result<(), StoreError> {
        self.views.record_space(space).await
    }

    /// "My page": the caller's own reservations (customers only). Asked
    /// before the request is looked at, so a caller who has no page is
    /// refused whatever they sent.
    ///
    /// # Errors
    /// [`ViewError::Forbidden`] for a caller that is no customer.
    pub fn my_page(&self, who: &Principal) -> Result<MyPage<'_, R>, ViewError> {
        Ok(MyPage {
            views: &self.views,
            customer: who.customer_id().ok_or(ViewError::Forbidden)?,
        })
    }

    /// One reservation's view, when the caller may see it.
    ///
    /// # Errors
    /// [`ViewError::NotFound`] when there is none the caller may see.
    pub async fn reservation(
        &self,
        who: &Principal,
        id: ReservationId,
    ) -> Result<ReservationView, ViewError> {
        self.views
            .get(id)
            .await?
            .filter(|v| may_see(who, v))
            .ok_or(ViewError::NotFound)
    }

    /// The view now and its changes from now on (subscribed before the read,
    /// so no change falls between the two).
    ///
    /// # Errors
    /// [`ViewError::NotFound`] when there is none the caller may see.
    pub async fn watch(
        &self,
        who: &Principal,
        id: ReservationId,
    ) -> Result<Watch<R::Changes>, ViewError> {
        let changes = self.views.watch(id);
        let current = self.reservation(who, id).await?;
        Ok(Watch { current, changes })
    }

    /// The view as stored now, for a watcher's periodic re-read (the caller
    /// was allowed to see it when the watch began; ownership never changes).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn reread(&self, id: ReservationId) -> Result<Option<ReservationView>, StoreError> {
        self.views.get(id).await
    }

    /// How often a watcher re-reads (see [`ViewRepository::reread_every`]).
    pub fn reread_every(&self) -> Option<std::time::Duration> {
        self.views.reread_every()
    }

    /// Space schedules, for services, operators and gates; asked before the
    /// request is looked at (see [`SpaceSchedules::space`] for the lot).
    ///
    /// # Errors
    /// [`ViewError::Forbidden`] for anyone else.
    pub fn space_schedules<'a>(
        &'a self,
        who: &'a Principal,
    ) -> Result<SpaceSchedules<'a, R>, ViewError> {
        if !who.may(&[Role::Gate, Role::Service]) {
            return Err(ViewError::Forbidden);
        }
        Ok(SpaceSchedules {
            views: &self.views,
            who,
        })
    }

    /// A booth's schedule: for its staff and operators.
    ///
    /// # Errors
    /// [`ViewError::Forbidden`] for anyone else.
    pub fn booth_schedule<'a>(
        &'a self,
        who: &Principal,
        booth: &'a BoothCode,
    ) -> Result<BoothSchedule<'a, R>, ViewError> {
        if !may_read_booth_schedule(who, booth) {
            return Err(ViewError::Forbidden);
        }
        Ok(BoothSchedule {
            views: &self.views,
            booth,
        })
    }
}

/// One customer's reservations (see [`ViewService::my_page`]).
#[derive(Debug)]
pub struct MyPage<'a, R> {
    views: &'a R,
    customer: CustomerId,
}

impl<R: ViewRepository> MyPage<'_, R> {
    /// Newest first, `size` at a time, after `after`.
    ///
    /// # Errors
    /// [`ViewError::Store`] when the store fails.
    pub async fn list(&self, size: u64, after: Option<Cursor>) -> Result<Page, ViewError> {
        let page = self
            .views
            .list_for_customer(&self.customer, size, after)
            .await?;
        let full = page.len() == usize::try_from(size).unwrap_or(usize::MAX);
        let next = page.last().filter(|_| full).map(|(cursor, _)| *cursor);
        Ok(Page {
            views: page.into_iter().map(|(_, v)| v).collect(),
            next,
        })
    }
}

/// Space schedules for a caller allowed to ask (see
/// [`ViewService::space_schedules`]).
#[derive(Debug)]
pub struct SpaceSchedules<'a, R> {
    views: &'a R,
    who: &'a Principal,
}

impl<'a, R: ViewRepository> SpaceSchedules<'a, R> {
    /// The schedule of `space`: a gate may read only its own lot's spaces.
    ///
    /// # Errors
    /// [`ViewError::Forbidden`] for a gate of another lot, or while the
    /// space's lot is not known.
    pub async fn space(&self, space: &'a SpaceId) -> Result<SpaceSchedule<'a, R>, ViewError> {
        // Only a gate's answer depends on where the space is.
        let lot = if self.who.may(&[Role::Service]) {
            None
        } else {
            self.views.space_lot(space).await?
        };
        if !may_read_space_schedule(self.who, lot.as_ref()) {
            return Err(ViewError::Forbidden);
        }
        Ok(SpaceSchedule {
            views: self.views,
            who: self.who,
            space,
        })
    }
}

/// One space's schedule, for a caller allowed to read it.
#[derive(Debug)]
pub struct SpaceSchedule<'a, R> {
    views: &'a R,
    who: &'a Principal,
    space: &'a SpaceId,
}

impl<R: ViewRepository> SpaceSchedule<'_, R> {
    /// The space's reservations whose window touches `date`; a gate sees no
    /// customer ids.
    ///
    /// # Errors
    /// [`ViewError::Store`] when the store fails.
    pub async fn on(&self, date: Date) -> Result<Vec<ReservationView>, ViewError> {
        let views = self.views.space_schedule(self.space, date).await?;
        Ok(views.iter().map(|v| on_schedule_for(self.who, v)).collect())
    }
}

/// One booth's schedule, for a caller allowed to read it.
#[derive(Debug)]
pub struct BoothSchedule<'a, R> {
    views: &'a R,
    booth: &'a BoothCode,
}

impl<R: ViewRepository> BoothSchedule<'_, R> {
    /// Pickups at and returns to the booth on `date`.
    ///
    /// # Errors
    /// [`ViewError::Store`] when the store fails.
    pub async fn on(
        &self,
        date: Date,
    ) -> Result<(Vec<ReservationView>, Vec<ReservationView>), ViewError> {
        Ok(self.views.booth_schedule(self.booth, date).await?)
    }
}

#[cfg(test)]
mod tests;
