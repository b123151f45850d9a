//! The parking service: its store (spaces, sessions, the replica of parking
//! reservations, outbox), the parking use cases checking with reservation's
//! replicas, the RPC server and the consumer of parking reservations.

use std::sync::Arc;

use adapters_bus::{Delivery, HandleError, Handler};
use adapters_codec::{Lifecycle, to_parking_reservation};
use adapters_grpc::clients::GrpcReservationVerifier;
use adapters_grpc::parking::ParkingRpc;
use adapters_store::migrations::ParkingMigrator;
use adapters_store::parking::ParkingStore;
use domain_kernel::{SystemClock, UuidV7};
use domain_parking::ParkingService;
use futures::future::BoxFuture;
use proto::parking::parking_service_server::ParkingServiceServer;
use proto::service_names;

use crate::auth::MeshAuth;
use crate::bus::Bus;
use crate::host::{Host, MAX_MESSAGE_BYTES, Running, call_policy, inbound};
use crate::settings::Settings;

pub type Parkings =
    ParkingService<ParkingStore, GrpcReservationVerifier, ParkingStore, SystemClock, UuidV7>;

/// Starts the parking service. `reservation_addrs` are reservation's replicas.
pub async fn start(
    settings: &Settings,
    auth: &MeshAuth,
    bus: &Bus,
    reservation_addrs: &[String],
) -> anyhow::Result<(Running, Arc<Parkings>)> {
    crate::plan::check_call("parking", reservation_addrs)?;
    let own = &settings.parking;
    let mut host = Host::open::<ParkingMigrator>(
        settings,
        "parking",
        service_names::PARKING,
        own.listen,
        own.database_url.as_ref(),
        bus,
    )
    .await?;
    let store = ParkingStore::new(host.db().clone());
    let verifier = GrpcReservationVerifier::new(
        crate::host::upstream(
            settings,
            "parking",
            "reservation",
            service_names::RESERVATION,
            reservation_addrs,
        )?,
        call_policy(settings),
        auth.service_token("parking")?,
    );
    let service = Arc::new(ParkingService::new(
        store.clone(),
        verifier,
        store,
        SystemClock,
        UuidV7,
    ));
    host.consume(
        "parking",
        &["ROAMING_RESERVATION"],
        ParkingEvents(Arc::clone(&service)),
    );
    let router = host.router(auth, &settings.server_options())?.add_service(
        ParkingServiceServer::new(ParkingRpc::new(Arc::clone(&service)))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    Ok((
        host.serve(router, settings.connection_limits()).await,
        service,
    ))
}

/// Parking reservations into the parking replica (poison and transient
/// failures as for every consumer, see [`crate::reservation::ReservationEvents`]).
#[derive(Debug)]
pub struct ParkingEvents(pub Arc<Parkings>);

impl Handler for ParkingEvents {
    fn handle<'a>(&'a self, d: Delivery<'a>) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            match to_parking_reservation(inbound(&d)).map_err(HandleError::poison)? {
                Some(Lifecycle::Reserved(e)) => self
                    .0
                    .handle_reserved(&e)
                    .await
                    .map(drop)
                    .map_err(HandleError::transient),
                Some(Lifecycle::Canceled(e)) => self
                    .0
                    .handle_canceled(&e)
                    .await
                    .map(drop)
                    .map_err(HandleError::transient),
                None => Ok(()),
            }
        })
    }
}
