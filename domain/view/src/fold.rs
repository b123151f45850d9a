use domain_kernel::{CustomerId, Money, Recorded, ReservationId, Serial, Timestamp};
use domain_parking::SessionStatus;
use domain_payment::PaymentStatus;
use domain_rental::RentalStatus;
use domain_reservation::{Details, Kind, Status};

/// What an event says about a reservation, in the view's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// `reservation.reserved`, `.rejected` or `.canceled`: who, what, how much,
    /// and the status it implies.
    Described {
        customer_id: CustomerId,
        price: Money,
        details: Details,
        status: Status,
    },
    /// `reservation.status_changed`.
    StatusChanged { customer_id: CustomerId, to: Status },
    /// `payment.*`.
    Payment(PaymentStatus),
    /// `rental.*`, with the serial once handed over.
    Rental {
        status: RentalStatus,
        serial: Option<Serial>,
    },
    /// `parking.started` / `.ended`.
    Session(SessionStatus),
}

/// An inbound event for the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewEvent {
    pub reservation_id: ReservationId,
    pub fact: Fact,
}

/// One step of a reservation's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    pub status: Status,
    pub at: Timestamp,
}

/// A reservation on "my page". Events may arrive in any order, so everything but
/// the id may be unknown for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationView {
    pub reservation_id: ReservationId,
    pub customer_id: Option<CustomerId>,
    pub status: Status,
    pub price: Option<Money>,
    pub details: Option<Details>,
    pub payment_status: Option<PaymentStatus>,
    pub rental_status: Option<RentalStatus>,
    pub session_status: Option<SessionStatus>,
    pub device_serial: Option<Serial>,
    pub history: Vec<StatusChange>,
    pub updated_at: Timestamp,
    /// Bumped on every applied change; lets watchers detect gaps.
    pub version: u64,
}

impl ReservationView {
    fn empty(reservation_id: ReservationId, at: Timestamp) -> Self {
        Self {
            reservation_id,
            customer_id: None,
            status: Status::PendingPayment,
            price: None,
            details: None,
            payment_status: None,
            rental_status: None,
            session_status: None,
            device_serial: None,
            history: Vec::new(),
            updated_at: at,
            version: 0,
        }
    }

    pub fn kind(&self) -> Option<Kind> {
        self.details.as_ref().map(Details::kind)
    }

    fn advance(&mut self, to: Status, at: Timestamp) -> bool {
        if self.status.is_terminal() || to.rank() <= self.status.rank() {
            return false;
        }
        self.status = to;
        self.history.push(StatusChange { status: to, at });
        true
    }
}

fn payment_rank(s: PaymentStatus) -> u8 {
    match s {
        PaymentStatus::Captured | PaymentStatus::Declined => 1,
        PaymentStatus::Refunded | PaymentStatus::Voided => 2,
    }
}

fn rental_rank(s: RentalStatus) -> u8 {
    match s {
        RentalStatus::Accepted => 1,
        RentalStatus::HandedOver => 2,
        RentalStatus::Returned => 3,
        RentalStatus::Retrieved | RentalStatus::Canceled => 4,
    }
}

fn session_rank(s: SessionStatus) -> u8 {
    match s {
        SessionStatus::Started => 1,
        SessionStatus::Ended => 2,
    }
}

/// Replaces `slot` when `new` ranks higher than what it holds.
fn raise<T: Copy>(slot: &mut Option<T>, new: T, rank: fn(T) -> u8) -> bool {
    if slot.is_some_and(|old| rank(old) >= rank(new)) {
        return false;
    }
    *slot = Some(new);
    true
}

fn fill<T: Clone + PartialEq>(slot: &mut Option<T>, value: &T) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(value.clone());
    true
}

/// Folds `event` into `view` (the stored view of its reservation, if any).
/// Returns the new view when anything changed, `None` when the event was
/// stale or repeated.
pub fn apply(
    view: Option<&ReservationView>,
    event: &Recorded<ViewEvent>,
) -> Option<ReservationView> {
    let at = event.occurred_at;
    let mut next = view
        .cloned()
        .unwrap_or_else(|| ReservationView::empty(event.event.reservation_id, at));
    let changed = match &event.event.fact {
        Fact::Described {
            customer_id,
            price,
            details,
            status,
        } => {
            let a = fill(&mut next.customer_id, customer_id);
            let b = fill(&mut next.price, price);
            let c = fill(&mut next.details, details);
            let d = next.advance(*status, at);
            a | b | c | d
        }
        Fact::StatusChanged { customer_id, to } => {
            let a = fill(&mut next.customer_id, customer_id);
            let b = next.advance(*to, at);
            a | b
        }
        Fact::Payment(s) => raise(&mut next.payment_status, *s, payment_rank),
        Fact::Rental { status, serial } => {
            let a = raise(&mut next.rental_status, *status, rental_rank);
            let b = serial
                .as_ref()
                .is_some_and(|s| fill(&mut next.device_serial, s));
            a | b
        }
        Fact::Session(s) => raise(&mut next.session_status, *s, session_rank),
    };
    if !changed {
        return None;
    }
    next.version += 1;
    next.updated_at = next.updated_at.max(at);
    Some(next)
}

#[cfg(test)]
mod tests;
