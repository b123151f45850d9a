use domain_kernel::{BoothCode, Principal, Role};

use crate::fold::ReservationView;

/// A customer sees only their own reservations (invariant 5); operators and
/// services see all. A view whose owner is not known yet is shown to no customer.
pub fn may_see(principal: &Principal, view: &ReservationView) -> bool {
    principal.may(&[Role::Service])
        || view
            .customer_id
            .as_ref()
            .is_some_and(|c| principal.owns_or_operates(c))
}

/// Space schedules: gates, services and operators.
pub fn may_read_space_schedule(principal: &Principal) -> bool {
    principal.may(&[Role::Gate, Role::Service])
}

/// Booth schedules: that booth's staff, operators.
pub fn may_read_booth_schedule(principal: &Principal, booth: &BoothCode) -> bool {
    principal.acts_for_booth(booth)
}
