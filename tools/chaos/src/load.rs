//! The load: a steady mix of what customers, booths and gates do (roaming
//! and parking reserves, cancels, hand-overs, returns and retrievals, gate
//! entries and exits), through the gateway, counted by gRPC code; and the
//! cancel/hand-over and cancel/enter races.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use adapters_auth::Issuer;
use adapters_grpc::balance::{Discovery, Upstream};
use domain_kernel::{BoothCode, LotCode, Principal, Role};
use proto::parking::parking_service_client::ParkingServiceClient;
use proto::rental::rental_service_client::RentalServiceClient;
use proto::reservation::reservation_service_client::ReservationServiceClient;
use proto::{common, parking as pk, rental as pr, reservation as pb};
use tonic::{Code, Request, Status};

/// Who calls.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    Customer(&'static str),
    Staff(&'static str),
    /// The gate of a lot.
    Gate(&'a str),
    Operator,
}

/// The lot of one of the load's spaces (`<lot>-B1-<n>`).
pub fn lot_of(space: &str) -> &str {
    space.split_once("-B1-").map_or(space, |(lot, _)| lot)
}

/// The load's callers: each signed once ([`mesh::Callers`]), each call with
/// a 5 s deadline.
#[derive(Debug, Clone)]
pub struct Callers(mesh::Callers);

impl Callers {
    pub fn new(issuer: &Issuer) -> Self {
        Self(mesh::Callers::new(issuer).with_timeout(Duration::from_secs(5)))
    }

    /// `message` as `who` sends it.
    pub fn req<T>(&self, who: Who<'_>, message: T) -> Request<T> {
        let principal = match who {
            Who::Customer(c) => Some(Principal::new(c, [Role::Customer], None)),
            Who::Staff(b) => BoothCode::parse(b)
                .ok()
                .map(|booth| Principal::booth_staff(&format!("staff-{b}"), booth)),
            Who::Gate(lot) => LotCode::parse(lot)
                .ok()
                .map(|lot_code| Principal::gate(&format!("gate-{lot}"), lot_code)),
            Who::Operator => Some(Principal::operator("ops")),
        };
        if let Some(p) = principal {
            self.0.req(&p, message)
        } else {
            // Not a principal the mesh knows: sent without a token (refused).
            let mut r = Request::new(message);
            r.set_timeout(Duration::from_secs(5));
            r
        }
    }
}

/// Clients of one entry point (the gateway).
#[derive(Debug, Clone)]
pub struct Clients {
    pub reservation: ReservationServiceClient<Upstream>,
    pub rental: RentalServiceClient<Upstream>,
    pub parking: ParkingServiceClient<Upstream>,
    pub callers: Callers,
}

impl Clients {
    pub fn new(gateway: SocketAddr, callers: Callers) -> anyhow::Result<Self> {
        Self::balanced(&[gateway], callers)
    }

    /// Clients balanced over several gateways, as a client of a mesh with
    /// replicated gateways would be (health-watched, see
    /// `adapters_grpc::balance`). Needs a tokio runtime.
    pub fn balanced(gateways: &[SocketAddr], callers: Callers) -> anyhow::Result<Self> {
        let addresses: Vec<String> = gateways.iter().map(|g| format!("http://{g}")).collect();
        // `""`: the gateway's readiness.
        let channel = Upstream::new("", &addresses, &Discovery::default())?;
        Ok(Self {
            reservation: ReservationServiceClient::new(channel.clone()),
            rental: RentalServiceClient::new(channel.clone()),
            parking: ParkingServiceClient::new(channel),
            callers,
        })
    }
}

pub use mesh::fixtures::{card, date_in, ts};

/// Calls made, by gRPC code.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub by_code: BTreeMap<String, u64>,
}

impl Tally {
    pub fn record(&mut self, code: Code) {
        *self.by_code.entry(format!("{code:?}")).or_default() += 1;
    }

    pub fn calls(&self) -> u64 {
        self.by_code.values().sum()
    }

    pub fn failed(&self) -> u64 {
        self.by_code
            .iter()
            .filter(|(c, _)| c.as_str() != "Ok")
            .map(|(_, n)| n)
            .sum()
    }

    pub fn merge(&mut self, other: &Self) {
        for (code, n) in &other.by_code {
            *self.by_code.entry(code.clone()).or_default() += n;
        }
    }

    /// `UNAVAILABLE 12, FAILED_PRECONDITION 3`
    pub fn failures(&self) -> String {
        let parts: Vec<String> = self
            .by_code
            .iter()
            .filter(|(c, _)| c.as_str() != "Ok")
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

fn code_of<T>(r: &Result<T, Status>) -> Code {
    r.as_ref().map_or_else(Status::code, |_| Code::Ok)
}

/// What the load knows about a reservation it made.
#[derive(Debug, Clone)]
enum Known {
    Roaming {
        id: String,
        today: bool,
        serial: Option<String>,
    },
    Parking {
        id: String,
        space: String,
        plate: String,
        inside: bool,
    },
}

/// Runs the mixed load with `workers` callers until `stop` is set.
pub async fn mixed(
    clients: Clients,
    workers: usize,
    stop: Arc<AtomicBool>,
    serials: Arc<Mutex<Vec<String>>>,
) -> Tally {
    let mut handles = Vec::new();
    for w in 0..workers {
        let c = clients.clone();
        let stop = Arc::clone(&stop);
        let serials = Arc::clone(&serials);
        handles.push(tokio::spawn(
            async move { worker(c, w, stop, serials).await },
        ));
    }
    let mut tally = Tally::default();
    for h in handles {
        if let Ok(t) = h.await {
            tally.merge(&t);
        }
    }
    tally
}

const CUSTOMERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

async fn worker(
    mut clients: Clients,
    me: usize,
    stop: Arc<AtomicBool>,
    serials: Arc<Mutex<Vec<String>>>,
) -> Tally {
    let mut tally = Tally::default();
    let mut known: Vec<Known> = Vec::new();
    let mut turn: u64 = 0;
    let customer = CUSTOMERS[me % CUSTOMERS.len()];
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut unavailable_seen = 0;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let kind = turn % 10;
        match kind {
            // Roaming for today (so it can be handed over) or later.
            0..=3 => {
                let today = kind == 0;
                let days = if today {
                    0
                } else {
                    i64::try_from(turn % 90).unwrap_or(0) + 1
                };
                let reply = clients
                    .reservation
                    .reserve_roaming(clients.callers.req(
                        Who::Customer(customer),
                        pb::ReserveRoamingRequest {
                            request_id: format!("{run}-{turn}"),
                            device_model: "egg-lte".into(),
                            country: "JP".into(),
                            pickup_booth: "ICN-T1".into(),
                            return_booth: "ICN-T1".into(),
                            start_date: date_in(days),
                            end_date: date_in(days + 1),
                            payment: Some(card()),
                        },
                    ))
                    .await;
                tally.record(code_of(&reply));
                if let Ok(reply) = reply
                    && let Some(reply) = reply.into_inner().reservation
                {
                    known.push(Known::Roaming {
                        id: reply.reservation_id,
                        today,
                        serial: None,
                    });
                }
            }
            // Parking: a window open now (the gate can let the car in), or later.
            4 | 5 => {
                let space = format!("P1-B1-{:03}", (turn + me as u64 * 7) % 10 + 1);
                let plate = format!("{:02}가{:04}", me + 10, turn % 10_000);
                let start = if kind == 4 {
                    0
                } else {
                    120 + i64::try_from(turn % 5_000).unwrap_or(0) * 40
                };
                let reply = clients
                    .reservation
                    .reserve_parking(clients.callers.req(
                        Who::Customer(customer),
                        pb::ReserveParkingRequest {
                            request_id: format!("{run}-{turn}"),
                            space_id: space.clone(),
                            vehicle_plate: plate.clone(),
                            start_time: Some(ts(time::Duration::minutes(start))),
                            end_time: Some(ts(time::Duration::minutes(start + 30))),
                            payment: Some(card()),
                        },
                    ))
                    .await;
                tally.record(code_of(&reply));
                if let Ok(reply) = reply
                    && let Some(reply) = reply.into_inner().reservation
                {
                    known.push(Known::Parking {
                        id: reply.reservation_id,
                        space,
                        plate,
                        inside: false,
                    });
                }
            }
            // Cancel something.
            6 => {
                if let Some(k) = known.get(usize::try_from(turn).unwrap_or(0) % known.len().max(1))
                {
                    let id = match k {
                        Known::Roaming { id, .. } | Known::Parking { id, .. } => id.clone(),
                    };
                    let reply = clients
                        .reservation
                        .cancel_reservation(clients.callers.req(
                            Who::Customer(customer),
                            pb::CancelReservationRequest {
                                reservation_id: id,
                                reason: "chaos".into(),
                            },
                        ))
                        .await;
                    tally.record(code_of(&reply));
                }
            }
            // The booth: hand over, or return and retrieve what is out.
            7 | 8 => {
                let Some(at) = known
                    .iter()
                    .rposition(|k| matches!(k, Known::Roaming { today: true, .. }))
                else {
                    continue;
                };
                let Known::Roaming { id, serial, .. } = known[at].clone() else {
                    continue;
                };
                match serial {
                    None => {
                        let Some(unit) =
                            serials.lock().unwrap_or_else(PoisonError::into_inner).pop()
                        else {
                            continue;
                        };
                        let reply = clients
                            .rental
                            .hand_over_device(clients.callers.req(
                                Who::Staff("ICN-T1"),
                                pr::HandOverDeviceRequest {
                                    reservation_id: id.clone(),
                                    serial: unit.clone(),
                                },
                            ))
                            .await;
                        tally.record(code_of(&reply));
                        if reply.is_ok() {
                            known[at] = Known::Roaming {
                                id,
                                today: true,
                                serial: Some(unit),
                            };
                        } else {
                            // Not handed over: the device is still free.
                            serials
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(unit);
                            known.remove(at);
                        }
                    }
                    Some(unit) => {
                        let reply = clients
                            .rental
                            .return_device(clients.callers.req(
                                Who::Staff("ICN-T1"),
                                pr::ReturnDeviceRequest {
                                    reservation_id: id.clone(),
                                    booth: "ICN-T1".into(),
                                },
                            ))
                            .await;
                        tally.record(code_of(&reply));
                        let reply = clients
                            .rental
                            .retrieve_device(clients.callers.req(
                                Who::Staff("ICN-T1"),
                                pr::RetrieveDeviceRequest { reservation_id: id },
                            ))
                            .await;
                        tally.record(code_of(&reply));
                        if reply.is_ok() {
                            serials
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(unit);
                        }
                        known.remove(at);
                    }
                }
            }
            // The gate: let a car in, or out again.
            _ => {
                let Some(at) = known
                    .iter()
                    .position(|k| matches!(k, Known::Parking { .. }))
                else {
                    continue;
                };
                let Known::Parking {
                    id,
                    space,
                    plate,
                    inside,
                } = known[at].clone()
                else {
                    continue;
                };
                if inside {
                    let reply = clients
                        .parking
                        .exit(clients.callers.req(
                            Who::Gate(lot_of(&space)),
                            pk::ExitRequest {
                                space_id: space.clone(),
                                vehicle_plate: plate,
                            },
                        ))
                        .await;
                    tally.record(code_of(&reply));
                    known.remove(at);
                } else {
                    let reply = clients
                        .parking
                        .enter(clients.callers.req(
                            Who::Gate(lot_of(&space)),
                            pk::EnterRequest {
                                space_id: space.clone(),
                                vehicle_plate: plate.clone(),
                            },
                        ))
                        .await;
                    tally.record(code_of(&reply));
                    if reply.is_ok() {
                        known[at] = Known::Parking {
                            id,
                            space,
                            plate,
                            inside: true,
                        };
                    } else {
                        known.remove(at);
                    }
                }
            }
        }
        if known.len() > 64 {
            known.remove(0);
        }
        // Do not spin while something is down (a client backs off too).
        if tally.by_code.get("Unavailable").copied().unwrap_or(0) > unavailable_seen {
            unavailable_seen = tally.by_code.get("Unavailable").copied().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tally
}

/// `call` until it answers something other than `UNAVAILABLE` (a mesh that
/// just started, or a replica being replaced), for at most 30 s.
async fn retry_unavailable<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Err(e)
                if e.code() == Code::Unavailable && started.elapsed() < Duration::from_secs(30) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// `attempt` until it gives `Some`, for at most 30 s: what the load waits
/// for (new stock, a freed space, an accepted rental) reaches the services
/// through events.
async fn until_some<T, F, Fut>(what: String, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = attempt().await {
            return Ok(value);
        }
        if started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reserves `space` for `plate` from now (entry open) for `minutes`; the
/// reservation id, or `None` when refused (sold out, say).
fn reserve_parking_now(
    c: &Clients,
    customer: &'static str,
    request_id: String,
    space: &str,
    plate: &str,
    minutes: i64,
) -> impl std::future::Future<Output = Option<String>> + use<> {
    let mut reservation = c.reservation.clone();
    let request = c.callers.req(
        Who::Customer(customer),
        pb::ReserveParkingRequest {
            request_id,
            space_id: space.to_owned(),
            vehicle_plate: plate.to_owned(),
            start_time: Some(ts(time::Duration::seconds(5))),
            end_time: Some(ts(time::Duration::minutes(minutes))),
            payment: Some(card()),
        },
    );
    async move {
        let r = reservation.reserve_parking(request).await.ok()?;
        Some(r.into_inner().reservation?.reservation_id)
    }
}

/// A reserve of one egg-lte unit at ICN-T1 (picked up and returned there)
/// for the single day `day` days ahead, paid with the test card.
pub fn one_day_reserve(request_id: String, day: i64) -> pb::ReserveRoamingRequest {
    pb::ReserveRoamingRequest {
        request_id,
        device_model: "egg-lte".into(),
        country: "JP".into(),
        pickup_booth: "ICN-T1".into(),
        return_booth: "ICN-T1".into(),
        start_date: date_in(day),
        end_date: date_in(day),
        payment: Some(card()),
    }
}

/// Registers `count` egg-lte units at ICN-T1 named `<prefix>-<n>` and ten
/// parking spaces (if missing), as the operator; returns the serials.
pub async fn seed(c: &mut Clients, prefix: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let mut serials = Vec::new();
    for n in 0..count {
        let serial = format!("{prefix}-{n}");
        let r = retry_unavailable(|| {
            let mut rental = c.rental.clone();
            let request = c.callers.req(
                Who::Operator,
                pr::RegisterDeviceRequest {
                    serial: serial.clone(),
                    device_model: "egg-lte".into(),
                    booth: "ICN-T1".into(),
                },
            );
            async move { rental.register_device(request).await }
        })
        .await;
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Code::AlreadyExists => {}
            Err(e) => anyhow::bail!("registering {serial}: {e}"),
        }
        serials.push(serial);
    }
    seed_spaces(c, "P1").await?;
    Ok(serials)
}

/// Ten parking spaces `<lot>-B1-001` to `-010` (if missing), as the operator.
pub async fn seed_spaces(c: &mut Clients, lot: &str) -> anyhow::Result<()> {
    for n in 1..=10 {
        register_space(c, lot, n).await?;
    }
    Ok(())
}

/// The parking space `<lot>-B1-<n>` (if missing), as the operator.
pub async fn register_space(c: &Clients, lot: &str, n: i32) -> anyhow::Result<()> {
    let r = retry_unavailable(|| {
        let mut parking = c.parking.clone();
        let request = c.callers.req(
            Who::Operator,
            pk::RegisterSpaceRequest {
                space_id: format!("{lot}-B1-{n:03}"),
                lot: lot.into(),
                floor: "B1".into(),
                number: n,
                hourly_rate: Some(common::Money {
                    currency_code: "KRW".into(),
                    minor_units: 3_000,
                }),
            },
        );
        async move { parking.register_space(request).await }
    })
    .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Code::AlreadyExists => Ok(()),
        Err(e) => anyhow::bail!("registering space {lot}-B1-{n:03}: {e}"),
    }
}

/// How the races ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Races {
    pub tries: usize,
    pub cancel_won: usize,
    pub use_won: usize,
    /// Both succeeded: a refund and a device out (or a car in).
    pub both: usize,
    /// Neither succeeded (a fault in between, not a double outcome).
    pub neither: usize,
}

/// `tries` times: a reservation for today, then cancel and hand-over at once.
pub async fn cancel_vs_hand_over(
    c: &mut Clients,
    serials: &[String],
    tag: &str,
) -> anyhow::Result<Races> {
    let mut races = Races::default();
    let mut ids = Vec::new();
    for (i, _) in serials.iter().enumerate() {
        // The catalog learns new stock from events: sold out until then.
        let id = until_some(format!("a reservation for race {i}"), || {
            let mut reservation = c.reservation.clone();
            let request = c.callers.req(
                Who::Customer("alice"),
                pb::ReserveRoamingRequest {
                    request_id: format!("race-{tag}-{i}"),
                    device_model: "egg-lte".into(),
                    country: "JP".into(),
                    pickup_booth: "ICN-T1".into(),
                    return_booth: "ICN-T1".into(),
                    start_date: date_in(0),
                    end_date: date_in(0),
                    payment: Some(card()),
                },
            );
            async move {
                let r = reservation.reserve_roaming(request).await.ok()?;
                Some(r.into_inner().reservation?.reservation_id)
            }
        })
        .await?;
        ids.push(id);
    }
    for id in &ids {
        until_some(format!("rental accepting {id}"), || {
            let mut rental = c.rental.clone();
            let request = c.callers.req(
                Who::Operator,
                pr::GetRentalRequest {
                    reservation_id: id.clone(),
                },
            );
            async move {
                let r = rental.get_rental(request).await.ok()?.into_inner().rental?;
                (r.status == pr::RentalStatus::Accepted as i32).then_some(())
            }
        })
        .await?;
    }
    for (i, (id, serial)) in ids.iter().zip(serials).enumerate() {
        let mut customer = c.reservation.clone();
        let mut booth = c.rental.clone();
        let cancel = customer.cancel_reservation(c.callers.req(
            Who::Customer("alice"),
            pb::CancelReservationRequest {
                reservation_id: id.clone(),
                reason: "race".into(),
            },
        ));
        let hand_over = booth.hand_over_device(c.callers.req(
            Who::Staff("ICN-T1"),
            pr::HandOverDeviceRequest {
                reservation_id: id.clone(),
                serial: serial.clone(),
            },
        ));
        let shift = Duration::from_millis(u64::try_from(i % 8).unwrap_or(0) * 3);
        let (canceled, handed) = futures::join!(
            async {
                if i % 2 == 1 {
                    tokio::time::sleep(shift).await;
                }
                cancel.await
            },
            async {
                if i % 2 == 0 {
                    tokio::time::sleep(shift).await;
                }
                hand_over.await
            }
        );
        races.tries += 1;
        match (canceled.is_ok(), handed.is_ok()) {
            (true, false) => races.cancel_won += 1,
            (false, true) => races.use_won += 1,
            (true, true) => races.both += 1,
            (false, false) => races.neither += 1,
        }
    }
    Ok(races)
}

/// `tries` times: a parking window open now, then cancel and the gate at once,
/// on the ten spaces of lot `lot` (which nothing else uses).
pub async fn cancel_vs_enter(
    c: &mut Clients,
    lot: &str,
    tries: usize,
    tag: &str,
) -> anyhow::Result<Races> {
    seed_spaces(c, lot).await?;
    let mut races = Races::default();
    for i in 0..tries {
        let space = format!("{lot}-B1-{:03}", i % 10 + 1);
        let plate = format!("{:02}나{:04}", i % 90 + 10, i);
        // The space is held until the earlier try's exit reaches the
        // reservation service (an event): retry while it is sold out.
        let id = until_some(format!("{space} for race {i}"), || {
            reserve_parking_now(c, "bob", format!("enter-{tag}-{i}"), &space, &plate, 5)
        })
        .await?;
        let mut customer = c.reservation.clone();
        let mut gate = c.parking.clone();
        let (canceled, entered) = futures::join!(
            customer.cancel_reservation(c.callers.req(
                Who::Customer("bob"),
                pb::CancelReservationRequest {
                    reservation_id: id,
                    reason: "race".into(),
                },
            )),
            gate.enter(c.callers.req(
                Who::Gate(lot_of(&space)),
                pk::EnterRequest {
                    space_id: space.clone(),
                    vehicle_plate: plate.clone(),
                },
            ))
        );
        races.tries += 1;
        let entered_ok = entered.is_ok();
        match (canceled.is_ok(), entered_ok) {
            (true, false) => races.cancel_won += 1,
            (false, true) => races.use_won += 1,
            (true, true) => races.both += 1,
            (false, false) => races.neither += 1,
        }
        if entered_ok {
            let _ = gate
                .exit(c.callers.req(
                    Who::Gate(lot_of(&space)),
                    pk::ExitRequest {
                        space_id: space.clone(),
                        vehicle_plate: plate,
                    },
                ))
                .await;
        }
    }
    Ok(races)
}

/// A parking reservation for now on each of `count` spaces of `lot` (seeded
/// here); returns `(space, plate)` of each.
pub async fn reserve_now(
    c: &mut Clients,
    lot: &str,
    count: u32,
) -> anyhow::Result<Vec<(String, String)>> {
    seed_spaces(c, lot).await?;
    let mut cars = Vec::new();
    for n in 1..=count.min(10) {
        let space = format!("{lot}-B1-{n:03}");
        let plate = format!("88다{n:04}");
        let request_id = format!("{}-{space}", uuid::Uuid::now_v7().simple());
        until_some(format!("a reservation of {space}"), || {
            reserve_parking_now(c, "carol", request_id.clone(), &space, &plate, 10)
        })
        .await?;
        cars.push((space, plate));
    }
    Ok(cars)
}

/// Lets every car in at the gate; how many got in.
pub async fn enter_all(c: &mut Clients, cars: &[(String, String)]) -> usize {
    let mut entered = 0;
    for (space, plate) in cars {
        let r = c
            .parking
            .enter(c.callers.req(
                Who::Gate(lot_of(space)),
                pk::EnterRequest {
                    space_id: space.clone(),
                    vehicle_plate: plate.clone(),
                },
            ))
            .await;
        if r.is_ok() {
            entered += 1;
        }
    }
    entered
}
