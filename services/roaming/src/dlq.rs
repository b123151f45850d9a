//! `roaming dlq list` and `roaming dlq replay`: the dead letters of a
//! distributed mesh (NATS JetStream), for operators.
//!
//! Every consumer an event is poison for keeps one dead letter of it in
//! `ROAMING_DLQ`; `replay` republishes each selected one to the one durable it
//! failed for (its part of `ROAMING_REPLAY`, which only that durable reads:
//! the other consumers of the original subject never see it) and removes it
//! from the DLQ once the republish is acknowledged. Why that way and not on
//! the original subject, and why removed rather than marked:
//! `adapters_bus::dlq`.
//!
//! Both commands read the same settings as `roaming serve` (`--config FILE`,
//! `ROAMING_NATS_URL`, `ROAMING_NATS_PREFIX`); `--nats URL` overrides the URL.
//! The embedded bus of `roaming up` keeps its dead letters in its own memory,
//! out of these commands' reach.

use std::path::PathBuf;

use adapters_bus::dlq::{self, Selection};
use adapters_bus::nats;
use anyhow::{Context as _, bail};

use crate::Settings;

pub const USAGE: &str = "usage: roaming dlq list [--consumer DURABLE] [--nats URL] [--config FILE]
       roaming dlq replay (--consumer DURABLE | --event ID | --all) [--dry-run] [--nats URL] [--config FILE]";

/// Flags and their values, in order; `--dry-run` and `--all` take none.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    pairs: Vec<(String, Option<String>)>,
}

impl Flags {
    /// `args` as flags; anything else is an error naming `usage`.
    pub(crate) fn parse(args: &[String], switches: &[&str], usage: &str) -> anyhow::Result<Self> {
        let mut pairs = Vec::new();
        let mut iter = args.iter();
        while let Some(a) = iter.next() {
            if !a.starts_with("--") {
                bail!("unexpected {a:?}\n{usage}");
            }
            if switches.contains(&a.as_str()) {
                pairs.push((a.clone(), None));
            } else {
                let value = iter
                    .next()
                    .with_context(|| format!("{a} needs a value\n{usage}"))?;
                pairs.push((a.clone(), Some(value.clone())));
            }
        }
        Ok(Self { pairs })
    }

    pub(crate) fn value(&self, flag: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(f, _)| f == flag)
            .and_then(|(_, v)| v.as_deref())
    }

    pub(crate) fn has(&self, flag: &str) -> bool {
        self.pairs.iter().any(|(f, _)| f == flag)
    }

    /// Fails on a flag not in `known`.
    pub(crate) fn only(&self, known: &[&str], usage: &str) -> anyhow::Result<()> {
        if let Some((flag, _)) = self
            .pairs
            .iter()
            .find(|(f, _)| !known.contains(&f.as_str()))
        {
            bail!("unknown flag {flag}\n{usage}");
        }
        Ok(())
    }

    /// The settings `roaming serve` would read (`--config`, environment).
    pub(crate) fn settings(&self) -> anyhow::Result<Settings> {
        let file = self.value("--config").map(PathBuf::from);
        Settings::load(file.as_deref(), std::env::vars()).map_err(anyhow::Error::from)
    }
}

/// JetStream at `--nats` or the settings' URL.
pub(crate) async fn connect(flags: &Flags, settings: &Settings) -> anyhow::Result<nats::Context> {
    let url = flags
        .value("--nats")
        .or(settings.nats_url.as_deref())
        .context("no NATS: set ROAMING_NATS_URL or give --nats URL (the embedded bus of `roaming up` keeps its dead letters in its own memory)")?;
    let connecting = nats::connect(url);
    tokio::time::timeout(std::time::Duration::from_secs(10), connecting)
        .await
        .map_err(|_| anyhow::anyhow!("NATS did not answer within 10 s"))?
        .map_err(|e| anyhow::anyhow!("connecting to NATS: {e}"))
}

/// `roaming dlq <list|replay> ...`.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("list") => {
            let flags = Flags::parse(&args[1..], &[], USAGE)?;
            flags.only(&["--consumer", "--nats", "--config"], USAGE)?;
            runtime.block_on(list(&flags))
        }
        Some("replay") => {
            let flags = Flags::parse(&args[1..], &["--all", "--dry-run"], USAGE)?;
            flags.only(
                &[
                    "--consumer",
                    "--event",
                    "--all",
                    "--dry-run",
                    "--nats",
                    "--config",
                ],
                USAGE,
            )?;
            runtime.block_on(replay(&flags))
        }
        _ => bail!("{USAGE}"),
    }
}

async fn list(flags: &Flags) -> anyhow::Result<()> {
    let settings = flags.settings()?;
    let js = connect(flags, &settings).await?;
    let selection = flags
        .value("--consumer")
        .map_or(Selection::All, |c| Selection::Consumer(c.to_owned()));
    let records = dlq::list(&js, &settings.nats_prefix, &selection)
        .await
        .map_err(|e| anyhow::anyhow!("reading the dead letters: {e}"))?;
    println!("seq\tconsumer\tsubject\tevent\ttime\terror");
    for record in &records {
        println!("{}", record.line());
    }
    eprintln!("{} dead letters", records.len());
    Ok(())
}

/// Which dead letters `replay`'s flags select: exactly one of the three.
fn selection(flags: &Flags) -> anyhow::Result<Selection> {
    match (
        flags.value("--consumer"),
        flags.value("--event"),
        flags.has("--all"),
    ) {
        (Some(c), None, false) => Ok(Selection::Consumer(c.to_owned())),
        (None, Some(e), false) => Ok(Selection::Event(e.to_owned())),
        (None, None, true) => Ok(Selection::All),
        _ => bail!("say which dead letters: one of --consumer, --event, --all\n{USAGE}"),
    }
}

async fn replay(flags: &Flags) -> anyhow::Result<()> {
    let selection = selection(flags)?;
    let dry_run = flags.has("--dry-run");
    let settings = flags.settings()?;
    let js = connect(flags, &settings).await?;
    let prefix = &settings.nats_prefix;
    let records = dlq::list(&js, prefix, &selection)
        .await
        .map_err(|e| anyhow::anyhow!("reading the dead letters: {e}"))?;
    // A replay goes where only its durable reads: one nobody consumes as
    // (a durable swapped out by a view rebuild, a misspelt one) would wait
    // there unread, out of the DLQ; those stay dead letters.
    let mut unread = std::collections::BTreeSet::new();
    let durables: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.durable.as_str()).collect();
    for durable in durables {
        match dlq::replay_readers(&js, prefix, durable)
            .await
            .map_err(|e| anyhow::anyhow!("looking up the durable {durable}: {e}"))?
        {
            None => {
                eprintln!(
                    "{durable}: no consumer reads its replays (no running service consumes as {durable}); its dead letters stay"
                );
                unread.insert(durable.to_owned());
            }
            Some(0) => eprintln!(
                "{durable}: no process pulls its replays right now; they wait until one does"
            ),
            Some(_) => {}
        }
    }
    let mut replayed = 0usize;
    let mut failed = 0usize;
    for record in &records {
        if unread.contains(&record.durable) {
            failed += 1;
            continue;
        }
        if dry_run {
            println!("would replay\t{}", record.line());
            continue;
        }
        match dlq::replay(&js, prefix, record).await {
            Ok(seq) => {
                replayed += 1;
                println!("replayed\t{}\t(replay seq {seq})", record.line());
            }
            Err(e) => {
                failed += 1;
                eprintln!("not replayed: dead letter {}: {e}", record.seq);
            }
        }
    }
    if dry_run {
        eprintln!("{} dead letters would be replayed", records.len() - failed);
        return Ok(());
    }
    eprintln!("{replayed} dead letters replayed, {failed} failed");
    if failed > 0 {
        bail!("{failed} dead letters were not replayed (they stay; run again)");
    }
    Ok(())
}
