//! A closed-loop driver: `concurrency` workers call back-to-back; calls that
//! start after the warm-up and before the end are measured.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What one workload measured.
#[derive(Debug)]
pub struct Stats {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub latency_us: Histogram<u64>,
    /// How long the failed calls took to be answered (a refusal for overload
    /// should come at once).
    pub refused_us: Histogram<u64>,
    pub measured: Duration,
}

#[allow(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram accepts"
)]
fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

impl Stats {
    /// Counts one measured call that took `took`.
    fn record(&mut self, result: Result<(), String>, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        match result {
            Ok(()) => {
                self.ok += 1;
                let _ = self.latency_us.record(us);
            }
            Err(code) => {
                *self.errors.entry(code).or_default() += 1;
                let _ = self.refused_us.record(us);
            }
        }
    }

    /// The failed calls' answer time, as `n p50 p99` in ms.
    pub fn refusals(&self) -> String {
        #[allow(
            clippy::cast_precision_loss,
            reason = "microseconds are far below 2^52"
        )]
        let ms = |q: f64| self.refused_us.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "{} refused, answered in p50 {:.2} ms, p99 {:.2} ms",
            self.refused_us.len(),
            ms(0.5),
            ms(0.99)
        )
    }

    /// Adds another worker's counts.
    fn merge(&mut self, other: Self) {
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.refused_us.add(&other.refused_us);
        self.ok += other.ok;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    pub fn throughput(&self) -> f64 {
        #[allow(clippy::cast_precision_loss, reason = "call counts are far below 2^52")]
        let ok = self.ok as f64;
        ok / self.measured.as_secs_f64()
    }

    /// The median latency in milliseconds.
    pub fn p50_ms(&self) -> f64 {
        self.ms(0.5)
    }

    /// The 99th percentile in milliseconds.
    pub fn p99_ms(&self) -> f64 {
        self.ms(0.99)
    }

    fn ms(&self, q: f64) -> f64 {
        #[allow(
            clippy::cast_precision_loss,
            reason = "microseconds are far below 2^52"
        )]
        let us = self.latency_us.value_at_quantile(q) as f64;
        us / 1000.0
    }

    /// A markdown table row, with throughput as a ratio to `base`.
    pub fn row(&self, name: &str, load: &str, base: &Self) -> String {
        let errors = if self.errors.is_empty() {
            "0".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        #[allow(
            clippy::cast_precision_loss,
            reason = "microseconds are far below 2^52"
        )]
        let max = self.latency_us.max() as f64 / 1000.0;
        format!(
            "| {name} | {load} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {errors} | {:.3} |",
            self.throughput(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            max,
            self.throughput() / base.throughput().max(f64::MIN_POSITIVE),
        )
    }
}

/// Runs `call(i)` with `concurrency` workers for `warmup + duration`.
pub async fn drive<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    call: F,
) -> Stats
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let call = call.clone();
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut stats = drive_nothing(duration);
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let result = call(i).await;
                    if t0 >= measure_from {
                        stats.record(result, t0.elapsed());
                    }
                }
                stats
            })
        })
        .collect();
    let mut stats = drive_nothing(duration);
    for w in workers {
        if let Ok(worker) = w.await {
            stats.merge(worker);
        }
    }
    stats
}

/// Calls `call(i)` at a fixed `rate` per second for `warmup + duration`, each
/// on its own task (an open loop: a slow call does not delay the next one).
/// Latency counts from when a call was due, not from when it was sent, so a
/// stalled client cannot hide a stalled server (no coordinated omission).
pub async fn drive_at_rate<F, Fut>(
    rate: u32,
    warmup: Duration,
    duration: Duration,
    call: F,
) -> Stats
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let every =
        u64::try_from((Duration::from_secs(1) / rate.max(1)).as_nanos()).unwrap_or(u64::MAX);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0.. {
        let due = start + Duration::from_nanos(every.saturating_mul(i));
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let (call, tx) = (call.clone(), tx.clone());
        tokio::spawn(async move {
            let result = call(i).await;
            let _ = tx.send((due, Instant::now(), result));
        });
    }
    drop(tx);
    let mut stats = drive_nothing(duration);
    while let Some((due, done, result)) = rx.recv().await {
        if due >= measure_from {
            stats.record(result, done - due);
        }
    }
    stats
}

/// The line of the events figure: a reservation whose events reach the
/// view's stream later than this is counted as "not seen within 10 s".
pub const EVENTS_LINE: Duration = Duration::from_secs(10);

/// How long the bench waits for a reservation's events at all: one not seen
/// by then counts as lost, an error (a pipeline that lags behind its load
/// shows up as late, a figure; one that drops or stalls, as lost).
pub const EVENTS_LOST_AFTER: Duration = Duration::from_mins(1);

/// Latencies of something that happens at its own pace (event delivery).
#[derive(Debug)]
pub struct Latencies {
    /// Every reservation seen, late ones too.
    pub hist: Histogram<u64>,
    /// Seen, but after [`EVENTS_LINE`].
    pub late: u64,
    /// Reserved, but not seen on the view's stream within [`EVENTS_LOST_AFTER`].
    pub lost: u64,
    /// Reserve calls that failed, by status code.
    pub errors: BTreeMap<String, u64>,
}

impl Latencies {
    pub fn new() -> Self {
        Self {
            hist: histogram(),
            late: 0,
            lost: 0,
            errors: BTreeMap::new(),
        }
    }

    /// A reservation seen on the view's stream `took` after the reply.
    pub fn seen(&mut self, took: Duration) {
        if took > EVENTS_LINE {
            self.late += 1;
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let _ = self.hist.record(us.clamp(1, self.hist.high()));
    }

    pub fn summary(&self, rate: u32) -> String {
        #[allow(
            clippy::cast_precision_loss,
            reason = "microseconds are far below 2^52"
        )]
        let ms = |q: f64| self.hist.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "event end to end (reserve reply -> view stream shows RENTAL_ACCEPTED) at {rate} reservations/s: \
             n {} p50 {:.2} ms p90 {:.2} ms p99 {:.2} ms max {:.2} ms, not seen within {} s: {} ({} later, {} not within {} s), reserve errors: {}",
            self.hist.len(),
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(1.0),
            EVENTS_LINE.as_secs(),
            self.late + self.lost,
            self.late,
            self.lost,
            EVENTS_LOST_AFTER.as_secs(),
            if self.errors.is_empty() {
                "0".to_owned()
            } else {
                self.errors
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    }
}

/// Stats of a workload that could not run.
pub fn drive_nothing(duration: Duration) -> Stats {
    Stats {
        ok: 0,
        errors: BTreeMap::new(),
        latency_us: histogram(),
        refused_us: histogram(),
        measured: duration,
    }
}

/// Status codes a workload may answer with by design: none for a closed loop
/// (it never offers more than the mesh admits); for an open loop beyond
/// capacity, the overload refusals (`RESOURCE_EXHAUSTED` / `UNAVAILABLE`, which
/// carry a `RetryInfo`). Anything else is an unexpected error.
pub fn unexpected(
    errors: &BTreeMap<String, u64>,
    open_loop: bool,
) -> impl Iterator<Item = (&String, u64)> {
    errors
        .iter()
        .filter(move |(code, _)| {
            !(open_loop && matches!(code.as_str(), "ResourceExhausted" | "Unavailable"))
        })
        .map(|(code, n)| (code, *n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_past_the_line_are_late_and_counted_in_the_figures() {
        let mut events = Latencies::new();
        events.seen(Duration::from_millis(8));
        events.seen(EVENTS_LINE);
        events.seen(EVENTS_LINE + Duration::from_millis(1));
        // Longer than the histogram holds: recorded at its top, not dropped.
        events.seen(Duration::from_mins(5));
        events.lost += 1;
        assert_eq!((events.hist.len(), events.late, events.lost), (4, 2, 1));
        assert!(events.hist.max() >= 59_000_000, "{}", events.hist.max());
        assert!(
            events
                .summary(500)
                .contains("not seen within 10 s: 3 (2 later, 1 not within 60 s)"),
            "{}",
            events.summary(500)
        );
    }

    #[test]
    fn only_an_open_loop_may_be_refused_for_overload() {
        let errors = BTreeMap::from([
            ("Unavailable".to_owned(), 3),
            ("ResourceExhausted".to_owned(), 2),
            ("Internal".to_owned(), 1),
        ]);
        let open: Vec<_> = unexpected(&errors, true).collect();
        assert_eq!(open, [(&"Internal".to_owned(), 1)]);
        assert_eq!(unexpected(&errors, false).count(), 3);
    }
}
