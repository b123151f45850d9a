//! The distributed mesh as processes: its own `nats-server` with JetStream,
//! fresh PostgreSQL databases, and every service (replicas as a [`Layout`]
//! says) and gateway as a `roaming serve` child, each on a port it picked and
//! reported ([`crate::listening`]). Killed with SIGKILL, stopped with SIGTERM,
//! restarted on the port it had.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adapters_auth::{Audience, Issuer, SigningKey};
use adapters_bus::testing::{NatsCluster, NatsServer};
use anyhow::{Context as _, bail};
use sea_orm::{ConnectionTrait as _, Database};

use crate::listening::{ANY_PORT, Output};
use crate::wait::wait_serving;

/// The services of the distributed mesh.
pub const SERVICES: [&str; 5] = ["payment", "reservation", "rental", "parking", "view"];

/// The order processes start in: a process is told where its upstreams
/// listen, so they start (and report their ports) first. Reservation calls
/// payment; rental and parking call reservation; the gateway calls everyone.
const STAGES: [&[&str]; 4] = [
    &["payment", "view"],
    &["reservation"],
    &["rental", "parking"],
    &["gateway"],
];

/// How long a process may take to start and report its port, then to answer
/// `SERVING`.
const START_WITHIN: Duration = Duration::from_mins(1);

/// The URL of the database `name` on the server `admin` connects to, with
/// `admin`'s parameters. A server on a loopback address is reached without
/// TLS unless `admin` says otherwise (`sslmode`): its bytes never leave the
/// kernel, and the handshakes and record encryption of the default
/// (`prefer`) were about 4 % of a distributed benchmark's CPU
/// (BENCHMARKS-LOG.md, run 16).
pub fn database_url(admin: &str, name: &str) -> String {
    let (path, query) = admin.split_once('?').unwrap_or((admin, ""));
    let base = path.rsplit_once('/').map_or(path, |(b, _)| b);
    let authority = base.split_once("://").map_or(base, |(_, a)| a);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port
            .split_once(']')
            .map_or(host_port, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        host_port.split_once(':').map_or(host_port, |(h, _)| h)
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    // `dbname` would send every service to the admin's database; `host`,
    // `hostaddr` (which sqlx lets override the URL's host) or a TLS mode of
    // the caller's own leave TLS as the caller has it.
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("dbname="))
        .collect();
    let chosen = params.iter().any(|p| {
        ["sslmode=", "ssl-mode=", "host=", "hostaddr="]
            .iter()
            .any(|k| p.starts_with(k))
    });
    if loopback && !chosen {
        params.push("sslmode=disable");
    }
    if params.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{}", params.join("&"))
    }
}

/// One fresh PostgreSQL database per service, dropped by
/// [`Databases::drop_all`] or, at the latest, when this is dropped.
#[derive(Debug)]
pub struct Databases {
    admin: String,
    pub urls: BTreeMap<&'static str, String>,
    dropped: bool,
}

impl Databases {
    /// `mesh_<run>_<service>` on the server `admin` connects to.
    pub async fn create(admin: &str, run: &str) -> anyhow::Result<Self> {
        let conn = Database::connect(admin)
            .await
            .with_context(|| format!("PostgreSQL at {admin}"))?;
        let mut dbs = Self {
            admin: admin.to_owned(),
            urls: BTreeMap::new(),
            dropped: false,
        };
        for service in SERVICES {
            let name = format!("mesh_{run}_{service}");
            conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await?;
            dbs.urls.insert(service, database_url(admin, &name));
        }
        Ok(dbs)
    }

    /// Terminates every connection to this run's databases.
    pub async fn terminate_connections(&self) -> anyhow::Result<u64> {
        let conn = Database::connect(&self.admin).await?;
        let names = self
            .names()
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(",");
        let done = conn
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN ({names}) AND pid <> pg_backend_pid()"
            ))
            .await?;
        Ok(done.rows_affected())
    }

    fn names(&self) -> Vec<String> {
        self.urls
            .values()
            .filter_map(|u| {
                let path = u.split_once('?').map_or(u.as_str(), |(p, _)| p);
                path.rsplit_once('/').map(|(_, n)| n.to_owned())
            })
            .collect()
    }

    pub async fn drop_all(&mut self) {
        if let Ok(conn) = Database::connect(&self.admin).await {
            for name in self.names() {
                let _ = conn
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        }
        self.dropped = true;
    }
}

impl Drop for Databases {
    /// A run that ended early (an error, a failed assertion) leaves no
    /// database behind either. Drop runs inside the caller's runtime: a
    /// thread with its own does the work.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let mut dbs = Self {
            admin: self.admin.clone(),
            urls: std::mem::take(&mut self.urls),
            dropped: true,
        };
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(dbs.drop_all());
            }
        })
        .join();
    }
}

/// Keys: the gateway's signs the tokens a harness sends; reservation, rental
/// and parking sign their own service tokens.
#[derive(Debug)]
pub struct Keys {
    pub files: BTreeMap<&'static str, PathBuf>,
    /// `ROAMING_AUTH_TRUSTED_KEYS`: the gateway's key for anyone, the others
    /// each for its own service.
    pub trusted: String,
    pub issuer: Issuer,
}

impl Keys {
    /// New keys in `dir`; the gateway's is `gateway` when given (its file and
    /// its issuer), so tokens a harness signed beforehand are the mesh's own.
    pub fn create(dir: &Path, gateway: Option<&(PathBuf, Issuer)>) -> anyhow::Result<Self> {
        let mut files = BTreeMap::new();
        let mut trusted = Vec::new();
        let issuer = if let Some((file, issuer)) = gateway {
            files.insert("gateway", file.clone());
            issuer.clone()
        } else {
            let key = SigningKey::generate()?;
            let path = dir.join("gateway.pem");
            key.write_pem(&path)?;
            files.insert("gateway", path);
            Issuer::new(key, Audience::default(), Duration::from_hours(2))
        };
        trusted.push(issuer.key().public_x());
        for who in ["reservation", "rental", "parking"] {
            let key = SigningKey::generate()?;
            let path = dir.join(format!("{who}.pem"));
            key.write_pem(&path)?;
            trusted.push(format!("{who}={}", key.public_x()));
            files.insert(who, path);
        }
        Ok(Self {
            files,
            trusted: trusted.join(","),
            issuer,
        })
    }
}

/// One process of the mesh: what it runs and how to start it again.
#[derive(Debug)]
struct Proc {
    service: &'static str,
    /// Where it listens: reported by its first start, kept by restarts.
    addr: Option<SocketAddr>,
    extra_env: Vec<(String, String)>,
    child: Option<Child>,
}

/// How many processes of each service a mesh runs, and its settings.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Replicas per service of [`SERVICES`] (1 when not listed).
    pub replicas: Vec<(&'static str, usize)>,
    pub gateways: usize,
    /// Settings every process gets on top of the ones a mesh needs (its
    /// broker, databases, keys, addresses), in order: a later one wins.
    pub env: Vec<(String, String)>,
    /// The gateway's signing key and its issuer (default: a new key).
    pub gateway_key: Option<(PathBuf, Issuer)>,
    /// Mutual TLS between the processes: a CA and every identity's
    /// certificate made for the run (`adapters_grpc::tls::local`),
    /// `ROAMING_MESH_TLS=required` and `https://` addresses. The gateway's
    /// public port stays plaintext on loopback (the harness's clients).
    pub mutual_tls: bool,
    /// A JetStream cluster of this many servers instead of one server (0 or
    /// 1: one), every process given all of them and
    /// `ROAMING_NATS_STREAM_REPLICAS` the cluster's size.
    pub nats_cluster: usize,
}

/// The mesh's broker: one `nats-server`, or a cluster of them.
#[derive(Debug)]
pub enum Broker {
    Server(NatsServer),
    Cluster(NatsCluster),
}

impl Broker {
    /// `ROAMING_NATS_URL`: the server, or every server of the cluster.
    pub fn url(&self) -> String {
        match self {
            Self::Server(s) => s.url(),
            Self::Cluster(c) => c.url(),
        }
    }

    /// The single server (the faults that kill and restart it).
    ///
    /// # Errors
    /// The mesh runs a cluster.
    pub fn server(&mut self) -> anyhow::Result<&mut NatsServer> {
        match self {
            Self::Server(s) => Ok(s),
            Self::Cluster(_) => anyhow::bail!("the mesh runs a NATS cluster, not one server"),
        }
    }

    /// The cluster (the faults that kill one of its servers).
    ///
    /// # Errors
    /// The mesh runs one server.
    pub fn cluster(&mut self) -> anyhow::Result<&mut NatsCluster> {
        match self {
            Self::Cluster(c) => Ok(c),
            Self::Server(_) => anyhow::bail!("the mesh runs one NATS server, not a cluster"),
        }
    }

    fn kill(&mut self) {
        match self {
            Self::Server(s) => s.kill(),
            Self::Cluster(c) => (0..c.size()).for_each(|i| c.kill(i)),
        }
    }
}

impl Layout {
    /// The chaos suite's: two replicas of reservation and rental, deadlines
    /// and claims short enough that a fault's effects show within a scenario,
    /// a per-principal rate no load reaches, logs at `CHAOS_LOG` (default
    /// `error`).
    pub fn chaos() -> Self {
        Self {
            replicas: vec![("reservation", 2), ("rental", 2)],
            gateways: 1,
            env: Vec::new(),
            gateway_key: None,
            mutual_tls: false,
            nats_cluster: 0,
        }
        .with("ROAMING_CALL_DEADLINE_MS", "1000")
        .with("ROAMING_BREAKER_COOL_DOWN_MS", "1000")
        .with("ROAMING_PENDING_TTL_MS", "3000")
        .with("ROAMING_SHUTDOWN_GRACE_MS", "2000")
        .with("ROAMING_GATEWAY_RATE_PER_SECOND", "100000")
        .with("ROAMING_GATEWAY_BURST", "100000")
        .with(
            "RUST_LOG",
            &std::env::var("CHAOS_LOG").unwrap_or_else(|_| "error".into()),
        )
    }

    /// One process per service and a gateway, with the defaults' settings.
    pub fn one_each() -> Self {
        Self {
            replicas: Vec::new(),
            gateways: 1,
            env: Vec::new(),
            gateway_key: None,
            mutual_tls: false,
            nats_cluster: 0,
        }
    }

    /// The same on a JetStream cluster of `servers` (streams replicated on
    /// all of them).
    #[must_use]
    pub fn on_nats_cluster(mut self, servers: usize) -> Self {
        self.nats_cluster = servers;
        self
    }

    /// The same with mutual TLS between the processes.
    #[must_use]
    pub fn with_mutual_tls(mut self) -> Self {
        self.mutual_tls = true;
        self
    }

    /// `key=value` on top of the settings so far.
    #[must_use]
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    fn replicas_of(&self, service: &str) -> usize {
        if service == "gateway" {
            return self.gateways.max(1);
        }
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
    pub nats: Broker,
    pub dbs: Databases,
    pub keys: Keys,
    dir: PathBuf,
    procs: BTreeMap<String, Proc>,
    /// The first gateway.
    pub gateway: SocketAddr,
    pub gateways: Vec<SocketAddr>,
    addrs: BTreeMap<&'static str, Vec<SocketAddr>>,
    env: Vec<(String, String)>,
    /// `https` with mutual TLS, else `http`.
    scheme: &'static str,
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
    /// Starts everything, upstreams first, and waits until every process is
    /// `SERVING`. `run` names this run's databases and directory.
    pub async fn start(
        roaming: &Path,
        admin: &str,
        run: &str,
        layout: &Layout,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("roaming-mesh-{run}"));
        std::fs::create_dir_all(dir.join("keys"))?;
        let nats = if layout.nats_cluster > 1 {
            Broker::Cluster(NatsCluster::start(layout.nats_cluster)?)
        } else {
            Broker::Server(NatsServer::start_in(dir.join("nats"))?)
        };
        let dbs = Databases::create(admin, run).await?;
        let keys = Keys::create(&dir.join("keys"), layout.gateway_key.as_ref())?;
        let mut env = layout.env.clone();
        if layout.nats_cluster > 1 {
            // First, so a layout's own setting still wins.
            env.insert(
                0,
                (
                    "ROAMING_NATS_STREAM_REPLICAS".to_owned(),
                    layout.nats_cluster.to_string(),
                ),
            );
        }
        if layout.mutual_tls {
            let tls = dir.join("tls");
            adapters_grpc::tls::local::LocalCa::new("mesh harness CA")?.write_mesh(&tls, &[])?;
            // First, so a layout's own setting still wins.
            env.insert(0, ("ROAMING_MESH_TLS".to_owned(), "required".to_owned()));
            env.insert(
                1,
                ("ROAMING_MESH_TLS_DIR".to_owned(), tls.display().to_string()),
            );
        }
        // With 16 each (the default), the seven processes of a mesh with
        // replicas could ask for 112 connections of a server allowing 100:
        // once consumers handled events concurrently, they did, and timed out
        // acquiring connections.
        let with_database: usize = SERVICES.iter().map(|s| layout.replicas_of(s)).sum();
        let pool = (MESH_CONNECTIONS / with_database.max(1)).clamp(2, 16);
        let mut mesh = Self {
            pool: pool.to_string(),
            roaming: roaming.to_owned(),
            nats,
            dbs,
            keys,
            dir,
            procs: BTreeMap::new(),
            gateway: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateways: Vec::new(),
            addrs: BTreeMap::new(),
            env,
            scheme: if layout.mutual_tls { "https" } else { "http" },
        };
        for stage in STAGES {
            let mut started = Vec::new();
            for service in stage {
                for r in 1..=layout.replicas_of(service) {
                    let name = format!("{service}-{r}");
                    started.push((name.clone(), mesh.add(&name, service)?));
                }
            }
            for (name, output) in started {
                let addr = mesh.reported(&name, &output).await?;
                let service = mesh.procs[&name].service;
                if service == "gateway" {
                    mesh.gateways.push(addr);
                } else {
                    mesh.addrs.entry(service).or_default().push(addr);
                }
            }
        }
        mesh.gateway = mesh.gateways[0];
        for p in mesh.procs.values() {
            if let Some(addr) = p.addr {
                wait_serving(addr, START_WITHIN).await?;
            }
        }
        Ok(mesh)
    }

    /// Registers process `name` of `service` and starts it on a port of its
    /// choosing.
    fn add(&mut self, name: &str, service: &str) -> anyhow::Result<Output> {
        let service = SERVICES
            .iter()
            .chain(&["gateway"])
            .find(|s| **s == service)
            .with_context(|| format!("no service {service}"))?;
        self.procs.insert(
            name.to_owned(),
            Proc {
                service,
                addr: None,
                extra_env: Vec::new(),
                child: None,
            },
        );
        self.spawn(name)
    }

    /// The address `name` reported (from `output`), remembered for restarts.
    async fn reported(&mut self, name: &str, output: &Output) -> anyhow::Result<SocketAddr> {
        let p = self.procs.get_mut(name).context("no such process")?;
        let child = p.child.as_mut().context("not running")?;
        let addr = output
            .addrs(&[p.service], child, START_WITHIN)
            .await
            .with_context(|| format!("starting {name}"))?[0];
        p.addr = Some(addr);
        Ok(addr)
    }

    /// Another replica of `service` on a port of its own, started with the
    /// usual settings; once `SERVING`, its address. The other processes do
    /// not know of it: callers reach it directly.
    pub async fn add_replica(&mut self, service: &str) -> anyhow::Result<SocketAddr> {
        let n = self.procs.values().filter(|p| p.service == service).count();
        let name = format!("{service}-{}", n + 1);
        let output = self.add(&name, service)?;
        let addr = self.reported(&name, &output).await?;
        wait_serving(addr, START_WITHIN).await?;
        Ok(addr)
    }

    /// The process names (`reservation-1`, `gateway-1`, ...).
    pub fn names(&self) -> Vec<String> {
        self.procs.keys().cloned().collect()
    }

    fn spawn(&mut self, name: &str) -> anyhow::Result<Output> {
        let p = self.procs.get(name).context("no such process")?;
        let upper = p.service.to_uppercase();
        let listen = p
            .addr
            .map_or_else(|| ANY_PORT.to_owned(), |a| a.to_string());
        let mut command = Command::new(&self.roaming);
        command
            .args(["serve", p.service])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ROAMING_REPORT_LISTEN", "1")
            .env("ROAMING_NATS_URL", self.nats.url())
            .env("ROAMING_DATA_DIR", self.dir.join("data"))
            .env(format!("ROAMING_{upper}_LISTEN"), listen)
            .env("ROAMING_ADMIN_LISTEN", "off")
            .env("ROAMING_AUTH_TRUSTED_KEYS", &self.keys.trusted)
            .env("ROAMING_DATABASE_POOL", &self.pool)
            .env("RUST_LOG", "error");
        if let Some(key) = self.keys.files.get(p.service) {
            command.env("ROAMING_AUTH_SIGNING_KEY_FILE", key);
        }
        if let Some(url) = self.dbs.urls.get(p.service) {
            command.env(format!("ROAMING_{upper}_DATABASE_URL"), url);
        }
        for (service, addrs) in &self.addrs {
            let list = addrs
                .iter()
                .map(|a| format!("{}://{a}", self.scheme))
                .collect::<Vec<_>>()
                .join(",");
            command.env(format!("ROAMING_{}_ADDRS", service.to_uppercase()), list);
        }
        for (k, v) in self.env.iter().chain(&p.extra_env) {
            command.env(k, v);
        }
        // Each process's output (every incarnation appended): where it
        // reports its port, kept after the run with CHAOS_KEEP_LOGS=1.
        let log = self.dir.join(format!("{name}.log"));
        let output = Output::from_end_of(&log);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("the log of {name}"))?;
        let child = command
            .stdout(Stdio::from(file))
            .spawn()
            .with_context(|| format!("starting {}", self.roaming.display()))?;
        if let Some(p) = self.procs.get_mut(name) {
            p.child = Some(child);
        }
        Ok(output)
    }

    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.procs.get(name).and_then(|p| p.addr)
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
        terminate(&mut child, name).await?;
        Ok(started.elapsed())
    }

    /// SIGSTOP: the process halts where it is, its connections open and
    /// unanswered (a hung process, a paused VM). [`Distributed::thaw`] ends it.
    pub fn freeze(&self, name: &str) -> anyhow::Result<()> {
        self.signal(name, "-STOP")
    }

    /// SIGCONT: a frozen process goes on.
    pub fn thaw(&self, name: &str) -> anyhow::Result<()> {
        self.signal(name, "-CONT")
    }

    fn signal(&self, name: &str, signal: &str) -> anyhow::Result<()> {
        let child = self
            .procs
            .get(name)
            .and_then(|p| p.child.as_ref())
            .with_context(|| format!("{name} is not running"))?;
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .with_context(|| format!("kill {signal}"))?;
        anyhow::ensure!(status.success(), "kill {signal} {name} failed");
        Ok(())
    }

    /// Starts `name` (stopped before) with the usual settings on the port it
    /// had and waits for `SERVING`; how long that took.
    pub async fn start_again(&mut self, name: &str) -> anyhow::Result<Duration> {
        self.spawn(name)?;
        let addr = self.addr(name).context("no such process")?;
        wait_serving(addr, START_WITHIN).await
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
        self.start_again(name).await
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
    /// An aborted run leaves no process behind (nor, see [`Databases`], a
    /// database).
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// SIGTERM to `child`, then waits (a minute at most, then SIGKILL) until it
/// exited.
pub(crate) async fn terminate(child: &mut Child, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .context("kill -TERM")?;
    anyhow::ensure!(status.success(), "kill -TERM {name} failed");
    let started = Instant::now();
    while child.try_wait()?.is_none() {
        if started.elapsed() > Duration::from_mins(1) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} did not exit within a minute of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Databases, database_url};

    #[test]
    fn database_names_are_read_without_the_urls_parameters() {
        let admin = "postgres://postgres@127.0.0.1:5432/postgres";
        let mut dbs = Databases {
            admin: admin.to_owned(),
            urls: [("view", database_url(admin, "mesh_r_view"))].into(),
            dropped: true,
        };
        assert_eq!(dbs.names(), ["mesh_r_view"]);
        dbs.urls.clear();
    }

    #[test]
    fn a_loopback_server_is_reached_without_tls_unless_asked() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "a"),
            "postgres://postgres@127.0.0.1:5432/a?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://u:p@localhost/postgres?sslmode=require", "a"),
            "postgres://u:p@localhost/a?sslmode=require"
        );
        assert_eq!(
            database_url("postgres://u@[::1]:5433/postgres?application_name=x", "a"),
            "postgres://u@[::1]:5433/a?application_name=x&sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://u@db.example:5432/postgres", "a"),
            "postgres://u@db.example:5432/a"
        );
        // A host given as a parameter is not the URL's loopback.
        assert_eq!(
            database_url(
                "postgres://u@localhost/postgres?host=db.example&dbname=x",
                "a"
            ),
            "postgres://u@localhost/a?host=db.example"
        );
        assert_eq!(
            database_url("postgres://u@127.0.0.1/postgres?ssl-mode=require", "a"),
            "postgres://u@127.0.0.1/a?ssl-mode=require"
        );
    }
}
