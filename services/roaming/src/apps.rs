//! Building each service from settings: database, store, domain use cases, gRPC
//! server, outbox relay, event consumers and (reservation) the stale-claim sweeper.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use adapters_grpc::balance::Upstream;
use adapters_grpc::breaker::BreakerConfig;
use adapters_grpc::clients::{
    GrpcPaymentGateway, GrpcReservationAuthority, GrpcReservationVerifier,
};
use adapters_grpc::parking::ParkingRpc;
use adapters_grpc::payment::PaymentRpc;
use adapters_grpc::rental::RentalRpc;
use adapters_grpc::reservation::ReservationRpc;
use adapters_grpc::resilience::CallPolicy;
use adapters_grpc::view::ViewRpc;
use adapters_store::migrations::{
    ParkingMigrator, PaymentMigrator, RentalMigrator, ReservationMigrator, ViewMigrator,
};
use adapters_store::parking::ParkingStore;
use adapters_store::payment::PaymentStore;
use adapters_store::rental::RentalStore;
use adapters_store::reservation::ReservationStore;
use adapters_store::view::ViewStore;
use adapters_store::{Db, Relay, RelayConfig};
use domain_kernel::{CardDetails, Money, SystemClock, UuidV7};
use domain_parking::ParkingService;
use domain_payment::ports::{Acquirer, AcquirerUnavailable, Authorization};
use domain_payment::{PaymentService, SimulatedAcquirer};
use domain_rental::RentalService;
use domain_reservation::ReservationService;
use domain_reservation::ports::{PaymentGateway, PaymentOutcome, PaymentUnavailable};
use proto::parking::parking_service_server::ParkingServiceServer;
use proto::payment::payment_service_server::PaymentServiceServer;
use proto::rental::rental_service_server::RentalServiceServer;
use proto::reservation::reservation_service_server::ReservationServiceServer;
use proto::service_names;
use proto::view::view_service_server::ViewServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, warn};

use crate::auth::MeshAuth;
use crate::bus::Bus;
use crate::handlers::{ParkingEvents, PaymentEvents, RentalEvents, ReservationEvents, ViewEvents};
use crate::server::{Launch, MAX_MESSAGE_BYTES, Running, base_router, stopped};
use crate::settings::Settings;

pub type Reservations = ReservationService<
    ReservationStore,
    ReservationStore,
    CrashAfterPay<GrpcPaymentGateway>,
    SystemClock,
    UuidV7,
>;
pub type Payments = PaymentService<PaymentStore, FaultyAcquirer, SystemClock, UuidV7>;
pub type Rentals = RentalService<RentalStore, GrpcReservationAuthority, SystemClock, UuidV7>;
pub type Parkings =
    ParkingService<ParkingStore, GrpcReservationVerifier, ParkingStore, SystemClock, UuidV7>;

fn policy(settings: &Settings) -> CallPolicy {
    CallPolicy {
        deadline: settings.call_deadline(),
        breaker: BreakerConfig {
            cool_down: settings.breaker_cool_down(),
            ..BreakerConfig::default()
        },
        ..CallPolicy::default()
    }
}

struct Common {
    listener: TcpListener,
    db: Db,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

async fn common<M: adapters_store::migrations::MigratorTrait>(
    name: &str,
    listen: std::net::SocketAddr,
    url: &str,
    pool: u32,
    bus: &Bus,
) -> anyhow::Result<Common> {
    // Every event written in a traced call carries that call's trace context.
    adapters_store::outbox::set_header_hook(adapters_telemetry::current_trace_headers);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
    let db = Db::connect_pooled::<M>(url, pool)
        .await
        .map_err(|e| anyhow::anyhow!("database {url}: {e}"))?;
    let (stop, _) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let relay = Relay::new(
        db.clone(),
        bus.publisher(),
        RelayConfig {
            lease: name.to_owned(),
            ..RelayConfig::default()
        },
    );
    tasks.spawn(relay.run(stopped(stop.subscribe())));
    Ok(Common {
        listener,
        db,
        stop,
        tasks,
    })
}

fn subscribe(
    c: &mut Common,
    bus: &Bus,
    durable: &'static str,
    streams: &[&str],
    handler: Arc<dyn adapters_bus::Handler>,
) {
    let handler: Arc<dyn adapters_bus::Handler> = Arc::new(crate::handlers::Traced {
        consumer: durable,
        inner: handler,
    });
    for stream in streams {
        if let Some(task) = bus.subscribe(
            durable,
            stream,
            Arc::clone(&handler),
            stopped(c.stop.subscribe()),
        ) {
            c.tasks.spawn(task);
        }
    }
}

fn launch(
    name: &'static str,
    grpc_service: &'static str,
    c: Common,
    bus: &Bus,
    health: tonic_health::server::HealthReporter,
) -> Launch {
    Launch {
        name,
        grpc_service,
        listener: c.listener,
        db: c.db,
        bus: bus.clone(),
        stop: c.stop,
        tasks: c.tasks,
        health,
    }
}

/// The reservation service. `payment_addrs` are payment's replicas.
pub async fn start_reservation(
    settings: &Settings,
    auth: &MeshAuth,
    bus: &Bus,
    payment_addrs: &[String],
) -> anyhow::Result<(Running, Arc<Reservations>)> {
    let url = settings.database_url("reservation", settings.reservation.database_url.as_ref());
    let mut c = common::<ReservationMigrator>(
        "reservation",
        settings.reservation.listen,
        &url,
        settings.database_pool,
        bus,
    )
    .await?;
    let store = ReservationStore::new(c.db.clone());
    ensure_price_list(&store).await?;
    let payments = GrpcPaymentGateway::new(
        Upstream::new(service_names::PAYMENT, payment_addrs)?,
        policy(settings),
        auth.service_token("reservation")?,
    );
    let payments = CrashAfterPay::new(payments, settings.reservation_fault_crash_after_pay);
    let service = Arc::new(
        ReservationService::new(store.clone(), store, payments, SystemClock, UuidV7)
            .with_pending_ttl(time::Duration::milliseconds(
                i64::try_from(settings.pending_ttl_ms).unwrap_or(i64::MAX),
            )),
    );
    subscribe(
        &mut c,
        bus,
        "reservation",
        &["ROAMING_RENTAL", "ROAMING_PARKING"],
        Arc::new(ReservationEvents(Arc::clone(&service))),
    );
    // Claims whose reserve call died are rejected (and any capture voided).
    let sweeper = Arc::clone(&service);
    let mut stop = c.stop.subscribe();
    c.tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
            if let Err(e) = sweeper.reject_stale_pending().await {
                warn!(error = %e, "sweeping stale claims failed");
            }
        }
    });
    let (health, router) = base_router(
        "reservation",
        service_names::RESERVATION,
        auth.layer(),
        &settings.server_options(),
    )?;
    let rpc = ReservationRpc::new(Arc::clone(&service));
    let router = router.add_service(
        ReservationServiceServer::new(rpc).max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    Ok((
        launch("reservation", service_names::RESERVATION, c, bus, health)
            .serve(router, settings.connection_limits()),
        service,
    ))
}

/// The price list of DESIGN.md section 11, written when the catalog has none:
/// pricing belongs to the reservation service, not to the client.
async fn ensure_price_list(store: &ReservationStore) -> anyhow::Result<()> {
    use domain_kernel::{CountryCode, DeviceModel};
    use domain_reservation::ports::Catalog;
    use domain_reservation::pricing::DeviceOffer;
    let parse = |e: &dyn std::fmt::Display| anyhow::anyhow!("price list: {e}");
    for (model, rate, countries) in [
        ("egg-lte", 5_000, ["JP", "US", "CN", "VN", "TH"]),
        ("phone-5g", 9_000, ["JP", "US", "GB", "FR", "DE"]),
    ] {
        let device_model = DeviceModel::parse(model).map_err(|e| parse(&e))?;
        if store.device_offer(&device_model).await?.is_some() {
            continue;
        }
        let offer = DeviceOffer {
            device_model,
            daily_rate: Money::krw(rate).map_err(|e| parse(&e))?,
            countries: countries
                .iter()
                .map(|c| CountryCode::parse(c).map_err(|e| parse(&e)))
                .collect::<Result<_, _>>()?,
        };
        store.put_device_offer(&offer).await?;
    }
    Ok(())
}

/// The payment service.
pub async fn start_payment(
    settings: &Settings,
    auth: &MeshAuth,
    bus: &Bus,
) -> anyhow::Result<(Running, Arc<Payments>)> {
    let url = settings.database_url("payment", settings.payment.database_url.as_ref());
    let mut c = common::<PaymentMigrator>(
        "payment",
        settings.payment.listen,
        &url,
        settings.database_pool,
        bus,
    )
    .await?;
    let acquirer = FaultyAcquirer::new(
        settings.payment.fault_latency_ms,
        settings.payment.fault_failure_rate,
    );
    let service = Arc::new(PaymentService::new(
        PaymentStore::new(c.db.clone()),
        acquirer,
        SystemClock,
        UuidV7,
    ));
    subscribe(
        &mut c,
        bus,
        "payment",
        &["ROAMING_RESERVATION"],
        Arc::new(PaymentEvents(Arc::clone(&service))),
    );
    let (health, router) = base_router(
        "payment",
        service_names::PAYMENT,
        auth.layer(),
        &settings.server_options(),
    )?;
    let router = router.add_service(
        PaymentServiceServer::new(PaymentRpc::new(Arc::clone(&service)))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    Ok((
        launch("payment", service_names::PAYMENT, c, bus, health)
            .serve(router, settings.connection_limits()),
        service,
    ))
}

/// The rental service. `reservation_addrs` are reservation's replicas, asked
/// before every hand-over (`BeginUse`).
pub async fn start_rental(
    settings: &Settings,
    auth: &MeshAuth,
    bus: &Bus,
    reservation_addrs: &[String],
) -> anyhow::Result<(Running, Arc<Rentals>)> {
    anyhow::ensure!(
        !reservation_addrs.is_empty(),
        "rental asks the reservation service before every hand-over: set ROAMING_RESERVATION_ADDRS"
    );
    let url = settings.database_url("rental", settings.rental.database_url.as_ref());
    let mut c = common::<RentalMigrator>(
        "rental",
        settings.rental.listen,
        &url,
        settings.database_pool,
        bus,
    )
    .await?;
    let reservations = GrpcReservationAuthority::new(
        Upstream::new(service_names::RESERVATION, reservation_addrs)?,
        policy(settings),
        auth.service_token("rental")?,
    );
    let service = Arc::new(RentalService::new(
        RentalStore::new(c.db.clone()),
        reservations,
        SystemClock,
        UuidV7,
    ));
    subscribe(
        &mut c,
        bus,
        "rental",
        &["ROAMING_RESERVATION"],
        Arc::new(RentalEvents(Arc::clone(&service))),
    );
    let (health, router) = base_router(
        "rental",
        service_names::RENTAL,
        auth.layer(),
        &settings.server_options(),
    )?;
    let router = router.add_service(
        RentalServiceServer::new(RentalRpc::new(Arc::clone(&service)))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    Ok((
        launch("rental", service_names::RENTAL, c, bus, health)
            .serve(router, settings.connection_limits()),
        service,
    ))
}

/// The parking service. `reservation_addrs` are reservation's replicas.
pub async fn start_parking(
    settings: &Settings,
    auth: &MeshAuth,
    bus: &Bus,
    reservation_addrs: &[String],
) -> anyhow::Result<(Running, Arc<Parkings>)> {
    let url = settings.database_url("parking", settings.parking.database_url.as_ref());
    let mut c = common::<ParkingMigrator>(
        "parking",
        settings.parking.listen,
        &url,
        settings.database_pool,
        bus,
    )
    .await?;
    let store = ParkingStore::new(c.db.clone());
    let verifier = GrpcReservationVerifier::new(
        Upstream::new(service_names::RESERVATION, reservation_addrs)?,
        policy(settings),
        auth.service_token("parking")?,
    );
    let service = Arc::new(ParkingService::new(
        store.clone(),
        verifier,
        store,
        SystemClock,
        UuidV7,
    ));
    subscribe(
        &mut c,
        bus,
        "parking",
        &["ROAMING_RESERVATION"],
        Arc::new(ParkingEvents(Arc::clone(&service))),
    );
    let (health, router) = base_router(
        "parking",
        service_names::PARKING,
        auth.layer(),
        &settings.server_options(),
    )?;
    let router = router.add_service(
        ParkingServiceServer::new(ParkingRpc::new(Arc::clone(&service)))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    Ok((
        launch("parking", service_names::PARKING, c, bus, health)
            .serve(router, settings.connection_limits()),
        service,
    ))
}

/// The view service.
pub async fn start_view(
    settings: &Settings,
    auth: &MeshAuth,
    bus: &Bus,
) -> anyhow::Result<(Running, ViewStore)> {
    let url = settings.database_url("view", settings.view.database_url.as_ref());
    let mut c = common::<ViewMigrator>(
        "view",
        settings.view.listen,
        &url,
        settings.database_pool,
        bus,
    )
    .await?;
    let store = ViewStore::new(c.db.clone());
    subscribe(
        &mut c,
        bus,
        "view",
        &[
            "ROAMING_RESERVATION",
            "ROAMING_PAYMENT",
            "ROAMING_RENTAL",
            "ROAMING_PARKING",
        ],
        Arc::new(ViewEvents(store.clone())),
    );
    let (health, router) = base_router(
        "view",
        service_names::VIEW,
        auth.layer(),
        &settings.server_options(),
    )?;
    let router = router.add_service(
        ViewServiceServer::new(ViewRpc::new(store.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    Ok((
        launch("view", service_names::VIEW, c, bus, health)
            .serve(router, settings.connection_limits()),
        store,
    ))
}

/// The simulated card network with the fault knob of payment's settings:
/// added latency and a failure rate (answered as "acquirer unavailable", so the
/// caller sees `UNAVAILABLE`). Off by default; logged loudly when on.
#[derive(Debug)]
pub struct FaultyAcquirer {
    latency: Duration,
    failure_rate: f64,
    calls: AtomicU64,
}

impl FaultyAcquirer {
    pub fn new(latency_ms: u64, failure_rate: f64) -> Self {
        if latency_ms > 0 || failure_rate > 0.0 {
            error!(
                latency_ms,
                failure_rate,
                "PAYMENT FAULT INJECTION IS ON: payments are slowed down and/or failed on purpose"
            );
        }
        Self {
            latency: Duration::from_millis(latency_ms),
            failure_rate,
            calls: AtomicU64::new(0),
        }
    }
}

impl Acquirer for FaultyAcquirer {
    async fn authorize(
        &self,
        card: &CardDetails,
        amount: Money,
    ) -> Result<Authorization, AcquirerUnavailable> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        // Deterministic spread: call n fails when floor(n * rate) steps up.
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a rate in [0, 1]"
        )]
        let fails = ((n + 1) as f64 * self.failure_rate).floor() as u64
            > (n as f64 * self.failure_rate).floor() as u64;
        if fails {
            return Err(AcquirerUnavailable);
        }
        SimulatedAcquirer.authorize(card, amount).await
    }
}

/// The fault knob of reservation's settings for the chaos suite: the process
/// aborts right after the `n`th captured payment, before the reservation
/// commits it (the "killed between payment and commit" case: the sweeper of a
/// restarted process must reject the claim and have the capture voided). Off
/// (`n = 0`) by default; logged loudly when on.
#[derive(Debug)]
pub struct CrashAfterPay<P> {
    inner: P,
    after: u64,
    captured: AtomicU64,
}

impl<P> CrashAfterPay<P> {
    pub fn new(inner: P, after: u64) -> Self {
        if after > 0 {
            error!(
                after,
                "RESERVATION FAULT INJECTION IS ON: the process aborts after that many captured payments"
            );
        }
        Self {
            inner,
            after,
            captured: AtomicU64::new(0),
        }
    }
}

impl<P> std::ops::Deref for CrashAfterPay<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.inner
    }
}

impl<P: PaymentGateway> PaymentGateway for CrashAfterPay<P> {
    async fn pay(
        &self,
        reservation_id: domain_kernel::ReservationId,
        amount: Money,
        card: &CardDetails,
    ) -> Result<PaymentOutcome, PaymentUnavailable> {
        let outcome = self.inner.pay(reservation_id, amount, card).await;
        if self.after > 0
            && matches!(outcome, Ok(PaymentOutcome::Captured))
            && self.captured.fetch_add(1, Ordering::Relaxed) + 1 >= self.after
        {
            error!(%reservation_id, "fault injection: aborting between the capture and its commit");
            std::process::abort();
        }
        outcome
    }
}
