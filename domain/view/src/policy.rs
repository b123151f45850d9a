use domain_kernel::{BoothCode, LotCode, Principal, Role, SpaceId};

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

/// Which lot a space belongs to (`roaming.parking.space_registered`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceLot {
    pub space_id: SpaceId,
    pub lot: LotCode,
}

/// Space schedules: services, operators, and the gates of the space's lot
/// (`lot`: where the space is, once the view learnt it; a gate is refused a
/// space whose lot is not known).
pub fn may_read_space_schedule(principal: &Principal, lot: Option<&LotCode>) -> bool {
    principal.may(&[Role::Service]) || lot.is_some_and(|l| principal.acts_for_lot(l))
}

/// A view as a schedule shows it to `principal`: a gate needs the plate and
/// the window, not who the customer is, so the customer id is left out.
pub fn on_schedule_for(principal: &Principal, view: &ReservationView) -> ReservationView {
    let mut shown = view.clone();
    if !principal.may(&[Role::Service]) {
        shown.customer_id = None;
    }
    shown
}

/// Booth schedules: that booth's staff, operators.
pub fn may_read_booth_schedule(principal: &Principal, booth: &BoothCode) -> bool {
    principal.acts_for_booth(booth)
}
