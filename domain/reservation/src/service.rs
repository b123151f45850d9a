use domain_kernel::{
    CardDetails, Clock, DeviceModel, IdGenerator, InvalidCard, Principal, Recorded, RequestId,
    ReservationId, Role, SpaceId, StoreError, TimeWindow, Timestamp, VehiclePlate, Violations,
};
use time::Duration;

use crate::ports::{
    Catalog, DeclineReason, DeviceLocation, InsertError, PaymentGateway, PaymentOutcome,
    ReservationRepository, SaveError,
};
use crate::pricing::{self, DeviceOffer, Quote};
use crate::reservation::{
    BeginUseRefused, CancelRefused, Details, RejectionReason, Reservation, RoamingDetails, Status,
};
use crate::reservation::{CatalogEvent, UsageEvent};

/// How long a reserve call may stay `PENDING_PAYMENT` before the sweeper rejects
/// it as timed out. Far longer than the payment call's deadline.
pub const DEFAULT_PENDING_TTL: Duration = Duration::seconds(60);

/// The subject of the rental service's own service token.
pub const RENTAL_SERVICE: &str = "rental";

/// How often a change is retried when another writer got there first.
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    #[error("not permitted")]
    Forbidden,
    #[error("invalid request: {0}")]
    Invalid(Violations),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// Only customers reserve (for themselves).
    #[error("only customers can reserve")]
    Forbidden,
    #[error("invalid request: {0}")]
    Invalid(Violations),
    /// No capacity left for the period.
    #[error("sold out")]
    SoldOut,
    /// The customer already has `limit` claims awaiting payment (invariant
    /// 8); one ends within the payment call's deadline, so a retry soon after
    /// may pass.
    #[error("{limit} reservations of this customer already await payment")]
    TooManyPending { limit: u32 },
    /// The card was declined; the reservation is `REJECTED`.
    #[error("payment declined")]
    PaymentDeclined {
        reservation_id: ReservationId,
        reason: Option<DeclineReason>,
    },
    /// Payment could not be reached; the reservation is `REJECTED` and the same
    /// request id may be retried after `retry_after`.
    #[error("payment unavailable")]
    PaymentUnavailable {
        reservation_id: ReservationId,
        retry_after: Duration,
    },
    /// The request id was used before for something else.
    #[error("request id was already used for a different reservation")]
    RequestIdReused,
    /// Another call with this request id is still waiting for its payment.
    #[error("a reserve call with this request id is in progress")]
    InProgress,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Unknown, or not the caller's (a customer cannot tell the difference).
    #[error("reservation not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("reservation not found")]
    NotFound,
    /// In use, finished, or never paid.
    #[error("a {0} reservation cannot be canceled")]
    NotCancelable(Status),
    /// A parking reservation whose entry has opened.
    #[error("the parking window's entry has opened; it can no longer be canceled")]
    EntryOpen,
    /// Kept losing to concurrent changes; safe to retry.
    #[error("reservation is busy, try again")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum BeginUseError {
    #[error("reservation not found")]
    NotFound,
    /// Only the rental service (its own service token) takes a reservation
    /// into use.
    #[error("not permitted")]
    Forbidden,
    /// The customer canceled first.
    #[error("the reservation was canceled")]
    Canceled,
    /// Not paid, rejected, finished, or not a roaming reservation.
    #[error("a {0} reservation cannot be taken into use")]
    NotReserved(Status),
    /// Kept losing to concurrent changes; safe to retry.
    #[error("reservation is busy, try again")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Only services (the parking service) and operators verify entries.
    #[error("not permitted")]
    Forbidden,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A reservation that admits a car now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkingEntry {
    pub reservation_id: ReservationId,
    pub window: TimeWindow,
}

/// What handling an inbound event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleOutcome {
    Applied,
    /// Already in the inbox: no second effect.
    Duplicate,
    /// Stale, repeated or irrelevant: monotonic rules changed nothing.
    Ignored,
    /// About a reservation this service does not know.
    UnknownReservation,
}

/// The reservation use cases.
#[derive(Debug)]
pub struct ReservationService<R, C, P, K, I> {
    repo: R,
    catalog: C,
    payments: P,
    clock: K,
    ids: I,
    pending_ttl: Duration,
    max_pending: u32,
}

impl<R, C, P, K, I> ReservationService<R, C, P, K, I>
where
    R: ReservationRepository,
    C: Catalog,
    P: PaymentGateway,
    K: Clock,
    I: IdGenerator,
{
    pub fn new(repo: R, catalog: C, payments: P, clock: K, ids: I) -> Self {
        Self {
            repo,
            catalog,
            payments,
            clock,
            ids,
            pending_ttl: DEFAULT_PENDING_TTL,
            max_pending: crate::capacity::DEFAULT_MAX_PENDING_PER_CUSTOMER,
        }
    }

    #[must_use]
    pub fn with_pending_ttl(mut self, ttl: Duration) -> Self {
        self.pending_ttl = ttl;
        self
    }

    /// How many claims awaiting payment one customer may have at once
    /// (invariant 8).
    #[must_use]
    pub fn with_max_pending_per_customer(mut self, max: u32) -> Self {
        self.max_pending = max;
        self
    }

    pub fn repository(&self) -> &R {
        &self.repo
    }

    pub fn catalog(&self) -> &C {
        &self.catalog
    }

    pub fn payment_gateway(&self) -> &P {
        &self.payments
    }

    /// The price list (anyone signed in): one model's offer, or every model's.
    pub async fn device_offers(
        &self,
        model: Option<&DeviceModel>,
    ) -> Result<Vec<DeviceOffer>, StoreError> {
        match model {
            Some(m) => Ok(self.catalog.device_offer(m).await?.into_iter().collect()),
            None => self.catalog.device_offers().await,
        }
    }

    /// Prices a roaming rental. Customers and operators.
    pub async fn quote_roaming(
        &self,
        principal: &Principal,
        details: &RoamingDetails,
    ) -> Result<Quote, QuoteError> {
        if !principal.may(&[Role::Customer]) {
            return Err(QuoteError::Forbidden);
        }
        self.price_roaming(details).await.map_err(Into::into)
    }

    /// Prices a parking window on a space. Customers and operators.
    pub async fn quote_parking(
        &self,
        principal: &Principal,
        space: &SpaceId,
        window: &TimeWindow,
    ) -> Result<Quote, QuoteError> {
        if !principal.may(&[Role::Customer]) {
            return Err(QuoteError::Forbidden);
        }
        self.price_parking(space, window).await.map_err(Into::into)
    }

    async fn price(&self, details: &Details) -> Result<Quote, PriceError> {
        match details {
            Details::Roaming(d) => self.price_roaming(d).await,
            Details::Parking(d) => self.price_parking(&d.space_id, &d.window).await,
        }
    }

    async fn price_roaming(&self, d: &RoamingDetails) -> Result<Quote, PriceError> {
        let mut v = Violations::new();
        if let Err(e) = pricing::check_roaming_dates(&d.dates, self.clock.today()) {
            v.extend(e);
        }
        for (field, booth) in [
            ("pickup_booth", &d.pickup_booth),
            ("return_booth", &d.return_booth),
        ] {
            if !self.catalog.booth_exists(booth).await? {
                v.add(field, format!("unknown booth {booth}"));
            }
        }
        let offer = self.catalog.device_offer(&d.device_model).await?;
        match offer {
            None => v.add(
                "device_model",
                format!("unknown device model {}", d.device_model),
            ),
            Some(offer) if v.is_empty() => {
                return pricing::quote_roaming(&offer, d).map_err(PriceError::Invalid);
            }
            Some(offer) => {
                if let Err(e) = pricing::quote_roaming(&offer, d) {
                    v.extend(e);
                }
            }
        }
        Err(PriceError::Invalid(v))
    }

    async fn price_parking(
        &self,
        space: &SpaceId,
        window: &TimeWindow,
    ) -> Result<Quote, PriceError> {
        let mut v = Violations::new();
        if let Err(e) = pricing::check_parking_window(window, self.clock.now()) {
            v.extend(e);
        }
        match self.catalog.space_offer(space).await? {
            None => v.add("space_id", format!("unknown parking space {space}")),
            Some(offer) if v.is_empty() => {
                return pricing::quote_parking(&offer, window).map_err(PriceError::Invalid);
            }
            Some(_) => {}
        }
        Err(PriceError::Invalid(v))
    }

    /// Reserves and pays, idempotent by `(customer, request_id)`.
    ///
    /// Capacity is claimed first (atomically, as `PENDING_PAYMENT`, and only
    /// while the customer has fewer than the configured number of claims),
    /// then payment is taken synchronously; the outcome moves the claim to
    /// `RESERVED` or `REJECTED` together with its events.
    ///
    /// Once the claim is written this future must be run to its end: an
    /// adapter must not drop it because its caller went away (the gRPC
    /// adapter runs it as a task of its own), or the claim would hold
    /// capacity until the sweeper ([`Self::reject_stale_pending`]) rejects
    /// it. Only a process that dies in between leaves a claim to the sweeper,
    /// whose rejected event voids any capture.
    pub async fn reserve(
        &self,
        principal: &Principal,
        request_id: RequestId,
        details: Details,
        card: CardDetails,
    ) -> Result<Reservation, ReserveError> {
        let customer = principal.customer_id().ok_or(ReserveError::Forbidden)?;
        if let Some(existing) = self.repo.find_by_request(&customer, &request_id).await? {
            return replay(existing, &details);
        }
        if card.expiry.is_expired_on(self.clock.today()) {
            return Err(ReserveError::Invalid(Violations::one(
                "payment.expiry_year",
                InvalidCard::Expired,
            )));
        }
        let quote = self.price(&details).await?;
        let now = self.clock.now();
        let mut reservation = Reservation::pending(
            self.ids.reservation_id(),
            customer.clone(),
            request_id.clone(),
            details,
            quote.price,
            now,
        );
        match self
            .repo
            .insert_pending(&reservation, self.max_pending)
            .await
        {
            Ok(()) => {}
            Err(InsertError::SoldOut) => return Err(ReserveError::SoldOut),
            Err(InsertError::TooManyPending { limit }) => {
                return Err(ReserveError::TooManyPending { limit });
            }
            Err(InsertError::DuplicateRequest) => {
                // A concurrent call with the same request id won the insert.
                return match self.repo.find_by_request(&customer, &request_id).await? {
                    Some(existing) => replay(existing, &reservation.details),
                    None => Err(ReserveError::InProgress),
                };
            }
            Err(InsertError::Store(e)) => return Err(e.into()),
        }

        let outcome = self
            .payments
            .pay(reservation.id, reservation.price, &card)
            .await;
        let now = self.clock.now();
        let (transition, failure) = match outcome {
            Ok(PaymentOutcome::Captured) => (reservation.mark_paid(now), None),
            Ok(PaymentOutcome::Declined(reason)) => (
                reservation.reject(RejectionReason::PaymentDeclined, now),
                Some(ReserveError::PaymentDeclined {
                    reservation_id: reservation.id,
                    reason: Some(reason),
                }),
            ),
            Ok(PaymentOutcome::Voided) => (
                reservation.reject(RejectionReason::PaymentTimedOut, now),
                Some(ReserveError::PaymentUnavailable {
                    reservation_id: reservation.id,
                    retry_after: Duration::seconds(1),
                }),
            ),
            Err(unavailable) => (
                reservation.reject(RejectionReason::PaymentUnavailable, now),
                Some(ReserveError::PaymentUnavailable {
                    reservation_id: reservation.id,
                    retry_after: unavailable.retry_after,
                }),
            ),
        };
        let events = transition.map_err(|e| {
            StoreError::msg(format!("fresh claim refused its payment outcome: {e}"))
        })?;
        let recorded = Recorded::all(&self.clock, &self.ids, events);
        match self.repo.save(&mut reservation, &recorded, None).await {
            Ok(()) => failure.map_or(Ok(reservation), Err),
            Err(SaveError::Conflict) => {
                // The sweeper rejected the claim while payment was slow; its
                // rejected event voids a capture, if one happened.
                Err(ReserveError::PaymentUnavailable {
                    reservation_id: reservation.id,
                    retry_after: Duration::seconds(1),
                })
            }
            Err(SaveError::AlreadyHandled) => Err(StoreError::inbox_hit_without_cause().into()),
            Err(SaveError::Store(e)) => Err(e.into()),
        }
    }

    /// One reservation, for its owner, operators and services. Anyone else gets
    /// [`GetError::NotFound`], exactly as for an unknown id (invariant 5).
    pub async fn get(
        &self,
        principal: &Principal,
        id: ReservationId,
    ) -> Result<Reservation, GetError> {
        let reservation = self.repo.get(id).await?.ok_or(GetError::NotFound)?;
        if principal.owns_or_operates(&reservation.customer_id) || principal.has(Role::Service) {
            Ok(reservation)
        } else {
            Err(GetError::NotFound)
        }
    }

    /// Cancels before use (owner or operator). Canceling a canceled reservation
    /// answers with it again, so a retried call succeeds.
    pub async fn cancel(
        &self,
        principal: &Principal,
        id: ReservationId,
        reason: String,
    ) -> Result<Reservation, CancelError> {
        for _ in 0..CONFLICT_RETRIES {
            let mut reservation = self.repo.get(id).await?.ok_or(CancelError::NotFound)?;
            if !principal.owns_or_operates(&reservation.customer_id) {
                return Err(CancelError::NotFound);
            }
            if reservation.status == Status::Canceled {
                return Ok(reservation);
            }
            let events = reservation
                .cancel(reason.clone(), self.clock.now())
                .map_err(|e| match e {
                    CancelRefused::Status(status) => CancelError::NotCancelable(status),
                    CancelRefused::EntryOpen => CancelError::EntryOpen,
                })?;
            let recorded = Recorded::all(&self.clock, &self.ids, events);
            match self.repo.save(&mut reservation, &recorded, None).await {
                Ok(()) => return Ok(reservation),
                Err(SaveError::Conflict) => {}
                Err(SaveError::AlreadyHandled) => {
                    return Err(StoreError::inbox_hit_without_cause().into());
                }
                Err(SaveError::Store(e)) => return Err(e.into()),
            }
        }
        Err(CancelError::Busy)
    }

    /// The booth is about to hand the device over (the rental service, with its
    /// own service token): the reservation moves to `IN_USE` and can no longer
    /// be canceled; the rental service commits the hand-over only after this
    /// answered. Exactly one of this and [`ReservationService::cancel`] wins
    /// (invariant 6). Idempotent: a reservation already in use answers again.
    pub async fn begin_use(
        &self,
        principal: &Principal,
        id: ReservationId,
    ) -> Result<Reservation, BeginUseError> {
        if !(principal.has(Role::Service) && principal.subject() == RENTAL_SERVICE) {
            return Err(BeginUseError::Forbidden);
        }
        for _ in 0..CONFLICT_RETRIES {
            let mut reservation = self.repo.get(id).await?.ok_or(BeginUseError::NotFound)?;
            let events = reservation
                .begin_use(self.clock.now())
                .map_err(|e| match e {
                    BeginUseRefused::Canceled => BeginUseError::Canceled,
                    BeginUseRefused::NotReserved(status) => BeginUseError::NotReserved(status),
                    BeginUseRefused::WrongKind => BeginUseError::NotReserved(reservation.status),
                })?;
            if events.is_empty() {
                return Ok(reservation);
            }
            let recorded = Recorded::all(&self.clock, &self.ids, events);
            match self.repo.save(&mut reservation, &recorded, None).await {
                Ok(()) => return Ok(reservation),
                Err(SaveError::Conflict) => {}
                Err(SaveError::AlreadyHandled) => {
                    return Err(StoreError::inbox_hit_without_cause().into());
                }
                Err(SaveError::Store(e)) => return Err(e.into()),
            }
        }
        Err(BeginUseError::Busy)
    }

    /// Whether `plate` holds `space` at `at` (now when `None`): a `RESERVED` (or
    /// already `IN_USE`, for a gate retry) parking reservation whose window admits
    /// entry, with [`EARLY_ENTRY_GRACE`](domain_kernel::EARLY_ENTRY_GRACE).
    pub async fn verify_parking_entry(
        &self,
        principal: &Principal,
        space: &SpaceId,
        plate: &VehiclePlate,
        at: Option<Timestamp>,
    ) -> Result<Option<ParkingEntry>, VerifyError> {
        if !principal.may(&[Role::Service]) {
            return Err(VerifyError::Forbidden);
        }
        let at = at.unwrap_or_else(|| self.clock.now());
        let found = self.repo.find_parking(space, plate).await?;
        Ok(found.into_iter().find_map(|r| match &r.details {
            Details::Parking(p)
                if matches!(r.status, Status::Reserved | Status::InUse)
                    && p.space_id == *space
                    && p.vehicle_plate == *plate
                    && p.window.admits_entry_at(at) =>
            {
                Some(ParkingEntry {
                    reservation_id: r.id,
                    window: p.window,
                })
            }
            _ => None,
        }))
    }

    /// Applies a rental or parking event; monotonic and idempotent.
    pub async fn handle_usage(
        &self,
        event: &Recorded<UsageEvent>,
    ) -> Result<HandleOutcome, StoreError> {
        for _ in 0..CONFLICT_RETRIES {
            let Some(mut reservation) = self.repo.get(event.event.reservation_id).await? else {
                return Ok(HandleOutcome::UnknownReservation);
            };
            let changes = reservation.apply_usage(event.event.usage, self.clock.now());
            if changes.is_empty() {
                return Ok(HandleOutcome::Ignored);
            }
            let recorded = Recorded::all(&self.clock, &self.ids, changes);
            match self
                .repo
                .save(&mut reservation, &recorded, Some(event.event_id))
                .await
            {
                Ok(()) => return Ok(HandleOutcome::Applied),
                Err(SaveError::Conflict) => {}
                Err(SaveError::AlreadyHandled) => return Ok(HandleOutcome::Duplicate),
                Err(SaveError::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::Contention("one reservation"))
    }

    /// Applies a catalog event (stock and spaces).
    pub async fn handle_catalog(
        &self,
        event: &Recorded<CatalogEvent>,
    ) -> Result<HandleOutcome, StoreError> {
        let id = Some(event.event_id);
        let result = match &event.event {
            CatalogEvent::DeviceRegistered {
                serial,
                device_model,
                booth,
            } => {
                let at = DeviceLocation {
                    device_model: device_model.clone(),
                    booth: booth.clone(),
                };
                self.catalog
                    .locate_device(serial, &at, event.occurred_at, id)
                    .await
            }
            CatalogEvent::DeviceRelocated {
                serial,
                device_model,
                to_booth,
            } => {
                let at = DeviceLocation {
                    device_model: device_model.clone(),
                    booth: to_booth.clone(),
                };
                self.catalog
                    .locate_device(serial, &at, event.occurred_at, id)
                    .await
            }
            CatalogEvent::SpaceRegistered {
                space_id,
                hourly_rate,
            } => {
                let offer = pricing::SpaceOffer {
                    space_id: space_id.clone(),
                    hourly_rate: *hourly_rate,
                };
                self.catalog.put_space(&offer, id).await
            }
        };
        match result {
            Ok(()) => Ok(HandleOutcome::Applied),
            Err(SaveError::AlreadyHandled) => Ok(HandleOutcome::Duplicate),
            Err(SaveError::Conflict) => Err(StoreError::msg("catalog reported a version conflict")),
            Err(SaveError::Store(e)) => Err(e),
        }
    }

    /// Rejects claims whose reserve call died between claim and payment outcome,
    /// so they stop holding capacity; their rejected events void any capture.
    /// Returns how many were rejected.
    pub async fn reject_stale_pending(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut rejected = 0;
        for mut reservation in self.repo.pending_before(now - self.pending_ttl).await? {
            let Ok(events) = reservation.reject(RejectionReason::PaymentTimedOut, now) else {
                continue;
            };
            let recorded = Recorded::all(&self.clock, &self.ids, events);
            match self.repo.save(&mut reservation, &recorded, None).await {
                Ok(()) => rejected += 1,
                // The reserve call finished after all.
                Err(SaveError::Conflict | SaveError::AlreadyHandled) => {}
                Err(SaveError::Store(e)) => return Err(e),
            }
        }
        Ok(rejected)
    }
}

/// The answer to a repeated reserve call.
fn replay(existing: Reservation, requested: &Details) -> Result<Reservation, ReserveError> {
    if existing.details != *requested {
        return Err(ReserveError::RequestIdReused);
    }
    match (existing.status, existing.rejection) {
        (Status::PendingPayment, _) => Err(ReserveError::InProgress),
        (Status::Rejected, Some(RejectionReason::PaymentDeclined) | None) => {
            Err(ReserveError::PaymentDeclined {
                reservation_id: existing.id,
                reason: None,
            })
        }
        (Status::Rejected, Some(_)) => Err(ReserveError::PaymentUnavailable {
            reservation_id: existing.id,
            retry_after: Duration::seconds(1),
        }),
        _ => Ok(existing),
    }
}

#[derive(Debug, thiserror::Error)]
enum PriceError {
    #[error("invalid: {0}")]
    Invalid(Violations),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PriceError> for QuoteError {
    fn from(e: PriceError) -> Self {
        match e {
            PriceError::Invalid(v) => Self::Invalid(v),
            PriceError::Store(e) => Self::Store(e),
        }
    }
}

impl From<PriceError> for ReserveError {
    fn from(e: PriceError) -> Self {
        match e {
            PriceError::Invalid(v) => Self::Invalid(v),
            PriceError::Store(e) => Self::Store(e),
        }
    }
}

#[cfg(test)]
mod tests;
