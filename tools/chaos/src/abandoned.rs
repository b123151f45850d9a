//! Reserves abandoned by their callers, under the mixed load (issue 32): a
//! customer who sends reserve calls and walks away from each (deadlines of
//! 2 to 250 ms while payment takes 400 ms, a declined card) must not hold
//! any slot: every claim ends on its own call (paid and confirmed, or
//! declined and released) long before the pending-claim TTL, and other
//! customers then get every slot. Good-card calls abandoned the same way
//! end `RESERVED` with their payment captured (the checker's invariant 1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mesh::Distributed;
use proto::reservation as pb;
use sea_orm::{ConnectionTrait as _, Database, Statement};
use tonic::Code;

use crate::load::{self, Clients, Tally, Who};

/// Customers who walk away from every reserve, with a declined card.
const ATTACKERS: [&str; 4] = ["mallory-1", "mallory-2", "mallory-3", "mallory-4"];
/// A customer who walks away from reserves with a good card.
const WALKER: &str = "trudy";
/// Customers who want the attacked slots afterwards, one per space.
const OTHERS: [&str; 10] = [
    "victor-01",
    "victor-02",
    "victor-03",
    "victor-04",
    "victor-05",
    "victor-06",
    "victor-07",
    "victor-08",
    "victor-09",
    "victor-10",
];
/// The lot of the attacked spaces (nothing else uses it).
const LOT: &str = "P4";
/// How long payment takes during the scenario, in milliseconds: longer than
/// most of the attackers' deadlines, so their calls are dropped mid-payment.
const PAYMENT_LATENCY_MS: &str = "400";
/// The attackers' deadlines, in turn.
const DEADLINES_MS: [u64; 4] = [2, 50, 150, 250];
/// How long they keep at it.
const FLOOD: Duration = Duration::from_secs(2);
const DECLINED: &str = "4000000000000002";

/// A parking window: start and end.
type Window = (prost_types::Timestamp, prost_types::Timestamp);

fn space(n: usize) -> String {
    format!("{LOT}-B1-{n:03}")
}

/// A parking window starting `days` from now, an hour long, to the second.
fn window(days: i64) -> Window {
    let start = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    (
        mesh::fixtures::at(start),
        mesh::fixtures::at(start + time::Duration::hours(1)),
    )
}

fn request(
    request_id: String,
    n: usize,
    window: &Window,
    card: proto::common::PaymentCard,
) -> pb::ReserveParkingRequest {
    pb::ReserveParkingRequest {
        request_id,
        space_id: space(n),
        vehicle_plate: format!("77라{n:04}"),
        start_time: Some(window.0),
        end_time: Some(window.1),
        payment: Some(card),
    }
}

/// Reserves of `customer` on the ten spaces in turn for `FLOOD`, each
/// abandoned at its deadline (`deadlines`, in turn); their codes.
async fn walk_away(
    c: Clients,
    customer: &'static str,
    window: Window,
    card: proto::common::PaymentCard,
    deadlines: &'static [u64],
) -> Tally {
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut turn = 0_usize;
    while started.elapsed() < FLOOD {
        let mut reservation = c.reservation.clone();
        let mut call = c.callers.req(
            Who::Customer(customer),
            request(
                format!("{customer}-{}", uuid::Uuid::now_v7().simple()),
                1 + turn % 10,
                &window,
                card.clone(),
            ),
        );
        call.set_timeout(Duration::from_millis(deadlines[turn % deadlines.len()]));
        let code = reservation
            .reserve_parking(call)
            .await
            .map_or_else(|e| e.code(), |_| Code::Ok);
        tally.record(code);
        turn += 1;
    }
    tally
}

/// Claims of the scenario's walkers by status.
async fn statuses(db: &sea_orm::DatabaseConnection) -> anyhow::Result<Vec<(String, String, i64)>> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT customer_id, status, COUNT(*) AS n FROM reservations \
             WHERE customer_id LIKE 'mallory-%' OR customer_id = 'trudy' \
             GROUP BY customer_id, status"
                .to_owned(),
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String>("", "customer_id")?,
                r.try_get::<String>("", "status")?,
                r.try_get::<i64>("", "n")?,
            ))
        })
        .collect()
}

fn count(rows: &[(String, String, i64)], who: impl Fn(&str) -> bool, status: &str) -> i64 {
    rows.iter()
        .filter(|(c, s, _)| who(c) && s == status)
        .map(|(_, _, n)| n)
        .sum()
}

/// Runs the scenario (payment slowed, then restored); the time payment
/// took to come back.
pub async fn run(
    mesh: &mut Distributed,
    c: &mut Clients,
    pending_ttl: Duration,
) -> anyhow::Result<Duration> {
    load::seed_spaces(c, LOT).await?;
    let db = Database::connect(
        mesh.dbs
            .urls
            .get("reservation")
            .context("the reservation database")?,
    )
    .await?;
    // The reservation service learns the spaces from events.
    let known = Instant::now();
    loop {
        let (start, end) = window(5);
        let quote = c
            .reservation
            .clone()
            .quote_parking(c.callers.req(
                Who::Customer(OTHERS[0]),
                pb::QuoteParkingRequest {
                    space_id: space(10),
                    start_time: Some(start),
                    end_time: Some(end),
                },
            ))
            .await;
        if quote.is_ok() {
            break;
        }
        anyhow::ensure!(
            known.elapsed() < Duration::from_secs(30),
            "the reservation service never learnt lot {LOT}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mesh.restart(
        "payment-1",
        &[("ROAMING_PAYMENT_FAULT_LATENCY_MS", PAYMENT_LATENCY_MS)],
    )
    .await?;

    // The attack: declined cards on one window, a good card on another.
    let attacked = window(5);
    let walked = window(6);
    let mut calls = Vec::new();
    for attacker in ATTACKERS {
        calls.push(tokio::spawn(walk_away(
            c.clone(),
            attacker,
            attacked,
            mesh::fixtures::card_number(DECLINED),
            &DEADLINES_MS,
        )));
    }
    calls.push(tokio::spawn(walk_away(
        c.clone(),
        WALKER,
        walked,
        mesh::fixtures::card(),
        &[150],
    )));
    let mut tally = Tally::default();
    for call in calls {
        tally.merge(&call.await?);
    }
    let flood_ended = Instant::now();

    // Everyone else wants the attacked slots at once (refused SOLD_OUT
    // while a claim holds one)...
    let sold_out = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut others = Vec::new();
    for (i, other) in OTHERS.iter().copied().enumerate() {
        let c = c.clone();
        let sold_out = Arc::clone(&sold_out);
        let request_id = format!("{other}-{}", uuid::Uuid::now_v7().simple());
        others.push(tokio::spawn(async move {
            loop {
                let mut reservation = c.reservation.clone();
                let call = c.callers.req(
                    Who::Customer(other),
                    request(request_id.clone(), i + 1, &attacked, mesh::fixtures::card()),
                );
                match reservation.reserve_parking(call).await {
                    Ok(_) => return Ok(flood_ended.elapsed()),
                    Err(e) if flood_ended.elapsed() > Duration::from_secs(20) => {
                        return Err(anyhow::anyhow!("{other} never got {}: {e:?}", space(i + 1)));
                    }
                    Err(e) => {
                        if e.code() == Code::FailedPrecondition {
                            sold_out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    // ... every claim ends on its own call, not by the sweeper (the TTL)...
    let ended_after = loop {
        let rows = statuses(&db).await?;
        if count(&rows, |_| true, "PENDING_PAYMENT") == 0 {
            break flood_ended.elapsed();
        }
        anyhow::ensure!(
            flood_ended.elapsed() < pending_ttl,
            "abandoned claims still PENDING_PAYMENT {} ms after the flood: {rows:?}",
            flood_ended.elapsed().as_millis()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // ... and everyone else gets every slot.
    let mut free_after = Duration::ZERO;
    for other in others {
        free_after = free_after.max(other.await??);
    }
    anyhow::ensure!(
        free_after < pending_ttl,
        "the attacked slots were free only {} ms after the flood (pending TTL {} ms)",
        free_after.as_millis(),
        pending_ttl.as_millis()
    );

    let rows = statuses(&db).await?;
    let is_attacker = |c: &str| c.starts_with("mallory-");
    let is_walker = |c: &str| c == WALKER;
    let declined = count(&rows, is_attacker, "REJECTED");
    let attackers_claims: i64 = rows.iter().filter(|r| is_attacker(&r.0)).map(|r| r.2).sum();
    anyhow::ensure!(
        declined == attackers_claims,
        "a declined card's claim ended otherwise than REJECTED: {rows:?}"
    );
    let paid = count(&rows, is_walker, "RESERVED");
    println!(
        "       abandoned: {} calls ({}), {} claims abandoned with a declined card all REJECTED, {} with a good card RESERVED, \
         every claim ended {} ms after the flood, all {} slots reserved by others {} ms after it ({} SOLD_OUT on the way), pending TTL {} ms",
        tally.calls(),
        tally.failures(),
        declined,
        paid,
        ended_after.as_millis(),
        OTHERS.len(),
        free_after.as_millis(),
        sold_out.load(std::sync::atomic::Ordering::Relaxed),
        pending_ttl.as_millis(),
    );
    anyhow::ensure!(
        declined > 0 && paid > 0,
        "no claim was abandoned mid-payment ({declined} declined, {paid} paid): the scenario showed nothing"
    );
    db.close().await?;
    mesh.restart("payment-1", &[]).await
}
