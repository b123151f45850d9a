//! An embedded mesh on free loopback ports with a fresh data directory, and
//! typed helpers over the generated clients.

#![allow(
    dead_code,
    unused_imports,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test support"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use adapters_auth::{Audience, Issuer, SigningKey};
use domain_kernel::{BoothCode, LotCode, Principal, Role};
use proto::parking::parking_service_client::ParkingServiceClient;
use proto::payment::payment_service_client::PaymentServiceClient;
use proto::rental::rental_service_client::RentalServiceClient;
use proto::reservation::reservation_service_client::ReservationServiceClient;
use proto::view::view_service_client::ViewServiceClient;
use proto::{reservation as pb, view as pv};
use roaming::Settings;
use roaming::up::Mesh;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub mod raw;
pub mod stories;

/// Who calls: subject, role, and the place the role is bound to (the booth of
/// booth staff, the lot of a gate).
#[derive(Debug, Clone, Copy)]
pub struct As(pub &'static str, pub &'static str, pub Option<&'static str>);

pub const ALICE: As = As("alice", "customer", None);
pub const BOB: As = As("bob", "customer", None);
pub const STAFF_T1: As = As("staff-icn-t1", "booth_staff", Some("ICN-T1"));
pub const STAFF_GMP: As = As("staff-gmp", "booth_staff", Some("GMP"));
pub const GATE: As = As("gate-p1", "gate", Some("P1"));
pub const OPS: As = As("ops", "operator", None);

impl As {
    pub fn principal(self) -> Principal {
        let role = Role::parse(self.1).unwrap();
        match role {
            Role::Gate => Principal::new(self.0, [role], None)
                .with_lot(self.2.map(|l| LotCode::parse(l).unwrap())),
            _ => Principal::new(self.0, [role], self.2.map(|b| BoothCode::parse(b).unwrap())),
        }
    }
}

/// The signing key every mesh of this test process uses, and its issuer, so
/// tests can mint tokens for any principal (the gateway's `IssueToken` is
/// tested on its own in `security.rs`).
pub fn test_key() -> &'static (PathBuf, Issuer) {
    static KEY: OnceLock<(PathBuf, Issuer)> = OnceLock::new();
    KEY.get_or_init(|| {
        // Under target/ (cargo's scratch directory for integration tests),
        // not /tmp: a static is never dropped, so the file outlives the run.
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("test-keys")
            .join(format!("issuer-{}.pem", uuid::Uuid::now_v7()));
        let key = SigningKey::generate().unwrap();
        key.write_pem(&path).unwrap();
        (
            path,
            Issuer::new(key, Audience::default(), Duration::from_hours(1)),
        )
    })
}

/// A valid token for `who`.
pub fn token(who: As) -> String {
    test_key().1.issue(&who.principal()).unwrap()
}

/// `message` with `who`'s bearer token.
pub fn req<T>(who: As, message: T) -> Request<T> {
    with_token(&token(who), message)
}

/// `message` with `authorization: Bearer <token>`.
pub fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Where each service of a running mesh listens (one process or five).
#[derive(Debug, Clone, Copy)]
pub struct Cluster {
    pub reservation: SocketAddr,
    pub payment: SocketAddr,
    pub rental: SocketAddr,
    pub parking: SocketAddr,
    pub view: SocketAddr,
    /// Dial with TLS, as this says (a gateway with TLS); plaintext if none.
    pub tls: Option<&'static adapters_grpc::tls::TlsConnect>,
}

async fn channel(addr: SocketAddr, tls: Option<&adapters_grpc::tls::TlsConnect>) -> Channel {
    match tls {
        None => Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
        Some(tls) => Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .connect_with_connector(tls.clone())
            .await
            .unwrap(),
    }
}

impl Cluster {
    pub async fn reservation(&self) -> ReservationServiceClient<Channel> {
        ReservationServiceClient::new(channel(self.reservation, self.tls).await)
    }

    pub async fn payment(&self) -> PaymentServiceClient<Channel> {
        PaymentServiceClient::new(channel(self.payment, self.tls).await)
    }

    pub async fn rental(&self) -> RentalServiceClient<Channel> {
        RentalServiceClient::new(channel(self.rental, self.tls).await)
    }

    pub async fn parking(&self) -> ParkingServiceClient<Channel> {
        ParkingServiceClient::new(channel(self.parking, self.tls).await)
    }

    pub async fn view(&self) -> ViewServiceClient<Channel> {
        ViewServiceClient::new(channel(self.view, self.tls).await)
    }
}

pub struct TestMesh {
    pub mesh: Option<Mesh>,
    pub settings: Settings,
    dir: PathBuf,
}

pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    s.reservation.listen = any;
    s.payment.listen = any;
    s.rental.listen = any;
    s.parking.listen = any;
    s.view.listen = any;
    s.gateway.listen = any;
    s.admin_listen = None;
    s.auth.signing_key_file = Some(test_key().0.clone());
    s.call_deadline_ms = 500;
    s.breaker_cool_down_ms = 1_000;
    s.shutdown_grace_ms = 2_000;
    s
}

impl TestMesh {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A mesh whose test settings `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        }
        let dir = std::env::temp_dir().join(format!("roaming-e2e-{}", uuid::Uuid::now_v7()));
        let mut settings = test_settings(&dir);
        adjust(&mut settings);
        let mesh = roaming::up::up(&settings).await.expect("mesh starts");
        Self {
            mesh: Some(mesh),
            settings,
            dir,
        }
    }

    pub fn mesh(&self) -> &Mesh {
        self.mesh.as_ref().unwrap()
    }

    pub fn mesh_mut(&mut self) -> &mut Mesh {
        self.mesh.as_mut().unwrap()
    }

    /// Every service through the gateway: how clients see the mesh.
    pub fn addrs(&self) -> Cluster {
        let g = self.mesh().gateway.addr;
        Cluster {
            reservation: g,
            payment: g,
            rental: g,
            parking: g,
            view: g,
            tls: None,
        }
    }

    /// The services' own (loopback) ports, bypassing the gateway.
    pub fn direct(&self) -> Cluster {
        let m = self.mesh();
        Cluster {
            reservation: m.reservation.addr,
            payment: m.payment.addr,
            rental: m.rental.addr,
            parking: m.parking.addr,
            view: m.view.addr,
            tls: None,
        }
    }

    pub async fn reservation(&self) -> ReservationServiceClient<Channel> {
        self.addrs().reservation().await
    }

    pub async fn payment(&self) -> PaymentServiceClient<Channel> {
        self.addrs().payment().await
    }

    pub async fn rental(&self) -> RentalServiceClient<Channel> {
        self.addrs().rental().await
    }

    pub async fn parking(&self) -> ParkingServiceClient<Channel> {
        self.addrs().parking().await
    }

    pub async fn view(&self) -> ViewServiceClient<Channel> {
        self.addrs().view().await
    }

    pub async fn stop(mut self) {
        if let Some(mesh) = self.mesh.take() {
            mesh.stop(Duration::from_secs(2)).await;
        }
    }
}

impl Drop for TestMesh {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub use mesh::fixtures::{card, card_number, date_in, ts};

/// An egg-lte from ICN-T1, returned at GMP.
pub fn roaming_request(request_id: &str, from_day: i64, to_day: i64) -> pb::ReserveRoamingRequest {
    mesh::fixtures::roaming_request(request_id, ("ICN-T1", "GMP"), from_day, to_day)
}

/// A phone-5g from ICN-T2 (2 units in the demo catalog), 9,000 KRW a day.
pub fn phone_request(request_id: &str, from_day: i64, to_day: i64) -> pb::ReserveRoamingRequest {
    pb::ReserveRoamingRequest {
        device_model: "phone-5g".to_owned(),
        pickup_booth: "ICN-T2".to_owned(),
        ..roaming_request(request_id, from_day, to_day)
    }
}

pub fn parking_request(
    request_id: &str,
    space: &str,
    plate: &str,
    from_min: i64,
    to_min: i64,
) -> pb::ReserveParkingRequest {
    mesh::fixtures::parking_request(
        request_id,
        space,
        plate,
        time::Duration::minutes(from_min),
        time::Duration::minutes(to_min),
    )
}

/// Polls `check` until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    mesh::eventually(within, Duration::from_millis(25), what, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The view of a reservation once it reaches `status` (or has moved past it).
pub async fn view_reaches(
    mesh: &impl HasCluster,
    who: As,
    id: &str,
    status: pb::ReservationStatus,
) -> pv::ReservationView {
    let view = mesh.cluster().view().await;
    eventually(
        Duration::from_secs(10),
        &format!("view of {id} to reach {status:?}"),
        || {
            let mut view = view.clone();
            let id = id.to_owned();
            async move {
                let v = view
                    .get_reservation_view(req(
                        who,
                        pv::GetReservationViewRequest { reservation_id: id },
                    ))
                    .await
                    .ok()?
                    .into_inner()
                    .reservation?;
                // Reached, or already past it on the forward path.
                let forward = |x: i32| x <= pb::ReservationStatus::Completed as i32;
                let target = status as i32;
                (v.status == target || (forward(target) && forward(v.status) && v.status >= target))
                    .then_some(v)
            }
        },
    )
    .await
}

/// The `ErrorInfo.reason` of a status.
pub fn reason(status: &Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// The `RetryInfo.retry_delay` of a status.
pub fn retry_delay(status: &Status) -> Option<Duration> {
    use tonic_types::StatusExt;
    status.get_details_retry_info().and_then(|r| r.retry_delay)
}

/// Anything the stories can run against.
pub trait HasCluster {
    fn cluster(&self) -> Cluster;
}

impl HasCluster for TestMesh {
    fn cluster(&self) -> Cluster {
        self.addrs()
    }
}

impl HasCluster for Cluster {
    fn cluster(&self) -> Cluster {
        *self
    }
}

/// Runs `command` (a `roaming up`, perhaps behind a shell) with its data in
/// `data`, every service on a loopback port 0 and the gateway on
/// `gateway_listen`, until the gateway serves; its log lines so far. Panics
/// if it never serves within a minute.
#[allow(dead_code)] // not every test binary starts `roaming up` as a process
pub fn up_until_the_gateway_serves(
    mut command: std::process::Command,
    data: &std::path::Path,
    gateway_listen: &str,
) -> String {
    use std::io::BufRead as _;
    let mut child = command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ROAMING_DATA_DIR", data)
        .env("ROAMING_ADMIN_LISTEN", "off")
        .env("ROAMING_GATEWAY_LISTEN", gateway_listen)
        .env("ROAMING_RESERVATION_LISTEN", "127.0.0.1:0")
        .env("ROAMING_PAYMENT_LISTEN", "127.0.0.1:0")
        .env("ROAMING_RENTAL_LISTEN", "127.0.0.1:0")
        .env("ROAMING_PARKING_LISTEN", "127.0.0.1:0")
        .env("ROAMING_VIEW_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the roaming binary");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    while std::time::Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("gateway serving") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.contains("gateway serving"),
        "the gateway never served:\n{seen}"
    );
    seen
}
