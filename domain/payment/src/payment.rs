use std::fmt;
use std::ops::Deref;

use domain_kernel::{CardDetails, Money, PaymentId, ReservationId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    Captured,
    Declined,
    Refunded,
    Voided,
}

impl PaymentStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Captured => "CAPTURED",
            Self::Declined => "DECLINED",
            Self::Refunded => "REFUNDED",
            Self::Voided => "VOIDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Captured, Self::Declined, Self::Refunded, Self::Voided]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeclineReason {
    CardDeclined,
    InsufficientFunds,
}

impl DeclineReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CardDeclined => "CARD_DECLINED",
            Self::InsufficientFunds => "INSUFFICIENT_FUNDS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::CardDeclined, Self::InsufficientFunds]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// The plain data of a payment; only [`Payment`]'s methods change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentData {
    pub id: PaymentId,
    pub reservation_id: ReservationId,
    pub amount: Money,
    pub status: PaymentStatus,
    pub decline_reason: Option<DeclineReason>,
    /// Never the whole number (DOMAIN.md, "Lifecycles").
    pub card_last_four: Option<String>,
    pub card_company: Option<String>,
    /// The reservation ended (rejected or canceled): the money must not stay captured.
    pub reservation_closed: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

/// The payment aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment(PaymentData);

impl Deref for Payment {
    type Target = PaymentData;

    fn deref(&self) -> &PaymentData {
        &self.0
    }
}

/// What the payment context tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEvent {
    /// `roaming.payment.captured`
    Captured(Payment),
    /// `roaming.payment.declined`
    Declined(Payment),
    /// `roaming.payment.refunded`
    Refunded(Payment),
    /// `roaming.payment.voided`
    Voided(Payment),
}

impl PaymentEvent {
    pub fn payment(&self) -> &Payment {
        match self {
            Self::Captured(p) | Self::Declined(p) | Self::Refunded(p) | Self::Voided(p) => p,
        }
    }

    /// The event's name in this context's language (`reserved`, `captured`,
    /// ...); its subject on the wire is the contract's (`proto::subjects`).
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Captured(_) => "captured",
            Self::Declined(_) => "declined",
            Self::Refunded(_) => "refunded",
            Self::Voided(_) => "voided",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a {from} payment")]
pub struct TransitionError {
    pub from: PaymentStatus,
    pub action: &'static str,
}

impl Payment {
    fn new(
        id: PaymentId,
        reservation_id: ReservationId,
        amount: Money,
        status: PaymentStatus,
        card: Option<&CardDetails>,
        now: Timestamp,
    ) -> Self {
        Self(PaymentData {
            id,
            reservation_id,
            amount,
            status,
            decline_reason: None,
            card_last_four: card.map(|c| c.number.last_four().to_owned()),
            card_company: card.map(|c| c.company.clone()),
            reservation_closed: false,
            created_at: now,
            updated_at: now,
            version: 0,
        })
    }

    /// The acquirer approved: money taken.
    pub fn captured(
        id: PaymentId,
        reservation_id: ReservationId,
        amount: Money,
        card: &CardDetails,
        now: Timestamp,
    ) -> (Self, PaymentEvent) {
        let p = Self::new(
            id,
            reservation_id,
            amount,
            PaymentStatus::Captured,
            Some(card),
            now,
        );
        (p.clone(), PaymentEvent::Captured(p))
    }

    /// The acquirer declined.
    pub fn declined(
        id: PaymentId,
        reservation_id: ReservationId,
        amount: Money,
        card: &CardDetails,
        reason: DeclineReason,
        now: Timestamp,
    ) -> (Self, PaymentEvent) {
        let mut p = Self::new(
            id,
            reservation_id,
            amount,
            PaymentStatus::Declined,
            Some(card),
            now,
        );
        p.0.decline_reason = Some(reason);
        (p.clone(), PaymentEvent::Declined(p))
    }

    /// The reservation was rejected before any payment reached us: a void record
    /// that makes a late `Pay` for it capture nothing. Nothing was captured, so
    /// there is no event to announce.
    pub fn voided_in_advance(
        id: PaymentId,
        reservation_id: ReservationId,
        amount: Money,
        now: Timestamp,
    ) -> Self {
        let mut p = Self::new(id, reservation_id, amount, PaymentStatus::Voided, None, now);
        p.0.reservation_closed = true;
        p
    }

    /// Rebuilds a payment from storage. For repositories only.
    pub fn restore(data: PaymentData) -> Self {
        Self(data)
    }

    pub fn bump_version(&mut self) {
        self.0.version += 1;
    }

    /// The reservation was rejected: undo a capture. `Ok(None)` when there is
    /// nothing to undo (declined, already voided or refunded).
    pub fn void(&mut self, now: Timestamp) -> Option<PaymentEvent> {
        self.0.reservation_closed = true;
        if self.0.status != PaymentStatus::Captured {
            return None;
        }
        self.0.status = PaymentStatus::Voided;
        self.0.updated_at = now;
        Some(PaymentEvent::Voided(self.clone()))
    }

    /// The reservation was canceled: give the money back. `None` when there is
    /// nothing to give back.
    pub fn refund_for_cancel(&mut self, now: Timestamp) -> Option<PaymentEvent> {
        self.0.reservation_closed = true;
        self.refund(now).ok().flatten()
    }

    /// Refunds a captured payment; refunding a refunded one changes nothing.
    pub fn refund(&mut self, now: Timestamp) -> Result<Option<PaymentEvent>, TransitionError> {
        match self.0.status {
            PaymentStatus::Captured => {
                self.0.status = PaymentStatus::Refunded;
                self.0.updated_at = now;
                Ok(Some(PaymentEvent::Refunded(self.clone())))
            }
            PaymentStatus::Refunded => Ok(None),
            from => Err(TransitionError {
                from,
                action: "refund",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use domain_kernel::IdGenerator;
    use domain_kernel::fakes::SequentialIds;
    use time::macros::datetime;

    use super::*;

    const NOW: Timestamp = datetime!(2026-11-22 10:00 UTC);

    fn card() -> CardDetails {
        CardDetails::parse("4111 1111 1111 1111", 12, 2030, "A", "visa", NOW.date()).unwrap()
    }

    fn captured() -> Payment {
        let ids = SequentialIds::default();
        Payment::captured(
            ids.payment_id(),
            ids.reservation_id(),
            Money::krw(5_000).unwrap(),
            &card(),
            NOW,
        )
        .0
    }

    #[test]
    fn only_the_last_four_digits_and_company_are_kept() {
        let p = captured();
        assert_eq!(p.card_last_four.as_deref(), Some("1111"));
        assert_eq!(p.card_company.as_deref(), Some("VISA"));
        assert!(!format!("{p:?}").contains("4111111111111111"));
    }

    #[test]
    fn void_undoes_a_capture_once() {
        let mut p = captured();
        assert!(matches!(p.void(NOW), Some(PaymentEvent::Voided(_))));
        assert_eq!(p.status, PaymentStatus::Voided);
        assert_eq!(p.void(NOW), None);
    }

    #[test]
    fn void_of_a_declined_payment_changes_nothing_but_closes_it() {
        let ids = SequentialIds::default();
        let (mut p, _) = Payment::declined(
            ids.payment_id(),
            ids.reservation_id(),
            Money::krw(1).unwrap(),
            &card(),
            DeclineReason::CardDeclined,
            NOW,
        );
        assert_eq!(p.void(NOW), None);
        assert_eq!(p.status, PaymentStatus::Declined);
        assert!(p.reservation_closed);
    }

    #[test]
    fn refund_once_then_idempotent_and_never_from_declined_or_voided() {
        let mut p = captured();
        assert!(matches!(p.refund(NOW), Ok(Some(PaymentEvent::Refunded(_)))));
        assert_eq!(p.refund(NOW), Ok(None));
        let mut v = captured();
        v.void(NOW);
        assert_eq!(
            v.refund(NOW),
            Err(TransitionError {
                from: PaymentStatus::Voided,
                action: "refund"
            })
        );
    }

    #[test]
    fn a_voided_refund_after_cancel_is_not_an_error() {
        let mut p = captured();
        p.void(NOW);
        assert_eq!(p.refund_for_cancel(NOW), None);
    }

    #[test]
    fn names_round_trip() {
        for s in [
            PaymentStatus::Captured,
            PaymentStatus::Declined,
            PaymentStatus::Refunded,
            PaymentStatus::Voided,
        ] {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        for r in [
            DeclineReason::CardDeclined,
            DeclineReason::InsufficientFunds,
        ] {
            assert_eq!(DeclineReason::parse(r.as_str()), Some(r));
        }
    }
}
