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

fn setup() -> (Service, InMemoryPayments, Arc<SequentialIds>) {
    let repo = InMemoryPayments::default();
    let ids = Arc::new(SequentialIds::default());
    let service = PaymentService::new(
        repo.clone(),
        SimulatedAcquirer,
        Arc::new(FixedClock::at(NOW)),
        ids.clone(),
    );
    (service, repo, ids)
}

fn card(number: &str) -> CardDetails {
    CardDetails::parse(number, 12, 2030, "Alice Kim", "VISA", NOW.date()).unwrap()
}

fn reservation_service() -> Principal {
    Principal::service("reservation")
}

fn krw(n: i64) -> Money {
    Money::krw(n).unwrap()
}

fn closed(ids: &SequentialIds, reservation_id: ReservationId) -> Recorded<ReservationClosed> {
    Recorded::new(
        ids.event_id(),
        NOW,
        ReservationClosed {
            reservation_id,
            price: krw(15_000),
        },
    )
}

#[tokio::test]
async fn a_good_card_is_captured_once_and_a_repeat_returns_the_same_payment() {
    let (service, repo, ids) = setup();
    let rid = ids.reservation_id();
    let first = service
        .pay(
            &reservation_service(),
            rid,
            krw(15_000),
            &card("4111111111111111"),
        )
        .await
        .unwrap();
    assert_eq!(first.status, PaymentStatus::Captured);
    let again = service
        .pay(
            &reservation_service(),
            rid,
            krw(15_000),
            &card("4111111111111111"),
        )
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(repo.outbox().len(), 1, "one captured event");
    assert_eq!(repo.outbox()[0].event.name(), "captured");
}

#[tokio::test]
async fn a_different_amount_for_the_same_reservation_is_refused() {
    let (service, _, ids) = setup();
    let rid = ids.reservation_id();
    service
        .pay(
            &reservation_service(),
            rid,
            krw(15_000),
            &card("4111111111111111"),
        )
        .await
        .unwrap();
    let result = service
        .pay(
            &reservation_service(),
            rid,
            krw(1),
            &card("4111111111111111"),
        )
        .await;
    assert!(
        matches!(result, Err(PayError::AmountMismatch { existing }) if existing == krw(15_000))
    );
}

#[tokio::test]
async fn test_cards_decline_with_their_reasons_and_the_decline_is_remembered() {
    let (service, repo, ids) = setup();
    for (number, reason) in [
        (TEST_CARD_DECLINED, DeclineReason::CardDeclined),
        (
            TEST_CARD_INSUFFICIENT_FUNDS,
            DeclineReason::InsufficientFunds,
        ),
    ] {
        let rid = ids.reservation_id();
        let p = service
            .pay(&reservation_service(), rid, krw(5_000), &card(number))
            .await
            .unwrap();
        assert_eq!(
            (p.status, p.decline_reason),
            (PaymentStatus::Declined, Some(reason))
        );
        // A retry with a good card does not turn a declined payment into a capture.
        let retry = service
            .pay(
                &reservation_service(),
                rid,
                krw(5_000),
                &card("4111111111111111"),
            )
            .await
            .unwrap();
        assert_eq!(retry.status, PaymentStatus::Declined);
    }
    assert!(repo.outbox().iter().all(|e| e.event.name() == "declined"));
}

#[tokio::test]
async fn only_the_reservation_service_takes_payments() {
    let (service, repo, ids) = setup();
    let alice = Principal::customer(&CustomerId::parse("alice").unwrap());
    // Operators too: a payment nobody claimed would never be voided.
    for p in [
        alice,
        Principal::gate("g", domain_kernel::LotCode::parse("P1").unwrap()),
        Principal::booth_staff("s", domain_kernel::BoothCode::parse("GMP").unwrap()),
        Principal::operator("ops"),
        Principal::service("rental"),
    ] {
        let r = service
            .pay(&p, ids.reservation_id(), krw(1), &card("4111111111111111"))
            .await;
        assert!(matches!(r, Err(PayError::Forbidden)), "{p:?}");
    }
    assert!(repo.all().is_empty(), "nothing captured");
    assert!(
        service
            .pay(
                &reservation_service(),
                ids.reservation_id(),
                krw(1),
                &card("4111111111111111")
            )
            .await
            .is_ok()
    );
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
            &card("4111111111111111"),
        )
        .await;
    assert!(matches!(r, Err(PayError::AcquirerUnavailable)));
    assert!(repo.all().is_empty());
}

#[tokio::test]
async fn a_rejected_reservation_voids_its_capture_once() {
    let (service, repo, ids) = setup();
    let rid = ids.reservation_id();
    service
        .pay(
            &reservation_service(),
            rid,
            krw(15_000),
            &card("4111111111111111"),
        )
        .await
        .unwrap();
    let event = closed(&ids, rid);
    assert_eq!(
        service.handle_rejected(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    // Redelivered: no second effect (the state check or the inbox stops it).
    assert_ne!(
        service.handle_rejected(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_eq!(
        service.handle_rejected(&closed(&ids, rid)).await.unwrap(),
        HandleOutcome::Ignored
    );
    assert_eq!(repo.all()[0].status, PaymentStatus::Voided);
    let voided = repo
        .outbox()
        .iter()
        .filter(|e| e.event.name() == "voided")
        .count();
    assert_eq!(voided, 1);
}

#[tokio::test]
async fn a_rejection_that_overtakes_the_payment_makes_the_late_pay_capture_nothing() {
    let (service, repo, ids) = setup();
    let rid = ids.reservation_id();
    assert_eq!(
        service.handle_rejected(&closed(&ids, rid)).await.unwrap(),
        HandleOutcome::Applied
    );
    let late = service
        .pay(
            &reservation_service(),
            rid,
            krw(15_000),
            &card("4111111111111111"),
        )
        .await
        .unwrap();
    assert_eq!(late.status, PaymentStatus::Voided);
    assert!(
        repo.outbox().is_empty(),
        "nothing was captured, nothing to announce"
    );
}

#[tokio::test]
async fn a_canceled_reservation_is_refunded_once() {
    let (service, repo, ids) = setup();
    let rid = ids.reservation_id();
    service
        .pay(
            &reservation_service(),
            rid,
            krw(15_000),
            &card("4111111111111111"),
        )
        .await
        .unwrap();
    let event = closed(&ids, rid);
    assert_eq!(
        service.handle_canceled(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_ne!(
        service.handle_canceled(&event).await.unwrap(),
        HandleOutcome::Applied
    );
    assert_eq!(repo.all()[0].status, PaymentStatus::Refunded);
    let subjects: Vec<_> = repo.outbox().iter().map(|e| e.event.name()).collect();
    assert_eq!(subjects, ["captured", "refunded"]);
}

#[tokio::test]
async fn operators_refund_only_payments_of_ended_reservations() {
    let (service, _, ids) = setup();
    let rid = ids.reservation_id();
    service
        .pay(
            &reservation_service(),
            rid,
            krw(15_000),
            &card("4111111111111111"),
        )
        .await
        .unwrap();
    let ops = Principal::operator("ops");
    assert!(matches!(
        service.refund(&reservation_service(), rid).await,
        Err(RefundError::Forbidden)
    ));
    assert!(matches!(
        service.refund(&ops, rid).await,
        Err(RefundError::ReservationActive)
    ));
    assert!(matches!(
        service.refund(&ops, ids.reservation_id()).await,
        Err(RefundError::NotFound)
    ));
    service.handle_canceled(&closed(&ids, rid)).await.unwrap();
    assert_eq!(
        service.refund(&ops, rid).await.unwrap().status,
        PaymentStatus::Refunded,
        "idempotent"
    );
}

#[tokio::test]
async fn a_voided_payment_cannot_be_refunded() {
    let (service, _, ids) = setup();
    let rid = ids.reservation_id();
    service
        .pay(
            &reservation_service(),
            rid,
            krw(15_000),
            &card("4111111111111111"),
        )
        .await
        .unwrap();
    service.handle_rejected(&closed(&ids, rid)).await.unwrap();
    let r = service.refund(&Principal::operator("ops"), rid).await;
    assert!(
        matches!(r, Err(RefundError::NotRefundable(PaymentStatus::Voided))),
        "{r:?}"
    );
}

#[tokio::test]
async fn payments_are_visible_to_services_and_operators_only() {
    let (service, _, ids) = setup();
    let rid = ids.reservation_id();
    service
        .pay(
            &reservation_service(),
            rid,
            krw(1),
            &card("4111111111111111"),
        )
        .await
        .unwrap();
    assert!(service.get(&Principal::operator("ops"), rid).await.is_ok());
    let alice = Principal::customer(&CustomerId::parse("alice").unwrap());
    assert!(matches!(
        service.get(&alice, rid).await,
        Err(GetError::Forbidden)
    ));
    assert!(matches!(
        service
            .get(&reservation_service(), ids.reservation_id())
            .await,
        Err(GetError::NotFound)
    ));
}
