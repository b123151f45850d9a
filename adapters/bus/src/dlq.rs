//! Dead letters on JetStream, for operators (`roaming dlq list` and
//! `roaming dlq replay`).
//!
//! **Kept: one per consumer and event.** A consumer gives an event up after
//! `max_deliver` failed attempts (poison, [`crate::HandleError::Poison`]) and
//! publishes it to `roaming.dlq.<durable>` (stream `ROAMING_DLQ`): payload and
//! headers as delivered, plus the original subject, the last error and the
//! event id, under a `Nats-Msg-Id` of its own, `<durable>:<event id>`
//! ([`nats::dead_letter_id`]). So every durable an event is poison for keeps
//! its dead letter, and the same durable dead-lettering the same event again
//! within the duplicate window (a redelivery after a lost acknowledgement)
//! stores no second one. (The dead letter used to copy the event's own
//! `Nats-Msg-Id`; JetStream then kept only the first consumer's.) The streams
//! have no age or size limit: a dead letter stays until it is replayed.
//!
//! **Replayed to the one durable it failed for**, not to its original
//! subject. Every durable reading that subject would see a replay there.
//! Today each of them records the event id in its inbox in the transaction of
//! its effect, and inboxes are never pruned, so they would drop it; still:
//! - a durable for which the event is still poison would dead-letter it once
//!   more (a second dead letter of its own once the window has passed);
//! - the replay would need a new `Nats-Msg-Id` (the original one is dropped
//!   within the window) and the event would then be twice in its stream, so a
//!   projection rebuilt from the streams (`roaming view rebuild`) and anyone
//!   counting a stream would meet it twice;
//! - replay would be safe only while every consumer, including future ones,
//!   is idempotent, not merely redelivery.
//!
//! So each durable also reads its own part of `ROAMING_REPLAY`,
//! `roaming.replay.<durable>.>` ([`nats::ConsumerSpec::replay`], started with
//! the durable's other streams and the same handler). A replay is published
//! under `roaming.replay.<durable>.<original subject>`; the consumer strips
//! the root, so the handler sees the original subject, and nothing reaches
//! another durable.
//!
//! **Removed once the replay is stored.** [`replay`] deletes the dead letter
//! from `ROAMING_DLQ` after `ROAMING_REPLAY` acknowledged the republish
//! (stored, on every replica): between the two nothing is lost, and the DLQ
//! holds exactly the dead letters waiting for an operator, so `list` needs no
//! other state. Marking them instead was rejected: a JetStream message cannot
//! change, so a mark would be a second record to keep in step with the first.
//! The record of a replay is the replayed message itself, kept in
//! `ROAMING_REPLAY` with its event id, its error and `Roaming-Replay-Of:
//! <dlq seq>`. A replay interrupted between the publish and the delete is
//! published again by the next run: under the same id (`replay:<dlq
//! seq>:<event id>`) it is dropped within the window, and after it the
//! consumer's inbox makes the second delivery a no-op. A replay that fails
//! again becomes a new dead letter, with an id of its own
//! (`<durable>:<event id>:replay-<dlq seq>`).
//!
//! The embedded bus (`roaming up`) keeps its dead letters in memory with the
//! same rules ([`crate::embedded::EmbeddedBus::replay`]).

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use crate::nats::{
    self, Context, DLQ_ERROR, DLQ_EVENT_ID, DLQ_ORIGINAL_SUBJECT, DLQ_STREAM, REPLAY_OF,
    REPLAY_STREAM, StreamReader,
};

/// One dead letter in `ROAMING_DLQ`.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its sequence in the DLQ stream (what `replay` removes).
    pub seq: u64,
    /// The durable it failed for.
    pub durable: String,
    /// The subject it was published to, without the deployment's prefix.
    pub original_subject: String,
    /// Empty for a message that carried none.
    pub event_id: String,
    /// The handler's last error.
    pub error: String,
    /// When it was dead-lettered.
    pub time: time::OffsetDateTime,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl Record {
    /// One line: `seq consumer subject event time error`, tab-separated.
    pub fn line(&self) -> String {
        let time = self
            .time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| self.time.to_string());
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            self.seq,
            self.durable,
            self.original_subject,
            if self.event_id.is_empty() {
                "-"
            } else {
                &self.event_id
            },
            time,
            self.error.replace(['\n', '\t'], " ")
        )
    }
}

/// Which dead letters an operator means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    /// Those of one durable.
    Consumer(String),
    /// Those of one event (one per durable it failed for).
    Event(String),
}

impl Selection {
    pub fn matches(&self, record: &Record) -> bool {
        match self {
            Self::All => true,
            Self::Consumer(durable) => record.durable == *durable,
            Self::Event(id) => record.event_id == *id,
        }
    }
}

fn dlq_root(prefix: &str) -> String {
    format!("{prefix}{}", DLQ_STREAM.1.trim_end_matches('>'))
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

/// The dead letters of the deployment with stream and subject `prefix`, in
/// the order they were written; only `selection`'s.
///
/// # Errors
/// The DLQ stream does not exist (no service ever started against this
/// NATS and prefix), or NATS failed.
pub async fn list(
    js: &Context,
    prefix: &str,
    selection: &Selection,
) -> Result<Vec<Record>, async_nats::Error> {
    let root = dlq_root(prefix);
    let filter = match selection {
        Selection::Consumer(durable) => format!("{root}{durable}"),
        _ => format!("{root}>"),
    };
    let mut reader =
        StreamReader::open(js, &format!("{prefix}{}", DLQ_STREAM.0), &filter, 1, None).await?;
    let mut records = Vec::new();
    while let Some(m) = reader.next().await? {
        let record = Record {
            seq: m.seq,
            durable: m
                .subject
                .strip_prefix(&root)
                .unwrap_or(&m.subject)
                .to_owned(),
            original_subject: header(&m.headers, DLQ_ORIGINAL_SUBJECT),
            // Dead letters of releases before issue 32 carry the event id
            // as their own `Nats-Msg-Id`.
            event_id: Some(header(&m.headers, DLQ_EVENT_ID))
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| header(&m.headers, "Nats-Msg-Id")),
            error: header(&m.headers, DLQ_ERROR),
            time: m.published,
            headers: m.headers,
            payload: m.payload,
        };
        if selection.matches(&record) {
            records.push(record);
        }
    }
    Ok(records)
}

/// Who reads `durable`'s replays: `None` when no such durable exists on
/// `ROAMING_REPLAY` (no service of this release ever consumed as `durable`, or
/// it was removed: a replay would wait there unread), else the pull requests
/// waiting on it now (0: no process pulls at the moment; a replay waits until
/// one does).
///
/// # Errors
/// NATS failed, or the replay stream does not exist.
pub async fn replay_readers(
    js: &Context,
    prefix: &str,
    durable: &str,
) -> Result<Option<usize>, async_nats::Error> {
    use async_nats::jetstream::context::ConsumerInfoErrorKind;
    let stream = js
        .get_stream(format!("{prefix}{}", REPLAY_STREAM.0))
        .await?;
    match stream.consumer_info(durable).await {
        Ok(info) => Ok(Some(info.num_waiting)),
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The message that replays `record` to its durable: the original headers
/// (the trace context, the event type), the event id, and which dead letter it
/// replays; its own `Nats-Msg-Id`.
fn replay_message(record: &Record) -> PublishMessage {
    let mut headers = HeaderMap::new();
    for (name, values) in record.headers.iter() {
        let name_str: &str = name.as_ref();
        if [DLQ_ERROR, DLQ_ORIGINAL_SUBJECT, REPLAY_OF]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name_str))
        {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    if !record.event_id.is_empty() {
        headers.insert(DLQ_EVENT_ID, record.event_id.as_str());
    }
    headers.insert(REPLAY_OF, record.seq.to_string().as_str());
    PublishMessage::build()
        .payload(record.payload.clone())
        .headers(headers)
        .message_id(format!("replay:{}:{}", record.seq, record.event_id))
}

/// Republishes `record` to its durable's part of `ROAMING_REPLAY` and, once
/// that is acknowledged, removes it from the DLQ. Returns the replay's
/// sequence in `ROAMING_REPLAY`.
///
/// # Errors
/// The publish was not acknowledged (the dead letter stays), or the delete
/// failed (the dead letter stays too; replaying it again is harmless, see the
/// module doc).
pub async fn replay(js: &Context, prefix: &str, record: &Record) -> Result<u64, async_nats::Error> {
    if record.original_subject.is_empty() {
        return Err(format!(
            "dead letter {} has no {DLQ_ORIGINAL_SUBJECT} header: nothing to replay it as",
            record.seq
        )
        .into());
    }
    let subject = format!(
        "{}.{}",
        nats::replay_subject_root(prefix, &record.durable),
        record.original_subject
    );
    let ack: PublishAckFuture = js.send_publish(subject, replay_message(record)).await?;
    let stored = ack.await?;
    let dlq = js.get_stream(format!("{prefix}{}", DLQ_STREAM.0)).await?;
    if !dlq.delete_message(record.seq).await? {
        return Err(format!("dead letter {} was not deleted", record.seq).into());
    }
    Ok(stored.sequence)
}
