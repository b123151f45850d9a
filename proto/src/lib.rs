//! The v1 gRPC contract of the roaming mesh, generated from `proto/roaming/**`.
//!
//! Modules mirror the protobuf packages (`roaming.reservation.v1` is
//! [`roaming::reservation::v1`]); the short aliases at the crate root
//! ([`reservation`], [`payment`], ...) are what the rest of the workspace uses.
//! [`FILE_DESCRIPTOR_SET`] feeds server reflection, so `grpcurl` needs no `.proto`
//! files.

#![allow(
    clippy::pedantic,
    missing_debug_implementations,
    reason = "generated code"
)]

pub mod codec;
pub mod reasons;
#[cfg(feature = "testing")]
pub mod testing;

/// Generated packages, nested as in the `.proto` package names.
pub mod roaming {
    pub mod common {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/roaming.common.v1.rs"));
        }
    }
    pub mod reservation {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/roaming.reservation.v1.rs"));
        }
    }
    pub mod payment {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/roaming.payment.v1.rs"));
        }
    }
    pub mod rental {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/roaming.rental.v1.rs"));
        }
    }
    pub mod parking {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/roaming.parking.v1.rs"));
        }
    }
    pub mod view {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/roaming.view.v1.rs"));
        }
    }
    pub mod auth {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/roaming.auth.v1.rs"));
        }
    }
}

pub use roaming::{
    auth::v1 as auth, common::v1 as common, parking::v1 as parking, payment::v1 as payment,
    rental::v1 as rental, reservation::v1 as reservation, view::v1 as view,
};

/// The encoded `FileDescriptorSet` of every `.proto` in this crate (and the
/// well-known types they import), for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/roaming_descriptor.bin"));

/// Fully qualified gRPC service names, as health and reflection report them.
pub mod service_names {
    pub const RESERVATION: &str = "roaming.reservation.v1.ReservationService";
    pub const PAYMENT: &str = "roaming.payment.v1.PaymentService";
    pub const RENTAL: &str = "roaming.rental.v1.RentalService";
    pub const PARKING: &str = "roaming.parking.v1.ParkingService";
    pub const VIEW: &str = "roaming.view.v1.ViewService";
    pub const AUTH: &str = "roaming.auth.v1.AuthService";
    /// Health entry `SERVING` while the process runs, whatever its
    /// dependencies do: the liveness probe's service name. Readiness is `""`
    /// (and each service's own name).
    pub const LIVENESS: &str = "roaming.liveness";
    /// Health entry that says whether the broker connection is up. It takes no
    /// part in readiness: while the broker is away, events wait in the outbox
    /// and the service keeps answering.
    pub const BUS: &str = "roaming.bus";
}

/// Event subjects (DOMAIN.md, "Events"). One constant per event message.
pub mod subjects {
    pub const RESERVATION_RESERVED: &str = "roaming.reservation.reserved";
    pub const RESERVATION_CANCELED: &str = "roaming.reservation.canceled";
    pub const RESERVATION_REJECTED: &str = "roaming.reservation.rejected";
    pub const RESERVATION_STATUS_CHANGED: &str = "roaming.reservation.status_changed";
    pub const PAYMENT_CAPTURED: &str = "roaming.payment.captured";
    pub const PAYMENT_REFUNDED: &str = "roaming.payment.refunded";
    pub const PAYMENT_VOIDED: &str = "roaming.payment.voided";
    pub const PAYMENT_DECLINED: &str = "roaming.payment.declined";
    pub const RENTAL_DEVICE_REGISTERED: &str = "roaming.rental.device_registered";
    pub const RENTAL_DEVICE_RELOCATED: &str = "roaming.rental.device_relocated";
    pub const RENTAL_ACCEPTED: &str = "roaming.rental.accepted";
    pub const RENTAL_HANDED_OVER: &str = "roaming.rental.handed_over";
    pub const RENTAL_RETURNED: &str = "roaming.rental.returned";
    pub const RENTAL_RETRIEVED: &str = "roaming.rental.retrieved";
    pub const RENTAL_CANCELED: &str = "roaming.rental.canceled";
    pub const PARKING_SPACE_REGISTERED: &str = "roaming.parking.space_registered";
    pub const PARKING_STARTED: &str = "roaming.parking.started";
    pub const PARKING_ENDED: &str = "roaming.parking.ended";
    pub const PARKING_ENTRY_DENIED: &str = "roaming.parking.entry_denied";

    /// Every subject, for stream setup and contract tests.
    pub const ALL: &[&str] = &[
        RESERVATION_RESERVED,
        RESERVATION_CANCELED,
        RESERVATION_REJECTED,
        RESERVATION_STATUS_CHANGED,
        PAYMENT_CAPTURED,
        PAYMENT_REFUNDED,
        PAYMENT_VOIDED,
        PAYMENT_DECLINED,
        RENTAL_DEVICE_REGISTERED,
        RENTAL_DEVICE_RELOCATED,
        RENTAL_ACCEPTED,
        RENTAL_HANDED_OVER,
        RENTAL_RETURNED,
        RENTAL_RETRIEVED,
        RENTAL_CANCELED,
        PARKING_SPACE_REGISTERED,
        PARKING_STARTED,
        PARKING_ENDED,
        PARKING_ENTRY_DENIED,
    ];
}
