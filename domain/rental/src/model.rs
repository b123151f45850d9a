use std::fmt;
use std::ops::Deref;

use domain_kernel::{
    BoothCode, CountryCode, CustomerId, DateRange, DeviceModel, ReservationId, Serial, Timestamp,
};
use time::Date;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceStatus {
    InStock,
    Rented,
    /// Returned at a booth, not yet checked into its stock.
    AwaitingRetrieval,
}

impl DeviceStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InStock => "IN_STOCK",
            Self::Rented => "RENTED",
            Self::AwaitingRetrieval => "AWAITING_RETRIEVAL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::InStock, Self::Rented, Self::AwaitingRetrieval]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RentalStatus {
    Accepted,
    HandedOver,
    Returned,
    Retrieved,
    Canceled,
}

impl RentalStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "ACCEPTED",
            Self::HandedOver => "HANDED_OVER",
            Self::Returned => "RETURNED",
            Self::Retrieved => "RETRIEVED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Accepted,
            Self::HandedOver,
            Self::Returned,
            Self::Retrieved,
            Self::Canceled,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RentalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A business rule a command broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("cannot {action} a rental that is {status}")]
    WrongStatus {
        status: RentalStatus,
        action: &'static str,
    },
    #[error("the rental runs {period}; today is {today}")]
    OutsidePeriod { period: DateRange, today: Date },
    #[error("device {serial} is a {actual}, the reservation is for a {expected}")]
    WrongModel {
        serial: Serial,
        expected: DeviceModel,
        actual: DeviceModel,
    },
    #[error("device {serial} is not in stock at {booth}")]
    NotInStock { serial: Serial, booth: BoothCode },
}

/// The plain data of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceData {
    pub serial: Serial,
    pub device_model: DeviceModel,
    /// Where it is stocked, or where it was returned while awaiting retrieval.
    pub booth: BoothCode,
    pub status: DeviceStatus,
    pub version: u64,
}

/// One physical device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device(DeviceData);

impl Deref for Device {
    type Target = DeviceData;

    fn deref(&self) -> &DeviceData {
        &self.0
    }
}

impl Device {
    pub fn new(serial: Serial, device_model: DeviceModel, booth: BoothCode) -> Self {
        Self(DeviceData {
            serial,
            device_model,
            booth,
            status: DeviceStatus::InStock,
            version: 0,
        })
    }

    /// Rebuilds a device from storage. For repositories only.
    pub fn restore(data: DeviceData) -> Self {
        Self(data)
    }

    pub fn bump_version(&mut self) {
        self.0.version += 1;
    }
}

/// The plain data of a rental.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RentalData {
    pub reservation_id: ReservationId,
    pub customer_id: CustomerId,
    pub device_model: DeviceModel,
    pub country: CountryCode,
    pub pickup_booth: BoothCode,
    pub return_booth: BoothCode,
    pub dates: DateRange,
    pub status: RentalStatus,
    pub serial: Option<Serial>,
    pub returned_at_booth: Option<BoothCode>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

/// The rental of one roaming reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rental(RentalData);

impl Deref for Rental {
    type Target = RentalData;

    fn deref(&self) -> &RentalData {
        &self.0
    }
}

/// What the rental context tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RentalEvent {
    /// `roaming.rental.device_registered`
    DeviceRegistered(Device),
    /// `roaming.rental.device_relocated`
    DeviceRelocated {
        device: Device,
        from_booth: BoothCode,
        reservation_id: ReservationId,
    },
    /// `roaming.rental.accepted`
    Accepted(Rental),
    /// `roaming.rental.handed_over`
    HandedOver(Rental),
    /// `roaming.rental.returned`
    Returned(Rental),
    /// `roaming.rental.retrieved`
    Retrieved(Rental),
    /// `roaming.rental.canceled`
    Canceled(Rental),
}

impl RentalEvent {
    /// The event's name in this context's language (`reserved`, `captured`,
    /// ...); its subject on the wire is the contract's (`proto::subjects`).
    pub const fn name(&self) -> &'static str {
        match self {
            Self::DeviceRegistered(_) => "device_registered",
            Self::DeviceRelocated { .. } => "device_relocated",
            Self::Accepted(_) => "accepted",
            Self::HandedOver(_) => "handed_over",
            Self::Returned(_) => "returned",
            Self::Retrieved(_) => "retrieved",
            Self::Canceled(_) => "canceled",
        }
    }
}

impl Rental {
    /// Accepted for a paid roaming reservation.
    pub fn accept(data: RentalData) -> (Self, RentalEvent) {
        let rental = Self(RentalData {
            status: RentalStatus::Accepted,
            serial: None,
            returned_at_booth: None,
            version: 0,
            ..data
        });
        (rental.clone(), RentalEvent::Accepted(rental))
    }

    /// A cancel that arrived before the reservation: remember it so the late
    /// reserved event accepts nothing.
    pub fn canceled_in_advance(data: RentalData) -> Self {
        Self(RentalData {
            status: RentalStatus::Canceled,
            serial: None,
            returned_at_booth: None,
            version: 0,
            ..data
        })
    }

    /// Rebuilds a rental from storage. For repositories only.
    pub fn restore(data: RentalData) -> Self {
        Self(data)
    }

    pub fn bump_version(&mut self) {
        self.0.version += 1;
    }

    fn require_status(&self, status: RentalStatus, action: &'static str) -> Result<(), Rule> {
        if self.0.status == status {
            Ok(())
        } else {
            Err(Rule::WrongStatus {
                status: self.0.status,
                action,
            })
        }
    }

    /// The pickup booth gives `device` to the customer: the rental must be
    /// accepted, today within its period, the device of the reserved model and in
    /// stock at the pickup booth.
    pub fn hand_over(
        &mut self,
        device: &mut Device,
        today: Date,
        now: Timestamp,
    ) -> Result<RentalEvent, Rule> {
        self.require_status(RentalStatus::Accepted, "hand over")?;
        if !self.0.dates.contains(today) {
            return Err(Rule::OutsidePeriod {
                period: self.0.dates,
                today,
            });
        }
        if device.device_model != self.0.device_model {
            return Err(Rule::WrongModel {
                serial: device.serial.clone(),
                expected: self.0.device_model.clone(),
                actual: device.device_model.clone(),
            });
        }
        if device.booth != self.0.pickup_booth || device.status != DeviceStatus::InStock {
            return Err(Rule::NotInStock {
                serial: device.serial.clone(),
                booth: self.0.pickup_booth.clone(),
            });
        }
        device.0.status = DeviceStatus::Rented;
        self.0.status = RentalStatus::HandedOver;
        self.0.serial = Some(device.serial.clone());
        self.0.updated_at = now;
        Ok(RentalEvent::HandedOver(self.clone()))
    }

    /// The customer gives the device back at `booth` (any booth).
    pub fn return_at(
        &mut self,
        device: &mut Device,
        booth: BoothCode,
        now: Timestamp,
    ) -> Result<RentalEvent, Rule> {
        self.require_status(RentalStatus::HandedOver, "return")?;
        device.0.status = DeviceStatus::AwaitingRetrieval;
        device.0.booth = booth.clone();
        self.0.status = RentalStatus::Returned;
        self.0.returned_at_booth = Some(booth);
        self.0.updated_at = now;
        Ok(RentalEvent::Returned(self.clone()))
    }

    /// The booth where the device was returned checks it into its own stock. When
    /// that is not the booth it was picked up from, the unit moved: a relocation
    /// event tells the catalog.
    pub fn retrieve(
        &mut self,
        device: &mut Device,
        now: Timestamp,
    ) -> Result<Vec<RentalEvent>, Rule> {
        self.require_status(RentalStatus::Returned, "retrieve")?;
        device.0.status = DeviceStatus::InStock;
        self.0.status = RentalStatus::Retrieved;
        self.0.updated_at = now;
        let mut events = vec![RentalEvent::Retrieved(self.clone())];
        if device.booth != self.0.pickup_booth {
            events.push(RentalEvent::DeviceRelocated {
                device: device.clone(),
                from_booth: self.0.pickup_booth.clone(),
                reservation_id: self.0.reservation_id,
            });
        }
        Ok(events)
    }

    /// The reservation was canceled before hand over.
    pub fn cancel(&mut self, now: Timestamp) -> Result<RentalEvent, Rule> {
        self.require_status(RentalStatus::Accepted, "cancel")?;
        self.0.status = RentalStatus::Canceled;
        self.0.updated_at = now;
        Ok(RentalEvent::Canceled(self.clone()))
    }

    /// Booths that see this rental: pickup, planned return, actual return.
    pub fn involves_booth(&self, booth: &BoothCode) -> bool {
        &self.0.pickup_booth == booth
            || &self.0.return_booth == booth
            || self.0.returned_at_booth.as_ref() == Some(booth)
    }
}

#[cfg(test)]
mod tests {
    use domain_kernel::IdGenerator;
    use domain_kernel::fakes::SequentialIds;
    use time::macros::{date, datetime};

    use super::*;

    const NOW: Timestamp = datetime!(2026-12-02 09:00 UTC);
    const TODAY: Date = date!(2026 - 12 - 02);

    fn booth(s: &str) -> BoothCode {
        BoothCode::parse(s).unwrap()
    }

    fn rental() -> Rental {
        Rental::accept(RentalData {
            reservation_id: SequentialIds::default().reservation_id(),
            customer_id: CustomerId::parse("alice").unwrap(),
            device_model: DeviceModel::parse("egg-lte").unwrap(),
            country: CountryCode::parse("JP").unwrap(),
            pickup_booth: booth("ICN-T1"),
            return_booth: booth("GMP"),
            dates: DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 03)).unwrap(),
            status: RentalStatus::Accepted,
            serial: None,
            returned_at_booth: None,
            created_at: NOW,
            updated_at: NOW,
            version: 0,
        })
        .0
    }

    fn egg(at: &str) -> Device {
        Device::new(
            Serial::parse("E1").unwrap(),
            DeviceModel::parse("egg-lte").unwrap(),
            booth(at),
        )
    }

    #[test]
    fn a_device_in_stock_at_the_pickup_booth_is_handed_over() {
        let (mut r, mut d) = (rental(), egg("ICN-T1"));
        assert!(matches!(
            r.hand_over(&mut d, TODAY, NOW),
            Ok(RentalEvent::HandedOver(_))
        ));
        assert_eq!(
            (r.status, d.status),
            (RentalStatus::HandedOver, DeviceStatus::Rented)
        );
        assert_eq!(r.serial, Some(d.serial.clone()));
    }

    #[test]
    fn hand_over_outside_the_period_is_refused() {
        let (mut r, mut d) = (rental(), egg("ICN-T1"));
        assert!(matches!(
            r.hand_over(&mut d, date!(2026 - 11 - 30), NOW),
            Err(Rule::OutsidePeriod { .. })
        ));
        assert!(matches!(
            r.hand_over(&mut d, date!(2026 - 12 - 04), NOW),
            Err(Rule::OutsidePeriod { .. })
        ));
        assert_eq!(d.status, DeviceStatus::InStock);
    }

    #[test]
    fn hand_over_of_another_model_or_from_another_booth_is_refused() {
        let mut r = rental();
        let mut phone = Device::new(
            Serial::parse("P1").unwrap(),
            DeviceModel::parse("phone-5g").unwrap(),
            booth("ICN-T1"),
        );
        assert!(matches!(
            r.hand_over(&mut phone, TODAY, NOW),
            Err(Rule::WrongModel { .. })
        ));
        let mut elsewhere = egg("GMP");
        assert!(matches!(
            r.hand_over(&mut elsewhere, TODAY, NOW),
            Err(Rule::NotInStock { .. })
        ));
        let mut rented = egg("ICN-T1");
        rental().hand_over(&mut rented, TODAY, NOW).unwrap();
        assert!(matches!(
            r.hand_over(&mut rented, TODAY, NOW),
            Err(Rule::NotInStock { .. })
        ));
    }

    #[test]
    fn return_at_another_booth_then_retrieve_relocates_the_unit() {
        let (mut r, mut d) = (rental(), egg("ICN-T1"));
        r.hand_over(&mut d, TODAY, NOW).unwrap();
        r.return_at(&mut d, booth("GMP"), NOW).unwrap();
        assert_eq!(
            (d.status, d.booth.as_str()),
            (DeviceStatus::AwaitingRetrieval, "GMP")
        );
        let events = r.retrieve(&mut d, NOW).unwrap();
        assert_eq!(d.status, DeviceStatus::InStock);
        assert_eq!(r.status, RentalStatus::Retrieved);
        assert!(
            matches!(&events[..], [RentalEvent::Retrieved(_), RentalEvent::DeviceRelocated { from_booth, .. }] if from_booth.as_str() == "ICN-T1")
        );
    }

    #[test]
    fn retrieve_at_the_pickup_booth_relocates_nothing() {
        let (mut r, mut d) = (rental(), egg("ICN-T1"));
        r.hand_over(&mut d, TODAY, NOW).unwrap();
        r.return_at(&mut d, booth("ICN-T1"), NOW).unwrap();
        assert_eq!(r.retrieve(&mut d, NOW).unwrap().len(), 1);
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        let (mut r, mut d) = (rental(), egg("ICN-T1"));
        assert!(matches!(
            r.return_at(&mut d, booth("GMP"), NOW),
            Err(Rule::WrongStatus { .. })
        ));
        assert!(matches!(
            r.retrieve(&mut d, NOW),
            Err(Rule::WrongStatus { .. })
        ));
        r.hand_over(&mut d, TODAY, NOW).unwrap();
        assert!(matches!(
            r.cancel(NOW),
            Err(Rule::WrongStatus {
                status: RentalStatus::HandedOver,
                ..
            })
        ));
    }

    #[test]
    fn cancel_before_hand_over() {
        let mut r = rental();
        assert!(matches!(r.cancel(NOW), Ok(RentalEvent::Canceled(_))));
        let mut d = egg("ICN-T1");
        assert!(r.hand_over(&mut d, TODAY, NOW).is_err());
    }
}
