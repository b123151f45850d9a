//! Value conversions shared by events and RPC messages.

use domain_kernel::{
    BoothCode, CountryCode, DateRange, DeviceModel, InvalidMoney, InvalidPeriod, Money, SpaceId,
    TimeWindow, Timestamp, VehiclePlate, Violations,
};
use domain_reservation::{Details, ParkingDetails, RoamingDetails, Status};
use proto::common as pbc;
use proto::reservation as pb;

pub fn money_to_pb(m: Money) -> pbc::Money {
    pbc::Money {
        currency_code: m.currency().to_string(),
        minor_units: m.minor_units(),
    }
}

pub fn money_from_pb(m: Option<&pbc::Money>) -> Result<Money, InvalidMoney> {
    let m = m.ok_or(InvalidMoney::Currency)?;
    Money::parse(&m.currency_code, m.minor_units)
}

/// A request's money field, a violation naming the part at fault:
/// `hourly_rate` when it is missing, `hourly_rate.minor_units` when the
/// amount is negative or over [`Money::MAX_MINOR_UNITS`].
pub fn money_field(field: &str, m: Option<&pbc::Money>) -> Result<Money, Violations> {
    let m = m.ok_or_else(|| Violations::one(field, "is required"))?;
    Money::parse(&m.currency_code, m.minor_units)
        .map_err(|e| Violations::one(format!("{field}.{}", e.field()), e))
}

pub fn instant_to_pb(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

pub fn instant_from_pb(t: Option<&prost_types::Timestamp>) -> Result<Timestamp, InvalidPeriod> {
    let t = t.ok_or(InvalidPeriod::Instant)?;
    TimeWindow::instant(t.seconds, t.nanos)
}

pub fn roaming_details_to_pb(d: &RoamingDetails) -> pb::RoamingDetails {
    pb::RoamingDetails {
        device_model: d.device_model.to_string(),
        country: d.country.to_string(),
        pickup_booth: d.pickup_booth.to_string(),
        return_booth: d.return_booth.to_string(),
        start_date: DateRange::format_date(d.dates.start()),
        end_date: DateRange::format_date(d.dates.end()),
    }
}

pub fn parking_details_to_pb(d: &ParkingDetails) -> pb::ParkingDetails {
    pb::ParkingDetails {
        space_id: d.space_id.to_string(),
        vehicle_plate: d.vehicle_plate.to_string(),
        start_time: Some(instant_to_pb(d.window.start())),
        end_time: Some(instant_to_pb(d.window.end())),
    }
}

/// Parses either kind of details, reporting every bad field.
pub fn details_from_pb(
    roaming: Option<&pb::RoamingDetails>,
    parking: Option<&pb::ParkingDetails>,
) -> Result<Details, Violations> {
    match (roaming, parking) {
        (Some(r), _) => roaming_from_pb(r).map(Details::Roaming),
        (None, Some(p)) => parking_from_pb(p).map(Details::Parking),
        (None, None) => Err(Violations::one(
            "details",
            "roaming or parking details are required",
        )),
    }
}

fn roaming_from_pb(r: &pb::RoamingDetails) -> Result<RoamingDetails, Violations> {
    let mut v = Violations::new();
    let device_model = v.check("device_model", DeviceModel::parse(&r.device_model));
    let country = v.check("country", CountryCode::parse(&r.country));
    let pickup_booth = v.check("pickup_booth", BoothCode::parse(&r.pickup_booth));
    let return_booth = v.check("return_booth", BoothCode::parse(&r.return_booth));
    let start = v.check("start_date", DateRange::parse_date(&r.start_date));
    let end = v.check("end_date", DateRange::parse_date(&r.end_date));
    let dates = match (start, end) {
        (Some(s), Some(e)) => v.check("end_date", DateRange::new(s, e)),
        _ => None,
    };
    match (device_model, country, pickup_booth, return_booth, dates) {
        (
            Some(device_model),
            Some(country),
            Some(pickup_booth),
            Some(return_booth),
            Some(dates),
        ) => Ok(RoamingDetails {
            device_model,
            country,
            pickup_booth,
            return_booth,
            dates,
        }),
        _ => Err(v),
    }
}

fn parking_from_pb(p: &pb::ParkingDetails) -> Result<ParkingDetails, Violations> {
    let mut v = Violations::new();
    let space_id = v.check("space_id", SpaceId::parse(&p.space_id));
    let vehicle_plate = v.check("vehicle_plate", VehiclePlate::parse(&p.vehicle_plate));
    let start = v.check("start_time", instant_from_pb(p.start_time.as_ref()));
    let end = v.check("end_time", instant_from_pb(p.end_time.as_ref()));
    let window = match (start, end) {
        (Some(s), Some(e)) => v.check("end_time", TimeWindow::new(s, e)),
        _ => None,
    };
    match (space_id, vehicle_plate, window) {
        (Some(space_id), Some(vehicle_plate), Some(window)) => Ok(ParkingDetails {
            space_id,
            vehicle_plate,
            window,
        }),
        _ => Err(v),
    }
}

pub fn status_to_pb(s: Status) -> pb::ReservationStatus {
    match s {
        Status::PendingPayment => pb::ReservationStatus::PendingPayment,
        Status::Reserved => pb::ReservationStatus::Reserved,
        Status::RentalAccepted => pb::ReservationStatus::RentalAccepted,
        Status::InUse => pb::ReservationStatus::InUse,
        Status::Returned => pb::ReservationStatus::Returned,
        Status::Completed => pb::ReservationStatus::Completed,
        Status::Rejected => pb::ReservationStatus::Rejected,
        Status::Canceled => pb::ReservationStatus::Canceled,
    }
}

pub fn status_from_pb(s: i32) -> Option<Status> {
    Some(match pb::ReservationStatus::try_from(s).ok()? {
        pb::ReservationStatus::Unspecified => return None,
        pb::ReservationStatus::PendingPayment => Status::PendingPayment,
        pb::ReservationStatus::Reserved => Status::Reserved,
        pb::ReservationStatus::RentalAccepted => Status::RentalAccepted,
        pb::ReservationStatus::InUse => Status::InUse,
        pb::ReservationStatus::Returned => Status::Returned,
        pb::ReservationStatus::Completed => Status::Completed,
        pb::ReservationStatus::Rejected => Status::Rejected,
        pb::ReservationStatus::Canceled => Status::Canceled,
    })
}
