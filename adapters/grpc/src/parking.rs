//! `roaming.parking.v1.ParkingService` over the domain's use cases.

use proto::reasons;
use std::sync::Arc;

use adapters_codec::{instant_to_pb, money_field, money_to_pb};
use domain_kernel::{Clock, IdGenerator, LotCode, SessionId, SpaceId, VehiclePlate};
use domain_parking::ports::{ParkingRepository, ReservationReplica, ReservationVerifier};
use domain_parking::{
    DenialReason, ParkingError, ParkingService, Session, SessionStatus, Space, Verification,
};
use proto::parking as pb;
use proto::parking::parking_service_server::ParkingService as Rpc;
use tonic::{Code, Request, Response, Status};

use crate::fields;
use crate::identity::principal;
use crate::status::{busy, forbidden, invalid, not_found, reason, store, store_write};

/// The gRPC face of [`ParkingService`].
#[derive(Debug)]
pub struct ParkingRpc<R, V, P, K, I> {
    service: Arc<ParkingService<R, V, P, K, I>>,
}

impl<R, V, P, K, I> ParkingRpc<R, V, P, K, I> {
    pub fn new(service: Arc<ParkingService<R, V, P, K, I>>) -> Self {
        Self { service }
    }
}

fn space_to_pb(s: &Space) -> pb::Space {
    pb::Space {
        space_id: s.space_id.to_string(),
        lot: s.lot.to_string(),
        floor: s.floor.clone(),
        number: i32::try_from(s.number).unwrap_or(i32::MAX),
        hourly_rate: Some(money_to_pb(s.hourly_rate)),
    }
}

fn verification_pb(v: Verification) -> i32 {
    match v {
        Verification::Online => pb::EntryVerification::Online as i32,
        Verification::Replica => pb::EntryVerification::Replica as i32,
    }
}

/// The wire form of a session's status (also the view's `session_status`).
pub(crate) fn session_status_to_pb(s: SessionStatus) -> pb::SessionStatus {
    match s {
        SessionStatus::Started => pb::SessionStatus::Started,
        SessionStatus::Ended => pb::SessionStatus::Ended,
    }
}

fn session_to_pb(s: &Session) -> pb::Session {
    pb::Session {
        session_id: s.session_id.to_string(),
        space_id: s.space_id.to_string(),
        vehicle_plate: s.vehicle_plate.to_string(),
        reservation_id: s.reservation_id.to_string(),
        status: session_status_to_pb(s.status) as i32,
        verification: verification_pb(s.verification),
        entered_at: Some(instant_to_pb(s.entered_at)),
        exited_at: s.exited_at.map(instant_to_pb),
    }
}

/// [`parking_error`] for a call that changes nothing: an unavailable store is
/// safe to retry (`STORE_UNAVAILABLE`), not of unknown outcome.
fn parking_read_error(e: ParkingError) -> Status {
    match e {
        ParkingError::Store(e) => store(&e),
        other => parking_error(other),
    }
}

pub(crate) fn parking_error(e: ParkingError) -> Status {
    match e {
        ParkingError::Forbidden => forbidden(),
        ParkingError::SpaceNotFound(s) => reason(
            Code::NotFound,
            reasons::SPACE_NOT_FOUND,
            format!("parking space {s} not found"),
            &[],
        ),
        ParkingError::SpaceExists(s) => reason(
            Code::AlreadyExists,
            reasons::SPACE_EXISTS,
            format!("parking space {s} is already registered"),
            &[],
        ),
        ParkingError::SessionNotFound => not_found("parking session"),
        ParkingError::EntryDenied {
            reason: why,
            verification,
        } => {
            let mut md = vec![];
            if let Some(v) = verification {
                md.push(("verification", v.as_str().to_owned()));
            }
            match why {
                DenialReason::NotReserved => reason(
                    Code::PermissionDenied,
                    reasons::NOT_RESERVED,
                    "no reservation for this space and plate now",
                    &md,
                ),
                DenialReason::SpaceOccupied => reason(
                    Code::FailedPrecondition,
                    reasons::SPACE_OCCUPIED,
                    "another car is in this space",
                    &md,
                ),
            }
        }
        ParkingError::Busy => busy("try again"),
        ParkingError::Store(e) => store_write(&e),
    }
}

fn gate_request(space_id: &str, plate: &str) -> Result<(SpaceId, VehiclePlate), Status> {
    fields::all(|v| {
        let space = v.check("space_id", SpaceId::parse(space_id));
        let plate = v.check("vehicle_plate", VehiclePlate::parse(plate));
        Some((space?, plate?))
    })
}

#[tonic::async_trait]
impl<R, V, P, K, I> Rpc for ParkingRpc<R, V, P, K, I>
where
    R: ParkingRepository + 'static,
    V: ReservationVerifier + 'static,
    P: ReservationReplica + 'static,
    K: Clock + 'static,
    I: IdGenerator + 'static,
{
    async fn register_space(
        &self,
        request: Request<pb::RegisterSpaceRequest>,
    ) -> Result<Response<pb::RegisterSpaceResponse>, Status> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let rate = money_field("hourly_rate", r.hourly_rate.as_ref());
        let space =
            Space::parse(&r.space_id, &r.lot, &r.floor, r.number, rate).map_err(|v| invalid(&v))?;
        let space = self
            .service
            .register_space(&who, space)
            .await
            .map_err(parking_error)?;
        Ok(Response::new(pb::RegisterSpaceResponse {
            space: Some(space_to_pb(&space)),
        }))
    }

    async fn list_spaces(
        &self,
        request: Request<pb::ListSpacesRequest>,
    ) -> Result<Response<pb::ListSpacesResponse>, Status> {
        let _who = principal(&request)?;
        let lot = fields::one(
            "lot",
            fields::optional(request.get_ref().lot.trim(), LotCode::parse),
        )?;
        let spaces = self
            .service
            .list_spaces(lot)
            .await
            .map_err(parking_read_error)?;
        Ok(Response::new(pb::ListSpacesResponse {
            spaces: spaces.iter().map(space_to_pb).collect(),
        }))
    }

    async fn enter(
        &self,
        request: Request<pb::EnterRequest>,
    ) -> Result<Response<pb::EnterResponse>, Status> {
        let who = principal(&request)?;
        let (space, plate) = gate_request(
            &request.get_ref().space_id,
            &request.get_ref().vehicle_plate,
        )?;
        let session = self
            .service
            .enter(&who, space, plate)
            .await
            .map_err(parking_error)?;
        crate::record_reservation(&session.reservation_id);
        Ok(Response::new(pb::EnterResponse {
            session: Some(session_to_pb(&session)),
        }))
    }

    async fn exit(
        &self,
        request: Request<pb::ExitRequest>,
    ) -> Result<Response<pb::ExitResponse>, Status> {
        let who = principal(&request)?;
        let (space, plate) = gate_request(
            &request.get_ref().space_id,
            &request.get_ref().vehicle_plate,
        )?;
        let session = self
            .service
            .exit(&who, space, plate)
            .await
            .map_err(parking_error)?;
        crate::record_reservation(&session.reservation_id);
        Ok(Response::new(pb::ExitResponse {
            session: Some(session_to_pb(&session)),
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let who = principal(&request)?;
        let id = fields::one(
            "session_id",
            SessionId::parse(&request.get_ref().session_id),
        )?;
        let session = self
            .service
            .get_session(&who, id)
            .await
            .map_err(parking_read_error)?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(session_to_pb(&session)),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use domain_kernel::{Money, Principal, SystemClock, UuidV7};
    use domain_parking::fakes::{FakeVerifier, InMemoryParking};
    use tonic_types::StatusExt as _;

    use super::*;

    type Under = ParkingRpc<InMemoryParking, FakeVerifier, InMemoryParking, SystemClock, UuidV7>;

    fn rpc() -> (Under, InMemoryParking) {
        let store = InMemoryParking::default();
        let service = ParkingService::new(
            store.clone(),
            FakeVerifier::default(),
            store.clone(),
            SystemClock,
            UuidV7,
        );
        (ParkingRpc::new(Arc::new(service)), store)
    }

    fn register(minor_units: i64) -> Request<pb::RegisterSpaceRequest> {
        let mut r = Request::new(pb::RegisterSpaceRequest {
            space_id: "P1-B1-001".into(),
            lot: "P1".into(),
            floor: "B1".into(),
            number: 1,
            hourly_rate: Some(proto::common::Money {
                currency_code: "KRW".into(),
                minor_units,
            }),
        });
        r.extensions_mut().insert(Principal::operator("ops"));
        r
    }

    /// The field violations of an `INVALID_ARGUMENT`, as `(field, description)`.
    fn violations(status: &Status) -> Vec<(String, String)> {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| (v.field, v.description))
            .collect()
    }

    /// Issue: `RegisterSpace` took an hourly rate of `i64::MAX`, which a
    /// quote then multiplied by hours.
    #[tokio::test]
    async fn an_hourly_rate_over_the_ceiling_is_an_invalid_argument() {
        let (rpc, store) = rpc();
        let huge = rpc.register_space(register(i64::MAX)).await.unwrap_err();
        assert_eq!(
            violations(&huge),
            [(
                "hourly_rate.minor_units".to_owned(),
                "must be at most 1000000000000".to_owned()
            )]
        );
        let over = rpc
            .register_space(register(Money::MAX_RATE_MINOR_UNITS + 1))
            .await
            .unwrap_err();
        assert_eq!(
            violations(&over),
            [(
                "hourly_rate.minor_units".to_owned(),
                "a rate must be at most 100000000 per hour or day".to_owned()
            )]
        );
        let missing = {
            let mut r = register(1);
            r.get_mut().hourly_rate = None;
            rpc.register_space(r).await.unwrap_err()
        };
        assert_eq!(
            violations(&missing),
            [("hourly_rate".to_owned(), "is required".to_owned())]
        );
        assert!(store.outbox().is_empty(), "nothing was registered");

        let at_ceiling = rpc
            .register_space(register(Money::MAX_RATE_MINOR_UNITS))
            .await
            .unwrap()
            .into_inner();
        let rate = at_ceiling.space.unwrap().hourly_rate.unwrap();
        assert_eq!(rate.minor_units, 100_000_000);
        assert_eq!(store.outbox().len(), 1);
    }
}
