//! The mesh under test: `roaming up` as a child process (default: footprint and
//! start time are measured on it), the distributed mesh as processes, or the
//! mesh in this process (`--smoke`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use adapters_auth::{Audience, Issuer, SigningKey};
use domain_kernel::{Principal, Role};
use futures::StreamExt;
use mesh::fixtures::{at, card, date_in, ts};
use mesh::{Callers, Distributed, Embedded, Layout};
use proto::parking::parking_service_client::ParkingServiceClient;
use proto::rental::rental_service_client::RentalServiceClient;
use proto::reservation::reservation_service_client::ReservationServiceClient;
use proto::view::view_service_client::ViewServiceClient;
use proto::{common, parking as pk, rental as pr, reservation as pb, view as pv};
use roaming::up::Mesh;
use tonic::Request;
use tonic::transport::Channel;

use crate::driver::{Latencies, Stats, drive, drive_at_rate};

/// Units of egg-lte at the bench booth, and bench parking spaces.
const UNITS: u64 = 500;

/// How a workload offers its calls.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// A closed loop of this many callers.
    Concurrency(usize),
    /// An open loop: this many calls per second, whatever the replies do.
    Rate(u32),
}

pub struct Target {
    reservation: SocketAddr,
    rental: SocketAddr,
    parking: SocketAddr,
    view: SocketAddr,
    /// `roaming up` as a child (the default), stopped gracefully by
    /// [`Target::stop`] and killed if the run ends any other way.
    spawned: Option<Embedded>,
    /// The mesh in this process, and its data directory.
    in_process: Option<(Mesh, PathBuf)>,
    distributed: Option<Distributed>,
    pub startup: Option<Duration>,
}

/// Signs the bench's tokens: the mesh under test trusts this key (its issuer
/// key, written before the mesh starts).
static CALLERS: OnceLock<Callers> = OnceLock::new();

/// Remembers `issuer` for [`as_`].
/// The PostgreSQL server of the distributed targets: `ROAMING_TEST_POSTGRES`,
/// default the local server.
pub fn postgres_admin() -> String {
    std::env::var("ROAMING_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn sign_with(issuer: &Issuer) {
    let _ = CALLERS.set(Callers::new(issuer));
}

/// A new issuer key at `path`, remembered for [`as_`].
fn issuer_key(path: &std::path::Path) -> anyhow::Result<()> {
    let key = SigningKey::generate()?;
    key.write_pem(path)?;
    sign_with(&Issuer::new(
        key,
        Audience::default(),
        Duration::from_hours(1),
    ));
    Ok(())
}

fn as_<T>(subject: &str, role: Role, message: T) -> Request<T> {
    match CALLERS.get() {
        Some(callers) => callers.req(&Principal::new(subject, [role], None), message),
        None => Request::new(message),
    }
}

/// Connections an open loop spreads its calls over (round robin).
const OPEN_LOOP_CONNECTIONS: usize = 8;

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

/// Every roaming reservation the bench asks for, whichever workload, takes the
/// next number: its own request id and the next place in the day-after-day
/// plan of [`roaming_request`], so no workload books a day another one filled
/// (workloads with fixed offsets did, once the mesh got faster: `SOLD_OUT`).
static NEXT_ROAMING: AtomicU64 = AtomicU64::new(0);

fn next_roaming() -> u64 {
    NEXT_ROAMING.fetch_add(1, Ordering::Relaxed)
}

fn roaming_request(j: u64) -> pb::ReserveRoamingRequest {
    // UNITS reservations per day, one day each, day after day, within the
    // booking horizon (a trip starts at most 365 days ahead): 182,000
    // reservations before a day comes round again
    // ([`next_roaming`] numbers them across workloads).
    let horizon = u64::try_from(domain_reservation::pricing::ROAMING_HORIZON_DAYS).unwrap_or(365);
    let day = 1 + (j / UNITS) % (horizon - 1);
    pb::ReserveRoamingRequest {
        request_id: format!("r{j}"),
        device_model: "egg-lte".into(),
        country: "JP".into(),
        pickup_booth: "BENCH".into(),
        return_booth: "BENCH".into(),
        start_date: date_in(i64::try_from(day).unwrap_or(0)),
        end_date: date_in(i64::try_from(day).unwrap_or(0)),
        payment: Some(card()),
    }
}

impl Target {
    /// Spawns `roaming up` (next to this binary) with a fresh data directory and
    /// measures the time until every service reports SERVING.
    pub async fn spawn() -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("roaming");
        anyhow::ensure!(
            exe.exists(),
            "{} not found: build it (cargo build --release --workspace)",
            exe.display()
        );
        let dir = std::env::temp_dir().join(format!("roaming-bench-{}", std::process::id()));
        let mesh = Embedded::start(
            &exe,
            dir,
            &[
                // The admin listener is on, as in production (it is part of
                // the footprint).
                ("ROAMING_ADMIN_LISTEN", "127.0.0.1:0"),
                // The bench drives the mesh, not the per-principal limits
                // (calls per second and in flight, claims awaiting payment
                // per customer).
                ("ROAMING_GATEWAY_RATE_PER_SECOND", "1000000000"),
                ("ROAMING_GATEWAY_BURST", "1000000000"),
                ("ROAMING_GATEWAY_MAX_CALLS_PER_PRINCIPAL", "1000000"),
                ("ROAMING_PENDING_CLAIMS_PER_CUSTOMER", "1000"),
                ("RUST_LOG", "warn"),
            ],
        )
        .await?;
        sign_with(&mesh.issuer);
        // Every call goes through the gateway, as a client's would.
        let gateway = mesh.gateway;
        Ok(Self {
            reservation: gateway,
            rental: gateway,
            parking: gateway,
            view: gateway,
            startup: Some(mesh.startup),
            spawned: Some(mesh),
            in_process: None,
            distributed: None,
        })
    }

    /// The distributed mesh: a process per replica (`replicas` of reservation
    /// and rental, one of the others) and a gateway, on fresh PostgreSQL
    /// databases (`ROAMING_TEST_POSTGRES`, default the local server) and a
    /// nats-server of its own, as the chaos suite runs it; the time to
    /// SERVING counts from the first process started.
    pub async fn distributed(replicas: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("roaming");
        anyhow::ensure!(
            exe.exists(),
            "{} not found: build it (cargo build --release --workspace)",
            exe.display()
        );
        let admin = postgres_admin();
        let run = format!("bench{}", std::process::id());
        let layout = Layout {
            replicas: vec![("reservation", replicas), ("rental", replicas)],
            ..Layout::chaos()
        }
        // The bench drives the mesh, not the per-principal limit; claims
        // and calls get the production defaults, not the chaos suite's.
        .with("ROAMING_GATEWAY_RATE_PER_SECOND", "1000000000")
        .with("ROAMING_GATEWAY_BURST", "1000000000")
        .with("ROAMING_GATEWAY_MAX_CALLS_PER_PRINCIPAL", "1000000")
        .with("ROAMING_PENDING_CLAIMS_PER_CUSTOMER", "1000")
        .with("ROAMING_PENDING_TTL_MS", "30000")
        .with("ROAMING_CALL_DEADLINE_MS", "5000")
        .with("RUST_LOG", "error");
        let started = Instant::now();
        let mesh = Distributed::start(&exe, &admin, &run, &layout).await?;
        let startup = started.elapsed();
        sign_with(&mesh.keys.issuer);
        let gateway = mesh.gateway;
        Ok(Self {
            reservation: gateway,
            rental: gateway,
            parking: gateway,
            view: gateway,
            spawned: None,
            in_process: None,
            distributed: Some(mesh),
            startup: Some(startup),
        })
    }

    /// The mesh in this process (smoke runs).
    pub async fn in_process() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("roaming-bench-ip-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut settings = roaming::Settings {
            data_dir: dir.clone(),
            ..roaming::Settings::default()
        };
        settings.reservation.listen = any;
        settings.payment.listen = any;
        settings.rental.listen = any;
        settings.parking.listen = any;
        settings.view.listen = any;
        settings.gateway.listen = any;
        settings.admin_listen = None;
        settings.gateway.rate_per_second = u32::MAX;
        settings.gateway.burst = u32::MAX;
        settings.gateway.max_calls_per_principal = usize::MAX;
        let key = dir.join("issuer.pem");
        issuer_key(&key)?;
        settings.auth.signing_key_file = Some(key);
        let mesh = roaming::up::up(&settings).await?;
        let gateway = mesh.gateway.addr;
        Ok(Self {
            reservation: gateway,
            rental: gateway,
            parking: gateway,
            view: gateway,
            spawned: None,
            in_process: Some((mesh, dir)),
            distributed: None,
            startup: None,
        })
    }

    /// Resident set of the mesh process (Linux; `None` for the distributed
    /// mesh, whose processes are measured one by one if at all).
    pub fn resident(&self) -> Option<Resident> {
        if self.distributed.is_some() {
            return None;
        }
        let pid = match &self.spawned {
            Some(mesh) => mesh.pid()?,
            None => std::process::id(),
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        Some(Resident {
            total: kib("VmRSS:")?,
            anonymous: kib("RssAnon:")?,
            file_backed: kib("RssFile:")?,
        })
    }

    /// The bench catalog: UNITS egg-lte at booth BENCH and UNITS parking spaces.
    pub async fn seed(&self) -> anyhow::Result<()> {
        let rental = RentalServiceClient::new(channel(self.rental).await?);
        let parking = ParkingServiceClient::new(channel(self.parking).await?);
        let calls = (0..UNITS).map(|n| {
            let (mut rental, mut parking) = (rental.clone(), parking.clone());
            async move {
                rental
                    .register_device(as_(
                        "ops",
                        Role::Operator,
                        pr::RegisterDeviceRequest {
                            serial: format!("BENCH-{n}"),
                            device_model: "egg-lte".into(),
                            booth: "BENCH".into(),
                        },
                    ))
                    .await?;
                parking
                    .register_space(as_(
                        "ops",
                        Role::Operator,
                        pk::RegisterSpaceRequest {
                            space_id: format!("PB-{n:04}"),
                            lot: "PB".into(),
                            floor: "B1".into(),
                            number: i32::try_from(n + 1).unwrap_or(1),
                            hourly_rate: Some(common::Money {
                                currency_code: "KRW".into(),
                                minor_units: 3_000,
                            }),
                        },
                    ))
                    .await?;
                Ok::<_, tonic::Status>(())
            }
        });
        for r in futures::stream::iter(calls)
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
        {
            r?;
        }
        // The reservation catalog learns stock and spaces from events.
        let mut reservations = ReservationServiceClient::new(channel(self.reservation).await?);
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let ok = reservations
                .quote_parking(as_(
                    "bench",
                    Role::Customer,
                    pb::QuoteParkingRequest {
                        space_id: format!("PB-{:04}", UNITS - 1),
                        start_time: Some(ts(time::Duration::hours(1))),
                        end_time: Some(ts(time::Duration::hours(2))),
                    },
                ))
                .await
                .is_ok();
            let stock = reservations
                .reserve_roaming(as_("seed", Role::Customer, roaming_request(30_000_000)))
                .await
                .is_ok();
            if ok && stock {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the bench catalog did not reach the reservation service"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn reserve_roaming(&self, load: Load, warmup: Duration, duration: Duration) -> Stats {
        // A closed loop is one caller's connection, as the echo baseline's.
        // An open loop stands for many callers, each on a connection of its
        // own: on one connection the server's stream limit (256) would make
        // the client queue calls itself once 256 are in flight (refusals
        // included, which wait up to the admission wait), and that queue,
        // not the mesh, would set the overload's latency.
        let connections = match load {
            Load::Concurrency(_) => 1,
            Load::Rate(_) => OPEN_LOOP_CONNECTIONS,
        };
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            let Ok(ch) = channel(self.reservation).await else {
                return failed(duration);
            };
            clients.push(ReservationServiceClient::new(ch));
        }
        let clients = Arc::new(clients);
        let call = move |i: u64| {
            let mut client = clients[usize::try_from(i).unwrap_or(0) % clients.len()].clone();
            let j = next_roaming();
            async move {
                client
                    .reserve_roaming(as_(
                        &format!("c{}", j % 97),
                        Role::Customer,
                        roaming_request(j),
                    ))
                    .await
                    .map(drop)
                    .map_err(|s| format!("{:?}", s.code()))
            }
        };
        match load {
            Load::Concurrency(c) => drive(c, warmup, duration, call).await,
            Load::Rate(rate) => drive_at_rate(rate, warmup, duration, call).await,
        }
    }

    pub async fn reserve_parking(
        &self,
        concurrency: usize,
        warmup: Duration,
        duration: Duration,
        offset: u64,
    ) -> Stats {
        let Ok(ch) = channel(self.reservation).await else {
            return failed(duration);
        };
        let client = ReservationServiceClient::new(ch);
        let base = time::OffsetDateTime::now_utc();
        drive(concurrency, warmup, duration, move |i| {
            let mut client = client.clone();
            let j = i + offset;
            // One hour on one of UNITS spaces, hour after hour.
            let start = base + time::Duration::hours(1 + i64::try_from(j / UNITS).unwrap_or(0));
            let request = pb::ReserveParkingRequest {
                request_id: format!("p{j}"),
                space_id: format!("PB-{:04}", j % UNITS),
                vehicle_plate: format!("{:02}가{:04}", j % 100, j % 10_000),
                start_time: Some(at(start)),
                end_time: Some(at(start + time::Duration::hours(1))),
                payment: Some(card()),
            };
            async move {
                client
                    .reserve_parking(as_(&format!("c{}", j % 97), Role::Customer, request))
                    .await
                    .map(drop)
                    .map_err(|s| format!("{:?}", s.code()))
            }
        })
        .await
    }

    /// Reservations at `rate` per second for `total`; for each, the time from the
    /// reply to the view's stream showing `RENTAL_ACCEPTED`.
    pub async fn event_latency(&self, rate: u32, total: Duration) -> Latencies {
        let mut out = Latencies::new();
        let (Ok(rc), Ok(vc)) = (channel(self.reservation).await, channel(self.view).await) else {
            out.lost = 1;
            return out;
        };
        let reservations = ReservationServiceClient::new(rc);
        let views = ViewServiceClient::new(vc);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
        let end = Instant::now() + total;
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        while Instant::now() < end {
            tick.tick().await;
            let (reservations, views, tx) = (reservations.clone(), views.clone(), tx.clone());
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = tx.send(probe(reservations, views).await);
            });
        }
        drop(tx);
        while let Some(r) = rx.recv().await {
            match r {
                Ok(Some(d)) => out.seen(d),
                Ok(None) => out.lost += 1,
                Err(code) => *out.errors.entry(code).or_default() += 1,
            }
        }
        out
    }

    /// Waits until the event pipeline has caught up with the load before:
    /// until a reservation made now is on the view's stream within 250 ms,
    /// three times in a row (two minutes at most). Answers how long it took,
    /// `None` when it did not.
    pub async fn settle(&self) -> Option<Duration> {
        let started = Instant::now();
        let (Ok(rc), Ok(vc)) = (channel(self.reservation).await, channel(self.view).await) else {
            return None;
        };
        let reservations = ReservationServiceClient::new(rc);
        let views = ViewServiceClient::new(vc);
        let mut in_a_row = 0;
        while in_a_row < 3 && started.elapsed() < Duration::from_mins(2) {
            match probe(reservations.clone(), views.clone()).await {
                Ok(Some(took)) if took <= Duration::from_millis(250) => in_a_row += 1,
                _ => {
                    in_a_row = 0;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        (in_a_row >= 3).then(|| started.elapsed())
    }

    /// Stops the mesh gracefully. Its data directory goes here, or for the
    /// spawned mesh when `self` drops.
    pub async fn stop(mut self) {
        if let Some(mesh) = self.spawned.as_mut()
            && let Err(e) = mesh.terminate().await
        {
            eprintln!("bench: stopping the mesh: {e:#}");
        }
        if let Some((mesh, dir)) = self.in_process.take() {
            mesh.stop(Duration::from_secs(2)).await;
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(mesh) = self.distributed.take() {
            mesh.shutdown().await;
        }
    }
}

impl Drop for Target {
    /// Every run, stopped or not, removes its data directory (the spawned
    /// mesh's own drop kills it if [`Target::stop`] did not stop it, then
    /// removes its directory).
    fn drop(&mut self) {
        if let Some((_, dir)) = self.in_process.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn failed(duration: Duration) -> Stats {
    let mut s = crate::driver::drive_nothing(duration);
    s.errors.insert("connect".into(), 1);
    s
}

/// Resident memory of the mesh process, from `/proc/<pid>/status`, each
/// figure in KiB.
///
/// The file-backed part is mostly the binary's own code, mapped from the
/// page cache a folio at a time, so it follows the binary's size more than
/// what the process does (BENCHMARKS-LOG.md, run 12); the anonymous part is the
/// process's own memory.
#[derive(Debug, Clone, Copy)]
pub struct Resident {
    pub total: u64,
    pub anonymous: u64,
    pub file_backed: u64,
}

impl std::fmt::Display for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // MiB to one decimal, rounded up, so that a figure over a target's
        // line never reads as on it.
        let mib = |kib: u64| {
            let tenths = (kib * 10).div_ceil(1024);
            format!("{}.{}", tenths / 10, tenths % 10)
        };
        write!(
            f,
            "{} MiB ({} anonymous, {} file-backed)",
            mib(self.total),
            mib(self.anonymous),
            mib(self.file_backed)
        )
    }
}

/// One reservation, and how long after its reply the view's stream showed it
/// accepted by rental (`None`: not within [`crate::driver::EVENTS_LOST_AFTER`];
/// `Err`: the reserve call's status code).
async fn probe(
    mut reservations: ReservationServiceClient<Channel>,
    views: ViewServiceClient<Channel>,
) -> Result<Option<Duration>, String> {
    let j = next_roaming();
    let who = format!("e{}", j % 97);
    let reply = reservations
        .reserve_roaming(as_(&who, Role::Customer, roaming_request(j)))
        .await
        .map_err(|e| format!("{:?}", e.code()))?;
    let replied = Instant::now();
    let id = reply
        .into_inner()
        .reservation
        .map(|r| r.reservation_id)
        .unwrap_or_default();
    let seen = tokio::time::timeout(crate::driver::EVENTS_LOST_AFTER, async {
        let mut retry = Duration::from_millis(5);
        loop {
            let mut views = views.clone();
            let watch = views
                .watch_reservation(as_(
                    &who,
                    Role::Customer,
                    pv::WatchReservationRequest {
                        reservation_id: id.clone(),
                    },
                ))
                .await;
            let Ok(stream) = watch else {
                // The view has not heard of it yet: ask again shortly,
                // backing off (5 ms doubling up to 250 ms, as a client
                // would) so that thousands of waiting watchers do not
                // flood a view that lags (they did, at 40 ms).
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_millis(250));
                continue;
            };
            let mut stream = stream.into_inner();
            while let Some(Ok(msg)) = stream.next().await {
                let status = msg.reservation.map_or(0, |v| v.status);
                if status >= pb::ReservationStatus::RentalAccepted as i32 {
                    return replied.elapsed();
                }
            }
        }
    })
    .await
    .ok();
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::Resident;

    #[test]
    fn resident_memory_reads_in_tenths_rounded_up() {
        let at_the_line = Resident {
            total: 25 * 1024,
            anonymous: 9 * 1024,
            file_backed: 16 * 1024,
        };
        assert_eq!(
            at_the_line.to_string(),
            "25.0 MiB (9.0 anonymous, 16.0 file-backed)"
        );
        // One KiB over 25 MiB must not read as 25.0.
        let just_over = Resident {
            total: 25 * 1024 + 1,
            anonymous: 26_521,
            file_backed: 0,
        };
        assert_eq!(
            just_over.to_string(),
            "25.1 MiB (25.9 anonymous, 0.0 file-backed)"
        );
    }
}
