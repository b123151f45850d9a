use std::ops::Deref;

use domain_kernel::{
    LotCode, Money, ReservationId, SessionId, SpaceId, TimeWindow, Timestamp, VehiclePlate,
    Violations,
};

/// A parking space and its hourly rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    pub space_id: SpaceId,
    pub lot: LotCode,
    pub floor: String,
    pub number: u32,
    pub hourly_rate: Money,
}

impl Space {
    /// Validates the parts a request gives.
    pub fn parse(
        space_id: &str,
        lot: &str,
        floor: &str,
        number: i32,
        hourly_rate: Result<Money, Violations>,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let space_id = v.check("space_id", SpaceId::parse(space_id));
        let lot = v.check("lot", LotCode::parse(lot));
        let floor = floor.trim().to_ascii_uppercase();
        if floor.is_empty() || floor.len() > 8 || !floor.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            v.add("floor", "must be 1-8 letters or digits, e.g. B1");
        }
        let number = v.check(
            "number",
            u32::try_from(number)
                .ok()
                .filter(|n| *n > 0)
                .ok_or("must be positive"),
        );
        // The ceiling keeps rate x started hours far from any overflow
        // (DOMAIN.md, invariant 10).
        let hourly_rate = match hourly_rate.map(Money::as_rate) {
            Ok(Ok(rate)) => Some(rate),
            Ok(Err(e)) => {
                v.add(format!("hourly_rate.{}", e.field()), e);
                None
            }
            Err(e) => {
                v.extend(e);
                None
            }
        };
        match (space_id, lot, number, hourly_rate, v.is_empty()) {
            (Some(space_id), Some(lot), Some(number), Some(hourly_rate), true) => Ok(Self {
                space_id,
                lot,
                floor,
                number,
                hourly_rate,
            }),
            _ => Err(v),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    Started,
    Ended,
}

impl SessionStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Started => "STARTED",
            Self::Ended => "ENDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Started, Self::Ended]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// How an entry was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verification {
    /// The reservation service answered.
    Online,
    /// The reservation service could not; the local replica decided.
    Replica,
}

impl Verification {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Online => "ONLINE",
            Self::Replica => "REPLICA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Online, Self::Replica]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// Why a car was refused at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialReason {
    NotReserved,
    SpaceOccupied,
}

/// The plain data of a parking session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionData {
    pub session_id: SessionId,
    pub space_id: SpaceId,
    pub vehicle_plate: VehiclePlate,
    pub reservation_id: ReservationId,
    pub status: SessionStatus,
    pub verification: Verification,
    pub entered_at: Timestamp,
    pub exited_at: Option<Timestamp>,
    pub version: u64,
}

/// One car's stay in one space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session(SessionData);

impl Deref for Session {
    type Target = SessionData;

    fn deref(&self) -> &SessionData {
        &self.0
    }
}

impl Session {
    pub fn start(
        session_id: SessionId,
        space_id: SpaceId,
        vehicle_plate: VehiclePlate,
        reservation_id: ReservationId,
        verification: Verification,
        now: Timestamp,
    ) -> (Self, ParkingEvent) {
        let s = Self(SessionData {
            session_id,
            space_id,
            vehicle_plate,
            reservation_id,
            status: SessionStatus::Started,
            verification,
            entered_at: now,
            exited_at: None,
            version: 0,
        });
        (s.clone(), ParkingEvent::Started(s))
    }

    /// Rebuilds a session from storage. For repositories only.
    pub fn restore(data: SessionData) -> Self {
        Self(data)
    }

    pub fn bump_version(&mut self) {
        self.0.version += 1;
    }

    /// The car left. `None` when the session had already ended.
    pub fn end(&mut self, now: Timestamp) -> Option<ParkingEvent> {
        if self.0.status == SessionStatus::Ended {
            return None;
        }
        self.0.status = SessionStatus::Ended;
        self.0.exited_at = Some(now);
        Some(ParkingEvent::Ended(self.clone()))
    }
}

/// A parking reservation as the replica knows it from reservation events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaEntry {
    pub reservation_id: ReservationId,
    pub space_id: SpaceId,
    pub vehicle_plate: VehiclePlate,
    pub window: TimeWindow,
    /// False once canceled.
    pub active: bool,
}

impl ReplicaEntry {
    /// The entry to keep when `incoming` arrives for a reservation the replica may
    /// already know. Order-insensitive: a canceled entry never becomes active
    /// again, so a cancel that overtook its reservation wins. `None`: keep `stored`.
    pub fn merge(stored: Option<&Self>, incoming: Self) -> Option<Self> {
        match stored {
            None => Some(incoming),
            Some(s) if s.active && !incoming.active => Some(Self {
                active: false,
                ..s.clone()
            }),
            Some(_) => None,
        }
    }

    /// The same rule the reservation service applies, offline: this plate, this
    /// space, a live reservation whose window admits entry now.
    pub fn admits(&self, space: &SpaceId, plate: &VehiclePlate, at: Timestamp) -> bool {
        self.active
            && &self.space_id == space
            && &self.vehicle_plate == plate
            && self.window.admits_entry_at(at)
    }
}

/// What the parking context tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParkingEvent {
    /// `roaming.parking.space_registered`
    SpaceRegistered(Space),
    /// `roaming.parking.started`
    Started(Session),
    /// `roaming.parking.ended`
    Ended(Session),
    /// `roaming.parking.entry_denied`
    EntryDenied {
        space_id: SpaceId,
        vehicle_plate: VehiclePlate,
        reason: DenialReason,
        /// How the refusal was decided; `None` when no verification was needed
        /// (the space was occupied).
        verification: Option<Verification>,
    },
}

impl ParkingEvent {
    /// The event's name in this context's language (`reserved`, `captured`,
    /// ...); its subject on the wire is the contract's (`proto::subjects`).
    pub const fn name(&self) -> &'static str {
        match self {
            Self::SpaceRegistered(_) => "space_registered",
            Self::Started(_) => "started",
            Self::Ended(_) => "ended",
            Self::EntryDenied { .. } => "entry_denied",
        }
    }
}

#[cfg(test)]
mod tests {
    use domain_kernel::IdGenerator;
    use domain_kernel::fakes::SequentialIds;
    use time::Duration;
    use time::macros::datetime;

    use super::*;

    const NOW: Timestamp = datetime!(2026-11-22 10:00 UTC);

    #[test]
    fn spaces_validate_every_field() {
        let ok = Space::parse(
            "p1-b1-001",
            "P1",
            "b1",
            1,
            Money::krw(3_000).map_err(|e| Violations::one("hourly_rate", e)),
        );
        assert_eq!(ok.unwrap().floor, "B1");
        let bad = Space::parse(
            "",
            "",
            "",
            0,
            Err(Violations::one("hourly_rate.currency_code", "bad")),
        )
        .unwrap_err();
        let fields: Vec<_> = bad.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "space_id",
                "lot",
                "floor",
                "number",
                "hourly_rate.currency_code"
            ]
        );
    }

    #[test]
    fn an_hourly_rate_is_at_most_a_hundred_million_minor_units() {
        let space = |minor_units: i64| {
            Space::parse(
                "P1-B1-001",
                "P1",
                "B1",
                1,
                Money::krw(minor_units).map_err(|e| Violations::one("hourly_rate", e)),
            )
        };
        let at_ceiling = space(Money::MAX_RATE_MINOR_UNITS).unwrap();
        assert_eq!(at_ceiling.hourly_rate.minor_units(), 100_000_000);
        let over = space(Money::MAX_RATE_MINOR_UNITS + 1).unwrap_err();
        assert_eq!(
            over.to_string(),
            "hourly_rate.minor_units: a rate must be at most 100000000 per hour or day"
        );
        // Not even a Money: refused before it is a rate.
        let huge = space(i64::MAX).unwrap_err();
        assert_eq!(
            huge.to_string(),
            "hourly_rate: must be at most 1000000000000"
        );
    }

    #[test]
    fn a_session_ends_once() {
        let ids = SequentialIds::default();
        let (mut s, _) = Session::start(
            ids.session_id(),
            SpaceId::parse("P1-B1-001").unwrap(),
            VehiclePlate::parse("12가3456").unwrap(),
            ids.reservation_id(),
            Verification::Online,
            NOW,
        );
        assert!(matches!(
            s.end(NOW + Duration::hours(1)),
            Some(ParkingEvent::Ended(_))
        ));
        assert_eq!(s.exited_at, Some(NOW + Duration::hours(1)));
        assert_eq!(s.end(NOW + Duration::hours(2)), None);
    }

    #[test]
    fn the_replica_applies_the_same_window_rule() {
        let space = SpaceId::parse("P1-B1-001").unwrap();
        let plate = VehiclePlate::parse("12가3456").unwrap();
        let mut entry = ReplicaEntry {
            reservation_id: SequentialIds::default().reservation_id(),
            space_id: space.clone(),
            vehicle_plate: plate.clone(),
            window: TimeWindow::new(NOW, NOW + Duration::hours(2)).unwrap(),
            active: true,
        };
        assert!(entry.admits(&space, &plate, NOW - Duration::minutes(15)));
        assert!(!entry.admits(&space, &plate, NOW - Duration::minutes(16)));
        assert!(!entry.admits(&space, &VehiclePlate::parse("99하9999").unwrap(), NOW));
        entry.active = false;
        assert!(!entry.admits(&space, &plate, NOW));
    }

    #[test]
    fn a_cancel_wins_in_any_order() {
        let active = ReplicaEntry {
            reservation_id: SequentialIds::default().reservation_id(),
            space_id: SpaceId::parse("P1-B1-001").unwrap(),
            vehicle_plate: VehiclePlate::parse("12가3456").unwrap(),
            window: TimeWindow::new(NOW, NOW + Duration::hours(2)).unwrap(),
            active: true,
        };
        let canceled = ReplicaEntry {
            active: false,
            ..active.clone()
        };
        assert_eq!(
            ReplicaEntry::merge(None, active.clone()),
            Some(active.clone())
        );
        assert_eq!(
            ReplicaEntry::merge(Some(&active), canceled.clone()),
            Some(canceled.clone())
        );
        assert_eq!(
            ReplicaEntry::merge(Some(&canceled), active.clone()),
            None,
            "late reserved"
        );
        assert_eq!(
            ReplicaEntry::merge(Some(&active), active.clone()),
            None,
            "repeat"
        );
    }
}
