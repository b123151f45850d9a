use std::future::Future;

use crate::EventId;

/// An event ready to leave its service: already encoded (protobuf bytes), with the
/// subject it goes to and its headers (event type, W3C trace context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEvent {
    /// Also the broker's de-duplication key (`Nats-Msg-Id`).
    pub event_id: EventId,
    pub subject: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// The broker could not confirm a publish.
#[derive(Debug, thiserror::Error)]
#[error("publish failed: {0}")]
pub struct PublishError(pub String);

/// Where the outbox relay sends committed events: NATS JetStream, or the embedded
/// in-process bus.
///
/// Use cases never call this: they hand their events to the repository, which
/// writes them to the outbox in the same transaction as the state change. Only
/// the relay publishes, after commit, so no event is published for a change that
/// rolled back and none is lost for a change that committed.
pub trait EventPublisher: Send + Sync {
    /// Publishes `events` in order and returns once the broker has confirmed
    /// every one (for JetStream: the publish ack). Publishing an event id again
    /// must not deliver it twice (the broker de-duplicates by id).
    ///
    /// # Errors
    /// [`PublishError`] when any event was not confirmed; the relay retries the
    /// unconfirmed ones.
    fn publish(
        &self,
        events: &[OutgoingEvent],
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}
