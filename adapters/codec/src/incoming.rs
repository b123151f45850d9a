//! Inbound protobuf events -> each consumer's domain input.

use domain_kernel::{
    BoothCode, CustomerId, DeviceModel, EventId, LotCode, Recorded, ReservationId, Serial, SpaceId,
    Timestamp, Violations,
};
use domain_parking::{ParkingReservation, SessionStatus};
use domain_payment::{PaymentStatus, ReservationClosed};
use domain_rental::{RentalStatus, RoamingReservation};
use domain_reservation::{CatalogEvent, Details, Status, Usage, UsageEvent};
use domain_view::{Fact, SpaceLot, ViewEvent};
use prost::Message;
use proto::{parking as pk, payment as pp, rental as pr, reservation as pb, subjects as s};

use crate::convert::{details_from_pb, instant_from_pb, money_from_pb, status_from_pb};

/// A message that cannot be turned into a domain input: a poison message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {subject} is not a valid protobuf message: {source}")]
    Undecodable {
        subject: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("{subject} carries invalid fields: {detail}")]
    Invalid { subject: String, detail: String },
}

/// One delivered message.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
}

impl Inbound<'_> {
    fn decode<M: Message + Default>(&self) -> Result<M, DecodeError> {
        M::decode(self.payload).map_err(|source| DecodeError::Undecodable {
            subject: self.subject.to_owned(),
            source,
        })
    }

    fn invalid(&self, detail: impl std::fmt::Display) -> DecodeError {
        DecodeError::Invalid {
            subject: self.subject.to_owned(),
            detail: detail.to_string(),
        }
    }

    /// The envelope every event carries: id and time.
    fn envelope(
        &self,
        event_id: &str,
        occurred_at: Option<&prost_types::Timestamp>,
    ) -> Result<(EventId, Timestamp), DecodeError> {
        let id = EventId::parse(event_id).map_err(|e| self.invalid(format!("event_id: {e}")))?;
        let at =
            instant_from_pb(occurred_at).map_err(|e| self.invalid(format!("occurred_at: {e}")))?;
        Ok((id, at))
    }

    fn reservation_id(&self, raw: &str) -> Result<ReservationId, DecodeError> {
        ReservationId::parse(raw).map_err(|e| self.invalid(format!("reservation_id: {e}")))
    }

    fn parse<T, E: std::fmt::Display>(
        &self,
        field: &str,
        r: Result<T, E>,
    ) -> Result<T, DecodeError> {
        r.map_err(|e| self.invalid(format!("{field}: {e}")))
    }

    fn violations<T>(&self, r: Result<T, Violations>) -> Result<T, DecodeError> {
        r.map_err(|v| self.invalid(v))
    }
}

/// A reservation as the `reserved`, `canceled` and `rejected` events describe it.
struct Described {
    event_id: EventId,
    occurred_at: Timestamp,
    reservation_id: ReservationId,
    customer_id: CustomerId,
    price: domain_kernel::Money,
    details: Details,
}

fn described(m: &Inbound<'_>) -> Result<Option<(Status, Described)>, DecodeError> {
    macro_rules! describe {
        ($msg:ty, $oneof:path, $status:expr) => {{
            use $oneof as D;
            let e: $msg = m.decode()?;
            let (event_id, occurred_at) = m.envelope(&e.event_id, e.occurred_at.as_ref())?;
            let (roaming, parking) = match &e.details {
                Some(D::Roaming(r)) => (Some(r), None),
                Some(D::Parking(p)) => (None, Some(p)),
                None => (None, None),
            };
            (
                $status,
                Described {
                    event_id,
                    occurred_at,
                    reservation_id: m.reservation_id(&e.reservation_id)?,
                    customer_id: m.parse("customer_id", CustomerId::parse(&e.customer_id))?,
                    price: m.parse("price", money_from_pb(e.price.as_ref()))?,
                    details: m.violations(details_from_pb(roaming, parking))?,
                },
            )
        }};
    }
    Ok(Some(match m.subject {
        s::RESERVATION_RESERVED => {
            describe!(
                pb::ReservationReserved,
                pb::reservation_reserved::Details,
                Status::Reserved
            )
        }
        s::RESERVATION_CANCELED => {
            describe!(
                pb::ReservationCanceled,
                pb::reservation_canceled::Details,
                Status::Canceled
            )
        }
        s::RESERVATION_REJECTED => {
            describe!(
                pb::ReservationRejected,
                pb::reservation_rejected::Details,
                Status::Rejected
            )
        }
        _ => return Ok(None),
    }))
}

/// What the reservation service consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationInput {
    Usage(Recorded<UsageEvent>),
    Catalog(Recorded<CatalogEvent>),
}

/// Rental and parking events for the reservation service; `None` for subjects it
/// does not consume.
pub fn to_reservation_input(m: Inbound<'_>) -> Result<Option<ReservationInput>, DecodeError> {
    macro_rules! usage {
        ($msg:ty, $usage:expr) => {{
            let e: $msg = m.decode()?;
            let (id, at) = m.envelope(&e.event_id, e.occurred_at.as_ref())?;
            let reservation_id = m.reservation_id(&e.reservation_id)?;
            ReservationInput::Usage(Recorded::new(
                id,
                at,
                UsageEvent {
                    reservation_id,
                    usage: $usage,
                },
            ))
        }};
    }
    Ok(Some(match m.subject {
        s::RENTAL_ACCEPTED => usage!(pr::RentalAccepted, Usage::RentalAccepted),
        s::RENTAL_HANDED_OVER => usage!(pr::RentalHandedOver, Usage::HandedOver),
        s::RENTAL_RETURNED => usage!(pr::RentalReturned, Usage::Returned),
        s::RENTAL_RETRIEVED => usage!(pr::RentalRetrieved, Usage::Retrieved),
        s::RENTAL_CANCELED => usage!(pr::RentalCanceled, Usage::RentalCanceled),
        s::PARKING_STARTED => usage!(pk::ParkingStarted, Usage::ParkingStarted),
        s::PARKING_ENDED => usage!(pk::ParkingEnded, Usage::ParkingEnded),
        s::RENTAL_DEVICE_REGISTERED => {
            let e: pr::DeviceRegistered = m.decode()?;
            let (id, at) = m.envelope(&e.event_id, e.occurred_at.as_ref())?;
            ReservationInput::Catalog(Recorded::new(
                id,
                at,
                CatalogEvent::DeviceRegistered {
                    serial: m.parse("serial", Serial::parse(&e.serial))?,
                    device_model: m.parse("device_model", DeviceModel::parse(&e.device_model))?,
                    booth: m.parse("booth", BoothCode::parse(&e.booth))?,
                },
            ))
        }
        s::RENTAL_DEVICE_RELOCATED => {
            let e: pr::DeviceRelocated = m.decode()?;
            let (id, at) = m.envelope(&e.event_id, e.occurred_at.as_ref())?;
            ReservationInput::Catalog(Recorded::new(
                id,
                at,
                CatalogEvent::DeviceRelocated {
                    serial: m.parse("serial", Serial::parse(&e.serial))?,
                    device_model: m.parse("device_model", DeviceModel::parse(&e.device_model))?,
                    to_booth: m.parse("to_booth", BoothCode::parse(&e.to_booth))?,
                },
            ))
        }
        s::PARKING_SPACE_REGISTERED => {
            let e: pk::SpaceRegistered = m.decode()?;
            let (id, at) = m.envelope(&e.event_id, e.occurred_at.as_ref())?;
            ReservationInput::Catalog(Recorded::new(
                id,
                at,
                CatalogEvent::SpaceRegistered {
                    space_id: m.parse("space_id", SpaceId::parse(&e.space_id))?,
                    hourly_rate: m.parse(
                        "hourly_rate",
                        money_from_pb(e.hourly_rate.as_ref())
                            .and_then(domain_kernel::Money::as_rate),
                    )?,
                },
            ))
        }
        _ => return Ok(None),
    }))
}

/// What the payment service consumes: a reservation that ended unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentInput {
    Rejected(Recorded<ReservationClosed>),
    Canceled(Recorded<ReservationClosed>),
}

/// `reservation.rejected` / `.canceled` for the payment service.
pub fn to_closed_reservation(m: Inbound<'_>) -> Result<Option<PaymentInput>, DecodeError> {
    let Some((status, d)) = described(&m)? else {
        return Ok(None);
    };
    let closed = Recorded::new(
        d.event_id,
        d.occurred_at,
        ReservationClosed {
            reservation_id: d.reservation_id,
            price: d.price,
        },
    );
    Ok(match status {
        Status::Rejected => Some(PaymentInput::Rejected(closed)),
        Status::Canceled => Some(PaymentInput::Canceled(closed)),
        _ => None,
    })
}

/// Reserved or canceled, for the rental and parking services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle<T> {
    Reserved(Recorded<T>),
    Canceled(Recorded<T>),
}

fn lifecycle<T>(status: Status, event: Recorded<T>) -> Option<Lifecycle<T>> {
    match status {
        Status::Reserved => Some(Lifecycle::Reserved(event)),
        Status::Canceled => Some(Lifecycle::Canceled(event)),
        _ => None,
    }
}

/// Roaming `reservation.reserved` / `.canceled` for the rental service.
pub fn to_roaming_reservation(
    m: Inbound<'_>,
) -> Result<Option<Lifecycle<RoamingReservation>>, DecodeError> {
    let Some((status, d)) = described(&m)? else {
        return Ok(None);
    };
    let Details::Roaming(r) = d.details else {
        return Ok(None);
    };
    let event = Recorded::new(
        d.event_id,
        d.occurred_at,
        RoamingReservation {
            reservation_id: d.reservation_id,
            customer_id: d.customer_id,
            device_model: r.device_model,
            country: r.country,
            pickup_booth: r.pickup_booth,
            return_booth: r.return_booth,
            dates: r.dates,
        },
    );
    Ok(lifecycle(status, event))
}

/// Parking `reservation.reserved` / `.canceled` for the parking replica.
pub fn to_parking_reservation(
    m: Inbound<'_>,
) -> Result<Option<Lifecycle<ParkingReservation>>, DecodeError> {
    let Some((status, d)) = described(&m)? else {
        return Ok(None);
    };
    let Details::Parking(p) = d.details else {
        return Ok(None);
    };
    let event = Recorded::new(
        d.event_id,
        d.occurred_at,
        ParkingReservation {
            reservation_id: d.reservation_id,
            space_id: p.space_id,
            vehicle_plate: p.vehicle_plate,
            window: p.window,
        },
    );
    Ok(lifecycle(status, event))
}

/// `roaming.parking.space_registered`, for the view: which lot a space is in.
pub fn to_space_lot(m: Inbound<'_>) -> Result<Option<Recorded<SpaceLot>>, DecodeError> {
    if m.subject != s::PARKING_SPACE_REGISTERED {
        return Ok(None);
    }
    let e: pk::SpaceRegistered = m.decode()?;
    let (id, at) = m.envelope(&e.event_id, e.occurred_at.as_ref())?;
    Ok(Some(Recorded::new(
        id,
        at,
        SpaceLot {
            space_id: m.parse("space_id", SpaceId::parse(&e.space_id))?,
            lot: m.parse("lot", LotCode::parse(&e.lot))?,
        },
    )))
}

/// Every event about a reservation, for the view.
pub fn to_view_event(m: Inbound<'_>) -> Result<Option<Recorded<ViewEvent>>, DecodeError> {
    if let Some((status, d)) = described(&m)? {
        let fact = Fact::Described {
            customer_id: d.customer_id,
            price: d.price,
            details: d.details,
            status,
        };
        return Ok(Some(Recorded::new(
            d.event_id,
            d.occurred_at,
            ViewEvent {
                reservation_id: d.reservation_id,
                fact,
            },
        )));
    }
    macro_rules! fact {
        ($msg:ty, |$e:ident| $fact:expr) => {{
            let $e: $msg = m.decode()?;
            let (id, at) = m.envelope(&$e.event_id, $e.occurred_at.as_ref())?;
            let reservation_id = m.reservation_id(&$e.reservation_id)?;
            let fact = $fact;
            Recorded::new(
                id,
                at,
                ViewEvent {
                    reservation_id,
                    fact,
                },
            )
        }};
    }
    let serial = |raw: &str| -> Result<Option<Serial>, DecodeError> {
        if raw.is_empty() {
            Ok(None)
        } else {
            m.parse("serial", Serial::parse(raw)).map(Some)
        }
    };
    Ok(Some(match m.subject {
        s::RESERVATION_STATUS_CHANGED => {
            fact!(pb::ReservationStatusChanged, |e| Fact::StatusChanged {
                customer_id: m.parse("customer_id", CustomerId::parse(&e.customer_id))?,
                to: status_from_pb(e.to_status)
                    .ok_or_else(|| m.invalid("to_status: unknown status"))?,
            })
        }
        s::PAYMENT_CAPTURED => fact!(pp::PaymentCaptured, |e| Fact::Payment(
            PaymentStatus::Captured
        )),
        s::PAYMENT_DECLINED => fact!(pp::PaymentDeclined, |e| Fact::Payment(
            PaymentStatus::Declined
        )),
        s::PAYMENT_REFUNDED => fact!(pp::PaymentRefunded, |e| Fact::Payment(
            PaymentStatus::Refunded
        )),
        s::PAYMENT_VOIDED => fact!(pp::PaymentVoided, |e| Fact::Payment(PaymentStatus::Voided)),
        s::RENTAL_ACCEPTED => fact!(pr::RentalAccepted, |e| Fact::Rental {
            status: RentalStatus::Accepted,
            serial: None
        }),
        s::RENTAL_HANDED_OVER => fact!(pr::RentalHandedOver, |e| Fact::Rental {
            status: RentalStatus::HandedOver,
            serial: serial(&e.serial)?
        }),
        s::RENTAL_RETURNED => fact!(pr::RentalReturned, |e| Fact::Rental {
            status: RentalStatus::Returned,
            serial: serial(&e.serial)?
        }),
        s::RENTAL_RETRIEVED => fact!(pr::RentalRetrieved, |e| Fact::Rental {
            status: RentalStatus::Retrieved,
            serial: serial(&e.serial)?
        }),
        s::RENTAL_CANCELED => fact!(pr::RentalCanceled, |e| Fact::Rental {
            status: RentalStatus::Canceled,
            serial: None
        }),
        s::PARKING_STARTED => fact!(pk::ParkingStarted, |e| Fact::Session(
            SessionStatus::Started
        )),
        s::PARKING_ENDED => fact!(pk::ParkingEnded, |e| Fact::Session(SessionStatus::Ended)),
        _ => return Ok(None),
    }))
}
