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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::check::{Report, Sources};
use crate::load::{self, Callers, Clients, Tally};
use mesh::{Distributed, Layout};

/// Callers of the load; each runs calls one after another.
const WORKERS: usize = 24;

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
        ..Layout::chaos()
    }
    // What Kubernetes gives a pod between NOT_SERVING and the end of new
    // traffic (deploy/ uses 5 s): clients see the health change and stop
    // sending before the listener closes.
    .with("ROAMING_SHUTDOWN_DELAY_MS", "1000")
    .with("ROAMING_SHUTDOWN_GRACE_MS", "10000")
    // 11 processes with a database, two of them at once during a
    // replacement, on a server allowing 100 connections.
    .with("ROAMING_DATABASE_POOL", "6")
}

struct Phase {
    tally: Tally,
    waits: u64,
    calls_per_second: f64,
    /// Per process: how long SIGTERM to exit took, and the new one to SERVING.
    steps: Vec<(String, Duration, Duration)>,
}

/// What the rollout's load counted.
#[derive(Debug, Default, Clone)]
struct Counted {
    tally: Tally,
    /// Answers that said "not yet" while an event was on its way (a booth
    /// asked before the rental was accepted; a space whose last visit's
    /// completion had not reached the reservation service), retried as a
    /// client would. Not failures, but counted.
    waits: u64,
}

/// Two callers per customer: a customer may have at most three reservations
/// awaiting payment at once (`pending_claims_per_customer`), and every call
/// here must succeed.
const CUSTOMERS: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "kim",
    "lee",
];

/// Calls `call` until it answers something but `not_yet` (for at most 20 s);
/// every answer but the last counts as a wait.
async fn patiently<T, F, Fut>(
    counted: &mut Counted,
    not_yet: impl Fn(&tonic::Status) -> bool,
    mut call: F,
) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Err(s) if not_yet(&s) && started.elapsed() < Duration::from_secs(20) => {
                counted.waits += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

fn record<T>(counted: &mut Counted, result: &Result<T, tonic::Status>) {
    counted.tally.record(match result {
        Ok(_) => tonic::Code::Ok,
        Err(s) => {
            if counted.tally.failed() < 5 {
                println!("       failed call: {s:?}");
            }
            s.code()
        }
    });
}

/// An egg at ICN-T1 from `days` from now, for one day.
async fn reserve_roaming(
    c: &Clients,
    customer: &'static str,
    request_id: String,
    days: i64,
) -> Result<tonic::Response<proto::reservation::ReserveRoamingResponse>, tonic::Status> {
    let request = c.callers.req(
        load::Who::Customer(customer),
        proto::reservation::ReserveRoamingRequest {
            request_id,
            device_model: "egg-lte".into(),
            country: "JP".into(),
            pickup_booth: "ICN-T1".into(),
            return_booth: "ICN-T1".into(),
            start_date: load::date_in(days),
            end_date: load::date_in(days + 1),
            payment: Some(load::card()),
        },
    );
    c.reservation.clone().reserve_roaming(request).await
}

/// One caller of the rollout's load: every call has one right answer, so
/// any other is a failure. In turn: a roaming reservation for today handed
/// over, returned and retrieved (with its own device); one for later,
/// canceled; a parking reservation on its own space, in at the gate and out.
async fn steady(clients: Clients, me: usize, serial: String, stop: Arc<AtomicBool>) -> Counted {
    use proto::{parking as pk, rental as pr, reservation as pb};
    let mut counted = Counted::default();
    let customer = CUSTOMERS[me % CUSTOMERS.len()];
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut turn: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let c = &clients;
        // Today: reserve, hand over, return, retrieve.
        let reserved = reserve_roaming(c, customer, format!("{run}-{turn}-today"), 0).await;
        record(&mut counted, &reserved);
        if let Ok(Some(reservation)) = reserved.map(|r| r.into_inner().reservation) {
            let id = reservation.reservation_id;
            let handed = patiently(
                &mut counted,
                |s| s.code() == tonic::Code::NotFound,
                || {
                    let mut r = c.rental.clone();
                    let req = c.callers.req(
                        load::Who::Staff("ICN-T1"),
                        pr::HandOverDeviceRequest {
                            reservation_id: id.clone(),
                            serial: serial.clone(),
                        },
                    );
                    async move { r.hand_over_device(req).await }
                },
            )
            .await;
            record(&mut counted, &handed);
            let mut r = c.rental.clone();
            let returned = r
                .return_device(c.callers.req(
                    load::Who::Staff("ICN-T1"),
                    pr::ReturnDeviceRequest {
                        reservation_id: id.clone(),
                        booth: "ICN-T1".into(),
                    },
                ))
                .await;
            record(&mut counted, &returned);
            let retrieved = r
                .retrieve_device(c.callers.req(
                    load::Who::Staff("ICN-T1"),
                    pr::RetrieveDeviceRequest { reservation_id: id },
                ))
                .await;
            record(&mut counted, &retrieved);
        }
        // Later: reserve, cancel.
        let days = i64::try_from(turn % 60).unwrap_or(0) + 2;
        let later = reserve_roaming(c, customer, format!("{run}-{turn}-later"), days).await;
        record(&mut counted, &later);
        if let Ok(Some(reservation)) = later.map(|r| r.into_inner().reservation) {
            let mut r = c.reservation.clone();
            let canceled = r
                .cancel_reservation(c.callers.req(
                    load::Who::Customer(customer),
                    pb::CancelReservationRequest {
                        reservation_id: reservation.reservation_id,
                        reason: "rollout".into(),
                    },
                ))
                .await;
            record(&mut counted, &canceled);
        }
        // Parking: one of this caller's ten spaces, in and out.
        let space = format!("R{me}-B1-{:03}", turn % 10 + 1);
        let plate = format!("{:02}가{:04}", me + 10, turn % 10_000);
        let parked = patiently(
            &mut counted,
            |s| {
                matches!(
                    s.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::NotFound
                )
            },
            || {
                let mut r = c.reservation.clone();
                let req = c.callers.req(
                    load::Who::Customer(customer),
                    pb::ReserveParkingRequest {
                        request_id: format!("{run}-{turn}-park"),
                        space_id: space.clone(),
                        vehicle_plate: plate.clone(),
                        start_time: Some(load::ts(time::Duration::seconds(5))),
                        end_time: Some(load::ts(time::Duration::minutes(30))),
                        payment: Some(load::card()),
                    },
                );
                async move { r.reserve_parking(req).await }
            },
        )
        .await;
        record(&mut counted, &parked);
        if parked.is_ok() {
            let mut p = c.parking.clone();
            let entered = p
                .enter(c.callers.req(
                    load::Who::Gate(load::lot_of(&space)),
                    pk::EnterRequest {
                        space_id: space.clone(),
                        vehicle_plate: plate.clone(),
                    },
                ))
                .await;
            record(&mut counted, &entered);
            let exited = p
                .exit(c.callers.req(
                    load::Who::Gate(load::lot_of(&space)),
                    pk::ExitRequest {
                        space_id: space.clone(),
                        vehicle_plate: plate,
                    },
                ))
                .await;
            record(&mut counted, &exited);
        }
    }
    counted
}

/// Runs the load while every process (or, with `kill`, one of each service)
/// is replaced in turn; the load stops after the last replacement.
async fn under_load(
    mesh: &mut Distributed,
    clients: &Clients,
    serials: &[String],
    kill: bool,
) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for me in 0..WORKERS {
        let serial = serials.get(me).cloned().unwrap_or_default();
        callers.push(tokio::spawn(steady(
            clients.clone(),
            me,
            serial,
            Arc::clone(&stop),
        )));
    }
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
    let mut tally = Tally::default();
    let mut waits = 0;
    for caller in callers {
        let counted = caller.await?;
        tally.merge(&counted.tally);
        waits += counted.waits;
    }
    let elapsed = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "a rate for a report")]
    let calls_per_second = tally.calls() as f64 / elapsed.max(0.001);
    Ok(Phase {
        tally,
        waits,
        calls_per_second,
        steps,
    })
}

pub(crate) fn findings(report: &Report) {
    for finding in report.findings().take(10) {
        println!("       {finding}");
    }
}

/// The whole proof; `Ok(false)` when it failed.
pub async fn run(roaming: &Path, admin: &str, run: &str) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut mesh = Distributed::start(roaming, admin, run, &layout()).await?;
    let callers = Callers::new(&mesh.keys.issuer);
    let mut clients = Clients::balanced(&mesh.gateways, callers)?;
    let serials = load::seed(&mut clients, "ROLL", 60).await?;
    for me in 0..WORKERS {
        load::seed_spaces(&mut clients, &format!("R{me}")).await?;
    }
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
    let (report, drained) = crate::drain(&sources, Duration::from_mins(1)).await?;
    let slowest_exit = term.steps.iter().map(|s| s.1).max().unwrap_or_default();
    println!(
        "       SIGTERM phase: {:.0} calls/s, {} not-yet answers retried, slowest drain-and-exit {} ms, mesh drained {} ms after the load",
        term.calls_per_second,
        term.waits,
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
    let (report, _) = crate::drain(&sources, Duration::from_mins(1)).await?;
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
