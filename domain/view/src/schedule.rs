use domain_kernel::{BoothCode, SpaceId};
use domain_reservation::{Details, Status};
use time::Date;

use crate::fold::ReservationView;

/// Reservations that still count on a schedule: paid and not withdrawn.
fn scheduled(v: &ReservationView) -> bool {
    v.status.is_paid() && v.status != Status::Canceled
}

/// The reservations of `space` whose window touches `date` (UTC), by start.
pub fn space_schedule<'a>(
    views: impl IntoIterator<Item = &'a ReservationView>,
    space: &SpaceId,
    date: Date,
) -> Vec<&'a ReservationView> {
    let mut out: Vec<_> = views
        .into_iter()
        .filter(|v| scheduled(v))
        .filter(|v| matches!(&v.details, Some(Details::Parking(p)) if &p.space_id == space && p.window.touches_day(date)))
        .collect();
    out.sort_by_key(|v| match &v.details {
        Some(Details::Parking(p)) => Some(p.window.start()),
        _ => None,
    });
    out
}

/// Pickups at `booth` on `date` and returns due there on `date`.
pub fn booth_schedule<'a>(
    views: impl IntoIterator<Item = &'a ReservationView>,
    booth: &BoothCode,
    date: Date,
) -> (Vec<&'a ReservationView>, Vec<&'a ReservationView>) {
    let mut pickups = Vec::new();
    let mut returns = Vec::new();
    for v in views.into_iter().filter(|v| scheduled(v)) {
        if let Some(Details::Roaming(r)) = &v.details {
            if &r.pickup_booth == booth && r.dates.start() == date {
                pickups.push(v);
            }
            if &r.return_booth == booth && r.dates.end() == date {
                returns.push(v);
            }
        }
    }
    (pickups, returns)
}
