//! The columns a reservation's details take in a row (reservations and views).

use domain_kernel::{
    BoothCode, CountryCode, DateRange, DeviceModel, SpaceId, StoreError, TimeWindow, VehiclePlate,
};
use domain_reservation::{Details, Kind, ParkingDetails, RoamingDetails};

use crate::error::corrupt;
use crate::time_codec::{date_from_text, date_text, from_micros, micros};

/// How [`corrupt`] names what holds the details: they are a reservation's,
/// whether read from its own row or from its view.
const RECORD: &str = "reservation";

/// Flat, nullable columns of either kind of details.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetailsColumns {
    pub kind: String,
    pub device_model: Option<String>,
    pub country: Option<String>,
    pub pickup_booth: Option<String>,
    pub return_booth: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub space_id: Option<String>,
    pub vehicle_plate: Option<String>,
    pub window_start: Option<i64>,
    pub window_end: Option<i64>,
}

pub fn kind_text(kind: Kind) -> &'static str {
    match kind {
        Kind::Roaming => "ROAMING",
        Kind::Parking => "PARKING",
    }
}

impl DetailsColumns {
    pub fn of(details: &Details) -> Self {
        match details {
            Details::Roaming(d) => Self {
                kind: kind_text(Kind::Roaming).to_owned(),
                device_model: Some(d.device_model.to_string()),
                country: Some(d.country.to_string()),
                pickup_booth: Some(d.pickup_booth.to_string()),
                return_booth: Some(d.return_booth.to_string()),
                start_date: Some(date_text(d.dates.start())),
                end_date: Some(date_text(d.dates.end())),
                ..Self::default()
            },
            Details::Parking(d) => Self {
                kind: kind_text(Kind::Parking).to_owned(),
                space_id: Some(d.space_id.to_string()),
                vehicle_plate: Some(d.vehicle_plate.to_string()),
                window_start: Some(micros(d.window.start())),
                window_end: Some(micros(d.window.end())),
                ..Self::default()
            },
        }
    }

    pub fn details(self) -> Result<Details, StoreError> {
        fn req<T>(field: &str, v: Option<T>) -> Result<T, StoreError> {
            v.ok_or_else(|| corrupt(RECORD, field, "missing"))
        }
        if self.kind == kind_text(Kind::Roaming) {
            let start = date_from_text(&req("start_date", self.start_date)?)?;
            let end = date_from_text(&req("end_date", self.end_date)?)?;
            Ok(Details::Roaming(RoamingDetails {
                device_model: DeviceModel::parse(&req("device_model", self.device_model)?)
                    .map_err(|e| corrupt(RECORD, "device_model", e))?,
                country: CountryCode::parse(&req("country", self.country)?)
                    .map_err(|e| corrupt(RECORD, "country", e))?,
                pickup_booth: BoothCode::parse(&req("pickup_booth", self.pickup_booth)?)
                    .map_err(|e| corrupt(RECORD, "pickup_booth", e))?,
                return_booth: BoothCode::parse(&req("return_booth", self.return_booth)?)
                    .map_err(|e| corrupt(RECORD, "return_booth", e))?,
                dates: DateRange::new(start, end).map_err(|e| corrupt(RECORD, "dates", e))?,
            }))
        } else {
            let start = from_micros(req("window_start", self.window_start)?)?;
            let end = from_micros(req("window_end", self.window_end)?)?;
            Ok(Details::Parking(ParkingDetails {
                space_id: SpaceId::parse(&req("space_id", self.space_id)?)
                    .map_err(|e| corrupt(RECORD, "space_id", e))?,
                vehicle_plate: VehiclePlate::parse(&req("vehicle_plate", self.vehicle_plate)?)
                    .map_err(|e| corrupt(RECORD, "vehicle_plate", e))?,
                window: TimeWindow::new(start, end).map_err(|e| corrupt(RECORD, "window", e))?,
            }))
        }
    }
}
