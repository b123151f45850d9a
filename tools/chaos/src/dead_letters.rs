//! The dead-letter scenario: an event poison for several consumers, then
//! replayed by the operator's command (issue 32).
//!
//! Reservation (both replicas, one durable) and the view read
//! `roaming.parking.space_registered`; restarted with the fault knob
//! `ROAMING_CONSUMER_FAULT_POISON_SUBJECT`, both give a new space's
//! registration up after `max_deliver` attempts. The scenario waits until
//! `roaming dlq list` shows one dead letter per consumer (two: before issue
//! 32, JetStream kept one), restarts them without the knob, runs `roaming
//! dlq replay --all` and checks that nothing is left. The checker then finds
//! the space in reservation's catalog and the view's lots, or reports it lost.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use mesh::Distributed;

use crate::load::{self, Clients};

/// The consumers of `space_registered` and their processes.
const CONSUMERS: [(&str, &[&str]); 2] = [
    ("reservation", &["reservation-1", "reservation-2"]),
    ("view", &["view-1"]),
];

/// The space whose registration is poison: a lot nothing else uses.
const LOT: &str = "P9";

/// Runs `roaming <args>` against the mesh's NATS, as an operator would; its
/// stdout.
fn roaming(mesh: &Distributed, binary: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(binary)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ROAMING_NATS_URL", mesh.nats.url())
        .output()
        .with_context(|| format!("running roaming {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "roaming {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `(consumer, subject, event id)` of each dead letter `roaming dlq list` shows.
fn listed(mesh: &Distributed, binary: &Path) -> anyhow::Result<Vec<(String, String, String)>> {
    Ok(roaming(mesh, binary, &["dlq", "list"])?
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('\t').collect();
            Some((
                (*cells.get(1)?).to_owned(),
                (*cells.get(2)?).to_owned(),
                (*cells.get(3)?).to_owned(),
            ))
        })
        .collect())
}

/// Restarts every process of [`CONSUMERS`] with `env`; the longest restart.
async fn restart_consumers(
    mesh: &mut Distributed,
    env: &[(&str, &str)],
) -> anyhow::Result<Duration> {
    let mut longest = Duration::ZERO;
    for (_, processes) in CONSUMERS {
        for name in processes {
            longest = longest.max(mesh.restart(name, env).await?);
        }
    }
    Ok(longest)
}

/// The fault: poison for two consumers, dead-lettered, replayed. Returns the
/// time from the fixed consumers' restart to the replay's end.
pub async fn poison_then_replay(
    mesh: &mut Distributed,
    binary: &Path,
    clients: &Clients,
) -> anyhow::Result<Duration> {
    ensure!(
        listed(mesh, binary)?.is_empty(),
        "dead letters before the scenario"
    );
    restart_consumers(
        mesh,
        &[(
            "ROAMING_CONSUMER_FAULT_POISON_SUBJECT",
            "parking.space_registered",
        )],
    )
    .await?;
    load::register_space(clients, LOT, 1).await?;
    let started = Instant::now();
    let dead = loop {
        let dead = listed(mesh, binary)?;
        if dead.len() >= CONSUMERS.len() {
            break dead;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("after 30 s, {} dead letters: {dead:?}", dead.len());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut consumers: Vec<&str> = dead.iter().map(|(c, _, _)| c.as_str()).collect();
    consumers.sort_unstable();
    let expected: Vec<&str> = CONSUMERS.iter().map(|(c, _)| *c).collect();
    ensure!(
        consumers == expected,
        "one dead letter per consumer expected, got {dead:?}"
    );
    ensure!(
        dead.iter()
            .all(|(_, s, e)| s == "roaming.parking.space_registered" && *e == dead[0].2),
        "not the one event: {dead:?}"
    );
    restart_consumers(mesh, &[]).await?;
    let fixed = Instant::now();
    let out = roaming(mesh, binary, &["dlq", "replay", "--all"])?;
    let replayed = out.lines().filter(|l| l.starts_with("replayed")).count();
    ensure!(replayed == CONSUMERS.len(), "{replayed} replayed: {out}");
    let left = listed(mesh, binary)?;
    ensure!(
        left.is_empty(),
        "dead letters left after the replay: {left:?}"
    );
    Ok(fixed.elapsed())
}
