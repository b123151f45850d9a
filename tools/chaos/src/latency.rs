//! `chaos latency` (`cargo xtask latency`): what replicas cost an event.
//!
//! The time from a reserve's answer to its reservation reaching
//! `RENTAL_ACCEPTED` (two events: `reserved` out of reservation, through the
//! rental service, `accepted` back in), in the distributed mode with one
//! process per service and again with two reservation and two rental
//! replicas. One caller, one reservation at a time, so the figure is event
//! latency, not queueing; the answer is polled every 2 ms through the gateway.
//! Prints p50/p90/p99/max per layout and the difference of the medians.

use std::path::Path;
use std::time::{Duration, Instant};

use proto::reservation::{self as pb, ReservationStatus};

use crate::load::{self, Callers, Clients, Who};
use mesh::{Distributed, Layout};

/// Reservations measured per layout (after `WARM_UP` unmeasured ones).
const SAMPLES: usize = 150;
const WARM_UP: usize = 10;

struct Figures {
    samples: Vec<Duration>,
}

impl Figures {
    fn at(&self, q: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a short sorted list"
        )]
        let i = ((self.samples.len() - 1) as f64 * q).round() as usize;
        self.samples[i]
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name}: reserve -> RENTAL_ACCEPTED p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
            ms(self.at(0.5)),
            ms(self.at(0.9)),
            ms(self.at(0.99)),
            ms(self.at(1.0)),
            self.samples.len()
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// One reservation on day `day` (a day of its own, so stock never runs out):
/// how long after the reserve answered it became `RENTAL_ACCEPTED`.
async fn one(c: &Clients, tag: &str, day: i64) -> anyhow::Result<Duration> {
    let request = load::one_day_reserve(format!("{tag}-{day}"), day);
    // The seeded stock reaches the reservation service by events: until it
    // has, the booth is unknown (INVALID_ARGUMENT) or SOLD_OUT.
    let started = Instant::now();
    let reserved = loop {
        match c
            .reservation
            .clone()
            .reserve_roaming(c.callers.req(Who::Customer("alice"), request.clone()))
            .await
        {
            Ok(r) => break r.into_inner().reservation.unwrap_or_default(),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument
                ) && started.elapsed() < Duration::from_secs(30) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => anyhow::bail!("reserve: {s}"),
        }
    };
    let answered = Instant::now();
    loop {
        let r = c
            .reservation
            .clone()
            .get_reservation(c.callers.req(
                Who::Customer("alice"),
                pb::GetReservationRequest {
                    reservation_id: reserved.reservation_id.clone(),
                },
            ))
            .await?
            .into_inner()
            .reservation
            .unwrap_or_default();
        if r.status == ReservationStatus::RentalAccepted as i32 {
            return Ok(answered.elapsed());
        }
        anyhow::ensure!(
            answered.elapsed() < Duration::from_secs(30),
            "{} still {:?} after 30 s",
            reserved.reservation_id,
            r.status
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn measure(
    roaming: &Path,
    admin: &str,
    run: &str,
    layout: &Layout,
) -> anyhow::Result<Figures> {
    let mesh = Distributed::start(roaming, admin, run, layout).await?;
    let mut clients = Clients::new(mesh.gateway, Callers::new(&mesh.keys.issuer))?;
    load::seed(&mut clients, "LAT", 5).await?;
    let mut samples = Vec::with_capacity(SAMPLES);
    let result = async {
        for i in 0..(WARM_UP + SAMPLES) {
            let day = i64::try_from(i).unwrap_or(0) + 1;
            let took = one(&clients, run, day).await?;
            if i >= WARM_UP {
                samples.push(took);
            }
        }
        anyhow::Ok(())
    }
    .await;
    mesh.shutdown().await;
    result?;
    samples.sort_unstable();
    Ok(Figures { samples })
}

/// Both layouts, one after the other.
pub async fn run(roaming: &Path, admin: &str, run: &str) -> anyhow::Result<()> {
    let single = Layout {
        replicas: Vec::new(),
        ..Layout::chaos()
    };
    let one_each = measure(roaming, admin, &format!("{run}a"), &single).await?;
    println!("{}", one_each.line("latency, one process per service"));
    let replicated = measure(roaming, admin, &format!("{run}b"), &Layout::chaos()).await?;
    println!(
        "{}",
        replicated.line("latency, two reservation and two rental replicas")
    );
    println!(
        "latency: replicas add {:+.1} ms to the p50",
        ms(replicated.at(0.5)) - ms(one_each.at(0.5))
    );
    Ok(())
}
