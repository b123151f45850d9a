//! Invariant 2, no overbooking, and invariant 8's bound on a customer's claims,
//! as pure rules.
//!
//! The rules alone is not enough under concurrency: the repository must evaluate it
//! and insert the new claim in one atomic step (a row lock on PostgreSQL, an
//! immediate write transaction on SQLite, a mutex in the fakes). See
//! [`ReservationRepository::insert_pending`](crate::ports::ReservationRepository::insert_pending).

use domain_kernel::DateRange;

use crate::reservation::Details;

/// How many claims (reservations awaiting payment) one customer may have at
/// once unless configured otherwise.
pub const DEFAULT_MAX_PENDING_PER_CUSTOMER: u32 = 3;

/// Whether a customer who has `pending` claims awaiting payment may make
/// another (invariant 8): fewer than `max_pending`. A claim holds capacity
/// while its payment runs, so without this bound one customer's many
/// concurrent calls could keep stock from everyone else.
pub fn customer_may_claim(pending: usize, max_pending: u32) -> bool {
    u32::try_from(pending).is_ok_and(|n| n < max_pending)
}

/// Whether `candidate` fits next to the `holdings` (reservations in a holding
/// status; see [`Status::is_holding`](crate::Status::is_holding)).
///
/// - Roaming: on every day of the candidate's dates, the reservations of the same
///   (pickup booth, device model) plus the candidate must not outnumber `units`,
///   the booth's stock of that model.
/// - Parking: no holding of the same space may overlap the candidate's window
///   (`units` is 1 for a known space).
///
/// Holdings of other resources are ignored, so callers may pass a superset.
pub fn admits<'a>(
    candidate: &Details,
    units: u32,
    holdings: impl IntoIterator<Item = &'a Details>,
) -> bool {
    match candidate {
        Details::Roaming(c) => days_admit(
            &c.dates,
            units,
            holdings.into_iter().filter_map(|h| match h {
                Details::Roaming(h)
                    if h.pickup_booth == c.pickup_booth && h.device_model == c.device_model =>
                {
                    Some(h.dates)
                }
                _ => None,
            }),
        ),
        Details::Parking(c) => {
            units > 0
                && holdings.into_iter().all(|h| match h {
                    Details::Parking(h) => {
                        h.space_id != c.space_id || !h.window.overlaps(&c.window)
                    }
                    Details::Roaming(_) => true,
                })
        }
    }
}

/// The roaming rule on dates alone: on every day of `dates`, fewer than `units`
/// of `held` (the date ranges of the holdings of the same booth and model; ranges
/// that do not overlap are ignored) cover that day. Stores that read only the
/// dates of the holdings call this instead of [`admits`].
pub fn days_admit(
    dates: &DateRange,
    units: u32,
    held: impl IntoIterator<Item = DateRange>,
) -> bool {
    let same: Vec<_> = held.into_iter().filter(|d| d.overlaps(dates)).collect();
    dates.iter_days().all(|day| {
        let taken = same.iter().filter(|d| d.contains(day)).count();
        u32::try_from(taken).is_ok_and(|taken| taken < units)
    })
}

#[cfg(test)]
mod tests {
    use domain_kernel::{
        BoothCode, CountryCode, DateRange, DeviceModel, SpaceId, TimeWindow, VehiclePlate,
    };
    use time::Duration;
    use time::macros::{date, datetime};

    use super::*;
    use crate::{ParkingDetails, RoamingDetails};

    fn roam(booth: &str, model: &str, from: u8, to: u8) -> Details {
        Details::Roaming(RoamingDetails {
            device_model: DeviceModel::parse(model).unwrap(),
            country: CountryCode::parse("JP").unwrap(),
            pickup_booth: BoothCode::parse(booth).unwrap(),
            return_booth: BoothCode::parse("GMP").unwrap(),
            dates: DateRange::new(
                date!(2026 - 12 - 01).replace_day(from).unwrap(),
                date!(2026 - 12 - 01).replace_day(to).unwrap(),
            )
            .unwrap(),
        })
    }

    fn park(space: &str, from_h: i64, to_h: i64) -> Details {
        let base = datetime!(2026-12-01 00:00 UTC);
        Details::Parking(ParkingDetails {
            space_id: SpaceId::parse(space).unwrap(),
            vehicle_plate: VehiclePlate::parse("12가3456").unwrap(),
            window: TimeWindow::new(base + Duration::hours(from_h), base + Duration::hours(to_h))
                .unwrap(),
        })
    }

    #[test]
    fn roaming_fills_up_per_day() {
        let held = [
            roam("ICN-T1", "egg-lte", 1, 3),
            roam("ICN-T1", "egg-lte", 3, 5),
        ];
        // Day 3 already has two of two units.
        assert!(!admits(&roam("ICN-T1", "egg-lte", 3, 3), 2, &held));
        // Day 2 has one of two.
        assert!(admits(&roam("ICN-T1", "egg-lte", 2, 2), 2, &held));
        // A range crossing the full day is refused as a whole.
        assert!(!admits(&roam("ICN-T1", "egg-lte", 2, 4), 2, &held));
        // Three units leave room.
        assert!(admits(&roam("ICN-T1", "egg-lte", 2, 4), 3, &held));
    }

    #[test]
    fn roaming_counts_only_the_same_booth_and_model() {
        let held = [
            roam("ICN-T2", "egg-lte", 1, 5),
            roam("ICN-T1", "phone-5g", 1, 5),
        ];
        assert!(admits(&roam("ICN-T1", "egg-lte", 1, 5), 1, &held));
    }

    #[test]
    fn no_stock_admits_nothing() {
        assert!(!admits(&roam("ICN-T1", "egg-lte", 1, 1), 0, &[]));
        assert!(!admits(&park("P1-B1-001", 1, 2), 0, &[]));
    }

    #[test]
    fn parking_refuses_any_overlap_on_the_same_space() {
        let held = [park("P1-B1-001", 10, 12)];
        assert!(!admits(&park("P1-B1-001", 11, 13), 1, &held));
        assert!(!admits(&park("P1-B1-001", 9, 11), 1, &held));
        assert!(admits(&park("P1-B1-001", 12, 13), 1, &held), "back to back");
        assert!(
            admits(&park("P1-B1-002", 10, 12), 1, &held),
            "another space"
        );
    }

    #[test]
    fn a_customer_may_claim_while_under_the_limit() {
        assert!(customer_may_claim(0, 3));
        assert!(customer_may_claim(2, 3));
        assert!(!customer_may_claim(3, 3));
        assert!(
            !customer_may_claim(7, 3),
            "over the limit (a lowered setting)"
        );
        assert!(!customer_may_claim(0, 0), "a limit of 0 admits nothing");
        assert!(!customer_may_claim(usize::MAX, u32::MAX));
    }
}
