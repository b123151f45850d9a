//! What the parking context needs from the outside world.

use std::future::Future;

use domain_kernel::{
    EventId, LotCode, Recorded, ReservationId, SessionId, SpaceId, StoreError, TimeWindow,
    Timestamp, VehiclePlate,
};

use crate::model::{ParkingEvent, ReplicaEntry, Session, Space};

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// The space exists already, or (for a session) the space has an open session.
    #[error("already exists")]
    Duplicate,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use domain_kernel::SaveError;

/// Spaces, sessions and their outbox.
pub trait ParkingRepository: Send + Sync {
    fn get_space(
        &self,
        space: &SpaceId,
    ) -> impl Future<Output = Result<Option<Space>, StoreError>> + Send;

    /// Spaces by id, optionally of one lot.
    fn list_spaces(
        &self,
        lot: Option<&LotCode>,
    ) -> impl Future<Output = Result<Vec<Space>, StoreError>> + Send;

    /// # Errors
    /// [`InsertError::Duplicate`] when the space id exists.
    fn insert_space(
        &self,
        space: &Space,
        events: &[Recorded<ParkingEvent>],
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// The session of the space that has not ended, if any.
    fn open_session(
        &self,
        space: &SpaceId,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    fn get_session(
        &self,
        id: SessionId,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    /// Inserts a started session with its events, atomically refusing a second
    /// open session for the same space.
    ///
    /// # Errors
    /// [`InsertError::Duplicate`] when the space has an open session.
    fn insert_session(
        &self,
        session: &Session,
        events: &[Recorded<ParkingEvent>],
    ) -> impl Future<Output = Result<(), InsertError>> + Send;

    /// Saves a changed session with its events if its version is still the stored one.
    fn save_session(
        &self,
        session: &mut Session,
        events: &[Recorded<ParkingEvent>],
    ) -> impl Future<Output = Result<(), SaveError>> + Send;

    /// Appends events that change no state (a denied entry) to the outbox.
    fn append_events(
        &self,
        events: &[Recorded<ParkingEvent>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A reservation that admits a car now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEntry {
    pub reservation_id: ReservationId,
    pub window: TimeWindow,
}

/// The reservation service could not answer (down, breaker open, deadline).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reservation service unavailable")]
pub struct VerifierUnavailable;

/// The reservation service's `VerifyParkingEntry`, called synchronously.
pub trait ReservationVerifier: Send + Sync {
    fn verify(
        &self,
        space: &SpaceId,
        plate: &VehiclePlate,
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<VerifiedEntry>, VerifierUnavailable>> + Send;
}

/// What a reservation event changes in the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaUpdate {
    Reserved(ReplicaEntry),
    /// Carries the details too, so a cancel that overtakes its reservation can
    /// leave an inactive entry behind.
    Canceled(ReplicaEntry),
}

impl ReplicaUpdate {
    /// The entry as this update describes it (inactive for a cancel).
    pub fn entry(&self) -> ReplicaEntry {
        match self {
            Self::Reserved(e) => e.clone(),
            Self::Canceled(e) => ReplicaEntry {
                active: false,
                ..e.clone()
            },
        }
    }
}

/// The local replica of parking reservations, built from reservation events.
pub trait ReservationReplica: Send + Sync {
    /// An entry for which [`ReplicaEntry::admits`] holds and no session of this
    /// reservation has ended yet (one entry per reservation).
    fn lookup(
        &self,
        space: &SpaceId,
        plate: &VehiclePlate,
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<VerifiedEntry>, StoreError>> + Send;

    /// Stores [`ReplicaEntry::merge`] of the stored entry and the update's, recording
    /// `caused_by` in the inbox in the same transaction.
    ///
    /// # Errors
    /// [`SaveError::AlreadyHandled`] when `caused_by` is in the inbox.
    fn apply(
        &self,
        update: &ReplicaUpdate,
        caused_by: EventId,
    ) -> impl Future<Output = Result<(), SaveError>> + Send;
}
