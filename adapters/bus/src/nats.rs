//! NATS JetStream: streams, the outbox publisher and durable pull consumers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, StorageType};
use bytes::Bytes;
use domain_kernel::{EventPublisher, OutgoingEvent, PublishError};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tracing::{debug, error, info, warn};

use crate::handler::{Delivery, HandleError, Handler};

/// One stream per producing context (DOMAIN.md, "Events").
pub const STREAMS: [(&str, &str); 4] = [
    ("ROAMING_RESERVATION", "roaming.reservation.>"),
    ("ROAMING_PAYMENT", "roaming.payment.>"),
    ("ROAMING_RENTAL", "roaming.rental.>"),
    ("ROAMING_PARKING", "roaming.parking.>"),
];

/// Dead letters: `roaming.dlq.<durable>`.
pub const DLQ_STREAM: (&str, &str) = ("ROAMING_DLQ", "roaming.dlq.>");

/// How long JetStream remembers a `Nats-Msg-Id` to drop a re-publish.
pub const DUPLICATE_WINDOW: Duration = Duration::from_mins(10);

/// Header naming the subject a dead letter was first published to.
pub const DLQ_ORIGINAL_SUBJECT: &str = "Roaming-Original-Subject";
/// Header carrying the last handler error of a dead letter.
pub const DLQ_ERROR: &str = "Roaming-Error";

pub use async_nats::jetstream::Context;

/// Whether the client behind `js` is connected now (for readiness).
pub fn is_connected(js: &Context) -> bool {
    js.client().connection_state() == async_nats::connection::State::Connected
}

/// Connects with reconnects forever (the client buffers while disconnected).
///
/// Credentials in the URL (`nats://user:password@host`, `nats://token@host`)
/// are taken out of it and given to the client as options, so the address
/// it logs (async-nats prints each connection attempt's address at DEBUG)
/// carries no secret.
pub async fn connect(url: &str) -> Result<Context, async_nats::ConnectError> {
    let (url, credentials) = split_credentials(url);
    let options = match credentials {
        Some(Credentials::UserPassword(user, password)) => {
            async_nats::ConnectOptions::with_user_and_password(user, password)
        }
        Some(Credentials::Token(token)) => async_nats::ConnectOptions::with_token(token),
        None => async_nats::ConnectOptions::new(),
    };
    let client = options
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => warn!("nats disconnected"),
                async_nats::Event::Connected => info!("nats connected"),
                other => debug!(event = %other, "nats event"),
            }
        })
        .connect(url.as_str())
        .await?;
    Ok(jetstream::new(client))
}

#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// `url` without its user part, and what that part held (percent-decoded).
fn split_credentials(url: &str) -> (String, Option<Credentials>) {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), None);
    };
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return (url.to_owned(), None);
    };
    let bare = format!("{}{}", &url[..start], &rest[at + 1..]);
    let credentials = match rest[..at].split_once(':') {
        Some((user, password)) => {
            Credentials::UserPassword(percent_decoded(user), percent_decoded(password))
        }
        None => Credentials::Token(percent_decoded(&rest[..at])),
    };
    (bare, Some(credentials))
}

fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits: at most 0xff.
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Creates the streams (file storage, duplicate window, `replicas` copies on
/// a NATS cluster: 3 in production, so an acknowledged event survives the
/// loss of a server) if they do not exist. `prefix` namespaces them (tests);
/// production uses "". An existing stream is left as it is.
///
/// Every process of a mesh calls this as it starts. nats-server checks a new
/// stream's name and its subjects at two moments, so a create that races
/// another process's create of the same stream can fail with "subjects overlap
/// with an existing stream" (10065) although the stream it wanted now exists:
/// a failed create is therefore followed by a look-up, and retried a few times
/// before it is an error.
pub async fn ensure_streams(
    js: &Context,
    prefix: &str,
    replicas: usize,
) -> Result<(), async_nats::Error> {
    const ATTEMPTS: u32 = 5;
    for (name, subjects) in STREAMS.iter().chain(std::iter::once(&DLQ_STREAM)) {
        let config = stream::Config {
            name: format!("{prefix}{name}"),
            subjects: vec![format!("{prefix}{subjects}")],
            storage: StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: replicas,
            ..Default::default()
        };
        let mut attempt = 1;
        loop {
            let Err(error) = js.get_or_create_stream(config.clone()).await else {
                break;
            };
            if js.get_stream(&config.name).await.is_ok() {
                debug!(stream = %config.name, %error, "another process created the stream first");
                break;
            }
            if attempt == ATTEMPTS {
                return Err(error.into());
            }
            warn!(stream = %config.name, %error, attempt, "creating the stream failed; retrying");
            tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await;
            attempt += 1;
        }
    }
    Ok(())
}

/// Publishes outbox batches: `Nats-Msg-Id` = event id, every ack awaited, at most
/// `window` acks in flight (so thousands of un-polled ack futures never stall the
/// client).
#[derive(Debug, Clone)]
pub struct JetStreamPublisher {
    js: Context,
    window: usize,
    /// Prepended to every subject (tests run several meshes on one server).
    subject_prefix: String,
}

impl JetStreamPublisher {
    pub fn new(js: Context) -> Self {
        Self {
            js,
            window: 256,
            subject_prefix: String::new(),
        }
    }

    #[must_use]
    pub fn with_subject_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.subject_prefix);
        self
    }

    #[must_use]
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }
}

fn publish_error(e: impl std::fmt::Display) -> PublishError {
    PublishError(e.to_string())
}

impl EventPublisher for JetStreamPublisher {
    async fn publish(&self, events: &[OutgoingEvent]) -> Result<(), PublishError> {
        let mut in_flight = FuturesOrdered::new();
        for event in events {
            let mut headers = HeaderMap::new();
            for (k, v) in &event.headers {
                headers.insert(k.as_str(), v.as_str());
            }
            let message = PublishMessage::build()
                .payload(Bytes::from(event.payload.clone()))
                .headers(headers)
                .message_id(event.event_id.to_string());
            let subject = format!("{}{}", self.subject_prefix, event.subject);
            let ack = self
                .js
                .send_publish(subject, message)
                .await
                .map_err(publish_error)?;
            in_flight.push_back(ack.into_future());
            if in_flight.len() >= self.window
                && let Some(ack) = in_flight.next().await
            {
                ack.map_err(publish_error)?;
            }
        }
        while let Some(ack) = in_flight.next().await {
            ack.map_err(publish_error)?;
        }
        Ok(())
    }
}

/// A durable consumer of one stream.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The stream, e.g. `ROAMING_RENTAL` (with the deployment's prefix).
    pub stream: String,
    /// Shared by every replica of the consuming service.
    pub durable: String,
    /// One filter subject (nats-server 2.9 has no multi-filter consumers).
    pub filter_subject: String,
    pub ack_wait: Duration,
    pub max_deliver: i64,
    /// Where events go after `max_deliver` failed attempts.
    pub dead_letter_subject: String,
    pub batch: usize,
    /// Stripped from delivered subjects before the handler sees them.
    pub subject_prefix: String,
    /// The ordering key of an event (subject without prefix, payload): of
    /// the events pulled and ready at once, those with the same key are
    /// handled in stream order, those with different keys concurrently, so a
    /// consumer is not one database round trip per event behind its stream.
    /// `None` (the default): one at a time, in stream order.
    pub order_key: Option<OrderKey>,
}

/// See [`ConsumerSpec::order_key`]; `None` is a key of its own.
pub type OrderKey = fn(&str, &[u8]) -> Option<String>;

impl ConsumerSpec {
    /// The usual settings for `durable` reading `stream` (as named in [`STREAMS`]).
    pub fn new(prefix: &str, stream: &str, durable: &str) -> Self {
        let filter = STREAMS
            .iter()
            .find(|(name, _)| *name == stream)
            .map_or_else(
                || format!("{stream}.>"),
                |(_, subjects)| (*subjects).to_owned(),
            );
        Self {
            stream: format!("{prefix}{stream}"),
            durable: durable.to_owned(),
            filter_subject: format!("{prefix}{filter}"),
            // A consumer killed mid-batch delays its unacknowledged events by
            // this much (handlers that take longer send progress).
            ack_wait: Duration::from_secs(5),
            max_deliver: 5,
            dead_letter_subject: format!("{prefix}roaming.dlq.{durable}"),
            // Small enough that a batch is handled well within the ack wait.
            batch: 32,
            subject_prefix: prefix.to_owned(),
            order_key: None,
        }
    }

    /// Handles ready events of different keys concurrently (see
    /// [`ConsumerSpec::order_key`]).
    #[must_use]
    pub fn ordered_by(mut self, key: OrderKey) -> Self {
        self.order_key = Some(key);
        self
    }
}

/// Runs a durable pull consumer until `shutdown` resolves, applying each event
/// with `handler` and acknowledging it only after the handler committed.
/// Failed events are re-delivered (`Nak` with backoff) up to `max_deliver`
/// times, then published to the dead-letter subject and terminated. When the
/// connection or heartbeats are lost, the consumer is looked up (or created)
/// again and pulling resumes where the durable left off.
pub async fn run_consumer(
    js: Context,
    spec: ConsumerSpec,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    loop {
        let consumer = tokio::select! {
            () = &mut shutdown => return,
            c = open_consumer(&js, &spec) => c,
        };
        let mut messages = match consumer {
            Ok(m) => {
                backoff = Duration::from_millis(100);
                m
            }
            Err(e) => {
                warn!(durable = %spec.durable, error = %e, "opening consumer failed; retrying");
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = &mut shutdown => {
                    hand_back(&js, &spec, &mut messages).await;
                    return;
                }
                next = messages.next() => next,
            };
            let first = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    warn!(durable = %spec.durable, error = %e, "consumer stream failed; recreating");
                    break;
                }
                None => break,
            };
            let Some(key) = spec.order_key else {
                handle_one(&js, &spec, handler.as_ref(), first).await;
                continue;
            };
            // With the first event, whatever else has arrived already (up to
            // one batch): never waits for more than there is.
            let mut ready = vec![first];
            let mut failed = None;
            while ready.len() < spec.batch {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => ready.push(message),
                    Some(Some(Err(e))) => {
                        failed = Some(e);
                        break;
                    }
                    Some(None) | None => break,
                }
            }
            handle_window(&js, &spec, handler.as_ref(), key, ready).await;
            if let Some(e) = failed {
                warn!(durable = %spec.durable, error = %e, "consumer stream failed; recreating");
                break;
            }
        }
    }
}

/// Handles `ready` (in stream order) in lanes by key: lanes concurrently,
/// each lane in order, every event acknowledged as soon as its own handler
/// committed. Returns once every lane is done, so no more than one window of
/// events is in the handler at once.
async fn handle_window(
    js: &Context,
    spec: &ConsumerSpec,
    handler: &dyn Handler,
    key: OrderKey,
    ready: Vec<jetstream::Message>,
) {
    let mut lanes: Vec<Vec<jetstream::Message>> = Vec::new();
    let mut lane_of: HashMap<Option<String>, usize> = HashMap::new();
    for message in ready {
        let subject = message.subject.as_str();
        let subject = subject
            .strip_prefix(spec.subject_prefix.as_str())
            .unwrap_or(subject);
        let lane = *lane_of
            .entry(key(subject, &message.payload))
            .or_insert_with(|| {
                lanes.push(Vec::new());
                lanes.len() - 1
            });
        lanes[lane].push(message);
    }
    let running = lanes.into_iter().map(|lane| async move {
        for message in lane {
            handle_one(js, spec, handler, message).await;
        }
    });
    futures::future::join_all(running).await;
}

/// On shutdown: gives every event pulled but not handled back to the server
/// (`Nak` without delay), so another replica gets it at once rather than after
/// the ack wait, and makes sure those naks left the process.
///
/// Bounded: the stream keeps pulling while it is read, and a nak'd event may
/// be redelivered to this very stream, so "until nothing arrives" lasted for
/// seconds on a busy stream (into the 10 s grace period of a SIGTERM). At most two batches
/// (what outstanding pull requests can bring) within 250 ms; anything after
/// that waits for its ack wait.
async fn hand_back(js: &Context, spec: &ConsumerSpec, messages: &mut pull::Stream) {
    let mut handed_back = 0usize;
    let limit = spec.batch.saturating_mul(2);
    let until = tokio::time::Instant::now() + Duration::from_millis(250);
    while handed_back < limit {
        let wait = until
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_millis(50));
        let Ok(Some(Ok(message))) = tokio::time::timeout(wait, messages.next()).await else {
            break;
        };
        if message.ack_with(AckKind::Nak(None)).await.is_ok() {
            handed_back += 1;
        }
    }
    if let Err(e) = js.client().flush().await {
        warn!(durable = %spec.durable, error = %e, "flushing naks failed; those events wait for the ack wait");
    }
    info!(durable = %spec.durable, handed_back, "consumer stopped");
}

async fn open_consumer(
    js: &Context,
    spec: &ConsumerSpec,
) -> Result<pull::Stream, async_nats::Error> {
    let stream = js.get_stream(&spec.stream).await?;
    let config = pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subject: spec.filter_subject.clone(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        // The server never gives up on an event: a delivery that timed out
        // (a consumer killed, or a batch that waited in a slow one's buffer)
        // is not a failed attempt. Handler failures are counted below
        // against `spec.max_deliver` and end in the dead-letter subject.
        max_deliver: -1,
        ..Default::default()
    };
    let mut consumer: async_nats::jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(&spec.durable, config.clone())
        .await?;
    // A durable created by an older release keeps its settings until told.
    let current = &consumer.cached_info().config;
    if current.ack_wait != spec.ack_wait || current.max_deliver != config.max_deliver {
        match stream.update_consumer(config).await {
            Ok(updated) => consumer = updated,
            Err(e) => {
                warn!(durable = %spec.durable, error = %e, "updating the consumer's settings failed; keeping them");
            }
        }
    }
    Ok(consumer
        .stream()
        .max_messages_per_batch(spec.batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?)
}

async fn handle_one(
    js: &Context,
    spec: &ConsumerSpec,
    handler: &dyn Handler,
    message: jetstream::Message,
) {
    let attempt = message
        .info()
        .map_or(1, |i| u64::try_from(i.delivered).unwrap_or(1));
    let headers: Vec<(String, String)> = message
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string())))
        .collect();
    let subject = message.subject.as_str();
    let subject = subject
        .strip_prefix(spec.subject_prefix.as_str())
        .unwrap_or(subject);
    let delivery = Delivery {
        subject,
        payload: &message.payload,
        headers: &headers,
        attempt,
    };
    // A transient failure is retried here, with backoff, while telling the
    // server we are still working on it, so it never counts toward
    // max_deliver and an outage of a dependency loses no event.
    let mut result = handler.handle(delivery).await;
    let mut retry = 0u32;
    while let Err(HandleError::Transient(e)) = &result {
        retry += 1;
        let wait = Duration::from_millis(100 * u64::from(retry.min(50)));
        warn!(durable = %spec.durable, %subject, retry, error = %e, "handler failed transiently; retrying");
        tokio::time::sleep(wait).await;
        let _ = message.ack_with(AckKind::Progress).await;
        result = handler.handle(delivery).await;
    }
    match result {
        Ok(()) => {
            // Confirmed ack: if it is lost the event comes again and the inbox
            // makes the repeat harmless.
            if let Err(e) = message.double_ack().await {
                warn!(durable = %spec.durable, error = %e, "ack not confirmed; the event will be redelivered");
            }
        }
        Err(e) if i64::try_from(attempt).unwrap_or(i64::MAX) >= spec.max_deliver => {
            error!(durable = %spec.durable, %subject, attempt, error = %e, "dead-lettering after max_deliver attempts");
            adapters_telemetry::metrics::dead_lettered(&spec.durable);
            let mut dl_headers = HeaderMap::new();
            for (k, v) in &headers {
                dl_headers.insert(k.as_str(), v.as_str());
            }
            dl_headers.insert(DLQ_ORIGINAL_SUBJECT, subject);
            dl_headers.insert(DLQ_ERROR, e.message());
            let published = async {
                js.publish_with_headers(
                    spec.dead_letter_subject.clone(),
                    dl_headers,
                    message.payload.clone(),
                )
                .await?
                .await?;
                Ok::<_, async_nats::Error>(())
            }
            .await;
            match published {
                Ok(()) => {
                    if let Err(e) = message.ack_with(AckKind::Term).await {
                        warn!(durable = %spec.durable, error = %e, "terminating a dead letter failed");
                    }
                }
                Err(e) => {
                    error!(durable = %spec.durable, error = %e, "dead-letter publish failed; the event will be redelivered");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                }
            }
        }
        Err(e) => {
            warn!(durable = %spec.durable, %subject, attempt, error = %e, "handler failed; will retry");
            let delay = Duration::from_millis(100 * attempt.min(50));
            let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
        }
    }
}

#[cfg(test)]
mod credentials {
    use super::{Credentials, split_credentials};

    #[test]
    fn credentials_leave_the_url_for_the_options() {
        assert_eq!(
            split_credentials("nats://u%40x:p%3Ass@nats:4222"),
            (
                "nats://nats:4222".to_owned(),
                Some(Credentials::UserPassword("u@x".into(), "p:ss".into()))
            )
        );
        assert_eq!(
            split_credentials("nats://s3cret@10.0.0.1:4222"),
            (
                "nats://10.0.0.1:4222".to_owned(),
                Some(Credentials::Token("s3cret".into()))
            )
        );
        assert_eq!(
            split_credentials("nats://nats:4222"),
            ("nats://nats:4222".to_owned(), None)
        );
    }
}
