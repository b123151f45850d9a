//! Typed settings: a TOML file (optional) plus `ROAMING_*` environment
//! overrides, validated before anything binds.
//!
//! Each setting is declared once, in its section (`adapters_settings::section!`):
//! its doc, type, default and check. Its TOML key is its field's name
//! (`payment.fault_latency_ms`), its variable that key in capitals after
//! `ROAMING_` (`ROAMING_PAYMENT_FAULT_LATENCY_MS`), and `ROAMING_<NAME>_FILE`
//! reads it from a file. The root section is here; the service sections are
//! in `settings/` (`service.rs`, `payment.rs`), the tokens' in
//! `settings/auth.rs`, the gateway's in `services/gateway/src/settings.rs`.
//! README.md's table of every setting is checked against [`Settings::table`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use adapters_grpc::tls::{ClientCerts, ClientTls, PemFiles, ServerTls, TlsConnect};
use adapters_settings::{Entry, POSITIVE, bad};
use gateway::GatewaySettings;

mod auth;
mod checks;
mod payment;
mod service;

pub use adapters_settings::SettingsError;
pub use auth::{AuthSettings, TrustedKeySetting};
pub use payment::PaymentSettings;
pub use service::ServiceSettings;

use checks::{http_urls, loopback, mesh_tls, nats_scheme};

/// The prefix of every setting's environment variable.
pub const ENV_PREFIX: &str = "ROAMING_";

adapters_settings::section! {
    /// Every setting of one process (one service, or `roaming up`).
    #[derive(Debug, Clone)]
    pub struct Settings {
        /// Where SQLite files live when a service has no database URL.
        pub data_dir: PathBuf = PathBuf::from("data");
        /// NATS JetStream (e.g. `nats://127.0.0.1:4222`; a cluster: its
        /// servers comma-separated, one user part for all); the embedded bus
        /// when unset.
        pub nats_url: Option<String> = None, check nats_scheme;
        /// Prefix of every stream, durable and subject (several meshes on one
        /// NATS).
        pub nats_prefix: String = String::new();
        /// Copies of each JetStream stream when the mesh creates it (1-5; 3 on
        /// a three-server NATS cluster).
        pub nats_stream_replicas: usize = 1, check 1..=5;
        /// Addresses of payment replicas, for reservation's `Pay` calls
        /// (comma-separated in the environment).
        pub payment_addrs: Vec<String> = Vec::new(), check http_urls;
        /// Addresses of reservation replicas, for parking's
        /// `VerifyParkingEntry` and rental's checks before a hand-over.
        pub reservation_addrs: Vec<String> = Vec::new(), check http_urls;
        /// Addresses of rental replicas (the gateway forwards to them; in
        /// `roaming up` the local service).
        pub rental_addrs: Vec<String> = Vec::new(), check http_urls;
        /// Addresses of parking replicas (the gateway forwards to them; in
        /// `roaming up` the local service).
        pub parking_addrs: Vec<String> = Vec::new(), check http_urls;
        /// Addresses of view replicas (the gateway forwards to them; in
        /// `roaming up` the local service).
        pub view_addrs: Vec<String> = Vec::new(), check http_urls;
        /// How often a host name in the `*_addrs` is resolved again, in
        /// milliseconds (every address it resolves to is a replica; IP
        /// addresses are never resolved); a replica that fails has its name
        /// resolved again sooner, at most every 250 ms. A Kubernetes headless
        /// Service resolves to one address per ready pod. A failed lookup or
        /// an empty answer keeps the replicas known.
        pub resolve_interval_ms: u64 = 5_000, check 100..=600_000;
        /// Deadline of every synchronous call, in milliseconds.
        pub call_deadline_ms: u64 = 2_000, check 1..=60_000;
        /// How long a reserve call may stay `PENDING_PAYMENT` before the
        /// sweeper rejects it (and the capture, if any, is voided), in
        /// milliseconds; more than twice `call_deadline_ms`.
        pub pending_ttl_ms: u64 = 60_000;
        /// Reservations one customer may have awaiting payment at once; a
        /// reserve beyond is refused with `RESOURCE_EXHAUSTED` /
        /// `PENDING_LIMIT` before it claims anything (each claim holds stock
        /// while its payment runs).
        pub pending_claims_per_customer: u32 = 3, check 1..=1_000;
        /// Fault injection (chaos suite): the reservation process aborts
        /// right after this many captured payments, before committing them.
        /// 0 is off.
        pub reservation_fault_crash_after_pay: u64 = 0;
        /// Fault injection (chaos suite): every event consumer of this
        /// process treats events whose subject ends with this (e.g.
        /// `parking.space_registered`) as poison, so they are dead-lettered.
        /// Unset is off.
        pub consumer_fault_poison_subject: Option<String> = None;
        /// How long a breaker stays open before one probe, in milliseconds.
        pub breaker_cool_down_ms: u64 = 5_000, check POSITIVE;
        /// How long a stopping service waits for in-flight calls, in
        /// milliseconds.
        pub shutdown_grace_ms: u64 = 5_000;
        /// How long a process that was told to stop keeps serving while
        /// reporting `NOT_SERVING`, so load balancers (Kubernetes endpoints)
        /// stop sending it calls before it stops accepting, in milliseconds.
        /// 0 in `roaming up`.
        pub shutdown_delay_ms: u64 = 0;
        /// Print `listening service=<name> addr=<ip:port>` on stdout as soon
        /// as each listener is bound, so a harness that gives port 0 learns
        /// the port (`tools/mesh`). Off by default: stdout carries only logs.
        pub report_listen: bool = false;
        /// Servers close each client connection gracefully (GOAWAY) after
        /// this many seconds (0: off), so long-lived HTTP/2 connections spread
        /// over replicas added since; calls and streams in flight run to their
        /// end.
        pub max_connection_age_secs: u64 = 0;
        /// Connections each server (every service port and the gateway) holds
        /// at once; more are closed at accept, logged at WARN (sampled).
        pub max_connections: usize = 4_096, check POSITIVE;
        /// Connections one IP address may hold at once on one server.
        pub max_connections_per_peer: usize = 512, check POSITIVE;
        /// How long a new connection may take to send its first bytes before
        /// it is closed, in milliseconds.
        pub handshake_timeout_ms: u64 = 10_000, check POSITIVE;
        /// How long a call's request body may take to arrive after its
        /// headers, in milliseconds, on every service port and at the
        /// gateway: later, the call is refused with `CANCELLED` /
        /// `REQUEST_BODY_TIMEOUT` before anything handles it, and whatever
        /// places it held are free (a stream's first message is held to the
        /// same time). Clients send the body with the headers: a 64 KiB
        /// message takes under a second even over a slow mobile link, so the
        /// default leaves room for a few retransmissions.
        pub request_body_timeout_ms: u64 = 5_000, check 100..=60_000;
        /// HTTP/2 streams (calls) one client connection to the gateway may
        /// have open at once.
        pub max_concurrent_streams: u32 = 256, check POSITIVE;
        /// The same on the service ports, whose few connections (from
        /// gateways and other services) multiplex everyone's calls and watch
        /// streams, so it is far higher.
        pub service_max_concurrent_streams: u32 = 16_384, check POSITIVE;
        /// PostgreSQL connections each process may hold (every replica of
        /// every service has its own pool; their sum must stay under the
        /// server's `max_connections`).
        pub database_pool: u32 = adapters_store::DEFAULT_POOL;
        /// Log as JSON lines (`1`, `true` or `yes` in the environment).
        pub log_json: bool = false;
        /// What the service ports ask of their callers: `off` (plaintext
        /// only), `optional` (TLS or plaintext; a client certificate, when
        /// presented, must name the caller the token names) or `required`
        /// (every call but health and reflection needs a client certificate
        /// of the mesh CA naming its caller: the service of a service token,
        /// `gateway` for a customer's or staff's token). Plaintext is still
        /// served for health and reflection, which is how kubelet's gRPC
        /// probe gets its answer. Not `off` needs `mesh_tls_dir`; `roaming up`
        /// then dials its services at `https://` addresses.
        pub mesh_tls: String = "off".to_owned(), check mesh_tls;
        /// The mesh's certificates: `<dir>/<identity>/tls.crt`, `tls.key` and
        /// `ca.crt` (a cert-manager Secret's layout) for each service this
        /// process runs and `gateway` for the gateway's calls. Needed when
        /// `mesh_tls` is not `off` or an address is `https://` (dialled with
        /// mutual TLS, the server proving the bare service name).
        /// `roaming certs` makes a local set.
        pub mesh_tls_dir: Option<PathBuf> = None;
        /// How often certificate and key files are read again, in
        /// milliseconds: changed files serve new connections (open ones keep
        /// theirs), so a renewal needs no restart.
        pub tls_reload_ms: u64 = 10_000, check 100..=3_600_000;
        /// The admin HTTP port (`/metrics`, `/healthz`); `off` turns it off.
        /// One per process: give each process of a host its own.
        pub admin_listen: Option<SocketAddr> = Some(loopback(9464));
        sections {
            /// The reservation service.
            pub reservation: ServiceSettings = ServiceSettings::on(50051);
            /// The payment service.
            pub payment: PaymentSettings = PaymentSettings::default();
            /// The rental service.
            pub rental: ServiceSettings = ServiceSettings::on(50053);
            /// The parking service.
            pub parking: ServiceSettings = ServiceSettings::on(50054);
            /// The view service.
            pub view: ServiceSettings = ServiceSettings::on(50055);
            /// Tokens and their keys.
            pub auth: AuthSettings = AuthSettings::default();
            /// The gateway.
            pub gateway: GatewaySettings = GatewaySettings::default();
        }
    }
}

/// How a server is built (see [`Settings::server_options`]).
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Close each client connection gracefully after this long.
    pub max_connection_age: Option<Duration>,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// What the port asks of its callers' certificates.
    pub client_certs: ClientCerts,
    /// How long after its headers a request's body may take.
    pub request_body_timeout: Duration,
}

impl Settings {
    /// Reads `file` (if given), then applies `ROAMING_*` variables from `env`,
    /// then validates.
    ///
    /// # Errors
    /// The first setting that cannot be read or is out of bounds, named.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut s = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("config file", format!("{}: {e}", path.display())))?;
                toml::from_str(&text).map_err(|e| bad("config file", e))?
            }
            None => Self::default(),
        };
        for (key, value) in env {
            // The test suite's own variables (`ROAMING_TEST_POSTGRES`) are not settings.
            if let Some(name) = key.strip_prefix(ENV_PREFIX)
                && !name.starts_with("TEST_")
            {
                adapters_settings::set_env(&mut s, ENV_PREFIX, &key, &value)?;
            }
        }
        s.validate()?;
        Ok(s)
    }

    /// Checks every setting against its declaration, then the ones that
    /// bound each other.
    ///
    /// # Errors
    /// The first setting out of bounds, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        adapters_settings::Section::check(self, "")?;
        if self.pending_ttl_ms <= self.call_deadline_ms * 2 {
            return Err(bad(
                "pending_ttl_ms",
                "must be more than twice call_deadline_ms (a claim must outlive its payment call)",
            ));
        }
        if self.mesh_tls_dir.is_none() {
            if self.mesh_tls != "off" {
                return Err(bad(
                    &Self::variable("mesh_tls_dir"),
                    format!(
                        "not set: mesh_tls is {:?}, the service ports need their certificates",
                        self.mesh_tls
                    ),
                ));
            }
            for (key, addrs) in self.addresses() {
                if let Some(a) = addrs.iter().find(|a| adapters_grpc::balance::is_https(a)) {
                    return Err(bad(
                        &Self::variable(key),
                        format!(
                            "{a:?} is dialled with mutual TLS: set {}",
                            Self::variable("mesh_tls_dir")
                        ),
                    ));
                }
            }
        }
        // Named by the variable, as a start names what it refuses.
        self.gateway
            .check_together()
            .map_err(|e| bad(&Self::variable(&e.name), e.problem))
    }

    /// Every list of replicas, by its key.
    pub fn addresses(&self) -> [(&'static str, &[String]); 5] {
        [
            ("payment_addrs", &self.payment_addrs),
            ("reservation_addrs", &self.reservation_addrs),
            ("rental_addrs", &self.rental_addrs),
            ("parking_addrs", &self.parking_addrs),
            ("view_addrs", &self.view_addrs),
        ]
    }

    /// What the service ports ask of their callers' certificates.
    pub fn client_certs(&self) -> ClientCerts {
        ClientCerts::parse(&self.mesh_tls).unwrap_or_default()
    }

    pub fn tls_reload(&self) -> Duration {
        Duration::from_millis(self.tls_reload_ms)
    }

    /// The files of mesh identity `identity`, when `mesh_tls_dir` is set.
    pub fn mesh_files(&self, identity: &str) -> Option<PemFiles> {
        self.mesh_tls_dir
            .as_deref()
            .map(|dir| PemFiles::identity(dir, identity))
    }

    /// What the port of service `identity` serves: TLS (its certificate,
    /// reloaded) unless `mesh_tls` is `off`.
    ///
    /// # Errors
    /// A certificate file that cannot be used, named.
    pub fn mesh_server_tls(&self, identity: &str) -> anyhow::Result<Option<ServerTls>> {
        if self.client_certs() == ClientCerts::Off {
            return Ok(None);
        }
        let files = self
            .mesh_files(identity)
            .ok_or_else(|| anyhow::anyhow!("mesh_tls needs mesh_tls_dir"))?;
        ServerTls::mesh(files, self.tls_reload())
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {e}", Self::variable("mesh_tls_dir")))
    }

    /// What `identity` presents and trusts when it dials `https://`
    /// replicas; none without `mesh_tls_dir`.
    ///
    /// # Errors
    /// A certificate file that cannot be used, named.
    pub fn mesh_client(&self, identity: &str) -> anyhow::Result<Option<ClientTls>> {
        let Some(files) = self.mesh_files(identity) else {
            return Ok(None);
        };
        ClientTls::new(files, self.tls_reload())
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {e}", Self::variable("mesh_tls_dir")))
    }

    /// How `identity` dials the `https://` replicas of `server` (the bare
    /// service name its certificate must prove); none without
    /// `mesh_tls_dir`.
    ///
    /// # Errors
    /// A certificate file that cannot be used, named.
    pub fn mesh_client_tls(
        &self,
        identity: &str,
        server: &str,
    ) -> anyhow::Result<Option<TlsConnect>> {
        match self.mesh_client(identity)? {
            Some(client) => Ok(Some(client.connector(server)?)),
            None => Ok(None),
        }
    }

    /// The gateway's public port: TLS when `gateway.tls_cert` is set.
    ///
    /// # Errors
    /// A certificate file that cannot be used, named.
    pub fn public_tls(&self) -> anyhow::Result<Option<ServerTls>> {
        let (Some(cert), Some(key)) = (&self.gateway.tls_cert, &self.gateway.tls_key) else {
            return Ok(None);
        };
        ServerTls::public(cert, key, self.tls_reload())
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {e}", Self::variable("gateway.tls_cert")))
    }

    /// Every setting: its TOML key, its variable, its default and its doc.
    pub fn table() -> Vec<Entry> {
        adapters_settings::table::<Self>(ENV_PREFIX)
    }

    /// The environment variable of the setting whose TOML key is `key`
    /// (`auth.signing_key_file` -> `ROAMING_AUTH_SIGNING_KEY_FILE`): how a
    /// problem found after loading names the setting.
    pub fn variable(key: &str) -> String {
        Self::table()
            .into_iter()
            .find(|e| e.key == key)
            .map_or_else(|| key.to_owned(), |e| e.env)
    }

    /// The database of `service`: its URL, or a SQLite file under `data_dir`.
    pub fn database_url(&self, service: &str, explicit: Option<&String>) -> String {
        explicit.cloned().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join(format!("{service}.db")).display()
            )
        })
    }

    /// How the host names in the `*_addrs` are resolved.
    pub fn discovery(&self) -> adapters_grpc::balance::Discovery {
        adapters_grpc::balance::Discovery::every(Duration::from_millis(self.resolve_interval_ms))
    }

    pub fn call_deadline(&self) -> Duration {
        Duration::from_millis(self.call_deadline_ms)
    }

    pub fn request_body_timeout(&self) -> Duration {
        Duration::from_millis(self.request_body_timeout_ms)
    }

    pub fn breaker_cool_down(&self) -> Duration {
        Duration::from_millis(self.breaker_cool_down_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_delay_ms)
    }

    /// How every gRPC server of this process is built.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            max_connection_age: self.max_connection_age(),
            max_concurrent_streams: self.service_max_concurrent_streams,
            client_certs: self.client_certs(),
            request_body_timeout: self.request_body_timeout(),
        }
    }

    /// The connection limits of every server of this process.
    pub fn connection_limits(&self) -> adapters_grpc::incoming::ConnectionLimits {
        adapters_grpc::incoming::ConnectionLimits {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
        }
    }

    pub fn max_connection_age(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.max_connection_age_secs)).filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_env_overrides_them() {
        let s = Settings::load(
            None,
            env(&[
                ("ROAMING_NATS_URL", "nats://127.0.0.1:4222"),
                ("ROAMING_PAYMENT_ADDRS", "http://a:1, http://b:2"),
                ("HOME", "/x"),
                ("ROAMING_TEST_POSTGRES", "postgres://postgres@127.0.0.1"),
                ("ROAMING_MAX_CONNECTION_AGE_SECS", "300"),
            ]),
        )
        .unwrap();
        assert_eq!(s.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(s.payment_addrs, ["http://a:1", "http://b:2"]);
        assert_eq!(s.max_connection_age(), Some(Duration::from_mins(5)));
        assert_eq!(Settings::default().max_connection_age(), None);
    }

    #[test]
    fn a_bad_setting_is_named() {
        let e =
            Settings::load(None, env(&[("ROAMING_PAYMENT_FAULT_FAILURE_RATE", "2")])).unwrap_err();
        assert_eq!(e.name, "payment.fault_failure_rate");
        let e = Settings::load(None, env(&[("ROAMING_VIEW_LISTEN", "nowhere")])).unwrap_err();
        assert_eq!(e.name, "ROAMING_VIEW_LISTEN");
        let e = Settings::load(None, env(&[("ROAMING_TYPO", "1")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting ROAMING_TYPO: unknown setting"
        );
        let e =
            Settings::load(None, env(&[("ROAMING_RENTAL_DATABASE_URL", "mysql://x")])).unwrap_err();
        assert_eq!(e.name, "rental.database_url");
    }

    #[test]
    fn a_setting_can_come_from_a_file() {
        let dir =
            std::env::temp_dir().join(format!("roaming-settings-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("uri");
        std::fs::write(&file, "postgresql://app:pw@pg-view-rw:5432/view\n").unwrap();
        let path = file.display().to_string();
        let s = Settings::load(None, env(&[("ROAMING_VIEW_DATABASE_URL_FILE", &path)])).unwrap();
        assert_eq!(
            s.view.database_url.as_deref(),
            Some("postgresql://app:pw@pg-view-rw:5432/view")
        );
        // A file path setting keeps its own meaning.
        let s = Settings::load(None, env(&[("ROAMING_AUTH_JWKS_FILE", &path)])).unwrap();
        assert_eq!(s.auth.jwks_file, Some(file.clone()));
        let e = Settings::load(None, env(&[("ROAMING_NOPE_FILE", &path)])).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("invalid setting ROAMING_NOPE_FILE: unknown setting")
        );
        let e = Settings::load(None, env(&[("ROAMING_VIEW_DATABASE_URL_FILE", "/no/such")]))
            .unwrap_err();
        assert_eq!(e.name, "ROAMING_VIEW_DATABASE_URL_FILE");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_shipped_gateway_config_loads_the_demo_principals() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/gateway.example.toml");
        let s = Settings::load(Some(&file), Vec::new()).unwrap();
        let names: Vec<_> = s
            .gateway
            .principals
            .iter()
            .map(|p| p.username.as_str())
            .collect();
        let demo: Vec<_> = gateway::DEMO_PRINCIPALS
            .iter()
            .map(|(u, _, _)| *u)
            .collect();
        assert_eq!(names, demo);
        assert!(s.gateway.credentials(&[]).is_ok());
    }

    #[test]
    fn files_are_strict() {
        let dir = std::env::temp_dir().join(format!("roaming-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "nats_url = \"nats://h:4222\"\n[payment]\nfault_latency_ms = 250\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), Vec::new()).unwrap();
        assert_eq!(
            (s.nats_url.as_deref(), s.payment.fault_latency_ms),
            (Some("nats://h:4222"), 250)
        );
        std::fs::write(&file, "natz_url = 1\n").unwrap();
        assert_eq!(
            Settings::load(Some(&file), Vec::new()).unwrap_err().name,
            "config file"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Every variable the README, the manifests and the scripts name, with
    /// the key it has always set: renaming a field must not rename these.
    const KNOWN: [(&str, &str); 44] = [
        ("ROAMING_DATA_DIR", "data_dir"),
        ("ROAMING_NATS_URL", "nats_url"),
        ("ROAMING_NATS_PREFIX", "nats_prefix"),
        ("ROAMING_NATS_STREAM_REPLICAS", "nats_stream_replicas"),
        ("ROAMING_RESERVATION_LISTEN", "reservation.listen"),
        ("ROAMING_PAYMENT_LISTEN", "payment.listen"),
        ("ROAMING_RENTAL_LISTEN", "rental.listen"),
        ("ROAMING_PARKING_LISTEN", "parking.listen"),
        ("ROAMING_VIEW_LISTEN", "view.listen"),
        (
            "ROAMING_RESERVATION_DATABASE_URL",
            "reservation.database_url",
        ),
        ("ROAMING_PAYMENT_DATABASE_URL", "payment.database_url"),
        ("ROAMING_RENTAL_DATABASE_URL", "rental.database_url"),
        ("ROAMING_PARKING_DATABASE_URL", "parking.database_url"),
        ("ROAMING_VIEW_DATABASE_URL", "view.database_url"),
        ("ROAMING_PAYMENT_ADDRS", "payment_addrs"),
        ("ROAMING_RESERVATION_ADDRS", "reservation_addrs"),
        ("ROAMING_RENTAL_ADDRS", "rental_addrs"),
        ("ROAMING_PARKING_ADDRS", "parking_addrs"),
        ("ROAMING_VIEW_ADDRS", "view_addrs"),
        ("ROAMING_GATEWAY_LISTEN", "gateway.listen"),
        ("ROAMING_GATEWAY_RATE_PER_SECOND", "gateway.rate_per_second"),
        ("ROAMING_GATEWAY_BURST", "gateway.burst"),
        (
            "ROAMING_GATEWAY_ADMISSION_PER_REPLICA",
            "gateway.admission_per_replica",
        ),
        (
            "ROAMING_GATEWAY_ADMISSION_WAIT_MS",
            "gateway.admission_wait_ms",
        ),
        ("ROAMING_AUTH_ISSUER", "auth.issuer"),
        ("ROAMING_AUTH_AUDIENCE", "auth.audience"),
        ("ROAMING_AUTH_TOKEN_TTL_SECS", "auth.token_ttl_secs"),
        ("ROAMING_AUTH_SIGNING_KEY_FILE", "auth.signing_key_file"),
        ("ROAMING_AUTH_JWKS_FILE", "auth.jwks_file"),
        ("ROAMING_AUTH_JWKS_URL", "auth.jwks_url"),
        ("ROAMING_AUTH_TRUSTED_KEYS", "auth.trusted_keys"),
        ("ROAMING_CALL_DEADLINE_MS", "call_deadline_ms"),
        ("ROAMING_PENDING_TTL_MS", "pending_ttl_ms"),
        (
            "ROAMING_RESERVATION_FAULT_CRASH_AFTER_PAY",
            "reservation_fault_crash_after_pay",
        ),
        ("ROAMING_BREAKER_COOL_DOWN_MS", "breaker_cool_down_ms"),
        ("ROAMING_SHUTDOWN_GRACE_MS", "shutdown_grace_ms"),
        ("ROAMING_SHUTDOWN_DELAY_MS", "shutdown_delay_ms"),
        ("ROAMING_MAX_CONNECTION_AGE_SECS", "max_connection_age_secs"),
        ("ROAMING_DATABASE_POOL", "database_pool"),
        ("ROAMING_MAX_CONNECTIONS", "max_connections"),
        (
            "ROAMING_MAX_CONNECTIONS_PER_PEER",
            "max_connections_per_peer",
        ),
        ("ROAMING_HANDSHAKE_TIMEOUT_MS", "handshake_timeout_ms"),
        ("ROAMING_MAX_CONCURRENT_STREAMS", "max_concurrent_streams"),
        (
            "ROAMING_SERVICE_MAX_CONCURRENT_STREAMS",
            "service_max_concurrent_streams",
        ),
    ];

    #[test]
    fn every_known_variable_sets_the_key_it_always_set() {
        let table = Settings::table();
        for (env, key) in KNOWN {
            let entry = table.iter().find(|e| e.env == env);
            assert_eq!(entry.map(|e| e.key.as_str()), Some(key), "{env}");
        }
        // The four knobs listed in the README's security table, by suffix.
        for env in [
            "ROAMING_PAYMENT_FAULT_LATENCY_MS",
            "ROAMING_PAYMENT_FAULT_FAILURE_RATE",
            "ROAMING_ADMIN_LISTEN",
            "ROAMING_LOG_JSON",
        ] {
            assert!(table.iter().any(|e| e.env == env), "{env}");
        }
    }

    #[test]
    fn the_settings_table_lists_every_setting_once_with_its_default() {
        let table = Settings::table();
        for e in &table {
            println!("{:45} {:45} {}", e.key, e.env, e.default);
        }
        let mut envs: Vec<_> = table.iter().map(|e| e.env.as_str()).collect();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(envs.len(), table.len(), "two settings share a variable");
        assert!(
            table.iter().all(|e| !e.doc.is_empty()),
            "a setting without a doc"
        );
        let row = |key: &str| {
            table
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.default.as_str())
        };
        assert_eq!(row("data_dir"), Some("data"));
        assert_eq!(row("nats_url"), Some("unset"));
        assert_eq!(row("nats_prefix"), Some("\"\""));
        assert_eq!(row("call_deadline_ms"), Some("2000"));
        assert_eq!(row("payment_addrs"), Some("none"));
        assert_eq!(row("admin_listen"), Some("127.0.0.1:9464"));
        assert_eq!(row("reservation.listen"), Some("127.0.0.1:50051"));
        assert_eq!(row("payment.fault_failure_rate"), Some("0.0"));
        assert_eq!(row("gateway.listen"), Some("127.0.0.1:50050"));
        assert_eq!(row("mesh_tls"), Some("off"));
        assert_eq!(row("gateway.tls_cert"), Some("unset"));
        assert_eq!(row("auth.token_ttl_secs"), Some("900"));
        assert_eq!(row("log_json"), Some("false"));
    }

    #[test]
    fn every_default_read_back_from_its_variable_is_the_default() {
        // Each setting's default, spelled as its variable, loads and
        // validates (the table's defaults are what the environment reads).
        for e in Settings::table() {
            let value = match e.default.as_str() {
                "unset" | "none" | "\"\"" => String::new(),
                v => v.to_owned(),
            };
            if e.key == "gateway.principals" || e.key.ends_with(".database_url") {
                continue; // a file-only list; a database URL set empty is refused
            }
            let s = Settings::load(None, env(&[(&e.env, &value)]))
                .unwrap_or_else(|err| panic!("{}={value}: {err}", e.env));
            let mut rows = Vec::new();
            adapters_settings::Section::rows(&s, "", ENV_PREFIX, &mut rows);
            let read = rows.iter().find(|a| a.key == e.key).unwrap();
            assert_eq!(read.default, e.default, "{}", e.key);
        }
        let e = Settings::load(None, env(&[("ROAMING_GATEWAY_PRINCIPALS", "x")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid setting ROAMING_GATEWAY_PRINCIPALS: can only be set in the config file"
        );
        let e = Settings::load(None, env(&[("ROAMING_VIEW_DATABASE_URL", "")])).unwrap_err();
        assert_eq!(e.name, "view.database_url");
    }

    /// The README's table of every setting, as [`Settings::table`] writes it.
    fn readme_table() -> String {
        use std::fmt::Write as _;
        let mut out = String::from(
            "| setting (TOML key) | environment | default | what |\n|---|---|---|---|\n",
        );
        for e in Settings::table() {
            let default = match e.default.as_str() {
                "unset" | "none" => e.default.clone(),
                d => format!("`{d}`"),
            };
            writeln!(
                out,
                "| `{}` | `{}` | {default} | {} |",
                e.key,
                e.env,
                e.summary()
            )
            .unwrap();
        }
        out
    }

    fn readme() -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn the_readme_table_is_the_declared_settings() {
        const START: &str = "<!-- settings table: generated, see settings.rs -->\n";
        const END: &str = "<!-- end of settings table -->";
        let readme = readme();
        let start = readme
            .find(START)
            .expect("the README has the settings table")
            + START.len();
        let end = start + readme[start..].find(END).expect("the table ends");
        let expected = readme_table();
        assert!(
            readme[start..end] == expected,
            "README.md's settings table differs from the declarations; it should read:\n{expected}"
        );
    }

    #[test]
    fn every_variable_the_docs_and_deployments_name_is_a_setting() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let table = Settings::table();
        let streams: Vec<&str> = adapters_bus::nats::STREAMS
            .iter()
            .chain([
                &adapters_bus::nats::DLQ_STREAM,
                &adapters_bus::nats::REPLAY_STREAM,
            ])
            .map(|(name, _)| *name)
            .collect();
        let mut files = vec![root.join("README.md"), root.join(".ci/run")];
        let mut dirs = vec![root.join("deploy"), root.join("scripts")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        let mut checked = 0;
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for (at, _) in text.match_indices(ENV_PREFIX) {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let name = name.trim_end_matches('_');
                if name.len() <= ENV_PREFIX.len()
                    || name.starts_with("ROAMING_TEST_")
                    || streams.contains(&name)
                {
                    continue;
                }
                let setting = name.strip_suffix("_FILE").filter(|s| {
                    !table.iter().any(|e| e.env == name) && table.iter().any(|e| e.env == *s)
                });
                assert!(
                    table.iter().any(|e| e.env == name) || setting.is_some(),
                    "{} names {name}, which is no setting",
                    file.display()
                );
                checked += 1;
            }
        }
        assert!(checked > 40, "only {checked} variables found");
        // The security table names settings by their variable's suffix.
        let readme = readme();
        let limits = &readme[readme.find("## Security limits").unwrap()..];
        let limits = &limits[..limits[3..].find("\n## ").unwrap()];
        let mut named = 0;
        for line in limits.lines().filter(|l| l.starts_with("| ")) {
            // The limit and its default name settings; the last columns name
            // status codes and reasons.
            let cells = line.split('|').skip(1).take(2).collect::<String>();
            for name in cells.split('`').skip(1).step_by(2) {
                if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                    let env = format!("{ENV_PREFIX}{name}");
                    assert!(table.iter().any(|e| e.env == env), "README names {name}");
                    named += 1;
                }
            }
        }
        assert!(named >= 9, "only {named} settings in the security table");
    }
}
