//! HTTP/2 refusals that the `h2` crate logs itself, sampled.
//!
//! `h2` (under hyper, under tonic) refuses protocol abuse on its own: a
//! client that resets streams faster than they are accepted ("rapid reset",
//! CVE-2023-44487), or makes the server reset too many, gets a GOAWAY
//! (`ENHANCE_YOUR_CALM`), and h2 writes one WARN line per connection it ends
//! so. Our code never sees those refusals (they end the connection inside
//! h2), so they cannot be counted where they happen: [`ProtocolRefusals`]
//! takes h2's WARN (and ERROR) events out of the log instead, counts them by
//! the line that wrote them, and a reporter thread writes one line a second
//! per such line with the count, as every other refusal is logged
//! ([`crate::sampled`]). h2's DEBUG and TRACE events are left alone, so
//! `RUST_LOG=h2=debug` still shows everything.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing::dispatcher::{Dispatch, WeakDispatch};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber, warn};
use tracing_subscriber::layer::{Context, Layer};

use crate::sampled::EVERY;

/// The layer that samples h2's own WARN lines (see the module docs). Put it
/// in the subscriber before the layers that write logs: it drops the events
/// it counts for every layer.
#[derive(Debug, Clone, Default)]
pub struct ProtocolRefusals {
    shared: Arc<Shared>,
}

impl ProtocolRefusals {
    pub fn new() -> Self {
        Self::default()
    }
}

#[derive(Debug, Default)]
struct Shared {
    /// The subscriber this layer is part of, which the reporter writes to.
    dispatch: OnceLock<WeakDispatch>,
    /// Per line of h2's that wrote (its callsite's name): how many times
    /// since the last report, and its last text.
    counts: Mutex<HashMap<&'static str, (u64, String)>>,
    /// Whether the reporter thread runs.
    reporting: AtomicBool,
}

/// Whether `meta` is an event of h2's that this layer samples.
fn sampled(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    meta.is_event()
        && *meta.level() <= Level::WARN
        && (target == "h2" || target.starts_with("h2::"))
}

impl<S: Subscriber> Layer<S> for ProtocolRefusals {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.shared.dispatch.set(subscriber.downgrade());
    }

    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !sampled(meta) {
            return true;
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        {
            let mut counts = self
                .shared
                .counts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let entry = counts.entry(meta.name()).or_default();
            entry.0 += 1;
            entry.1 = text.0;
        }
        Shared::report(&self.shared);
        false
    }
}

impl Shared {
    /// Starts the reporter unless it runs. It ends after a second without
    /// anything to report, so a quiet process has no such thread.
    fn report(shared: &Arc<Self>) {
        if shared.reporting.swap(true, Ordering::AcqRel) {
            return;
        }
        let reporter = Arc::clone(shared);
        let started = std::thread::Builder::new()
            .name("h2-refusals".into())
            .spawn(move || reporter.run());
        if started.is_err() {
            shared.reporting.store(false, Ordering::Release);
        }
    }

    fn run(&self) {
        loop {
            std::thread::sleep(EVERY);
            let counted =
                std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner));
            if counted.is_empty() {
                self.reporting.store(false, Ordering::Release);
                // An event counted between the take and the store saw the
                // reporter running: take it over again if nobody else did.
                let pending = !self
                    .counts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_empty();
                if pending && !self.reporting.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            }
            let write = || {
                for (refused, text) in counted.values() {
                    warn!(
                        refused,
                        h2 = %text,
                        "HTTP/2 protocol refusal by h2 (sampled: one line a second)"
                    );
                }
            };
            // Written where the events would have gone; the global
            // subscriber when this layer's is gone (or was never known).
            match self.dispatch.get().and_then(WeakDispatch::upgrade) {
                Some(dispatch) => tracing::dispatcher::with_default(&dispatch, write),
                None => write(),
            }
        }
    }
}

/// An event's fields as one line: its message, then `name=value` pairs.
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::Write;
    use std::time::Duration;

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[test]
    fn h2_warnings_become_one_line_a_second_with_their_count() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry()
            .with(ProtocolRefusals::new())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone()),
            );
        let dispatch = Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || {
            for _ in 0..50 {
                // As h2 writes it when a client resets streams too fast.
                warn!(
                    target: "h2::proto::streams::recv",
                    "recv_reset; remotely-reset pending-accept streams reached limit ({:?})",
                    20
                );
            }
            tracing::debug!(target: "h2::codec", "left alone");
            warn!(target: "roaming", "not h2's");
        });
        // None of h2's fifty warnings is written as such; the rest is.
        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("left alone"), "{lines:?}");
        assert!(lines[1].contains("not h2's"), "{lines:?}");

        // The reporter's line comes within the second (and a bit).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let report = loop {
            let lines = captured.lines();
            if let Some(l) = lines.iter().find(|l| l.contains("HTTP/2 protocol refusal")) {
                break l.clone();
            }
            assert!(std::time::Instant::now() < deadline, "{lines:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(report.contains("refused=50"), "{report}");
        assert!(report.contains("WARN"), "{report}");
        assert!(
            report.contains("remotely-reset pending-accept streams reached limit (20)"),
            "{report}"
        );
        // One line for the fifty, and nothing more.
        std::thread::sleep(EVERY + Duration::from_millis(200));
        let reports = captured
            .lines()
            .iter()
            .filter(|l| l.contains("HTTP/2 protocol refusal"))
            .count();
        assert_eq!(reports, 1);
    }
}
