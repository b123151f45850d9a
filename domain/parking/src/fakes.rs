//! In-memory fakes of the parking ports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain_kernel::{
    EventId, LotCode, Recorded, ReservationId, SessionId, SpaceId, StoreError, Timestamp,
    VehiclePlate,
};

use crate::model::{ParkingEvent, ReplicaEntry, Session, SessionStatus, Space};
use crate::ports::{
    InsertError, ParkingRepository, ReplicaUpdate, ReservationReplica, ReservationVerifier,
    SaveError, VerifiedEntry, VerifierUnavailable,
};

#[derive(Debug, Default)]
struct State {
    spaces: BTreeMap<SpaceId, Space>,
    sessions: HashMap<SessionId, Session>,
    replica: HashMap<ReservationId, ReplicaEntry>,
    outbox: Vec<Recorded<ParkingEvent>>,
    inbox: HashSet<EventId>,
}

/// Spaces, sessions, replica, outbox and inbox in memory; clones share state.
#[derive(Debug, Clone, Default)]
pub struct InMemoryParking {
    state: Arc<Mutex<State>>,
}

impl InMemoryParking {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn outbox(&self) -> Vec<Recorded<ParkingEvent>> {
        self.lock().outbox.clone()
    }

    pub fn sessions(&self) -> Vec<Session> {
        self.lock().sessions.values().cloned().collect()
    }
}

impl ParkingRepository for InMemoryParking {
    async fn get_space(&self, space: &SpaceId) -> Result<Option<Space>, StoreError> {
        Ok(self.lock().spaces.get(space).cloned())
    }

    async fn list_spaces(&self, lot: Option<&LotCode>) -> Result<Vec<Space>, StoreError> {
        Ok(self
            .lock()
            .spaces
            .values()
            .filter(|s| lot.is_none_or(|l| &s.lot == l))
            .cloned()
            .collect())
    }

    async fn insert_space(
        &self,
        space: &Space,
        events: &[Recorded<ParkingEvent>],
    ) -> Result<(), InsertError> {
        let mut state = self.lock();
        if state.spaces.contains_key(&space.space_id) {
            return Err(InsertError::Duplicate);
        }
        state.spaces.insert(space.space_id.clone(), space.clone());
        state.outbox.extend_from_slice(events);
        Ok(())
    }

    async fn open_session(&self, space: &SpaceId) -> Result<Option<Session>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .values()
            .find(|s| &s.space_id == space && s.status == SessionStatus::Started)
            .cloned())
    }

    async fn get_session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.lock().sessions.get(&id).cloned())
    }

    async fn insert_session(
        &self,
        session: &Session,
        events: &[Recorded<ParkingEvent>],
    ) -> Result<(), InsertError> {
        let mut state = self.lock();
        let occupied = state
            .sessions
            .values()
            .any(|s| s.space_id == session.space_id && s.status == SessionStatus::Started);
        if occupied {
            return Err(InsertError::Duplicate);
        }
        state.sessions.insert(session.session_id, session.clone());
        state.outbox.extend_from_slice(events);
        Ok(())
    }

    async fn save_session(
        &self,
        session: &mut Session,
        events: &[Recorded<ParkingEvent>],
    ) -> Result<(), SaveError> {
        let mut state = self.lock();
        if state.sessions.get(&session.session_id).map(|s| s.version) != Some(session.version) {
            return Err(SaveError::Conflict);
        }
        session.bump_version();
        state.sessions.insert(session.session_id, session.clone());
        state.outbox.extend_from_slice(events);
        Ok(())
    }

    async fn append_events(&self, events: &[Recorded<ParkingEvent>]) -> Result<(), StoreError> {
        self.lock().outbox.extend_from_slice(events);
        Ok(())
    }
}

impl ReservationReplica for InMemoryParking {
    async fn lookup(
        &self,
        space: &SpaceId,
        plate: &VehiclePlate,
        at: Timestamp,
    ) -> Result<Option<VerifiedEntry>, StoreError> {
        let state = self.lock();
        let used = |id: ReservationId| {
            state
                .sessions
                .values()
                .any(|s| s.reservation_id == id && s.status == SessionStatus::Ended)
        };
        Ok(state
            .replica
            .values()
            .find(|e| e.admits(space, plate, at) && !used(e.reservation_id))
            .map(|e| VerifiedEntry {
                reservation_id: e.reservation_id,
                window: e.window,
            }))
    }

    async fn apply(&self, update: &ReplicaUpdate, caused_by: EventId) -> Result<(), SaveError> {
        let mut state = self.lock();
        if !state.inbox.insert(caused_by) {
            return Err(SaveError::AlreadyHandled);
        }
        let incoming = update.entry();
        if let Some(merged) =
            ReplicaEntry::merge(state.replica.get(&incoming.reservation_id), incoming)
        {
            state.replica.insert(merged.reservation_id, merged);
        }
        Ok(())
    }
}

/// A reservation service that answers from a fixed list, or is down.
#[derive(Debug, Clone, Default)]
pub struct FakeVerifier {
    state: Arc<Mutex<(bool, Vec<ReplicaEntry>)>>,
}

impl FakeVerifier {
    /// The reservation service knows this reservation.
    pub fn knows(&self, entry: ReplicaEntry) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .push(entry);
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 = down;
    }
}

impl ReservationVerifier for FakeVerifier {
    async fn verify(
        &self,
        space: &SpaceId,
        plate: &VehiclePlate,
        at: Timestamp,
    ) -> Result<Option<VerifiedEntry>, VerifierUnavailable> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 {
            return Err(VerifierUnavailable);
        }
        Ok(state
            .1
            .iter()
            .find(|e| e.admits(space, plate, at))
            .map(|e| VerifiedEntry {
                reservation_id: e.reservation_id,
                window: e.window,
            }))
    }
}
