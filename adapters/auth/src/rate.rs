//! Per-key token buckets: the per-principal limits of the gateway and of
//! every service's auth layer, and the gateway's login limits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Above this many tracked keys, full buckets (idle callers) are forgotten.
const MAX_TRACKED: usize = 10_000;

/// `rate` calls per second per key, with bursts of up to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        Self {
            rate: rate_per_second.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means another caller panicked mid-update; the
        // buckets are still usable numbers.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| refill(*b, now, rate, burst).tokens < burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        *bucket = refill(*bucket, now, self.rate, self.burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

fn refill(b: Bucket, now: Instant, rate: f64, burst: f64) -> Bucket {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    Bucket {
        tokens: (b.tokens + elapsed * rate).min(burst),
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_key() {
        let limiter = RateLimiter::new(10.0, 3);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("alice", t).is_ok());
        }
        let wait = limiter.check_at("alice", t).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert!(limiter.check_at("bob", t).is_ok(), "keys are independent");
        assert!(
            limiter
                .check_at("alice", t + Duration::from_millis(100))
                .is_ok()
        );
        assert!(
            limiter
                .check_at("alice", t + Duration::from_millis(100))
                .is_err()
        );
    }

    #[test]
    fn idle_keys_are_forgotten_when_many() {
        let limiter = RateLimiter::new(1000.0, 1);
        let t = Instant::now();
        for i in 0..MAX_TRACKED {
            limiter.check_at(&format!("k{i}"), t).unwrap();
        }
        limiter.check_at("new", t + Duration::from_secs(1)).unwrap();
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1);
    }
}
