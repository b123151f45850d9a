//! `roaming view rebuild --into URL`: the view's projection rebuilt from the
//! streams into a fresh database, which the view then goes on from.
//!
//! **Why it can.** The streams are limits-based with no age, size or count
//! limit (`adapters_bus::nats::ensure_streams`): every event ever published
//! is still in its stream, and the view's projection is a function of the
//! events of its four streams (`domain_view::apply`, order-insensitive across
//! streams: each field only moves up its own ranking).
//!
//! **What it does.** Applies migrations to the database at URL (creating a
//! PostgreSQL database if missing) and refuses it unless it is empty. Notes
//! each stream's last sequence `L`, reads the stream from 1 to `L` with an
//! ordered consumer (ephemeral, no acknowledgements: no durable moves) and
//! applies each event with the view's own handler ([`crate::view::ViewEvents`]:
//! the same decoding, fold and inbox as the service). An event that is poison
//! is counted and named, not applied (as the live view would dead-letter it).
//! Then it creates a new durable, `view-<UTC time>`, on each stream, starting
//! at `L + 1`, and records the durable and each `L` in the new database
//! (`view_rebuilds`). It prints what it read and what the database holds.
//!
//! **Swapped in.** The view service reads its durable from its database
//! ([`crate::view::start`]): `view` for a database it built itself, the
//! recorded one for a rebuilt database. So swapping in is pointing the view at
//! the new database (`ROAMING_VIEW_DATABASE_URL`, then rolling the view pods;
//! for SQLite, a new file URL, or renaming the file over the old one while
//! the view is stopped, with the old file's `-wal` and `-shm` removed) and
//! nothing else. Guarantees:
//! - events published during or after the rebuild are not lost and none is
//!   applied twice: the rebuild applied exactly sequences 1..=L of each stream
//!   and the new durable delivers from L + 1 (the inbox would drop a repeat
//!   anyway);
//! - old and new pods may run side by side during the roll, each on its own
//!   database and durable; the new database is behind by what was published
//!   since the rebuild ended, which its durable holds for it and the first new
//!   pod applies at start;
//! - what the view never learnt (a `space_registered` consumed before the lot
//!   column existed, a dead-lettered event since fixed) is in the rebuilt
//!   database: every event is applied by today's code.
//!
//! Left to the operator after the roll: the old durable `view` (nothing reads
//! it; `nats consumer rm <stream> view` on each of the four streams and on
//! `ROAMING_REPLAY`), and the old database. The dead letters of the old
//! durable are for the old database; the rebuild applied every event that is
//! no longer poison.
//!
//! Needs NATS: the embedded bus of `roaming up` keeps no stream to rebuild
//! from.

use std::time::Duration;

use adapters_bus::nats::{self, ConsumerSpec, StreamReader};
use adapters_bus::{Delivery, HandleError, Handler as _};
use adapters_store::Db;
use adapters_store::migrations::ViewMigrator;
use adapters_store::view::{RebuiltStream, ViewCounts, ViewStore};
use anyhow::{Context as _, bail};
use domain_view::ViewService;

use crate::dlq::{Flags, connect};
use crate::view::{STREAMS, ViewEvents};

pub const USAGE: &str = "usage: roaming view rebuild --into URL [--nats URL] [--config FILE]   (URL: postgres:// or sqlite://)";

/// What a rebuild read from one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    pub stream: String,
    /// Events read (sequences 1..=`last_seq`, less any deleted).
    pub events: u64,
    /// Of them, poison for the view: not applied.
    pub poison: u64,
    pub last_seq: u64,
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The durable the rebuilt database goes on with.
    pub durable: String,
    pub streams: Vec<StreamReport>,
    /// What the rebuilt database holds.
    pub counts: ViewCounts,
}

/// `roaming view rebuild ...`.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    if args.first().map(String::as_str) != Some("rebuild") {
        bail!("{USAGE}");
    }
    let flags = Flags::parse(&args[1..], &[], USAGE)?;
    flags.only(&["--into", "--nats", "--config"], USAGE)?;
    let into = flags
        .value("--into")
        .with_context(|| format!("--into URL is needed\n{USAGE}"))?
        .to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let settings = flags.settings()?;
        let js = connect(&flags, &settings).await?;
        let report = rebuild(&js, &settings.nats_prefix, &into).await?;
        for s in &report.streams {
            println!(
                "{}: {} events (to seq {}), {} poison",
                s.stream, s.events, s.last_seq, s.poison
            );
        }
        let c = report.counts;
        println!(
            "rebuilt: {} reservation views, {} space lots, {} events applied",
            c.views, c.space_lots, c.events
        );
        println!(
            "durable: {} (each stream from the event after the last one above)",
            report.durable
        );
        println!(
            "swap: point ROAMING_VIEW_DATABASE_URL at the new database and roll the view; then remove the durable `view` from the four streams and ROAMING_REPLAY"
        );
        Ok(())
    })
}

/// Attempts at an event that fails transiently (the target database) before
/// the rebuild gives up.
const TRANSIENT_ATTEMPTS: u32 = 20;

/// Rebuilds the view into the (empty) database at `into` from the streams of
/// the deployment `prefix`.
///
/// # Errors
/// The database cannot be opened or is not empty, a stream is missing, NATS
/// or the database failed (transient failures are retried first). Nothing
/// is recorded in NATS unless every stream was read.
pub async fn rebuild(js: &nats::Context, prefix: &str, into: &str) -> anyhow::Result<Report> {
    if into.starts_with("postgres:") || into.starts_with("postgresql:") {
        adapters_store::create_database_if_missing(into)
            .await
            .map_err(|e| anyhow::anyhow!("creating the target database: {e}"))?;
    }
    let db = Db::connect::<ViewMigrator>(into)
        .await
        .map_err(|e| anyhow::anyhow!("opening the target database: {e}"))?;
    let store = ViewStore::new(db.clone());
    let before = store.counts().await?;
    if before != ViewCounts::default() {
        bail!(
            "the target database is not empty ({} views, {} space lots, {} events, {} rebuilt streams): rebuild into a fresh one",
            before.views,
            before.space_lots,
            before.events,
            before.rebuilt_streams
        );
    }
    let durable = durable_name();
    let handler = ViewEvents(ViewService::new(store.clone()));
    let mut reports = Vec::new();
    for stream in STREAMS {
        let spec = ConsumerSpec::new(prefix, stream, &durable);
        let mut reader = StreamReader::open(js, &spec.stream, &spec.filter_subject, 1, None)
            .await
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", spec.stream))?;
        let mut report = StreamReport {
            stream: spec.stream.clone(),
            events: 0,
            poison: 0,
            last_seq: reader.to(),
        };
        while let Some(m) = reader
            .next()
            .await
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", spec.stream))?
        {
            let subject = m.subject.strip_prefix(prefix).unwrap_or(&m.subject);
            let headers: Vec<(String, String)> = m
                .headers
                .iter()
                .flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string())))
                .collect();
            let delivery = Delivery {
                subject,
                payload: &m.payload,
                headers: &headers,
                attempt: 1,
            };
            report.events += 1;
            let mut attempt = 1;
            loop {
                match handler.handle(delivery).await {
                    Ok(()) => break,
                    Err(HandleError::Poison(e)) => {
                        report.poison += 1;
                        eprintln!("poison, not applied: {} seq {}: {e}", spec.stream, m.seq);
                        break;
                    }
                    Err(HandleError::Transient(e)) if attempt < TRANSIENT_ATTEMPTS => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(100) * attempt).await;
                        if attempt == 2 {
                            eprintln!("retrying {} seq {}: {e}", spec.stream, m.seq);
                        }
                    }
                    Err(HandleError::Transient(e)) => {
                        bail!(
                            "{} seq {}: {e} (after {attempt} attempts)",
                            spec.stream,
                            m.seq
                        )
                    }
                }
            }
            if report.events.is_multiple_of(10_000) {
                eprintln!("{}: {} events...", spec.stream, report.events);
            }
        }
        reports.push(report);
    }
    // Only now, with every stream read: the durables go on after what was
    // applied, and the database says which durable is its.
    for (stream, report) in STREAMS.iter().zip(&reports) {
        let spec = ConsumerSpec::new(prefix, stream, &durable);
        nats::create_durable_at(js, &spec, report.last_seq + 1)
            .await
            .map_err(|e| {
                anyhow::anyhow!("creating the durable {durable} on {}: {e}", spec.stream)
            })?;
    }
    let recorded: Vec<RebuiltStream> = reports
        .iter()
        .map(|r| RebuiltStream {
            stream: r.stream.clone(),
            durable: durable.clone(),
            last_seq: r.last_seq,
            events: r.events,
        })
        .collect();
    store.record_rebuild(&recorded).await?;
    let counts = store.counts().await?;
    // On SQLite, everything in the main file, so it can be renamed alone.
    db.checkpoint().await?;
    db.close().await;
    Ok(Report {
        durable,
        streams: reports,
        counts,
    })
}

/// `view-<UTC date and time>`: a new durable per rebuild.
fn durable_name() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "view-{:04}{:02}{:02}t{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}
