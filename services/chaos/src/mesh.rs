//! The mesh under test, as processes: its own `nats-server` with JetStream,
//! fresh PostgreSQL databases, every service (two replicas of reservation and
//! rental) and a gateway, each a `roaming serve` child; or `roaming up` (the
//! embedded mode) as one child. Killed with SIGKILL, stopped with SIGTERM.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adapters_auth::{Audience, Issuer, SigningKey};
use adapters_bus::testing::NatsServer;
use anyhow::{Context as _, bail};
use sea_orm::{ConnectionTrait as _, Database};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The services of the distributed mesh, in start order.
pub const SERVICES: [&str; 5] = ["payment", "reservation", "rental", "parking", "view"];

/// Ports handed out in this run: a port is never handed out twice, so two
/// processes never race for one released after probing.
fn free_port(taken: &mut Vec<u16>) -> anyhow::Result<u16> {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !taken.contains(&port) {
            taken.push(port);
            return Ok(port);
        }
    }
}

/// Waits until `addr` answers `SERVING` for `""`.
pub async fn wait_serving(addr: SocketAddr, within: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if serving(addr).await {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!("{addr} not SERVING after {within:?}");
        }
        // Often at first, so a start's figure is not the poll's period.
        let pause = if started.elapsed() < Duration::from_secs(1) {
            2
        } else {
            20
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

async fn serving(addr: SocketAddr) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await
    else {
        return false;
    };
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(Duration::from_millis(500));
    HealthClient::new(channel)
        .check(request)
        .await
        .is_ok_and(|r| r.into_inner().status == 1)
}

/// One fresh PostgreSQL database per service, dropped at the end.
#[derive(Debug)]
pub struct Databases {
    admin: String,
    pub urls: BTreeMap<&'static str, String>,
}

impl Databases {
    pub async fn create(admin: &str, run: &str) -> anyhow::Result<Self> {
        let conn = Database::connect(admin)
            .await
            .with_context(|| format!("PostgreSQL at {admin}"))?;
        let mut urls = BTreeMap::new();
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        for service in SERVICES {
            let name = format!("chaos_{run}_{service}");
            conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await?;
            urls.insert(service, format!("{base}/{name}"));
        }
        Ok(Self {
            admin: admin.to_owned(),
            urls,
        })
    }

    /// Terminates every connection to this run's databases.
    pub async fn terminate_connections(&self) -> anyhow::Result<u64> {
        let conn = Database::connect(&self.admin).await?;
        let names = self
            .urls
            .values()
            .filter_map(|u| u.rsplit_once('/').map(|(_, n)| format!("'{n}'")))
            .collect::<Vec<_>>()
            .join(",");
        let done = conn
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN ({names}) AND pid <> pg_backend_pid()"
            ))
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn drop_all(&self) {
        if let Ok(conn) = Database::connect(&self.admin).await {
            for url in self.urls.values() {
                if let Some((_, name)) = url.rsplit_once('/') {
                    let _ = conn
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            }
        }
    }
}

/// Keys: the gateway's signs every token the load uses; reservation, rental
/// and parking sign their own service tokens.
#[derive(Debug)]
pub struct Keys {
    pub files: BTreeMap<&'static str, PathBuf>,
    pub trusted: String,
    pub issuer: Issuer,
}

impl Keys {
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        let mut files = BTreeMap::new();
        let mut trusted = Vec::new();
        let mut issuer = None;
        for who in ["gateway", "reservation", "rental", "parking"] {
            let key = SigningKey::generate()?;
            let path = dir.join(format!("{who}.pem"));
            key.write_pem(&path)?;
            if who == "gateway" {
                trusted.push(key.public_x());
                issuer = Some(Issuer::new(
                    key,
                    Audience::default(),
                    Duration::from_hours(2),
                ));
            } else {
                trusted.push(format!("{who}={}", key.public_x()));
            }
            files.insert(who, path);
        }
        Ok(Self {
            files,
            trusted: trusted.join(","),
            issuer: issuer.context("gateway key")?,
        })
    }
}

/// One process of the mesh: what it runs and how to start it again.
#[derive(Debug)]
struct Proc {
    service: &'static str,
    addr: SocketAddr,
    extra_env: Vec<(String, String)>,
    child: Option<Child>,
}

/// How many processes of each service a mesh runs.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Replicas per service of [`SERVICES`] (1 when not listed).
    pub replicas: Vec<(&'static str, usize)>,
    pub gateways: usize,
    /// Settings every process gets on top of the usual ones.
    pub env: Vec<(&'static str, &'static str)>,
}

impl Layout {
    /// The chaos suite's: two replicas of reservation and rental.
    pub fn chaos() -> Self {
        Self {
            replicas: vec![("reservation", 2), ("rental", 2)],
            gateways: 1,
            env: Vec::new(),
        }
    }

    fn replicas_of(&self, service: &str) -> usize {
        self.replicas
            .iter()
            .find(|(s, _)| *s == service)
            .map_or(1, |(_, n)| *n)
    }
}

/// The distributed mesh.
#[derive(Debug)]
pub struct Distributed {
    roaming: PathBuf,
    pub nats: NatsServer,
    pub dbs: Databases,
    pub keys: Keys,
    dir: PathBuf,
    procs: BTreeMap<String, Proc>,
    pub gateway: SocketAddr,
    pub gateways: Vec<SocketAddr>,
    addrs: BTreeMap<&'static str, Vec<SocketAddr>>,
    env: Vec<(&'static str, &'static str)>,
    /// Each process's database pool (`ROAMING_DATABASE_POOL`, unless the
    /// layout sets one), so the whole mesh stays under the server's
    /// `max_connections`.
    pool: String,
}

/// PostgreSQL connections a mesh may hold in all: the server's default
/// `max_connections` (100) less room for the relays' listeners, the harness's
/// own connections and the superuser reserve.
const MESH_CONNECTIONS: usize = 80;

impl Distributed {
    /// Starts everything and waits until every process is `SERVING`.
    pub async fn start(
        roaming: &Path,
        admin: &str,
        run: &str,
        layout: &Layout,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("roaming-chaos-{run}"));
        std::fs::create_dir_all(dir.join("keys"))?;
        let mut taken = Vec::new();
        let nats = NatsServer::start_in(dir.join("nats"))?;
        let dbs = Databases::create(admin, run).await?;
        let keys = Keys::create(&dir.join("keys"))?;
        let mut addrs: BTreeMap<&'static str, Vec<SocketAddr>> = BTreeMap::new();
        let mut names = Vec::new();
        for service in SERVICES {
            for r in 1..=layout.replicas_of(service) {
                let addr = SocketAddr::from(([127, 0, 0, 1], free_port(&mut taken)?));
                addrs.entry(service).or_default().push(addr);
                names.push((format!("{service}-{r}"), service, addr));
            }
        }
        let mut gateways = Vec::new();
        for g in 1..=layout.gateways.max(1) {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port(&mut taken)?));
            gateways.push(addr);
            names.push((format!("gateway-{g}"), "gateway", addr));
        }
        // With 16 each (the default), the seven processes of a mesh with
        // replicas could ask for 112 connections of a server allowing 100:
        // once consumers handled events concurrently, they did, and timed out
        // acquiring connections.
        let with_database = names.iter().filter(|(_, s, _)| *s != "gateway").count();
        let pool = (MESH_CONNECTIONS / with_database.max(1)).clamp(2, 16);
        let mut mesh = Self {
            pool: pool.to_string(),
            roaming: roaming.to_owned(),
            nats,
            dbs,
            keys,
            dir,
            procs: BTreeMap::new(),
            gateway: gateways[0],
            gateways,
            addrs,
            env: layout.env.clone(),
        };
        for (name, service, addr) in names {
            mesh.procs.insert(
                name.clone(),
                Proc {
                    service,
                    addr,
                    extra_env: Vec::new(),
                    child: None,
                },
            );
            mesh.spawn(&name)?;
        }
        for p in mesh.procs.values() {
            wait_serving(p.addr, Duration::from_mins(1)).await?;
        }
        Ok(mesh)
    }

    /// The process names (`reservation-1`, `gateway-1`, ...).
    pub fn names(&self) -> Vec<String> {
        self.procs.keys().cloned().collect()
    }

    fn spawn(&mut self, name: &str) -> anyhow::Result<()> {
        let p = self.procs.get(name).context("no such process")?;
        let upper = p.service.to_uppercase();
        let mut command = Command::new(&self.roaming);
        command
            .args(["serve", p.service])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ROAMING_NATS_URL", self.nats.url())
            .env("ROAMING_DATA_DIR", self.dir.join("data"))
            .env(format!("ROAMING_{upper}_LISTEN"), p.addr.to_string())
            .env("ROAMING_ADMIN_LISTEN", "off")
            .env("ROAMING_AUTH_TRUSTED_KEYS", &self.keys.trusted)
            .env("ROAMING_CALL_DEADLINE_MS", "1000")
            .env("ROAMING_BREAKER_COOL_DOWN_MS", "1000")
            .env("ROAMING_PENDING_TTL_MS", "3000")
            .env("ROAMING_SHUTDOWN_GRACE_MS", "2000")
            .env("ROAMING_GATEWAY_RATE_PER_SECOND", "100000")
            .env("ROAMING_GATEWAY_BURST", "100000")
            .env("ROAMING_DATABASE_POOL", &self.pool)
            .env(
                "RUST_LOG",
                std::env::var("CHAOS_LOG").unwrap_or_else(|_| "error".into()),
            );
        if let Some(key) = self.keys.files.get(p.service) {
            command.env("ROAMING_AUTH_SIGNING_KEY_FILE", key);
        }
        if let Some(url) = self.dbs.urls.get(p.service) {
            command.env(format!("ROAMING_{upper}_DATABASE_URL"), url);
        }
        for (service, addrs) in &self.addrs {
            let list = addrs
                .iter()
                .map(|a| format!("http://{a}"))
                .collect::<Vec<_>>()
                .join(",");
            command.env(format!("ROAMING_{}_ADDRS", service.to_uppercase()), list);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        for (k, v) in &p.extra_env {
            command.env(k, v);
        }
        // Each process's log (every incarnation appended), kept after the run
        // with CHAOS_KEEP_LOGS=1.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .with_context(|| format!("the log of {name}"))?;
        let child = command
            .stdout(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.roaming.display()))?;
        if let Some(p) = self.procs.get_mut(name) {
            p.child = Some(child);
        }
        Ok(())
    }

    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.procs.get(name).map(|p| p.addr)
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.procs.get_mut(name).and_then(|p| p.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits until the process exited (it drains first); how
    /// long that took.
    pub async fn terminate(&mut self, name: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let Some(mut child) = self.procs.get_mut(name).and_then(|p| p.child.take()) else {
            bail!("{name} is not running");
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("kill -TERM")?;
        anyhow::ensure!(status.success(), "kill -TERM {name} failed");
        loop {
            if child.try_wait()?.is_some() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > Duration::from_mins(1) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{name} did not exit within a minute of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts `name` (stopped before) with the usual settings and waits for
    /// `SERVING`; how long that took.
    pub async fn start_again(&mut self, name: &str) -> anyhow::Result<Duration> {
        self.spawn(name)?;
        let addr = self.addr(name).context("no such process")?;
        wait_serving(addr, Duration::from_mins(1)).await
    }

    /// Starts `name` again (with `env` on top of the usual settings) and
    /// waits for `SERVING`; returns how long that took.
    pub async fn restart(&mut self, name: &str, env: &[(&str, &str)]) -> anyhow::Result<Duration> {
        self.kill(name);
        if let Some(p) = self.procs.get_mut(name) {
            p.extra_env = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        }
        self.spawn(name)?;
        let addr = self.addr(name).context("no such process")?;
        wait_serving(addr, Duration::from_mins(1)).await
    }

    /// Whether `name`'s process has exited (it crashed on purpose, say).
    pub fn exited(&mut self, name: &str) -> bool {
        self.procs
            .get_mut(name)
            .and_then(|p| p.child.as_mut())
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    pub async fn shutdown(mut self) {
        let names = self.names();
        for name in names {
            self.kill(&name);
        }
        self.nats.kill();
        self.dbs.drop_all().await;
        if std::env::var_os("CHAOS_KEEP_LOGS").is_some() {
            println!("logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Distributed {
    /// An aborted run leaves no process behind (databases are dropped by
    /// [`Distributed::shutdown`] only).
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `roaming up` as one child process on a fresh data directory: the chaos
/// suite's races in the embedded mode, and the mesh `bench` measures.
/// Killed on drop, which also removes the directory; [`Embedded::terminate`]
/// stops it gracefully first.
#[derive(Debug)]
pub struct Embedded {
    child: Option<Child>,
    pub gateway: SocketAddr,
    pub dir: PathBuf,
    /// The mesh's issuer key: tokens it signs are the mesh's own.
    pub issuer: Issuer,
    /// From the spawn until all six listeners answered `SERVING`.
    pub startup: Duration,
}

/// The listeners of `roaming up`, each given a port of its own.
const UP_LISTENERS: [&str; 6] = [
    "payment",
    "reservation",
    "rental",
    "parking",
    "view",
    "gateway",
];

impl Embedded {
    /// Starts `roaming up` with data and keys in `dir` (emptied first) and
    /// only `PATH` of this process's environment. `env` comes on top of the
    /// defaults (admin listener off, logs at `error`, a per-principal rate
    /// no load reaches), so a caller can change any of them.
    pub async fn start(roaming: &Path, dir: PathBuf, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("keys"))?;
        let key = SigningKey::generate()?;
        let key_file = dir.join("keys").join("issuer.pem");
        key.write_pem(&key_file)?;
        let issuer = Issuer::new(key, Audience::default(), Duration::from_hours(2));
        let mut taken = Vec::new();
        let mut listeners = Vec::new();
        let mut command = Command::new(roaming);
        command
            .arg("up")
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ROAMING_DATA_DIR", dir.join("data"))
            .env("ROAMING_AUTH_SIGNING_KEY_FILE", &key_file)
            .env("ROAMING_ADMIN_LISTEN", "off")
            .env("ROAMING_GATEWAY_RATE_PER_SECOND", "100000")
            .env("ROAMING_GATEWAY_BURST", "100000")
            .env("RUST_LOG", "error");
        for listener in UP_LISTENERS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port(&mut taken)?));
            command.env(
                format!("ROAMING_{}_LISTEN", listener.to_uppercase()),
                addr.to_string(),
            );
            listeners.push(addr);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let started = Instant::now();
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", roaming.display()))?;
        let mut up = Self {
            child: Some(child),
            gateway: listeners[UP_LISTENERS.len() - 1],
            dir,
            issuer,
            // Measured below; the value exists first so that a start that
            // never reaches SERVING drops it, which kills the process.
            startup: Duration::ZERO,
        };
        for addr in listeners {
            wait_serving(addr, Duration::from_secs(30)).await?;
        }
        up.startup = started.elapsed();
        Ok(up)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The SQLite file of `service`, for the checker (opened read-only).
    pub fn database_url(&self, service: &str) -> String {
        format!(
            "sqlite://{}?mode=ro",
            self.dir
                .join("data")
                .join(format!("{service}.db"))
                .display()
        )
    }

    /// SIGTERM, then waits until the process exited (it drains first).
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("kill -TERM")?;
        anyhow::ensure!(status.success(), "kill -TERM roaming up failed");
        let started = Instant::now();
        while child.try_wait()?.is_none() {
            if started.elapsed() > Duration::from_mins(1) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("roaming up did not exit within a minute of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

impl Drop for Embedded {
    /// However a run ends (an error, an interrupt), no mesh is left running
    /// to skew the next one, nor its data directory.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
