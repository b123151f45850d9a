//! `roaming up` as one child process on a fresh data directory: the chaos
//! suite's races in the embedded mode, and the mesh `bench` measures.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adapters_auth::{Audience, Issuer, SigningKey};
use anyhow::Context as _;

use crate::distributed::terminate;
use crate::listening::{ANY_PORT, Output};
use crate::wait::wait_serving;

/// The listeners of `roaming up`; each picks its own port and reports it.
const UP_LISTENERS: [&str; 6] = [
    "payment",
    "reservation",
    "rental",
    "parking",
    "view",
    "gateway",
];

/// `roaming up`, killed on drop, which also removes its directory;
/// [`Embedded::terminate`] stops it gracefully first.
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

impl Embedded {
    /// Starts `roaming up` with data and keys in `dir` (emptied first) and
    /// only `PATH` of this process's environment. `env` comes on top of the
    /// defaults (admin listener off, logs at `error`, a per-principal rate
    /// no load reaches), so a caller can change any of them. Its output goes
    /// to `dir/up.log`.
    pub async fn start(roaming: &Path, dir: PathBuf, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("keys"))?;
        let key = SigningKey::generate()?;
        let key_file = dir.join("keys").join("issuer.pem");
        key.write_pem(&key_file)?;
        let issuer = Issuer::new(key, Audience::default(), Duration::from_hours(2));
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
            command.env(
                format!("ROAMING_{}_LISTEN", listener.to_uppercase()),
                ANY_PORT,
            );
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let log = dir.join("up.log");
        let output = Output::from_end_of(&log);
        let file = std::fs::File::create(&log).context("the log of roaming up")?;
        let started = Instant::now();
        let child = command
            .stdout(Stdio::from(file))
            .spawn()
            .with_context(|| format!("starting {}", roaming.display()))?;
        let mut up = Self {
            child: Some(child),
            gateway: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            issuer,
            // Measured below; the value exists first so that a start that
            // never reaches SERVING drops it, which kills the process.
            startup: Duration::ZERO,
        };
        let child = up.child.as_mut().context("just started")?;
        let listeners = output
            .addrs(&UP_LISTENERS, child, Duration::from_secs(30))
            .await
            .context("starting roaming up")?;
        up.gateway = listeners[UP_LISTENERS.len() - 1];
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
        match self.child.take() {
            Some(mut child) => terminate(&mut child, "roaming up").await,
            None => Ok(()),
        }
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
