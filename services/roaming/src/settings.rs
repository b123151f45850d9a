//! Typed settings: a TOML file (optional) plus `ROAMING_*` environment
//! overrides, validated before anything binds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gateway::GatewaySettings;
use serde::Deserialize;

/// Every setting of one process (one service, or `roaming up`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where SQLite files live when a service has no database URL.
    pub data_dir: PathBuf,
    /// NATS JetStream (e.g. `nats://127.0.0.1:4222`); the embedded bus when unset.
    pub nats_url: Option<String>,
    /// Prefix of every stream, durable and subject (several meshes on one NATS).
    pub nats_prefix: String,
    /// Copies of each JetStream stream when the mesh creates it (1-5; 3 on a
    /// three-server NATS cluster).
    pub nats_stream_replicas: usize,
    pub reservation: ServiceSettings,
    pub payment: PaymentSettings,
    pub rental: ServiceSettings,
    pub parking: ServiceSettings,
    pub view: ServiceSettings,
    /// Addresses of payment replicas, for reservation's `Pay` calls.
    pub payment_addrs: Vec<String>,
    /// Addresses of reservation replicas, for parking's `VerifyParkingEntry`.
    pub reservation_addrs: Vec<String>,
    /// Deadline of every synchronous call, in milliseconds.
    pub call_deadline_ms: u64,
    /// How long a reserve call may stay `PENDING_PAYMENT` before the sweeper
    /// rejects it (and the capture, if any, is voided), in milliseconds.
    pub pending_ttl_ms: u64,
    /// Fault injection (chaos suite): the reservation process aborts right
    /// after this many captured payments, before committing them. 0 is off.
    pub reservation_fault_crash_after_pay: u64,
    /// How long a breaker stays open before one probe, in milliseconds.
    pub breaker_cool_down_ms: u64,
    /// How long a stopping service waits for in-flight calls, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// How long a process that was told to stop keeps serving while reporting
    /// `NOT_SERVING`, so load balancers (Kubernetes endpoints) stop sending it
    /// calls before it stops accepting, in milliseconds. 0 in `roaming up`.
    pub shutdown_delay_ms: u64,
    /// Servers close each client connection gracefully (GOAWAY) after this
    /// long, so long-lived HTTP/2 connections spread over replicas added
    /// since; calls and streams in flight run to their end. In seconds; 0 is
    /// off.
    pub max_connection_age_secs: u64,
    /// Connections each server (every service port and the gateway) holds at
    /// once; more are closed at accept, logged at WARN (sampled).
    pub max_connections: usize,
    /// Connections one IP address may hold at once on one server.
    pub max_connections_per_peer: usize,
    /// How long a new connection may take to send its first bytes before it
    /// is closed, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// HTTP/2 streams (calls) one client connection to the gateway may have
    /// open at once.
    pub max_concurrent_streams: u32,
    /// The same on the service ports, whose few connections (from gateways
    /// and other services) multiplex everyone's calls and watch streams, so it
    /// is far higher.
    pub service_max_concurrent_streams: u32,
    /// PostgreSQL connections each process may hold (every replica of every
    /// service has its own pool; their sum must stay under the server's
    /// `max_connections`).
    pub database_pool: u32,
    /// Log as JSON lines.
    pub log_json: bool,
    /// The admin HTTP port (`/metrics`, `/healthz`); off when unset. One per
    /// process: give each process of a host its own.
    pub admin_listen: Option<SocketAddr>,
    /// Addresses of rental, parking and view replicas (the gateway forwards to
    /// them; in `roaming up` the local services).
    pub rental_addrs: Vec<String>,
    pub parking_addrs: Vec<String>,
    pub view_addrs: Vec<String>,
    pub auth: AuthSettings,
    pub gateway: GatewaySettings,
}

/// Tokens: who issues them, for whom, and which keys sign and verify them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// `iss` of issued tokens, and the only issuer accepted.
    pub issuer: String,
    /// `aud` of issued tokens, and the only audience accepted.
    pub audience: String,
    /// Lifetime of the tokens the gateway issues, in seconds.
    pub token_ttl_secs: u64,
    /// This process's Ed25519 key (PKCS#8 PEM): the gateway signs user tokens
    /// with it, a service its own service tokens. `roaming up` keeps one under
    /// `data_dir/keys/` (created on first start) when this is unset.
    pub signing_key_file: Option<PathBuf>,
    /// Public keys trusted besides this process's own key.
    pub trusted_keys: Vec<TrustedKeySetting>,
    /// A JWKS document of an external identity provider, read at start.
    pub jwks_file: Option<PathBuf>,
    /// An external identity provider's JWKS URL (`https`, or `http` to a
    /// loopback address): fetched at start, every 5 minutes, and when a
    /// token names an unknown key (at most once per 10 seconds).
    pub jwks_url: Option<String>,
}

/// A trusted public key: the base64url `x` of its JWK (`roaming keygen`
/// prints it); with `subject`, only that service's own tokens are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeySetting {
    pub x: String,
    #[serde(default)]
    pub subject: Option<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let a = adapters_auth::Audience::default();
        Self {
            issuer: a.issuer,
            audience: a.audience,
            token_ttl_secs: 900,
            signing_key_file: None,
            trusted_keys: Vec::new(),
            jwks_file: None,
            jwks_url: None,
        }
    }
}

/// Where one service listens and keeps its data.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceSettings {
    pub listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`; a SQLite file under `data_dir` when unset.
    pub database_url: Option<String>,
}

/// Payment's settings, with the fault knob for showing the breaker.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    pub listen: SocketAddr,
    pub database_url: Option<String>,
    /// Injected latency per `Pay`, in milliseconds (0: off).
    pub fault_latency_ms: u64,
    /// Fraction of `Pay` calls answered `UNAVAILABLE` (0.0: off).
    pub fault_failure_rate: f64,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            listen: loopback(0),
            database_url: None,
        }
    }
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            listen: loopback(50052),
            database_url: None,
            fault_latency_ms: 0,
            fault_failure_rate: 0.0,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            nats_url: None,
            nats_prefix: String::new(),
            nats_stream_replicas: 1,
            reservation: ServiceSettings {
                listen: loopback(50051),
                database_url: None,
            },
            payment: PaymentSettings::default(),
            rental: ServiceSettings {
                listen: loopback(50053),
                database_url: None,
            },
            parking: ServiceSettings {
                listen: loopback(50054),
                database_url: None,
            },
            view: ServiceSettings {
                listen: loopback(50055),
                database_url: None,
            },
            payment_addrs: Vec::new(),
            reservation_addrs: Vec::new(),
            call_deadline_ms: 2_000,
            pending_ttl_ms: 60_000,
            reservation_fault_crash_after_pay: 0,
            breaker_cool_down_ms: 5_000,
            shutdown_grace_ms: 5_000,
            shutdown_delay_ms: 0,
            max_connection_age_secs: 0,
            max_connections: 4_096,
            max_connections_per_peer: 512,
            database_pool: adapters_store::DEFAULT_POOL,
            handshake_timeout_ms: 10_000,
            max_concurrent_streams: 256,
            service_max_concurrent_streams: 16_384,
            log_json: false,
            admin_listen: Some(loopback(9464)),
            rental_addrs: Vec::new(),
            parking_addrs: Vec::new(),
            view_addrs: Vec::new(),
            auth: AuthSettings::default(),
            gateway: GatewaySettings::default(),
        }
    }
}

/// A setting that is missing, malformed or out of range; names the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {problem}")]
pub struct SettingsError {
    pub name: String,
    pub problem: String,
}

fn bad(name: &str, problem: impl std::fmt::Display) -> SettingsError {
    SettingsError {
        name: name.to_owned(),
        problem: problem.to_string(),
    }
}

impl Settings {
    /// Reads `file` (if given), then applies `ROAMING_*` variables from `env`,
    /// then validates.
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
            s.apply_env(&key, &value)?;
        }
        s.validate()?;
        Ok(s)
    }

    fn apply_env(&mut self, key: &str, value: &str) -> Result<(), SettingsError> {
        let Some(name) = key.strip_prefix("ROAMING_") else {
            return Ok(());
        };
        // The test suite's own variables (`ROAMING_TEST_POSTGRES`) are not settings.
        if name.starts_with("TEST_") {
            return Ok(());
        }
        let addr = |v: &str| v.parse::<SocketAddr>().map_err(|e| bad(key, e));
        let list = |v: &str| {
            v.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let number = |v: &str| v.parse::<u64>().map_err(|e| bad(key, e));
        match name {
            "DATA_DIR" => self.data_dir = PathBuf::from(value),
            "NATS_URL" => self.nats_url = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "NATS_PREFIX" => value.clone_into(&mut self.nats_prefix),
            "NATS_STREAM_REPLICAS" => {
                self.nats_stream_replicas = value.parse().map_err(|e| bad(key, e))?;
            }
            "RESERVATION_LISTEN" => self.reservation.listen = addr(value)?,
            "PAYMENT_LISTEN" => self.payment.listen = addr(value)?,
            "RENTAL_LISTEN" => self.rental.listen = addr(value)?,
            "PARKING_LISTEN" => self.parking.listen = addr(value)?,
            "VIEW_LISTEN" => self.view.listen = addr(value)?,
            "RESERVATION_DATABASE_URL" => self.reservation.database_url = Some(value.to_owned()),
            "PAYMENT_DATABASE_URL" => self.payment.database_url = Some(value.to_owned()),
            "RENTAL_DATABASE_URL" => self.rental.database_url = Some(value.to_owned()),
            "PARKING_DATABASE_URL" => self.parking.database_url = Some(value.to_owned()),
            "VIEW_DATABASE_URL" => self.view.database_url = Some(value.to_owned()),
            "PAYMENT_ADDRS" => self.payment_addrs = list(value),
            "RESERVATION_ADDRS" => self.reservation_addrs = list(value),
            "RENTAL_ADDRS" => self.rental_addrs = list(value),
            "PARKING_ADDRS" => self.parking_addrs = list(value),
            "VIEW_ADDRS" => self.view_addrs = list(value),
            "GATEWAY_LISTEN" => self.gateway.listen = addr(value)?,
            "GATEWAY_RATE_PER_SECOND" => {
                self.gateway.rate_per_second = value.parse().map_err(|e| bad(key, e))?;
            }
            "GATEWAY_BURST" => self.gateway.burst = value.parse().map_err(|e| bad(key, e))?,
            "GATEWAY_ADMISSION_PER_REPLICA" => {
                self.gateway.admission_per_replica = value.parse().map_err(|e| bad(key, e))?;
            }
            "GATEWAY_ADMISSION_WAIT_MS" => self.gateway.admission_wait_ms = number(value)?,
            "AUTH_ISSUER" => value.clone_into(&mut self.auth.issuer),
            "AUTH_AUDIENCE" => value.clone_into(&mut self.auth.audience),
            "AUTH_TOKEN_TTL_SECS" => self.auth.token_ttl_secs = number(value)?,
            "AUTH_SIGNING_KEY_FILE" => {
                self.auth.signing_key_file =
                    Some(PathBuf::from(value)).filter(|_| !value.is_empty());
            }
            "AUTH_JWKS_FILE" => {
                self.auth.jwks_file = Some(PathBuf::from(value)).filter(|_| !value.is_empty());
            }
            "AUTH_JWKS_URL" => {
                self.auth.jwks_url = Some(value.to_owned()).filter(|_| !value.is_empty());
            }
            // `x` or `subject=x`, comma-separated.
            "AUTH_TRUSTED_KEYS" => {
                self.auth.trusted_keys = list(value)
                    .into_iter()
                    .map(|entry| match entry.split_once('=') {
                        Some((subject, x)) => TrustedKeySetting {
                            x: x.to_owned(),
                            subject: Some(subject.to_owned()),
                        },
                        None => TrustedKeySetting {
                            x: entry,
                            subject: None,
                        },
                    })
                    .collect();
            }
            "CALL_DEADLINE_MS" => self.call_deadline_ms = number(value)?,
            "PENDING_TTL_MS" => self.pending_ttl_ms = number(value)?,
            "RESERVATION_FAULT_CRASH_AFTER_PAY" => {
                self.reservation_fault_crash_after_pay = number(value)?;
            }
            "BREAKER_COOL_DOWN_MS" => self.breaker_cool_down_ms = number(value)?,
            "SHUTDOWN_GRACE_MS" => self.shutdown_grace_ms = number(value)?,
            "SHUTDOWN_DELAY_MS" => self.shutdown_delay_ms = number(value)?,
            "MAX_CONNECTION_AGE_SECS" => self.max_connection_age_secs = number(value)?,
            "DATABASE_POOL" => {
                self.database_pool = value.parse().map_err(|e| bad(key, e))?;
            }
            "MAX_CONNECTIONS" => {
                self.max_connections = value.parse().map_err(|e| bad(key, e))?;
            }
            "MAX_CONNECTIONS_PER_PEER" => {
                self.max_connections_per_peer = value.parse().map_err(|e| bad(key, e))?;
            }
            "HANDSHAKE_TIMEOUT_MS" => self.handshake_timeout_ms = number(value)?,
            "MAX_CONCURRENT_STREAMS" => {
                self.max_concurrent_streams = value.parse().map_err(|e| bad(key, e))?;
            }
            "SERVICE_MAX_CONCURRENT_STREAMS" => {
                self.service_max_concurrent_streams = value.parse().map_err(|e| bad(key, e))?;
            }
            "PAYMENT_FAULT_LATENCY_MS" => self.payment.fault_latency_ms = number(value)?,
            "PAYMENT_FAULT_FAILURE_RATE" => {
                self.payment.fault_failure_rate = value.parse().map_err(|e| bad(key, e))?;
            }
            "ADMIN_LISTEN" => {
                self.admin_listen = match value {
                    "" | "off" => None,
                    v => Some(addr(v)?),
                };
            }
            "LOG_JSON" => self.log_json = matches!(value, "1" | "true" | "yes"),
            // `ROAMING_X_FILE=path` sets `ROAMING_X` to the file's contents
            // (trimmed): secrets mounted as files, e.g. a database URL.
            _ => match name.strip_suffix("_FILE") {
                Some(setting) if !setting.is_empty() => {
                    let text = std::fs::read_to_string(value)
                        .map_err(|e| bad(key, format!("{value}: {e}")))?;
                    self.apply_env(&format!("ROAMING_{setting}"), text.trim())
                        .map_err(|e| bad(key, e.problem))?;
                }
                _ => return Err(bad(key, "unknown setting")),
            },
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if !(0.0..=1.0).contains(&self.payment.fault_failure_rate) {
            return Err(bad(
                "payment.fault_failure_rate",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.call_deadline_ms == 0 || self.call_deadline_ms > 60_000 {
            return Err(bad("call_deadline_ms", "must be 1-60000"));
        }
        if self.max_connections == 0 || self.max_connections_per_peer == 0 {
            return Err(bad("max_connections", "must be positive"));
        }
        if self.handshake_timeout_ms == 0
            || self.max_concurrent_streams == 0
            || self.service_max_concurrent_streams == 0
        {
            return Err(bad(
                "handshake_timeout_ms / max_concurrent_streams",
                "must be positive",
            ));
        }
        if !(1..=5).contains(&self.nats_stream_replicas) {
            return Err(bad("nats_stream_replicas", "must be 1-5"));
        }
        if self.pending_ttl_ms <= self.call_deadline_ms * 2 {
            return Err(bad(
                "pending_ttl_ms",
                "must be more than twice call_deadline_ms (a claim must outlive its payment call)",
            ));
        }
        if self.breaker_cool_down_ms == 0 {
            return Err(bad("breaker_cool_down_ms", "must be positive"));
        }
        for (name, url) in [
            ("reservation.database_url", &self.reservation.database_url),
            ("payment.database_url", &self.payment.database_url),
            ("rental.database_url", &self.rental.database_url),
            ("parking.database_url", &self.parking.database_url),
            ("view.database_url", &self.view.database_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("sqlite:")
                    || url.starts_with("postgres:")
                    || url.starts_with("postgresql:"))
            {
                return Err(bad(name, "must start with sqlite: or postgres:"));
            }
        }
        for a in self
            .payment_addrs
            .iter()
            .chain(&self.reservation_addrs)
            .chain(&self.rental_addrs)
            .chain(&self.parking_addrs)
            .chain(&self.view_addrs)
        {
            if !(a.starts_with("http://") || a.starts_with("https://")) {
                return Err(bad("*_addrs", format!("{a:?} must be an http:// URL")));
            }
        }
        if let Some(url) = &self.nats_url
            && !url.starts_with("nats://")
        {
            return Err(bad("nats_url", "must start with nats://"));
        }
        if self.auth.token_ttl_secs < 60 || self.auth.token_ttl_secs > 86_400 {
            return Err(bad("auth.token_ttl_secs", "must be 60-86400"));
        }
        if self.auth.issuer.is_empty() || self.auth.audience.is_empty() {
            return Err(bad("auth.issuer / auth.audience", "must not be empty"));
        }
        for k in &self.auth.trusted_keys {
            adapters_auth::TrustedKey::from_x(&k.x).map_err(|e| bad("auth.trusted_keys", e))?;
        }
        self.gateway.validate().map_err(|e| bad("gateway", e))?;
        Ok(())
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

    pub fn call_deadline(&self) -> Duration {
        Duration::from_millis(self.call_deadline_ms)
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
    pub fn server_options(&self) -> crate::host::ServerOptions {
        crate::host::ServerOptions {
            max_connection_age: self.max_connection_age(),
            max_concurrent_streams: self.service_max_concurrent_streams,
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
}
