//! What the reservation context tells the others, and the inbound events it
//! applies: the aggregate's transitions return these.

use domain_kernel::{BoothCode, CustomerId, DeviceModel, Money, ReservationId, Serial, SpaceId};

use super::{Kind, Reservation, Status};

/// What the reservation context tells the others (DOMAIN.md, "Events"). Written to
/// the outbox in the same transaction as the change that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationEvent {
    /// `roaming.reservation.reserved`, with the reservation as it is now.
    Reserved(Reservation),
    /// `roaming.reservation.canceled`.
    Canceled {
        reservation: Reservation,
        reason: String,
    },
    /// `roaming.reservation.rejected`.
    Rejected(Reservation),
    /// `roaming.reservation.status_changed`.
    StatusChanged {
        reservation_id: ReservationId,
        customer_id: CustomerId,
        from: Status,
        to: Status,
    },
}

impl ReservationEvent {
    pub fn reservation_id(&self) -> ReservationId {
        match self {
            Self::Reserved(r) | Self::Rejected(r) | Self::Canceled { reservation: r, .. } => r.id,
            Self::StatusChanged { reservation_id, .. } => *reservation_id,
        }
    }

    /// The event's name in this context's language (`reserved`, `captured`,
    /// ...); its subject on the wire is the contract's (`proto::subjects`).
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Reserved(_) => "reserved",
            Self::Canceled { .. } => "canceled",
            Self::Rejected(_) => "rejected",
            Self::StatusChanged { .. } => "status_changed",
        }
    }
}

/// A use of a reserved resource reported by rental or parking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// `roaming.rental.accepted`
    RentalAccepted,
    /// `roaming.rental.handed_over`
    HandedOver,
    /// `roaming.rental.returned`
    Returned,
    /// `roaming.rental.retrieved`
    Retrieved,
    /// `roaming.rental.canceled`: follows our own cancel; changes nothing.
    RentalCanceled,
    /// `roaming.parking.started`
    ParkingStarted,
    /// `roaming.parking.ended`
    ParkingEnded,
}

impl Usage {
    pub const fn kind(self) -> Kind {
        match self {
            Self::RentalAccepted
            | Self::HandedOver
            | Self::Returned
            | Self::Retrieved
            | Self::RentalCanceled => Kind::Roaming,
            Self::ParkingStarted | Self::ParkingEnded => Kind::Parking,
        }
    }

    /// The status this usage moves a reservation to, if any.
    pub const fn target_status(self) -> Option<Status> {
        match self {
            Self::RentalAccepted => Some(Status::RentalAccepted),
            Self::HandedOver | Self::ParkingStarted => Some(Status::InUse),
            Self::Returned => Some(Status::Returned),
            Self::Retrieved | Self::ParkingEnded => Some(Status::Completed),
            Self::RentalCanceled => None,
        }
    }
}

/// An inbound usage event about one reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    pub reservation_id: ReservationId,
    pub usage: Usage,
}

/// An inbound event that changes the reservable catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    /// `roaming.rental.device_registered`: one more unit at a booth.
    DeviceRegistered {
        serial: Serial,
        device_model: DeviceModel,
        booth: BoothCode,
    },
    /// `roaming.rental.device_relocated`: a unit moved to another booth's stock.
    DeviceRelocated {
        serial: Serial,
        device_model: DeviceModel,
        to_booth: BoothCode,
    },
    /// `roaming.parking.space_registered`: a reservable space and its hourly rate.
    SpaceRegistered {
        space_id: SpaceId,
        hourly_rate: Money,
    },
}
