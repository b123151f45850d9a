//! `chaos`: the fault-injection suite (`cargo xtask chaos`; RELIABILITY.md).
//!
//! Starts the distributed mesh as processes (its own nats-server with
//! JetStream, fresh PostgreSQL databases, two replicas of reservation and
//! rental, mutual TLS between them with a CA made for the run), drives a steady mixed load through the gateway and injects one
//! fault at a time. After each scenario the load stops, the mesh drains, and
//! the checker reads every database and verifies DOMAIN.md's invariants. Then the
//! cancel/hand-over and cancel/enter races, in the distributed mode and
//! against `roaming up`. One line per scenario, a summary line, and a non-zero
//! exit on any violation, lost or doubled effect.
//!
//! `chaos rollout` is the rolling-restart proof instead ([`rollout`]);
//! `chaos latency` measures what replicas add to an event's way ([`latency`]);
//! `chaos failover` fails PostgreSQL over to its standby under load
//! ([`failover`]); `chaos cluster` kills NATS cluster servers under load
//! ([`cluster`]).
//!
//! ```text
//! chaos [--short] [--races N] [--roaming PATH]
//! chaos rollout [--roaming PATH]
//! chaos latency [--roaming PATH]
//! chaos failover [--roaming PATH]
//! chaos cluster [--roaming PATH]
//! ```

mod abandoned;
mod check;
mod cluster;
mod dead_letters;
mod failover;
mod latency;
mod load;
mod rollout;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::check::{Report, Sources, check};
use crate::load::{Callers, Clients, Races, Tally};
use mesh::{Distributed, Embedded, Layout};

const USAGE: &str = "usage: chaos [--short] [--races N] [--roaming PATH]
       chaos rollout [--roaming PATH]   (rolling restart under load, then SIGKILLs)
       chaos latency [--roaming PATH]   (reserve -> RENTAL_ACCEPTED, with and without replicas)
       chaos failover [--roaming PATH]  (PostgreSQL primary killed, synchronous standby promoted, under load;
                                         needs PostgreSQL's server programs: pg_config --bindir)
       chaos cluster [--roaming PATH]   (NATS cluster servers killed under load: 0 lost, event lag < 2 s)
  --short      the CI profile: fewer scenarios, shorter load
  --races N    tries per race (default 200, 50 with --short)
  --roaming    the roaming binary (default: next to this one)
needs nats-server on PATH and PostgreSQL (ROAMING_TEST_POSTGRES or
postgres://postgres@127.0.0.1:5432/postgres)";

/// What `chaos` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// The fault scenarios and the races.
    Suite,
    Rollout,
    Latency,
    Failover,
    Cluster,
}

#[derive(Debug)]
struct Options {
    command: Sub,
    short: bool,
    races: usize,
    roaming: PathBuf,
}

fn options() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut short = false;
    let mut command = Sub::Suite;
    let mut races = None;
    let mut roaming = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--short" => short = true,
            "rollout" => command = Sub::Rollout,
            "latency" => command = Sub::Latency,
            "failover" => command = Sub::Failover,
            "cluster" => command = Sub::Cluster,
            "--races" => races = Some(args.next().context("--races N")?.parse()?),
            "--roaming" => roaming = Some(PathBuf::from(args.next().context("--roaming PATH")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let roaming = match roaming {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("the directory of this binary")?
            .join("roaming"),
    };
    anyhow::ensure!(
        roaming.exists(),
        "{} not found (build services-roaming)",
        roaming.display()
    );
    Ok(Options {
        command,
        short,
        races: races.unwrap_or(if short { 50 } else { 200 }),
        roaming,
    })
}

/// One fault, injected while the load runs.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill(&'static str),
    KillNats,
    PaymentSlow,
    PaymentDown,
    ReservationDownAtTheGate,
    CrashBetweenPaymentAndCommit,
    TerminatePostgresConnections,
    KillOneReplica,
    PoisonForSeveralConsumers,
    AbandonedReserves,
    TerminateReplicas,
    FreezeReplicas,
}

/// `Layout::chaos`'s `ROAMING_PENDING_TTL_MS`: how long a claim may wait for
/// its payment before the sweeper rejects it.
const PENDING_TTL: Duration = Duration::from_secs(3);

impl Fault {
    fn name(self) -> String {
        match self {
            Self::Kill(p) => format!("SIGKILL {p}, restart"),
            Self::KillNats => "SIGKILL nats-server, restart on the same store".into(),
            Self::PaymentSlow => "payment slower than the deadline".into(),
            Self::PaymentDown => "payment down".into(),
            Self::ReservationDownAtTheGate => "reservation down while the gate lets cars in".into(),
            Self::CrashBetweenPaymentAndCommit => {
                "reservation killed between a payment and its commit".into()
            }
            Self::TerminatePostgresConnections => "PostgreSQL connections terminated".into(),
            Self::KillOneReplica => "one of two reservation and rental replicas killed".into(),
            Self::PoisonForSeveralConsumers => {
                "an event poison for two consumers, replayed with roaming dlq replay".into()
            }
            Self::AbandonedReserves => {
                "reserves abandoned by their callers (deadlines 2-250 ms, payment 400 ms)".into()
            }
            Self::TerminateReplicas => {
                "SIGTERM of a reservation and a rental replica (their consumers hand back), start again"
                    .into()
            }
            Self::FreezeReplicas => {
                "SIGSTOP of a reservation and a rental replica for 4 s (connections open, nothing answered)"
                    .into()
            }
        }
    }
}

/// What one scenario measured.
#[derive(Debug)]
struct Outcome {
    name: String,
    tally: Tally,
    recovery: Duration,
    drain: Duration,
    report: Report,
}

impl Outcome {
    fn line(&self) -> String {
        format!(
            "{} {}: {} calls ({} failed: {}), recovery {} ms, drain {} ms, {} events, {} lost, {} applied twice, {} violations, {} cars in by replica so far",
            if self.report.clean() { "ok  " } else { "FAIL" },
            self.name,
            self.tally.calls(),
            self.tally.failed(),
            self.tally.failures(),
            self.recovery.as_millis(),
            self.drain.as_millis(),
            self.report.events,
            self.report.lost_count(),
            self.report.twice.len(),
            self.report.violations.len(),
            self.report.replica_entries,
        )
    }
}

/// Checks until everything settled (or `within` passed); the last report.
async fn drain(sources: &Sources, within: Duration) -> anyhow::Result<(Report, Duration)> {
    let started = Instant::now();
    loop {
        let report = check(sources).await?;
        if (report.settled() && report.violations.is_empty()) || started.elapsed() > within {
            return Ok((report, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn inject(
    mesh: &mut Distributed,
    fault: Fault,
    clients: &mut Clients,
    roaming: &std::path::Path,
) -> anyhow::Result<Duration> {
    Ok(match fault {
        Fault::Kill(name) => {
            mesh.kill(name);
            tokio::time::sleep(Duration::from_secs(1)).await;
            mesh.restart(name, &[]).await?
        }
        Fault::KillNats => {
            mesh.nats.server()?.kill();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let started = Instant::now();
            mesh.nats.server()?.restart()?;
            started.elapsed()
        }
        Fault::PaymentSlow => {
            mesh.restart("payment-1", &[("ROAMING_PAYMENT_FAULT_LATENCY_MS", "1500")])
                .await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            mesh.restart("payment-1", &[]).await?
        }
        Fault::PaymentDown => {
            mesh.kill("payment-1");
            tokio::time::sleep(Duration::from_secs(3)).await;
            mesh.restart("payment-1", &[]).await?
        }
        Fault::ReservationDownAtTheGate => {
            // Cars with a reservation for now, on lot P3 (nothing else uses it).
            let cars = load::reserve_now(clients, "P3", 5).await?;
            // Parking's replica learns of them from the reserved events.
            tokio::time::sleep(Duration::from_secs(2)).await;
            mesh.kill("reservation-1");
            mesh.kill("reservation-2");
            // The gate decides from its replica: every one of them gets in.
            let entered = load::enter_all(clients, &cars).await;
            anyhow::ensure!(
                entered == cars.len(),
                "only {entered} of {} reserved cars got in with reservation down",
                cars.len()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            let a = mesh.restart("reservation-1", &[]).await?;
            let b = mesh.restart("reservation-2", &[]).await?;
            a.max(b)
        }
        Fault::CrashBetweenPaymentAndCommit => {
            mesh.restart(
                "reservation-1",
                &[("ROAMING_RESERVATION_FAULT_CRASH_AFTER_PAY", "3")],
            )
            .await?;
            let started = Instant::now();
            while !mesh.exited("reservation-1") && started.elapsed() < Duration::from_secs(20) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::ensure!(
                mesh.exited("reservation-1"),
                "the crash after pay never happened"
            );
            mesh.restart("reservation-1", &[]).await?
        }
        Fault::TerminatePostgresConnections => {
            let started = Instant::now();
            let n = mesh.dbs.terminate_connections().await?;
            anyhow::ensure!(n > 0, "no connection was terminated");
            // Recovered once a reserve succeeds again.
            loop {
                let r = clients
                    .reservation
                    .quote_roaming(clients.callers.req(
                        load::Who::Customer("alice"),
                        proto::reservation::QuoteRoamingRequest {
                            device_model: "egg-lte".into(),
                            country: "JP".into(),
                            pickup_booth: "ICN-T1".into(),
                            return_booth: "ICN-T1".into(),
                            start_date: load::date_in(1),
                            end_date: load::date_in(2),
                        },
                    ))
                    .await;
                if r.is_ok() || started.elapsed() > Duration::from_secs(30) {
                    break started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Fault::PoisonForSeveralConsumers => {
            dead_letters::poison_then_replay(mesh, roaming, clients).await?
        }
        Fault::AbandonedReserves => abandoned::run(mesh, clients, PENDING_TTL).await?,
        Fault::TerminateReplicas => {
            // Both drain (NOT_SERVING, in-flight calls end, consumers hand
            // their pulled events back), one after the other, as a rollout.
            let a = mesh.terminate("reservation-2").await?;
            let b = mesh.terminate("rental-2").await?;
            println!(
                "       terminated: reservation-2 exited {} ms after SIGTERM, rental-2 {} ms",
                a.as_millis(),
                b.as_millis()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            let a = mesh.start_again("reservation-2").await?;
            let b = mesh.start_again("rental-2").await?;
            a.max(b)
        }
        Fault::FreezeReplicas => {
            mesh.freeze("reservation-2")?;
            mesh.freeze("rental-2")?;
            tokio::time::sleep(Duration::from_secs(4)).await;
            let started = Instant::now();
            mesh.thaw("reservation-2")?;
            mesh.thaw("rental-2")?;
            for name in ["reservation-2", "rental-2"] {
                let addr = mesh.addr(name).context("no address")?;
                mesh::wait_serving(addr, Duration::from_secs(30)).await?;
            }
            started.elapsed()
        }
        Fault::KillOneReplica => {
            mesh.kill("reservation-2");
            mesh.kill("rental-2");
            tokio::time::sleep(Duration::from_secs(2)).await;
            let a = mesh.restart("reservation-2", &[]).await?;
            let b = mesh.restart("rental-2", &[]).await?;
            a.max(b)
        }
    })
}

async fn scenario(
    mesh: &mut Distributed,
    roaming: &std::path::Path,
    clients: &Clients,
    sources: &Sources,
    serials: &Arc<Mutex<Vec<String>>>,
    fault: Fault,
    load_for: Duration,
) -> anyhow::Result<Outcome> {
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load::mixed(
        clients.clone(),
        6,
        Arc::clone(&stop),
        Arc::clone(serials),
    ));
    tokio::time::sleep(load_for / 3).await;
    let mut c = clients.clone();
    let recovery = inject(mesh, fault, &mut c, roaming).await?;
    tokio::time::sleep(load_for / 3).await;
    stop.store(true, Ordering::Relaxed);
    let tally = load.await?;
    let (report, drained) = drain(sources, Duration::from_secs(45)).await?;
    Ok(Outcome {
        name: fault.name(),
        tally,
        recovery,
        drain: drained,
        report,
    })
}

/// Proof that the services took only mutual TLS: a call to a reservation
/// replica in plaintext, with a valid token, is refused for want of a client
/// certificate (the gateway's calls, which go on, are TLS).
async fn mutual_tls_is_on(mesh: &Distributed, callers: &Callers) -> anyhow::Result<String> {
    let addr = mesh.addr("reservation-1").context("no reservation-1")?;
    let mut plain =
        proto::reservation::reservation_service_client::ReservationServiceClient::connect(format!(
            "http://{addr}"
        ))
        .await?;
    let refused = plain
        .get_reservation(callers.req(
            load::Who::Customer("alice"),
            proto::reservation::GetReservationRequest {
                reservation_id: uuid::Uuid::now_v7().to_string(),
            },
        ))
        .await
        .err()
        .context("a plaintext call to a service was served: mutual TLS is off")?;
    let details = tonic_types::StatusExt::get_error_details(&refused);
    let reason = details
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    anyhow::ensure!(
        reason == proto::reasons::CLIENT_CERTIFICATE_REQUIRED,
        "a plaintext call to a service: {refused:?}"
    );
    Ok(format!(
        "mutual TLS between the processes: a plaintext call to {addr} is refused ({reason})"
    ))
}

fn race_line(mode: &str, what: &str, r: &Races) -> String {
    format!(
        "{} races {what} ({mode}): {} tries, cancel won {}, use won {}, neither {}, both {}",
        if r.both == 0 { "ok  " } else { "FAIL" },
        r.tries,
        r.cancel_won,
        r.use_won,
        r.neither,
        r.both
    )
}

/// The whole run's figures, for the summary line and the exit status.
#[derive(Debug, Default)]
struct Totals {
    scenarios: usize,
    calls: Tally,
    events: u64,
    lost: usize,
    twice: usize,
    violations: usize,
    failed: bool,
}

impl Totals {
    /// Counts one check (and the races' double outcomes) and prints what it
    /// found, at most ten lines.
    fn add(&mut self, scenarios: usize, report: &Report, double_outcomes: usize) {
        self.scenarios += scenarios;
        self.lost += report.lost_count();
        self.twice += report.twice.len();
        self.violations += report.violations.len() + double_outcomes;
        self.failed |= !report.clean() || double_outcomes > 0;
        for finding in report.findings().take(10) {
            println!("       {finding}");
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let admin = std::env::var("ROAMING_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let run = uuid::Uuid::now_v7().simple().to_string();
    if o.command == Sub::Rollout {
        if !rollout::run(&o.roaming, &admin, &run[..12]).await? {
            std::process::exit(1);
        }
        return Ok(());
    }
    if o.command == Sub::Latency {
        return latency::run(&o.roaming, &admin, &run[..12]).await;
    }
    if o.command == Sub::Failover {
        if !failover::run(&o.roaming, &run[..12]).await? {
            std::process::exit(1);
        }
        return Ok(());
    }
    if o.command == Sub::Cluster {
        if !cluster::run(&o.roaming, &admin, &run[..12]).await? {
            std::process::exit(1);
        }
        return Ok(());
    }
    let started = Instant::now();
    let mut totals = Totals::default();

    // --- the distributed mesh ------------------------------------------------
    // Every hop between the processes over mutual TLS (issue 31): the faults
    // below (kills, restarts, a broker and database outage) hit a mesh whose
    // connections are TLS handshakes with certificates checked both ways.
    let layout = Layout::chaos().with_mutual_tls();
    let mut mesh = Distributed::start(&o.roaming, &admin, &run[..12], &layout).await?;
    let callers = Callers::new(&mesh.keys.issuer);
    println!("{}", mutual_tls_is_on(&mesh, &callers).await?);
    let mut clients = Clients::new(mesh.gateway, callers.clone())?;
    let serials = load::seed(&mut clients, "CHAOS", 60).await?;
    let serials = Arc::new(Mutex::new(serials));
    let sources = Sources {
        urls: mesh.dbs.urls.clone(),
    };
    let mut faults = vec![
        Fault::Kill("reservation-1"),
        Fault::KillNats,
        Fault::PaymentSlow,
        Fault::CrashBetweenPaymentAndCommit,
        Fault::PoisonForSeveralConsumers,
        Fault::AbandonedReserves,
        Fault::TerminateReplicas,
        Fault::FreezeReplicas,
    ];
    if !o.short {
        faults.extend([
            Fault::Kill("payment-1"),
            Fault::Kill("rental-1"),
            Fault::Kill("parking-1"),
            Fault::Kill("view-1"),
            Fault::Kill("gateway-1"),
            Fault::PaymentDown,
            Fault::ReservationDownAtTheGate,
            Fault::TerminatePostgresConnections,
            Fault::KillOneReplica,
        ]);
    }
    let load_for = if o.short {
        Duration::from_secs(6)
    } else {
        Duration::from_secs(9)
    };
    let mut written = 0;
    for fault in faults {
        let mut outcome = scenario(
            &mut mesh, &o.roaming, &clients, &sources, &serials, fault, load_for,
        )
        .await
        .with_context(|| fault.name())?;
        // The outboxes hold every scenario's events: count this one's.
        let total_events = outcome.report.events;
        outcome.report.events = total_events.saturating_sub(written);
        written = total_events;
        println!("{}", outcome.line());
        totals.add(1, &outcome.report, 0);
        totals.calls.merge(&outcome.tally);
    }
    // The races, with the two replicas of reservation and rental behind the gateway.
    let race_serials = load::seed(&mut clients, "RACE", o.races).await?;
    let r = load::cancel_vs_hand_over(&mut clients, &race_serials, &run[..8]).await?;
    println!(
        "{}",
        race_line("distributed, replicas", "cancel/hand-over", &r)
    );
    let e = load::cancel_vs_enter(&mut clients, "P2", o.races, &run[..8]).await?;
    println!("{}", race_line("distributed, replicas", "cancel/enter", &e));
    let (report, _) = drain(&sources, Duration::from_secs(45)).await?;
    totals.events = report.events;
    totals.add(2, &report, r.both + e.both);
    mesh.shutdown().await;

    // --- roaming up (embedded) -----------------------------------------------
    let up = Embedded::start(
        &o.roaming,
        std::env::temp_dir().join(format!("roaming-chaos-up-{}", &run[..12])),
        &[],
    )
    .await?;
    let mut clients = Clients::new(up.gateway, Callers::new(&up.issuer))?;
    let race_serials = load::seed(&mut clients, "RACE-UP", o.races).await?;
    let r = load::cancel_vs_hand_over(&mut clients, &race_serials, "up").await?;
    println!("{}", race_line("roaming up", "cancel/hand-over", &r));
    let e = load::cancel_vs_enter(&mut clients, "P2", o.races, "up").await?;
    println!("{}", race_line("roaming up", "cancel/enter", &e));
    let sources = Sources {
        urls: mesh::SERVICES
            .iter()
            .map(|s| (*s, up.database_url(s)))
            .collect(),
    };
    let (report, _) = drain(&sources, Duration::from_secs(45)).await?;
    totals.events += report.events;
    totals.add(2, &report, r.both + e.both);
    drop(up);

    let t = &totals;
    println!(
        "chaos: {} scenarios, {} calls ({} failed by code: {}), {} events, {} lost, {} applied twice, {} violations ({} s)",
        t.scenarios,
        t.calls.calls(),
        t.calls.failed(),
        t.calls.failures(),
        t.events,
        t.lost,
        t.twice,
        t.violations,
        started.elapsed().as_secs()
    );
    if t.failed {
        std::process::exit(1);
    }
    Ok(())
}
