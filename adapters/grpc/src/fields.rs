//! Request fields to domain values at the boundary: every bad field of a
//! request is named in one `INVALID_ARGUMENT` with `BadRequest` field
//! violations ([`invalid`]).

use std::fmt::Display;

use domain_kernel::{CardDetails, ReservationId, Violations};
use tonic::Status;

use crate::status::invalid;

/// A request of several fields: `parse` checks each of them into the
/// violations it is given (all of them, so that every bad field is named)
/// and returns the values when all parsed. The values, or every violation.
pub(crate) fn all<T>(parse: impl FnOnce(&mut Violations) -> Option<T>) -> Result<T, Status> {
    let mut v = Violations::new();
    match parse(&mut v) {
        Some(parsed) if v.is_empty() => Ok(parsed),
        _ => Err(invalid(&v)),
    }
}

/// A request of one field: its value, or `INVALID_ARGUMENT` naming `field`.
pub(crate) fn one<T, E: Display>(field: &str, parsed: Result<T, E>) -> Result<T, Status> {
    parsed.map_err(|e| invalid(&Violations::one(field, e)))
}

/// A field that may be left empty (or blank): `None` then, else `parse`d.
pub(crate) fn optional<T, E>(
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, E> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse(raw).map(Some)
    }
}

/// The reservation a call is about, named on the RPC span.
pub(crate) fn reservation_id(raw: &str) -> Result<ReservationId, Status> {
    let id = one("reservation_id", ReservationId::parse(raw))?;
    crate::record_reservation(&id);
    Ok(id)
}

/// The card of a request, under `field` (violations of its parts nested
/// under it), valid today.
pub(crate) fn card(
    field: &str,
    card: Option<&proto::common::PaymentCard>,
    v: &mut Violations,
) -> Option<CardDetails> {
    let Some(c) = card else {
        v.add(field, "card details are required");
        return None;
    };
    let today = time::OffsetDateTime::now_utc().date();
    CardDetails::parse(
        &c.card_number,
        c.expiry_month,
        c.expiry_year,
        &c.holder_name,
        &c.company,
        today,
    )
    .map_err(|e| v.extend(e.nested(field)))
    .ok()
}
