//! The view service: its store (views, the lot of every space, inbox), the
//! view's use-case service (which holds the read policy), the RPC server and
//! the consumer of every context's events.

use adapters_bus::{Delivery, HandleError, Handler};
use adapters_codec::{to_space_lot, to_view_event};
use adapters_grpc::view::ViewRpc;
use adapters_store::migrations::ViewMigrator;
use adapters_store::view::ViewStore;
use domain_view::ViewService;
use futures::future::BoxFuture;
use proto::service_names;
use proto::view::view_service_server::ViewServiceServer;

use crate::auth::MeshAuth;
use crate::bus::Bus;
use crate::host::{Host, MAX_MESSAGE_BYTES, Running, inbound};
use crate::settings::Settings;

pub type Views = ViewService<ViewStore>;

/// The durable of a view database the service built itself.
pub const DURABLE: &str = "view";

/// The streams the view reads.
pub const STREAMS: [&str; 4] = [
    "ROAMING_RESERVATION",
    "ROAMING_PAYMENT",
    "ROAMING_RENTAL",
    "ROAMING_PARKING",
];

/// Starts the view service.
pub async fn start(
    settings: &Settings,
    auth: &MeshAuth,
    bus: &Bus,
) -> anyhow::Result<(Running, Views)> {
    let own = &settings.view;
    let mut host = Host::open::<ViewMigrator>(
        settings,
        "view",
        service_names::VIEW,
        own.listen,
        own.database_url.as_ref(),
        bus,
    )
    .await?;
    let store = ViewStore::new(host.db().clone());
    // A rebuilt database goes on with the durable its rebuild created
    // (`crate::rebuild`); one the service built itself, with `view`.
    let durable = store
        .rebuilt_durable()
        .await
        .map_err(|e| anyhow::anyhow!("reading the view database's durable: {e}"))?
        .unwrap_or_else(|| DURABLE.to_owned());
    tracing::info!(%durable, "the view consumes with this durable");
    let service = ViewService::new(store);
    host.consume(&durable, &STREAMS, ViewEvents(service.clone()));
    let router = host.router(auth, &settings.server_options())?.add_service(
        ViewServiceServer::new(ViewRpc::new(service.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    Ok((
        host.serve(router, settings.connection_limits()).await,
        service,
    ))
}

/// Everything about reservations into the view, and the lot of every space
/// (poison and transient failures as for every consumer, see
/// [`crate::reservation::ReservationEvents`]).
#[derive(Debug)]
pub struct ViewEvents(pub Views);

impl Handler for ViewEvents {
    fn handle<'a>(&'a self, d: Delivery<'a>) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            if let Some(space) = to_space_lot(inbound(&d)).map_err(HandleError::poison)? {
                return self
                    .0
                    .record_space(&space)
                    .await
                    .map_err(HandleError::transient);
            }
            match to_view_event(inbound(&d)).map_err(HandleError::poison)? {
                Some(e) => self
                    .0
                    .apply(&e)
                    .await
                    .map(drop)
                    .map_err(HandleError::transient),
                None => Ok(()),
            }
        })
    }
}
