//! The domain's synchronous ports over gRPC, each behind [`resilient`].

use proto::reasons;
use std::time::Duration;

use adapters_codec::{instant_from_pb, instant_to_pb, money_to_pb};
use domain_kernel::{
    CardDetails, DeviceModel, Money, ReservationId, SpaceId, TimeWindow, Timestamp, VehiclePlate,
};
use domain_parking::ports::{ReservationVerifier, VerifiedEntry, VerifierUnavailable};
use domain_rental::ports::{CatalogUnavailable, ReservationAuthority, UseRefused};
use domain_reservation::ports::{
    DeclineReason, PaymentGateway, PaymentOutcome, PaymentUnavailable,
};
use proto::payment::payment_service_client::PaymentServiceClient;
use proto::payment::{self as pp, PayRequest, PayResponse};
use proto::reservation::reservation_service_client::ReservationServiceClient;
use proto::reservation::{
    BeginUseRequest, BeginUseResponse, ListDeviceOffersRequest, ListDeviceOffersResponse,
    VerifyParkingEntryRequest, VerifyParkingEntryResponse,
};
use tonic_types::StatusExt as _;
use tower::{BoxError, ServiceExt};
use tracing::{Instrument, warn};

use crate::balance::Upstream;
use crate::breaker::{Breaker, BreakerOpen};
use crate::resilience::{Call, CallPolicy, resilient};

/// The span of one attempt of an outgoing call by `caller` (the component
/// it runs in); its context travels in the request's metadata (see
/// `adapters_telemetry::inject`).
fn client_span(
    caller: &'static str,
    path: &'static str,
    reservation: Option<&str>,
) -> tracing::Span {
    let span = adapters_telemetry::layer::client_span(caller, path);
    if let Some(id) = reservation {
        span.record("reservation_id", id);
    }
    span
}

fn retry_after(e: &BoxError) -> Duration {
    e.downcast_ref::<BreakerOpen>()
        .map_or(Duration::from_secs(1), |open| {
            open.retry_after.max(Duration::from_millis(100))
        })
}

/// The `authorization` value of the calling service's own identity, asked
/// for each call (a service token renews itself before it expires).
pub type CallerToken = std::sync::Arc<
    dyn Fn() -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, tonic::Status>
        + Send
        + Sync,
>;

/// One attempt of a service-to-service call (`send`), with the deadline, the
/// caller's service token and an `rpc.client` span, wrapped in [`resilient`]
/// as an idempotent call (every call here is idempotent per reservation).
///
/// `caller` names the component making the call (its spans' `component`),
/// `reservation` the reservation a request names, if any.
#[allow(
    clippy::too_many_arguments,
    reason = "one call's whole description, named at each site"
)]
fn idempotent_call<Req, Res, F, Fut>(
    caller: &'static str,
    name: &str,
    method: &'static str,
    reservation: fn(&Req) -> Option<&str>,
    policy: CallPolicy,
    token: CallerToken,
    send: F,
) -> (Call<Req, Res>, Breaker)
where
    Req: Clone + Send + Sync + 'static,
    Res: Send + 'static,
    F: Fn(tonic::Request<Req>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<tonic::Response<Res>, tonic::Status>> + Send + 'static,
{
    let deadline = policy.deadline;
    let one_attempt = tower::service_fn(move |req: Req| {
        let send = send.clone();
        let token = token.clone();
        let span = client_span(caller, method, reservation(&req));
        // An attempt the resilience layer's timeout drops before it is
        // answered ends its span as DEADLINE_EXCEEDED.
        let status = adapters_telemetry::layer::ClientStatus::new(
            span.clone(),
            tonic::Code::DeadlineExceeded as i32,
        );
        async move {
            let result = async {
                let mut request = tonic::Request::new(req);
                request.set_timeout(deadline);
                request.metadata_mut().insert("authorization", token()?);
                send(request).await.map(tonic::Response::into_inner)
            }
            .await;
            let code = result
                .as_ref()
                .err()
                .map_or(tonic::Code::Ok, tonic::Status::code);
            status.answered(code as i32);
            result
        }
        .instrument(span)
    });
    resilient(
        name,
        CallPolicy {
            idempotent: true,
            ..policy
        },
        one_attempt,
    )
}

/// `PaymentService/Pay`, idempotent by reservation id (so it may be retried).
#[derive(Debug, Clone)]
pub struct GrpcPaymentGateway {
    call: Call<PayRequest, PayResponse>,
    breaker: Breaker,
}

impl GrpcPaymentGateway {
    /// `token` is the service identity the calls carry.
    pub fn new(channel: Upstream, policy: CallPolicy, token: CallerToken) -> Self {
        let client = PaymentServiceClient::with_interceptor(channel, adapters_telemetry::inject);
        let (call, breaker) = idempotent_call(
            "reservation",
            "payment.Pay",
            "/roaming.payment.v1.PaymentService/Pay",
            |r: &PayRequest| Some(&r.reservation_id),
            policy,
            token,
            move |request| {
                let mut client = client.clone();
                async move { client.pay(request).await }
            },
        );
        Self { call, breaker }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl PaymentGateway for GrpcPaymentGateway {
    async fn pay(
        &self,
        reservation_id: ReservationId,
        amount: Money,
        card: &CardDetails,
    ) -> Result<PaymentOutcome, PaymentUnavailable> {
        let request = PayRequest {
            reservation_id: reservation_id.to_string(),
            amount: Some(money_to_pb(amount)),
            card: Some(proto::common::PaymentCard {
                card_number: card.number.reveal().to_owned(),
                expiry_month: i32::from(card.expiry.month()),
                expiry_year: i32::from(card.expiry.year()),
                holder_name: card.holder_name.clone(),
                company: card.company.clone(),
            }),
        };
        match self.call.clone().oneshot(request).await {
            Ok(response) => {
                let Some(payment) = response.payment else {
                    warn!(%reservation_id, "payment answered without a payment");
                    return Err(PaymentUnavailable {
                        retry_after: time::Duration::seconds(1),
                    });
                };
                Ok(match pp::PaymentStatus::try_from(payment.status) {
                    Ok(pp::PaymentStatus::Captured) => PaymentOutcome::Captured,
                    Ok(pp::PaymentStatus::Declined) => {
                        let reason = match pp::DeclineReason::try_from(payment.decline_reason) {
                            Ok(pp::DeclineReason::InsufficientFunds) => {
                                DeclineReason::InsufficientFunds
                            }
                            _ => DeclineReason::CardDeclined,
                        };
                        PaymentOutcome::Declined(reason)
                    }
                    // Voided (or refunded): no capture stands for this reservation.
                    _ => PaymentOutcome::Voided,
                })
            }
            Err(e) => {
                warn!(%reservation_id, error = %e, "payment call failed");
                let wait = retry_after(&e);
                Err(PaymentUnavailable {
                    retry_after: time::Duration::try_from(wait).unwrap_or(time::Duration::SECOND),
                })
            }
        }
    }
}

/// `ReservationService/VerifyParkingEntry` (a read: retried).
#[derive(Debug, Clone)]
pub struct GrpcReservationVerifier {
    call: Call<VerifyParkingEntryRequest, VerifyParkingEntryResponse>,
    breaker: Breaker,
}

impl GrpcReservationVerifier {
    /// `token` is the service identity the calls carry.
    pub fn new(channel: Upstream, policy: CallPolicy, token: CallerToken) -> Self {
        let client =
            ReservationServiceClient::with_interceptor(channel, adapters_telemetry::inject);
        let (call, breaker) = idempotent_call(
            "parking",
            "reservation.VerifyParkingEntry",
            "/roaming.reservation.v1.ReservationService/VerifyParkingEntry",
            |_| None,
            policy,
            token,
            move |request| {
                let mut client = client.clone();
                async move { client.verify_parking_entry(request).await }
            },
        );
        Self { call, breaker }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl ReservationVerifier for GrpcReservationVerifier {
    async fn verify(
        &self,
        space: &SpaceId,
        plate: &VehiclePlate,
        at: Timestamp,
    ) -> Result<Option<VerifiedEntry>, VerifierUnavailable> {
        let request = VerifyParkingEntryRequest {
            space_id: space.to_string(),
            vehicle_plate: plate.to_string(),
            at: Some(instant_to_pb(at)),
        };
        let response = self.call.clone().oneshot(request).await.map_err(|e| {
            warn!(%space, error = %e, "verify call failed; deciding from the replica");
            VerifierUnavailable
        })?;
        if !response.allowed {
            return Ok(None);
        }
        let parsed = (|| {
            let reservation_id = ReservationId::parse(&response.reservation_id).ok()?;
            let start = instant_from_pb(response.window_start.as_ref()).ok()?;
            let end = instant_from_pb(response.window_end.as_ref()).ok()?;
            Some(VerifiedEntry {
                reservation_id,
                window: TimeWindow::new(start, end).ok()?,
            })
        })();
        // An answer we cannot read is no answer: fall back to the replica.
        parsed.map(Some).ok_or(VerifierUnavailable)
    }
}

/// `ReservationService/BeginUse` for the booth's hand-over (idempotent per
/// reservation: retried). A refusal is the reservation's decision and final;
/// anything else (down, breaker open, deadline, a refusal we cannot read)
/// is "unavailable": the booth keeps the device and tries again.
#[derive(Debug, Clone)]
pub struct GrpcReservationAuthority {
    call: Call<BeginUseRequest, BeginUseResponse>,
    offers: Call<ListDeviceOffersRequest, ListDeviceOffersResponse>,
    breaker: Breaker,
}

impl GrpcReservationAuthority {
    /// `token` is the rental service's own identity: only it may call.
    pub fn new(channel: Upstream, policy: CallPolicy, token: CallerToken) -> Self {
        let client =
            ReservationServiceClient::with_interceptor(channel.clone(), adapters_telemetry::inject);
        // A hand-over has no fallback (the gate has its replica): an attempt
        // stalled past its deadline on one reservation replica (a busy
        // machine, a drain under way) is tried on another, within the
        // retries and their budget. BeginUse is idempotent per reservation.
        let (call, breaker) = idempotent_call(
            "rental",
            "reservation.BeginUse",
            "/roaming.reservation.v1.ReservationService/BeginUse",
            |r: &BeginUseRequest| Some(&r.reservation_id),
            CallPolicy {
                retry_timeouts: true,
                ..policy
            },
            token.clone(),
            move |request| {
                let mut client = client.clone();
                async move { client.begin_use(request).await }
            },
        );
        let client =
            ReservationServiceClient::with_interceptor(channel, adapters_telemetry::inject);
        // A read: retried freely, with a breaker of its own so that a slow
        // price list never opens the hand-over's breaker.
        let (offers, _) = idempotent_call(
            "rental",
            "reservation.ListDeviceOffers",
            "/roaming.reservation.v1.ReservationService/ListDeviceOffers",
            |_| None,
            policy,
            token,
            move |request| {
                let mut client = client.clone();
                async move { client.list_device_offers(request).await }
            },
        );
        Self {
            call,
            offers,
            breaker,
        }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl ReservationAuthority for GrpcReservationAuthority {
    async fn begin_use(&self, reservation_id: ReservationId) -> Result<(), UseRefused> {
        let request = BeginUseRequest {
            reservation_id: reservation_id.to_string(),
        };
        let Err(e) = self.call.clone().oneshot(request).await else {
            return Ok(());
        };
        if let Some(status) = e.downcast_ref::<tonic::Status>() {
            let why = status
                .get_details_error_info()
                .map(|info| info.reason)
                .unwrap_or_default();
            match (status.code(), why.as_str()) {
                (tonic::Code::FailedPrecondition, reasons::RESERVATION_CANCELED) => {
                    return Err(UseRefused::Canceled);
                }
                (tonic::Code::FailedPrecondition, reasons::NOT_RESERVED)
                | (tonic::Code::NotFound, _) => {
                    return Err(UseRefused::NotReserved);
                }
                _ => {}
            }
        }
        warn!(%reservation_id, error = ?e, "begin-use call failed; the hand-over waits");
        Err(UseRefused::Unavailable {
            retry_after: retry_after(&e),
        })
    }

    async fn offers_model(&self, model: &DeviceModel) -> Result<bool, CatalogUnavailable> {
        let request = ListDeviceOffersRequest {
            device_model: model.to_string(),
        };
        match self.offers.clone().oneshot(request).await {
            Ok(r) => Ok(r.offers.iter().any(|o| o.device_model == model.as_str())),
            Err(e) => {
                warn!(%model, error = %e, "price list call failed; the device is not stocked");
                Err(CatalogUnavailable {
                    retry_after: retry_after(&e),
                })
            }
        }
    }
}
