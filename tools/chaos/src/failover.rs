//! `chaos failover` (issue 36): a database failover under load.
//!
//! PostgreSQL as `CloudNativePG` runs it: a primary with a synchronous
//! streaming standby (`synchronous_standby_names = '*'`, so a commit a client
//! was told about is on both), both on loopback in a directory of this run,
//! behind a TCP proxy standing for the `-rw` Service. All five services'
//! databases live on it. Under the mixed load: the primary is stopped hard
//! (`pg_ctl stop -m immediate`), the standby promoted, and the proxy
//! repointed to it (its open connections cut, as a Service's endpoints change).
//! The promoted server keeps `synchronous_standby_names` with no standby
//! left, so its commits wait for ever until the operator's (`CloudNativePG`'s)
//! next step clears it, `HOLD` later: the mesh must answer that time with
//! `UNAVAILABLE` (commits bounded by `COMMIT_TIMEOUT`), never `INTERNAL` and
//! never a hang, and recover once it is cleared. Then the load stops, the mesh
//! drains, and the checker reads every database: 0 lost, 0 applied twice, 0
//! violations.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sea_orm::{ConnectionTrait as _, Database};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::check::Sources;
use crate::load::{self, Callers, Clients, Who};
use mesh::{Distributed, Layout};

/// How long the promoted server keeps waiting for a standby before the
/// operator clears `synchronous_standby_names`: longer than `COMMIT_TIMEOUT`,
/// so bounded commits are seen.
const HOLD: Duration = Duration::from_secs(7);

/// `adapters_store::COMMIT_TIMEOUT`: how long the services let a commit wait.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// One PostgreSQL cluster of this run: its data directory and port.
struct Cluster {
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let dir = self.dir.to_str().context("a UTF-8 path")?;
        let log = self.dir.with_extension("log");
        let log = log.to_str().context("a UTF-8 path")?;
        let mut all = vec!["-D", dir, "-l", log];
        all.extend_from_slice(args);
        postgres_tool("pg_ctl", &all)
    }
}

/// Runs one of PostgreSQL's programs as the `postgres` user when this
/// process is root (the server refuses to run as root), else as ourselves.
fn postgres_tool(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let bin = bindir()?.join(program);
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut command = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let out = command
        .args(args)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `pg_config --bindir`: where `initdb`, `pg_ctl` and `pg_basebackup` are.
fn bindir() -> anyhow::Result<PathBuf> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .context("pg_config (PostgreSQL's server programs are needed)")?;
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A primary and its synchronous standby.
struct Pair {
    base: PathBuf,
    primary: Cluster,
    standby: Cluster,
}

impl Pair {
    async fn start(base: &Path) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(base);
        std::fs::create_dir_all(base)?;
        // The server's user must own its directories.
        let _ = Command::new("chown")
            .args(["postgres:postgres", base.to_str().context("UTF-8")?])
            .status();
        let primary = Cluster {
            dir: base.join("primary"),
            port: free_port()?,
        };
        let standby = Cluster {
            dir: base.join("standby"),
            port: free_port()?,
        };
        // From here on, a failure stops whatever was started (Drop).
        let pair = Self {
            base: base.to_owned(),
            primary,
            standby,
        };
        let (primary, standby) = (&pair.primary, &pair.standby);
        let primary_dir = primary.dir.to_str().context("UTF-8")?;
        postgres_tool(
            "initdb",
            &[
                "-D",
                primary_dir,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        let socket_dir = base.to_str().context("UTF-8")?;
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket_dir}'\n\
             wal_level = replica\nmax_wal_senders = 10\nmax_connections = 400\n\
             synchronous_standby_names = '*'\nfsync = off\nhot_standby = on\n",
            primary.port
        );
        append(&primary.dir.join("postgresql.conf"), &conf)?;
        primary.pg_ctl(&["-w", "start"])?;
        let port = primary.port.to_string();
        postgres_tool(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                standby.dir.to_str().context("UTF-8")?,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        )?;
        append(
            &standby.dir.join("postgresql.conf"),
            &format!("port = {}\n", standby.port),
        )?;
        standby.pg_ctl(&["-w", "start"])?;
        // Synchronous before anything is written.
        let admin = Database::connect(pair.primary.url("postgres")).await?;
        let started = Instant::now();
        loop {
            let row = admin
                .query_one_raw(sea_orm::Statement::from_string(
                    admin.get_database_backend(),
                    "SELECT count(*) AS n FROM pg_stat_replication WHERE sync_state = 'sync'",
                ))
                .await?;
            let n: i64 = row.map_or(Ok(0), |r| r.try_get("", "n"))?;
            if n > 0 {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the standby never became synchronous"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(pair)
    }

    /// Stops both servers (whichever run) and removes their directory.
    fn stop(&self) {
        let _ = self.primary.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = self.standby.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop();
    }
}

fn append(file: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().append(true).open(file)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// A TCP proxy standing for the `-rw` Service: forwards to its target;
/// repointing cuts every connection through it.
struct Proxy {
    addr: SocketAddr,
    target: watch::Sender<SocketAddr>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (target, watching) = watch::channel(target);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watching = watching.clone();
                let to = *watching.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watching.changed() => {}
                    }
                });
            }
        });
        Ok(Self { addr, target })
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@{}/{db}", self.addr)
    }

    fn repoint(&self, to: SocketAddr) {
        let _ = self.target.send(to);
    }
}

/// A write through the whole mesh: a parking space registered by the
/// operator (parking's database; its event goes through the outbox).
async fn probe_write(c: &Clients, n: &mut i32) -> Result<(), tonic::Code> {
    *n += 1;
    let mut parking = c.parking.clone();
    let mut request = c.callers.req(
        Who::Operator,
        proto::parking::RegisterSpaceRequest {
            space_id: format!("FO-B1-{:03}", *n),
            lot: "FO".into(),
            floor: "B1".into(),
            number: *n,
            hourly_rate: Some(proto::common::Money {
                currency_code: "KRW".into(),
                minor_units: 3_000,
            }),
        },
    );
    request.set_timeout(Duration::from_secs(8));
    match parking.register_space(request).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(e) => Err(e.code()),
    }
}

/// `ALTER SYSTEM SET synchronous_standby_names = ''` on the promoted server.
async fn clear_synchronous_standbys(pair: &Pair) -> anyhow::Result<()> {
    let promoted = Database::connect(pair.standby.url("postgres")).await?;
    promoted
        .execute_unprepared("ALTER SYSTEM SET synchronous_standby_names = ''")
        .await?;
    promoted
        .execute_unprepared("SELECT pg_reload_conf()")
        .await?;
    Ok(())
}

/// The whole scenario; `Ok(false)` when it failed.
pub async fn run(roaming: &Path, run: &str) -> anyhow::Result<bool> {
    let started = Instant::now();
    let base = std::env::temp_dir().join(format!("roaming-failover-{run}"));
    let pair = Pair::start(&base).await?;
    let ok = scenario(roaming, run, &pair).await?;
    drop(pair);
    println!("failover: {} s", started.elapsed().as_secs());
    Ok(ok)
}

async fn scenario(roaming: &Path, run: &str, pair: &Pair) -> anyhow::Result<bool> {
    let proxy = Proxy::start(pair.primary.addr()).await?;
    let layout = Layout::chaos();
    let mesh = Distributed::start(roaming, &proxy.url("postgres"), run, &layout).await?;
    let callers = Callers::new(&mesh.keys.issuer);
    let mut clients = Clients::new(mesh.gateway, callers)?;
    let serials = load::seed(&mut clients, "FAIL", 60).await?;
    let serials = Arc::new(std::sync::Mutex::new(serials));
    let sources = Sources {
        urls: mesh.dbs.urls.clone(),
    };
    println!(
        "failover: primary 127.0.0.1:{} with a synchronous standby 127.0.0.1:{}, behind a proxy at {}; all five databases on it",
        pair.primary.port, pair.standby.port, proxy.addr
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load::mixed(
        clients.clone(),
        6,
        Arc::clone(&stop),
        Arc::clone(&serials),
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The failover: kill, promote, repoint.
    let switch = Instant::now();
    pair.primary.pg_ctl(&["-m", "immediate", "stop"])?;
    pair.standby.pg_ctl(&["-w", "promote"])?;
    proxy.repoint(pair.standby.addr());
    let switched = switch.elapsed();

    // The promoted server waits for a standby it no longer has: writes must
    // be answered (UNAVAILABLE), not hang.
    let mut n = 0;
    let held = Instant::now();
    let mut during = Vec::new();
    while held.elapsed() < HOLD {
        let asked = Instant::now();
        let code = probe_write(&clients, &mut n).await.err();
        during.push((code, asked.elapsed()));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The operator's step: no synchronous standby to wait for. If it cannot
    // be done, the servers stop before the mesh is dropped (whose databases
    // would otherwise be dropped through a server that waits for ever).
    if let Err(e) = clear_synchronous_standbys(pair).await {
        stop.store(true, Ordering::Relaxed);
        pair.stop();
        return Err(e.context("clearing synchronous_standby_names on the promoted server"));
    }
    let cleared = Instant::now();
    let recovery = loop {
        if probe_write(&clients, &mut n).await.is_ok() {
            break cleared.elapsed();
        }
        anyhow::ensure!(
            cleared.elapsed() < Duration::from_mins(1),
            "no write succeeded within 60 s of the failover's end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = load.await?;
    let (report, drained) = crate::drain(&sources, Duration::from_mins(1)).await?;
    mesh.shutdown().await;

    let slowest = during.iter().map(|(_, d)| *d).max().unwrap_or_default();
    let answered_unavailable = during
        .iter()
        .filter(|(c, _)| *c == Some(tonic::Code::Unavailable))
        .count();
    let probe_internal = during
        .iter()
        .filter(|(c, _)| *c == Some(tonic::Code::Internal))
        .count();
    let load_internal = tally.by_code.get("Internal").copied().unwrap_or(0);
    // Answered, not hung: a write during the wait is told UNAVAILABLE once
    // its commit has waited COMMIT_TIMEOUT (at least one such answer: a
    // commit really waited and was cut), and none waits much longer.
    let cut = during
        .iter()
        .filter(|(c, d)| {
            *c == Some(tonic::Code::Unavailable)
                && *d >= COMMIT_TIMEOUT.saturating_sub(Duration::from_secs(1))
        })
        .count();
    crate::rollout::findings(&report);
    println!(
        "failover: kill + promote + repoint {} ms; while the promoted server waited for a standby ({} s): {} writes tried, {} UNAVAILABLE ({} after their commit waited its bound), slowest answer {} ms; writes again {} ms after it was cleared",
        switched.as_millis(),
        HOLD.as_secs(),
        during.len(),
        answered_unavailable,
        cut,
        slowest.as_millis(),
        recovery.as_millis()
    );
    let bounded = cut > 0 && slowest < COMMIT_TIMEOUT + Duration::from_secs(2);
    if !bounded {
        println!("       writes during the wait were not answered UNAVAILABLE in time: {during:?}");
    }
    let ok = report.clean() && load_internal == 0 && probe_internal == 0 && bounded;
    println!(
        "{} failover under load: {} calls ({} failed: {}), {} INTERNAL, recovery {} ms, drain {} ms, {} events, {} lost, {} applied twice, {} violations",
        if ok { "ok  " } else { "FAIL" },
        tally.calls(),
        tally.failed(),
        tally.failures(),
        load_internal + probe_internal as u64,
        recovery.as_millis(),
        drained.as_millis(),
        report.events,
        report.lost_count(),
        report.twice.len(),
        report.violations.len()
    );
    Ok(ok)
}
