use domain_kernel::{
    CardDetails, Clock, IdGenerator, Money, Principal, Recorded, ReservationId, Role, StoreError,
};

use crate::payment::{Payment, PaymentEvent, PaymentStatus};
use crate::ports::{Acquirer, Authorization, InsertError, PaymentRepository, SaveError};

const CONFLICT_RETRIES: usize = 5;

/// The one caller of `pay`: the subject of the reservation service's token.
pub const RESERVATION_SERVICE: &str = "reservation";

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// Only the reservation service takes payments: it pays for a claim it has
    /// just written, and voids the payment if that claim ends unconfirmed.
    /// Anyone else (operators too) could capture money for a reservation that
    /// does not exist, which nothing would ever void.
    #[error("not permitted")]
    Forbidden,
    /// The reservation was paid (or refused) for another amount.
    #[error("reservation already has a payment of {existing}")]
    AmountMismatch { existing: Money },
    /// The card network could not be reached; nothing was captured.
    #[error("acquirer unavailable")]
    AcquirerUnavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("not permitted")]
    Forbidden,
    #[error("payment not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    /// Refunds outside a cancel are an operator's tool.
    #[error("not permitted")]
    Forbidden,
    #[error("payment not found")]
    NotFound,
    /// Refunding while the reservation still holds its resource would leave a
    /// paid-for reservation unpaid (invariant 1): cancel the reservation instead.
    #[error("the reservation is still active; cancel it instead")]
    ReservationActive,
    #[error("a {0} payment cannot be refunded")]
    NotRefundable(PaymentStatus),
    #[error("payment is busy, try again")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What handling an inbound event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleOutcome {
    Applied,
    Duplicate,
    Ignored,
}

/// A reservation that ended without being used: `roaming.reservation.rejected`
/// or `roaming.reservation.canceled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationClosed {
    pub reservation_id: ReservationId,
    pub price: Money,
}

/// The payment use cases.
#[derive(Debug)]
pub struct PaymentService<R, A, K, I> {
    repo: R,
    acquirer: A,
    clock: K,
    ids: I,
}

impl<R, A, K, I> PaymentService<R, A, K, I>
where
    R: PaymentRepository,
    A: Acquirer,
    K: Clock,
    I: IdGenerator,
{
    pub fn new(repo: R, acquirer: A, clock: K, ids: I) -> Self {
        Self {
            repo,
            acquirer,
            clock,
            ids,
        }
    }

    pub fn repository(&self) -> &R {
        &self.repo
    }

    /// Takes payment for a reservation, once, for the reservation service only
    /// (it holds the pending claim the payment is for). A repeated call returns the first
    /// outcome (captured, declined, or voided when the reservation was rejected
    /// before the payment arrived); a different amount is refused.
    pub async fn pay(
        &self,
        principal: &Principal,
        reservation_id: ReservationId,
        amount: Money,
        card: &CardDetails,
    ) -> Result<Payment, PayError> {
        if !(principal.has(Role::Service) && principal.subject() == RESERVATION_SERVICE) {
            return Err(PayError::Forbidden);
        }
        if let Some(existing) = self.repo.get_by_reservation(reservation_id).await? {
            return replay(existing, amount);
        }
        let authorization = self
            .acquirer
            .authorize(card, amount)
            .await
            .map_err(|_| PayError::AcquirerUnavailable)?;
        let now = self.clock.now();
        let id = self.ids.payment_id();
        let (payment, event) = match authorization {
            Authorization::Approved => Payment::captured(id, reservation_id, amount, card, now),
            Authorization::Declined(reason) => {
                Payment::declined(id, reservation_id, amount, card, reason, now)
            }
        };
        match self
            .repo
            .insert(
                &payment,
                &Recorded::all(&self.clock, &self.ids, [event]),
                None,
            )
            .await
        {
            Ok(()) => Ok(payment),
            Err(InsertError::Duplicate) => {
                // A concurrent pay or an early void got there first; theirs stands.
                let existing = self
                    .repo
                    .get_by_reservation(reservation_id)
                    .await?
                    .ok_or_else(|| StoreError::msg("duplicate payment vanished"))?;
                replay(existing, amount)
            }
            Err(InsertError::AlreadyHandled) => Err(StoreError::inbox_hit_without_cause().into()),
            Err(InsertError::Store(e)) => Err(e.into()),
        }
    }

    /// The payment of a reservation, for services and operators.
    pub async fn get(
        &self,
        principal: &Principal,
        reservation_id: ReservationId,
    ) -> Result<Payment, GetError> {
        if !principal.may(&[Role::Service]) {
            return Err(GetError::Forbidden);
        }
        self.repo
            .get_by_reservation(reservation_id)
            .await?
            .ok_or(GetError::NotFound)
    }

    /// An operator's refund of a payment whose reservation already ended.
    pub async fn refund(
        &self,
        principal: &Principal,
        reservation_id: ReservationId,
    ) -> Result<Payment, RefundError> {
        if !principal.is_operator() {
            return Err(RefundError::Forbidden);
        }
        for _ in 0..CONFLICT_RETRIES {
            let mut payment = self
                .repo
                .get_by_reservation(reservation_id)
                .await?
                .ok_or(RefundError::NotFound)?;
            if !payment.reservation_closed && payment.status == PaymentStatus::Captured {
                return Err(RefundError::ReservationActive);
            }
            let events = payment
                .refund(self.clock.now())
                .map_err(|e| RefundError::NotRefundable(e.from))?;
            let Some(event) = events else {
                return Ok(payment);
            };
            match self
                .repo
                .save(
                    &mut payment,
                    &Recorded::all(&self.clock, &self.ids, [event]),
                    None,
                )
                .await
            {
                Ok(()) => return Ok(payment),
                Err(SaveError::Conflict) => {}
                Err(SaveError::AlreadyHandled) => {
                    return Err(StoreError::inbox_hit_without_cause().into());
                }
                Err(SaveError::Store(e)) => return Err(e.into()),
            }
        }
        Err(RefundError::Busy)
    }

    /// `roaming.reservation.rejected`: void a capture, or leave a void record so
    /// that a `Pay` arriving later captures nothing.
    pub async fn handle_rejected(
        &self,
        event: &Recorded<ReservationClosed>,
    ) -> Result<HandleOutcome, StoreError> {
        self.close(event, Payment::void).await
    }

    /// `roaming.reservation.canceled`: refund the capture.
    pub async fn handle_canceled(
        &self,
        event: &Recorded<ReservationClosed>,
    ) -> Result<HandleOutcome, StoreError> {
        self.close(event, Payment::refund_for_cancel).await
    }

    async fn close(
        &self,
        event: &Recorded<ReservationClosed>,
        change: fn(&mut Payment, domain_kernel::Timestamp) -> Option<PaymentEvent>,
    ) -> Result<HandleOutcome, StoreError> {
        let cause = Some(event.event_id);
        let closed = &event.event;
        for _ in 0..CONFLICT_RETRIES {
            let now = self.clock.now();
            let Some(mut payment) = self.repo.get_by_reservation(closed.reservation_id).await?
            else {
                let void = Payment::voided_in_advance(
                    self.ids.payment_id(),
                    closed.reservation_id,
                    closed.price,
                    now,
                );
                match self.repo.insert(&void, &[], cause).await {
                    Ok(()) => return Ok(HandleOutcome::Applied),
                    Err(InsertError::Duplicate) => continue,
                    Err(InsertError::AlreadyHandled) => return Ok(HandleOutcome::Duplicate),
                    Err(InsertError::Store(e)) => return Err(e),
                }
            };
            let was_closed = payment.reservation_closed;
            let events: Vec<_> = change(&mut payment, now).into_iter().collect();
            if events.is_empty() && was_closed {
                return Ok(HandleOutcome::Ignored);
            }
            match self
                .repo
                .save(
                    &mut payment,
                    &Recorded::all(&self.clock, &self.ids, events),
                    cause,
                )
                .await
            {
                Ok(()) => return Ok(HandleOutcome::Applied),
                Err(SaveError::Conflict) => {}
                Err(SaveError::AlreadyHandled) => return Ok(HandleOutcome::Duplicate),
                Err(SaveError::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::Contention("one payment"))
    }
}

fn replay(existing: Payment, amount: Money) -> Result<Payment, PayError> {
    if existing.status == PaymentStatus::Voided && existing.card_last_four.is_none() {
        // Voided in advance: whatever the amount, nothing is captured.
        return Ok(existing);
    }
    if existing.amount != amount {
        return Err(PayError::AmountMismatch {
            existing: existing.amount,
        });
    }
    Ok(existing)
}

#[cfg(test)]
mod tests;
