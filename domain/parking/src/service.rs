use domain_kernel::{
    Clock, IdGenerator, LotCode, Principal, Recorded, ReservationId, Role, SessionId, SpaceId,
    StoreError, TimeWindow, VehiclePlate,
};

use crate::model::{DenialReason, ParkingEvent, ReplicaEntry, Session, Space, Verification};
use crate::ports::{
    InsertError, ParkingRepository, ReplicaUpdate, ReservationReplica, ReservationVerifier,
    SaveError, VerifiedEntry,
};

const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ParkingError {
    #[error("not permitted")]
    Forbidden,
    #[error("parking space {0} not found")]
    SpaceNotFound(SpaceId),
    #[error("parking space {0} is already registered")]
    SpaceExists(SpaceId),
    /// No open session for this space and plate (exit), or no such session.
    #[error("session not found")]
    SessionNotFound,
    /// The car may not enter; an `entry_denied` event was published.
    #[error("entry denied: {}", match .reason { DenialReason::NotReserved => "no reservation for this space and plate now", DenialReason::SpaceOccupied => "the space is occupied" })]
    EntryDenied {
        reason: DenialReason,
        verification: Option<Verification>,
    },
    #[error("session is busy, try again")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What handling an inbound event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleOutcome {
    Applied,
    Duplicate,
}

/// A parking reservation as the reservation events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkingReservation {
    pub reservation_id: ReservationId,
    pub space_id: SpaceId,
    pub vehicle_plate: VehiclePlate,
    pub window: TimeWindow,
}

/// The parking use cases.
#[derive(Debug)]
pub struct ParkingService<R, V, P, K, I> {
    repo: R,
    verifier: V,
    replica: P,
    clock: K,
    ids: I,
}

impl<R, V, P, K, I> ParkingService<R, V, P, K, I>
where
    R: ParkingRepository,
    V: ReservationVerifier,
    P: ReservationReplica,
    K: Clock,
    I: IdGenerator,
{
    pub fn new(repo: R, verifier: V, replica: P, clock: K, ids: I) -> Self {
        Self {
            repo,
            verifier,
            replica,
            clock,
            ids,
        }
    }

    pub fn repository(&self) -> &R {
        &self.repo
    }

    /// Adds a space (operators).
    pub async fn register_space(
        &self,
        principal: &Principal,
        space: Space,
    ) -> Result<Space, ParkingError> {
        if !principal.is_operator() {
            return Err(ParkingError::Forbidden);
        }
        let events = Recorded::all(
            &self.clock,
            &self.ids,
            [ParkingEvent::SpaceRegistered(space.clone())],
        );
        match self.repo.insert_space(&space, &events).await {
            Ok(()) => Ok(space),
            Err(InsertError::Duplicate) => Err(ParkingError::SpaceExists(space.space_id)),
            Err(InsertError::Store(e)) => Err(e.into()),
        }
    }

    /// Spaces, for anyone signed in (customers pick one to reserve).
    pub async fn list_spaces(&self, lot: Option<LotCode>) -> Result<Vec<Space>, ParkingError> {
        Ok(self.repo.list_spaces(lot.as_ref()).await?)
    }

    /// A gate asks to let `plate` into `space`. Repeating the call for the car
    /// already in the space answers with its session.
    pub async fn enter(
        &self,
        principal: &Principal,
        space_id: SpaceId,
        plate: VehiclePlate,
    ) -> Result<Session, ParkingError> {
        self.gate_space(principal, &space_id).await?;
        if let Some(open) = self.repo.open_session(&space_id).await? {
            return self.same_car_or_occupied(open, &space_id, &plate).await;
        }
        let now = self.clock.now();
        let (entry, verification) = match self.verifier.verify(&space_id, &plate, now).await {
            Ok(Some(entry)) => (entry, Verification::Online),
            Ok(None) => {
                return Err(self
                    .deny(
                        &space_id,
                        &plate,
                        DenialReason::NotReserved,
                        Some(Verification::Online),
                    )
                    .await);
            }
            Err(_) => match self.replica.lookup(&space_id, &plate, now).await? {
                Some(entry) => (entry, Verification::Replica),
                None => {
                    return Err(self
                        .deny(
                            &space_id,
                            &plate,
                            DenialReason::NotReserved,
                            Some(Verification::Replica),
                        )
                        .await);
                }
            },
        };
        let VerifiedEntry { reservation_id, .. } = entry;
        let (session, started) = Session::start(
            self.ids.session_id(),
            space_id.clone(),
            plate.clone(),
            reservation_id,
            verification,
            now,
        );
        match self
            .repo
            .insert_session(&session, &Recorded::all(&self.clock, &self.ids, [started]))
            .await
        {
            Ok(()) => Ok(session),
            Err(InsertError::Duplicate) => {
                // Another gate call for this space won the race.
                match self.repo.open_session(&space_id).await? {
                    Some(open) => self.same_car_or_occupied(open, &space_id, &plate).await,
                    None => Err(ParkingError::Busy),
                }
            }
            Err(InsertError::Store(e)) => Err(e.into()),
        }
    }

    async fn same_car_or_occupied(
        &self,
        open: Session,
        space: &SpaceId,
        plate: &VehiclePlate,
    ) -> Result<Session, ParkingError> {
        if &open.vehicle_plate == plate {
            Ok(open)
        } else {
            Err(self
                .deny(space, plate, DenialReason::SpaceOccupied, None)
                .await)
        }
    }

    /// Publishes `entry_denied` and returns the error for the gate. If even that
    /// cannot be written, the storage error wins: the gate must not think the
    /// refusal was recorded.
    async fn deny(
        &self,
        space: &SpaceId,
        plate: &VehiclePlate,
        reason: DenialReason,
        verification: Option<Verification>,
    ) -> ParkingError {
        let events = Recorded::all(
            &self.clock,
            &self.ids,
            [ParkingEvent::EntryDenied {
                space_id: space.clone(),
                vehicle_plate: plate.clone(),
                reason,
                verification,
            }],
        );
        match self.repo.append_events(&events).await {
            Ok(()) => ParkingError::EntryDenied {
                reason,
                verification,
            },
            Err(e) => e.into(),
        }
    }

    /// The car leaves `space`; its session ends.
    pub async fn exit(
        &self,
        principal: &Principal,
        space_id: SpaceId,
        plate: VehiclePlate,
    ) -> Result<Session, ParkingError> {
        self.gate_space(principal, &space_id).await?;
        for _ in 0..CONFLICT_RETRIES {
            let mut session = match self.repo.open_session(&space_id).await? {
                Some(s) if s.vehicle_plate == plate => s,
                _ => return Err(ParkingError::SessionNotFound),
            };
            let Some(ended) = session.end(self.clock.now()) else {
                return Ok(session);
            };
            match self
                .repo
                .save_session(
                    &mut session,
                    &Recorded::all(&self.clock, &self.ids, [ended]),
                )
                .await
            {
                Ok(()) => return Ok(session),
                Err(SaveError::Conflict) => {}
                Err(SaveError::AlreadyHandled) => {
                    return Err(StoreError::inbox_hit_without_cause().into());
                }
                Err(SaveError::Store(e)) => return Err(e.into()),
            }
        }
        Err(ParkingError::Busy)
    }

    /// One session, for gates, services and operators.
    pub async fn get_session(
        &self,
        principal: &Principal,
        id: SessionId,
    ) -> Result<Session, ParkingError> {
        if !principal.may(&[Role::Gate, Role::Service]) {
            return Err(ParkingError::Forbidden);
        }
        let session = self
            .repo
            .get_session(id)
            .await?
            .ok_or(ParkingError::SessionNotFound)?;
        if principal.may(&[Role::Service]) {
            return Ok(session);
        }
        // A gate sees the sessions of its own lot only, as if others did not exist.
        match self.repo.get_space(&session.space_id).await? {
            Some(space) if principal.acts_for_lot(&space.lot) => Ok(session),
            _ => Err(ParkingError::SessionNotFound),
        }
    }

    /// The space of a gate call: the caller is a gate of the space's lot (or an
    /// operator), and the space exists.
    async fn gate_space(
        &self,
        principal: &Principal,
        space_id: &SpaceId,
    ) -> Result<Space, ParkingError> {
        if !principal.may(&[Role::Gate]) {
            return Err(ParkingError::Forbidden);
        }
        let space = self
            .repo
            .get_space(space_id)
            .await?
            .ok_or_else(|| ParkingError::SpaceNotFound(space_id.clone()))?;
        if principal.acts_for_lot(&space.lot) {
            Ok(space)
        } else {
            Err(ParkingError::Forbidden)
        }
    }

    /// `roaming.reservation.reserved` (parking): the replica learns the reservation.
    pub async fn handle_reserved(
        &self,
        event: &Recorded<ParkingReservation>,
    ) -> Result<HandleOutcome, StoreError> {
        self.update_replica(ReplicaUpdate::Reserved(entry(&event.event)), event.event_id)
            .await
    }

    /// `roaming.reservation.canceled` (parking): the replica forgets it.
    pub async fn handle_canceled(
        &self,
        event: &Recorded<ParkingReservation>,
    ) -> Result<HandleOutcome, StoreError> {
        self.update_replica(ReplicaUpdate::Canceled(entry(&event.event)), event.event_id)
            .await
    }

    async fn update_replica(
        &self,
        update: ReplicaUpdate,
        caused_by: domain_kernel::EventId,
    ) -> Result<HandleOutcome, StoreError> {
        match self.replica.apply(&update, caused_by).await {
            Ok(()) => Ok(HandleOutcome::Applied),
            Err(SaveError::AlreadyHandled) => Ok(HandleOutcome::Duplicate),
            Err(SaveError::Conflict) => Err(StoreError::msg("replica reported a version conflict")),
            Err(SaveError::Store(e)) => Err(e),
        }
    }
}

fn entry(r: &ParkingReservation) -> ReplicaEntry {
    ReplicaEntry {
        reservation_id: r.reservation_id,
        space_id: r.space_id.clone(),
        vehicle_plate: r.vehicle_plate.clone(),
        window: r.window,
        active: true,
    }
}

#[cfg(test)]
mod tests;
