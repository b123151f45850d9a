use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::{EventId, PaymentId, ReservationId, SessionId, Timestamp};

/// The time, as a port so that tests can stand still or jump.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;

    /// Today's date in UTC.
    fn today(&self) -> Date {
        self.now().date()
    }
}

/// Fresh identifiers, as a port so that tests are deterministic.
pub trait IdGenerator: Send + Sync {
    /// A new unique id; production uses UUIDv7 so ids sort by creation time.
    fn new_uuid(&self) -> Uuid;

    fn event_id(&self) -> EventId {
        EventId::from_uuid(self.new_uuid())
    }

    fn reservation_id(&self) -> ReservationId {
        ReservationId::from_uuid(self.new_uuid())
    }

    fn payment_id(&self) -> PaymentId {
        PaymentId::from_uuid(self.new_uuid())
    }

    fn session_id(&self) -> SessionId {
        SessionId::from_uuid(self.new_uuid())
    }
}

/// The system clock (UTC).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        OffsetDateTime::now_utc()
    }
}

/// UUIDv7 ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7;

impl IdGenerator for UuidV7 {
    fn new_uuid(&self) -> Uuid {
        Uuid::now_v7()
    }
}

impl<T: Clock + ?Sized> Clock for std::sync::Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<T: IdGenerator + ?Sized> IdGenerator for std::sync::Arc<T> {
    fn new_uuid(&self) -> Uuid {
        (**self).new_uuid()
    }
}

#[cfg(any(test, feature = "test-util"))]
pub mod fakes {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use time::Duration;
    use uuid::Uuid;

    use super::{Clock, IdGenerator};
    use crate::Timestamp;

    /// A clock that stands still until told to move.
    #[derive(Debug)]
    pub struct FixedClock(Mutex<Timestamp>);

    impl FixedClock {
        pub fn at(now: Timestamp) -> Self {
            Self(Mutex::new(now))
        }

        pub fn set(&self, now: Timestamp) {
            *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        }

        pub fn advance(&self, by: Duration) {
            let mut now = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *now += by;
        }
    }

    impl Clock for FixedClock {
        fn now(&self) -> Timestamp {
            *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    /// Ids 1, 2, 3, ... as UUIDs (still ordered, like UUIDv7).
    #[derive(Debug, Default)]
    pub struct SequentialIds(AtomicU64);

    impl IdGenerator for SequentialIds {
        fn new_uuid(&self) -> Uuid {
            Uuid::from_u128(u128::from(self.0.fetch_add(1, Ordering::Relaxed) + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fakes::*;
    use super::*;

    #[test]
    fn uuid_v7_ids_increase() {
        let ids = UuidV7;
        let a = ids.new_uuid();
        let b = ids.new_uuid();
        assert!(a < b);
        assert_eq!(a.get_version_num(), 7);
    }

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let t = time::macros::datetime!(2026-11-22 10:00 UTC);
        let clock = FixedClock::at(t);
        assert_eq!(clock.now(), t);
        clock.advance(time::Duration::hours(1));
        assert_eq!(clock.now(), t + time::Duration::hours(1));
        assert_eq!(clock.today(), t.date());
    }

    #[test]
    fn sequential_ids_are_distinct() {
        let ids = SequentialIds::default();
        assert_ne!(ids.event_id(), ids.event_id());
    }
}
