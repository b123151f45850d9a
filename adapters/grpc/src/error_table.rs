//! Every domain error, the gRPC code and `ErrorInfo` reason it is answered
//! with: the table clients rely on (DOMAIN.md, "The API"). Each `expect_*`
//! match is exhaustive, so a new error variant does not compile until it has
//! a row here; each sample list has one value per variant.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]

use domain_kernel::{
    BoothCode, DateRange, DeviceModel, Money, Serial, SpaceId, StoreError, Violations,
};
use domain_parking::{DenialReason, ParkingError, Verification};
use domain_payment::{GetError as PaymentGetError, PayError, PaymentStatus, RefundError};
use domain_rental::{RentalError, RentalStatus, Rule};
use domain_reservation::ports::DeclineReason;
use domain_reservation::{
    BeginUseError, CancelError, GetError, QuoteError, ReserveError, Status as ReservationStatus,
    VerifyError,
};
use domain_view::ViewError;
use proto::reasons;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// What a status says to a client: its code, its reason (`""` when it has
/// none: `INVALID_ARGUMENT` carries field violations, `INTERNAL` nothing).
fn said(s: &Status) -> (Code, String) {
    let reason = s
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    (s.code(), reason)
}

fn check<E: std::fmt::Debug>(
    samples: Vec<E>,
    expect: impl Fn(&E) -> (Code, &'static str),
    map: impl Fn(E) -> Status,
) {
    for e in samples {
        let (code, reason) = expect(&e);
        let shown = format!("{e:?}");
        assert_eq!(said(&map(e)), (code, reason.to_owned()), "{shown}");
    }
}

fn store() -> StoreError {
    StoreError::msg("disk on fire")
}

fn invalid() -> Violations {
    Violations::one("field", "is wrong")
}

fn id() -> domain_kernel::ReservationId {
    use domain_kernel::IdGenerator;
    domain_kernel::UuidV7.reservation_id()
}

const INTERNAL: (Code, &str) = (Code::Internal, "");
const INVALID: (Code, &str) = (Code::InvalidArgument, "");
const FORBIDDEN: (Code, &str) = (Code::PermissionDenied, reasons::FORBIDDEN);
const NOT_FOUND: (Code, &str) = (Code::NotFound, reasons::NOT_FOUND);
const BUSY: (Code, &str) = (Code::Aborted, reasons::BUSY);

#[test]
fn reservation_errors() {
    check(
        vec![
            QuoteError::Forbidden,
            QuoteError::Invalid(invalid()),
            QuoteError::Store(store()),
        ],
        |e| match e {
            QuoteError::Forbidden => FORBIDDEN,
            QuoteError::Invalid(_) => INVALID,
            QuoteError::Store(_) => INTERNAL,
        },
        crate::reservation::quote_error,
    );
    check(
        vec![
            ReserveError::Forbidden,
            ReserveError::Invalid(invalid()),
            ReserveError::SoldOut,
            ReserveError::TooManyPending { limit: 3 },
            ReserveError::PaymentDeclined {
                reservation_id: id(),
                reason: Some(DeclineReason::InsufficientFunds),
            },
            ReserveError::PaymentUnavailable {
                reservation_id: id(),
                retry_after: time::Duration::seconds(1),
            },
            ReserveError::RequestIdReused,
            ReserveError::InProgress,
            ReserveError::Store(store()),
        ],
        |e| match e {
            ReserveError::Forbidden => FORBIDDEN,
            ReserveError::Invalid(_) => INVALID,
            ReserveError::SoldOut => (Code::FailedPrecondition, reasons::SOLD_OUT),
            ReserveError::TooManyPending { .. } => {
                (Code::ResourceExhausted, reasons::PENDING_LIMIT)
            }
            ReserveError::PaymentDeclined { .. } => {
                (Code::FailedPrecondition, reasons::PAYMENT_DECLINED)
            }
            ReserveError::PaymentUnavailable { .. } => {
                (Code::Unavailable, reasons::PAYMENT_UNAVAILABLE)
            }
            ReserveError::RequestIdReused => (Code::AlreadyExists, reasons::REQUEST_ID_REUSED),
            ReserveError::InProgress => (Code::Aborted, reasons::IN_PROGRESS),
            ReserveError::Store(_) => INTERNAL,
        },
        crate::reservation::reserve_error,
    );
    check(
        vec![GetError::NotFound, GetError::Store(store())],
        |e| match e {
            GetError::NotFound => NOT_FOUND,
            GetError::Store(_) => INTERNAL,
        },
        crate::reservation::get_error,
    );
    check(
        vec![
            CancelError::NotFound,
            CancelError::NotCancelable(ReservationStatus::Completed),
            CancelError::EntryOpen,
            CancelError::Busy,
            CancelError::Store(store()),
        ],
        |e| match e {
            CancelError::NotFound => NOT_FOUND,
            CancelError::NotCancelable(_) => (Code::FailedPrecondition, reasons::NOT_CANCELABLE),
            CancelError::EntryOpen => (Code::FailedPrecondition, reasons::ENTRY_OPEN),
            CancelError::Busy => BUSY,
            CancelError::Store(_) => INTERNAL,
        },
        crate::reservation::cancel_error,
    );
    check(
        vec![VerifyError::Forbidden, VerifyError::Store(store())],
        |e| match e {
            VerifyError::Forbidden => FORBIDDEN,
            VerifyError::Store(_) => INTERNAL,
        },
        crate::reservation::verify_error,
    );
    check(
        vec![
            BeginUseError::NotFound,
            BeginUseError::Forbidden,
            BeginUseError::Canceled,
            BeginUseError::NotReserved(ReservationStatus::Completed),
            BeginUseError::Busy,
            BeginUseError::Store(store()),
        ],
        |e| match e {
            BeginUseError::NotFound => NOT_FOUND,
            BeginUseError::Forbidden => FORBIDDEN,
            BeginUseError::Canceled => (Code::FailedPrecondition, reasons::RESERVATION_CANCELED),
            BeginUseError::NotReserved(_) => (Code::FailedPrecondition, reasons::NOT_RESERVED),
            BeginUseError::Busy => BUSY,
            BeginUseError::Store(_) => INTERNAL,
        },
        crate::reservation::begin_use_error,
    );
}

#[test]
fn payment_errors() {
    check(
        vec![
            PayError::Forbidden,
            PayError::AmountMismatch {
                existing: Money::krw(1_000).unwrap(),
            },
            PayError::AcquirerUnavailable,
            PayError::Store(store()),
        ],
        |e| match e {
            PayError::Forbidden => FORBIDDEN,
            PayError::AmountMismatch { .. } => (Code::FailedPrecondition, reasons::AMOUNT_MISMATCH),
            PayError::AcquirerUnavailable => (Code::Unavailable, reasons::ACQUIRER_UNAVAILABLE),
            PayError::Store(_) => INTERNAL,
        },
        crate::payment::payment_pay_error,
    );
    check(
        vec![
            PaymentGetError::Forbidden,
            PaymentGetError::NotFound,
            PaymentGetError::Store(store()),
        ],
        |e| match e {
            PaymentGetError::Forbidden => FORBIDDEN,
            PaymentGetError::NotFound => NOT_FOUND,
            PaymentGetError::Store(_) => INTERNAL,
        },
        crate::payment::payment_get_error,
    );
    check(
        vec![
            RefundError::Forbidden,
            RefundError::NotFound,
            RefundError::ReservationActive,
            RefundError::NotRefundable(PaymentStatus::Declined),
            RefundError::Busy,
            RefundError::Store(store()),
        ],
        |e| match e {
            RefundError::Forbidden => FORBIDDEN,
            RefundError::NotFound => NOT_FOUND,
            RefundError::ReservationActive => {
                (Code::FailedPrecondition, reasons::RESERVATION_ACTIVE)
            }
            RefundError::NotRefundable(_) => (Code::FailedPrecondition, reasons::NOT_REFUNDABLE),
            RefundError::Busy => BUSY,
            RefundError::Store(_) => INTERNAL,
        },
        crate::payment::payment_refund_error,
    );
}

#[test]
fn rental_errors() {
    let serial = || Serial::parse("ICN-T1-egg-1").unwrap();
    let model = |m: &str| DeviceModel::parse(m).unwrap();
    let day = time::macros::date!(2026 - 12 - 02);
    check(
        vec![
            RentalError::Forbidden,
            RentalError::NotFound,
            RentalError::DeviceNotFound(serial()),
            RentalError::DeviceExists(serial()),
            RentalError::UnknownModel(model("egg-lte")),
            RentalError::Refused(Rule::WrongStatus {
                status: RentalStatus::Returned,
                action: "hand over",
            }),
            RentalError::Refused(Rule::OutsidePeriod {
                period: DateRange::new(day, day).unwrap(),
                today: day,
            }),
            RentalError::Refused(Rule::WrongModel {
                serial: serial(),
                expected: model("egg-lte"),
                actual: model("phone-5g"),
            }),
            RentalError::Refused(Rule::NotInStock {
                serial: serial(),
                booth: BoothCode::parse("GMP").unwrap(),
            }),
            RentalError::Busy,
            RentalError::ReservationCanceled,
            RentalError::ReservationNotReserved,
            RentalError::ReservationUnavailable {
                retry_after: std::time::Duration::from_secs(1),
            },
            RentalError::Store(store()),
        ],
        |e| match e {
            RentalError::Forbidden => FORBIDDEN,
            RentalError::NotFound => NOT_FOUND,
            RentalError::DeviceNotFound(_) => (Code::NotFound, reasons::DEVICE_NOT_FOUND),
            RentalError::DeviceExists(_) => (Code::AlreadyExists, reasons::DEVICE_EXISTS),
            RentalError::UnknownModel(_) => INVALID,
            RentalError::Refused(rule) => (
                Code::FailedPrecondition,
                match rule {
                    Rule::WrongStatus { .. } => reasons::WRONG_STATUS,
                    Rule::OutsidePeriod { .. } => reasons::OUTSIDE_PERIOD,
                    Rule::WrongModel { .. } => reasons::WRONG_MODEL,
                    Rule::NotInStock { .. } => reasons::NOT_IN_STOCK,
                },
            ),
            RentalError::Busy => BUSY,
            RentalError::ReservationCanceled => {
                (Code::FailedPrecondition, reasons::RESERVATION_CANCELED)
            }
            RentalError::ReservationNotReserved => {
                (Code::FailedPrecondition, reasons::NOT_RESERVED)
            }
            RentalError::ReservationUnavailable { .. } => {
                (Code::Unavailable, reasons::RESERVATION_UNAVAILABLE)
            }
            RentalError::Store(_) => INTERNAL,
        },
        crate::rental::rental_error,
    );
}

#[test]
fn parking_errors() {
    let space = || SpaceId::parse("P1-B1-001").unwrap();
    check(
        vec![
            ParkingError::Forbidden,
            ParkingError::SpaceNotFound(space()),
            ParkingError::SpaceExists(space()),
            ParkingError::SessionNotFound,
            ParkingError::EntryDenied {
                reason: DenialReason::NotReserved,
                verification: Some(Verification::Replica),
            },
            ParkingError::EntryDenied {
                reason: DenialReason::SpaceOccupied,
                verification: None,
            },
            ParkingError::Busy,
            ParkingError::Store(store()),
        ],
        |e| match e {
            ParkingError::Forbidden => FORBIDDEN,
            ParkingError::SpaceNotFound(_) => (Code::NotFound, reasons::SPACE_NOT_FOUND),
            ParkingError::SpaceExists(_) => (Code::AlreadyExists, reasons::SPACE_EXISTS),
            ParkingError::SessionNotFound => NOT_FOUND,
            ParkingError::EntryDenied { reason, .. } => match reason {
                DenialReason::NotReserved => (Code::PermissionDenied, reasons::NOT_RESERVED),
                DenialReason::SpaceOccupied => (Code::FailedPrecondition, reasons::SPACE_OCCUPIED),
            },
            ParkingError::Busy => BUSY,
            ParkingError::Store(_) => INTERNAL,
        },
        crate::parking::parking_error,
    );
}

#[test]
fn view_errors() {
    check(
        vec![
            ViewError::Forbidden,
            ViewError::NotFound,
            ViewError::Store(store()),
        ],
        |e| match e {
            ViewError::Forbidden => FORBIDDEN,
            ViewError::NotFound => NOT_FOUND,
            ViewError::Store(_) => INTERNAL,
        },
        crate::view::refused,
    );
}

fn unavailable() -> StoreError {
    StoreError::unavailable(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
}

/// A database that is down, failing over or too slow answers `UNAVAILABLE`
/// with a `RetryInfo`, never `INTERNAL`: reads with `STORE_UNAVAILABLE`
/// (retry), changes with `OUTCOME_UNKNOWN` (retry with the same
/// `request_id`, or on the same reservation, to learn the outcome).
#[test]
fn an_unavailable_store_is_unavailable_with_a_retry_hint() {
    let read = (Code::Unavailable, reasons::STORE_UNAVAILABLE);
    let write = (Code::Unavailable, reasons::OUTCOME_UNKNOWN);
    let answers: Vec<(&str, Status, (Code, &str))> = vec![
        (
            "quote",
            crate::reservation::quote_error(QuoteError::Store(unavailable())),
            read,
        ),
        (
            "reserve",
            crate::reservation::reserve_error(ReserveError::Store(unavailable())),
            write,
        ),
        (
            "get",
            crate::reservation::get_error(GetError::Store(unavailable())),
            read,
        ),
        (
            "cancel",
            crate::reservation::cancel_error(CancelError::Store(unavailable())),
            write,
        ),
        (
            "verify",
            crate::reservation::verify_error(VerifyError::Store(unavailable())),
            read,
        ),
        (
            "begin use",
            crate::reservation::begin_use_error(BeginUseError::Store(unavailable())),
            write,
        ),
        (
            "pay",
            crate::payment::payment_pay_error(PayError::Store(unavailable())),
            write,
        ),
        (
            "get payment",
            crate::payment::payment_get_error(PaymentGetError::Store(unavailable())),
            read,
        ),
        (
            "refund",
            crate::payment::payment_refund_error(RefundError::Store(unavailable())),
            write,
        ),
        (
            "hand over",
            crate::rental::rental_error(RentalError::Store(unavailable())),
            write,
        ),
        (
            "park",
            crate::parking::parking_error(ParkingError::Store(unavailable())),
            write,
        ),
        (
            "view",
            crate::view::refused(ViewError::Store(unavailable())),
            read,
        ),
    ];
    for (what, status, expected) in answers {
        assert_eq!(said(&status), (expected.0, expected.1.to_owned()), "{what}");
        assert!(
            status.get_error_details().retry_info().is_some(),
            "{what}: a RetryInfo"
        );
    }
}
