use std::fmt;
use std::ops::Deref;

use domain_kernel::{
    BoothCode, CountryCode, CustomerId, DateRange, DeviceModel, Money, RequestId, ReservationId,
    SpaceId, TimeWindow, Timestamp, VehiclePlate,
};

mod events;

pub use events::{CatalogEvent, ReservationEvent, Usage, UsageEvent};

/// Lifecycle of a reservation (DOMAIN.md, "Lifecycles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    PendingPayment,
    Reserved,
    RentalAccepted,
    InUse,
    Returned,
    Completed,
    Rejected,
    Canceled,
}

impl Status {
    pub const ALL: [Self; 8] = [
        Self::PendingPayment,
        Self::Reserved,
        Self::RentalAccepted,
        Self::InUse,
        Self::Returned,
        Self::Completed,
        Self::Rejected,
        Self::Canceled,
    ];

    /// Statuses that hold capacity (invariant 2).
    pub const fn is_holding(self) -> bool {
        matches!(
            self,
            Self::PendingPayment
                | Self::Reserved
                | Self::RentalAccepted
                | Self::InUse
                | Self::Returned
        )
    }

    /// No transition leaves these.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Rejected | Self::Canceled)
    }

    /// Statuses that imply a captured payment (invariant 1).
    pub const fn is_paid(self) -> bool {
        matches!(
            self,
            Self::Reserved
                | Self::RentalAccepted
                | Self::InUse
                | Self::Returned
                | Self::Completed
                | Self::Canceled
        )
    }

    /// Position along the forward path; every terminal status is last.
    pub const fn rank(self) -> u8 {
        match self {
            Self::PendingPayment => 0,
            Self::Reserved => 1,
            Self::RentalAccepted => 2,
            Self::InUse => 3,
            Self::Returned => 4,
            Self::Completed | Self::Rejected | Self::Canceled => 5,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "PENDING_PAYMENT",
            Self::Reserved => "RESERVED",
            Self::RentalAccepted => "RENTAL_ACCEPTED",
            Self::InUse => "IN_USE",
            Self::Returned => "RETURNED",
            Self::Completed => "COMPLETED",
            Self::Rejected => "REJECTED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Roaming,
    Parking,
}

/// A roaming device for a country, picked up and returned at booths, for whole days.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoamingDetails {
    pub device_model: DeviceModel,
    pub country: CountryCode,
    pub pickup_booth: BoothCode,
    pub return_booth: BoothCode,
    pub dates: DateRange,
}

/// A parking space for a vehicle, for a window of time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParkingDetails {
    pub space_id: SpaceId,
    pub vehicle_plate: VehiclePlate,
    pub window: TimeWindow,
}

/// The resource a reservation claims.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Details {
    Roaming(RoamingDetails),
    Parking(ParkingDetails),
}

impl Details {
    pub const fn kind(&self) -> Kind {
        match self {
            Self::Roaming(_) => Kind::Roaming,
            Self::Parking(_) => Kind::Parking,
        }
    }
}

/// Why a reservation never became `RESERVED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionReason {
    /// The card was declined.
    PaymentDeclined,
    /// Payment could not be reached (or its breaker was open).
    PaymentUnavailable,
    /// The payment outcome never came back (the reserve call died mid-way).
    PaymentTimedOut,
}

impl RejectionReason {
    /// Whether the client may simply try again (with the same request id).
    pub const fn is_retryable(self) -> bool {
        matches!(self, Self::PaymentUnavailable | Self::PaymentTimedOut)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PaymentDeclined => "PAYMENT_DECLINED",
            Self::PaymentUnavailable => "PAYMENT_UNAVAILABLE",
            Self::PaymentTimedOut => "PAYMENT_TIMED_OUT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::PaymentDeclined,
            Self::PaymentUnavailable,
            Self::PaymentTimedOut,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// The plain data of a reservation, readable by everyone; only [`Reservation`]'s
/// methods change it, so its state machine cannot be bypassed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationData {
    pub id: ReservationId,
    pub customer_id: CustomerId,
    pub request_id: RequestId,
    pub details: Details,
    /// Computed by the server (invariant 3).
    pub price: Money,
    pub status: Status,
    pub rejection: Option<RejectionReason>,
    pub cancel_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Optimistic concurrency: bumped by every saved change.
    pub version: u64,
}

/// The reservation aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation(ReservationData);

/// A command that the reservation's status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a reservation that is {from}")]
pub struct TransitionError {
    pub from: Status,
    pub action: &'static str,
}

/// Why a reservation cannot be canceled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefused {
    /// Pending, in use or finished (a device handed over, a car let in).
    #[error("a {0} reservation cannot be canceled")]
    Status(Status),
    /// A parking window whose entry has opened (or is about to): a gate may
    /// let the car in from now on.
    #[error("the parking window's entry has opened; it can no longer be canceled")]
    EntryOpen,
}

/// Why a reservation cannot be taken into use ([`Reservation::begin_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BeginUseRefused {
    /// The customer canceled first: the device must not leave the booth.
    #[error("the reservation was canceled")]
    Canceled,
    /// Not paid, rejected, or finished.
    #[error("a {0} reservation cannot be taken into use")]
    NotReserved(Status),
    /// Only roaming reservations are handed over.
    #[error("not a roaming reservation")]
    WrongKind,
}

impl Deref for Reservation {
    type Target = ReservationData;

    fn deref(&self) -> &ReservationData {
        &self.0
    }
}

impl Reservation {
    /// A new claim, holding capacity while payment is taken.
    pub(crate) fn pending(
        id: ReservationId,
        customer_id: CustomerId,
        request_id: RequestId,
        details: Details,
        price: Money,
        now: Timestamp,
    ) -> Self {
        Self(ReservationData {
            id,
            customer_id,
            request_id,
            details,
            price,
            status: Status::PendingPayment,
            rejection: None,
            cancel_reason: None,
            created_at: now,
            updated_at: now,
            version: 0,
        })
    }

    /// Rebuilds a reservation from storage. For repositories only.
    pub fn restore(data: ReservationData) -> Self {
        Self(data)
    }

    pub fn into_data(self) -> ReservationData {
        self.0
    }

    pub const fn kind(&self) -> Kind {
        self.0.details.kind()
    }

    /// Whether the `(customer, request_id)` idempotency key still points here. A
    /// reservation rejected for a retryable reason releases it, so that a retry
    /// with the same request id makes a fresh attempt.
    pub fn holds_request_id(&self) -> bool {
        !(self.0.status == Status::Rejected
            && self.0.rejection.is_some_and(RejectionReason::is_retryable))
    }

    /// Called by repositories after a successful save.
    pub fn bump_version(&mut self) {
        self.0.version += 1;
    }

    fn move_to(&mut self, to: Status, now: Timestamp) -> ReservationEvent {
        let from = self.0.status;
        self.0.status = to;
        self.0.updated_at = now;
        ReservationEvent::StatusChanged {
            reservation_id: self.0.id,
            customer_id: self.0.customer_id.clone(),
            from,
            to,
        }
    }

    /// Payment captured: `PENDING_PAYMENT -> RESERVED`.
    pub fn mark_paid(&mut self, now: Timestamp) -> Result<Vec<ReservationEvent>, TransitionError> {
        if self.0.status != Status::PendingPayment {
            return Err(TransitionError {
                from: self.0.status,
                action: "mark as paid",
            });
        }
        let changed = self.move_to(Status::Reserved, now);
        Ok(vec![ReservationEvent::Reserved(self.clone()), changed])
    }

    /// No payment: `PENDING_PAYMENT -> REJECTED`. The rejected event makes the
    /// payment service void a capture that may have happened anyway.
    pub fn reject(
        &mut self,
        reason: RejectionReason,
        now: Timestamp,
    ) -> Result<Vec<ReservationEvent>, TransitionError> {
        if self.0.status != Status::PendingPayment {
            return Err(TransitionError {
                from: self.0.status,
                action: "reject",
            });
        }
        self.0.rejection = Some(reason);
        let changed = self.move_to(Status::Rejected, now);
        Ok(vec![ReservationEvent::Rejected(self.clone()), changed])
    }

    /// Cancel before use: `RESERVED | RENTAL_ACCEPTED -> CANCELED`; a refund
    /// follows. A parking reservation only until its entry opens
    /// ([`TimeWindow::cancelable_at`](domain_kernel::TimeWindow::cancelable_at)).
    pub fn cancel(
        &mut self,
        reason: String,
        now: Timestamp,
    ) -> Result<Vec<ReservationEvent>, CancelRefused> {
        if !matches!(self.0.status, Status::Reserved | Status::RentalAccepted) {
            return Err(CancelRefused::Status(self.0.status));
        }
        if let Details::Parking(p) = &self.0.details
            && !p.window.cancelable_at(now)
        {
            return Err(CancelRefused::EntryOpen);
        }
        self.0.cancel_reason = Some(reason.clone());
        let changed = self.move_to(Status::Canceled, now);
        Ok(vec![
            ReservationEvent::Canceled {
                reservation: self.clone(),
                reason,
            },
            changed,
        ])
    }

    /// The booth is about to hand the device over (asked synchronously by the
    /// rental service, which commits the hand-over only if this succeeded):
    /// `RESERVED | RENTAL_ACCEPTED -> IN_USE`, after which the reservation can
    /// no longer be canceled. Whichever of this and [`Reservation::cancel`]
    /// is saved first wins (versioned save). Already in use or further along:
    /// no change, no events (a retried hand-over).
    pub fn begin_use(&mut self, now: Timestamp) -> Result<Vec<ReservationEvent>, BeginUseRefused> {
        if self.kind() != Kind::Roaming {
            return Err(BeginUseRefused::WrongKind);
        }
        match self.0.status {
            Status::Reserved | Status::RentalAccepted => Ok(vec![self.move_to(Status::InUse, now)]),
            Status::InUse | Status::Returned | Status::Completed => Ok(Vec::new()),
            Status::Canceled => Err(BeginUseRefused::Canceled),
            other @ (Status::PendingPayment | Status::Rejected) => {
                Err(BeginUseRefused::NotReserved(other))
            }
        }
    }

    /// Applies what rental or parking reported. Monotonic: a status never moves
    /// back, terminal statuses never move, an unpaid reservation never moves (so
    /// no event can skip payment), a repeated or stale event changes nothing
    /// (returns no events), and usage of the other kind is ignored.
    pub fn apply_usage(&mut self, usage: Usage, now: Timestamp) -> Vec<ReservationEvent> {
        if usage.kind() != self.kind() || !self.0.status.is_paid() || self.0.status.is_terminal() {
            return Vec::new();
        }
        let Some(target) = usage.target_status() else {
            return Vec::new();
        };
        if target.rank() <= self.0.status.rank() {
            return Vec::new();
        }
        vec![self.move_to(target, now)]
    }
}

#[cfg(test)]
mod tests {
    use domain_kernel::IdGenerator;
    use domain_kernel::fakes::SequentialIds;
    use time::macros::{date, datetime};

    use super::*;

    const NOW: Timestamp = datetime!(2026-11-22 10:05 UTC);

    fn roaming() -> Reservation {
        Reservation::pending(
            SequentialIds::default().reservation_id(),
            CustomerId::parse("alice").unwrap(),
            RequestId::parse("r1").unwrap(),
            Details::Roaming(RoamingDetails {
                device_model: DeviceModel::parse("egg-lte").unwrap(),
                country: CountryCode::parse("JP").unwrap(),
                pickup_booth: BoothCode::parse("ICN-T1").unwrap(),
                return_booth: BoothCode::parse("GMP").unwrap(),
                dates: DateRange::new(date!(2026 - 12 - 01), date!(2026 - 12 - 03)).unwrap(),
            }),
            Money::krw(15_000).unwrap(),
            datetime!(2026-11-22 10:00 UTC),
        )
    }

    fn parking() -> Reservation {
        Reservation::pending(
            SequentialIds::default().reservation_id(),
            CustomerId::parse("bob").unwrap(),
            RequestId::parse("p1").unwrap(),
            Details::Parking(ParkingDetails {
                space_id: SpaceId::parse("P1-B1-001").unwrap(),
                vehicle_plate: VehiclePlate::parse("12가3456").unwrap(),
                window: TimeWindow::new(
                    datetime!(2026-11-22 12:00 UTC),
                    datetime!(2026-11-22 14:00 UTC),
                )
                .unwrap(),
            }),
            Money::krw(6_000).unwrap(),
            datetime!(2026-11-22 10:00 UTC),
        )
    }

    fn reserved() -> Reservation {
        let mut r = roaming();
        r.mark_paid(NOW).unwrap();
        r
    }

    #[test]
    fn paid_reservation_becomes_reserved_and_announces_it() {
        let mut r = roaming();
        let events = r.mark_paid(NOW).unwrap();
        assert_eq!(r.status, Status::Reserved);
        assert_eq!(r.updated_at, NOW);
        assert!(
            matches!(&events[0], ReservationEvent::Reserved(s) if s.status == Status::Reserved)
        );
        assert!(matches!(
            events[1],
            ReservationEvent::StatusChanged {
                from: Status::PendingPayment,
                to: Status::Reserved,
                ..
            }
        ));
    }

    #[test]
    fn paying_twice_is_refused() {
        let mut r = reserved();
        assert_eq!(
            r.mark_paid(NOW),
            Err(TransitionError {
                from: Status::Reserved,
                action: "mark as paid"
            })
        );
    }

    #[test]
    fn declined_payment_rejects_and_keeps_the_reason() {
        let mut r = roaming();
        let events = r.reject(RejectionReason::PaymentDeclined, NOW).unwrap();
        assert_eq!(r.status, Status::Rejected);
        assert_eq!(r.rejection, Some(RejectionReason::PaymentDeclined));
        assert!(matches!(events[0], ReservationEvent::Rejected(_)));
        assert!(
            r.holds_request_id(),
            "a declined card is a final answer for this request id"
        );
    }

    #[test]
    fn unavailable_payment_rejects_and_releases_the_request_id() {
        let mut r = roaming();
        r.reject(RejectionReason::PaymentUnavailable, NOW).unwrap();
        assert!(!r.holds_request_id());
    }

    #[test]
    fn only_pending_reservations_can_be_rejected() {
        let mut r = reserved();
        assert!(r.reject(RejectionReason::PaymentTimedOut, NOW).is_err());
        assert_eq!(r.status, Status::Reserved);
    }

    #[test]
    fn cancel_before_use_is_allowed_from_reserved_and_rental_accepted() {
        let mut r = reserved();
        let events = r.cancel("plans changed".into(), NOW).unwrap();
        assert_eq!(r.status, Status::Canceled);
        assert!(
            matches!(&events[0], ReservationEvent::Canceled { reason, .. } if reason == "plans changed")
        );

        let mut r = reserved();
        r.apply_usage(Usage::RentalAccepted, NOW);
        assert!(r.cancel(String::new(), NOW).is_ok());
    }

    #[test]
    fn cancel_is_refused_when_pending_in_use_or_finished() {
        let mut pending = roaming();
        assert!(pending.cancel(String::new(), NOW).is_err());

        let mut in_use = reserved();
        in_use.apply_usage(Usage::HandedOver, NOW);
        assert_eq!(
            in_use.cancel(String::new(), NOW),
            Err(CancelRefused::Status(Status::InUse))
        );

        let mut canceled = reserved();
        canceled.cancel(String::new(), NOW).unwrap();
        assert!(canceled.cancel(String::new(), NOW).is_err());
    }

    #[test]
    fn roaming_walks_the_whole_path() {
        let mut r = reserved();
        for (usage, expected) in [
            (Usage::RentalAccepted, Status::RentalAccepted),
            (Usage::HandedOver, Status::InUse),
            (Usage::Returned, Status::Returned),
            (Usage::Retrieved, Status::Completed),
        ] {
            assert_eq!(r.apply_usage(usage, NOW).len(), 1);
            assert_eq!(r.status, expected);
        }
    }

    #[test]
    fn parking_walks_the_whole_path() {
        let mut r = parking();
        r.mark_paid(NOW).unwrap();
        r.apply_usage(Usage::ParkingStarted, NOW);
        assert_eq!(r.status, Status::InUse);
        r.apply_usage(Usage::ParkingEnded, NOW);
        assert_eq!(r.status, Status::Completed);
    }

    #[test]
    fn stale_or_repeated_usage_changes_nothing() {
        let mut r = reserved();
        r.apply_usage(Usage::HandedOver, NOW);
        assert!(
            r.apply_usage(Usage::RentalAccepted, NOW).is_empty(),
            "late accepted"
        );
        assert!(r.apply_usage(Usage::HandedOver, NOW).is_empty(), "repeated");
        assert_eq!(r.status, Status::InUse);
    }

    #[test]
    fn out_of_order_usage_moves_forward_only() {
        let mut r = reserved();
        r.apply_usage(Usage::Returned, NOW);
        assert_eq!(r.status, Status::Returned);
        assert!(r.apply_usage(Usage::HandedOver, NOW).is_empty());
        assert_eq!(r.status, Status::Returned);
    }

    #[test]
    fn usage_never_moves_an_unpaid_or_finished_reservation() {
        let mut pending = roaming();
        assert!(pending.apply_usage(Usage::RentalAccepted, NOW).is_empty());
        assert_eq!(pending.status, Status::PendingPayment);

        let mut canceled = reserved();
        canceled.cancel(String::new(), NOW).unwrap();
        assert!(canceled.apply_usage(Usage::HandedOver, NOW).is_empty());
        assert_eq!(canceled.status, Status::Canceled);
    }

    #[test]
    fn usage_of_the_other_kind_is_ignored() {
        let mut r = reserved();
        assert!(r.apply_usage(Usage::ParkingStarted, NOW).is_empty());
        let mut p = parking();
        p.mark_paid(NOW).unwrap();
        assert!(p.apply_usage(Usage::HandedOver, NOW).is_empty());
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        for r in [
            RejectionReason::PaymentDeclined,
            RejectionReason::PaymentUnavailable,
            RejectionReason::PaymentTimedOut,
        ] {
            assert_eq!(RejectionReason::parse(r.as_str()), Some(r));
        }
    }
}
