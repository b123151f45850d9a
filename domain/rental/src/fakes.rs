//! In-memory fakes of the rental ports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain_kernel::{BoothCode, DeviceModel, EventId, Recorded, ReservationId, Serial, StoreError};
use time::Date;

use crate::model::{Device, Rental, RentalEvent};
use crate::ports::{
    CatalogUnavailable, Changes, InsertError, RentalRepository, ReservationAuthority, SaveError,
    UseRefused,
};

#[derive(Debug, Default)]
struct State {
    devices: BTreeMap<Serial, Device>,
    rentals: HashMap<ReservationId, Rental>,
    outbox: Vec<Recorded<RentalEvent>>,
    inbox: HashSet<EventId>,
}

/// Devices, rentals, outbox and inbox in memory; clones share state.
#[derive(Debug, Clone, Default)]
pub struct InMemoryRentals {
    state: Arc<Mutex<State>>,
}

impl InMemoryRentals {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn outbox(&self) -> Vec<Recorded<RentalEvent>> {
        self.lock().outbox.clone()
    }
}

impl RentalRepository for InMemoryRentals {
    async fn get_rental(
        &self,
        reservation_id: ReservationId,
    ) -> Result<Option<Rental>, StoreError> {
        Ok(self.lock().rentals.get(&reservation_id).cloned())
    }

    async fn get_device(&self, serial: &Serial) -> Result<Option<Device>, StoreError> {
        Ok(self.lock().devices.get(serial).cloned())
    }

    async fn list_devices(
        &self,
        booth: Option<&BoothCode>,
        model: Option<&DeviceModel>,
    ) -> Result<Vec<Device>, StoreError> {
        Ok(self
            .lock()
            .devices
            .values()
            .filter(|d| {
                booth.is_none_or(|b| &d.booth == b) && model.is_none_or(|m| &d.device_model == m)
            })
            .cloned()
            .collect())
    }

    async fn list_booth_rentals(
        &self,
        booth: &BoothCode,
        date: Option<Date>,
    ) -> Result<Vec<Rental>, StoreError> {
        let mut rentals: Vec<_> = self
            .lock()
            .rentals
            .values()
            .filter(|r| r.involves_booth(booth) && date.is_none_or(|d| r.dates.contains(d)))
            .cloned()
            .collect();
        rentals.sort_by_key(|r| (r.dates.start(), r.reservation_id));
        Ok(rentals)
    }

    async fn insert_device(
        &self,
        device: &Device,
        events: &[Recorded<RentalEvent>],
    ) -> Result<(), InsertError> {
        let mut state = self.lock();
        if state.devices.contains_key(&device.serial) {
            return Err(InsertError::Duplicate);
        }
        state.devices.insert(device.serial.clone(), device.clone());
        state.outbox.extend_from_slice(events);
        Ok(())
    }

    async fn insert_rental(
        &self,
        rental: &Rental,
        events: &[Recorded<RentalEvent>],
        caused_by: Option<EventId>,
    ) -> Result<(), InsertError> {
        let mut state = self.lock();
        if caused_by.is_some_and(|id| state.inbox.contains(&id)) {
            return Err(InsertError::AlreadyHandled);
        }
        if state.rentals.contains_key(&rental.reservation_id) {
            return Err(InsertError::Duplicate);
        }
        state.rentals.insert(rental.reservation_id, rental.clone());
        state.outbox.extend_from_slice(events);
        state.inbox.extend(caused_by);
        Ok(())
    }

    async fn save(&self, changes: Changes<'_>) -> Result<(), SaveError> {
        let mut state = self.lock();
        if changes
            .caused_by
            .is_some_and(|id| state.inbox.contains(&id))
        {
            return Err(SaveError::AlreadyHandled);
        }
        if let Some(r) = &changes.rental
            && state.rentals.get(&r.reservation_id).map(|s| s.version) != Some(r.version)
        {
            return Err(SaveError::Conflict);
        }
        if let Some(d) = &changes.device
            && state.devices.get(&d.serial).map(|s| s.version) != Some(d.version)
        {
            return Err(SaveError::Conflict);
        }
        if let Some(r) = changes.rental {
            r.bump_version();
            state.rentals.insert(r.reservation_id, r.clone());
        }
        if let Some(d) = changes.device {
            d.bump_version();
            state.devices.insert(d.serial.clone(), d.clone());
        }
        state.outbox.extend(changes.events);
        state.inbox.extend(changes.caused_by);
        Ok(())
    }
}

/// The reservation service's answers, set per reservation (default: allowed)
/// and per model (default: offered); clones share them. Counts the
/// `BeginUse` calls.
#[derive(Debug, Clone, Default)]
pub struct FakeAuthority {
    answers: Arc<Mutex<HashMap<ReservationId, UseRefused>>>,
    not_offered: Arc<Mutex<HashSet<DeviceModel>>>,
    down: Arc<Mutex<bool>>,
    calls: Arc<Mutex<usize>>,
}

impl FakeAuthority {
    /// `BeginUse` for `id` answers `refusal` from now on.
    pub fn refuse(&self, id: ReservationId, refusal: UseRefused) {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, refusal);
    }

    /// `model` is not on the price list from now on.
    pub fn withdraw(&self, model: DeviceModel) {
        self.not_offered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(model);
    }

    /// The reservation service is unreachable (or back).
    pub fn set_down(&self, down: bool) {
        *self.down.lock().unwrap_or_else(PoisonError::into_inner) = down;
    }

    pub fn calls(&self) -> usize {
        *self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ReservationAuthority for FakeAuthority {
    async fn begin_use(&self, reservation_id: ReservationId) -> Result<(), UseRefused> {
        *self.calls.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        if *self.down.lock().unwrap_or_else(PoisonError::into_inner) {
            return Err(UseRefused::Unavailable {
                retry_after: std::time::Duration::from_secs(1),
            });
        }
        match self
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&reservation_id)
        {
            Some(refusal) => Err(refusal.clone()),
            None => Ok(()),
        }
    }

    async fn offers_model(&self, model: &DeviceModel) -> Result<bool, CatalogUnavailable> {
        if *self.down.lock().unwrap_or_else(PoisonError::into_inner) {
            return Err(CatalogUnavailable {
                retry_after: std::time::Duration::from_secs(1),
            });
        }
        Ok(!self
            .not_offered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(model))
    }
}
