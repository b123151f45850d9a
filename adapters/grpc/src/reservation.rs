//! `roaming.reservation.v1.ReservationService` over the domain's use cases.

use proto::reasons;
use std::sync::Arc;

use adapters_codec::{
    details_from_pb, instant_from_pb, instant_to_pb, money_to_pb, parking_details_to_pb,
    roaming_details_to_pb, status_to_pb,
};
use domain_kernel::{
    Clock, DeviceModel, IdGenerator, RequestId, SpaceId, TimeWindow, VehiclePlate, Violations,
};
use domain_reservation::ports::{Catalog, DeclineReason, PaymentGateway, ReservationRepository};
use domain_reservation::{
    BeginUseError, CancelError, Details, GetError, Kind, ParkingDetails, QuoteError,
    RejectionReason, Reservation, ReservationService, ReserveError, RoamingDetails, VerifyError,
};
use proto::reservation as pb;
use proto::reservation::reservation_service_server::ReservationService as Rpc;
use tonic::{Code, Request, Response, Status};

use crate::fields;
use crate::identity::principal;
use crate::status::{
    busy, forbidden, internal, invalid, not_found, reason, retry_later, std_duration,
};

/// The gRPC face of [`ReservationService`].
#[derive(Debug)]
pub struct ReservationRpc<R, C, P, K, I> {
    service: Arc<ReservationService<R, C, P, K, I>>,
}

impl<R, C, P, K, I> ReservationRpc<R, C, P, K, I> {
    pub fn new(service: Arc<ReservationService<R, C, P, K, I>>) -> Self {
        Self { service }
    }
}

/// The wire form of a reservation.
pub fn reservation_to_pb(r: &Reservation) -> pb::Reservation {
    let details = match &r.details {
        Details::Roaming(d) => pb::reservation::Details::Roaming(roaming_details_to_pb(d)),
        Details::Parking(d) => pb::reservation::Details::Parking(parking_details_to_pb(d)),
    };
    pb::Reservation {
        reservation_id: r.id.to_string(),
        customer_id: r.customer_id.to_string(),
        kind: kind_to_pb(r.kind()) as i32,
        status: status_to_pb(r.status) as i32,
        price: Some(money_to_pb(r.price)),
        details: Some(details),
        request_id: r.request_id.to_string(),
        rejection_reason: match r.rejection {
            Some(RejectionReason::PaymentDeclined) => pb::RejectionReason::PaymentDeclined as i32,
            Some(RejectionReason::PaymentUnavailable) => {
                pb::RejectionReason::PaymentUnavailable as i32
            }
            Some(RejectionReason::PaymentTimedOut) => pb::RejectionReason::PaymentTimedOut as i32,
            None => pb::RejectionReason::Unspecified as i32,
        },
        created_at: Some(instant_to_pb(r.created_at)),
        updated_at: Some(instant_to_pb(r.updated_at)),
    }
}

/// The wire form of a reservation's kind (also the view's `kind`).
pub(crate) fn kind_to_pb(k: Kind) -> pb::ReservationKind {
    match k {
        Kind::Roaming => pb::ReservationKind::Roaming,
        Kind::Parking => pb::ReservationKind::Parking,
    }
}

fn roaming(d: pb::RoamingDetails) -> Result<RoamingDetails, Status> {
    match details_from_pb(Some(&d), None) {
        Ok(Details::Roaming(r)) => Ok(r),
        Ok(Details::Parking(_)) => Err(Status::internal("unreachable: roaming parsed as parking")),
        Err(v) => Err(invalid(&v)),
    }
}

fn parking(
    space_id: String,
    vehicle_plate: String,
    start: Option<prost_types::Timestamp>,
    end: Option<prost_types::Timestamp>,
) -> Result<ParkingDetails, Violations> {
    let d = pb::ParkingDetails {
        space_id,
        vehicle_plate,
        start_time: start,
        end_time: end,
    };
    match details_from_pb(None, Some(&d)) {
        Ok(Details::Parking(p)) => Ok(p),
        Ok(Details::Roaming(_)) => Err(Violations::one("details", "unreachable")),
        Err(v) => Err(v),
    }
}

/// Counts a refused reserve call by its `ErrorInfo` reason.
fn rejected(kind: &'static str, status: Status) -> Status {
    use tonic_types::StatusExt;
    let reason = status
        .get_details_error_info()
        .map_or_else(|| format!("{:?}", status.code()), |i| i.reason);
    adapters_telemetry::metrics::reservation("rejected", kind, &reason);
    status
}

pub(crate) fn quote_error(e: QuoteError) -> Status {
    match e {
        QuoteError::Forbidden => forbidden(),
        QuoteError::Invalid(v) => invalid(&v),
        QuoteError::Store(e) => internal(&e),
    }
}

/// The status of a refused reserve call.
pub(crate) fn reserve_error(e: ReserveError) -> Status {
    match e {
        ReserveError::Forbidden => reason(
            Code::PermissionDenied,
            reasons::FORBIDDEN,
            "only customers reserve",
            &[],
        ),
        ReserveError::Invalid(v) => invalid(&v),
        ReserveError::SoldOut => reason(
            Code::FailedPrecondition,
            reasons::SOLD_OUT,
            "nothing left for that period",
            &[],
        ),
        ReserveError::PaymentDeclined {
            reservation_id,
            reason: why,
        } => reason(
            Code::FailedPrecondition,
            reasons::PAYMENT_DECLINED,
            "the card was declined",
            &[
                ("reservation_id", reservation_id.to_string()),
                (
                    "decline_reason",
                    match why {
                        Some(DeclineReason::InsufficientFunds) => reasons::INSUFFICIENT_FUNDS,
                        Some(DeclineReason::CardDeclined) => reasons::CARD_DECLINED,
                        None => reasons::DECLINED,
                    }
                    .to_owned(),
                ),
            ],
        ),
        ReserveError::PaymentUnavailable {
            reservation_id,
            retry_after,
        } => retry_later(
            Code::Unavailable,
            reasons::PAYMENT_UNAVAILABLE,
            "payment is unavailable; nothing was reserved, try again shortly",
            std_duration(retry_after),
            &[("reservation_id", reservation_id.to_string())],
        ),
        ReserveError::RequestIdReused => reason(
            Code::AlreadyExists,
            reasons::REQUEST_ID_REUSED,
            "this request_id was used for a different reservation",
            &[],
        ),
        ReserveError::InProgress => retry_later(
            Code::Aborted,
            reasons::IN_PROGRESS,
            "a reserve call with this request_id is still running",
            std::time::Duration::from_millis(500),
            &[],
        ),
        ReserveError::Store(e) => internal(&e),
    }
}

pub(crate) fn get_error(e: GetError) -> Status {
    match e {
        GetError::NotFound => not_found("reservation"),
        GetError::Store(e) => internal(&e),
    }
}

impl<R, C, P, K, I> ReservationRpc<R, C, P, K, I>
where
    R: ReservationRepository + 'static,
    C: Catalog + 'static,
    P: PaymentGateway + 'static,
    K: Clock + 'static,
    I: IdGenerator + 'static,
{
    /// What both reserve calls share once their details are parsed: every
    /// field violation in one `INVALID_ARGUMENT`, then the use case, the span
    /// field and the outcome counter (`kind` is `roaming` or `parking`).
    async fn reserve(
        &self,
        who: &domain_kernel::Principal,
        mut v: Violations,
        request_id: Option<RequestId>,
        details: Result<Details, Violations>,
        payment: Option<&proto::common::PaymentCard>,
        kind: &'static str,
    ) -> Result<pb::Reservation, Status> {
        let details = details.map_err(|e| v.extend(e)).ok();
        let card = fields::card("payment", payment, &mut v);
        let (Some(request_id), Some(details), Some(card)) = (request_id, details, card) else {
            return Err(invalid(&v));
        };
        let reservation = self
            .service
            .reserve(who, request_id, details, card)
            .await
            .map_err(|e| rejected(kind, reserve_error(e)))?;
        crate::record_reservation(&reservation.id);
        adapters_telemetry::metrics::reservation("reserved", kind, "");
        Ok(reservation_to_pb(&reservation))
    }
}

/// The status of a refused call: code and `ErrorInfo` reason per error.
pub(crate) fn cancel_error(e: CancelError) -> Status {
    match e {
        CancelError::NotFound => not_found("reservation"),
        CancelError::NotCancelable(status) => reason(
            Code::FailedPrecondition,
            reasons::NOT_CANCELABLE,
            format!("a {status} reservation cannot be canceled"),
            &[("status", status.to_string())],
        ),
        CancelError::EntryOpen => reason(
            Code::FailedPrecondition,
            reasons::ENTRY_OPEN,
            "the parking window's entry has opened; it can no longer be canceled",
            &[],
        ),
        CancelError::Busy => busy("the reservation is changing; try again"),
        CancelError::Store(e) => internal(&e),
    }
}

/// The status of a refused call: code and `ErrorInfo` reason per error.
pub(crate) fn verify_error(e: VerifyError) -> Status {
    match e {
        VerifyError::Forbidden => forbidden(),
        VerifyError::Store(e) => internal(&e),
    }
}

/// The status of a refused call: code and `ErrorInfo` reason per error.
pub(crate) fn begin_use_error(e: BeginUseError) -> Status {
    match e {
        BeginUseError::NotFound => not_found("reservation"),
        BeginUseError::Forbidden => forbidden(),
        BeginUseError::Canceled => reason(
            Code::FailedPrecondition,
            reasons::RESERVATION_CANCELED,
            "the reservation was canceled; the device must not be handed over",
            &[],
        ),
        BeginUseError::NotReserved(status) => reason(
            Code::FailedPrecondition,
            reasons::NOT_RESERVED,
            format!("a {status} reservation cannot be taken into use"),
            &[("status", status.to_string())],
        ),
        BeginUseError::Busy => busy("the reservation is changing; try again"),
        BeginUseError::Store(e) => internal(&e),
    }
}

#[tonic::async_trait]
impl<R, C, P, K, I> Rpc for ReservationRpc<R, C, P, K, I>
where
    R: ReservationRepository + 'static,
    C: Catalog + 'static,
    P: PaymentGateway + 'static,
    K: Clock + 'static,
    I: IdGenerator + 'static,
{
    async fn quote_roaming(
        &self,
        request: Request<pb::QuoteRoamingRequest>,
    ) -> Result<Response<pb::QuoteRoamingResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let details = roaming(pb::RoamingDetails {
            device_model: r.device_model,
            country: r.country,
            pickup_booth: r.pickup_booth,
            return_booth: r.return_booth,
            start_date: r.start_date,
            end_date: r.end_date,
        })?;
        let q = self
            .service
            .quote_roaming(&who, &details)
            .await
            .map_err(quote_error)?;
        Ok(Response::new(pb::QuoteRoamingResponse {
            price: Some(money_to_pb(q.price)),
            daily_rate: Some(money_to_pb(q.unit_rate)),
            days: i32::try_from(q.units).unwrap_or(i32::MAX),
        }))
    }

    async fn reserve_roaming(
        &self,
        request: Request<pb::ReserveRoamingRequest>,
    ) -> Result<Response<pb::ReserveRoamingResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let request_id = v.check("request_id", RequestId::parse(&r.request_id));
        let details = details_from_pb(
            Some(&pb::RoamingDetails {
                device_model: r.device_model,
                country: r.country,
                pickup_booth: r.pickup_booth,
                return_booth: r.return_booth,
                start_date: r.start_date,
                end_date: r.end_date,
            }),
            None,
        );
        let reservation = self
            .reserve(&who, v, request_id, details, r.payment.as_ref(), "roaming")
            .await?;
        Ok(Response::new(pb::ReserveRoamingResponse {
            reservation: Some(reservation),
        }))
    }

    async fn quote_parking(
        &self,
        request: Request<pb::QuoteParkingRequest>,
    ) -> Result<Response<pb::QuoteParkingResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let (space, window) = fields::all(|v| {
            let space = v.check("space_id", SpaceId::parse(&r.space_id));
            let start = v.check("start_time", instant_from_pb(r.start_time.as_ref()));
            let end = v.check("end_time", instant_from_pb(r.end_time.as_ref()));
            let window = match (start, end) {
                (Some(s), Some(e)) => v.check("end_time", TimeWindow::new(s, e)),
                _ => None,
            };
            Some((space?, window?))
        })?;
        let q = self
            .service
            .quote_parking(&who, &space, &window)
            .await
            .map_err(quote_error)?;
        Ok(Response::new(pb::QuoteParkingResponse {
            price: Some(money_to_pb(q.price)),
            hourly_rate: Some(money_to_pb(q.unit_rate)),
            hours: i32::try_from(q.units).unwrap_or(i32::MAX),
        }))
    }

    async fn reserve_parking(
        &self,
        request: Request<pb::ReserveParkingRequest>,
    ) -> Result<Response<pb::ReserveParkingResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let request_id = v.check("request_id", RequestId::parse(&r.request_id));
        let details =
            parking(r.space_id, r.vehicle_plate, r.start_time, r.end_time).map(Details::Parking);
        let reservation = self
            .reserve(&who, v, request_id, details, r.payment.as_ref(), "parking")
            .await?;
        Ok(Response::new(pb::ReserveParkingResponse {
            reservation: Some(reservation),
        }))
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        let who = principal(&request)?;
        let id = fields::reservation_id(&request.get_ref().reservation_id)?;
        let r = self.service.get(&who, id).await.map_err(get_error)?;
        Ok(Response::new(pb::GetReservationResponse {
            reservation: Some(reservation_to_pb(&r)),
        }))
    }

    async fn cancel_reservation(
        &self,
        request: Request<pb::CancelReservationRequest>,
    ) -> Result<Response<pb::CancelReservationResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let id = fields::reservation_id(&r.reservation_id)?;
        if r.reason.chars().count() > 500 {
            return Err(invalid(&Violations::one(
                "reason",
                "must be at most 500 characters",
            )));
        }
        let canceled = self
            .service
            .cancel(&who, id, r.reason)
            .await
            .map_err(cancel_error)?;
        adapters_telemetry::metrics::reservation("canceled", "any", "");
        Ok(Response::new(pb::CancelReservationResponse {
            reservation: Some(reservation_to_pb(&canceled)),
        }))
    }

    async fn verify_parking_entry(
        &self,
        request: Request<pb::VerifyParkingEntryRequest>,
    ) -> Result<Response<pb::VerifyParkingEntryResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let (space, plate, at) = fields::all(|v| {
            let space = v.check("space_id", SpaceId::parse(&r.space_id));
            let plate = v.check("vehicle_plate", VehiclePlate::parse(&r.vehicle_plate));
            let at = match r.at.as_ref() {
                Some(t) => Some(v.check("at", instant_from_pb(Some(t)))?),
                None => None,
            };
            Some((space?, plate?, at))
        })?;
        let entry = self
            .service
            .verify_parking_entry(&who, &space, &plate, at)
            .await
            .map_err(verify_error)?;
        Ok(Response::new(match entry {
            Some(e) => pb::VerifyParkingEntryResponse {
                allowed: true,
                reservation_id: e.reservation_id.to_string(),
                window_start: Some(instant_to_pb(e.window.start())),
                window_end: Some(instant_to_pb(e.window.end())),
            },
            None => pb::VerifyParkingEntryResponse::default(),
        }))
    }

    async fn begin_use(
        &self,
        request: Request<pb::BeginUseRequest>,
    ) -> Result<Response<pb::BeginUseResponse>, Status> {
        let who = principal(&request)?;
        let id = fields::reservation_id(&request.into_inner().reservation_id)?;
        let used = self
            .service
            .begin_use(&who, id)
            .await
            .map_err(begin_use_error)?;
        Ok(Response::new(pb::BeginUseResponse {
            reservation: Some(reservation_to_pb(&used)),
        }))
    }

    async fn list_device_offers(
        &self,
        request: Request<pb::ListDeviceOffersRequest>,
    ) -> Result<Response<pb::ListDeviceOffersResponse>, Status> {
        principal(&request)?;
        let model = fields::one(
            "device_model",
            fields::optional(&request.get_ref().device_model, DeviceModel::parse),
        )?;
        let offers = self
            .service
            .device_offers(model.as_ref())
            .await
            .map_err(|e| internal(&e))?;
        Ok(Response::new(pb::ListDeviceOffersResponse {
            offers: offers
                .iter()
                .map(|o| pb::DeviceOffer {
                    device_model: o.device_model.to_string(),
                    daily_rate: Some(money_to_pb(o.daily_rate)),
                    countries: o.countries.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }))
    }
}
