//! Refusals logged without turning an attack into a log flood: each class of
//! refusal (a static [`Sampled`] at the place that refuses) writes at most
//! one line a second, carrying how many were refused since the last line.
//!
//! ```text
//! static TIMED_OUT: Sampled = Sampled::new();
//! if let Some(refused) = TIMED_OUT.hit() {
//!     warn!(refused, %path, "request body did not arrive in time");
//! }
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a class of refusal may write a line.
pub const EVERY: Duration = Duration::from_secs(1);

/// One class of refusal: counts them, and says when one should be logged.
#[derive(Debug)]
pub struct Sampled {
    /// When the last line was written, and the refusals counted since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Sampled {
    pub const fn new() -> Self {
        Self {
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one refusal; `Some(n)` when this one should be logged, `n`
    /// being the refusals since the last line, this one included (the first
    /// refusal of a class is always logged at once).
    pub fn hit(&self) -> Option<u64> {
        self.hit_at(Instant::now())
    }

    fn hit_at(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means a panic elsewhere mid-update; the
        // numbers are still usable.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.1 += 1;
        if state
            .0
            .is_none_or(|last| now.saturating_duration_since(last) >= EVERY)
        {
            let refused = state.1;
            *state = (Some(now), 0);
            Some(refused)
        } else {
            None
        }
    }
}

impl Default for Sampled {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_since_the_last() {
        let sampled = Sampled::new();
        let t = Instant::now();
        assert_eq!(sampled.hit_at(t), Some(1), "the first is logged at once");
        for i in 1..=99 {
            assert_eq!(
                sampled.hit_at(t + Duration::from_millis(i * 10 - 5)),
                None,
                "{i}"
            );
        }
        // A second after the last line: one line for the 99 since, and this one.
        assert_eq!(sampled.hit_at(t + EVERY), Some(100));
        assert_eq!(sampled.hit_at(t + EVERY), None);
        assert_eq!(sampled.hit_at(t + EVERY * 3), Some(2));
    }
}
