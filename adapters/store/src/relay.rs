//! The outbox relay: committed events out, in order, confirmed, once in effect.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use domain_kernel::{EventPublisher, StoreError};
use tracing::{debug, info, warn};

use crate::db::Db;
use crate::outbox;
use crate::writer::Verdict;

/// How a relay behaves.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The lease name; one relay per name and database publishes at a time.
    pub lease: String,
    /// Events per publish call (the publisher keeps its own window of acks).
    pub batch: u64,
    /// How often to look for rows when no commit signal arrives (a lease to
    /// take over, or a commit notification lost while reconnecting).
    pub poll: Duration,
    pub lease_ttl: Duration,
    /// Upper bound of the retry backoff while the broker fails. Low: a
    /// stream electing a new leader (a few seconds after a node is lost)
    /// takes events again the moment it has one, and a retry is one publish.
    pub max_backoff: Duration,
    /// Sent rows are deleted after this long.
    pub keep_sent: Duration,
    /// `messaging.system` of the publish spans (`nats`).
    pub messaging_system: &'static str,
    /// The component owning the outbox: the publish spans' `component`
    /// (their `service.name`, see `adapters_telemetry::export`).
    pub component: &'static str,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            lease: "outbox".to_owned(),
            batch: 256,
            poll: Duration::from_millis(500),
            // A relay killed without releasing its lease delays the outbox by this
            // much at most (renewed every half of it).
            lease_ttl: Duration::from_secs(3),
            max_backoff: Duration::from_millis(500),
            keep_sent: Duration::from_hours(1),
            messaging_system: "nats",
            component: "outbox",
        }
    }
}

/// When the oldest unsent event of an outbox was written, as the relay last
/// read it: its age keeps growing between reads, so a relay stuck in a
/// publish still shows as stalled.
#[derive(Debug, Clone, Default)]
pub struct OldestUnsent(Arc<std::sync::atomic::AtomicI64>);

impl OldestUnsent {
    fn set(&self, created_micros: Option<i64>) {
        self.0.store(
            created_micros.unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// How long the oldest unsent event has waited; `None` when nothing
    /// waits (or nothing was read yet).
    pub fn age(&self) -> Option<Duration> {
        let created = self.0.load(std::sync::atomic::Ordering::Relaxed);
        if created == 0 {
            return None;
        }
        Some(Duration::from_micros(
            u64::try_from(outbox::now_micros() - created).unwrap_or(0),
        ))
    }
}

/// Why one relay step failed; the relay retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] domain_kernel::PublishError),
}

/// Publishes a database's outbox through `P`.
#[derive(Debug)]
pub struct Relay<P> {
    db: Db,
    publisher: P,
    config: RelayConfig,
    holder: String,
    /// Until when (monotonic) this relay is sure it holds the lease: renewing
    /// is skipped while more than half the TTL is left, so a busy relay does
    /// not write its lease row for every batch.
    held_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Until when this relay does not try for the lease again after another
    /// relay held it: commits wake every replica's relay, and only the
    /// holder should touch the database for each of them.
    standby_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// The oldest event waiting in the outbox, for the broker's health.
    oldest_unsent: OldestUnsent,
}

/// How long a relay that found the lease held waits before trying again
/// (bounds how long a released lease stays untaken).
const STANDBY: Duration = Duration::from_millis(100);

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl<P: EventPublisher> Relay<P> {
    pub fn new(db: Db, publisher: P, config: RelayConfig) -> Self {
        Self {
            db,
            publisher,
            config,
            holder: uuid::Uuid::now_v7().to_string(),
            held_until: std::sync::Mutex::new(None),
            standby_until: std::sync::Mutex::new(None),
            oldest_unsent: OldestUnsent::default(),
        }
    }

    /// How long the oldest event of the outbox has waited, as last read (each
    /// second while [`Self::run`] runs): a handle that outlives `run`.
    pub fn oldest_unsent(&self) -> OldestUnsent {
        self.oldest_unsent.clone()
    }

    /// One batch: take the lease, read the oldest unsent rows, publish them and
    /// wait for the confirmation, then mark them sent. Returns how many were
    /// published (0: nothing pending, or another relay holds the lease).
    pub async fn step(&self) -> Result<usize, RelayError> {
        // Reads go to the read pool: they see every commit that woke the relay,
        // and the single writer stays free for the request path.
        if self.standing_by() {
            return Ok(0);
        }
        // Read before taking the lease: an idle relay then writes nothing. (A
        // relay whose lease lapsed may still be publishing these rows; a
        // re-publish is dropped by the broker's de-duplication and the inboxes.)
        let pending = if self.db.backend() == crate::Backend::Postgres {
            outbox::unsent_on(self.db.outbox_reader(), self.config.batch).await?
        } else {
            outbox::unsent(self.db.reader(), self.config.batch).await?
        };
        if pending.is_empty() || !self.hold_lease().await? {
            return Ok(0);
        }
        let mut events: Vec<_> = pending.iter().map(|p| p.event.clone()).collect();
        // One span per event, child of the transaction that wrote it; the
        // event carries this span's context on to its consumers.
        let spans: Vec<_> = events
            .iter_mut()
            .map(|e| {
                let span = tracing::info_span!(
                    "event.publish",
                    otel.name = %e.subject,
                    otel.kind = "producer",
                    otel.status_code = tracing::field::Empty,
                    component = self.config.component,
                    messaging.system = self.config.messaging_system,
                    messaging.destination.name = %e.subject,
                    messaging.operation.type = "send",
                    event_id = %e.event_id,
                    reservation_id = tracing::field::Empty,
                );
                if let Some(id) = adapters_codec::reservation_of(&e.subject, &e.payload) {
                    span.record("reservation_id", id.as_str());
                }
                adapters_telemetry::set_parent_from_pairs(&span, &e.headers);
                adapters_telemetry::propagation::inject_pairs(&span, &mut e.headers);
                span
            })
            .collect();
        if let Err(e) = self.publisher.publish(&events).await {
            // Sent again by the next round; this attempt failed.
            for span in &spans {
                span.record("otel.status_code", "ERROR");
            }
            return Err(e.into());
        }
        drop(spans);
        let seqs: Arc<[i64]> = pending.iter().map(|p| p.seq).collect();
        // Through the writer: commits with the request path's changes.
        let marked = Arc::clone(&seqs);
        self.db
            .write(move |tx| {
                let seqs = Arc::clone(&marked);
                Box::pin(async move {
                    outbox::mark_sent(tx.conn(), &seqs).await?;
                    Ok(Verdict::Keep(()))
                })
            })
            .await?;
        debug!(count = seqs.len(), "outbox batch published");
        Ok(seqs.len())
    }

    /// Takes or renews the lease, unless this relay renewed it less than half
    /// a TTL ago. (A wall clock jumping forward by more than half the TTL could
    /// let another relay take over early; its re-publishes are then dropped by
    /// the broker's de-duplication and the consumers' inboxes.)
    async fn hold_lease(&self) -> Result<bool, StoreError> {
        let now = tokio::time::Instant::now();
        let fresh = self
            .held_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|until| now + self.config.lease_ttl / 2 < until);
        if fresh {
            return Ok(true);
        }
        let held = outbox::acquire_lease(
            self.db.writer(),
            &self.config.lease,
            &self.holder,
            micros(self.config.lease_ttl),
        )
        .await?;
        *self
            .held_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            held.then(|| now + self.config.lease_ttl);
        *self
            .standby_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (!held).then(|| now + STANDBY);
        Ok(held)
    }

    fn standing_by(&self) -> bool {
        self.standby_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|until| tokio::time::Instant::now() < until)
    }

    /// When to look again without a commit signal: the poll, or sooner when
    /// a standby ends.
    fn next_look(&self) -> tokio::time::Instant {
        let poll = tokio::time::Instant::now() + self.config.poll;
        self.standby_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map_or(poll, |until| until.min(poll))
    }

    /// The outbox gauges (backlog, age of the oldest unsent event), read from
    /// the read pool so the writer is not disturbed.
    async fn record_backlog(&self) {
        match outbox::backlog(self.db.reader()).await {
            Ok((count, oldest)) => {
                self.oldest_unsent.set(oldest);
                let age = self.oldest_unsent.age().unwrap_or_default();
                adapters_telemetry::metrics::outbox(&self.config.lease, count, age);
            }
            Err(e) => debug!(error = %e, "reading the outbox backlog failed"),
        }
    }

    /// Publishes until nothing is pending. For tests and tools.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            match self.step().await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// Runs until `shutdown` resolves: woken by commits (and by a poll for rows
    /// other processes wrote), retrying with capped exponential backoff while the
    /// publisher fails. Cancel-safe: rows are marked sent only after
    /// confirmation, and the broker de-duplicates a re-publish by event id.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        // Other replicas' commits wake this relay too (PostgreSQL).
        let listener = self.db.listen_for_commits();
        let mut backoff = Duration::from_millis(50);
        // Failures in a row, and when one was last logged as a warning (the
        // retries are frequent; the log says so every few seconds).
        let mut failures = 0u64;
        let mut last_warning: Option<tokio::time::Instant> = None;
        let mut last_purge = tokio::time::Instant::now();
        let mut last_gauge: Option<tokio::time::Instant> = None;
        loop {
            if last_gauge.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_gauge = Some(tokio::time::Instant::now());
                self.record_backlog().await;
            }
            let step = tokio::select! {
                () = &mut shutdown => break,
                step = self.step() => step,
            };
            match step {
                Ok(sent) => {
                    if failures > 0 {
                        info!(failures, "outbox relay working again");
                        failures = 0;
                        last_warning = None;
                    }
                    backoff = Duration::from_millis(50);
                    if sent > 0 {
                        continue;
                    }
                    if last_purge.elapsed() > Duration::from_mins(1) {
                        last_purge = tokio::time::Instant::now();
                        if let Err(e) =
                            outbox::purge_sent(self.db.writer(), micros(self.config.keep_sent))
                                .await
                        {
                            warn!(error = %e, "purging sent outbox rows failed");
                        }
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = self.db.committed() => {}
                        () = tokio::time::sleep_until(self.next_look()) => {}
                    }
                }
                Err(e) => {
                    failures += 1;
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                        last_warning = Some(tokio::time::Instant::now());
                        warn!(error = %e, failures, retry_in_ms = backoff.as_millis(), "outbox relay step failed");
                    } else {
                        debug!(error = %e, failures, retry_in_ms = backoff.as_millis(), "outbox relay step failed");
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
        if let Some(listener) = listener {
            listener.abort();
        }
        if let Err(e) =
            outbox::release_lease(self.db.writer(), &self.config.lease, &self.holder).await
        {
            warn!(error = %e, "releasing the relay lease failed");
        }
        info!("outbox relay stopped");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use domain_kernel::{EventId, OutgoingEvent, PublishError};

    use super::*;
    use crate::migrations::ReservationMigrator;
    use crate::testing::TestDatabase;

    /// A broker that takes (`up`) or refuses every publish.
    struct Broker {
        up: bool,
    }

    impl EventPublisher for Broker {
        async fn publish(&self, _events: &[OutgoingEvent]) -> Result<(), PublishError> {
            if self.up {
                Ok(())
            } else {
                Err(PublishError("down".to_owned()))
            }
        }
    }

    async fn run_for(relay: Relay<Broker>, d: Duration) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(relay.run(async move {
            let _ = stopped.await;
        }));
        tokio::time::sleep(d).await;
        let _ = stop.send(());
        running.await.unwrap();
    }

    /// Issue 35, finding 5: the relay tells how long its oldest event has
    /// waited, so a broker that is connected but takes nothing shows.
    #[tokio::test]
    async fn the_oldest_unsent_events_age_grows_while_nothing_is_published() {
        let t = TestDatabase::sqlite();
        let db = Db::connect::<ReservationMigrator>(t.url()).await.unwrap();
        let event = OutgoingEvent {
            event_id: EventId::from_uuid(uuid::Uuid::now_v7()),
            subject: "roaming.reservation.test".to_owned(),
            payload: vec![1],
            headers: Vec::new(),
        };
        db.write(move |tx| {
            let event = event.clone();
            Box::pin(async move {
                outbox::append_in(tx, &[event]).await?;
                Ok(Verdict::Keep(()))
            })
        })
        .await
        .unwrap();
        let down = Relay::new(db.clone(), Broker { up: false }, RelayConfig::default());
        let oldest = down.oldest_unsent();
        assert_eq!(oldest.age(), None, "nothing read yet");
        run_for(down, Duration::from_millis(1_300)).await;
        let waited = oldest.age().expect("an event waits");
        assert!(waited >= Duration::from_secs(1), "{waited:?}");

        let up = Relay::new(db, Broker { up: true }, RelayConfig::default());
        let oldest = up.oldest_unsent();
        run_for(up, Duration::from_millis(1_300)).await;
        assert_eq!(oldest.age(), None, "published: nothing waits");
    }
}
