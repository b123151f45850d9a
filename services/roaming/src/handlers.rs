//! Event consumers: decode (a message that does not decode is poison: retried
//! up to `max_deliver`, then dead-lettered), apply through the domain use case
//! (which records the event id in the inbox in the effect's transaction; a
//! storage failure is transient and retried until it succeeds).

use std::sync::Arc;

use adapters_bus::{Delivery, HandleError, Handler};
use adapters_codec::{
    Inbound, Lifecycle, PaymentInput, ReservationInput, to_closed_reservation,
    to_parking_reservation, to_reservation_input, to_roaming_reservation, to_space_lot,
    to_view_event,
};
use adapters_store::view::ViewStore;
use futures::future::BoxFuture;
use tracing::Instrument;

use crate::apps::{Parkings, Payments, Rentals, Reservations};

/// Runs `H` inside an `event.handle` span, the child of the span that
/// published the event (its trace context travels in the event's headers).
pub struct Traced<H: ?Sized> {
    pub consumer: &'static str,
    pub inner: Arc<H>,
}

impl<H: ?Sized> std::fmt::Debug for Traced<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traced")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl<H: Handler + ?Sized> Handler for Traced<H> {
    fn handle<'a>(&'a self, d: Delivery<'a>) -> BoxFuture<'a, Result<(), HandleError>> {
        let span = tracing::info_span!(
            "event.handle",
            otel.name = %d.subject,
            otel.kind = "consumer",
            consumer = self.consumer,
            messaging.destination = %d.subject,
            attempt = d.attempt,
            reservation_id = tracing::field::Empty,
        );
        if let Some(id) = adapters_codec::reservation_of(d.subject, d.payload) {
            span.record("reservation_id", id.as_str());
        }
        adapters_telemetry::set_parent_from_pairs(&span, d.headers);
        if d.attempt > 1 {
            adapters_telemetry::metrics::redelivered(self.consumer);
        }
        Box::pin(self.inner.handle(d).instrument(span))
    }
}

fn inbound<'a>(d: &Delivery<'a>) -> Inbound<'a> {
    Inbound {
        subject: d.subject,
        payload: d.payload,
    }
}

/// Rental and parking events into the reservation service.
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

/// Rejected and canceled reservations into the payment service.
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

/// Roaming reservations into the rental service.
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

/// Parking reservations into the parking replica.
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

/// Everything about reservations into the view, and the lot of every space.
#[derive(Debug)]
pub struct ViewEvents(pub ViewStore);

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
