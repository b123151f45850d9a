use crate::{Clock, EventId, IdGenerator, Timestamp};

/// A domain event as it is recorded: its id (UUIDv7, also the NATS `Nats-Msg-Id`
/// and the inbox key of every consumer) and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded<E> {
    pub event_id: EventId,
    pub occurred_at: Timestamp,
    pub event: E,
}

impl<E> Recorded<E> {
    pub fn new(event_id: EventId, occurred_at: Timestamp, event: E) -> Self {
        Self {
            event_id,
            occurred_at,
            event,
        }
    }

    /// What one use case records: each event with a new id, all at the
    /// clock's one `now`.
    pub fn all(
        clock: &impl Clock,
        ids: &impl IdGenerator,
        events: impl IntoIterator<Item = E>,
    ) -> Vec<Self> {
        let now = clock.now();
        events
            .into_iter()
            .map(|e| Self::new(ids.event_id(), now, e))
            .collect()
    }
}
