//! Pooled PostgreSQL connections that must not be used again: the ones opened
//! before the last sign that the server behind the pool's address changed
//! (a write refused as read-only, SQLSTATE 25006: the connection reaches a
//! server that is now a standby) or that a connection was left mid-commit
//! or mid-transaction (a commit past `COMMIT_TIMEOUT`, a batch's steps past
//! the writer's `JOBS_WITHIN`). Such connections are closed
//! when released and before they are handed out, so the pool refills with
//! connections to whatever the address now reaches (the promoted primary
//! behind the `-rw` Service) instead of failing on each one in turn.
//!
//! Process-wide: every pool of the process drops its older connections, a
//! cheap reconnect, when one sees a switchover.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Milliseconds since [`base`] of the last mark, plus one (0: never).
static STALE_BEFORE: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    u64::try_from(base().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Starts the clock connections are dated by (before any is opened).
pub(crate) fn start() {
    let _ = base();
}

/// When the last mark was logged ([`now_ms`] + 1; 0: never).
static LOGGED: AtomicU64 = AtomicU64::new(0);

/// Every connection opened until now is stale. Logged at most once a
/// second (a database that stays read-only marks on every write).
pub(crate) fn mark(why: &str) {
    let now = now_ms() + 1;
    STALE_BEFORE.fetch_max(now, Ordering::Relaxed);
    let last = LOGGED.load(Ordering::Relaxed);
    if (last == 0 || now.saturating_sub(last) >= 1_000)
        && LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "{why}: the database connections opened before now are closed as they come back to the pool"
        );
    }
}

/// Whether a connection `age` old was opened before the last mark.
pub(crate) fn is_stale(age: Duration) -> bool {
    let mark = STALE_BEFORE.load(Ordering::Relaxed);
    if mark == 0 {
        return false;
    }
    let opened = now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
    opened < mark
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_opened_before_a_mark_are_stale_and_later_ones_are_not() {
        start();
        std::thread::sleep(Duration::from_millis(20));
        let opened_before = base().elapsed();
        mark("a test");
        std::thread::sleep(Duration::from_millis(20));
        assert!(is_stale(
            base().elapsed().saturating_sub(Duration::from_millis(1))
        ));
        assert!(is_stale(opened_before + Duration::from_millis(20)));
        assert!(!is_stale(Duration::from_millis(5)), "opened after the mark");
    }
}
