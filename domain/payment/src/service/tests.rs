use std::sync::Arc;

use domain_kernel::fakes::{FixedClock, SequentialIds};
use domain_kernel::{
    CardDetails, CustomerId, IdGenerator, Money, Principal, Recorded, ReservationId, Timestamp,
};
use time::macros::datetime;

use super::*;
use crate::fakes::{DownAcquirer, InMemoryPayments};
use crate::{DeclineReason, SimulatedAcquirer, TEST_CARD_DECLINED, TEST_CARD_INSUFFICIENT_FUNDS};

const NOW: Timestamp = datetime!(2026-11-22 10:00 UTC);

type Service =
    PaymentService<InMemoryPayments, SimulatedAcquirer, Arc<FixedClock>, Arc<SequentialIds>>;

/// A payment service over in-memory fakes at a fixed time, and what the
/// tests look at: its repository and the ids it was given.
struct Fixture {
    service: Service,
    repo: InMemoryPayments,
    ids: Arc<SequentialIds>,
}

impl Fixture {
    fn new() -> Self {
        let repo = InMemoryPayments::default();
        let ids = Arc::new(SequentialIds::default());
        let service = PaymentService::new(
            repo.clone(),
            SimulatedAcquirer,
            Arc::new(FixedClock::at(NOW)),
            ids.clone(),
        );
        Self { service, repo, ids }
    }

    /// The reservation service pays `amount` for `rid` with card `number`.
    async fn pay_with(
        &self,
        rid: ReservationId,
        amount: Money,
        number: &str,
    ) -> Result<Payment, PayError> {
        self.service
            .pay(&reservation_service(), rid, amount, &card(number))
            .await
    }

    /// The reservation service pays `amount` for `rid` with a good card.
    async fn pay(&self, rid: ReservationId, amount: Money) -> Result<Payment, PayError> {
        self.pay_with(rid, amount, GOOD_CARD).await
    }

    /// A new reservation, paid for (15,000 KRW, captured).
    async fn paid(&self) -> ReservationId {
        let rid = self.ids.reservation_id();
        self.pay(rid, krw(15_000)).await.unwrap();
        rid
    }

    /// The event of `rid` ending unused (rejected or canceled), new each time.
    fn closed(&self, rid: ReservationId) -> Recorded<ReservationClosed> {
        Recorded::new(
            self.ids.event_id(),
            NOW,
            ReservationClosed {
                reservation_id: rid,
                price: krw(15_000),
            },
        )
    }
}

const GOOD_CARD: &str = "4111111111111111";

fn card(number: &str) -> CardDetails {
    CardDetails::parse(number, 12, 2030, "Alice Kim", "VISA", NOW.date()).unwrap()
}

fn reservation_service() -> Principal {
    Principal::service("reservation")
}

fn krw(n: i64) -> Money {
    Money::krw(n).unwrap()
}

#[tokio::test]
async fn a_good_card_is_captured_once_and_a_repeat_returns_the_same_payment() {
    let f = Fixture::new();
    let rid = f.ids.reservation_id();
    let first = f.pay(rid, krw(15_000)).await.unwrap();
    assert_eq!(first.status, PaymentStatus::Captured);
    let again = f.pay(rid, krw(15_000)).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(f.repo.outbox().len(), 1, "one captured event");
    assert_eq!(f.repo.outbox()[0].event.name(), "captured");
}

#[tokio::test]
async fn a_different_amount_for_the_same_reservation_is_refused() {
    let f = Fixture::new();
    let rid = f.paid().await;
    let result = f.pay(rid, krw(1)).await;
    assert!(
        matches!(result, Err(PayError::AmountMismatch { existing }) if existing == krw(15_000))
    );
}

#[tokio::test]
async fn test_cards_decline_with_their_reasons_and_the_decline_is_remembered() {
    let f = Fixture::new();
    for (number, reason) in [
        (TEST_CARD_DECLINED, DeclineReason::CardDeclined),
        (
            TEST_CARD_INSUFFICIENT_FUNDS,
            DeclineReason::InsufficientFunds,
        ),
    ] {
        let rid = f.ids.reservation_id();
        let p = f.pay_with(rid, krw(5_000), number).await.unwrap();
        assert_eq!(
            (p.status, p.decline_reason),
            (PaymentStatus::Declined, Some(reason))
        );
        // A retry with a good card does not turn a declined payment into a capture.
        let retry = f.pay(rid, krw(5_000)).await.unwrap();
        assert_eq!(retry.status, PaymentStatus::Declined);
    }
    assert!(f.repo.outbox().iter().all(|e| e.event.name() == "declined"));
}

#[tokio::test]
async fn only_the_reservation_service_takes_payments() {
    let f = Fixture::new();
    let alice = Principal::customer(&CustomerId::parse("alice").unwrap());
    // Operators too: a payment nobody claimed would never be voided.
    for p in [
        alice,
        Principal::gate("g", domain_kernel::LotCode::parse("P1").unwrap()),
        Principal::booth_staff("s", domain_kernel::BoothCode::parse("GMP").unwrap()),
        Principal::operator("ops"),
        Principal::service("rental"),
    ] {
        let r = f
            .service
            .pay(&p, f.ids.reservation_id(), krw(1), &card(GOOD_CARD))
            .await;
        assert!(matches!(r, Err(PayError::Forbidden)), "{p:?}");
    }
    assert!(f.repo.all().is_empty(), "nothing captured");
    assert!(f.pay(f.ids.reservation_id(), krw(1)).await.is_ok());
}

#[tokio::test]
async fn an_unreachable_acquirer_captures_nothing() {
    let repo = InMemoryPayments::default();
    let ids = SequentialIds::default();
    let service = PaymentService::new(
        repo.clone(),
        DownAcquirer,
        FixedClock::at(NOW),
        SequentialIds::default(),
    );
    let r = service
        .pay(
            &reservation_service(),
            ids.reservation_id(),
            krw(1),
            &card(GOOD_CARD),
        )
        .await;
    assert!(matches!(r, Err(PayError::AcquirerUnavailable)));
    assert!(repo.all().is_empty());
}

#[tokio::test]
async fn a_rejected_reservation_voids_its_capture_once() {
    let f = Fixture::new();
    let rid = f.paid().await;
    let event = f.closed(rid);
    assert_eq!(
        f.service.handle_rejected(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    // Redelivered: no second effect (the state check or the inbox stops it).
    assert_ne!(
        f.service.handle_rejected(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_eq!(
        f.service.handle_rejected(&f.closed(rid)).await.unwrap(),
        HandleOutcome::Ignored
    );
    assert_eq!(f.repo.all()[0].status, PaymentStatus::Voided);
    let voided = f
        .repo
        .outbox()
        .iter()
        .filter(|e| e.event.name() == "voided")
        .count();
    assert_eq!(voided, 1);
}

#[tokio::test]
async fn a_rejection_that_overtakes_the_payment_makes_the_late_pay_capture_nothing() {
    let f = Fixture::new();
    let rid = f.ids.reservation_id();
    assert_eq!(
        f.service.handle_rejected(&f.closed(rid)).await.unwrap(),
        HandleOutcome::Applied
    );
    let late = f.pay(rid, krw(15_000)).await.unwrap();
    assert_eq!(late.status, PaymentStatus::Voided);
    assert!(
        f.repo.outbox().is_empty(),
        "nothing was captured, nothing to announce"
    );
}

#[tokio::test]
async fn a_canceled_reservation_is_refunded_once() {
    let f = Fixture::new();
    let rid = f.paid().await;
    let event = f.closed(rid);
    assert_eq!(
        f.service.handle_canceled(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_ne!(
        f.service.handle_canceled(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_eq!(f.repo.all()[0].status, PaymentStatus::Refunded);
    let subjects: Vec<_> = f.repo.outbox().iter().map(|e| e.event.name()).collect();
    assert_eq!(subjects, ["captured", "refunded"]);
}

#[tokio::test]
async fn operators_refund_only_payments_of_ended_reservations() {
    let f = Fixture::new();
    let rid = f.paid().await;
    let ops = Principal::operator("ops");
    assert!(matches!(
        f.service.refund(&reservation_service(), rid).await,
        Err(RefundError::Forbidden)
    ));
    assert!(matches!(
        f.service.refund(&ops, rid).await,
        Err(RefundError::ReservationActive)
    ));
    assert!(matches!(
        f.service.refund(&ops, f.ids.reservation_id()).await,
        Err(RefundError::NotFound)
    ));
    f.service.handle_canceled(&f.closed(rid)).await.unwrap();
    assert_eq!(
        f.service.refund(&ops, rid).await.unwrap().status,
        PaymentStatus::Refunded,
        "idempotent"
    );
}

#[tokio::test]
async fn a_voided_payment_cannot_be_refunded() {
    let f = Fixture::new();
    let rid = f.paid().await;
    f.service.handle_rejected(&f.closed(rid)).await.unwrap();
    let r = f.service.refund(&Principal::operator("ops"), rid).await;
    assert!(
        matches!(r, Err(RefundError::NotRefundable(PaymentStatus::Voided))),
        "{r:?}"
    );
}

#[tokio::test]
async fn payments_are_visible_to_services_and_operators_only() {
    let f = Fixture::new();
    let rid = f.ids.reservation_id();
    f.pay(rid, krw(1)).await.unwrap();
    assert!(
        f.service
            .get(&Principal::operator("ops"), rid)
            .await
            .is_ok()
    );
    let alice = Principal::customer(&CustomerId::parse("alice").unwrap());
    assert!(matches!(
        f.service.get(&alice, rid).await,
        Err(GetError::Forbidden)
    ));
    assert!(matches!(
        f.service
            .get(&reservation_service(), f.ids.reservation_id())
            .await,
        Err(GetError::NotFound)
    ));
}
