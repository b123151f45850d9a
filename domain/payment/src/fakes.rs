//! In-memory fakes of the payment ports.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain_kernel::{CardDetails, EventId, Money, Recorded, ReservationId, StoreError};

use crate::payment::{Payment, PaymentEvent};
use crate::ports::{
    Acquirer, AcquirerUnavailable, Authorization, InsertError, PaymentRepository, SaveError,
};

#[derive(Debug, Default)]
struct State {
    payments: HashMap<ReservationId, Payment>,
    outbox: Vec<Recorded<PaymentEvent>>,
    inbox: HashSet<EventId>,
}

/// Payments, outbox and inbox in memory; clones share state.
#[derive(Debug, Clone, Default)]
pub struct InMemoryPayments {
    state: Arc<Mutex<State>>,
}

impl InMemoryPayments {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn outbox(&self) -> Vec<Recorded<PaymentEvent>> {
        self.lock().outbox.clone()
    }

    pub fn all(&self) -> Vec<Payment> {
        self.lock().payments.values().cloned().collect()
    }
}

impl PaymentRepository for InMemoryPayments {
    async fn get_by_reservation(
        &self,
        reservation_id: ReservationId,
    ) -> Result<Option<Payment>, StoreError> {
        Ok(self.lock().payments.get(&reservation_id).cloned())
    }

    async fn insert(
        &self,
        payment: &Payment,
        events: &[Recorded<PaymentEvent>],
        caused_by: Option<EventId>,
    ) -> Result<(), InsertError> {
        let mut state = self.lock();
        if caused_by.is_some_and(|id| state.inbox.contains(&id)) {
            return Err(InsertError::AlreadyHandled);
        }
        if state.payments.contains_key(&payment.reservation_id) {
            return Err(InsertError::Duplicate);
        }
        state
            .payments
            .insert(payment.reservation_id, payment.clone());
        state.outbox.extend_from_slice(events);
        state.inbox.extend(caused_by);
        Ok(())
    }

    async fn save(
        &self,
        payment: &mut Payment,
        events: &[Recorded<PaymentEvent>],
        caused_by: Option<EventId>,
    ) -> Result<(), SaveError> {
        let mut state = self.lock();
        if caused_by.is_some_and(|id| state.inbox.contains(&id)) {
            return Err(SaveError::AlreadyHandled);
        }
        let stored = state
            .payments
            .get(&payment.reservation_id)
            .ok_or_else(|| StoreError::msg("saving a payment that was never inserted"))?;
        if stored.version != payment.version {
            return Err(SaveError::Conflict);
        }
        payment.bump_version();
        state
            .payments
            .insert(payment.reservation_id, payment.clone());
        state.outbox.extend_from_slice(events);
        state.inbox.extend(caused_by);
        Ok(())
    }
}

/// An acquirer that is down.
#[derive(Debug, Clone, Copy, Default)]
pub struct DownAcquirer;

impl Acquirer for DownAcquirer {
    async fn authorize(
        &self,
        _card: &CardDetails,
        _amount: Money,
    ) -> Result<Authorization, AcquirerUnavailable> {
        Err(AcquirerUnavailable)
    }
}
