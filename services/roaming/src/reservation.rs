//! The reservation service: its store (reservations, catalog, outbox), the
//! reservation use cases, paying through payment's replicas, the RPC server
//! (whose reserve calls run to their end even when their callers go away),
//! the consumer of rental and parking events, the stale-claim sweeper, and the
//! chaos suite's fault knob (abort between capture and commit).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use adapters_bus::{Delivery, HandleError, Handler};
use adapters_codec::{ReservationInput, to_reservation_input};
use adapters_grpc::clients::GrpcPaymentGateway;
use adapters_grpc::reservation::{ReservationRpc, Sagas};
use adapters_store::migrations::ReservationMigrator;
use adapters_store::reservation::ReservationStore;
use domain_kernel::{CardDetails, Money, ReservationId, SystemClock, UuidV7};
use domain_reservation::ReservationService;
use domain_reservation::ports::{PaymentGateway, PaymentOutcome, PaymentUnavailable};
use futures::future::BoxFuture;
use proto::reservation::reservation_service_server::ReservationServiceServer;
use proto::service_names;
use tracing::{error, warn};

use crate::auth::MeshAuth;
use crate::bus::Bus;
use crate::host::{Host, MAX_MESSAGE_BYTES, Running, call_policy, inbound};
use crate::settings::Settings;

pub type Reservations = ReservationService<
    ReservationStore,
    ReservationStore,
    CrashAfterPay<GrpcPaymentGateway>,
    SystemClock,
    UuidV7,
>;

/// How often claims whose reserve call died are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Starts the reservation service. `payment_addrs` are payment's replicas.
pub async fn start(
    settings: &Settings,
    auth: &MeshAuth,
    bus: &Bus,
    payment_addrs: &[String],
) -> anyhow::Result<(Running, Arc<Reservations>)> {
    crate::plan::check_call("reservation", payment_addrs)?;
    let own = &settings.reservation;
    let mut host = Host::open::<ReservationMigrator>(
        settings,
        "reservation",
        service_names::RESERVATION,
        own.listen,
        own.database_url.as_ref(),
        bus,
    )
    .await?;
    let store = ReservationStore::new(host.db().clone());
    crate::seed::ensure_price_list(&store).await?;
    let payments = GrpcPaymentGateway::new(
        crate::host::upstream(
            settings,
            "reservation",
            "payment",
            service_names::PAYMENT,
            payment_addrs,
        )?,
        call_policy(settings),
        auth.service_token("reservation")?,
    );
    let payments = CrashAfterPay::new(payments, settings.reservation_fault_crash_after_pay);
    let service = Arc::new(
        ReservationService::new(store.clone(), store, payments, SystemClock, UuidV7)
            .with_pending_ttl(time::Duration::milliseconds(
                i64::try_from(settings.pending_ttl_ms).unwrap_or(i64::MAX),
            ))
            .with_max_pending_per_customer(settings.pending_claims_per_customer),
    );
    host.consume(
        "reservation",
        &["ROAMING_RENTAL", "ROAMING_PARKING"],
        ReservationEvents(Arc::clone(&service)),
    );
    // Claims whose reserve call died are rejected (and any capture voided).
    let sweeper = Arc::clone(&service);
    host.every(SWEEP_EVERY, move || {
        let sweeper = Arc::clone(&sweeper);
        async move {
            if let Err(e) = sweeper.reject_stale_pending().await {
                warn!(error = %e, "sweeping stale claims failed");
            }
        }
    });
    // Reserve calls run to their end whatever their callers do; a stop
    // waits for those still running (their callers may be gone), so no
    // claim is left to the sweeper by a graceful stop.
    let sagas = Sagas::default();
    let running = sagas.clone();
    host.spawn(move |stop| async move {
        stop.await;
        running.drained().await;
    });
    let router = host.router(auth, &settings.server_options())?.add_service(
        ReservationServiceServer::new(ReservationRpc::new(Arc::clone(&service)).with_sagas(sagas))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    Ok((
        host.serve(router, settings.connection_limits()).await,
        service,
    ))
}

/// Rental and parking events into the reservation service. A message that
/// does not decode is poison (retried up to `max_deliver`, then
/// dead-lettered); a storage failure is transient and retried until it
/// succeeds. The use case records the event id in the inbox in the effect's
/// transaction.
#[derive(Debug)]
pub struct ReservationEvents(pub Arc<Reservations>);

impl Handler for ReservationEvents {
    fn handle<'a>(&'a self, d: Delivery<'a>) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            match to_reservation_input(inbound(&d)).map_err(HandleError::poison)? {
                Some(ReservationInput::Usage(e)) => self
                    .0
                    .handle_usage(&e)
                    .await
                    .map(drop)
                    .map_err(HandleError::transient),
                Some(ReservationInput::Catalog(e)) => self
                    .0
                    .handle_catalog(&e)
                    .await
                    .map(drop)
                    .map_err(HandleError::transient),
                None => Ok(()),
            }
        })
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
        reservation_id: ReservationId,
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
