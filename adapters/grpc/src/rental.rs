//! `roaming.rental.v1.RentalService` over the domain's use cases.

use proto::reasons;
use std::sync::Arc;

use adapters_codec::instant_to_pb;
use domain_kernel::{
    BoothCode, Clock, DateRange, DeviceModel, IdGenerator, ReservationId, Serial, Violations,
};
use domain_rental::ports::{RentalRepository, ReservationAuthority};
use domain_rental::{Device, DeviceStatus, Rental, RentalError, RentalService, RentalStatus, Rule};
use proto::rental as pb;
use proto::rental::rental_service_server::RentalService as Rpc;
use tonic::{Code, Request, Response, Status};

use crate::fields::{self, optional};
use crate::identity::principal;
use crate::status::{busy, forbidden, invalid, not_found, reason, retry_later, store, store_write};

/// The reservation a rental is for. (Unlike the other services, rental does
/// not name it on the RPC span.)
fn reservation_id(raw: &str) -> Result<ReservationId, Status> {
    fields::one("reservation_id", ReservationId::parse(raw))
}

/// The gRPC face of [`RentalService`].
#[derive(Debug)]
pub struct RentalRpc<R, A, K, I> {
    service: Arc<RentalService<R, A, K, I>>,
}

impl<R, A, K, I> RentalRpc<R, A, K, I> {
    pub fn new(service: Arc<RentalService<R, A, K, I>>) -> Self {
        Self { service }
    }
}

fn device_to_pb(d: &Device) -> pb::Device {
    pb::Device {
        serial: d.serial.to_string(),
        device_model: d.device_model.to_string(),
        booth: d.booth.to_string(),
        status: match d.status {
            DeviceStatus::InStock => pb::DeviceStatus::InStock,
            DeviceStatus::Rented => pb::DeviceStatus::Rented,
            DeviceStatus::AwaitingRetrieval => pb::DeviceStatus::AwaitingRetrieval,
        } as i32,
    }
}

/// The wire form of a rental's status (also the view's `rental_status`).
pub(crate) fn rental_status_to_pb(s: RentalStatus) -> pb::RentalStatus {
    match s {
        RentalStatus::Accepted => pb::RentalStatus::Accepted,
        RentalStatus::HandedOver => pb::RentalStatus::HandedOver,
        RentalStatus::Returned => pb::RentalStatus::Returned,
        RentalStatus::Retrieved => pb::RentalStatus::Retrieved,
        RentalStatus::Canceled => pb::RentalStatus::Canceled,
    }
}

fn rental_to_pb(r: &Rental) -> pb::Rental {
    pb::Rental {
        reservation_id: r.reservation_id.to_string(),
        customer_id: r.customer_id.to_string(),
        device_model: r.device_model.to_string(),
        country: r.country.to_string(),
        pickup_booth: r.pickup_booth.to_string(),
        return_booth: r.return_booth.to_string(),
        start_date: DateRange::format_date(r.dates.start()),
        end_date: DateRange::format_date(r.dates.end()),
        status: rental_status_to_pb(r.status) as i32,
        serial: r
            .serial
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        returned_at_booth: r
            .returned_at_booth
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        created_at: Some(instant_to_pb(r.created_at)),
        updated_at: Some(instant_to_pb(r.updated_at)),
    }
}

/// [`rental_error`] for a call that changes nothing: an unavailable store is
/// safe to retry (`STORE_UNAVAILABLE`), not of unknown outcome.
fn rental_read_error(e: RentalError) -> Status {
    match e {
        RentalError::Store(e) => store(&e),
        other => rental_error(other),
    }
}

pub(crate) fn rental_error(e: RentalError) -> Status {
    match e {
        RentalError::Forbidden => forbidden(),
        RentalError::NotFound => not_found("rental"),
        RentalError::DeviceNotFound(s) => reason(
            Code::NotFound,
            reasons::DEVICE_NOT_FOUND,
            format!("device {s} not found"),
            &[],
        ),
        RentalError::DeviceExists(s) => reason(
            Code::AlreadyExists,
            reasons::DEVICE_EXISTS,
            format!("device {s} is already registered"),
            &[],
        ),
        RentalError::UnknownModel(m) => invalid(&Violations::one(
            "device_model",
            format!("{m} is not in the catalog (ReservationService/ListDeviceOffers)"),
        )),
        RentalError::Refused(rule) => {
            let why = match &rule {
                Rule::WrongStatus { .. } => reasons::WRONG_STATUS,
                Rule::OutsidePeriod { .. } => reasons::OUTSIDE_PERIOD,
                Rule::WrongModel { .. } => reasons::WRONG_MODEL,
                Rule::NotInStock { .. } => reasons::NOT_IN_STOCK,
            };
            reason(Code::FailedPrecondition, why, rule.to_string(), &[])
        }
        RentalError::Busy => busy("try again"),
        RentalError::ReservationCanceled => reason(
            Code::FailedPrecondition,
            reasons::RESERVATION_CANCELED,
            "the reservation was canceled; keep the device",
            &[],
        ),
        RentalError::ReservationNotReserved => reason(
            Code::FailedPrecondition,
            reasons::NOT_RESERVED,
            "the reservation service does not hold this reservation as reserved",
            &[],
        ),
        RentalError::ReservationUnavailable { retry_after } => retry_later(
            Code::Unavailable,
            reasons::RESERVATION_UNAVAILABLE,
            "the reservation service cannot confirm the hand-over now; keep the device and try again",
            retry_after,
            &[],
        ),
        RentalError::Store(e) => store_write(&e),
    }
}

#[tonic::async_trait]
impl<R, A, K, I> Rpc for RentalRpc<R, A, K, I>
where
    R: RentalRepository + 'static,
    A: ReservationAuthority + 'static,
    K: Clock + 'static,
    I: IdGenerator + 'static,
{
    async fn register_device(
        &self,
        request: Request<pb::RegisterDeviceRequest>,
    ) -> Result<Response<pb::RegisterDeviceResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let (serial, model, booth) = fields::all(|v| {
            let serial = v.check("serial", Serial::parse(&r.serial));
            let model = v.check("device_model", DeviceModel::parse(&r.device_model));
            let booth = v.check("booth", BoothCode::parse(&r.booth));
            Some((serial?, model?, booth?))
        })?;
        let d = self
            .service
            .register_device(&who, serial, model, booth)
            .await
            .map_err(rental_error)?;
        Ok(Response::new(pb::RegisterDeviceResponse {
            device: Some(device_to_pb(&d)),
        }))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let (booth, model) = fields::all(|v| {
            let booth = v.check("booth", optional(&r.booth, BoothCode::parse));
            let model = v.check(
                "device_model",
                optional(&r.device_model, DeviceModel::parse),
            );
            Some((booth?, model?))
        })?;
        let devices = self
            .service
            .list_devices(&who, booth, model)
            .await
            .map_err(rental_read_error)?;
        Ok(Response::new(pb::ListDevicesResponse {
            devices: devices.iter().map(device_to_pb).collect(),
        }))
    }

    async fn list_booth_rentals(
        &self,
        request: Request<pb::ListBoothRentalsRequest>,
    ) -> Result<Response<pb::ListBoothRentalsResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let (booth, date) = fields::all(|v| {
            let booth = v.check("booth", BoothCode::parse(&r.booth));
            let date = v.check("date", optional(&r.date, DateRange::parse_date));
            Some((booth?, date?))
        })?;
        let rentals = self
            .service
            .list_booth_rentals(&who, booth, date)
            .await
            .map_err(rental_read_error)?;
        Ok(Response::new(pb::ListBoothRentalsResponse {
            rentals: rentals.iter().map(rental_to_pb).collect(),
        }))
    }

    async fn get_rental(
        &self,
        request: Request<pb::GetRentalRequest>,
    ) -> Result<Response<pb::GetRentalResponse>, Status> {
        let who = principal(&request)?;
        let id = reservation_id(&request.get_ref().reservation_id)?;
        let rental = self
            .service
            .get_rental(&who, id)
            .await
            .map_err(rental_read_error)?;
        Ok(Response::new(pb::GetRentalResponse {
            rental: Some(rental_to_pb(&rental)),
        }))
    }

    async fn hand_over_device(
        &self,
        request: Request<pb::HandOverDeviceRequest>,
    ) -> Result<Response<pb::HandOverDeviceResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let (id, serial) = fields::all(|v| {
            let id = v.check("reservation_id", ReservationId::parse(&r.reservation_id));
            let serial = v.check("serial", Serial::parse(&r.serial));
            Some((id?, serial?))
        })?;
        crate::record_reservation(&id);
        let rental = self
            .service
            .hand_over(&who, id, serial)
            .await
            .map_err(rental_error)?;
        Ok(Response::new(pb::HandOverDeviceResponse {
            rental: Some(rental_to_pb(&rental)),
        }))
    }

    async fn return_device(
        &self,
        request: Request<pb::ReturnDeviceRequest>,
    ) -> Result<Response<pb::ReturnDeviceResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let (id, booth) = fields::all(|v| {
            let id = v.check("reservation_id", ReservationId::parse(&r.reservation_id));
            let booth = v.check("booth", BoothCode::parse(&r.booth));
            Some((id?, booth?))
        })?;
        crate::record_reservation(&id);
        let rental = self
            .service
            .return_device(&who, id, booth)
            .await
            .map_err(rental_error)?;
        Ok(Response::new(pb::ReturnDeviceResponse {
            rental: Some(rental_to_pb(&rental)),
        }))
    }

    async fn retrieve_device(
        &self,
        request: Request<pb::RetrieveDeviceRequest>,
    ) -> Result<Response<pb::RetrieveDeviceResponse>, Status> {
        let who = principal(&request)?;
        let id = reservation_id(&request.get_ref().reservation_id)?;
        let rental = self
            .service
            .retrieve(&who, id)
            .await
            .map_err(rental_error)?;
        Ok(Response::new(pb::RetrieveDeviceResponse {
            rental: Some(rental_to_pb(&rental)),
        }))
    }
}
