//! In-memory fakes of the reservation ports, with the same atomicity as the real
//! adapters (one mutex around state, outbox and inbox).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain_kernel::{
    BoothCode, CardDetails, CustomerId, DeviceModel, EventId, Money, Recorded, RequestId,
    ReservationId, Serial, SpaceId, StoreError, Timestamp, VehiclePlate,
};
use time::Duration;

use crate::capacity;
use crate::ports::{
    Catalog, DeclineReason, DeviceLocation, InsertError, PaymentGateway, PaymentOutcome,
    PaymentUnavailable, ReservationRepository, SaveError,
};
use crate::pricing::{DeviceOffer, SpaceOffer};
use crate::reservation::ReservationEvent;
use crate::reservation::{Details, Reservation};

#[derive(Debug, Default)]
struct State {
    reservations: HashMap<ReservationId, Reservation>,
    outbox: Vec<Recorded<ReservationEvent>>,
    inbox: HashSet<EventId>,
    offers: HashMap<DeviceModel, DeviceOffer>,
    devices: HashMap<Serial, (DeviceLocation, Timestamp)>,
    spaces: HashMap<SpaceId, SpaceOffer>,
}

impl State {
    fn units(&self, details: &Details) -> u32 {
        match details {
            Details::Roaming(d) => {
                let n = self
                    .devices
                    .values()
                    .filter(|(at, _)| {
                        at.booth == d.pickup_booth && at.device_model == d.device_model
                    })
                    .count();
                u32::try_from(n).unwrap_or(u32::MAX)
            }
            Details::Parking(d) => u32::from(self.spaces.contains_key(&d.space_id)),
        }
    }
}

/// Reservations, outbox, inbox and catalog in memory; clones share state.
#[derive(Debug, Clone, Default)]
pub struct InMemoryReservations {
    state: Arc<Mutex<State>>,
}

impl InMemoryReservations {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every event written so far, in commit order.
    pub fn outbox(&self) -> Vec<Recorded<ReservationEvent>> {
        self.lock().outbox.clone()
    }

    pub fn all(&self) -> Vec<Reservation> {
        self.lock().reservations.values().cloned().collect()
    }

    /// Units of a model stocked at a booth.
    pub fn units_at(&self, booth: &BoothCode, model: &DeviceModel) -> usize {
        self.lock()
            .devices
            .values()
            .filter(|(at, _)| &at.booth == booth && &at.device_model == model)
            .count()
    }
}

impl ReservationRepository for InMemoryReservations {
    async fn insert_pending(
        &self,
        reservation: &Reservation,
        max_pending: u32,
    ) -> Result<(), InsertError> {
        let mut state = self.lock();
        let pending = state
            .reservations
            .values()
            .filter(|r| {
                r.customer_id == reservation.customer_id
                    && r.status == crate::Status::PendingPayment
            })
            .count();
        if !capacity::customer_may_claim(pending, max_pending) {
            return Err(InsertError::TooManyPending { limit: max_pending });
        }
        let duplicate = state.reservations.values().any(|r| {
            r.customer_id == reservation.customer_id
                && r.request_id == reservation.request_id
                && r.holds_request_id()
        });
        if duplicate {
            return Err(InsertError::DuplicateRequest);
        }
        let units = state.units(&reservation.details);
        let holdings = state
            .reservations
            .values()
            .filter(|r| r.status.is_holding())
            .map(|r| &r.details);
        if !capacity::admits(&reservation.details, units, holdings) {
            return Err(InsertError::SoldOut);
        }
        state
            .reservations
            .insert(reservation.id, reservation.clone());
        Ok(())
    }

    async fn save(
        &self,
        reservation: &mut Reservation,
        events: &[Recorded<ReservationEvent>],
        caused_by: Option<EventId>,
    ) -> Result<(), SaveError> {
        let mut state = self.lock();
        if let Some(id) = caused_by
            && state.inbox.contains(&id)
        {
            return Err(SaveError::AlreadyHandled);
        }
        let stored = state
            .reservations
            .get(&reservation.id)
            .ok_or_else(|| StoreError::msg("saving a reservation that was never inserted"))?;
        if stored.version != reservation.version {
            return Err(SaveError::Conflict);
        }
        reservation.bump_version();
        state
            .reservations
            .insert(reservation.id, reservation.clone());
        state.outbox.extend_from_slice(events);
        if let Some(id) = caused_by {
            state.inbox.insert(id);
        }
        Ok(())
    }

    async fn get(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        Ok(self.lock().reservations.get(&id).cloned())
    }

    async fn find_by_request(
        &self,
        customer: &CustomerId,
        request_id: &RequestId,
    ) -> Result<Option<Reservation>, StoreError> {
        Ok(self
            .lock()
            .reservations
            .values()
            .find(|r| {
                &r.customer_id == customer && &r.request_id == request_id && r.holds_request_id()
            })
            .cloned())
    }

    async fn find_parking(
        &self,
        space: &SpaceId,
        plate: &VehiclePlate,
    ) -> Result<Vec<Reservation>, StoreError> {
        Ok(self
            .lock()
            .reservations
            .values()
            .filter(|r| {
                r.status.is_holding()
                    && matches!(&r.details, Details::Parking(p) if &p.space_id == space && &p.vehicle_plate == plate)
            })
            .cloned()
            .collect())
    }

    async fn pending_before(&self, before: Timestamp) -> Result<Vec<Reservation>, StoreError> {
        Ok(self
            .lock()
            .reservations
            .values()
            .filter(|r| r.status == crate::Status::PendingPayment && r.created_at < before)
            .cloned()
            .collect())
    }
}

impl Catalog for InMemoryReservations {
    async fn device_offer(&self, model: &DeviceModel) -> Result<Option<DeviceOffer>, StoreError> {
        Ok(self.lock().offers.get(model).cloned())
    }

    async fn device_offers(&self) -> Result<Vec<DeviceOffer>, StoreError> {
        let mut offers: Vec<DeviceOffer> = self.lock().offers.values().cloned().collect();
        offers.sort_by(|a, b| a.device_model.cmp(&b.device_model));
        Ok(offers)
    }

    async fn space_offer(&self, space: &SpaceId) -> Result<Option<SpaceOffer>, StoreError> {
        Ok(self.lock().spaces.get(space).cloned())
    }

    async fn booth_exists(&self, booth: &BoothCode) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .devices
            .values()
            .any(|(at, _)| &at.booth == booth))
    }

    async fn put_device_offer(&self, offer: &DeviceOffer) -> Result<(), StoreError> {
        self.lock()
            .offers
            .insert(offer.device_model.clone(), offer.clone());
        Ok(())
    }

    async fn locate_device(
        &self,
        serial: &Serial,
        at: &DeviceLocation,
        as_of: Timestamp,
        caused_by: Option<EventId>,
    ) -> Result<(), SaveError> {
        let mut state = self.lock();
        if let Some(id) = caused_by
            && !state.inbox.insert(id)
        {
            return Err(SaveError::AlreadyHandled);
        }
        let newer = state
            .devices
            .get(serial)
            .is_none_or(|(_, known)| *known < as_of);
        if newer {
            state.devices.insert(serial.clone(), (at.clone(), as_of));
        }
        Ok(())
    }

    async fn put_space(
        &self,
        space: &SpaceOffer,
        caused_by: Option<EventId>,
    ) -> Result<(), SaveError> {
        let mut state = self.lock();
        if let Some(id) = caused_by
            && !state.inbox.insert(id)
        {
            return Err(SaveError::AlreadyHandled);
        }
        state.spaces.insert(space.space_id.clone(), space.clone());
        Ok(())
    }
}

/// What the fake payment service does with the next calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentBehaviour {
    Capture,
    Decline,
    /// Unreachable: nothing captured.
    Unavailable,
    /// Captures, then the answer is lost (a timeout after the fact).
    CaptureThenTimeout,
}

#[derive(Debug, Default)]
struct PaymentsState {
    captured: HashMap<ReservationId, Money>,
    calls: usize,
}

/// A scripted payment gateway that remembers what it captured.
#[derive(Debug, Clone)]
pub struct FakePayments {
    behaviour: Arc<Mutex<PaymentBehaviour>>,
    state: Arc<Mutex<PaymentsState>>,
}

impl Default for FakePayments {
    fn default() -> Self {
        Self {
            behaviour: Arc::new(Mutex::new(PaymentBehaviour::Capture)),
            state: Arc::default(),
        }
    }
}

impl FakePayments {
    pub fn set(&self, behaviour: PaymentBehaviour) {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    /// Amounts captured, by reservation.
    pub fn captured(&self) -> HashMap<ReservationId, Money> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .captured
            .clone()
    }

    pub fn calls(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .calls
    }
}

impl PaymentGateway for FakePayments {
    async fn pay(
        &self,
        reservation_id: ReservationId,
        amount: Money,
        _card: &CardDetails,
    ) -> Result<PaymentOutcome, PaymentUnavailable> {
        let behaviour = *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.calls += 1;
        let unavailable = PaymentUnavailable {
            retry_after: Duration::seconds(5),
        };
        match behaviour {
            PaymentBehaviour::Capture => {
                state.captured.insert(reservation_id, amount);
                Ok(PaymentOutcome::Captured)
            }
            PaymentBehaviour::Decline => Ok(PaymentOutcome::Declined(DeclineReason::CardDeclined)),
            PaymentBehaviour::Unavailable => Err(unavailable),
            PaymentBehaviour::CaptureThenTimeout => {
                state.captured.insert(reservation_id, amount);
                Err(unavailable)
            }
        }
    }
}
