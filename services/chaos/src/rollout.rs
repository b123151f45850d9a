//! `chaos rollout` (`cargo xtask rollout`): a rolling restart under load.
//!
//! The distributed mesh with three reservation replicas, two of every other
//! service and two gateways, behind a client that balances over the gateways.
//! A steady mixed load (reserves, cancels, hand-overs, gate entries) runs
//! while every process is replaced in turn: SIGTERM, wait for its exit, start
//! the new one, wait for `SERVING`. Then the mesh drains and every database
//! is checked. A second phase SIGKILLs one replica of each service (and one
//! gateway) under the same load; only calls in flight at a kill may fail, and
//! they are reported apart. Exits non-zero if the SIGTERM phase failed any
//! call, or either phase lost or doubled an event or broke an invariant.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::check::{Report, Sources};
use crate::load::{self, Callers, Clients, Tally};
use crate::mesh::{Distributed, Layout};

/// Callers of the load; each runs calls one after another.
const WORKERS: usize = 8;

fn layout() -> Layout {
    Layout {
        replicas: vec![
            ("reservation", 3),
            ("payment", 2),
            ("rental", 2),
            ("parking", 2),
            ("view", 2),
        ],
        gateways: 2,
        env: vec![
            // What Kubernetes gives a pod between NOT_SERVING and the end of
            // new traffic (deploy/ uses 5 s): clients see the health change
            // and stop sending before the listener closes.
            ("ROAMING_SHUTDOWN_DELAY_MS", "1000"),
            ("ROAMING_SHUTDOWN_GRACE_MS", "10000"),
        ],
    }
}

struct Phase {
    tally: Tally,
    calls_per_second: f64,
    /// Per process: how long SIGTERM to exit took, and the new one to SERVING.
    steps: Vec<(String, Duration, Duration)>,
}

/// Runs the load while `act` does its work; the load stops when it returns.
async fn under_load(
    mesh: &mut Distributed,
    clients: &Clients,
    serials: &Arc<Mutex<Vec<String>>>,
    kill: bool,
) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load::mixed(
        clients.clone(),
        WORKERS,
        Arc::clone(&stop),
        Arc::clone(serials),
    ));
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut steps = Vec::new();
    let names: Vec<String> = if kill {
        // One replica of each service, and a gateway.
        mesh.names()
            .into_iter()
            .filter(|n| n.ends_with("-1"))
            .collect()
    } else {
        mesh.names()
    };
    for name in names {
        let stopped = if kill {
            let t = Instant::now();
            mesh.kill(&name);
            t.elapsed()
        } else {
            mesh.terminate(&name).await?
        };
        let serving = mesh.start_again(&name).await?;
        println!(
            "       {} {name}: exited in {} ms, replacement SERVING in {} ms",
            if kill { "SIGKILL" } else { "SIGTERM" },
            stopped.as_millis(),
            serving.as_millis()
        );
        steps.push((name, stopped, serving));
        // Let the balancers probe the new replica back in.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = load.await?;
    let elapsed = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "a rate for a report")]
    let calls_per_second = tally.calls() as f64 / elapsed.max(0.001);
    Ok(Phase {
        tally,
        calls_per_second,
        steps,
    })
}

fn findings(report: &Report) {
    for finding in report.findings().take(10) {
        println!("       {finding}");
    }
}

/// The whole proof; `Ok(false)` when it failed.
pub async fn run(roaming: &Path, admin: &str, run: &str) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut mesh = Distributed::start(roaming, admin, run, &layout()).await?;
    let callers = Callers::new(&mesh.keys.issuer)?;
    let mut clients = Clients::balanced(&mesh.gateways, callers)?;
    let serials = load::seed(&mut clients, "ROLL", 60).await?;
    let serials = Arc::new(Mutex::new(serials));
    let sources = Sources {
        urls: mesh.dbs.urls.clone(),
    };
    println!(
        "rollout: {} processes ({}), {WORKERS} callers through {} gateways",
        mesh.names().len(),
        mesh.names().join(" "),
        mesh.gateways.len()
    );

    let term = under_load(&mut mesh, &clients, &serials, false).await?;
    let (report, drained) = crate::drain(&sources, Duration::from_secs(60)).await?;
    let slowest_exit = term.steps.iter().map(|s| s.1).max().unwrap_or_default();
    println!(
        "       SIGTERM phase: {:.0} calls/s, slowest drain-and-exit {} ms, mesh drained {} ms after the load",
        term.calls_per_second,
        slowest_exit.as_millis(),
        drained.as_millis()
    );
    findings(&report);
    let term_ok = term.tally.failed() == 0 && report.clean();
    println!(
        "rollout: {} calls, {} failed{}, {} events, {} lost, {} applied twice{}",
        term.tally.calls(),
        term.tally.failed(),
        if term.tally.failed() > 0 {
            format!(" ({})", term.tally.failures())
        } else {
            String::new()
        },
        report.events,
        report.lost_count(),
        report.twice.len(),
        if report.violations.is_empty() {
            String::new()
        } else {
            format!(", {} violations", report.violations.len())
        }
    );
    let events_before = report.events;

    let kill = under_load(&mut mesh, &clients, &serials, true).await?;
    let (report, _) = crate::drain(&sources, Duration::from_secs(60)).await?;
    findings(&report);
    let kill_ok = report.clean();
    println!(
        "rollout SIGKILL phase: {} kills, {} calls, {} failed{} (calls in flight at a kill may fail), {} events, {} lost, {} applied twice, {} violations",
        kill.steps.len(),
        kill.tally.calls(),
        kill.tally.failed(),
        if kill.tally.failed() > 0 {
            format!(" ({})", kill.tally.failures())
        } else {
            String::new()
        },
        report.events.saturating_sub(events_before),
        report.lost_count(),
        report.twice.len(),
        report.violations.len()
    );
    mesh.shutdown().await;
    println!("rollout: {} s", started.elapsed().as_secs());
    Ok(term_ok && kill_ok)
}
