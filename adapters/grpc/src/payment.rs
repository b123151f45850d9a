//! `roaming.payment.v1.PaymentService` over the domain's use cases.

use proto::reasons;
use std::sync::Arc;

use adapters_codec::{instant_to_pb, money_field, money_to_pb};
use domain_kernel::{Clock, IdGenerator, ReservationId};
use domain_payment::ports::{Acquirer, PaymentRepository};
use domain_payment::{
    DeclineReason, GetError, PayError, Payment, PaymentService, PaymentStatus, RefundError,
};
use proto::payment as pb;
use proto::payment::payment_service_server::PaymentService as Rpc;
use tonic::{Code, Request, Response, Status};

use crate::fields;
use crate::identity::principal;
use crate::status::{busy, forbidden, not_found, reason, retry_later, store, store_write};

/// The gRPC face of [`PaymentService`].
#[derive(Debug)]
pub struct PaymentRpc<R, A, K, I> {
    service: Arc<PaymentService<R, A, K, I>>,
}

impl<R, A, K, I> PaymentRpc<R, A, K, I> {
    pub fn new(service: Arc<PaymentService<R, A, K, I>>) -> Self {
        Self { service }
    }
}

pub fn payment_to_pb(p: &Payment) -> pb::Payment {
    pb::Payment {
        payment_id: p.id.to_string(),
        reservation_id: p.reservation_id.to_string(),
        amount: Some(money_to_pb(p.amount)),
        status: payment_status_to_pb(p.status) as i32,
        decline_reason: match p.decline_reason {
            Some(DeclineReason::CardDeclined) => pb::DeclineReason::CardDeclined,
            Some(DeclineReason::InsufficientFunds) => pb::DeclineReason::InsufficientFunds,
            None => pb::DeclineReason::Unspecified,
        } as i32,
        card_last_four: p.card_last_four.clone().unwrap_or_default(),
        card_company: p.card_company.clone().unwrap_or_default(),
        created_at: Some(instant_to_pb(p.created_at)),
        updated_at: Some(instant_to_pb(p.updated_at)),
    }
}

/// The wire form of a payment's status (also the view's `payment_status`).
pub(crate) fn payment_status_to_pb(s: PaymentStatus) -> pb::PaymentStatus {
    match s {
        PaymentStatus::Captured => pb::PaymentStatus::Captured,
        PaymentStatus::Declined => pb::PaymentStatus::Declined,
        PaymentStatus::Refunded => pb::PaymentStatus::Refunded,
        PaymentStatus::Voided => pb::PaymentStatus::Voided,
    }
}

/// The status of a refused call: code and `ErrorInfo` reason per error.
pub(crate) fn payment_pay_error(e: PayError) -> Status {
    match e {
        PayError::Forbidden => forbidden(),
        PayError::AmountMismatch { existing } => reason(
            Code::FailedPrecondition,
            reasons::AMOUNT_MISMATCH,
            format!("this reservation was paid for {existing}"),
            &[("existing_amount", existing.minor_units().to_string())],
        ),
        PayError::AcquirerUnavailable => retry_later(
            Code::Unavailable,
            reasons::ACQUIRER_UNAVAILABLE,
            "the card network is unavailable",
            std::time::Duration::from_secs(1),
            &[],
        ),
        PayError::Store(e) => store_write(&e),
    }
}

/// The status of a refused call: code and `ErrorInfo` reason per error.
pub(crate) fn payment_get_error(e: GetError) -> Status {
    match e {
        GetError::Forbidden => forbidden(),
        GetError::NotFound => not_found("payment"),
        GetError::Store(e) => store(&e),
    }
}

/// The status of a refused call: code and `ErrorInfo` reason per error.
pub(crate) fn payment_refund_error(e: RefundError) -> Status {
    match e {
        RefundError::Forbidden => forbidden(),
        RefundError::NotFound => not_found("payment"),
        RefundError::ReservationActive => reason(
            Code::FailedPrecondition,
            reasons::RESERVATION_ACTIVE,
            "the reservation still holds its resource; cancel it instead",
            &[],
        ),
        RefundError::NotRefundable(s) => reason(
            Code::FailedPrecondition,
            reasons::NOT_REFUNDABLE,
            format!("a {s} payment cannot be refunded"),
            &[],
        ),
        RefundError::Busy => busy("try again"),
        RefundError::Store(e) => store_write(&e),
    }
}

#[tonic::async_trait]
impl<R, A, K, I> Rpc for PaymentRpc<R, A, K, I>
where
    R: PaymentRepository + 'static,
    A: Acquirer + 'static,
    K: Clock + 'static,
    I: IdGenerator + 'static,
{
    async fn pay(
        &self,
        request: Request<pb::PayRequest>,
    ) -> Result<Response<pb::PayResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let (id, amount, card) = fields::all(|v| {
            let id = v.check("reservation_id", ReservationId::parse(&r.reservation_id));
            if let Some(id) = &id {
                crate::record_reservation(id);
            }
            let amount = money_field("amount", r.amount.as_ref())
                .map_err(|e| v.extend(e))
                .ok();
            let card = fields::card("card", r.card.as_ref(), v);
            Some((id?, amount?, card?))
        })?;
        let payment = self
            .service
            .pay(&who, id, amount, &card)
            .await
            .map_err(payment_pay_error)?;
        Ok(Response::new(pb::PayResponse {
            payment: Some(payment_to_pb(&payment)),
        }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let who = principal(&request)?;
        let id = fields::reservation_id(&request.get_ref().reservation_id)?;
        let payment = self
            .service
            .get(&who, id)
            .await
            .map_err(payment_get_error)?;
        Ok(Response::new(pb::GetPaymentResponse {
            payment: Some(payment_to_pb(&payment)),
        }))
    }

    async fn refund(
        &self,
        request: Request<pb::RefundRequest>,
    ) -> Result<Response<pb::RefundResponse>, Status> {
        let who = principal(&request)?;
        let id = fields::reservation_id(&request.get_ref().reservation_id)?;
        let payment = self
            .service
            .refund(&who, id)
            .await
            .map_err(payment_refund_error)?;
        Ok(Response::new(pb::RefundResponse {
            payment: Some(payment_to_pb(&payment)),
        }))
    }
}
