//! The rental service: its store (devices, rentals, outbox), the rental use
//! cases asking reservation's replicas before every hand-over, the RPC server
//! and the consumer of roaming reservations (accept, cancel).

use std::sync::Arc;

use adapters_bus::{Delivery, HandleError, Handler};
use adapters_codec::{Lifecycle, to_roaming_reservation};
use adapters_grpc::clients::GrpcReservationAuthority;
use adapters_grpc::rental::RentalRpc;
use adapters_store::migrations::RentalMigrator;
use adapters_store::rental::RentalStore;
use domain_kernel::{SystemClock, UuidV7};
use domain_rental::RentalService;
use futures::future::BoxFuture;
use proto::rental::rental_service_server::RentalServiceServer;
use proto::service_names;

use crate::auth::MeshAuth;
use crate::bus::Bus;
use crate::host::{Host, MAX_MESSAGE_BYTES, Running, call_policy, inbound};
use crate::settings::Settings;

pub type Rentals = RentalService<RentalStore, GrpcReservationAuthority, SystemClock, UuidV7>;

/// Starts the rental service. `reservation_addrs` are reservation's replicas,
/// asked before every hand-over (`BeginUse`).
pub async fn start(
    settings: &Settings,
    auth: &MeshAuth,
    bus: &Bus,
    reservation_addrs: &[String],
) -> anyhow::Result<(Running, Arc<Rentals>)> {
    crate::plan::check_call("rental", reservation_addrs)?;
    let own = &settings.rental;
    let mut host = Host::open::<RentalMigrator>(
        settings,
        "rental",
        service_names::RENTAL,
        own.listen,
        own.database_url.as_ref(),
        bus,
    )
    .await?;
    let reservations = GrpcReservationAuthority::new(
        crate::host::upstream(
            settings,
            "rental",
            "reservation",
            service_names::RESERVATION,
            reservation_addrs,
        )?,
        call_policy(settings),
        auth.service_token("rental")?,
    );
    let service = Arc::new(RentalService::new(
        RentalStore::new(host.db().clone()),
        reservations,
        SystemClock,
        UuidV7,
    ));
    host.consume(
        "rental",
        &["ROAMING_RESERVATION"],
        RentalEvents(Arc::clone(&service)),
    );
    let router = host.router(auth, &settings.server_options())?.add_service(
        RentalServiceServer::new(RentalRpc::new(Arc::clone(&service)))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    Ok((
        host.serve(router, settings.connection_limits()).await,
        service,
    ))
}

/// Roaming reservations into the rental service (poison and transient
/// failures as for every consumer, see [`crate::reservation::ReservationEvents`]).
#[derive(Debug)]
pub struct RentalEvents(pub Arc<Rentals>);

impl Handler for RentalEvents {
    fn handle<'a>(&'a self, d: Delivery<'a>) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            match to_roaming_reservation(inbound(&d)).map_err(HandleError::poison)? {
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
