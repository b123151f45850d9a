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

/// Dead letters: `roaming.dlq.<durable>`, one per (durable, event) (see
/// [`dead_letter_id`]), kept until replayed ([`crate::dlq`]).
pub const DLQ_STREAM: (&str, &str) = ("ROAMING_DLQ", "roaming.dlq.>");

/// Dead letters replayed to the one durable they failed for:
/// `roaming.replay.<durable>.<original subject>`. Each durable also reads its
/// own part of this stream ([`ConsumerSpec::replay`]), so a replay reaches no
/// other consumer of the original subject and adds nothing to the original
/// stream (see [`crate::dlq`]).
pub const REPLAY_STREAM: (&str, &str) = ("ROAMING_REPLAY", "roaming.replay.>");

/// How long JetStream remembers a `Nats-Msg-Id` to drop a re-publish.
pub const DUPLICATE_WINDOW: Duration = Duration::from_mins(10);

/// Header naming the subject a dead letter was first published to.
pub const DLQ_ORIGINAL_SUBJECT: &str = "Roaming-Original-Subject";
/// Header carrying the last handler error of a dead letter.
pub const DLQ_ERROR: &str = "Roaming-Error";
/// Header carrying the event id of a dead letter (the original message's
/// `Nats-Msg-Id`, which the dead letter cannot keep: it has an id of its own).
pub const DLQ_EVENT_ID: &str = "Roaming-Event-Id";
/// Header of a replayed message: the DLQ sequence of the dead letter it replays.
pub const REPLAY_OF: &str = "Roaming-Replay-Of";

/// The broker's de-duplication header.
const MSG_ID: &str = "Nats-Msg-Id";

/// The `Nats-Msg-Id` of the dead letter `durable` writes for a message with
/// `headers` (the one delivered, which failed `max_deliver` times): one id per
/// (durable, event), so every durable an event is poison for keeps its own
/// dead letter while a second dead-lettering of the same event by the same
/// durable (a redelivery after a lost ack) is dropped within the duplicate
/// window. A replayed message that fails again gets an id of its own
/// (`...:replay-<dlq seq>`), since the id it replays was used. Without any
/// event id (a message not published by this mesh): the original stream and
/// sequence.
pub fn dead_letter_id(durable: &str, headers: &HeaderMap, origin: (&str, u64)) -> String {
    let event = event_id_of(headers)
        .map_or_else(|| format!("{}-{}", origin.0, origin.1), ToOwned::to_owned);
    match headers.get(REPLAY_OF) {
        Some(replayed) => format!("{durable}:{event}:replay-{replayed}"),
        None => format!("{durable}:{event}"),
    }
}

/// The event id a message carries: a replayed one in [`DLQ_EVENT_ID`], an
/// original in `Nats-Msg-Id`.
fn event_id_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(DLQ_EVENT_ID)
        .or_else(|| headers.get(MSG_ID))
        .map(async_nats::HeaderValue::as_str)
        .filter(|id| !id.is_empty())
}

pub use async_nats::jetstream::Context;

/// Whether the client behind `js` is connected now (for readiness).
pub fn is_connected(js: &Context) -> bool {
    js.client().connection_state() == async_nats::connection::State::Connected
}

/// Connects with reconnects forever (the client buffers while disconnected).
///
/// `url` is one server or a cluster's servers, comma-separated
/// (`nats://a:4222,nats://b:4222,nats://c:4222`; a name may also resolve to
/// several, and the client learns the rest of a cluster from the server it
/// reaches), each checked by [`servers`]. Credentials in the URL
/// (`nats://user:password@host`, `nats://token@host`) are taken out of it and
/// given to the client as options, so the address it logs (async-nats prints
/// each connection attempt's address at DEBUG) carries no secret.
///
/// # Errors
/// A server list [`servers`] refuses (as `InvalidArgument`).
pub async fn connect(url: &str) -> Result<Context, async_nats::ConnectError> {
    let (addrs, credentials) = servers(url).map_err(|e| {
        async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e)
    })?;
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
        .connect(addrs)
        .await?;
    Ok(jetstream::new(client))
}

/// The servers of a NATS URL setting, without their user part, and that
/// user part (one for all: entries that name one must name the same).
/// Each entry is a `nats://host[:port]` address (port 4222 when left out).
/// Errors name an entry by its position and never repeat a user part.
///
/// # Errors
/// An empty entry, another scheme, an address the client cannot parse, or
/// entries with different credentials.
pub fn servers(url: &str) -> Result<(Vec<async_nats::ServerAddr>, Option<Credentials>), String> {
    // An entry starts with `nats://`: a comma elsewhere (in a password)
    // belongs to the entry it is in.
    let mut entries: Vec<String> = Vec::new();
    for piece in url.split(',') {
        match entries.last_mut() {
            Some(last) if !piece.trim_start().contains("://") => {
                last.push(',');
                last.push_str(piece);
            }
            _ => entries.push(piece.to_owned()),
        }
    }
    let mut addrs = Vec::with_capacity(entries.len());
    let mut credentials: Option<Credentials> = None;
    let count = entries.len();
    for (i, entry) in entries.iter().map(|e| e.trim()).enumerate() {
        // Never the entry itself: it may hold a password.
        let which = if count == 1 {
            String::new()
        } else {
            format!("server {} of {count}: ", i + 1)
        };
        if entry.is_empty() {
            return Err(format!("{which}empty (a comma too many?)"));
        }
        if !entry.starts_with("nats://") {
            return Err(format!("{which}must start with nats://"));
        }
        let (bare, given) = split_credentials(entry);
        let addr = bare.parse::<async_nats::ServerAddr>().map_err(|_| {
            format!("{which}not a NATS address (nats://[user[:password]@]host[:port])")
        })?;
        if addr.host().is_empty() {
            return Err(format!("{which}no host"));
        }
        match (&credentials, given) {
            (_, None) => {}
            (None, Some(c)) => credentials = Some(c),
            (Some(known), Some(c)) if *known == c => {}
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{which}names other credentials than an earlier server (one user for the whole cluster)"
                ));
            }
        }
        addrs.push(addr);
    }
    Ok((addrs, credentials))
}

/// The user part of a NATS URL, given to the client as options.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// `url` without its user part, and what that part held (percent-decoded).
fn split_credentials(url: &str) -> (String, Option<Credentials>) {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), None);
    };
    let rest = &url[start..];
    // The last `@`: a password may hold `/`, `?` or `#` unencoded.
    let Some(at) = rest.rfind('@') else {
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
    for (name, subjects) in STREAMS.iter().chain([&DLQ_STREAM, &REPLAY_STREAM]) {
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
            let error = match js.get_or_create_stream(config.clone()).await {
                Ok(stream) => {
                    reconcile(js, &stream.cached_info().config, &config).await?;
                    break;
                }
                Err(error) => error,
            };
            if let Ok(stream) = js.get_stream(&config.name).await {
                debug!(stream = %config.name, %error, "another process created the stream first");
                reconcile(js, &stream.cached_info().config, &config).await?;
                break;
            }
            if attempt == ATTEMPTS {
                return Err(format!("{error} ({})", cause_of(&error.to_string(), replicas)).into());
            }
            warn!(stream = %config.name, %error, attempt, "creating the stream failed; retrying");
            tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await;
            attempt += 1;
        }
    }
    Ok(())
}

/// What a failure to create the streams most likely means, for the
/// operator: the server's words are terse (`timed out`, `no suitable
/// peers`).
fn cause_of(error: &str, replicas: usize) -> String {
    let error = error.to_ascii_lowercase();
    if error.contains("non-clustered") {
        format!(
            "a stream with {replicas} replicas needs a cluster of at least {replicas} JetStream servers; this server is not in one (nats_stream_replicas = 1 for a single server)"
        )
    } else if error.contains("no suitable peers") || error.contains("insufficient resources") {
        format!(
            "placement impossible: a stream with {replicas} replicas needs {replicas} JetStream servers up with room; fewer are"
        )
    } else if error.contains("not enabled") {
        "JetStream is not enabled on the server (nats-server -js)".to_owned()
    } else if error.contains("timed out") || error.contains("timeout") {
        "JetStream did not answer: a cluster without a quorum (a majority of its servers up) answers nothing, nor does a server without JetStream (nats-server -js)".to_owned()
    } else {
        "see the server's log".to_owned()
    }
}

/// Brings an existing stream (`have`) to what the settings ask (`wanted`):
/// more replicas and the duplicate window are updated, each change logged;
/// fewer replicas are refused (durability is not lowered by a start), and so
/// is a stream stored otherwise (memory) or bound to other subjects, since
/// changing either strands or loses events (recreate it, or fix
/// `nats_prefix`). Several processes starting at once may each update: the
/// same change, harmless.
async fn reconcile(
    js: &Context,
    have: &stream::Config,
    wanted: &stream::Config,
) -> Result<(), async_nats::Error> {
    if have.storage != wanted.storage || have.subjects != wanted.subjects {
        return Err(format!(
            "stream {} is {:?}-stored for subjects {:?}; the mesh needs {:?} for {:?}, and changing either would lose or strand events: recreate the stream (or set nats_prefix)",
            have.name, have.storage, have.subjects, wanted.storage, wanted.subjects
        )
        .into());
    }
    if wanted.num_replicas < have.num_replicas {
        return Err(format!(
            "stream {} keeps {} copies and the settings ask {}: fewer copies are not made at start (a start with an old setting during a rollout would flip them); lower it with `nats stream edit`, or set nats_stream_replicas",
            have.name, have.num_replicas, wanted.num_replicas
        )
        .into());
    }
    let mut changes = Vec::new();
    if have.num_replicas != wanted.num_replicas {
        changes.push(format!(
            "replicas {} -> {}",
            have.num_replicas, wanted.num_replicas
        ));
    }
    if have.duplicate_window != wanted.duplicate_window {
        changes.push(format!(
            "duplicate window {:?} -> {:?}",
            have.duplicate_window, wanted.duplicate_window
        ));
    }
    if changes.is_empty() {
        return Ok(());
    }
    let mut updated = have.clone();
    updated.num_replicas = wanted.num_replicas;
    updated.duplicate_window = wanted.duplicate_window;
    let changes = changes.join(", ");
    js.update_stream(updated)
        .await
        .map_err(|e| format!("stream {}: {changes} refused by the server: {e}", have.name))?;
    warn!(stream = %have.name, "stream brought to the settings: {changes}");
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

/// How long a publish waits for its stream's ack before it is sent again.
/// JetStream answers in milliseconds; no answer within this means the server
/// holding the request died or the stream is electing a leader, and waiting
/// the client's 5 s default stalled events that long after a node was lost.
/// Sending again is safe: the stream drops a repeated `Nats-Msg-Id` within
/// its duplicate window.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(1);

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
            in_flight.push_back(tokio::time::timeout(ACK_TIMEOUT, ack.into_future()));
            if in_flight.len() >= self.window
                && let Some(ack) = in_flight.next().await
            {
                acked(ack)?;
            }
        }
        while let Some(ack) = in_flight.next().await {
            acked(ack)?;
        }
        Ok(())
    }
}

fn acked(
    ack: Result<
        Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
        tokio::time::error::Elapsed,
    >,
) -> Result<(), PublishError> {
    match ack {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(publish_error(e)),
        Err(_) => Err(PublishError(format!(
            "no ack within {} ms (a server lost, or the stream electing a leader); sent again",
            ACK_TIMEOUT.as_millis()
        ))),
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
    /// Where this consumer reports how far behind its stream it is.
    pub lag: Option<ConsumeLag>,
}

/// How far behind their streams a process's consumers are, for the broker's
/// health: per durable, while events wait for it, the longer of the time
/// since its ack floor last moved (a stalled pull, a handler failing over
/// and over, a consumer without a leader) and the age of the last event it
/// acknowledged (a consumer that moves, but far behind).
#[derive(Debug, Clone, Default)]
pub struct ConsumeLag(Arc<std::sync::Mutex<HashMap<String, Behind>>>); // keyed by `lag_key`

#[derive(Debug, Clone, Copy, Default)]
struct Behind {
    /// Events wait, and the ack floor has not moved since then.
    waiting_since: Option<tokio::time::Instant>,
    /// The age of the last event acknowledged, when it was.
    last_acked_age: Duration,
}

impl ConsumeLag {
    /// The consumer furthest behind (`durable on STREAM`) and by how much;
    /// `None` while every one is caught up.
    pub fn worst(&self) -> Option<(String, Duration)> {
        let now = tokio::time::Instant::now();
        self.lock()
            .iter()
            .filter_map(|(durable, b)| {
                let since = b.waiting_since?;
                Some((
                    durable.clone(),
                    now.duration_since(since).max(b.last_acked_age),
                ))
            })
            .max_by_key(|(_, behind)| *behind)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Behind>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn acked(&self, key: &str, age: Duration) {
        self.lock()
            .entry(key.to_owned())
            .or_default()
            .last_acked_age = age;
    }

    /// What the consumer's leader said (`None`: it did not answer).
    fn observed(&self, key: &str, waiting: Option<bool>, floor_moved: bool) {
        let mut all = self.lock();
        let b = all.entry(key.to_owned()).or_default();
        match waiting {
            Some(false) => *b = Behind::default(),
            Some(true) if floor_moved => b.waiting_since = Some(tokio::time::Instant::now()),
            Some(true) | None => {
                b.waiting_since
                    .get_or_insert_with(tokio::time::Instant::now);
            }
        }
    }

    fn stopped(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// A consumer's entry in [`ConsumeLag`]: `durable on STREAM`. A service's
/// durable reads several streams (and its replays) under one name; keyed by
/// the name alone, a caught-up stream's look reset a stalled one's.
fn lag_key(spec: &ConsumerSpec) -> String {
    format!("{} on {}", spec.durable, spec.stream)
}

/// How often a consumer's position is read for [`ConsumeLag`].
const LAG_LOOK: Duration = Duration::from_secs(1);

/// Reads `spec`'s consumer info every [`LAG_LOOK`] into `lag`; never ends.
async fn watch_lag(js: &Context, spec: &ConsumerSpec, lag: &ConsumeLag) {
    let mut floor = None;
    loop {
        tokio::time::sleep(LAG_LOOK).await;
        let info = async {
            js.get_stream_no_info(&spec.stream)
                .await
                .map_err(async_nats::Error::from)?
                .consumer_info(&spec.durable)
                .await
                .map_err(async_nats::Error::from)
        };
        match tokio::time::timeout(ACK_TIMEOUT * 2, info).await {
            Ok(Ok(info)) => {
                let waiting = info.num_pending > 0 || info.num_ack_pending > 0;
                let moved = floor != Some(info.ack_floor.stream_sequence);
                floor = Some(info.ack_floor.stream_sequence);
                lag.observed(&lag_key(spec), Some(waiting), moved);
            }
            Ok(Err(e)) => {
                debug!(durable = %spec.durable, error = %e, "reading the consumer's position failed");
                lag.observed(&lag_key(spec), None, false);
            }
            Err(_) => lag.observed(&lag_key(spec), None, false),
        }
    }
}

/// `<prefix>roaming.replay.<durable>`: under it, the original subject.
pub fn replay_subject_root(prefix: &str, durable: &str) -> String {
    format!(
        "{prefix}{}.{durable}",
        REPLAY_STREAM.1.trim_end_matches(".>")
    )
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
            lag: None,
        }
    }

    /// The part of [`REPLAY_STREAM`] that is `durable`'s: dead letters an
    /// operator replays to it, with the subject they first had (the handler
    /// sees that one). Failing again, they go to `durable`'s dead letters.
    pub fn replay(prefix: &str, durable: &str) -> Self {
        let mut spec = Self::new(prefix, REPLAY_STREAM.0, durable);
        spec.filter_subject = format!("{}.>", replay_subject_root(prefix, durable));
        spec.subject_prefix = format!("{}.", replay_subject_root(prefix, durable));
        spec
    }

    /// Handles ready events of different keys concurrently (see
    /// [`ConsumerSpec::order_key`]).
    #[must_use]
    pub fn ordered_by(mut self, key: OrderKey) -> Self {
        self.order_key = Some(key);
        self
    }

    /// Reports how far behind the consumer is to `lag` (see [`ConsumeLag`]).
    #[must_use]
    pub fn watched_by(mut self, lag: ConsumeLag) -> Self {
        self.lag = Some(lag);
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
    let Some(lag) = spec.lag.clone() else {
        return consume(js, spec, handler, shutdown).await;
    };
    tokio::select! {
        () = consume(js.clone(), spec.clone(), handler, shutdown) => {}
        () = watch_lag(&js, &spec, &lag) => {}
    }
    lag.stopped(&lag_key(&spec));
}

async fn consume(
    js: Context,
    spec: ConsumerSpec,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    let mut failed_opens = 0u32;
    // A new leader of the durable (its old one died, or stepped down) is
    // told here, so the pull is reopened on it at once instead of after
    // missed heartbeats. Without the subscription the heartbeats still do it.
    let mut leader_changes = match js
        .client()
        .subscribe(leader_elected_subject(&spec.stream, &spec.durable))
        .await
    {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(durable = %spec.durable, error = %e, "not following the consumer's leader changes; missed heartbeats reopen it");
            None
        }
    };
    loop {
        // Changes before this open are covered by it.
        if let Some(changes) = leader_changes.as_mut() {
            while let Some(Some(_)) = changes.next().now_or_never() {}
        }
        let consumer = tokio::select! {
            () = &mut shutdown => return,
            c = tokio::time::timeout(OPEN_TIMEOUT, open_consumer(&js, &spec)) => {
                c.unwrap_or_else(|_| Err(format!("no answer within {} ms", OPEN_TIMEOUT.as_millis()).into()))
            }
        };
        let mut messages = match consumer {
            Ok(m) => {
                if failed_opens > 0 {
                    info!(durable = %spec.durable, failed_opens, "consumer open again");
                    failed_opens = 0;
                }
                backoff = Duration::from_millis(100);
                m
            }
            Err(e) => {
                failed_opens += 1;
                warn!(durable = %spec.durable, error = %e, "opening consumer failed; retrying");
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let mut new_leader = false;
        loop {
            let next = if new_leader {
                // What the old leader delivered is handled (its acks reach
                // the new one), then the pull is reopened.
                let Some(next) = messages.next().now_or_never() else {
                    info!(durable = %spec.durable, "the consumer has a new leader; pulling from it");
                    break;
                };
                next
            } else {
                tokio::select! {
                    () = &mut shutdown => {
                        hand_back(&js, &spec, messages).await;
                        return;
                    }
                    next = messages.next() => next,
                    Some(_) = next_change(leader_changes.as_mut()) => {
                        new_leader = true;
                        continue;
                    }
                }
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

/// The next leader change, or never without a subscription.
async fn next_change(changes: Option<&mut async_nats::Subscriber>) -> Option<async_nats::Message> {
    match changes {
        Some(changes) => changes.next().await,
        None => std::future::pending().await,
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
/// The pull is ended first: what has arrived is taken without waiting, then
/// the stream (its inbox subscription, and with it the interest the server
/// delivers pull requests to) is dropped, and only then are the events
/// nak'd. Nak'ing while still subscribed sent them straight back into this
/// consumer's own open pull requests, round after round, until the events
/// waited out the ack wait (5 s) instead of moving to another replica.
async fn hand_back(js: &Context, spec: &ConsumerSpec, mut messages: pull::Stream) {
    let mut held = Vec::new();
    while let Some(Some(next)) = messages.next().now_or_never() {
        match next {
            Ok(message) => held.push(message),
            Err(_) => break,
        }
    }
    drop(messages);
    // The unsubscribe reaches the server before the naks.
    if let Err(e) = js.client().flush().await {
        warn!(durable = %spec.durable, error = %e, "flushing the unsubscribe failed");
    }
    let mut handed_back = 0usize;
    for message in held {
        if message.ack_with(AckKind::Nak(None)).await.is_ok() {
            handed_back += 1;
        }
    }
    if let Err(e) = js.client().flush().await {
        warn!(durable = %spec.durable, error = %e, "flushing naks failed; those events wait for the ack wait");
    }
    info!(durable = %spec.durable, handed_back, "consumer stopped");
}

/// The durable of `spec` as the server keeps it.
fn durable_config(spec: &ConsumerSpec) -> pull::Config {
    pull::Config {
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
    }
}

/// Creates the durable of `spec`, to deliver from stream sequence `start`
/// on (a projection rebuilt from the stream up to `start - 1` goes on from
/// there). [`run_consumer`] with the same spec then reads from it and keeps
/// where it starts.
///
/// # Errors
/// The durable exists already (it would start elsewhere), or NATS failed.
pub async fn create_durable_at(
    js: &Context,
    spec: &ConsumerSpec,
    start: u64,
) -> Result<(), async_nats::Error> {
    let stream = js.get_stream(&spec.stream).await?;
    if stream.consumer_info(&spec.durable).await.is_ok() {
        return Err(format!(
            "the durable {} exists on {} already",
            spec.durable, spec.stream
        )
        .into());
    }
    let config = pull::Config {
        deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: start.max(1),
        },
        ..durable_config(spec)
    };
    stream.create_consumer(config).await?;
    Ok(())
}

/// How long opening a consumer (looking its stream and durable up, sending
/// the first pull) may take before it is tried again: a request that reached
/// a server as it died, or a group electing its leader, is never answered,
/// and waiting the client's default kept a consumer idle 10 s after a node
/// was lost.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// The idle heartbeat of a pull: two missed ones reopen the consumer.
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);

/// The advisory JetStream publishes when `durable` on `stream` has a new
/// leader: the pull requests the old one held are gone with it.
fn leader_elected_subject(stream: &str, durable: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{stream}.{durable}")
}

async fn open_consumer(
    js: &Context,
    spec: &ConsumerSpec,
) -> Result<pull::Stream, async_nats::Error> {
    let stream = js.get_stream(&spec.stream).await?;
    let config = durable_config(spec);
    let mut consumer: async_nats::jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(&spec.durable, config.clone())
        .await?;
    // A durable created by an older release keeps its settings until told.
    let current = &consumer.cached_info().config;
    if current.ack_wait != spec.ack_wait || current.max_deliver != config.max_deliver {
        // Where it starts cannot change (a durable a view rebuild created
        // starts after the events the rebuild applied).
        let config = pull::Config {
            deliver_policy: current.deliver_policy,
            ..config
        };
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
        // A pull request lost with its server (the consumer's leader died
        // and the client stayed connected to another node) shows as two
        // missed heartbeats: 2 s, not 10.
        .heartbeat(PULL_HEARTBEAT)
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
            // Not waited for: the effect is committed with the event's id in
            // the inbox, so an ack lost on the way (a server dying, the
            // consumer between leaders) only brings the event again, and
            // the inbox makes the repeat harmless. Waiting for each ack's
            // confirmation held every later event of the lane (and the
            // window) one round trip per event, and while the consumer had
            // no leader, a timeout per event: 7-10 s of lag after a server
            // of a cluster was killed. A stuck consumer still shows: its
            // ack floor stops ([`ConsumeLag`]). Acks still queued when the
            // process stops may be lost with it: those events come again.
            if let Err(e) = message.ack().await {
                warn!(durable = %spec.durable, error = %e, "ack not sent; the event will be redelivered");
            }
            if let (Some(lag), Ok(info)) = (&spec.lag, message.info()) {
                let age = time::OffsetDateTime::now_utc() - info.published;
                lag.acked(&lag_key(spec), age.try_into().unwrap_or(Duration::ZERO));
            }
        }
        Err(e) if i64::try_from(attempt).unwrap_or(i64::MAX) >= spec.max_deliver => {
            error!(durable = %spec.durable, %subject, attempt, error = %e, "dead-lettering after max_deliver attempts");
            adapters_telemetry::metrics::dead_lettered(&spec.durable);
            let dead_letter = dead_letter(spec, &message, subject, e.message());
            let published = async {
                js.send_publish(spec.dead_letter_subject.clone(), dead_letter)
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

/// The dead letter of `message` (delivered on `subject`, without prefix),
/// which failed with `error`: its payload and headers, the original subject,
/// the error and the event id, under an id of its own ([`dead_letter_id`]).
fn dead_letter(
    spec: &ConsumerSpec,
    message: &jetstream::Message,
    subject: &str,
    error: &str,
) -> PublishMessage {
    let empty = HeaderMap::new();
    let original = message.headers.as_ref().unwrap_or(&empty);
    let origin = message
        .info()
        .map_or((spec.stream.as_str(), 0), |i| (i.stream, i.stream_sequence));
    let id = dead_letter_id(&spec.durable, original, origin);
    let event_id = event_id_of(original).map(ToOwned::to_owned);
    let mut headers = HeaderMap::new();
    for (name, values) in original.iter() {
        // The original's id would make JetStream drop the dead letter (the
        // id of an event seen within the window); the replay marker stays:
        // it tells what the next dead-lettering's id is.
        if AsRef::<str>::as_ref(name).eq_ignore_ascii_case(MSG_ID) {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(event_id) = event_id {
        headers.insert(DLQ_EVENT_ID, event_id.as_str());
    }
    headers.insert(DLQ_ORIGINAL_SUBJECT, subject);
    headers.insert(DLQ_ERROR, error);
    PublishMessage::build()
        .payload(message.payload.clone())
        .headers(headers)
        .message_id(id)
}

/// One message of a stream, read back by a [`StreamReader`].
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its sequence in the stream.
    pub seq: u64,
    /// As published (with the deployment's prefix).
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
    /// When the server stored it.
    pub published: time::OffsetDateTime,
}

/// A stream read back in stream order, from one sequence up to another, by an
/// ordered consumer: ephemeral, no acknowledgements, recreated by the client
/// where it sees a gap, so it changes no durable's position and loses no
/// message of the range.
pub struct StreamReader {
    messages: Option<pull::Ordered>,
    to: u64,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("reading", &self.messages.is_some())
            .field("to", &self.to)
            .finish()
    }
}

/// How long a reader waits for the next message of its range before it gives
/// up (the server has them all; this only bounds a broken connection).
const READ_IDLE: Duration = Duration::from_secs(30);

impl StreamReader {
    /// Reads `stream` (its messages on `filter`) from sequence `from` up to
    /// and including `to` (the stream's last sequence now when `None`).
    ///
    /// # Errors
    /// The stream does not exist, or the server refused the consumer.
    pub async fn open(
        js: &Context,
        stream: &str,
        filter: &str,
        from: u64,
        to: Option<u64>,
    ) -> Result<Self, async_nats::Error> {
        let mut stream = js.get_stream(stream).await?;
        let last = stream.info().await?.state.last_sequence;
        let to = to.map_or(last, |t| t.min(last));
        let mut reader = Self { messages: None, to };
        if from.max(1) > to {
            return Ok(reader);
        }
        let mut consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
                ..Default::default()
            })
            .await?;
        if consumer.info().await?.num_pending > 0 {
            reader.messages = Some(consumer.messages().await?);
        }
        Ok(reader)
    }

    /// The last sequence this reader reads up to.
    pub fn to(&self) -> u64 {
        self.to
    }

    /// The next message of the range, `None` after the last.
    ///
    /// # Errors
    /// The connection broke, or nothing arrived for 30 s.
    pub async fn next(&mut self) -> Result<Option<Stored>, async_nats::Error> {
        let Some(messages) = self.messages.as_mut() else {
            return Ok(None);
        };
        let message = match tokio::time::timeout(READ_IDLE, messages.next()).await {
            Ok(Some(message)) => message?,
            Ok(None) => {
                self.messages = None;
                return Ok(None);
            }
            Err(_) => return Err("no message from the stream for 30 s".into()),
        };
        let info = message.info()?;
        let (seq, pending, published) = (info.stream_sequence, info.pending, info.published);
        if seq > self.to {
            self.messages = None;
            return Ok(None);
        }
        if seq == self.to || pending == 0 {
            self.messages = None;
        }
        let message = message.split().0;
        Ok(Some(Stored {
            seq,
            subject: message.subject.to_string(),
            headers: message.headers.unwrap_or_default(),
            payload: message.payload,
            published,
        }))
    }
}

#[cfg(test)]
mod credentials {
    use super::{Credentials, cause_of, servers, split_credentials};

    #[test]
    fn a_failed_start_names_the_likely_cause() {
        assert!(cause_of("no suitable peers for placement", 3).starts_with("placement impossible"));
        assert!(cause_of("jetstream not enabled for account", 1).contains("nats-server -js"));
        assert!(cause_of("jetstream request timed out", 1).contains("quorum"));
    }

    /// Issue 35: a cluster's servers, comma-separated, one user for all;
    /// each entry checked, errors without the secret.
    #[test]
    fn a_server_list_is_split_and_each_entry_checked() {
        let (addrs, credentials) =
            servers("nats://u:p,w@a:4222, nats://u:p,w@b:4223,nats://c").unwrap();
        let hosts: Vec<(String, u16)> = addrs
            .iter()
            .map(|a| (a.host().to_owned(), a.port()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("a".to_owned(), 4222),
                ("b".to_owned(), 4223),
                ("c".to_owned(), 4222)
            ]
        );
        assert_eq!(
            credentials,
            Some(Credentials::UserPassword("u".into(), "p,w".into()))
        );
        for (bad, says) in [
            ("nats://a:4222,", "not a NATS address"),
            (
                "nats://a:4222,http://b:4222",
                "server 2 of 2: must start with nats://",
            ),
            (
                "nats://a:4222,nats://b:notaport",
                "server 2 of 2: not a NATS address",
            ),
            ("nats://u:p/w,x@a:port", "not a NATS address"),
            (
                "nats://u:pw@a,nats://v:s3cret@b",
                "server 2 of 2: names other credentials",
            ),
            ("", "empty"),
        ] {
            let e = servers(bad).unwrap_err();
            assert!(e.starts_with(says), "{bad}: {e}");
            assert!(
                !e.contains("s3cret") && !e.contains("pw") && !e.contains("p/w"),
                "{e}"
            );
        }
    }

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
