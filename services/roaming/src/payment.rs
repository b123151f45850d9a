//! The payment service: its store, the payment use cases over the simulated
//! card network (with the fault knob of payment's settings), the RPC server and
//! the consumer of rejected and canceled reservations (void, refund).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use adapters_bus::{Delivery, HandleError, Handler};
use adapters_codec::{PaymentInput, to_closed_reservation};
use adapters_grpc::payment::PaymentRpc;
use adapters_store::migrations::PaymentMigrator;
use adapters_store::payment::PaymentStore;
use domain_kernel::{CardDetails, Money, SystemClock, UuidV7};
use domain_payment::ports::{Acquirer, AcquirerUnavailable, Authorization};
use domain_payment::{PaymentService, SimulatedAcquirer};
use futures::future::BoxFuture;
use proto::payment::payment_service_server::PaymentServiceServer;
use proto::service_names;
use tracing::error;

use crate::auth::MeshAuth;
use crate::bus::Bus;
use crate::host::{Host, MAX_MESSAGE_BYTES, Running, inbound};
use crate::settings::Settings;

pub type Payments = PaymentService<PaymentStore, FaultyAcquirer, SystemClock, UuidV7>;

/// Starts the payment service.
pub async fn start(
    settings: &Settings,
    auth: &MeshAuth,
    bus: &Bus,
) -> anyhow::Result<(Running, Arc<Payments>)> {
    let own = &settings.payment;
    let mut host = Host::open::<PaymentMigrator>(
        settings,
        "payment",
        service_names::PAYMENT,
        own.listen,
        own.database_url.as_ref(),
        bus,
    )
    .await?;
    let acquirer = FaultyAcquirer::new(own.fault_latency_ms, own.fault_failure_rate);
    let service = Arc::new(PaymentService::new(
        PaymentStore::new(host.db().clone()),
        acquirer,
        SystemClock,
        UuidV7,
    ));
    host.consume(
        "payment",
        &["ROAMING_RESERVATION"],
        PaymentEvents(Arc::clone(&service)),
    );
    let router = host.router(auth, &settings.server_options())?.add_service(
        PaymentServiceServer::new(PaymentRpc::new(Arc::clone(&service)))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    );
    Ok((
        host.serve(router, settings.connection_limits()).await,
        service,
    ))
}

/// Rejected and canceled reservations into the payment service (poison and
/// transient failures as for every consumer, see [`crate::reservation::ReservationEvents`]).
#[derive(Debug)]
pub struct PaymentEvents(pub Arc<Payments>);

impl Handler for PaymentEvents {
    fn handle<'a>(&'a self, d: Delivery<'a>) -> BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            match to_closed_reservation(inbound(&d)).map_err(HandleError::poison)? {
                Some(PaymentInput::Rejected(e)) => self
                    .0
                    .handle_rejected(&e)
                    .await
                    .map(drop)
                    .map_err(HandleError::transient),
                Some(PaymentInput::Canceled(e)) => self
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
