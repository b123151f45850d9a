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
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;

use crate::fields;
use crate::identity::principal;
use crate::status::{
    busy, forbidden, invalid, not_found, reason, retry_later, std_duration, store, store_write,
};

/// Reserve calls that may run at once in one process by default (see
/// [`Sagas`]).
pub const MAX_RESERVES_IN_FLIGHT: usize = 1_024;

/// The reserve calls of this process, each run to its end as a task of its
/// own, whatever its caller does.
///
/// A reserve writes a claim (`PENDING_PAYMENT`, holding capacity) and then
/// pays. tonic drops a handler's future when its caller cancels or its
/// deadline passes (`grpc-timeout: 1m` is one millisecond); dropped between
/// the claim and the payment outcome, the claim held its slot until the
/// sweeper rejected it a pending TTL later (60 s), even for a declined card.
/// So the handler spawns the use case and awaits its `JoinHandle`: dropping
/// the handle does not cancel the task, which pays and confirms, or rejects
/// and releases, at once; the caller who went away learns the outcome by
/// retrying with the same `request_id`.
///
/// At most `max` run at once, so a flood of abandoned calls cannot pile up
/// tasks: one over the limit is refused before it claims anything
/// (`UNAVAILABLE` / `OVERLOADED` + `RetryInfo`). Each ends within the
/// payment call's deadline. A stopping server waits for them
/// ([`Sagas::drained`]) after its own drain, so the calls abandoned last
/// are finished too.
#[derive(Debug, Clone)]
pub struct Sagas {
    permits: Arc<Semaphore>,
    max: u32,
}

impl Sagas {
    /// Room for `max` reserve calls at once (at least one).
    pub fn new(max: usize) -> Self {
        let max = u32::try_from(max.clamp(1, Semaphore::MAX_PERMITS))
            .unwrap_or(u32::MAX)
            .max(1);
        Self {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }

    /// How many reserve calls are running now.
    pub fn running(&self) -> usize {
        (self.max as usize).saturating_sub(self.permits.available_permits())
    }

    /// Resolves once no reserve call is running (and none can start: call it
    /// when the server no longer takes calls).
    pub async fn drained(&self) {
        let _all = self.permits.acquire_many(self.max).await;
    }
}

impl Default for Sagas {
    fn default() -> Self {
        Self::new(MAX_RESERVES_IN_FLIGHT)
    }
}

/// The gRPC face of [`ReservationService`].
#[derive(Debug)]
pub struct ReservationRpc<R, C, P, K, I> {
    service: Arc<ReservationService<R, C, P, K, I>>,
    sagas: Sagas,
}

impl<R, C, P, K, I> ReservationRpc<R, C, P, K, I> {
    pub fn new(service: Arc<ReservationService<R, C, P, K, I>>) -> Self {
        Self {
            service,
            sagas: Sagas::default(),
        }
    }

    /// Runs reserve calls within `sagas` (shared with whoever drains them).
    #[must_use]
    pub fn with_sagas(mut self, sagas: Sagas) -> Self {
        self.sagas = sagas;
        self
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
        QuoteError::Store(e) => store(&e),
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
        ReserveError::TooManyPending { limit } => retry_later(
            Code::ResourceExhausted,
            reasons::PENDING_LIMIT,
            format!(
                "{limit} of your reservations are still awaiting payment; \
                 nothing was reserved, try again when one has finished"
            ),
            std::time::Duration::from_secs(1),
            &[("limit", limit.to_string())],
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
        ReserveError::Store(e) => store_write(&e),
    }
}

/// A reserve refused because [`Sagas`] is full: nothing was claimed.
fn too_many_reserves() -> Status {
    retry_later(
        Code::Unavailable,
        reasons::OVERLOADED,
        "too many reserve calls are running; nothing was reserved, try again shortly",
        std::time::Duration::from_millis(200),
        &[],
    )
}

pub(crate) fn get_error(e: GetError) -> Status {
    match e {
        GetError::NotFound => not_found("reservation"),
        GetError::Store(e) => store(&e),
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
        let Ok(permit) = Arc::clone(&self.sagas.permits).try_acquire_owned() else {
            return Err(rejected(kind, too_many_reserves()));
        };
        // From here on the call runs to its end even if this handler is
        // dropped (see [`Sagas`]); its outcome is counted either way.
        let service = Arc::clone(&self.service);
        let who = who.clone();
        let saga = tokio::spawn(
            async move {
                let _permit = permit;
                let reservation = service
                    .reserve(&who, request_id, details, card)
                    .await
                    .map_err(|e| {
                        // A reservation made but not paid is still one.
                        if let ReserveError::PaymentDeclined { reservation_id, .. }
                        | ReserveError::PaymentUnavailable { reservation_id, .. } = &e
                        {
                            crate::record_reservation(reservation_id);
                        }
                        rejected(kind, reserve_error(e))
                    })?;
                crate::record_reservation(&reservation.id);
                adapters_telemetry::metrics::reservation("reserved", kind, "");
                Ok(reservation_to_pb(&reservation))
            }
            .instrument(tracing::Span::current()),
        );
        saga.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "a reserve call's task failed");
            Err(Status::internal("internal error"))
        })
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
        CancelError::Store(e) => store_write(&e),
    }
}

/// The status of a refused call: code and `ErrorInfo` reason per error.
pub(crate) fn verify_error(e: VerifyError) -> Status {
    match e {
        VerifyError::Forbidden => forbidden(),
        VerifyError::Store(e) => store(&e),
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
        BeginUseError::Store(e) => store_write(&e),
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
        if let Some(e) = &entry {
            crate::record_reservation(&e.reservation_id);
        }
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
            .map_err(|e| store(&e))?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use std::time::Duration;

    use domain_kernel::{
        CardDetails, CustomerId, Money, Principal, ReservationId, SpaceId, SystemClock, UuidV7,
    };
    use domain_reservation::fakes::{FakePayments, InMemoryReservations, PaymentBehaviour};
    use domain_reservation::ports::{PaymentGateway, PaymentOutcome, PaymentUnavailable};
    use domain_reservation::pricing::SpaceOffer;
    use domain_reservation::{ReservationService, Status as S};
    use tonic_types::StatusExt as _;

    use super::*;

    /// Payment that takes `.1` to answer.
    #[derive(Debug, Clone)]
    struct Slow(FakePayments, Duration);

    impl PaymentGateway for Slow {
        async fn pay(
            &self,
            reservation_id: ReservationId,
            amount: Money,
            card: &CardDetails,
        ) -> Result<PaymentOutcome, PaymentUnavailable> {
            tokio::time::sleep(self.1).await;
            self.0.pay(reservation_id, amount, card).await
        }
    }

    type Under =
        ReservationRpc<InMemoryReservations, InMemoryReservations, Slow, SystemClock, UuidV7>;

    async fn rpc(payments: &FakePayments, sagas: Sagas) -> (Under, InMemoryReservations) {
        let store = InMemoryReservations::default();
        for n in 1..=3 {
            store
                .put_space(
                    &SpaceOffer {
                        space_id: SpaceId::parse(&format!("P1-B1-00{n}")).unwrap(),
                        hourly_rate: Money::krw(3_000).unwrap(),
                    },
                    None,
                )
                .await
                .unwrap();
        }
        let service = ReservationService::new(
            store.clone(),
            store.clone(),
            Slow(payments.clone(), Duration::from_millis(300)),
            SystemClock,
            UuidV7,
        );
        (
            ReservationRpc::new(Arc::new(service)).with_sagas(sagas),
            store,
        )
    }

    fn request(space: u8) -> Request<pb::ReserveParkingRequest> {
        let start = time::OffsetDateTime::now_utc() + time::Duration::hours(2);
        let at = |t: time::OffsetDateTime| prost_types::Timestamp {
            seconds: t.unix_timestamp(),
            nanos: 0,
        };
        let mut r = Request::new(pb::ReserveParkingRequest {
            request_id: format!("r{space}"),
            space_id: format!("P1-B1-00{space}"),
            vehicle_plate: "12가3456".into(),
            start_time: Some(at(start)),
            end_time: Some(at(start + time::Duration::hours(1))),
            payment: Some(proto::common::PaymentCard {
                card_number: "4111111111111111".into(),
                expiry_month: 12,
                expiry_year: 2099,
                holder_name: "A".into(),
                company: "VISA".into(),
            }),
        });
        r.extensions_mut()
            .insert(Principal::customer(&CustomerId::parse("alice").unwrap()));
        r
    }

    /// The reservation of space `n`'s call, once it left `PENDING_PAYMENT`.
    async fn settled(store: &InMemoryReservations, space: u8) -> domain_reservation::Reservation {
        let space = SpaceId::parse(&format!("P1-B1-00{space}")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let found = store.all().into_iter().find(|r| {
                    matches!(&r.details, Details::Parking(p) if p.space_id == space)
                        && r.status != S::PendingPayment
                });
                if let Some(r) = found {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the abandoned call ended")
    }

    /// A caller that goes away while payment runs (its handler future is
    /// dropped, as tonic does on a cancel or a passed deadline) does not
    /// leave the claim holding its slot: it is paid and confirmed, or
    /// declined and released, as if the caller had waited.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_dropped_after_its_claim_still_ends() {
        for (behaviour, expected) in [
            (PaymentBehaviour::Capture, S::Reserved),
            (PaymentBehaviour::Decline, S::Rejected),
        ] {
            let payments = FakePayments::default();
            payments.set(behaviour);
            let (rpc, store) = rpc(&payments, Sagas::default()).await;
            let call = rpc.reserve_parking(request(1));
            let dropped = tokio::time::timeout(Duration::from_millis(100), call).await;
            assert!(dropped.is_err(), "the call was still paying when dropped");
            let claimed = store.all();
            assert_eq!(claimed.len(), 1, "the claim was written");
            assert_eq!(claimed[0].status, S::PendingPayment);
            let r = settled(&store, 1).await;
            assert_eq!(r.status, expected, "{behaviour:?}");
            assert_eq!(payments.calls(), 1);
        }
    }

    /// No more than the limit run at once: one over it is refused before
    /// it claims anything, and `drained` waits for those running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reserve_calls_in_flight_are_bounded_and_drained() {
        let payments = FakePayments::default();
        let sagas = Sagas::new(1);
        let (rpc, store) = rpc(&payments, sagas.clone()).await;
        let first =
            tokio::time::timeout(Duration::from_millis(100), rpc.reserve_parking(request(1)));
        assert!(first.await.is_err(), "abandoned while paying");
        assert_eq!(sagas.running(), 1);
        let refused = rpc.reserve_parking(request(2)).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable);
        assert_eq!(
            refused.get_details_error_info().unwrap().reason,
            reasons::OVERLOADED
        );
        assert!(refused.get_details_retry_info().is_some());
        assert_eq!(store.all().len(), 1, "the refused call claimed nothing");
        tokio::time::timeout(Duration::from_secs(5), sagas.drained())
            .await
            .expect("drained once the running call ended");
        assert_eq!(sagas.running(), 0);
        assert_eq!(settled(&store, 1).await.status, S::Reserved);
        // Room again.
        let r = rpc.reserve_parking(request(2)).await.unwrap();
        assert_eq!(
            r.into_inner().reservation.unwrap().status,
            pb::ReservationStatus::Reserved as i32
        );
    }
}
