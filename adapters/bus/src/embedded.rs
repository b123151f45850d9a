//! The in-process bus: the embedded default's broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use domain_kernel::{EventPublisher, OutgoingEvent, PublishError};
use tracing::{error, warn};

use crate::dlq::Selection;
use crate::handler::{Delivery, Handler};

/// An event a subscriber could not apply `max_deliver` times: one per
/// (subscriber, event), kept until [`EmbeddedBus::replay`] (as on JetStream,
/// see [`crate::dlq`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub durable: String,
    pub event: OutgoingEvent,
    pub error: String,
}

struct Subscription {
    durable: String,
    /// Subjects starting with this prefix are delivered (e.g. `roaming.rental.`).
    prefix: String,
    handler: Arc<dyn Handler>,
    running: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("durable", &self.durable)
            .field("prefix", &self.prefix)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    subscriptions: Vec<Subscription>,
    dead_letters: Vec<DeadLetter>,
}

/// The ordering key of an event: events with the same key reach a subscriber
/// in publish order; events with different keys may be handled concurrently.
/// `None` is a key of its own (those events stay in order among themselves).
pub type OrderKey = fn(&OutgoingEvent) -> Option<String>;

fn no_key(_: &OutgoingEvent) -> Option<String> {
    None
}

/// Events of different keys one subscriber handles at once.
const LANES: usize = 32;

/// The embedded bus. Clones share subscribers.
#[derive(Debug, Clone)]
pub struct EmbeddedBus {
    state: Arc<Mutex<State>>,
    max_deliver: u64,
    retry_delay: Duration,
    key: OrderKey,
}

impl Default for EmbeddedBus {
    fn default() -> Self {
        Self::new(5, Duration::from_millis(20))
    }
}

impl EmbeddedBus {
    pub fn new(max_deliver: u64, retry_delay: Duration) -> Self {
        Self {
            state: Arc::default(),
            max_deliver,
            retry_delay,
            key: no_key,
        }
    }

    /// Delivers events of different `key`s concurrently (each subscriber up to
    /// 32 keys at a time; one key's events in order), so a subscriber's
    /// transactions can commit together. Without it every event waits for the
    /// one before it.
    #[must_use]
    pub fn ordered_by(mut self, key: OrderKey) -> Self {
        self.key = key;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Declares a durable subscriber of every subject under `prefix`. Events are
    /// not marked sent until it committed them, also while it is stopped.
    ///
    /// Subscribing again with the same durable and prefix replaces the handler
    /// (a restarted service takes over its durable) and marks it running.
    pub fn subscribe(&self, durable: &str, prefix: &str, handler: Arc<dyn Handler>) {
        let mut state = self.lock();
        if let Some(existing) = state
            .subscriptions
            .iter_mut()
            .find(|s| s.durable == durable && s.prefix == prefix)
        {
            existing.handler = handler;
            existing.running = true;
            return;
        }
        state.subscriptions.push(Subscription {
            durable: durable.to_owned(),
            prefix: prefix.to_owned(),
            handler,
            running: true,
        });
    }

    /// Stops (`false`) or restarts (`true`) a durable's delivery. While stopped,
    /// publishing an event it subscribes to fails, so the relay keeps the event
    /// and retries: it reaches the durable once it runs again.
    pub fn set_running(&self, durable: &str, running: bool) {
        for s in self
            .lock()
            .subscriptions
            .iter_mut()
            .filter(|s| s.durable == durable)
        {
            s.running = running;
        }
    }

    /// Events given up on after `max_deliver` attempts.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead_letters.clone()
    }

    /// Replays the dead letters `selection` names, each to the one subscriber
    /// it failed for (others never see it), and removes each once that
    /// subscriber took it: applied, or dead-lettered anew. A dead letter whose
    /// subscriber is stopped or unknown stays. Returns how many were replayed.
    ///
    /// # Errors
    /// A subscriber kept failing transiently: that dead letter stays (and the
    /// ones not tried yet).
    pub async fn replay(&self, selection: &Selection) -> Result<usize, PublishError> {
        let chosen: Vec<(DeadLetter, Arc<dyn Handler>)> = {
            let mut state = self.lock();
            let State {
                subscriptions,
                dead_letters,
            } = &mut *state;
            let mut chosen = Vec::new();
            dead_letters.retain(|d| {
                let wanted = match selection {
                    Selection::All => true,
                    Selection::Consumer(c) => d.durable == *c,
                    Selection::Event(id) => d.event.event_id.to_string() == *id,
                };
                let subscriber = subscriptions.iter().find(|s| {
                    s.running && s.durable == d.durable && d.event.subject.starts_with(&s.prefix)
                });
                match subscriber {
                    Some(s) if wanted => {
                        chosen.push((d.clone(), Arc::clone(&s.handler)));
                        false
                    }
                    _ => true,
                }
            });
            chosen
        };
        let mut replayed = 0;
        let mut chosen = chosen.into_iter();
        while let Some((dead, handler)) = chosen.next() {
            if let Err(e) = self.deliver(&dead.durable, &handler, &dead.event).await {
                let mut state = self.lock();
                state.dead_letters.push(dead);
                state.dead_letters.extend(chosen.map(|(d, _)| d));
                return Err(PublishError(e));
            }
            replayed += 1;
        }
        Ok(replayed)
    }

    /// Delivers one event: poison is dead-lettered after `max_deliver`
    /// attempts; a transient failure is retried with backoff and, if it
    /// persists, returned so the relay keeps the event and tries again later.
    async fn deliver(
        &self,
        durable: &str,
        handler: &Arc<dyn Handler>,
        event: &OutgoingEvent,
    ) -> Result<(), String> {
        let mut poison_attempts = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let delivery = Delivery {
                subject: &event.subject,
                payload: &event.payload,
                headers: &event.headers,
                attempt,
            };
            let error = match handler.handle(delivery).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            warn!(durable, subject = %event.subject, attempt, error = %error, "handler failed");
            if error.is_poison() {
                poison_attempts += 1;
                if poison_attempts >= self.max_deliver {
                    error!(durable, subject = %event.subject, event_id = %event.event_id, "dead-lettered after max_deliver attempts");
                    adapters_telemetry::metrics::dead_lettered(durable);
                    // One per (durable, event), as on JetStream: an event
                    // the relay delivered again is not a second dead letter.
                    let mut state = self.lock();
                    if !state
                        .dead_letters
                        .iter()
                        .any(|d| d.durable == durable && d.event.event_id == event.event_id)
                    {
                        state.dead_letters.push(DeadLetter {
                            durable: durable.to_owned(),
                            event: event.clone(),
                            error: error.message().to_owned(),
                        });
                    }
                    return Ok(());
                }
            } else if attempt >= self.max_deliver * 4 {
                return Err(format!("subscriber {durable} keeps failing: {error}"));
            }
            tokio::time::sleep(self.retry_delay * u32::try_from(attempt.min(50)).unwrap_or(1))
                .await;
        }
    }
}

impl EmbeddedBus {
    /// Delivers `events` (in publish order) to one subscriber: one lane per key,
    /// lanes concurrently, each lane in order.
    async fn deliver_all(
        &self,
        durable: &str,
        handler: &Arc<dyn Handler>,
        events: Vec<&OutgoingEvent>,
    ) -> Result<(), String> {
        let mut lanes: Vec<Vec<&OutgoingEvent>> = Vec::new();
        let mut lane_of: HashMap<Option<String>, usize> = HashMap::new();
        for event in events {
            let lane = *lane_of.entry((self.key)(event)).or_insert_with(|| {
                lanes.push(Vec::new());
                lanes.len() - 1
            });
            lanes[lane].push(event);
        }
        let lanes_at_once = tokio::sync::Semaphore::new(LANES);
        let running = lanes
            .into_iter()
            .map(|lane| self.deliver_lane(durable, handler, lane, &lanes_at_once));
        futures::future::join_all(running)
            .await
            .into_iter()
            .collect()
    }

    /// One key's events, in order, once a lane is free.
    async fn deliver_lane(
        &self,
        durable: &str,
        handler: &Arc<dyn Handler>,
        lane: Vec<&OutgoingEvent>,
        lanes: &tokio::sync::Semaphore,
    ) -> Result<(), String> {
        let _lane = lanes.acquire().await.map_err(|e| e.to_string())?;
        for event in lane {
            self.deliver(durable, handler, event).await?;
        }
        Ok(())
    }
}

impl EventPublisher for EmbeddedBus {
    async fn publish(&self, events: &[OutgoingEvent]) -> Result<(), PublishError> {
        let subscribers: Vec<(String, String, bool, Arc<dyn Handler>)> = self
            .lock()
            .subscriptions
            .iter()
            .map(|s| {
                (
                    s.durable.clone(),
                    s.prefix.clone(),
                    s.running,
                    Arc::clone(&s.handler),
                )
            })
            .collect();
        // Everything before the first event a stopped subscriber wants goes now;
        // the rest stays with the relay, which tries again.
        let stopped_for = |e: &OutgoingEvent| {
            subscribers
                .iter()
                .find(|(_, prefix, running, _)| !running && e.subject.starts_with(prefix))
                .map(|(durable, ..)| durable.clone())
        };
        let blocked = events
            .iter()
            .enumerate()
            .find_map(|(i, e)| stopped_for(e).map(|durable| (i, durable)));
        let deliverable = blocked.as_ref().map_or(events.len(), |(i, _)| *i);
        let now = &events[..deliverable];
        // Subscribers are independent: deliver to all at once.
        let deliveries = subscribers
            .iter()
            .filter(|(_, _, running, _)| *running)
            .map(|(durable, prefix, _, handler)| {
                let mine = now
                    .iter()
                    .filter(|e| e.subject.starts_with(prefix))
                    .collect();
                self.deliver_all(durable, handler, mine)
            });
        for result in futures::future::join_all(deliveries).await {
            result.map_err(PublishError)?;
        }
        if let Some((_, durable)) = blocked {
            return Err(PublishError(format!("subscriber {durable} is stopped")));
        }
        Ok(())
    }
}
